"""Env-steps per second: deeprl's torch-native CartPole against gymnasium's CartPole-v1, in one run.

Compared at each env count:
- deeprl ``CartPole`` (all copies in one tensor, autoreset included), random actions drawn up
  front on the env's device;
- gymnasium ``SyncVectorEnv`` of ``CartPole-v1`` (the usual way to vectorize gymnasium envs);
- gymnasium's numpy-vectorized CartPole
  (``make_vec(..., vectorization_mode="vector_entry_point")``), the strongest CPU peer.

Each figure is the best of ``--repeats`` timed runs of at least ``--seconds`` each, after a
warm-up, so that other jobs on a shared machine bias it less. Prints a Markdown table.

    python benchmarks/env_throughput.py
    python benchmarks/env_throughput.py --envs 4096 65536 --threads 2
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from deeprl.envs.classic import CartPole

ACTION_POOL = 64  # distinct action batches cycled through, so memory stays small at 65536 envs


def best_rate(step: Callable[[int], None], num_envs: int, seconds: float, repeats: int) -> float:
    """Best env-steps/s over ``repeats`` runs of ``step(i)`` lasting at least ``seconds``."""
    for i in range(3):  # warm-up: first-call allocations, caches
        step(i)
    best = 0.0
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(10):
                step(calls)
                calls += 1
        best = max(best, calls * num_envs / elapsed)
    return best


def torch_native(num_envs: int, device: str, seconds: float, repeats: int) -> float:
    env = CartPole(num_envs, device=device)
    env.reset(seed=0)
    gen = torch.Generator(device).manual_seed(0)
    actions = torch.randint(2, (ACTION_POOL, num_envs), device=device, generator=gen)

    def step(i: int) -> None:
        env.step(actions[i % ACTION_POOL])

    if device.startswith("cuda"):  # time finished work, not queued kernels

        def step_synced(i: int) -> None:
            step(i)
            if i % 10 == 9:
                torch.cuda.synchronize()

        return best_rate(step_synced, num_envs, seconds, repeats)
    return best_rate(step, num_envs, seconds, repeats)


def gymnasium_vec(num_envs: int, mode: str, seconds: float, repeats: int) -> float:
    env = gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode=mode)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 2, (ACTION_POOL, num_envs))

    def step(i: int) -> None:
        env.step(actions[i % ACTION_POOL])

    try:
        return best_rate(step, num_envs, seconds, repeats)
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 4, 64, 4096, 65536])
    parser.add_argument(
        "--max-sync-envs",
        type=int,
        default=4096,
        help="skip SyncVectorEnv above this many envs (building 65536 envs takes minutes)",
    )
    parser.add_argument("--device", default="cpu", help="device of the torch-native env")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads; 0 keeps torch's default. Default 1: torch runs sin/cos "
        "on 2,048+ elements on all threads, which stall when other jobs share the cores",
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is kept")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, gymnasium {gym.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}; torch threads {torch.get_num_threads()}, "
        f"device {args.device}; best of {args.repeats} x {args.seconds:g} s"
    )
    print()
    print(
        "| envs | deeprl CartPole (steps/s) | us/step | gym SyncVectorEnv (steps/s) | ratio "
        "| gym vector_entry_point (steps/s) | ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.envs:
        ours = torch_native(n, args.device, args.seconds, args.repeats)
        sync = (
            gymnasium_vec(n, "sync", args.seconds, args.repeats)
            if n <= args.max_sync_envs
            else None
        )
        vector = gymnasium_vec(n, "vector_entry_point", args.seconds, args.repeats)
        sync_cells = f"{sync:,.0f} | {ours / sync:,.1f}x" if sync else "not run | -"
        print(
            f"| {n} | {ours:,.0f} | {n / ours * 1e6:,.1f} | {sync_cells} "
            f"| {vector:,.0f} | {ours / vector:,.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
