"""Aggregate metrics over runs x tasks with stratified bootstrap confidence intervals.

Definitions follow Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice"
(rliable), with scores given as a ``(num_runs, num_tasks)`` matrix as in rliable:

- mean / median: mean / median over tasks of each task's mean score;
- IQM: 25% trimmed mean of all (run, task) scores pooled;
- optimality gap: ``gamma - mean(min(score, gamma))`` over all scores pooled;
- probability of improvement P(X > Y): per task, the Mann-Whitney U statistic of X's runs against
  Y's divided by ``n_x * n_y`` (ties count 1/2), averaged over tasks;
- performance profile: fraction of pooled scores strictly above each threshold tau.

Confidence intervals are percentile intervals of the stratified bootstrap: each replicate resamples
runs with replacement *within* each task (rliable's defaults: 95%, 50,000 replicates). Tasks may
have different run counts: pass a list of 1-D arrays (one per task) or a NaN-padded matrix. With
unequal counts the pooled metrics weigh every run equally.

Replicates are drawn in chunks from a seeded :class:`numpy.random.Generator`, so memory stays
bounded and results do not depend on the chunk size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

#: Scores of one agent: a (num_runs, num_tasks) matrix (NaN = no run) or one 1-D array per task.
Scores = np.ndarray | Sequence[ArrayLike]

#: Elements (replicates x values) processed per chunk; 4M float64 = 32 MB per array.
_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class ScoreSet:
    """Scores of one agent, flattened task by task.

    Attributes:
        values: (N,) all run scores, task 0's runs first.
        counts: (T,) runs per task.
        offsets: (T,) index in ``values`` of each task's first run.
    """

    values: np.ndarray
    counts: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_scores(cls, scores: Scores | ScoreSet) -> ScoreSet:
        """Build from a (runs, tasks) matrix (NaN entries dropped) or a list of per-task arrays."""
        if isinstance(scores, ScoreSet):
            return scores
        if isinstance(scores, np.ndarray):
            if scores.ndim != 2:
                raise ValueError(f"score matrix must be (num_runs, num_tasks), got {scores.shape}")
            columns = [col[~np.isnan(col)] for col in scores.astype(np.float64).T]
        else:
            columns = [np.asarray(col, dtype=np.float64).ravel() for col in scores]
        if not columns:
            raise ValueError("scores have no tasks")
        counts = np.array([len(col) for col in columns], dtype=np.intp)
        if (counts == 0).any():
            raise ValueError(f"tasks {np.flatnonzero(counts == 0).tolist()} have no runs")
        values = np.concatenate(columns)
        if not np.isfinite(values).all():
            raise ValueError("scores must be finite (NaN only as padding of a matrix)")
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
        return cls(values, counts, offsets)

    @property
    def num_tasks(self) -> int:
        return len(self.counts)

    def resample(self, rng: np.random.Generator, reps: int) -> np.ndarray:
        """(reps, N) stratified bootstrap replicates: each task's runs drawn from its own runs."""
        # One uniform draw per (replicate, run slot), mapped to a run index of that slot's task:
        # vectorized for unequal counts, and the same stream however replicates are chunked.
        col_counts = np.repeat(self.counts, self.counts)
        col_offsets = np.repeat(self.offsets, self.counts)
        picks = (rng.random((reps, len(self.values))) * col_counts).astype(np.intp)
        return self.values[picks + col_offsets]

    def task_means(self, samples: np.ndarray) -> np.ndarray:
        """(B, N) replicates -> (B, T) mean score of each task."""
        return np.add.reduceat(samples, self.offsets, axis=1) / self.counts

    def task_values(self, samples: np.ndarray, task: int) -> np.ndarray:
        """(B, N) replicates -> (B, n_task) the runs of one task."""
        start = self.offsets[task]
        return samples[:, start : start + self.counts[task]]


# --- statistics over a batch of replicates: (B, N) -> (B,) ------------------------------------


def _mean_stat(ss: ScoreSet, samples: np.ndarray) -> np.ndarray:
    return ss.task_means(samples).mean(axis=1)


def _median_stat(ss: ScoreSet, samples: np.ndarray) -> np.ndarray:
    return np.median(ss.task_means(samples), axis=1)


def _iqm_stat(ss: ScoreSet, samples: np.ndarray) -> np.ndarray:
    # scipy.stats.trim_mean(x, 0.25): drop int(0.25 n) values at each end. A partition at both
    # cut points puts exactly the middle order statistics between them, without a full sort.
    n = samples.shape[1]
    low = int(0.25 * n)
    high = n - low
    part = np.partition(samples, sorted({low, high - 1}), axis=1)
    return part[:, low:high].mean(axis=1)


