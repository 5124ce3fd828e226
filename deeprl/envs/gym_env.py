"""Any gymnasium environment as a :class:`VectorEnv`, through gymnasium's own vector envs.

gymnasium steps the copies in this process (``"sync"``) or in one subprocess each (``"async"``;
with ``workers``, :class:`~deeprl.envs.pool.PooledAsyncVectorEnv` spreads them over that many
subprocesses instead), with same-step autoreset: when copy ``i`` finishes, it is reset at once
and the last observation of the finished episode is reported in ``info["final_obs"]``. That maps
directly onto :class:`StepResult` (``obs`` the reset observation, ``next_obs`` the final one).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import gymnasium
import numpy as np
import torch

from deeprl.envs.base import EpisodeTally, HostVectorEnv, StepResult
from deeprl.envs.pool import PooledAsyncVectorEnv
from deeprl.envs.spec import Box, Discrete, EnvSpec, Space
from deeprl.errors import UserError, close_matches

# gymnasium renders eval videos offscreen through pygame; on a machine without a display, SDL's
# video driver probe prints "XDG_RUNTIME_DIR is invalid" at every render. (SDL reads it when
# pygame initializes.)
if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def find_gym_spec(env_id: str) -> gymnasium.envs.registration.EnvSpec:
    """gymnasium's spec of ``env_id``; a ``module:Id`` prefix is imported first (as gymnasium does).

    Raises:
        UserError: unknown id (listing close matches from ``gymnasium.registry``) or module.
    """
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            raise UserError(f"cannot import {module!r} to register {name!r}: {e}") from e
    try:
        return gymnasium.spec(name)
    except (gymnasium.error.NameNotFound, gymnasium.error.NamespaceNotFound) as e:
        raise UserError(
            f"unknown gymnasium env id {name!r}.{close_matches(name, gymnasium.registry)}"
        ) from e
    except gymnasium.error.Error as e:  # e.g. a version that does not exist or is deprecated
        raise UserError(f"gymnasium env id {name!r}: {e}") from e


def _import_entry_point(gym_spec: gymnasium.envs.registration.EnvSpec) -> None:
    """Import the module of the env's entry point here, so that a missing dependency raises in
    this process (not in a worker) and as one line.

    Raises:
        UserError: gymnasium's DependencyNotInstalled (e.g. LunarLander without Box2D), whose
            message names the package and its pip command.
    """
    if isinstance(gym_spec.entry_point, str):
        try:
            importlib.import_module(gym_spec.entry_point.partition(":")[0])
        except gymnasium.error.DependencyNotInstalled as e:
            reason = str(e).strip().splitlines()[0]
            raise UserError(
                f"gymnasium env {gym_spec.id!r} needs a package that is not installed: {reason}"
            ) from e


def _box_from_gym(space: gymnasium.spaces.Box, dtype: torch.dtype) -> Box:
    low = tuple(float(v) for v in np.asarray(space.low, dtype=np.float64).ravel())
    high = tuple(float(v) for v in np.asarray(space.high, dtype=np.float64).ravel())
    return Box(tuple(space.shape), low, high, dtype)


def _observation_space(space: gymnasium.Space, env_id: str) -> Box:
    if not isinstance(space, gymnasium.spaces.Box):
        raise UserError(
            f"{env_id} has observation space {space}; deeprl needs a Box. Pass a gymnasium "
            f"wrapper that turns it into one (wrappers=[...])."
        )
    # Pixels stay uint8 (4x smaller in buffers); everything else becomes float32.
    return _box_from_gym(space, torch.uint8 if space.dtype == np.uint8 else torch.float32)


def _action_space(space: gymnasium.Space, env_id: str) -> Space:
    if isinstance(space, gymnasium.spaces.Discrete):
        return Discrete(int(space.n))
    if isinstance(space, gymnasium.spaces.Box):
        return _box_from_gym(space, torch.float32)
    raise UserError(
        f"{env_id} has action space {space}; deeprl supports Discrete and Box actions. Pass a "
        f"gymnasium wrapper that turns it into one (wrappers=[...])."
    )


def _numeric(value: Any) -> np.ndarray | None:
    """``value`` if it is a numeric or bool array (a batched info entry), else None."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    return None


