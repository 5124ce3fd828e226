"""Replay memory by layout, and bulk loading speed.

1. Memory of two pixel replays in both layouts (``store_next_obs=True``, the default, and the
   observation-only layout ``store_next_obs=False``), uniform sampling, one env, int64 actions,
   float32 rewards:
   - Atari100k-style: 100k steps of 64x64 RGB frames (3x64x64 uint8), no frame stack;
   - Atari 1M: 1M steps of 84x84 grey frames stacked by 4 (stored as single 1x84x84 frames).
   Figures are ``ReplayBuffer.required_bytes`` (what the buffer allocates, without allocating);
   the script first checks it against ``nbytes`` (the sum of the allocated tensors' bytes) of
   the same buffers at ``--check-capacity`` steps.
2. ``ReplayBuffer.from_arrays`` on a flat 1M-step dataset of 17-dim float observations (MuJoCo
   locomotion sized), both layouts: median wall time of ``--repeats`` loads.

    python benchmarks/replay_memory.py
"""

from __future__ import annotations

import argparse
import time

import torch

from deeprl.buffers import ReplayBuffer

# name, steps, observation shape as the env returns it, frame_stack
REPLAYS = [
    ("Atari100k-style, 100k x 3x64x64", 100_000, (3, 64, 64), 1),
    ("Atari, 1M x 84x84, frame_stack 4", 1_000_000, (4, 84, 84), 4),
]


def pixel_step(shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    return {
        "obs": torch.zeros((1, *shape), dtype=torch.uint8),
        "action": torch.zeros(1, dtype=torch.long),
        "reward": torch.zeros(1),
        "next_obs": torch.zeros((1, *shape), dtype=torch.uint8),
        "terminated": torch.zeros(1, dtype=torch.bool),
        "truncated": torch.zeros(1, dtype=torch.bool),
    }


def bench_memory(check_capacity: int) -> None:
    print("| replay | layout | bytes/step | total |")
    print("|---|---|---|---|")
    for name, steps, shape, frame_stack in REPLAYS:
        transition = pixel_step(shape)
        totals = {}
        for store_next_obs in (True, False):
            options = dict(frame_stack=frame_stack, store_next_obs=store_next_obs)
            small = ReplayBuffer(check_capacity, 1, **options)
            planned = small.required_bytes(transition)
            small.add(transition)
            assert small.nbytes == planned, (small.nbytes, planned)
            total = ReplayBuffer(steps, 1, **options).required_bytes(transition)
            totals[store_next_obs] = total
            layout = "obs + next_obs (default)" if store_next_obs else "obs only"
            print(f"| {name} | {layout} | {total / steps:,.0f} | {total / 1e9:.2f} GB |")
        print(f"| {name} | ratio | | {totals[False] / totals[True]:.3f} |")


def bench_bulk_load(steps: int, repeats: int) -> None:
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn(steps + 1, 17, generator=generator)
    data = {
        "obs": obs[:-1],
        "action": torch.randn(steps, 6, generator=generator),
        "reward": torch.randn(steps, generator=generator),
        "next_obs": obs[1:].clone(),
        "terminated": torch.rand(steps, generator=generator) < 1e-3,
        "truncated": torch.zeros(steps, dtype=torch.bool),
    }
    for store_next_obs in (True, False):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            ReplayBuffer.from_arrays(data, n_step=3, store_next_obs=store_next_obs)
            times.append(time.perf_counter() - start)
        median = sorted(times)[len(times) // 2]
        print(f"from_arrays, {steps:,} steps, store_next_obs={store_next_obs}: {median:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check-capacity", type=int, default=2_000)
    parser.add_argument("--load-steps", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench_memory(args.check_capacity)
    bench_bulk_load(args.load_steps, args.repeats)


if __name__ == "__main__":
    main()
