"""The collector: runs the agent's policy in a vector env and hands out batched transitions."""

from __future__ import annotations

import torch

from deeprl.agent import Agent, reward_observer
from deeprl.envs.base import VectorEnv
from deeprl.envs.spec import Box


class Collector:
    """Steps ``env`` with ``agent.act`` and keeps the running observation, the policy state of
    the env copies and the episode tallies.

    Each :meth:`step` returns one batched transition (dict of (N, ...) tensors) with the keys
    ``obs, action, reward, next_obs, terminated, truncated`` plus the agent's extras. Continuous
    actions are clipped to the action box before reaching the env; the buffer keeps the action the
    policy sampled (its log-probability refers to that one). Episode returns are summed on the
    device, so collecting never waits for the host.
    """

    def __init__(self, env: VectorEnv, agent: Agent, seed: int | None = None) -> None:
        self.env = env
        self.agent = agent
        self.steps = 0
        space = env.spec.action_space
        self._bounds = space.bounds(env.device) if isinstance(space, Box) else None
        self._observe = reward_observer(agent)
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        """Start fresh episodes in every copy, with a fresh policy state."""
        self.obs = self.env.reset(seed=seed)
        self.policy_state = self.agent.initial_state(self.env.num_envs)
        self.is_first = torch.ones(self.env.num_envs, dtype=torch.bool, device=self.env.device)
        self._zero_tallies()

    def _zero_tallies(self) -> None:
        device = self.env.device
        self.return_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.length_sum = torch.zeros((), dtype=torch.int64, device=device)
        self.episodes = torch.zeros((), dtype=torch.int64, device=device)

    def step(self) -> dict[str, torch.Tensor]:
        obs = self.obs
        with torch.inference_mode():
            action, extras, self.policy_state = self.agent.act(
                obs, self.policy_state, self.is_first
            )
        env_action = action if self._bounds is None else action.clamp(*self._bounds)
        result = self.env.step(env_action)
        if self._observe is not None:
            with torch.inference_mode():
                self.policy_state = self._observe(self.policy_state, result.reward)
        self.obs = result.obs
        self.is_first = result.done
        self.steps += self.env.num_envs
        self.return_sum += result.episode_return.sum()
        self.length_sum += result.episode_length.sum()
        self.episodes += result.done.sum()
        return {
            "obs": obs,
            "action": action,
            "reward": result.reward,
            "next_obs": result.next_obs,
            "terminated": result.terminated,
            "truncated": result.truncated,
            **extras,
        }

    def pop_episode_stats(self) -> dict[str, float]:
        """Mean return and length of the episodes finished since the last call (may be empty)."""
        count = int(self.episodes.item())
        stats = {}
        if count:
            stats = {
                "train/episode_return": self.return_sum.item() / count,
                "train/episode_length": self.length_sum.item() / count,
                "train/episodes": count,
            }
        self._zero_tallies()
        return stats

    def state_dict(self) -> dict:
        return {
            "obs": self.obs,
            "steps": self.steps,
            "policy_state": self.policy_state,
            "is_first": self.is_first,
            "tallies": torch.stack(
                [self.return_sum, self.length_sum.double(), self.episodes.double()]
            ),
            "env": self.env.state_dict(),
        }

    def load_state_dict(self, state: dict) -> bool:
        """Continue where ``state`` left off. Returns False when the env cannot restore its
        state (simulators behind gymnasium): the collector then keeps the fresh episodes it
        started, with a fresh policy state, and the caller must close the stored episodes."""
        self.steps = int(state["steps"])
        env_state = state.get("env")
        if env_state is None:
            return False
        device = self.env.device
        self.env.load_state_dict(env_state)
        self.obs = state["obs"].to(device)
        self.policy_state = _to_device(state["policy_state"], device)
        self.is_first = state["is_first"].to(device)
        tallies = state["tallies"].to(device)
        self.return_sum = tallies[0].clone()
        self.length_sum = tallies[1].round().long()
        self.episodes = tallies[2].round().long()
        return True


def _to_device(state, device: torch.device):
    """A policy state (None, tensor or nested dict of tensors) moved to ``device``."""
    if state is None:
        return None
    if isinstance(state, dict):
        return {k: _to_device(v, device) for k, v in state.items()}
    return state.to(device)