def _info_arrays(info: dict[str, Any]) -> dict[str, np.ndarray]:
    """Numeric per-copy info entries (N, ...). For finished copies gymnasium reports the step's
    info under ``final_info`` (the top level holds the reset's): use it."""
    final = info.get("final_info", {})
    arrays = {}
    for key in [*info, *(k for k in final if k not in info)]:
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        value, final_value = _numeric(info.get(key)), _numeric(final.get(key))
        if final_value is not None:
            mask = final[f"_{key}"].reshape(-1, *(1,) * (final_value.ndim - 1))
            value = final_value if value is None else np.where(mask, final_value, value)
        if value is not None:
            arrays[key] = value
    return arrays


class _Wrapped:
    """``fn()`` with ``wrappers`` applied, innermost first (a class, so it pickles for async)."""

    def __init__(
        self,
        fn: Callable[[], gymnasium.Env],
        wrappers: tuple[Callable[[gymnasium.Env], gymnasium.Env], ...],
    ) -> None:
        self.fn, self.wrappers = fn, wrappers

    def __call__(self) -> gymnasium.Env:
        env = self.fn()
        for wrapper in self.wrappers:
            env = wrapper(env)
        return env


class GymVectorEnv(HostVectorEnv):
    """gymnasium ``env_id`` vectorized by gymnasium's ``SyncVectorEnv`` or ``AsyncVectorEnv``.

    Observations come back as torch tensors on ``device`` (N, *obs_shape): float32, or uint8 for
    uint8 (pixel) boxes. Actions (N,) long or (N, *action_shape) float are sent as numpy arrays of
    the action space's dtype. Episode returns and lengths are summed here, per copy.

    Not restorable: :meth:`state_dict` returns None, because the simulators behind gymnasium
    cannot be saved in general; a resumed run starts fresh episodes.

    Args:
        env_id: gymnasium id, e.g. ``"LunarLander-v3"``, or ``"module:Id"`` to import a module
            that registers it.
        num_envs: number of copies.
        device: where observations, rewards and flags are put.
        vectorization: ``"sync"`` (one process) or ``"async"`` (subprocesses).
        workers: with ``"async"``, the number of subprocesses the copies are split over
            (contiguous groups); None: one per copy (gymnasium's ``AsyncVectorEnv``).
        seed: seeds the reset made at construction (copy ``i`` gets ``seed + i``).
        make_kwargs: keyword arguments of ``gymnasium.make`` (e.g. ``max_episode_steps``).
        wrappers: functions applied to each single env, innermost first.
        env_fns: one factory per copy, for copies that differ (e.g. one task each); they are
            vectorized as given, ``env_id`` is then only the label (spec id, messages), the spec's
            ``max_episode_steps`` is None, and ``make_kwargs`` must be empty. All copies must
            have the same spaces. ``"async"`` needs picklable factories (and wrappers).
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        device: torch.device | str = "cpu",
        vectorization: str = "sync",
        seed: int | None = None,
        make_kwargs: dict[str, Any] | None = None,
        wrappers: Sequence[Callable[[gymnasium.Env], gymnasium.Env]] | None = None,
        env_fns: Sequence[Callable[[], gymnasium.Env]] | None = None,
        workers: int | None = None,
    ) -> None:
        if vectorization not in ("sync", "async"):
            raise UserError(f"unknown vectorization {vectorization!r}; choose 'sync' or 'async'")
        if num_envs < 1:
            raise UserError(f"num_envs must be >= 1, got {num_envs}")
        if workers is not None and (vectorization != "async" or not 1 <= workers <= num_envs):
            raise UserError(
                f"workers={workers}: worker processes need env.vectorization=async and "
                f"1 <= workers <= num_envs ({num_envs}); use workers=null for one per copy"
            )
        make_kwargs = dict(make_kwargs or {})
        autoreset = gymnasium.vector.AutoresetMode.SAME_STEP
        if env_fns is None:
            gym_spec = find_gym_spec(env_id)
            spec_id, max_episode_steps = gym_spec.id, gym_spec.max_episode_steps
            _import_entry_point(gym_spec)
            if workers is None:
                self.env = gymnasium.make_vec(
                    env_id,
                    num_envs=num_envs,
                    vectorization_mode=vectorization,
                    vector_kwargs={"autoreset_mode": autoreset},
                    wrappers=list(wrappers or ()),
                    **make_kwargs,
                )
            else:
                make = partial(gymnasium.make, env_id, **make_kwargs)
                copy = _Wrapped(make, tuple(wrappers or ()))
                self.env = PooledAsyncVectorEnv([copy] * num_envs, workers)
        else:
            if len(env_fns) != num_envs:
                raise UserError(
                    f"{env_id}: num_envs={num_envs} but {len(env_fns)} env_fns were given; "
                    f"pass one factory per copy"
                )
            if make_kwargs:
                raise UserError(
                    f"{env_id}: make_kwargs ({', '.join(make_kwargs)}) are for gymnasium.make; "
                    f"with env_fns, build each env with them in its factory"
                )
            spec_id, max_episode_steps = env_id, None
            fns = [_Wrapped(fn, tuple(wrappers or ())) if wrappers else fn for fn in env_fns]
            if workers is not None:
                self.env = PooledAsyncVectorEnv(fns, workers)
            else:
                vector_cls = {
                    "sync": gymnasium.vector.SyncVectorEnv,
                    "async": gymnasium.vector.AsyncVectorEnv,
                }[vectorization]
                self.env = vector_cls(fns, autoreset_mode=autoreset)
        self.num_envs = num_envs
        self.device = torch.device(device)
        metadata = {"backend": "gym", "vectorization": vectorization, "workers": workers}
        # An env (or wrapper) that names its observation's features passes them on (tree
        # agents' SHAP tables use them).
        if "feature_names" in (self.env.metadata or {}):
            metadata["feature_names"] = list(self.env.metadata["feature_names"])
        self.spec = EnvSpec(
            id=spec_id,
            observation_space=_observation_space(self.env.single_observation_space, env_id),
            action_space=_action_space(self.env.single_action_space, env_id),
            max_episode_steps=make_kwargs.get("max_episode_steps", max_episode_steps),
            metadata=metadata,
        )
        self._obs_dtype = (
            np.uint8 if self.spec.observation_space.dtype == torch.uint8 else np.float32
        )
        action_space = self.env.single_action_space
        self._action_dtype = action_space.dtype
        # gymnasium's Discrete may count from `start`; deeprl's actions count from 0.
        self._action_start = int(getattr(action_space, "start", 0))
        self._tally = EpisodeTally(num_envs)
        # Reset now so that step() is valid straight away, as for the torch-native envs.
        self.reset(seed)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        obs, _ = self.env.reset(seed=seed)
        self._tally.reset()
        return self._to_torch(np.asarray(obs, dtype=self._obs_dtype))

    def step(self, action: torch.Tensor) -> StepResult:
        action = action.detach().cpu().numpy().astype(self._action_dtype, copy=False)
        if self._action_start:
            action = action + self._action_start
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs = np.asarray(obs, dtype=self._obs_dtype)
        done = terminated | truncated
        next_obs = obs
        if done.any():
            next_obs = obs.copy()
            rows = np.flatnonzero(done)
            next_obs[rows] = np.stack([info["final_obs"][i] for i in rows])
        return self._step_result(obs, next_obs, reward, terminated, truncated, _info_arrays(info))

    def close(self) -> None:
        self.env.close()
