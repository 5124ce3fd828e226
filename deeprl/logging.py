"""Run logging: ``metrics.jsonl``, TensorBoard (and W&B) scalars, and what a person reads.

``metrics.jsonl`` holds one JSON object per logging step and only quantities that are functions of
the seed (returns, losses), never wall-clock figures, so two runs with the same seed write the same
file. Throughput (SPS) goes to TensorBoard and the console. Every line is flushed.

Console output, on stdout: a start line, then either a progress bar (on a terminal) or a plain
progress line every ``progress_every`` seconds (in a log file or a pipe), a line per evaluation,
and a final summary. Warnings and interruptions go to stderr.
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


def format_duration(seconds: float) -> str:
    """``1:02:03`` / ``2:03`` / ``4.2s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class RunLogger:
    """Writes metrics for one run directory and reports progress.

    Args:
        run_dir: the run directory.
        total_steps: the run's budget (bar length, ETA).
        progress: a tqdm bar (True), nothing (False), or None: the bar on a terminal, plain
            progress lines otherwise.
        start_step: on resume, lines after this step are dropped from ``metrics.jsonl`` and
            TensorBoard events after it are purged, so a resumed run's files equal an
            uninterrupted one's.
        tensorboard: write TensorBoard event files.
        progress_every: seconds between plain progress lines.
        unit: what a step counts (``env steps``, ``updates``).
        backends: further metric sinks with ``log(step, metrics)`` and ``close()`` (W&B).
    """

    def __init__(
        self,
        run_dir: str | Path,
        total_steps: int,
        progress: bool | None = None,
        start_step: int = 0,
        tensorboard: bool = True,
        progress_every: float = 30.0,
        unit: str = "steps",
        backends: list[Any] | None = None,
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
        self.backends = list(backends or [])
        interactive = sys.stderr.isatty()
        self._plain = progress is None and not interactive
        self._bar = tqdm(
            total=total_steps,
            initial=start_step,
            unit=unit.split()[-1].rstrip("s"),
            unit_scale=True,
            dynamic_ncols=True,
            disable=not (progress or (progress is None and interactive)),
        )
        self.total_steps = total_steps
        self.unit = unit
        self.progress_every = progress_every
        self._started = time.perf_counter()
        self._start_step = start_step
        self._last_time = self._last_line = self._started
        self._last_step = start_step
        self._sps = 0.0
        self._postfix: dict[str, str] = {}
        self._eval_shown = -1  # episodes the bar's description shows during an evaluation

    # ---- console ------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """One line for a person, on stdout (above the bar when there is one)."""
        if self._bar.disable:
            print(text, flush=True)
        else:
            self._bar.write(text, file=sys.stdout)

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
        """Append one line to ``metrics.jsonl`` and the same scalars to TensorBoard (and W&B)."""
        record = {"step": step, **{k: _json_number(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, step)
        for backend in self.backends:
            backend.log(step, metrics)
        if "train/episode_return" in metrics:
            self._postfix["return"] = f"{metrics['train/episode_return']:.1f}"
        if "eval/return_mean" in metrics:
            self._postfix["eval"] = f"{metrics['eval/return_mean']:.1f}"

    def progress(self, step: int) -> None:
        """Advance the bar (or print a plain line when one is due) and record throughput."""
        now = time.perf_counter()
        if now - self._last_time >= 0.5:
            self._sps = (step - self._last_step) / (now - self._last_time)
            if self.writer is not None:
                self.writer.add_scalar("perf/steps_per_second", self._sps, step)
            self._postfix["sps"] = f"{self._sps:,.0f}"
            self._bar.set_postfix(self._postfix, refresh=False)
            self._bar.update(step - self._bar.n)
            self._last_time, self._last_step = now, step
        if self._plain and now - self._last_line >= self.progress_every:
            self._last_line = now
            self.say(self._progress_line(step, now))

    def _progress_line(self, step: int, now: float) -> str:
        elapsed = now - self._started
        done = (step - self._start_step) / max(1, self.total_steps - self._start_step)
        eta = elapsed * (1 - done) / done if done > 0 else float("nan")
        rate = (step - self._start_step) / elapsed if elapsed > 0 else 0.0
        parts = [
            f"deeprl: {step:,}/{self.total_steps:,} {self.unit} "
            f"({100 * step / self.total_steps:.0f}%)",
            f"{rate:,.0f} {self.unit}/s",
            *(f"{k} {v}" for k, v in self._postfix.items() if k != "sps"),
            f"{format_duration(elapsed)} elapsed"
            + (f", ETA {format_duration(eta)}" if math.isfinite(eta) else ""),
        ]
        return " | ".join(parts)

    def eval_progress(
        self, step: int, episodes: int, total: int, env_steps: int, started: float
    ) -> None:
        """During an evaluation (called every eval step): the bar shows the episodes done;
        plainly, a line when one is due."""
        if episodes != self._eval_shown:
            self._eval_shown = episodes
            self._bar.set_description(f"eval {episodes}/{total}", refresh=True)
        now = time.perf_counter()
        if self._plain and now - self._last_line >= self.progress_every:
            self._last_line = now
            self.say(
                f"deeprl: evaluating at step {step:,}: {episodes}/{total} episodes, "
                f"{env_steps:,} steps per eval copy ({format_duration(now - started)})"
            )

    def eval_done(self, step: int, report: dict, seconds: float) -> None:
        self._eval_shown = -1
        self._bar.set_description("")
        normalized = (
            f" | normalized score {report['normalized_score']:.1f}"
            if "normalized_score" in report else ""
        )
        self.say(
            f"deeprl: eval at step {step:,}: return {report['return_mean']:.2f} +- "
            f"{report['return_std']:.2f} over {report['episodes']} episodes "
            f"({format_duration(seconds)}){normalized}"
        )

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._started

    def close(self, step: int) -> None:
        self._bar.update(step - self._bar.n)
        self._bar.close()
        self._file.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        for backend in self.backends:
            backend.close()