def _gap_stat(gamma: float) -> Callable[[ScoreSet, np.ndarray], np.ndarray]:
    def stat(ss: ScoreSet, samples: np.ndarray) -> np.ndarray:
        return gamma - np.minimum(samples, gamma).mean(axis=1)

    return stat


def _metric_stats(gamma: float) -> dict[str, Callable[[ScoreSet, np.ndarray], np.ndarray]]:
    return {
        "mean": _mean_stat,
        "median": _median_stat,
        "iqm": _iqm_stat,
        "optimality_gap": _gap_stat(gamma),
    }


#: Metric names accepted by :func:`interval_estimates`, in report order.
METRICS = ("mean", "median", "iqm", "optimality_gap")


# --- point estimates -------------------------------------------------------------------------


def _point(stat: Callable[[ScoreSet, np.ndarray], np.ndarray], scores: Scores) -> float:
    ss = ScoreSet.from_scores(scores)
    return float(stat(ss, ss.values[None])[0])


def aggregate_mean(scores: Scores) -> float:
    """Mean over tasks of the per-task mean score."""
    return _point(_mean_stat, scores)


def aggregate_median(scores: Scores) -> float:
    """Median over tasks of the per-task mean score."""
    return _point(_median_stat, scores)


def iqm(scores: Scores) -> float:
    """Interquartile mean: 25% trimmed mean of all scores pooled."""
    return _point(_iqm_stat, scores)


def optimality_gap(scores: Scores, gamma: float = 1.0) -> float:
    """How far scores fall short of ``gamma`` on average (scores above gamma count as gamma)."""
    return _point(_gap_stat(gamma), scores)


