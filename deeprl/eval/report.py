"""``deeprl-report``: tables, aggregate statistics and learning curves from run directories.

Usage::

    deeprl-report runs/multirun/2026-11-21 [more run or sweep dirs] [--out report]
        [--suite atari] [--metric return|normalized] [--reference cleanrl-sac]
        [--compare ppo sac]

Writes to ``--out`` (default: ``report/`` beside the runs, see :func:`default_out`, named on
stdout): ``report.md`` (per-task mean +- std over seeds, aggregates with 95% stratified bootstrap
CIs, missing or partial runs, comparisons), the same tables as CSV and LaTeX, ``curves/<task>.png``
(evaluation curves from every logged evaluation, mean over seeds with a 95% CI band) and, for
normalized scores, ``performance_profile.png``. Bad input ends the run with one
``deeprl-report: <message>`` line on stderr (after any warnings) and exit code 2, without a
traceback.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deeprl.errors import UserError, close_matches
from deeprl.eval.aggregate import (
    Interval,
    Profile,
    compare,
    interval_estimates,
    performance_profile,
    task_mean_intervals,
)
from deeprl.eval.normalize import IDENTITY, Affine, Suite, get_suite, infer_suite, read_data_csv
from deeprl.eval.runs import (
    Groups,
    Run,
    completeness_problems,
    group_runs,
    is_run_dir,
    load_runs,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PROG = "deeprl-report"
#: Bootstrap replicates for the CI band of each learning-curve point (one point = one "task").
CURVE_REPS = 2_000
METRIC_TITLES = {
    "mean": "mean",
    "median": "median",
    "iqm": "IQM",
    "optimality_gap": "optimality gap",
}


# --- scoring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scorer:
    """How one task's runs are scored in this report.

    Attributes:
        suite: the task's suite (from --suite or inferred from the env).
        normalized: scores are the suite's normalized score (else raw returns).
        score_key: ``"return"`` or ``"success_rate"`` (what is read from each run).
        affine: the normalization applied (identity for raw returns).
    """

    suite: Suite
    normalized: bool
    score_key: str
    affine: Affine


def make_scorers(
    groups: Groups, suite_name: str | None, metric: str | None
) -> tuple[dict[str, Scorer], str, str]:
    """Scorer per task, the metric in use and its axis label.

    Without ``metric``, scores are normalized when every task's suite has a non-identity
    normalizer (Atari, D4RL, Meta-World), else raw returns are reported.

    Raises:
        UserError: unknown suite, or a task the normalizer has no constants for.
    """
    forced = get_suite(suite_name) if suite_name else None
    env_of: dict[str, Run] = {run.task: run for runs in groups.values() for run in runs}
    suites = {
        task: forced or get_suite(infer_suite(run.env_name, run.env_id, run.backend))
        for task, run in env_of.items()
    }
    if metric is None:
        normalizable = all(not s.normalizer.is_identity for s in suites.values())
        metric = "normalized" if normalizable else "return"
    scorers = {}
    for task, suite in suites.items():
        if metric == "return":
            scorers[task] = Scorer(suite, False, "return", IDENTITY)
        else:
            normalizer = suite.normalizer
            scorers[task] = Scorer(suite, True, normalizer.score_key, normalizer.reference(task))
    if metric == "return":
        label = "evaluation return"
    else:
        labels = {s.normalizer.label for s in suites.values()}
        label = labels.pop() if len(labels) == 1 else "normalized score"
    return scorers, metric, label


def scored(runs: list[Run], scorer: Scorer, which: str = "final") -> list[tuple[Run, float]]:
    """Finished runs that have the score, with their (normalized) final or best score."""
    out = []
    for run in runs:
        value = run.final_score(scorer.score_key, which)
        if value is not None:
            out.append((run, float(scorer.affine(value))))
    return out


# --- published references --------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceRow:
    """A published per-task result (data/references.csv)."""

    reference: str
    task: str
    mean: float
    std: float | None
    metric: str


def reference_key(task: str) -> str:
    """Task name without version or ALE decoration, to match deeprl tasks with published ones:
    'ALE/Pong-v5' and 'Pong' -> 'pong'; 'HalfCheetah-v5' and 'HalfCheetah-v2' -> 'halfcheetah'."""
    stem = re.sub(r"^ALE/", "", task.strip())
    stem = re.sub(r"(NoFrameskip|Deterministic)?-v\d+$", "", stem)
    return stem.lower()


def load_references(names: Sequence[str]) -> dict[str, dict[str, ReferenceRow]]:
    """name -> (reference_key(task) -> row) for each requested reference.

    Raises:
        UserError: an unknown reference name.
    """
    table: dict[str, dict[str, ReferenceRow]] = {}
    for row in read_data_csv("references.csv"):
        std = float(row["std"]) if row["std"] else None
        entry = ReferenceRow(row["reference"], row["task"], float(row["mean"]), std, row["metric"])
        table.setdefault(entry.reference, {})[reference_key(entry.task)] = entry
    for name in names:
        if name not in table:
            raise UserError(
                f"unknown reference {name!r}.{close_matches(name, table)} "
                f"References: {', '.join(sorted(table))}."
            )
    return {name: table[name] for name in names}


def reference_value(row: ReferenceRow, scorer: Scorer) -> tuple[float, float | None] | None:
    """A published (mean, std) on this report's scale, or None if it cannot be converted."""
    normalizer = scorer.suite.normalizer
    if row.metric == "normalized" and not scorer.normalized and not normalizer.is_identity:
        # Published normalized with the published task's constants: undo with the same ones.
        to_raw = normalizer.reference(row.task)
        return to_raw.inverse(row.mean), _scale_std(row.std, 1.0 / to_raw.slope)
    if row.metric == "return" and scorer.normalized:
        if scorer.score_key != "return":
            return None  # a return cannot become a success rate
        return scorer.affine(row.mean), _scale_std(row.std, scorer.affine.slope)
    return row.mean, row.std


