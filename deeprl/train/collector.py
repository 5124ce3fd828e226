"""The collector: runs the agent's policy in a vector env and hands out batched transitions."""

from __future__ import annotations

import torch

from deeprl.agent import Agent
from deeprl.envs.base import VectorEnv
from deeprl.envs.spec import Box


class Collector:
    """Steps ``env`` with ``agent.act`` and keeps the running observation and episode tallies.

    Each :meth:`step` returns one batched transition (dict of (N, ...) tensors) with the keys
    ``obs, action, reward, next_obs, terminated, truncated`` plus the agent's extras. Continuous
    actions are clipped to the action box before reaching the env; the buffer keeps the action the
    policy sampled (its log-probability refers to that one). Episode returns are summed on the
    device, so collecting never waits for the host.
    """

    def __init__(self, env: VectorEnv, agent: Agent, seed: int | None = None) -> None:
        self.env = env
        self.agent = agent
        self.obs = env.reset(seed=seed)
        self.steps = 0
        space = env.spec.action_space
        self._bounds = space.bounds(env.device) if isinstance(space, Box) else None
        self._zero_tallies()

    def _zero_tallies(self) -> None:
        device = self.env.device
        self.return_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.length_sum = torch.zeros((), dtype=torch.int64, device=device)
        self.episodes = torch.zeros((), dtype=torch.int64, device=device)

    def step(self) -> dict[str, torch.Tensor]:
        obs = self.obs
        with torch.inference_mode():
            action, extras = self.agent.act(obs)
        env_action = action if self._bounds is None else action.clamp(*self._bounds)
        result = self.env.step(env_action)
        self.obs = result.obs
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
            "tallies": torch.stack(
                [self.return_sum, self.length_sum.double(), self.episodes.double()]
            ),
            "env": self.env.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        env_state = state.get("env")
        if env_state is None:
            # Simulators behind gymnasium cannot be restored: start fresh episodes.
            return
        self.env.load_state_dict(env_state)
        self.obs = state["obs"].to(self.env.device)
        self.steps = int(state["steps"])
        tallies = state["tallies"].to(self.env.device)
        self.return_sum = tallies[0].clone()
        self.length_sum = tallies[1].round().long()
        self.episodes = tallies[2].round().long()
