"""Toy agents for tests of the agent interface: a policy with memory and an offline learner.

Registered with :func:`deeprl.agent.register_agent` on import, as a user's own agents would be;
``python -m toy_agents <overrides>`` runs ``deeprl-train`` with them available.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deeprl.agent import Agent, register_agent, reset_policy_state
from deeprl.buffers.replay import ReplayBuffer
from deeprl.buffers.rollout import RolloutBuffer
from deeprl.config import option
from deeprl.datasets import OfflineDataset, register_dataset
from deeprl.envs.registry import make_env
from deeprl.nets.distributions import categorical_log_prob_entropy, categorical_sample


@dataclass
class ToyRecurrentConfig:
    num_envs: int = 4
    num_steps: int = 16
    lr: float = 1e-2


@register_agent
class ToyRecurrent(Agent):
    """A linear policy over the observation and the running mean of the episode's observations,
    with the step count and the last action in its state; trained by a REINFORCE-like step."""

    Config = ToyRecurrentConfig
    name = "toy_recurrent"

    def __init__(self, spec, num_envs, device="cpu", config=None, total_steps=None):
        super().__init__(spec, num_envs, device, total_steps)
        self.config = config or ToyRecurrentConfig()
        self.obs_dim = spec.observation_space.shape[0]
        self.policy = nn.Linear(2 * self.obs_dim + 1, spec.action_space.n)
        self.to(self.device)
        self.optimizers["main"] = torch.optim.Adam(self.parameters(), lr=self.config.lr)

    def initial_state(self, num_envs):
        zeros = torch.zeros(num_envs, device=self.device)
        return {
            "count": zeros.long(),
            "obs_sum": torch.zeros(num_envs, self.obs_dim, device=self.device),
            "last_action": zeros.long(),
        }

    def _features(self, obs, state):
        mean = state["obs_sum"] / state["count"].clamp(min=1).unsqueeze(-1)
        return torch.cat([obs, mean, state["last_action"].float().unsqueeze(-1)], -1)

    def act(self, obs, state=None, is_first=None, deterministic=False):
        assert state["count"].shape[0] == obs.shape[0], "state sized for another env"
        if is_first is not None:
            state = reset_policy_state(state, self.initial_state(obs.shape[0]), is_first)
        features = self._features(obs, state)
        logits = self.policy(features)
        action = logits.argmax(-1) if deterministic else categorical_sample(logits)
        state = {
            "count": state["count"] + 1,
            "obs_sum": state["obs_sum"] + obs,
            "last_action": action,
        }
        return action, {"features": features}, state

    def make_buffer(self):
        return RolloutBuffer(self.config.num_steps, self.num_envs, self.device)

    def update(self, buffer, step):
        if not buffer.full:
            return None
        data = buffer.data
        log_prob, entropy = categorical_log_prob_entropy(
            self.policy(data["features"].flatten(0, 1)), data["action"].flatten()
        )
        reward = data["reward"].flatten()
        loss = -(log_prob * (reward - reward.mean())).mean() - 0.01 * entropy.mean()
        self.optimizers["main"].zero_grad()
        loss.backward()
        self.optimizers["main"].step()
        buffer.reset()
        return {"loss": loss.detach()}


@dataclass
class ToyBCConfig:
    batch_size: int = 32
    lr: float = 1e-2


@register_agent
class ToyBC(Agent):
    """Behaviour cloning of a dataset with a linear policy: one gradient update per call."""

    Config = ToyBCConfig
    name = "toy_bc"
    source = "offline"

    def __init__(self, spec, num_envs, device="cpu", config=None, total_steps=None):
        super().__init__(spec, num_envs, device, total_steps)
        self.config = config or ToyBCConfig()
        self.policy = nn.Linear(spec.observation_space.shape[0], spec.action_space.n)
        self.to(self.device)
        self.optimizers["main"] = torch.optim.Adam(self.parameters(), lr=self.config.lr)

    def act(self, obs, state=None, is_first=None, deterministic=False):
        logits = self.policy(obs)
        action = logits.argmax(-1) if deterministic else categorical_sample(logits)
        return action, {}, state

    def update(self, buffer, step):
        data = buffer.sample(self.config.batch_size)
        log_prob, _ = categorical_log_prob_entropy(self.policy(data["obs"]), data["action"])
        loss = -log_prob.mean()
        self.optimizers["main"].zero_grad()
        loss.backward()
        self.optimizers["main"].step()
        return {"loss": loss.detach()}


@dataclass
class ToyDatasetConfig:
    steps: int = option(2000, ge=1)
    seed: int = option(0, ge=0)


def load_cartpole_heuristic(config, device):
    """``config.steps`` steps of CartPole played by the push-towards-the-pole heuristic (with 10%
    random actions), collected in memory on every load, from ``config.seed``."""
    steps, seed = config.steps, config.seed
    env = make_env("cartpole", 1, device=device)
    buffer = ReplayBuffer(steps, 1, device)
    obs = env.reset(seed=seed)
    generator = torch.Generator(device).manual_seed(seed)
    for _ in range(steps):
        push = (obs[:, 2] + obs[:, 3] > 0).long()
        random = torch.randint(2, (1,), generator=generator, device=device)
        explore = torch.rand(1, generator=generator, device=device) < 0.1
        action = torch.where(explore, random, push)
        result = env.step(action)
        buffer.add({"obs": obs, "action": action, "reward": result.reward,
                    "next_obs": result.next_obs, "terminated": result.terminated,
                    "truncated": result.truncated})
        obs = result.obs
    return OfflineDataset(spec=env.spec, buffer=buffer, env={"name": "cartpole"})


register_dataset("toy_cartpole", load_cartpole_heuristic, ToyDatasetConfig)


if __name__ == "__main__":
    from deeprl.train.cli import main

    main()
