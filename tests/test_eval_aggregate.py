"""Aggregate metrics and stratified bootstrap CIs against independent computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats

from deeprl.eval import aggregate
from deeprl.eval.aggregate import (
    aggregate_mean,
    aggregate_median,
    compare,
    interval_estimates,
    iqm,
    optimality_gap,
    performance_profile,
    probability_of_improvement,
    task_mean_intervals,
)


@pytest.mark.parametrize("shape", [(3, 2), (5, 7), (10, 26), (1, 1), (2, 3)])
def test_iqm_is_scipy_trim_mean_of_pooled_scores(shape: tuple[int, int]) -> None:
    scores = np.random.default_rng(sum(shape)).normal(size=shape)
    assert iqm(scores) == pytest.approx(scipy.stats.trim_mean(scores, 0.25, axis=None))


def test_iqm_of_unequal_run_counts_pools_all_runs() -> None:
    tasks = [[1.0, 5.0, 2.0], [9.0], [0.0, 3.0, 7.0, 4.0, 8.0]]
    pooled = np.concatenate(tasks)
    assert iqm(tasks) == pytest.approx(scipy.stats.trim_mean(pooled, 0.25))


def test_mean_median_and_optimality_gap_by_hand() -> None:
    # (runs, tasks): task means 2, 4, 12.
    scores = np.array([[1.0, 3.0, 10.0], [3.0, 5.0, 14.0]])
    assert aggregate_mean(scores) == pytest.approx(6.0)
    assert aggregate_median(scores) == pytest.approx(4.0)
    normalized = np.array([[0.2, 1.5], [0.6, 0.9]])
    # min(score, 1) = 0.2, 1.0, 0.6, 0.9 -> mean 0.675 -> gap 0.325.
    assert optimality_gap(normalized) == pytest.approx(0.325)
    assert optimality_gap(normalized, gamma=0.5) == pytest.approx(0.5 - (0.2 + 0.5 + 0.5 + 0.5) / 4)


def test_nan_padded_matrix_equals_list_of_tasks() -> None:
    tasks = [[1.0, 2.0, 3.0], [4.0, 6.0]]
    matrix = np.array([[1.0, 4.0], [2.0, 6.0], [3.0, np.nan]])
    assert aggregate_mean(matrix) == pytest.approx(aggregate_mean(tasks)) == pytest.approx(3.5)
    assert interval_estimates(matrix, reps=500) == interval_estimates(tasks, reps=500)


def test_probability_of_improvement_is_mann_whitney_u_over_nm() -> None:
    rng = np.random.default_rng(3)
    # Integer scores so that ties occur; unequal run counts.
    x = rng.integers(0, 5, size=(6, 4)).astype(float)
    y = rng.integers(0, 5, size=(4, 4)).astype(float)
    expected = np.mean(
        [
            scipy.stats.mannwhitneyu(x[:, t], y[:, t], alternative="greater").statistic / (6 * 4)
            for t in range(4)
        ]
    )
    assert probability_of_improvement(x, y) == pytest.approx(expected)
    assert probability_of_improvement(x, x) == pytest.approx(0.5)
    assert probability_of_improvement(x + 10, y) == pytest.approx(1.0)


def exact_bootstrap(tasks: list[list[float]], statistic) -> np.ndarray:
    """The statistic on every stratified resample, each equally likely (n^n per task)."""
    per_task = [list(itertools.product(runs, repeat=len(runs))) for runs in tasks]
    return np.array([statistic(list(combo)) for combo in itertools.product(*per_task)])


def is_quantile(value: float, exact: np.ndarray, level: float, tol: float = 0.012) -> bool:
    """True if ``value`` is a ``level`` quantile of the exact distribution, up to ``tol``."""
    return np.mean(exact < value) <= level + tol and np.mean(exact <= value) >= level - tol


@pytest.mark.parametrize("confidence", [0.95, 0.5])
def test_bootstrap_ci_matches_exhaustive_enumeration(confidence: float) -> None:
    # 2 tasks x 3 runs: 3^3 x 3^3 = 729 equally likely stratified resamples.
    tasks = [[0.1, 0.5, 1.3], [2.0, 2.7, 4.1]]
    exact = {
        "iqm": exact_bootstrap(tasks, lambda c: scipy.stats.trim_mean(np.ravel(c), 0.25)),
        "mean": exact_bootstrap(tasks, lambda c: np.mean([np.mean(t) for t in c])),
        "median": exact_bootstrap(tasks, lambda c: np.median([np.mean(t) for t in c])),
    }
    assert len(exact["iqm"]) == 729
    mc = interval_estimates(tasks, list(exact), reps=50_000, confidence=confidence, seed=1)
    tail = (1 - confidence) / 2
    for name, values in exact.items():
        assert is_quantile(mc[name].low, values, tail), name
        assert is_quantile(mc[name].high, values, 1 - tail), name
        # And close to the exact percentile interval in value.
        low, high = np.percentile(values, [100 * tail, 100 * (1 - tail)])
        spread = values.max() - values.min()
        assert mc[name].low == pytest.approx(low, abs=0.05 * spread), name
        assert mc[name].high == pytest.approx(high, abs=0.05 * spread), name


def test_probability_of_improvement_ci_matches_exhaustive_enumeration() -> None:
    # X and Y resampled independently: 3^3 x 2^2 = 108 equally likely resamples of one task.
    x, y = [0.3, 1.0, 2.0], [0.5, 1.0]
    exact = np.array(
        [
            probability_of_improvement([list(xs)], [list(ys)])
            for xs in itertools.product(x, repeat=3)
            for ys in itertools.product(y, repeat=2)
        ]
    )
    result = compare([x], [y], reps=50_000, seed=2)["probability_of_improvement"]
    assert result.point == pytest.approx(probability_of_improvement([x], [y]))
    assert is_quantile(result.low, exact, 0.025) and is_quantile(result.high, exact, 0.975)


def test_bootstrap_is_seeded_and_independent_of_chunk_size(monkeypatch) -> None:
    scores = np.random.default_rng(0).normal(size=(5, 4))
    first = interval_estimates(scores, reps=3000, seed=7)
    assert interval_estimates(scores, reps=3000, seed=7) == first
    assert interval_estimates(scores, reps=3000, seed=8) != first
    monkeypatch.setattr(aggregate, "_CHUNK_ELEMENTS", 50)  # 2-3 replicates per chunk
    assert interval_estimates(scores, reps=3000, seed=7) == first


def test_intervals_contain_point_and_single_run_tasks_are_fixed() -> None:
    scores = np.random.default_rng(1).normal(size=(10, 26))
    for iv in interval_estimates(scores, reps=2000).values():
        assert iv.low <= iv.point <= iv.high
    # One run per task: every resample is the data itself.
    single = interval_estimates([[1.0], [3.0]], reps=200)
    assert single["mean"].low == single["mean"].high == single["mean"].point == 2.0


def test_performance_profile_by_hand() -> None:
    scores = [[0.0, 1.0], [2.0, 3.0]]
    profile = performance_profile(scores, [-1.0, 0.5, 2.0, 3.0], reps=500)
    np.testing.assert_allclose(profile.fraction, [1.0, 0.75, 0.25, 0.0])
    assert np.all(profile.low <= profile.fraction) and np.all(profile.fraction <= profile.high)
    # Below every score: every resample has all runs above tau.
    assert profile.low[0] == profile.high[0] == 1.0


def test_task_mean_intervals_per_task() -> None:
    point, low, high = task_mean_intervals([[1.0, 2.0, 3.0], [5.0]], reps=1000)
    np.testing.assert_allclose(point, [2.0, 5.0])
    assert low[1] == high[1] == 5.0 and 1.0 <= low[0] < 2.0 < high[0] <= 3.0


def test_bad_inputs_raise_value_error() -> None:
    with pytest.raises(ValueError, match="no runs"):
        aggregate_mean([[1.0], []])
    with pytest.raises(ValueError, match="2 tasks"):
        probability_of_improvement([[1.0], [2.0]], [[1.0]])
    with pytest.raises(ValueError, match="reps"):
        interval_estimates([[1.0]], reps=0)
