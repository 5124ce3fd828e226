"""Gymnasium MuJoCo v5 locomotion and manipulation tasks (Todorov et al. 2012, "MuJoCo: A physics
engine for model-based control"; tasks as in Brockman et al. 2016 / gymnasium v5).

Protocol: the v5 tasks unchanged (default reset noise, healthy ranges and reward weights), state
observations as float32, episodes truncated at the task's time limit (1000 steps, 50 for Reacher,
100 for Pusher) and terminated where the task defines an unhealthy state (Hopper, Walker2d, Ant,
Humanoid, the inverted pendulums). ``pixels=True`` replaces the state by the rendered RGB frame,
uint8 (3, size, size), rendered headless (EGL). ``vectorization="warp"`` simulates the copies on
an NVIDIA GPU with MuJoCo Warp (``deeprl.envs.suites.warp``; every task but Humanoid and
HumanoidStandup).
"""

from __future__ import annotations

import gymnasium
import numpy as np
import torch

from deeprl.envs.base import VectorEnv
from deeprl.errors import UserError, close_matches

#: The gymnasium MuJoCo v5 tasks.
TASKS: tuple[str, ...] = (
    "Ant-v5", "HalfCheetah-v5", "Hopper-v5", "Humanoid-v5", "HumanoidStandup-v5",
    "InvertedDoublePendulum-v5", "InvertedPendulum-v5", "Pusher-v5", "Reacher-v5", "Swimmer-v5",
    "Walker2d-v5",
)  # fmt: skip


def task_names() -> list[str]:
    """The task names :func:`make_mujoco` accepts."""
    return list(TASKS)


class PixelObservation(gymnasium.ObservationWrapper):
    """Replaces the observation by the env's ``rgb_array`` render, as uint8 (3, H, W)."""

    def __init__(self, env: gymnasium.Env) -> None:
        super().__init__(env)
        height, width = env.unwrapped.height, env.unwrapped.width
        self.observation_space = gymnasium.spaces.Box(0, 255, (3, height, width), np.uint8)

    def observation(self, obs: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.env.render().transpose(2, 0, 1))


def make_mujoco(
    num_envs: int,
    device: torch.device | str = "cpu",
    task: str = "HalfCheetah-v5",
    vectorization: str = "sync",
    workers: int | None = None,
    pixels: bool = False,
    size: int = 64,
    render: bool = False,
    warp_allow_cpu: bool = False,
) -> VectorEnv:
    """A gymnasium MuJoCo v5 task.

    Args:
        num_envs: parallel copies.
        device: where tensors go.
        task: one of :data:`TASKS`, e.g. ``"HalfCheetah-v5"``.
        vectorization: ``"sync"``, ``"async"``, ``"envpool"`` or ``"warp"`` (GPU; the last two
            state observations only).
        workers: with ``vectorization="async"``, worker processes the copies are split over
            (None: one process per copy).
        pixels: observe rendered frames (3, size, size) uint8 instead of the state.
        size: rendered frame side, for ``pixels`` and ``render``.
        render: render RGB frames of copy 0 for eval videos (state observations kept).
        warp_allow_cpu: let ``vectorization="warp"`` run on Warp's CPU device when
            ``device="cpu"`` (slow: for debugging a pipeline without a GPU).

    Returns:
        A :class:`VectorEnv`: observations (N, obs_dim) float32 or (N, 3, size, size) uint8,
        actions (N, act_dim) in the task's bounds.
    """
    if task not in TASKS:
        raise UserError(
            f"unknown MuJoCo task {task!r}.{close_matches(task, TASKS)} Tasks: {', '.join(TASKS)}."
        )
    metadata = {"suite": "mujoco", "task": task, "pixels": pixels}
    if vectorization == "warp":
        from deeprl.envs.suites.warp import WarpMujocoVectorEnv

        if pixels or render:
            raise UserError(
                "MuJoCo Warp envs do not render in deeprl; use env.vectorization=sync or async "
                "for pixels=true or videos"
            )
        return WarpMujocoVectorEnv(task, num_envs, device, allow_cpu=warp_allow_cpu)
    if vectorization == "envpool":
        from deeprl.envs.suites.envpool_env import EnvPoolVectorEnv

        if pixels or render:
            raise UserError(
                "EnvPool's MuJoCo tasks cannot render; use env.vectorization=sync or async for "
                "pixels=true or videos"
            )
        return EnvPoolVectorEnv(task, num_envs, device, name=f"mujoco/{task}", metadata=metadata)

    from deeprl.envs.suites import gym_suite_env

    make_kwargs = {}
    if pixels or render:
        make_kwargs = {"render_mode": "rgb_array", "width": size, "height": size}
    return gym_suite_env(
        task, num_envs, device, vectorization, name=f"mujoco/{task}",
        max_episode_steps=gymnasium.spec(task).max_episode_steps, metadata=metadata,
        make_kwargs=make_kwargs, wrappers=[PixelObservation] if pixels else [],
        workers=workers,
    )  # fmt: skip
