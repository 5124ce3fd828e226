"""Hydra callbacks: a sweep writes its benchmark report when its last job ends."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class ReportOnSweepEnd(Callback):
    """Runs ``deeprl-report <sweep dir> --out <sweep dir>/report`` after a multirun.

    Registered for every ``-m`` sweep as ``hydra.callbacks.report`` in ``configs/config.yaml``;
    Hydra calls ``on_multirun_end`` only for multiruns, so single runs write no report.

    Args:
        extra_args: further ``deeprl-report`` arguments, e.g. ``["--reference", "cleanrl-sac"]``
            (an experiment config sets ``hydra.callbacks.report.extra_args``).
    """

    def __init__(self, extra_args: list[str] | None = None) -> None:
        self.extra_args = list(extra_args or [])

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from deeprl.eval.report import main as report

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report([str(sweep_dir), "--out", str(sweep_dir / "report"), *self.extra_args])
        except SystemExit as exc:  # the report already printed why; the runs are still there
            print(f"deeprl-train: no report for {sweep_dir} (exit {exc.code})", file=sys.stderr)
