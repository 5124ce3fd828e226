"""Find and load the run directories written by ``deeprl-train``.

A run directory holds ``config.yaml`` (resolved config) and ``metrics.jsonl`` (one JSON object per
logging step); ``eval.json`` (final evaluation) appears when the run finishes. A Hydra sweep
directory holds one run directory per job. Runs are grouped by (agent, task), where the task is
the first of ``env.id`` (gymnasium id), ``env.game`` (Atari suite), ``env.task`` (DMC, Meta-World)
and ``env.name`` that the run's config sets.

Nothing is dropped silently: unreadable runs, unfinished runs, groups with fewer seeds than the
others and tasks an agent has no runs on are all returned as problem messages for the report.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from deeprl.errors import UserError

#: metrics.jsonl key of the learning curve for each score key (see Normalizer.score_key).
CURVE_KEYS = {"return": "eval/return_mean", "success_rate": "eval/success_rate"}
#: eval.json key of the final score for each score key.
FINAL_KEYS = {"return": "return_mean", "success_rate": "success_rate"}


@dataclass
class Run:
    """One training run.

    Attributes:
        path: the run directory.
        agent: ``agent.name`` of its config.
        task: the first of ``env.id``, ``env.game``, ``env.task``, ``env.name`` that is set.
        env_name: ``env.name``.
        env_id: ``env.id`` (None if absent).
        backend: ``env.backend`` (None if absent), e.g. ``torch``, ``gym``, ``atari``.
        seed: ``seed`` (None if absent).
        final: contents of eval.json; None while the run is unfinished.
        curves: score key -> (steps (E,), values (E,)) from the ``eval/...`` entries.
        last_step: last step logged in metrics.jsonl (None if nothing was logged).
    """

    path: Path
    agent: str
    task: str
    env_name: str
    env_id: str | None
    backend: str | None
    seed: int | None
    final: dict[str, Any] | None
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    last_step: int | None = None

    @property
    def finished(self) -> bool:
        return self.final is not None

    def final_score(self, score_key: str, which: str = "final") -> float | None:
        """Evaluation score (``return_mean`` or ``success_rate``) of the final evaluation, or of
        the best one (``which="best"``: eval.json's ``best``, the weights kept as
        ``agent_best.safetensors``); None if not recorded."""
        if self.final is None:
            return None
        source = self.final if which == "final" else self.final.get("best") or {}
        value = source.get(FINAL_KEYS[score_key])
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    def describe(self) -> str:
        seed = "?" if self.seed is None else self.seed
        return f"{self.agent} on {self.task} seed {seed} ({self.path})"


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "metrics.jsonl").is_file()


def discover_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories at or below each path (sorted, without duplicates).

    Raises:
        UserError: a path does not exist or is not a directory, or no run directory was found.
    """
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UserError(f"{raw}: no such directory; pass run or sweep directories")
        if not path.is_dir():
            raise UserError(f"{raw} is a file; pass run or sweep directories of deeprl-train")
        if is_run_dir(path):
            found.add(path.resolve())
            continue
        found.update(p.parent.resolve() for p in path.rglob("config.yaml") if is_run_dir(p.parent))
    if not found:
        where = ", ".join(str(p) for p in paths)
        raise UserError(
            f"no run directories found under {where}: a run directory holds config.yaml and "
            f"metrics.jsonl as written by deeprl-train; pass such directories or a sweep "
            f"(multirun) directory that contains them"
        )
    return sorted(found)


def _read_curves(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int | None, str]:
    """Eval curves and last step from metrics.jsonl, plus a note on damaged lines ('' if none)."""
    points: dict[str, list[tuple[int, float]]] = defaultdict(list)
    last_step = None
    bad = 0
    lines = path.read_text().splitlines()
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (ValueError, KeyError, TypeError):
            bad += 1  # e.g. the last line of a run killed mid-write
            continue
        last_step = step
        for score_key, metric in CURVE_KEYS.items():
            value = record.get(metric)
            if isinstance(value, int | float) and math.isfinite(value):
                points[score_key].append((step, float(value)))
    curves = {}
    for key, pts in points.items():
        pts.sort()
        curves[key] = (np.array([s for s, _ in pts]), np.array([v for _, v in pts]))
    note = f"{bad} unreadable line(s) in {path} ignored" if bad else ""
    return curves, last_step, note


