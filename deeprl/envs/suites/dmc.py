"""DeepMind Control Suite tasks (Tassa et al. 2018, "DeepMind Control Suite", arXiv:1801.00690).

Protocol (as in the suite and the pixel-based benchmarks built on it, e.g. PlaNet/Dreamer):
``domain-task`` names (``walker-walk``), episodes of 1000 simulator control steps, i.e.
``1000 / action_repeat`` agent steps, ended by the time limit: a *truncation* (dm_control's
discount stays 1), a termination only where the task returns discount 0. Rewards are summed over
the repeated steps. State observations are dm_control's observation dict flattened in its order,
float32; ``pixels=True`` renders camera ``camera`` at size x size, uint8 (3, size, size),
headless (EGL).
"""

from __future__ import annotations

import gymnasium
import numpy as np
import torch

from deeprl.envs.base import VectorEnv
from deeprl.envs.render import setup_headless_gl
from deeprl.errors import UserError, close_matches

setup_headless_gl()


def _in1d(ar1, ar2, assume_unique: bool = False, invert: bool = False) -> np.ndarray:
    """numpy's ``in1d``, which numpy 2.4 removed: ``isin`` flattened, as numpy documents."""
    return np.isin(ar1, ar2, assume_unique=assume_unique, invert=invert).ravel()


if not hasattr(np, "in1d"):  # dm-control 1.0.28's quadruped still calls it
    np.in1d = _in1d  # noqa: NPY201


#: gymnasium id under which :class:`DMCEnv` is registered (task options go to ``gymnasium.make``).
GYM_ID = "deeprl/DMC-v0"


def task_names() -> list[str]:
    """Every dm_control suite task as ``domain-task``."""
    from dm_control import suite

    return [f"{domain}-{task}" for domain, task in suite.ALL_TASKS]


def check_task(task: str) -> tuple[str, str]:
    """(domain, task) of ``"domain-task"``; raises UserError with close matches if unknown."""
    names = task_names()
    if task not in names:
        raise UserError(
            f"unknown DeepMind Control task {task!r}.{close_matches(task, names)} "
            f"Name it domain-task, e.g. walker-walk (`deeprl-envs --suite dmc` lists them)."
        )
    domain, _, name = task.partition("-")
    return domain, name


class DMCEnv(gymnasium.Env):
    """One dm_control task as a gymnasium env with action repeat.

    Observations: (D,) float32 state, or (3, size, size) uint8 pixels. Actions: (A,) float32 in
    the task's action bounds. ``info["discount"]`` is dm_control's discount of the last step.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        task: str = "walker-walk",
        action_repeat: int = 1,
        pixels: bool = False,
        size: int = 64,
        camera: int = 0,
        render_mode: str | None = None,
    ) -> None:
        from dm_control import suite

        if action_repeat < 1:
            raise UserError(f"action_repeat must be >= 1, got {action_repeat}")
        self._domain, self._task = check_task(task)
        self._suite = suite
        self._env = suite.load(self._domain, self._task)
        self.action_repeat, self.pixels = action_repeat, pixels
        self.size, self.camera = size, camera
        self.render_mode = render_mode
        control_rate = 1.0 / (self._env.control_timestep() * action_repeat)
        self.metadata = {**self.metadata, "render_fps": round(control_rate)}
        spec = self._env.action_spec()
        self.action_space = gymnasium.spaces.Box(
            spec.minimum.astype(np.float32), spec.maximum.astype(np.float32), dtype=np.float32
        )
        if pixels:
            self.observation_space = gymnasium.spaces.Box(0, 255, (3, size, size), np.uint8)
        else:
            dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
            self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (dim,), np.float32)

    def _observation(self, time_step) -> np.ndarray:
        if self.pixels:
            return np.ascontiguousarray(self.render().transpose(2, 0, 1))
        return np.concatenate(
            [np.asarray(v, dtype=np.float32).ravel() for v in time_step.observation.values()]
        )

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:  # dm_control seeds its task at load time
            self._env = self._suite.load(self._domain, self._task, task_kwargs={"random": seed})
        return self._observation(self._env.reset()), {}

    def step(self, action: np.ndarray):
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(action)
            reward += time_step.reward or 0.0
            if time_step.last():
                break
        last = time_step.last()
        discount = float(time_step.discount)
        terminated = last and discount == 0.0
        info = {"discount": discount}
        return self._observation(time_step), reward, terminated, last and not terminated, info

    def render(self) -> np.ndarray:
        """(size, size, 3) uint8 frame of camera ``camera``."""
        return self._env.physics.render(self.size, self.size, camera_id=self.camera)

    def close(self) -> None:
        self._env.close()


gymnasium.register(GYM_ID, entry_point=f"{__name__}:DMCEnv")


def make_dmc(
    num_envs: int,
    device: torch.device | str = "cpu",
    task: str = "walker-walk",
    vectorization: str = "sync",
    workers: int | None = None,
    action_repeat: int = 1,
    pixels: bool = False,
    size: int = 64,
    camera: int = 0,
    render: bool = False,
) -> VectorEnv:
    """A DeepMind Control task.

    Args:
        num_envs: parallel copies.
        device: where tensors go.
        task: ``"domain-task"``, e.g. ``"walker-walk"``, ``"cheetah-run"``.
        vectorization: ``"sync"``, ``"async"`` or ``"envpool"`` (state, action_repeat=1 only).
        workers: with ``vectorization="async"``, worker processes the copies are split over
            (None: one process per copy).
        action_repeat: simulator steps per agent step (rewards summed).
        pixels: observe (3, size, size) uint8 frames instead of the state.
        size: frame side for ``pixels`` and ``render``.
        camera: camera id to render.
        render: render frames of copy 0 for eval videos (observations unchanged).

    Returns:
        A :class:`VectorEnv` with (N, D) float32 or (N, 3, size, size) uint8 observations.
    """
    check_task(task)
    metadata = {"suite": "dmc", "task": task, "action_repeat": action_repeat, "pixels": pixels,
                "size": size, "camera": camera}  # fmt: skip
    # dm_control tasks run 1000 control steps (ball_in_cup, finger, ... included).
    max_steps = -(-1000 // action_repeat)
    if vectorization == "envpool":
        from deeprl.envs.suites.envpool_env import EnvPoolVectorEnv

        if pixels or render or action_repeat != 1:
            raise UserError(
                "EnvPool's DeepMind Control tasks have state observations, no rendering and no "
                "action repeat; use env.vectorization=sync or async for pixels, videos or "
                "action_repeat > 1"
            )
        return EnvPoolVectorEnv(
            f"{task}-v1", num_envs, device, name=f"dmc/{task}", metadata=metadata
        )

    from deeprl.envs.suites import gym_suite_env

    return gym_suite_env(
        GYM_ID, num_envs, device, vectorization, name=f"dmc/{task}", max_episode_steps=max_steps,
        metadata=metadata,
        make_kwargs={"task": task, "action_repeat": action_repeat, "pixels": pixels,
                     "size": size, "camera": camera,
                     "render_mode": "rgb_array" if render else None},
        workers=workers,
    )  # fmt: skip
