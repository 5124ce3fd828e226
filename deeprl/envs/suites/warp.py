"""MuJoCo Warp backend (MJWarp: MuJoCo on NVIDIA GPUs through NVIDIA Warp; Google DeepMind and
NVIDIA, 2025), a placeholder until its batched envs land.

This module checks what the backend needs and says what is missing, in this order: the
``warp`` extra (``mujoco-warp``, which needs a newer ``mujoco`` than metaworld 3.1.1's pinned
3.3.0, so it goes in its own virtual environment; see docs/envs.md), then a CUDA device.
"""

from __future__ import annotations

import importlib.util

import torch

from deeprl.envs.base import VectorEnv
from deeprl.errors import UserError


def task_names() -> list[str]:
    """No tasks yet: the backend is a placeholder."""
    return []


def make_warp(
    num_envs: int, device: torch.device | str = "cpu", task: str = "HalfCheetah-v5"
) -> VectorEnv:
    """Raises a :class:`UserError` naming what is missing (extra, GPU) or, with both present,
    that MuJoCo Warp envs are not implemented yet (use the ``mujoco`` suite)."""
    if importlib.util.find_spec("mujoco_warp") is None:
        raise UserError(
            'the MuJoCo Warp backend needs the warp extra: pip install "deeprl[warp]" (in a '
            "virtual environment without deeprl[metaworld], whose mujoco pin conflicts; see "
            "docs/envs.md)"
        )
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        raise UserError(
            f"the MuJoCo Warp backend runs on an NVIDIA GPU; got device={device!s} "
            f"(CUDA available: {torch.cuda.is_available()}). Use device=cuda, or env=mujoco/"
            f"<task> for the CPU simulator."
        )
    raise UserError(
        f"MuJoCo Warp envs are not implemented yet ({task}); use env=mujoco/<task> (CPU MuJoCo) "
        f"or env.vectorization=envpool"
    )