def _scale_std(std: float | None, factor: float) -> float | None:
    return None if std is None else abs(factor) * std


# --- formatting ------------------------------------------------------------------------------


def _decimals(*values: float | None) -> int:
    """Decimals for numbers shown together, from the largest magnitude: 3 below 10, 0 from 1000."""
    size = max((abs(v) for v in values if v is not None and math.isfinite(v)), default=0.0)
    return 3 if size < 10 else 2 if size < 100 else 1 if size < 1000 else 0


def fmt(x: float | None, decimals: int | None = None) -> str:
    """A number with precision matched to its size ('-' for None or NaN)."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.{_decimals(x) if decimals is None else decimals}f}"


def fmt_pm(mean: float, std: float | None) -> str:
    """'mean ± std' with the mean's precision; just the mean when std is unknown."""
    digits = _decimals(mean)
    return fmt(mean, digits) if std is None else f"{fmt(mean, digits)} ± {fmt(std, digits)}"


def fmt_interval(iv: Interval) -> str:
    digits = _decimals(iv.point, iv.low, iv.high)
    return f"{fmt(iv.point, digits)} [{fmt(iv.low, digits)}, {fmt(iv.high, digits)}]"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


_LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"}
_LATEX_SPECIAL.update(
    {"~": r"\textasciitilde{}", "^": r"\^{}", "\\": r"\textbackslash{}", "±": r"$\pm$"}
)


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def latex_table(header: list[str], rows: list[list[str]], caption: str) -> str:
    """A booktabs table (caption on top); cells are escaped, '±' becomes $\\pm$."""

    def line(cells: list[str]) -> str:
        return " & ".join(map(latex_escape, cells)) + r" \\"

    return "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{latex_escape(caption)}}}",
            r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
            r"\toprule",
            line(header),
            r"\midrule",
            *map(line, rows),
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    )


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


# --- plots -----------------------------------------------------------------------------------


def _figure() -> tuple[Figure, Axes]:
    # Figure without pyplot: renders with Agg and leaves the user's matplotlib backend alone.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=11)
    return fig, ax


