"""Weights & Biases logging (``pip install "deeprl[wandb]"``), a metric sink beside TensorBoard.

Files go to ``<run dir>/wandb``. ``mode="offline"`` needs no network and no login: the run is
written to ``<run dir>/wandb/offline-run-<time>-<id>`` and uploaded later with ``wandb sync``
(:attr:`WandbBackend.sync_command`). ``mode="online"`` needs ``wandb login`` (or
``WANDB_API_KEY``); ``mode="disabled"`` logs nothing and does not import wandb.

Metrics are plotted against ``global_step`` (deeprl's step counter) rather than W&B's own step,
which must only increase: a resumed run restarts from its last checkpoint and logs steps again.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deeprl.errors import UserError

MODES = ("online", "offline", "disabled")


class WandbBackend:
    """One W&B run for one deeprl run directory.

    Args:
        run_dir: the deeprl run directory; W&B writes under ``run_dir/wandb``.
        config: the run's config (nested dicts), shown as the W&B run config.
        project: W&B project (None: W&B's default, ``uncategorized``).
        name: display name of the run (None: W&B picks one).
        tags: W&B tags.
        mode: ``"online"``, ``"offline"`` or ``"disabled"``.
        resume_id: the :attr:`run_id` of an earlier backend of the same deeprl run: its W&B run
            is continued (``resume="allow"``) instead of starting a new one.
        entity: W&B user or team (None: the login's default).

    Raises:
        UserError: an unknown mode, wandb not installed, or W&B refused to start the run
            (e.g. online without a login).
    """

    def __init__(
        self,
        run_dir: str | Path,
        config: Mapping[str, Any],
        project: str | None = None,
        name: str | None = None,
        tags: Sequence[str] = (),
        mode: str = "offline",
        resume_id: str | None = None,
        entity: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise UserError(f"unknown W&B mode {mode!r}; choose one of: {', '.join(MODES)}")
        self._run = None
        self._run_id = resume_id
        self._sync_command = None
        if mode == "disabled":
            return
        if importlib.util.find_spec("wandb") is None:
            raise UserError(
                "W&B logging needs the wandb package, which is not installed: "
                'pip install "deeprl[wandb]"'
            )
        import wandb

        # wandb logs INFO lines to its own debug.log; under Hydra's INFO root logger they would
        # also reach the console.
        logging.getLogger("wandb").propagate = False
        # wandb's process-wide analytics take the mode from the environment when its first run
        # starts, not from init: without WANDB_MODE an offline run still contacts the W&B server
        # when the process exits. Restored afterwards, for the caller's own W&B runs.
        previous = os.environ.get("WANDB_MODE")
        if mode == "offline":
            os.environ["WANDB_MODE"] = mode
        try:
            self._run = wandb.init(
                dir=str(run_dir), config=dict(config), project=project, entity=entity, name=name,
                tags=list(tags), mode=mode, id=resume_id, resume="allow" if resume_id else None,
                # A new run even if another one is open in this process (tests, in-process
                # sweeps); silent and no console capture: deeprl prints its own progress.
                reinit="create_new", settings=wandb.Settings(silent=True, console="off"),
            )  # fmt: skip
        except wandb.errors.Error as e:
            reason = str(e).strip().splitlines()[0]
            hint = (
                " (run `wandb login` or set WANDB_API_KEY, or log offline: wandb.mode=offline, "
                "then `wandb sync`)"
                if mode == "online"
                else ""
            )
            raise UserError(f"W&B could not start an {mode} run: {reason}{hint}") from e
        finally:
            if previous is None:
                os.environ.pop("WANDB_MODE", None)
            else:
                os.environ["WANDB_MODE"] = previous
        self._run_id = self._run.id
        if mode == "offline":
            self._sync_command = f"wandb sync {self._run.settings.sync_dir}"
        self._run.define_metric("global_step")
        self._run.define_metric("*", step_metric="global_step")

    @property
    def run_id(self) -> str | None:
        """The W&B run id; pass it as ``resume_id`` when the deeprl run is resumed."""
        return self._run_id

    @property
    def sync_command(self) -> str | None:
        """The command that uploads an offline run (None unless ``mode="offline"``)."""
        return self._sync_command

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Log ``metrics`` at deeprl step ``step``."""
        if self._run is not None:
            self._run.log({**metrics, "global_step": step})

    def add_video(self, tag: str, path: str | Path, step: int) -> None:
        """Log the mp4 at ``path`` (e.g. an eval video) under ``tag`` at step ``step``."""
        if self._run is not None:
            import wandb

            self._run.log({tag: wandb.Video(str(path), format="mp4"), "global_step": step})

    def close(self, exit_code: int = 0) -> None:
        """Finish the W&B run (a non-zero ``exit_code`` marks it failed); safe to call twice."""
        if self._run is not None:
            self._run.finish(exit_code=exit_code)
            self._run = None
