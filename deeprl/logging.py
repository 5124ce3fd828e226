"""Run logging: ``metrics.jsonl``, TensorBoard scalars and a progress bar.

``metrics.jsonl`` holds one JSON object per logging step and only quantities that are functions of
the seed (returns, losses), never wall-clock figures, so two runs with the same seed write the same
file. Throughput (SPS) goes to TensorBoard and the progress bar. Every line is flushed.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    return value


class RunLogger:
    """Writes metrics for one run directory.

    Args:
        run_dir: the run directory.
        total_steps: length of the progress bar.
        progress: show a tqdm bar (``None``: only when stderr is a terminal).
        start_step: on resume, lines after this step are dropped from ``metrics.jsonl`` and
            TensorBoard events after it are purged, so a resumed run's files equal an
            uninterrupted one's.
        tensorboard: write TensorBoard event files.
    """

    def __init__(
        self,
        run_dir: str | Path,
        total_steps: int,
        progress: bool | None = None,
        start_step: int = 0,
        tensorboard: bool = True,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self._truncate_after(start_step)
        self._file = self.metrics_path.open("a")
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = start_step + 1 if start_step else None
            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge)
        if progress is None:
            progress = sys.stderr.isatty()
        self._bar = tqdm(
            total=total_steps,
            initial=start_step,
            unit="step",
            unit_scale=True,
            dynamic_ncols=True,
            disable=not progress,
        )
        self._last_time = time.perf_counter()
        self._last_step = start_step
        self._postfix: dict[str, str] = {}

    def _truncate_after(self, step: int) -> None:
        if not self.metrics_path.exists():
            return
        kept = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (ValueError, KeyError):
                break  # a torn last line from a killed run
        self.metrics_path.write_text("".join(f"{line}\n" for line in kept))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Append one line to ``metrics.jsonl`` and the same scalars to TensorBoard."""
        record = {"step": step, **{k: _json_number(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, step)
        if "train/episode_return" in metrics:
            self._postfix["return"] = f"{metrics['train/episode_return']:.1f}"
        if "eval/return_mean" in metrics:
            self._postfix["eval"] = f"{metrics['eval/return_mean']:.1f}"

    def progress(self, step: int) -> None:
        """Advance the progress bar and record throughput."""
        now = time.perf_counter()
        if now - self._last_time < 0.5:
            return
        sps = (step - self._last_step) / (now - self._last_time)
        if self.writer is not None:
            self.writer.add_scalar("perf/steps_per_second", sps, step)
        self._postfix["sps"] = f"{sps:,.0f}"
        self._bar.set_postfix(self._postfix, refresh=False)
        self._bar.update(step - self._bar.n)
        self._last_time, self._last_step = now, step

    def close(self, step: int) -> None:
        self._bar.update(step - self._bar.n)
        self._bar.close()
        self._file.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