def _improvement_stat(x: ScoreSet, y: ScoreSet, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(B,) P(X > Y) for replicates xs (B, N_x) and ys (B, N_y) of the same tasks."""
    total = np.zeros(len(xs))
    for task in range(x.num_tasks):
        a = x.task_values(xs, task)[:, :, None]
        b = y.task_values(ys, task)[:, None, :]
        wins = (a > b).mean(axis=(1, 2)) + 0.5 * (a == b).mean(axis=(1, 2))
        total += wins
    return total / x.num_tasks


def _check_same_tasks(x: ScoreSet, y: ScoreSet) -> None:
    if x.num_tasks != y.num_tasks:
        raise ValueError(f"X has {x.num_tasks} tasks but Y has {y.num_tasks}; align them first")


def probability_of_improvement(x: Scores, y: Scores) -> float:
    """P(X > Y): per-task Mann-Whitney U / (n_x n_y), ties counted 1/2, averaged over tasks.

    Args:
        x, y: scores of two agents on the same tasks in the same order (run counts may differ).
    """
    xs, ys = ScoreSet.from_scores(x), ScoreSet.from_scores(y)
    _check_same_tasks(xs, ys)
    return float(_improvement_stat(xs, ys, xs.values[None], ys.values[None])[0])


# --- bootstrap -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval."""

    point: float
    low: float
    high: float


#: A statistic of one or more score sets: (score sets, one (B, N_i) batch each) -> (B,) or (B, K).
Statistic = Callable[[Sequence[ScoreSet], Sequence[np.ndarray]], np.ndarray]


def bootstrap(
    score_sets: Sequence[ScoreSet],
    statistics: Mapping[str, Statistic],
    reps: int = 50_000,
    confidence: float = 0.95,
    seed: int = 0,
    width: int = 1,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Percentile CIs of statistics under independent stratified resampling of each score set.

    Args:
        score_sets: the data; each set is resampled on its own (within-task) stream.
        statistics: name -> statistic returning (B,) or (B, K) for a batch of B replicates.
        reps: bootstrap replicates.
        confidence: coverage of the interval, e.g. 0.95 -> 2.5th and 97.5th percentiles.
        seed: seeds the replicates; same seed, same intervals.
        width: K, the largest number of values a statistic returns per replicate (sizes chunks).

    Returns:
        name -> (point, low, high), each of shape () or (K,).
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(score_sets))]
    originals = [ss.values[None] for ss in score_sets]
    points = {name: stat(score_sets, originals)[0] for name, stat in statistics.items()}
    per_rep = sum(len(ss.values) for ss in score_sets) * max(width, 1)
    chunk = max(1, _CHUNK_ELEMENTS // per_rep)
    replicates = {name: np.empty((reps, *np.shape(p))) for name, p in points.items()}
    for start in range(0, reps, chunk):
        size = min(chunk, reps - start)
        batches = [ss.resample(rng, size) for ss, rng in zip(score_sets, rngs, strict=True)]
        for name, stat in statistics.items():
            replicates[name][start : start + size] = stat(score_sets, batches)
    tail = 100.0 * (1.0 - confidence) / 2.0
    result = {}
    for name, values in replicates.items():
        low, high = np.percentile(values, [tail, 100.0 - tail], axis=0)
        result[name] = (np.asarray(points[name]), low, high)
    return result


def _single(stat: Callable[[ScoreSet, np.ndarray], np.ndarray]) -> Statistic:
    return lambda sets, batches: stat(sets[0], batches[0])


def interval_estimates(
    scores: Scores,
    metrics: Sequence[str] = METRICS,
    reps: int = 50_000,
    confidence: float = 0.95,
    seed: int = 0,
    gamma: float = 1.0,
) -> dict[str, Interval]:
    """Point estimates and stratified bootstrap CIs of aggregate metrics of one agent.

    Args:
        scores: (num_runs, num_tasks) matrix or one 1-D array per task.
        metrics: names from :data:`METRICS`; all are computed on the same replicates.
        reps, confidence, seed: see :func:`bootstrap`.
        gamma: threshold of the optimality gap.
    """
    stats = _metric_stats(gamma)
    unknown = [m for m in metrics if m not in stats]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {METRICS}")
    ss = ScoreSet.from_scores(scores)
    boot = bootstrap([ss], {m: _single(stats[m]) for m in metrics}, reps, confidence, seed)
    return {m: Interval(*(float(v) for v in boot[m])) for m in metrics}


def compare(
    x: Scores, y: Scores, reps: int = 50_000, confidence: float = 0.95, seed: int = 0
) -> dict[str, Interval]:
    """Probability of improvement P(X > Y) and IQM(X) - IQM(Y), with bootstrap CIs.

    X and Y are resampled independently (each within task), as in rliable's
    StratifiedIndependentBootstrap.

    Returns:
        ``{"probability_of_improvement": ..., "iqm_difference": ...}``.
    """
    xs, ys = ScoreSet.from_scores(x), ScoreSet.from_scores(y)
    _check_same_tasks(xs, ys)
    stats: dict[str, Statistic] = {
        "probability_of_improvement": lambda sets, b: _improvement_stat(*sets, *b),
        "iqm_difference": lambda sets, b: _iqm_stat(sets[0], b[0]) - _iqm_stat(sets[1], b[1]),
    }
    # P(X > Y) compares every run pair of a task: size chunks so the largest (B, n_x, n_y)
    # comparison stays within the chunk budget, not just the (B, N) replicates.
    pairs = max(int(cx) * int(cy) for cx, cy in zip(xs.counts, ys.counts, strict=True))
    width = -(-pairs // (len(xs.values) + len(ys.values)))
    boot = bootstrap([xs, ys], stats, reps, confidence, seed, width=width)
    return {name: Interval(*(float(v) for v in boot[name])) for name in stats}


@dataclass(frozen=True)
class Profile:
    """A performance profile: fraction of runs above each threshold, with its CI band."""

    taus: np.ndarray
    fraction: np.ndarray
    low: np.ndarray
    high: np.ndarray


def performance_profile(
    scores: Scores,
    taus: ArrayLike,
    reps: int = 2_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Profile:
    """Fraction of (run, task) scores strictly above each tau, pooled, with bootstrap CIs.

    ``reps`` defaults to 2,000 as in rliable's ``create_performance_profile``.
    """
    taus = np.asarray(taus, dtype=np.float64).ravel()
    ss = ScoreSet.from_scores(scores)

    def stat(sets: Sequence[ScoreSet], batches: Sequence[np.ndarray]) -> np.ndarray:
        return (batches[0][:, :, None] > taus).mean(axis=1)  # (B, N, K) -> (B, K)

    boot = bootstrap([ss], {"profile": stat}, reps, confidence, seed, width=len(taus))
    point, low, high = boot["profile"]
    return Profile(taus, point, low, high)


def task_mean_intervals(
    scores: Scores, reps: int = 2_000, confidence: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-task mean over runs with a bootstrap CI each: (T,) point, low, high.

    Used for learning curves, where each "task" is one evaluation step across seeds.
    """
    ss = ScoreSet.from_scores(scores)
    stat: Statistic = lambda sets, b: sets[0].task_means(b[0])  # noqa: E731
    point, low, high = bootstrap([ss], {"m": stat}, reps, confidence, seed, width=ss.num_tasks)["m"]
    return point, low, high
