"""Replay buffer benchmarks: prioritized sampling speed and frame-stacked pixel memory.

1. Prioritized replay with ``--items`` transitions (default 1M, 17-dim float observations as in
   MuJoCo locomotion, random priorities): time of one ``sample(256)`` + ``update_priorities`` and,
   for reference, of one uniform ``sample(256)`` from the same data.
2. Memory of an Atari-style replay (84x84 uint8 frames, stacks of 4) storing single frames, against
   the naive layout storing ``obs`` and ``next_obs`` each as (4, 84, 84): bytes are summed over
   the allocated tensors at ``--pixel-capacity`` transitions and extrapolated linearly to 1M.

    python benchmarks/replay.py
"""

from __future__ import annotations

import argparse
import time

import torch

from deeprl.buffers.replay import PrioritizedReplayBuffer, ReplayBuffer


def fill(buffer: ReplayBuffer, num_envs: int, obs: torch.Tensor, steps: int) -> None:
    """Add ``steps`` batched transitions of constant observations (contents do not matter)."""
    transition = {
        "obs": obs,
        "action": torch.zeros(num_envs, dtype=torch.long),
        "reward": torch.ones(num_envs),
        "next_obs": obs,
        "terminated": torch.zeros(num_envs, dtype=torch.bool),
        "truncated": torch.zeros(num_envs, dtype=torch.bool),
    }
    for _ in range(steps):
        buffer.add(transition)


def time_call(fn, repeats: int) -> float:
    """Median seconds per call over ``repeats`` calls (after two warm-up calls)."""
    fn(), fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def bench_prioritized(items: int, batch_size: int, repeats: int) -> None:
    num_envs = 100
    buffer = PrioritizedReplayBuffer(items, num_envs, n_step=3)
    fill(buffer, num_envs, torch.zeros(num_envs, 17), items // num_envs)
    generator = torch.Generator().manual_seed(0)
    all_items = torch.arange(len(buffer))
    buffer.update_priorities(all_items, torch.rand(len(buffer), generator=generator))

    def prioritized_step() -> None:
        batch = buffer.sample(batch_size, generator)
        buffer.update_priorities(batch["index"], torch.rand(batch_size, generator=generator))

    per = time_call(prioritized_step, repeats)
    uniform_buffer = ReplayBuffer(items, num_envs, n_step=3)
    fill(uniform_buffer, num_envs, torch.zeros(num_envs, 17), items // num_envs)
    uniform = time_call(lambda: uniform_buffer.sample(batch_size, generator), repeats)
    tree = time_call(lambda: buffer.tree.sample(batch_size, generator), repeats)
    print(f"prioritized replay, {len(buffer):,} items, batch {batch_size}, 3-step returns:")
    print(f"  sample + update_priorities: {per * 1e3:.2f} ms")
    print(f"  of which sum-tree descent:  {tree * 1e3:.2f} ms")
    print(f"  uniform sample (same data): {uniform * 1e3:.2f} ms")


def bench_pixel_memory(capacity: int) -> None:
    stack = torch.zeros(1, 4, 84, 84, dtype=torch.uint8)
    stacked = ReplayBuffer(capacity, 1, frame_stack=4)
    fill(stacked, 1, stack, 1)
    naive = ReplayBuffer(capacity, 1)
    fill(naive, 1, stack, 1)
    scale = 1_000_000 / capacity
    ours, full = stacked.nbytes * scale, naive.nbytes * scale
    print(f"Atari replay, 84x84 frames, stacks of 4, measured at {capacity:,} transitions:")
    print(f"  single-frame storage, 1M transitions: {ours / 1e9:.2f} GB ({ours / 1e6:,.0f} B each)")
    print(f"  naive obs+next_obs stacks, 1M:        {full / 1e9:.2f} GB ({full / 1e6:,.0f} B each)")
    print(f"  ratio naive / single-frame: {full / ours:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="prioritized replay size")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=200, help="timed calls (median reported)")
    parser.add_argument(
        "--pixel-capacity",
        type=int,
        default=20_000,
        help="transitions allocated for the memory figure (extrapolated to 1M)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench_prioritized(args.items, args.batch_size, args.repeats)
    bench_pixel_memory(args.pixel_capacity)


if __name__ == "__main__":
    main()
