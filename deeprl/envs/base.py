"""The one vector-environment interface every agent uses.

A :class:`VectorEnv` steps ``num_envs`` copies of an environment together. Observations, actions,
rewards and flags are batched torch tensors on ``env.device``. Episodes reset automatically: when
copy ``i`` finishes at step ``t``, ``StepResult.obs[i]`` is already the first observation of its
next episode, and ``StepResult.next_obs[i]`` is the last observation of the finished one (what a
critic bootstraps from on truncation).

Termination and truncation are kept apart: ``terminated`` means the MDP reached a terminal state
(value 0 beyond it); ``truncated`` means the episode was cut (time limit) and the value of
``next_obs`` still counts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from deeprl.envs.spec import EnvSpec


@dataclass
class StepResult:
    """One batched step. Shapes with N = num_envs.

    Attributes:
        obs: (N, *obs_shape) observation to act on next (already reset where an episode ended).
        next_obs: (N, *obs_shape) observation reached by this step, before any reset.
        reward: (N,) float32.
        terminated: (N,) bool, terminal state reached.
        truncated: (N,) bool, episode cut by a time limit (and not terminated).
        episode_return: (N,) float32, the undiscounted return of the episode that ended here
            (0 where ``done`` is False).
        episode_length: (N,) int64, its length in steps (0 where ``done`` is False).
        info: backend-specific extras as tensors (e.g. ``success`` for Meta-World).
    """

    obs: torch.Tensor
    next_obs: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    episode_return: torch.Tensor
    episode_length: torch.Tensor
    info: dict[str, torch.Tensor]

    @property
    def done(self) -> torch.Tensor:
        return self.terminated | self.truncated


class VectorEnv(ABC):
    """Abstract batched environment. Subclasses set ``spec``, ``num_envs`` and ``device``."""

    spec: EnvSpec
    num_envs: int
    device: torch.device

    @abstractmethod
    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every copy; returns observations (N, *obs_shape). A seed makes it reproducible."""

    @abstractmethod
    def step(self, action: torch.Tensor) -> StepResult:
        """Step every copy with ``action`` of shape (N,) (discrete) or (N, *action_shape)."""

    def sample_actions(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniformly random actions (N, ...) on ``self.device``."""
        space = self.spec.action_space
        if self.spec.discrete:
            return torch.randint(
                space.n, (self.num_envs,), device=self.device, generator=generator
            )
        low, high = space.bounds(self.device)
        u = torch.rand((self.num_envs, *space.shape), device=self.device, generator=generator)
        return low + u * (high - low)

    def state_dict(self) -> dict | None:
        """Everything needed to continue exactly where the env is, or None if not restorable."""
        return None

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot restore its state")

    def close(self) -> None:  # noqa: B027 (optional hook: a no-op unless the backend holds resources)
        """Free processes or simulators held by the env."""


class EpisodeTally:
    """Running return and length of each copy of a host-side (numpy) vector env."""

    def __init__(self, num_envs: int) -> None:
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)

    def reset(self) -> None:
        self.returns[:] = 0.0
        self.lengths[:] = 0

    def step(self, reward: np.ndarray, done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add one step; returns the finished episodes' (return, length), 0 where not done."""
        self.returns += reward
        self.lengths += 1
        episode_return = np.where(done, self.returns, 0.0)
        episode_length = np.where(done, self.lengths, 0)
        self.returns[done] = 0.0
        self.lengths[done] = 0
        return episode_return, episode_length


class HostVectorEnv(VectorEnv):
    """Base of vector envs whose backend steps on the host and returns numpy arrays (gymnasium,
    EnvPool). Subclasses set ``_tally = EpisodeTally(num_envs)`` and build each step's
    :class:`StepResult` with :meth:`_step_result`."""

    _tally: EpisodeTally

    def _to_torch(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array).to(self.device)

    def _step_result(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        info: dict[str, np.ndarray],
    ) -> StepResult:
        """One host step as a :class:`StepResult` on ``device``; advances the episode tally.

        Args:
            obs: (N, *obs_shape) observations after the autoreset.
            next_obs: (N, *obs_shape) observations reached by the step (the final ones where an
                episode ended).
            reward: (N,) rewards.
            terminated, truncated: (N,) bool flags as the backend reports them; a step flagged
                both is a termination (value 0 beyond it), not a truncation.
            info: numeric per-copy extras (N, ...).
        """
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool) & ~terminated
        episode_return, episode_length = self._tally.step(reward, terminated | truncated)
        return StepResult(
            obs=self._to_torch(obs),
            next_obs=self._to_torch(next_obs),
            reward=self._to_torch(np.asarray(reward, dtype=np.float32)),
            terminated=self._to_torch(terminated),
            truncated=self._to_torch(truncated),
            episode_return=self._to_torch(episode_return.astype(np.float32)),
            episode_length=self._to_torch(episode_length),
            info={k: self._to_torch(v) for k, v in info.items()},
        )
