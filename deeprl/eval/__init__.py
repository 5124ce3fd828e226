"""Evaluation statistics: score normalizers, aggregate metrics with bootstrap CIs, reports.

The report CLI lives in :mod:`deeprl.eval.report` (``deeprl-report``); it is not imported here so
that ``python -m deeprl.eval.report`` runs it without a double import.
"""

from deeprl.eval.aggregate import (
    METRICS,
    Interval,
    Profile,
    aggregate_mean,
    aggregate_median,
    compare,
    interval_estimates,
    iqm,
    optimality_gap,
    performance_profile,
    probability_of_improvement,
)
from deeprl.eval.normalize import (
    NORMALIZERS,
    SUITES,
    atari_games,
    atari_hns,
    d4rl_normalized,
    get_suite,
    infer_suite,
    normalize,
)

__all__ = [
    "METRICS",
    "NORMALIZERS",
    "SUITES",
    "Interval",
    "Profile",
    "aggregate_mean",
    "aggregate_median",
    "atari_games",
    "atari_hns",
    "compare",
    "d4rl_normalized",
    "get_suite",
    "infer_suite",
    "interval_estimates",
    "iqm",
    "normalize",
    "optimality_gap",
    "performance_profile",
    "probability_of_improvement",
]
