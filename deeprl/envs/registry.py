"""Env names as used in configs (``env=cartpole``) and :func:`make_env`.

Naming scheme (also in docs/envs.md):
- torch-native, GPU-vectorized classic control: ``cartpole``, ``acrobot``, ``mountaincar``,
  ``mountaincar_continuous``, ``pendulum`` (``backend: torch``);
- any gymnasium id through gymnasium's vector envs: ``env=gym env.id=LunarLander-v3``
  (``backend: gym``, ``vectorization: sync | async``). The classic names accept
  ``env.backend=gym`` to run gymnasium's own implementation instead.
"""

from __future__ import annotations

from typing import Any

import torch

from deeprl.envs.base import VectorEnv
from deeprl.envs.classic import Acrobot, CartPole, MountainCar, MountainCarContinuous, Pendulum
from deeprl.envs.torch_env import TorchVectorEnv
from deeprl.errors import UserError, close_matches

#: torch-native envs by config name.
TORCH_ENVS: dict[str, type[TorchVectorEnv]] = {
    "cartpole": CartPole,
    "acrobot": Acrobot,
    "mountaincar": MountainCar,
    "mountaincar_continuous": MountainCarContinuous,
    "pendulum": Pendulum,
}


def make_env(
    name: str,
    num_envs: int,
    device: torch.device | str = "cpu",
    backend: str = "torch",
    env_id: str | None = None,
    **kwargs: Any,
) -> VectorEnv:
    """Build a :class:`VectorEnv`.

    Args:
        name: config name, e.g. ``"cartpole"``, ``"pendulum"`` or ``"gym"``.
        num_envs: number of copies stepped together.
        device: where observations, actions and rewards live.
        backend: ``"torch"`` (torch-native), ``"gym"`` (gymnasium vector env) or a benchmark
            suite of :mod:`deeprl.envs.suites` (``"atari"``, ``"mujoco"``, ``"dmc"``, ...).
        env_id: gymnasium id; required for ``name="gym"``, otherwise taken from the torch env.
        kwargs: backend options (``vectorization="sync"|"async"``, ``make_kwargs={...}``).
    """
    if backend == "torch":
        if name not in TORCH_ENVS:
            raise UserError(
                f"unknown torch-native env {name!r}.{close_matches(name, TORCH_ENVS)} "
                f"Torch-native envs: {', '.join(sorted(TORCH_ENVS))}; for any gymnasium id use "
                f"env=gym env.id=<id>."
            )
        return TORCH_ENVS[name](num_envs, device=device)
    if backend == "gym":
        from deeprl.envs.gym_env import GymVectorEnv

        if env_id is None:
            if name not in TORCH_ENVS:
                raise UserError(f"env {name!r} with backend gym needs env.id=<gymnasium id>")
            env_id = TORCH_ENVS[name].spec.id
        return GymVectorEnv(env_id, num_envs, device=device, **kwargs)
    from deeprl.envs.suites import SUITES, make_suite_env

    if backend in SUITES:
        return make_suite_env(backend, num_envs, device, **kwargs)
    backends = ["torch", "gym", *SUITES]
    raise UserError(
        f"unknown env backend {backend!r}.{close_matches(backend, backends)} "
        f"Backends: {', '.join(backends)}"
    )
