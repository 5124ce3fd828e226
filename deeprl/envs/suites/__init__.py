"""Benchmark environment suites: Atari, MuJoCo, DeepMind Control, Meta-World.

Each suite is a function ``make_<suite>(num_envs, device, **options) -> VectorEnv`` in its own
module; :func:`make_suite_env` picks one by name, and :data:`SUITES` describes them for discovery
(``deeprl-envs``). The gymnasium path vectorizes with :class:`~deeprl.envs.gym_env.GymVectorEnv`
(``vectorization="sync" | "async"``); ``vectorization="envpool"`` uses EnvPool (Weng et al. 2022)
where the suite has it, and MuJoCo also takes ``vectorization="warp"`` (MuJoCo Warp on a GPU).
Configs: ``configs/env/{atari,atari100k,dmc,metaworld}.yaml`` and
``configs/env/mujoco/<task>.yaml`` (``backend: <suite>``); docs/envs.md has the details.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import torch

from deeprl.envs.base import VectorEnv
from deeprl.envs.render import setup_headless_gl
from deeprl.errors import UserError, close_matches

setup_headless_gl()  # before any suite imports mujoco


def quiet_simulator_logs() -> None:
    """Drop the INFO lines the simulators log when imported, which an INFO root logger (Hydra's)
    would print: dm_control's GL backend and MuJoCo version (absl), PyOpenGL's missing
    accelerate module. Their warnings and errors still show."""
    logging.getLogger("OpenGL").setLevel(logging.WARNING)
    if importlib.util.find_spec("absl") is not None:
        from absl import logging as absl_logging

        absl_logging.get_absl_logger().setLevel(logging.WARNING)


quiet_simulator_logs()


@dataclass(frozen=True)
class Suite:
    """One benchmark suite, for :func:`make_suite_env` and the ``deeprl-envs`` catalogue.

    Attributes:
        make: ``"module:function"`` building the env (imported on use, so a missing extra only
            matters for the suite that needs it).
        paper: the benchmark paper whose protocol the suite implements.
        protocol: one line on observation/action/episode settings.
        extra: the ``pip install "deeprl[<extra>]"`` that provides its simulator.
        modules: the modules that extra installs, checked before the suite is used (the suite
            modules import them lazily, so a missing one would otherwise surface mid-call).
        names: ``"module:function"`` listing its env names.
        subset: optional (label, ``"module:function"``) of a named subset, e.g. Atari100k.
    """

    make: str
    paper: str
    protocol: str
    extra: str
    modules: tuple[str, ...]
    names: str
    subset: tuple[str, str] | None = None

    def function(self, attribute: str) -> Callable[..., Any]:
        """The suite's ``make``, ``names`` or ``subset`` function; raises UserError naming the
        ``pip install`` to run if a module of its extra is missing."""
        missing = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if missing:
            raise UserError(
                f"this suite needs {missing[0]!r}, which is not installed: "
                f'pip install "deeprl[{self.extra}]"'
            )
        target = self.subset[1] if attribute == "subset" else getattr(self, attribute)
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)


SUITES: dict[str, Suite] = {
    "atari": Suite(
        make="deeprl.envs.suites.atari:make_atari",
        paper="Machado et al. 2018 (ALE protocol); Kaiser et al. 2020 (Atari100k)",
        protocol="protocol=machado: sticky 0.25, skip 4, 84x84 gray x4, 108k-frame cap; "
        "protocol=atari100k: no sticky, 30 no-ops, skip 4, 64x64 RGB",
        extra="atari",
        modules=("ale_py", "cv2"),
        names="deeprl.envs.suites.atari:game_names",
        subset=("Atari100k games (Kaiser et al. 2020)", "deeprl.envs.suites.atari:atari100k_games"),
    ),
    "mujoco": Suite(
        make="deeprl.envs.suites.mujoco:make_mujoco",
        paper="Todorov et al. 2012 (MuJoCo); gymnasium MuJoCo v5 tasks",
        protocol="state obs (pixels=true: rendered RGB), 1000-step time limit (truncation); "
        "vectorization=warp: MuJoCo Warp on a GPU (extra warp)",
        extra="mujoco",
        modules=("mujoco", "imageio"),
        names="deeprl.envs.suites.mujoco:task_names",
    ),
    "dmc": Suite(
        make="deeprl.envs.suites.dmc:make_dmc",
        paper="Tassa et al. 2018 (DeepMind Control Suite)",
        protocol="domain-task, 1000 sim steps / action_repeat, state float32 or pixels size x size",
        extra="dmc",
        modules=("dm_control",),
        names="deeprl.envs.suites.dmc:task_names",
    ),
    "metaworld": Suite(
        make="deeprl.envs.suites.metaworld:make_metaworld",
        paper="Yu et al. 2019 (Meta-World)",
        protocol="MT1/MT10/MT25/MT50 (one-hot task ids), ML1/ML10/ML25/ML45 (split train|test), "
        "500-step episodes, info['success'] = episode success",
        extra="metaworld",
        modules=("metaworld",),
        names="deeprl.envs.suites.metaworld:task_names",
    ),
}


def make_suite_env(
    name: str, num_envs: int, device: torch.device | str = "cpu", **options: Any
) -> VectorEnv:
    """Build an env of suite ``name`` (a key of :data:`SUITES`) with its keyword ``options``.

    Example: ``make_suite_env("atari", 8, "cpu", game="Pong", protocol="atari100k")``.

    Raises:
        UserError: unknown suite, option or name, or its extra is not installed.
    """
    if name not in SUITES:
        raise UserError(
            f"unknown env suite {name!r}.{close_matches(name, SUITES)} Suites: {', '.join(SUITES)}."
        )
    if num_envs < 1:
        raise UserError(f"num_envs must be >= 1, got {num_envs}")
    make = SUITES[name].function("make")
    accepted = inspect.signature(make).parameters
    unknown = [k for k in options if k not in accepted]
    if unknown:
        choices = [k for k in accepted if k not in ("num_envs", "device")]
        raise UserError(
            f"unknown option(s) {', '.join(unknown)} for env suite {name!r}."
            f"{close_matches(unknown[0], choices)} Options: {', '.join(choices)}."
        )
    return make(num_envs, device, **options)


def gym_suite_env(
    gym_id: str,
    num_envs: int,
    device: torch.device | str,
    vectorization: str,
    name: str,
    max_episode_steps: int | None,
    metadata: dict[str, Any],
    make_kwargs: dict[str, Any] | None = None,
    wrappers: Sequence[Callable[[gymnasium.Env], gymnasium.Env]] = (),
    env_fns: Sequence[Callable[[], gymnasium.Env]] | None = None,
    workers: int | None = None,
) -> VectorEnv:
    """``gym_id`` through :class:`GymVectorEnv`, its spec renamed ``name`` with suite metadata.

    Args:
        gym_id: registered gymnasium id (with ``env_fns``: only a label).
        vectorization: ``"sync"`` or ``"async"``.
        name: the spec id shown to users, e.g. ``"atari/Pong"``.
        max_episode_steps: agent steps after which the suite truncates episodes.
        metadata: protocol facts merged into ``spec.metadata``.
        make_kwargs: keyword arguments of ``gymnasium.make`` for every copy.
        wrappers: applied to each copy, innermost first (picklable for ``"async"``).
        env_fns: one factory per copy, for copies that differ (see :class:`GymVectorEnv`).
        workers: ``"async"`` worker processes (None: one per copy; see :class:`GymVectorEnv`).
    """
    from deeprl.envs.gym_env import GymVectorEnv

    if vectorization not in ("sync", "async", "envpool", "warp"):
        raise UserError(
            f"unknown vectorization {vectorization!r}; choose 'sync', 'async', 'envpool' or "
            f"'warp' (MuJoCo tasks on a GPU)"
        )
    if vectorization in ("envpool", "warp"):
        backend = {"envpool": "EnvPool", "warp": "MuJoCo Warp"}[vectorization]
        raise UserError(f"{backend} has no {name}; use env.vectorization=sync or async")
    env = GymVectorEnv(
        gym_id, num_envs, device, vectorization=vectorization, make_kwargs=make_kwargs,
        wrappers=wrappers, env_fns=env_fns, workers=workers,
    )  # fmt: skip
    env.spec = dataclasses.replace(
        env.spec,
        id=name,
        max_episode_steps=max_episode_steps,
        metadata={**env.spec.metadata, **metadata},
    )
    return env
