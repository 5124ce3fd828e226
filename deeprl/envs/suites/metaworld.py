"""Meta-World v3 manipulation tasks (Yu et al. 2019, "Meta-World: A Benchmark and Evaluation for
Multi-Task and Meta Reinforcement Learning", CoRL), metaworld 3.1.1.

Protocol, all benchmarks: 500-step episodes, truncated at the end (no termination on success).
An episode succeeds if ``info["success"]`` is 1 at any step: here ``info["success"]`` holds that
running maximum, so at the step where an episode ends it is the episode's success, which the
trainer's evaluation averages into ``success_rate``. Reward function v2. ``goal_seed`` is
metaworld's benchmark seed (it fixes the 50 goals of every task); reset seeds fix which goal each
episode gets. Goals and per-copy envs come from metaworld's own benchmark classes
(``metaworld.MT10`` etc.: ``train_classes``/``test_classes``, ``train_tasks``/``test_tasks``).

- MT1: one task (e.g. ``reach-v3``) with its 50 training goals; each episode samples one of them
  (the goal is part of the 39-d observation).
- MT10 / MT25 / MT50: 10 / 25 / 50 tasks, 50 goals each, goal observed; a one-hot task id (in
  :func:`benchmark_task_names` order) is appended to the observation, (39 + number of tasks).
  Copy ``i`` runs task ``i % num_tasks`` (round-robin), so ``num_envs`` must be a multiple of the
  number of tasks.
- ML1 / ML10 / ML25 / ML45: meta-learning splits; ``split="train"`` uses the training tasks
  (ML1: 50 goals of one task; ML10/ML25/ML45: 10/25/45 tasks), ``split="test"`` the held-out ones
  (ML1: 50 other goals of the same task; the others: 5 other tasks). The goal is hidden (zeros
  in the 39-d observation) and there is no task id. Copies are assigned tasks round-robin as for
  MT. Each episode samples a goal of its copy's task; the meta-RL adaptation protocol (several
  episodes on one goal, then evaluation on the test split) is left to the algorithm.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium
import numpy as np
import torch

from deeprl.envs.base import VectorEnv
from deeprl.envs.render import setup_headless_gl
from deeprl.errors import UserError, close_matches

setup_headless_gl()

#: Benchmarks :func:`make_metaworld` builds.
BENCHMARKS: tuple[str, ...] = ("MT1", "MT10", "MT25", "MT50", "ML1", "ML10", "ML25", "ML45")
#: Task splits of the ML benchmarks (MT benchmarks have only training tasks).
SPLITS: tuple[str, ...] = ("train", "test")
#: Steps per episode (metaworld's ``max_path_length``).
MAX_EPISODE_STEPS = 500


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


def _check_options(benchmark: str, task: str, split: str) -> None:
    if benchmark not in BENCHMARKS:
        raise UserError(
            f"unknown Meta-World benchmark {benchmark!r}.{close_matches(benchmark, BENCHMARKS)} "
            f"Available: {', '.join(BENCHMARKS)}."
        )
    if split not in SPLITS:
        raise UserError(
            f"unknown Meta-World split {split!r}.{close_matches(split, SPLITS)} "
            f"Choose {' or '.join(SPLITS)}."
        )
    if benchmark.startswith("MT") and split != "train":
        raise UserError(f"Meta-World {benchmark} has only training tasks; use split=train")
    if benchmark in ("MT1", "ML1"):
        names = task_names()
        if task not in names:
            raise UserError(
                f"unknown Meta-World task {task!r}.{close_matches(task, names)} "
                f"`deeprl-envs --suite metaworld` lists them."
            )


def benchmark_task_names(benchmark: str, split: str = "train", task: str = "reach-v3") -> list[str]:
    """The tasks of ``benchmark``'s ``split``, in metaworld's order (the one-hot order of MT10/MT50;
    copy ``i`` runs task ``i % len(...)``). ``task`` names the task of MT1/ML1.

    Raises:
        UserError: unknown benchmark, split or task; a test split of an MT benchmark.
    """
    _check_options(benchmark, task, split)
    if benchmark in ("MT1", "ML1"):
        return [task]
    from metaworld import env_dict

    classes = getattr(env_dict, f"{benchmark}_V3")  # e.g. MT10_V3; ML ones split train/test
    return list(classes[split] if benchmark.startswith("ML") else classes)


def _make_copy(
    env_cls: type,
    tasks: list,
    goal_seed: int,
    task_index: int,
    num_tasks: int,
    one_hot: bool,
    render_kwargs: dict[str, Any],
) -> gymnasium.Env:
    """One copy of a multi-task benchmark: metaworld's own construction (the one behind its
    registered ``Meta-World/MT10`` etc.: time limit, random goal per episode from ``tasks``,
    optional one-hot id), then :class:`EpisodeSuccess`. Module-level, so it pickles for async."""
    from metaworld import _init_each_env

    env = _init_each_env(
        env_cls=env_cls,
        tasks=tasks,
        seed=goal_seed,
        max_episode_steps=MAX_EPISODE_STEPS,
        use_one_hot=one_hot,
        env_id=task_index,
        num_tasks=num_tasks,
        **render_kwargs,
    )
    return EpisodeSuccess(env)


def _benchmark_env_fns(
    benchmark: str, task: str, split: str, num_envs: int, goal_seed: int, render_kwargs: dict
) -> tuple[list[partial], list[str]]:
    """One factory per copy (round-robin over the split's tasks) and the copies' task names."""
    import metaworld

    if benchmark == "ML1":
        bench = metaworld.ML1(task, seed=goal_seed)
    else:
        bench = getattr(metaworld, benchmark)(seed=goal_seed)
    classes = bench.train_classes if split == "train" else bench.test_classes
    tasks = bench.train_tasks if split == "train" else bench.test_tasks
    names = list(classes)
    fns, copy_names = [], []
    for i in range(num_envs):
        name = names[i % len(names)]
        fns.append(
            partial(
                _make_copy,
                classes[name],
                [t for t in tasks if t.env_name == name],
                goal_seed,
                i % len(names),
                len(names),
                benchmark.startswith("MT"),
                render_kwargs,
            )
        )
        copy_names.append(name)
    return fns, copy_names


def make_metaworld(
    num_envs: int,
    device: torch.device | str = "cpu",
    task: str = "reach-v3",
    benchmark: str = "MT1",
    split: str = "train",
    vectorization: str = "sync",
    workers: int | None = None,
    goal_seed: int = 0,
    render: bool = False,
    size: int = 64,
) -> VectorEnv:
    """A Meta-World benchmark.

    Args:
        num_envs: parallel copies. MT1/ML1: any number, each samples goals of ``task``
            independently; the others: a multiple of the number of tasks, assigned
            round-robin (:func:`benchmark_task_names`).
        device: where tensors go.
        task: Meta-World v3 task name of MT1/ML1, e.g. ``"reach-v3"``, ``"pick-place-v3"``
            (ignored by the other benchmarks).
        benchmark: one of :data:`BENCHMARKS`: ``"MT1"``, ``"MT10"``, ``"MT25"``, ``"MT50"``,
            ``"ML1"``, ``"ML10"``, ``"ML25"`` or ``"ML45"``.
        split: ``"train"`` or ``"test"`` tasks of the ML benchmarks (MT ones: ``"train"``).
        vectorization: ``"sync"`` or ``"async"``.
        workers: with ``vectorization="async"``, worker processes the copies are split over
            (None: one process per copy).
        goal_seed: metaworld's benchmark seed, fixing the 50 goals of each task.
        render: render (size, size) frames of copy 0 for eval videos.
        size: rendered frame side.

    Returns:
        A :class:`VectorEnv`: observations (N, 39) float32 (MT10/25/50: (N, 39 + num_tasks), the
        one-hot task id last), actions (N, 4) in [-1, 1], ``info["success"]`` (N,) float.

    Raises:
        UserError: unknown benchmark, split or task; ``num_envs`` not a multiple of the number
            of tasks.
    """
    copy_tasks = benchmark_task_names(benchmark, split, task)
    if num_envs % len(copy_tasks):
        n = len(copy_tasks)
        raise UserError(
            f"Meta-World {benchmark} ({split}) has {n} tasks, assigned to copies round-robin: "
            f"num_envs must be a multiple of {n} ({n}, {2 * n}, {3 * n}, ...), got {num_envs}. "
            f"Set env.num_envs (and train.eval_envs) accordingly."
        )
    import metaworld  # noqa: F401  (registers the Meta-World/* ids)

    from deeprl.envs.suites import gym_suite_env

    render_kwargs = {"render_mode": "rgb_array", "width": size, "height": size} if render else {}
    metadata = {"suite": "metaworld", "benchmark": benchmark, "goal_seed": goal_seed}
    if benchmark == "MT1":
        make_kwargs = {"env_name": task, "seed": goal_seed, "disable_env_checker": True}
        return gym_suite_env(
            "Meta-World/MT1", num_envs, device, vectorization,
            name=f"metaworld/{benchmark}/{task}", max_episode_steps=MAX_EPISODE_STEPS,
            metadata={**metadata, "task": task},
            make_kwargs=make_kwargs | render_kwargs, wrappers=[EpisodeSuccess],
            workers=workers,
        )  # fmt: skip
    label = benchmark if benchmark.startswith("MT") else f"{benchmark}-{split}"
    name = f"metaworld/{label}" + (f"/{task}" if benchmark == "ML1" else "")
    if vectorization not in ("sync", "async"):
        # gym_suite_env raises its error (unknown, or no EnvPool) before the goals are sampled.
        return gym_suite_env(
            label, num_envs, device, vectorization, name, None, metadata, workers=workers
        )
    env_fns, copy_names = _benchmark_env_fns(
        benchmark, task, split, num_envs, goal_seed, render_kwargs
    )
    if benchmark == "ML1":
        metadata["task"] = task
    metadata |= {"split": split, "tasks": copy_tasks, "copy_tasks": copy_names}
    return gym_suite_env(
        f"Meta-World/{label}", num_envs, device, vectorization, name=name,
        max_episode_steps=MAX_EPISODE_STEPS, metadata=metadata, env_fns=env_fns,
        workers=workers,
    )  # fmt: skip
