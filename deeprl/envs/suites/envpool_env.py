"""EnvPool (Weng et al. 2022, "EnvPool: A Highly Parallel Reinforcement Learning Environment
Execution Engine", NeurIPS Datasets and Benchmarks) as a :class:`VectorEnv`.

EnvPool steps its copies in C++ threads. Its gymnasium API resets a finished copy on the *next*
step; this adapter resets it at once (``reset(env_id=...)``), so the semantics match the gymnasium
path: ``obs`` is the first observation of the next episode and ``next_obs`` the final one.
Terminated and truncated come from EnvPool (truncation at ``max_episode_steps`` agent steps).
Dict observations (DeepMind Control) are flattened into one float32 vector in key order.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from deeprl.envs.base import EpisodeTally, HostVectorEnv, StepResult
from deeprl.envs.spec import Box, Discrete, EnvSpec
from deeprl.errors import UserError, close_matches

#: EnvPool info entries that describe its bookkeeping rather than the env.
_BOOKKEEPING = ("env_id", "players", "elapsed_step", "reward", "terminated", "ram")


def _flatten(obs: Any) -> np.ndarray:
    """(N, ...) array, or a dict of them flattened to (N, D) float32 in key order."""
    if isinstance(obs, dict):
        return np.concatenate(
            [np.asarray(v, dtype=np.float32).reshape(len(v), -1) for v in obs.values()], axis=1
        )
    return np.asarray(obs)


def _resolve(task_id: str, known: list[str]) -> str:
    """EnvPool's id for ``task_id``, ignoring case and punctuation ("humanoid_CMU-run-v1" ->
    "HumanoidCMURun-v1").

    Raises:
        UserError: EnvPool has no such task.
    """

    def key(name: str) -> str:
        return re.sub(r"[^a-z0-9]", "", name.lower())

    matches = [name for name in known if key(name) == key(task_id)]
    if not matches:
        raise UserError(
            f"EnvPool has no task {task_id!r}.{close_matches(task_id, known)} "
            f"Use env.vectorization=sync or async."
        )
    return task_id if task_id in matches else matches[0]


class EnvPoolVectorEnv(HostVectorEnv):
    """``envpool.make_gymnasium(task_id, num_envs, **config)`` behind the VectorEnv interface.

    Args:
        task_id: EnvPool task, e.g. ``"Pong-v5"``, ``"HalfCheetah-v5"``, ``"WalkerWalk-v1"``.
        num_envs: parallel copies.
        device: where tensors go.
        name: spec id shown to users.
        metadata: protocol facts for ``spec.metadata``.
        config: EnvPool options (``max_episode_steps``, ``frame_skip``, ...).
    """

    def __init__(
        self,
        task_id: str,
        num_envs: int,
        device: torch.device | str,
        name: str,
        metadata: dict[str, Any],
        **config: Any,
    ) -> None:
        try:
            import envpool
        except ModuleNotFoundError as e:
            raise UserError(
                'env.vectorization=envpool needs EnvPool: pip install "deeprl[envpool]"'
            ) from e
        self.task_id, self.config = _resolve(task_id, envpool.list_all_envs()), config
        self.env = envpool.make_gymnasium(self.task_id, num_envs=num_envs, **config)
        self.num_envs = num_envs
        self.device = torch.device(device)
        obs_space, act_space = self.env.observation_space, self.env.action_space
        if hasattr(obs_space, "spaces"):  # Dict
            dim = sum(int(np.prod(s.shape)) for s in obs_space.spaces.values())
            observation = Box.uniform((dim,), -np.inf, np.inf)
        elif obs_space.dtype == np.uint8:
            observation = Box.uniform(tuple(obs_space.shape), 0, 255, torch.uint8)
        else:
            observation = Box(
                tuple(obs_space.shape), tuple(map(float, obs_space.low.ravel())),
                tuple(map(float, obs_space.high.ravel())),
            )  # fmt: skip
        if hasattr(act_space, "n"):
            action = Discrete(int(act_space.n))
        else:
            action = Box(
                tuple(act_space.shape), tuple(map(float, act_space.low.ravel())),
                tuple(map(float, act_space.high.ravel())),
            )  # fmt: skip
        self._obs_dtype = np.uint8 if observation.dtype == torch.uint8 else np.float32
        self._action_dtype = act_space.dtype
        self.spec = EnvSpec(
            id=name,
            observation_space=observation,
            action_space=action,
            max_episode_steps=int(self.env.spec.config.max_episode_steps),
            metadata={**metadata, "backend": "envpool", "vectorization": "envpool"},
        )
        self._tally = EpisodeTally(num_envs)
        self.reset()

    def _obs(self, obs: Any) -> np.ndarray:
        return _flatten(obs).astype(self._obs_dtype, copy=False)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every copy. EnvPool seeds at construction, so a seed rebuilds the pool."""
        if seed is not None:
            self.env.close()
            import envpool

            self.env = envpool.make_gymnasium(
                self.task_id, num_envs=self.num_envs, seed=seed, **self.config
            )
        obs, _ = self.env.reset()
        self._tally.reset()
        return self._to_torch(self._obs(obs))

    def step(self, action: torch.Tensor) -> StepResult:
        action = action.detach().cpu().numpy().astype(self._action_dtype, copy=False)
        obs, reward, terminated, truncated, info = self.env.step(action)
        next_obs = self._obs(obs)
        done = terminated | truncated
        obs = next_obs
        if done.any():
            rows = np.flatnonzero(done)
            reset_obs, _ = self.env.reset(env_id=rows)
            obs = next_obs.copy()
            obs[rows] = self._obs(reset_obs)
        extras = {
            k: np.asarray(v)
            for k, v in info.items()
            if k not in _BOOKKEEPING and np.asarray(v).dtype.kind in "biuf"
        }
        return self._step_result(obs, next_obs, reward, terminated, truncated, extras)

    def close(self) -> None:
        self.env.close()
