"""Time stratified bootstrap CIs of aggregate metrics: 26 tasks x 10 runs, 50,000 replicates.

Measured: the four rliable aggregates (mean, median, IQM, optimality gap) computed together on
shared replicates, each one alone, and ``compare`` (probability of improvement and IQM difference
of two agents, resampled independently). For scale, a per-replicate Python loop (resample each
task with ``Generator.choice``, then numpy/scipy on the matrix, as a straightforward
implementation would do) is timed on fewer replicates and extrapolated linearly.

    python benchmarks/aggregate_speed.py            # defaults: --tasks 26 --runs 10 --reps 50000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import scipy.stats

from deeprl.eval.aggregate import METRICS, compare, interval_estimates


def timed(fn: Callable[[], object], repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls (the machine is shared: the minimum is the signal)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def naive_loop(scores: np.ndarray, reps: int, seed: int = 0) -> None:
    """One replicate at a time: the per-replicate baseline."""
    rng = np.random.default_rng(seed)
    runs, tasks = scores.shape
    out = np.empty((reps, 4))
    for i in range(reps):
        sample = np.stack([rng.choice(scores[:, t], size=runs) for t in range(tasks)], axis=1)
        task_means = sample.mean(axis=0)
        out[i] = (
            task_means.mean(),
            np.median(task_means),
            scipy.stats.trim_mean(sample, 0.25, axis=None),
            1.0 - np.minimum(sample, 1.0).mean(),
        )
    np.percentile(out, [2.5, 97.5], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=26)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--reps", type=int, default=50_000)
    parser.add_argument("--naive-reps", type=int, default=2_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.lognormal(mean=-0.5, sigma=1.0, size=(args.runs, args.tasks))
    y = rng.lognormal(mean=-0.7, sigma=1.0, size=(args.runs, args.tasks))
    print(f"{args.tasks} tasks x {args.runs} runs, {args.reps} bootstrap replicates, 95% CIs")
    together = timed(lambda: interval_estimates(x, METRICS, reps=args.reps))
    print(f"all four metrics (shared replicates): {together:.2f} s")
    for metric in METRICS:
        alone = timed(lambda m=metric: interval_estimates(x, [m], reps=args.reps))
        print(f"  {metric} alone: {alone:.2f} s")
    both = timed(lambda: compare(x, y, reps=args.reps))
    print(f"compare (P(X > Y) + IQM difference): {both:.2f} s")
    naive = timed(lambda: naive_loop(x, args.naive_reps), repeat=1)
    per_rep = naive / args.naive_reps
    print(
        f"per-replicate loop, all four metrics: {naive:.2f} s for {args.naive_reps} replicates "
        f"-> {per_rep * args.reps:.0f} s extrapolated to {args.reps} "
        f"({per_rep * args.reps / together:.0f}x the vectorized time)"
    )


if __name__ == "__main__":
    main()
