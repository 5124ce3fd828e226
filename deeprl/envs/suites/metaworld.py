"""Meta-World v3 manipulation tasks (Yu et al. 2019, "Meta-World: A Benchmark and Evaluation for
Multi-Task and Meta Reinforcement Learning", CoRL), metaworld 3.1.1.

Protocol, benchmark MT1: one task (e.g. ``reach-v3``) with its 50 training goals; each episode
samples one of them (the goal is part of the 39-d observation), 500 steps, truncated at the end
(no termination on success). An episode succeeds if ``info["success"]`` is 1 at any step: here
``info["success"]`` holds that running maximum, so at the step where an episode ends it is the
episode's success, which the trainer's evaluation averages into ``success_rate``. Reward
function v2. ``goal_seed`` fixes the 50 goals (metaworld's benchmark seed); reset seeds fix the
goal order.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import torch

from deeprl.envs.base import VectorEnv
from deeprl.envs.render import setup_headless_gl
from deeprl.errors import UserError, close_matches

setup_headless_gl()

#: Benchmarks :func:`make_metaworld` builds.
BENCHMARKS: tuple[str, ...] = ("MT1",)


def task_names() -> list[str]:
    """Every Meta-World v3 task, e.g. ``"reach-v3"``."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return sorted(ALL_V3_ENVIRONMENTS)


class EpisodeSuccess(gymnasium.Wrapper):
    """Meta-World's episode protocol on top of metaworld's env.

    - ``info["success"]``: float32, 1.0 once the task has been solved in this episode (running
      max), so at the episode's last step it is the episode's success.
    - A seeded reset re-seeds the env *before* metaworld picks the episode's goal, so a seed
      fixes the goal too (metaworld picks it with the RNG state of the previous episode).
    """

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.env.unwrapped.seed(seed)
        self._success = np.float32(0.0)
        obs, info = self.env.reset(seed=seed, options=options)
        info["success"] = self._success
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._success = max(self._success, np.float32(info["success"]))
        info["success"] = self._success
        return obs, reward, terminated, truncated, info


def make_metaworld(
    num_envs: int,
    device: torch.device | str = "cpu",
    task: str = "reach-v3",
    benchmark: str = "MT1",
    vectorization: str = "sync",
    goal_seed: int = 0,
    render: bool = False,
    size: int = 64,
) -> VectorEnv:
    """A Meta-World benchmark.

    Args:
        num_envs: parallel copies (each samples goals of ``task`` independently).
        device: where tensors go.
        task: Meta-World v3 task name, e.g. ``"reach-v3"``, ``"pick-place-v3"``.
        benchmark: ``"MT1"``.
        vectorization: ``"sync"`` or ``"async"``.
        goal_seed: seed of the benchmark's 50 goals.
        render: render (size, size) frames of copy 0 for eval videos.
        size: rendered frame side.

    Returns:
        A :class:`VectorEnv`: observations (N, 39) float32, actions (N, 4) in [-1, 1],
        ``info["success"]`` (N,) float.
    """
    if benchmark not in BENCHMARKS:
        raise UserError(
            f"unknown Meta-World benchmark {benchmark!r}.{close_matches(benchmark, BENCHMARKS)} "
            f"Available: {', '.join(BENCHMARKS)}."
        )
    names = task_names()
    if task not in names:
        raise UserError(
            f"unknown Meta-World task {task!r}.{close_matches(task, names)} "
            f"`deeprl-envs --suite metaworld` lists them."
        )
    import metaworld  # noqa: F401  (registers the Meta-World/* ids)

    from deeprl.envs.suites import gym_suite_env

    make_kwargs = {"env_name": task, "seed": goal_seed, "disable_env_checker": True}
    if render:
        make_kwargs |= {"render_mode": "rgb_array", "width": size, "height": size}
    return gym_suite_env(
        "Meta-World/MT1", num_envs, device, vectorization, name=f"metaworld/{benchmark}/{task}",
        max_episode_steps=500,
        metadata={"suite": "metaworld", "benchmark": benchmark, "task": task,
                  "goal_seed": goal_seed},
        make_kwargs=make_kwargs, wrappers=[EpisodeSuccess],
    )  # fmt: skip
