"""Env-steps/s of the benchmark suites per vectorization backend and env count.

For each suite one representative task (Atari Pong under the Machado protocol, MuJoCo
HalfCheetah-v5, DeepMind Control walker-walk with action_repeat 1, Meta-World MT1 reach-v3) is
stepped with uniformly random actions through deeprl's VectorEnv (torch tensors in and out), by
gymnasium's SyncVectorEnv ("sync"), AsyncVectorEnv ("async", one process per copy), deeprl's
pooled async with 2 worker processes ("async2", env.workers=2), EnvPool and,
for MuJoCo on a GPU, MuJoCo Warp ("warp": run it with --device cuda in the warp extra's
environment, docs/envs.md).
Reported: env-steps/s = agent steps x num_envs / wall time, after a warm-up (construction
excluded). One process, one run: compare ratios within the table, not across machines.

    python benchmarks/env_suites.py                       # all suites, 1/4/8 envs, all backends
    python benchmarks/env_suites.py --suites atari --env-counts 1 8 --steps 500
    python benchmarks/env_suites.py --suites mujoco --backends warp --device cuda \
        --env-counts 1024 4096
    python benchmarks/env_suites.py --suites mujoco --backends sync warp --warp-on-cpu
"""

from __future__ import annotations

import argparse
import time

import torch

from deeprl.envs.suites import make_suite_env
from deeprl.errors import UserError

#: Suite -> options of its representative task.
TASKS: dict[str, dict] = {
    "atari": {"game": "Pong"},
    "mujoco": {"task": "HalfCheetah-v5"},
    "dmc": {"task": "walker-walk", "action_repeat": 1},
    "metaworld": {"task": "reach-v3"},
}
BACKENDS = ("sync", "async", "async2", "envpool", "warp")


def steps_per_second(
    suite: str, backend: str, num_envs: int, steps: int, device: str = "cpu",
    warp_on_cpu: bool = False,
) -> float | None:
    """Env-steps/s, or None if the suite has no such backend (or not on ``device``)."""
    try:
        if backend == "warp" and warp_on_cpu:
            from deeprl.envs.suites.warp import WarpMujocoVectorEnv

            env = WarpMujocoVectorEnv(TASKS[suite]["task"], num_envs, "cpu", allow_cpu=True)
        else:
            workers = {"async2": 2}.get(backend)
            vectorization = "async" if workers else backend
            env = make_suite_env(
                suite, num_envs, device, vectorization=vectorization, workers=workers,
                **TASKS[suite],
            )  # fmt: skip
    except UserError:
        return None
    try:
        generator = torch.Generator(env.device).manual_seed(0)
        env.reset(seed=0)
        for _ in range(10):
            env.step(env.sample_actions(generator))
        synchronize = torch.cuda.synchronize if env.device.type == "cuda" else lambda: None
        synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            env.step(env.sample_actions(generator))
        synchronize()
        return steps * num_envs / (time.perf_counter() - start)
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suites", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--env-counts", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per configuration")
    parser.add_argument("--device", default="cpu", help="where tensors live (warp: cuda)")
    parser.add_argument(
        "--warp-on-cpu", action="store_true", help="run warp on Warp's CPU device (allow_cpu)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    header = " | ".join(f"{b} x{n}" for b in args.backends for n in args.env_counts)
    print(f"| suite (task) | {header} |")
    print("|---" * (1 + len(args.backends) * len(args.env_counts)) + "|")
    for suite in args.suites:
        cells = []
        for backend in args.backends:
            for n in args.env_counts:
                sps = steps_per_second(
                    suite, backend, n, args.steps, args.device, args.warp_on_cpu
                )
                cells.append("-" if sps is None else f"{sps:,.0f}")
        task = next(iter(TASKS[suite].values()))
        print(f"| {suite} ({task}) | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