def slug(task: str) -> str:
    """File-name-safe task name: 'ALE/Pong-v5' -> 'ALE_Pong-v5'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", task).strip("_") or "task"


@dataclass(frozen=True)
class Band:
    """A learning curve over seeds: (E,) steps, mean and 95% CI bounds, from ``seeds`` runs of
    which ``unfinished`` have no eval.json yet."""

    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    seeds: int
    unfinished: int


def curve_band(runs: list[Run], scorer: Scorer, seed: int) -> Band | None:
    """Mean evaluation curve over seeds with a 95% bootstrap CI at each step.

    Each run is linearly interpolated onto the union of all runs' evaluation steps, within its
    own logged range only (no extrapolation), so seeds evaluated at slightly different steps
    still line up. None when no run logged an evaluation.
    """
    key = scorer.score_key
    with_curve = [run for run in runs if key in run.curves and len(run.curves[key][0])]
    curves = [run.curves[key] for run in with_curve]
    if not curves:
        return None
    grid = np.unique(np.concatenate([steps for steps, _ in curves]))
    columns: list[list[float]] = [[] for _ in grid]
    for steps, values in curves:
        inside = (grid >= steps[0]) & (grid <= steps[-1])
        values_on_grid = scorer.affine(np.interp(grid[inside], steps, values))
        for i, v in zip(np.flatnonzero(inside), np.atleast_1d(values_on_grid), strict=True):
            columns[i].append(float(v))
    point, low, high = task_mean_intervals(columns, reps=CURVE_REPS, seed=seed)
    unfinished = sum(not run.finished for run in with_curve)
    return Band(grid, point, low, high, len(curves), unfinished)


def plot_curves(task: str, bands: dict[str, Band], label: str, path: Path) -> Figure:
    """One line per agent with its CI band; legend gives seed counts. Returns the saved figure."""
    fig, ax = _figure()
    for agent, band in bands.items():
        n = band.seeds
        legend = f"{agent} ({n} seed{'s' * (n != 1)}"
        legend += f", {band.unfinished} unfinished)" if band.unfinished else ")"
        single = len(band.steps) == 1
        # A line through one point draws nothing: a single evaluation is shown as a marker.
        (line,) = ax.plot(
            band.steps, band.mean, marker="o" if single else None, linewidth=2, label=legend
        )
        if single:  # a band at one step has no width: draw its CI as a bar
            ax.vlines(band.steps, band.low, band.high, color=line.get_color(), linewidth=2)
        else:
            ax.fill_between(
                band.steps, band.low, band.high, color=line.get_color(), alpha=0.2, linewidth=0
            )
    ax.set_xlabel("environment steps", fontsize=12)
    ax.set_ylabel(label, fontsize=12)
    ax.set_title(f"{task} (mean over seeds, 95% CI)", fontsize=13)
    ax.legend(fontsize=11)
    fig.savefig(path, dpi=120)
    return fig


def plot_profiles(profiles: dict[str, Profile], label: str, path: Path) -> None:
    """Performance profiles of all agents on one axis, each with its CI band."""
    fig, ax = _figure()
    for agent, prof in profiles.items():
        # A profile is a step function of tau: draw it as one.
        (line,) = ax.step(prof.taus, prof.fraction, where="post", linewidth=2, label=agent)
        ax.fill_between(
            prof.taus, prof.low, prof.high, step="post", color=line.get_color(), alpha=0.2
        )
    ax.set_xlabel(f"{label} threshold τ", fontsize=12)
    ax.set_ylabel("fraction of runs with score > τ", fontsize=12)
    ax.set_title("Performance profile (95% CI)", fontsize=13)
    ax.legend(fontsize=11)
    fig.savefig(path, dpi=120)


# --- the report ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Tables, aggregate statistics with bootstrap CIs and learning curves from "
        "deeprl-train run directories (or Hydra sweep directories holding them).",
    )
    parser.add_argument("paths", nargs="+", help="run directories or sweep directories")
    parser.add_argument(
        "--out",
        help="output directory (default: report/ beside the runs: inside the given sweep "
        "directory, or in the common parent of the given directories)",
    )
    parser.add_argument(
        "--suite",
        help="score every task with this suite's normalizer (atari, d4rl, metaworld, dmc, "
        "mujoco, classic, raw); default: inferred per task from its env",
    )
    parser.add_argument(
        "--metric",
        choices=["return", "normalized"],
        help="raw evaluation return or the suite's normalized score (default: normalized when "
        "every task has a normalizer, e.g. Atari, D4RL, Meta-World)",
    )
    parser.add_argument(
        "--reference",
        action="append",
        default=[],
        help="add a column of published results (repeatable), e.g. cleanrl-sac, cleanrl-ppo, "
        "iris, corl-iql",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="probability of improvement P(A > B) and IQM(A) - IQM(B), with 95%% CIs",
    )
    parser.add_argument(
        "--score",
        choices=["final", "best"],
        default="final",
        help="score each run by its final evaluation (default) or its best one (the weights "
        "kept as agent_best.safetensors, as SB3's EvalCallback)",
    )
    parser.add_argument("--reps", type=int, default=50_000, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    return parser


@dataclass
class Report:
    """Everything computed for one report; :func:`write_report` turns it into files."""

    metric: str
    label: str
    agents: list[str]
    tasks: list[str]
    scores: dict[tuple[str, str], list[tuple[Run, float]]]
    aggregates: dict[str, dict[str, Interval]]
    agent_tasks: dict[str, list[str]]
    references: dict[str, dict[str, tuple[str, float, float | None]]]
    comparison: dict[str, Interval] | None
    problems: list[str]
    notes: list[str]


def compare_agents(
    a: str,
    b: str,
    report_scores: dict[tuple[str, str], list[tuple[Run, float]]],
    reps: int,
    seed: int,
) -> dict[str, Interval]:
    """--compare A B over the tasks both have finished runs on (which must be the same tasks)."""
    agents = sorted({agent for agent, _ in report_scores})
    for name in (a, b):
        if name not in agents:
            raise UserError(
                f"--compare: no finished runs of agent {name!r}.{close_matches(name, agents)} "
                f"Agents: {', '.join(agents)}."
            )
    tasks = {
        name: sorted(t for (agent, t), s in report_scores.items() if agent == name and s)
        for name in (a, b)
    }
    if tasks[a] != tasks[b]:
        gaps = [
            f"{other} lacks {', '.join(sorted(set(tasks[name]) - set(tasks[other])))}"
            for name, other in ((a, b), (b, a))
            if set(tasks[name]) - set(tasks[other])
        ]
        raise UserError(
            f"--compare {a} {b}: the agents must have finished runs on the same tasks, but "
            f"{'; '.join(gaps)}. Run the missing tasks or pass only the matching directories."
        )
    x = [np.array([s for _, s in report_scores[(a, t)]]) for t in tasks[a]]
    y = [np.array([s for _, s in report_scores[(b, t)]]) for t in tasks[a]]
    return compare(x, y, reps=reps, seed=seed)


def build_report(args: argparse.Namespace) -> tuple[Report, Groups, dict[str, Scorer]]:
    """Load the runs, score them and compute tables, aggregates and the comparison.

    Raises:
        UserError: any bad input (paths, suite, reference, --compare agents or tasks, --reps).
    """
    if args.reps < 1:
        raise UserError(f"--reps must be a positive number of replicates, not {args.reps}")
    if args.suite:
        get_suite(args.suite)  # unknown suite: fail before reading any run
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file; give a directory for the report")
    reference_tables = load_references(args.reference)
    runs, problems = load_runs(args.paths)
    groups = group_runs(runs)
    scorers, metric, label = make_scorers(groups, args.suite, args.metric)
    problems += completeness_problems(groups, {t: s.score_key for t, s in scorers.items()})
    agents = sorted({agent for agent, _ in groups})
    tasks = sorted(scorers)
    which = getattr(args, "score", "final")
    scores = {key: scored(members, scorers[key[1]], which) for key, members in groups.items()}
    metrics = ["mean", "median", "iqm"] + (["optimality_gap"] if metric == "normalized" else [])
    aggregates, agent_tasks = {}, {}
    for agent in agents:
        agent_tasks[agent] = [t for t in tasks if scores.get((agent, t))]
        if agent_tasks[agent]:
            per_task = [np.array([s for _, s in scores[(agent, t)]]) for t in agent_tasks[agent]]
            aggregates[agent] = interval_estimates(
                per_task, metrics, reps=args.reps, seed=args.seed
            )
    references: dict[str, dict[str, tuple[str, float, float | None]]] = {}
    notes: list[str] = []
    for name, table in reference_tables.items():
        cells = {}
        for task in tasks:
            row = table.get(reference_key(task))
            value = reference_value(row, scorers[task]) if row else None
            if value is not None:
                cells[task] = (row.task, *value)
        if not cells:
            notes.append(f"reference {name} has none of the tasks {', '.join(tasks)}")
        references[name] = cells
    comparison = None
    if args.compare:
        comparison = compare_agents(*args.compare, scores, args.reps, args.seed)
    report = Report(
        metric,
        label,
        agents,
        tasks,
        scores,
        aggregates,
        agent_tasks,
        references,
        comparison,
        problems,
        notes,
    )
    return report, groups, scorers


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.array(values)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else math.nan  # sample std; none for one seed
    return float(arr.mean()), std


def per_task_rows(report: Report) -> tuple[list[str], list[list[str]], list[list[object]]]:
    """(header, Markdown/LaTeX rows, CSV rows) of the per-task table."""
    header = ["task", *report.agents, *(f"{name} (published)" for name in report.references)]
    rows, csv_rows = [], []
    for task in report.tasks:
        cells = [task]
        for agent in report.agents:
            runs = report.scores.get((agent, task), [])
            if not runs:
                cells.append("missing")
                continue
            mean, std = _mean_std([s for _, s in runs])
            cells.append(f"{fmt_pm(mean, std)} (n={len(runs)})")
            seeds = " ".join("?" if r.seed is None else str(r.seed) for r, _ in runs)
            csv_rows.append([task, agent, "deeprl", len(runs), mean, std, seeds])
        for name, refs in report.references.items():
            if task not in refs:
                cells.append("-")
                continue
            ref_task, mean, std = refs[task]
            # Published on another version or spelling of the task: say which.
            note = f" ({ref_task})" if ref_task != task else ""
            cells.append(fmt_pm(mean, std) + note)
            std_cell = "" if std is None else std
            csv_rows.append([task, name, f"published ({ref_task})", "", mean, std_cell, ""])
        rows.append(cells)
    return header, rows, csv_rows


def aggregate_rows(report: Report) -> tuple[list[str], list[list[str]], list[list[object]]]:
    """(header, rows, CSV rows) of the aggregate table."""
    metrics = next(iter(report.aggregates.values())).keys() if report.aggregates else []
    header = ["agent", "tasks", "runs", *(METRIC_TITLES[m] for m in metrics)]
    rows, csv_rows = [], []
    for agent, intervals in report.aggregates.items():
        n_runs = sum(len(report.scores[(agent, t)]) for t in report.agent_tasks[agent])
        n_tasks = len(report.agent_tasks[agent])
        rows.append([agent, str(n_tasks), str(n_runs), *map(fmt_interval, intervals.values())])
        for name, iv in intervals.items():
            csv_rows.append([agent, name, iv.point, iv.low, iv.high, n_tasks, n_runs])
    return header, rows, csv_rows


def write_report(
    report: Report, groups: Groups, scorers: dict[str, Scorer], args: argparse.Namespace
) -> Path:
    """Write report.md, the CSV and LaTeX tables and the plots under ``args.out``."""
    out = Path(args.out)
    try:
        (out / "curves").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--out {out}: cannot create the report directory ({err})") from None
    suites = ", ".join(sorted({s.suite.name for s in scorers.values()}))
    md = [
        "# deeprl report",
        "",
        f"Runs from: {', '.join(str(p) for p in args.paths)}  ",
        f"Score: {report.label} of the {getattr(args, 'score', 'final')} evaluation "
        f"(eval.json); suites: {suites}.  ",
        f"Per task: mean ± sample std over seeds (n = finished seeds). Aggregates: point estimate "
        f"[95% CI], stratified bootstrap over runs within tasks, {args.reps} replicates, "
        f"seed {args.seed}.",
        "",
        "## Missing or partial runs",
        "",
        *([f"- {p}" for p in report.problems] or ["None: every agent has every task and seed."]),
        "",
    ]
    header, rows, csv_rows = per_task_rows(report)
    md += ["## Per task", "", markdown_table(header, rows), ""]
    md += [f"Note: {note}." for note in report.notes] + ([""] if report.notes else [])
    write_csv(
        out / "per_task.csv",
        ["task", "agent", "source", "n_seeds", "mean", "std", "seeds"],
        csv_rows,
    )
    (out / "per_task.tex").write_text(
        latex_table(header, rows, f"Per-task {report.label}: mean ± std over seeds.")
    )
    if report.aggregates:
        header, rows, csv_rows = aggregate_rows(report)
        md += ["## Aggregates", "", markdown_table(header, rows), ""]
        if report.metric == "return" and len(report.tasks) > 1:
            md += [
                "Raw returns of different tasks have different scales, so aggregates over "
                "several tasks mix them: compare agents task by task.",
                "",
            ]
        write_csv(
            out / "aggregates.csv",
            ["agent", "metric", "point", "ci_low", "ci_high", "tasks", "runs"],
            csv_rows,
        )
        (out / "aggregates.tex").write_text(
            latex_table(header, rows, f"Aggregate {report.label}, point [95% CI].")
        )
    if report.comparison:
        a, b = args.compare
        lines = comparison_lines(a, b, report.comparison)
        md += ["## Comparison", "", *(f"- {line}" for line in lines), ""]
        write_csv(
            out / "compare.csv",
            ["a", "b", "statistic", "point", "ci_low", "ci_high"],
            [[a, b, k, iv.point, iv.low, iv.high] for k, iv in report.comparison.items()],
        )
    md += ["## Learning curves", ""]
    for task in report.tasks:
        bands = {}
        for agent in report.agents:
            band = curve_band(groups.get((agent, task), []), scorers[task], args.seed)
            if band is not None:
                bands[agent] = band
        if bands:
            path = out / "curves" / f"{slug(task)}.png"
            plot_curves(task, bands, report.label, path)
            md += [f"![{task}](curves/{path.name})", ""]
        else:
            md.append(f"- {task}: no evaluation points in metrics.jsonl")
    md.append("")
    if report.metric == "normalized" and report.aggregates:
        all_scores = [s for runs in report.scores.values() for _, s in runs]
        taus = np.linspace(min(all_scores), max(all_scores), 101)
        profiles = {}
        for agent in report.aggregates:
            per_task = [
                np.array([s for _, s in report.scores[(agent, t)]])
                for t in report.agent_tasks[agent]
            ]
            profiles[agent] = performance_profile(per_task, taus, seed=args.seed)
        plot_profiles(profiles, report.label, out / "performance_profile.png")
        md += ["## Performance profile", "", "![profile](performance_profile.png)", ""]
    (out / "report.md").write_text("\n".join(md))
    return out / "report.md"


def comparison_lines(a: str, b: str, comparison: dict[str, Interval]) -> list[str]:
    """The two --compare results as sentences."""
    poi, diff = comparison["probability_of_improvement"], comparison["iqm_difference"]
    return [
        f"P({a} > {b}) = {fmt_interval(poi)} (probability of improvement, 95% CI)",
        f"IQM({a}) - IQM({b}) = {fmt_interval(diff)} (95% CI)",
    ]


def default_out(paths: Sequence[str]) -> Path:
    """``report/`` beside the runs: in the deepest directory holding all of ``paths``, where a
    run directory counts as its parent (a sweep's report goes into the sweep directory)."""
    homes = [p.parent if is_run_dir(p) else p for p in (Path(raw).resolve() for raw in paths)]
    return Path(os.path.commonpath(homes)) / "report"


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``deeprl-report``; exits with code 2 and one message on bad input."""
    args = build_parser().parse_args(argv)
    if args.out is None:
        args.out = str(default_out(args.paths))
    try:
        report, groups, scorers = build_report(args)
        for problem in report.problems:
            print(f"{PROG}: warning: {problem}", file=sys.stderr)
        for note in report.notes:
            print(f"{PROG}: note: {note}", file=sys.stderr)
        path = write_report(report, groups, scorers, args)
    except UserError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if report.comparison:
        for line in comparison_lines(*args.compare, report.comparison):
            print(line)
    n_runs = sum(len(members) for members in groups.values())
    print(
        f"{PROG}: wrote {path} ({len(report.agents)} agent(s), {len(report.tasks)} task(s), "
        f"{n_runs} run(s); score: {report.label})"
    )


if __name__ == "__main__":
    main()