def load_run(path: Path) -> tuple[Run | None, list[str]]:
    """Load one run directory; returns (run or None if unusable, problem messages)."""
    problems: list[str] = []
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(path / "config.yaml"), resolve=False)
    except (OmegaConfBaseException, yaml.YAMLError, OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return None, [f"{path}: config.yaml is not readable ({reason}); run skipped"]
    agent = _get(cfg, "agent", "name")
    env_name = _get(cfg, "env", "name")
    if not isinstance(agent, str) or not isinstance(env_name, str):
        return None, [f"{path}: config.yaml has no agent.name or env.name; run skipped"]
    env_id, game, task, backend = (
        _text(_get(cfg, "env", k)) for k in ("id", "game", "task", "backend")
    )
    seed = cfg.get("seed") if isinstance(cfg, dict) else None
    final = None
    eval_path = path / "eval.json"
    if eval_path.is_file():
        try:
            final = json.loads(eval_path.read_text())
        except (ValueError, OSError) as err:
            problems.append(f"{path}: eval.json is not readable ({err}); run counted as partial")
    curves, last_step, note = _read_curves(path / "metrics.jsonl")
    if note:
        problems.append(note)
    run = Run(
        path=path,
        agent=agent,
        task=env_id or game or task or env_name,
        env_name=env_name,
        env_id=env_id,
        backend=backend,
        seed=seed if isinstance(seed, int) else None,
        final=final if isinstance(final, dict) else None,
        curves=curves,
        last_step=last_step,
    )
    return run, problems


def _text(value: Any) -> str | None:
    """A non-empty string config value, else None."""
    return value if isinstance(value, str) and value else None


def _get(cfg: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(cfg, dict):
            return None
        cfg = cfg.get(key)
    return cfg


def load_runs(paths: list[str | Path]) -> tuple[list[Run], list[str]]:
    """Discover and load all runs under ``paths``; returns (runs, problem messages)."""
    runs: list[Run] = []
    problems: list[str] = []
    for path in discover_runs(paths):
        run, notes = load_run(path)
        problems.extend(notes)
        if run is not None:
            runs.append(run)
    if not runs:
        raise UserError(
            f"no usable run directories under {', '.join(map(str, paths))}: {'; '.join(problems)}"
        )
    return runs, problems


Groups = dict[tuple[str, str], list[Run]]


def group_runs(runs: list[Run]) -> Groups:
    """(agent, task) -> runs, ordered by seed then path."""
    groups: Groups = defaultdict(list)
    for run in runs:
        groups[(run.agent, run.task)].append(run)
    for members in groups.values():
        members.sort(key=lambda r: (r.seed is None, r.seed or 0, str(r.path)))
    return dict(sorted(groups.items()))


def completeness_problems(groups: Groups, score_keys: Mapping[str, str] | None = None) -> list[str]:
    """Messages naming every run or group that is missing or incomplete.

    Args:
        groups: from :func:`group_runs`.
        score_keys: task -> the score a finished run must have (``"return"`` by default).

    - a run without eval.json (unfinished) or whose eval.json lacks the score;
    - an agent with no runs on a task that other agents have;
    - an (agent, task) with fewer finished seeds than the most complete group, with the
      missing seed numbers when seeds are known;
    - the same seed appearing twice in one group.
    """
    problems: list[str] = []
    agents = sorted({agent for agent, _ in groups})
    tasks = sorted({task for _, task in groups})
    for agent in agents:
        missing = [t for t in tasks if (agent, t) not in groups]
        if missing:
            problems.append(f"agent {agent} has no runs on task(s): {', '.join(missing)}")
    finished: dict[tuple[str, str], list[Run]] = {}
    for key, runs in groups.items():
        finished[key] = []
        for run in runs:
            if not run.finished:
                step = "nothing logged" if run.last_step is None else f"last step {run.last_step}"
                problems.append(f"partial run (no eval.json, {step}): {run.describe()}")
            elif run.final_score(score := (score_keys or {}).get(run.task, "return")) is None:
                problems.append(
                    f"eval.json has no {FINAL_KEYS[score]}: {run.describe()}; run not scored"
                )
            else:
                finished[key].append(run)
    most = max((len(r) for r in finished.values()), default=0)
    all_seeds = {r.seed for runs in finished.values() for r in runs if r.seed is not None}
    for (agent, task), runs in finished.items():
        seeds = [r.seed for r in runs if r.seed is not None]
        duplicates = sorted({s for s in seeds if seeds.count(s) > 1})
        if duplicates:
            problems.append(
                f"{agent} on {task}: seed(s) {', '.join(map(str, duplicates))} appear in more "
                f"than one finished run; all are counted"
            )
        if len(runs) < most:
            absent = sorted(all_seeds - set(seeds))
            detail = f"; missing seed(s): {', '.join(map(str, absent))}" if absent else ""
            problems.append(
                f"{agent} on {task}: {len(runs)} finished seed(s), others have {most}{detail}"
            )
    return problems
