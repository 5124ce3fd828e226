"""deeprl-report on run directories in the trainer's format, built here in tmp_path."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.collections import LineCollection
from omegaconf import OmegaConf

from deeprl.eval import report as deeprl_report
from deeprl.eval.report import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STEPS = (1000, 2000, 3000)


def write_run(
    root: Path,
    agent: str,
    env_name: str,
    env_id: str | None,
    seed: int,
    final: float,
    finished: bool = True,
    steps: tuple[int, ...] = STEPS,
    **env_keys: str,
) -> Path:
    """A run directory as deeprl-train writes it: config.yaml, metrics.jsonl, eval.json; the
    evaluations at ``steps`` (all but the last when not ``finished``) rise to ``final``."""
    run = root / f"{agent}-{env_name}-{env_keys.get('game', '')}seed{seed}"
    (run / "checkpoints").mkdir(parents=True)
    (run / ".hydra").mkdir()  # Hydra's own copy of the config: not a run directory
    env = {"name": env_name, "id": env_id, "backend": "torch", **env_keys}
    cfg = {"seed": seed, "agent": {"name": agent}, "env": env, "train": {"total_steps": 3000}}
    OmegaConf.save(OmegaConf.create(cfg), run / "config.yaml")
    OmegaConf.save(OmegaConf.create(cfg), run / ".hydra" / "config.yaml")
    lines = [{"step": 500, "train/episode_return": final / 10, "train/loss": 0.5}]
    for i, step in enumerate(steps if finished else steps[:-1]):
        value = final * (i + 1) / len(steps)
        lines.append(
            {
                "step": step,
                "train/episode_return": value,
                "eval/return_mean": value,
                "eval/return_std": 1.0,
            }
        )
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if finished:
        report = {
            "return_mean": final,
            "return_std": 1.0,
            "episodes": 3,
            "step": steps[-1],
            "returns": [final - 1, final, final + 1],
            # as the trainer writes it: the best evaluation, here one scoring 10 more
            "best": {"return_mean": final + 10, "return_std": 1.0, "step": steps[0]},
        }
        (run / "eval.json").write_text(json.dumps(report))
    return run


TASKS = {"cartpole": "CartPole-v1", "pendulum": "Pendulum-v1", "acrobot": "Acrobot-v1"}


def final_return(agent: str, task: str, seed: int) -> float:
    # ppo beats sac on every run, so P(ppo > sac) = 1.
    base = {"CartPole-v1": 400.0, "Pendulum-v1": -200.0, "Acrobot-v1": -90.0}[task]
    return base + 10.0 * seed + (1000.0 if agent == "ppo" else 0.0)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """2 agents x 3 tasks x 3 seeds; sac on Acrobot seed 2 stopped before finishing."""
    root = tmp_path / "multirun"
    root.mkdir()
    (root / "multirun.yaml").write_text("hydra: {}\n")
    for agent in ("ppo", "sac"):
        for name, env_id in TASKS.items():
            for seed in range(3):
                finished = not (agent == "sac" and name == "acrobot" and seed == 2)
                write_run(
                    root, agent, name, env_id, seed, final_return(agent, env_id, seed), finished
                )
    return root


def test_report_tables_plots_and_missing_run(sweep: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    main([str(sweep), "--out", str(out), "--reps", "2000"])
    captured = capsys.readouterr()
    partial = sweep / "sac-acrobot-seed2"
    # The unfinished run is named on stderr and in the report, with the missing seed.
    assert str(partial) in captured.err
    md = (out / "report.md").read_text()
    assert str(partial) in md
    assert "sac on Acrobot-v1: 2 finished seed(s), others have 3; missing seed(s): 2" in md
    assert "## Per task" in md and "## Aggregates" in md
    for task in TASKS.values():
        assert f"| {task} |" in md
    assert "(n=2)" in md and "(n=3)" in md

    with (out / "per_task.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    by_key = {(r["agent"], r["task"]): r for r in rows}
    cartpole = by_key[("ppo", "CartPole-v1")]
    assert float(cartpole["mean"]) == pytest.approx(1410.0)  # mean of 1400, 1410, 1420
    assert float(cartpole["std"]) == pytest.approx(10.0)  # sample std
    assert cartpole["seeds"] == "0 1 2"
    assert by_key[("sac", "Acrobot-v1")]["n_seeds"] == "2"

    with (out / "aggregates.csv").open() as f:
        agg = {(r["agent"], r["metric"]): r for r in csv.DictReader(f)}
    # Raw returns: no optimality gap; mean = mean of the three task means.
    assert ("ppo", "optimality_gap") not in agg
    expected = (1410.0 + 810.0 + 920.0) / 3
    assert float(agg[("ppo", "mean")]["point"]) == pytest.approx(expected)
    low, high = float(agg[("ppo", "mean")]["ci_low"]), float(agg[("ppo", "mean")]["ci_high"])
    assert low <= expected <= high

    per_task_tex = (out / "per_task.tex").read_text()
    assert r"\begin{tabular}{lrr}" in per_task_tex and r"$\pm$" in per_task_tex
    assert "CartPole-v1 & " in per_task_tex and r"\bottomrule" in per_task_tex
    aggregates_tex = (out / "aggregates.tex").read_text()
    assert aggregates_tex.count(r" \\") == 3  # header + 2 agents
    for task in TASKS.values():
        png = out / "curves" / f"{task}.png"
        assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert "wrote" in captured.out


def test_damaged_runs_are_named_not_dropped(sweep: Path, tmp_path: Path, capsys) -> None:
    broken = sweep / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text("agent: {name: [\n")
    (broken / "metrics.jsonl").write_text("")
    killed = sweep / "ppo-cartpole-seed1" / "metrics.jsonl"
    killed.write_text(killed.read_text() + '{"step": 31')  # a line cut by a kill
    main([str(sweep), "--out", str(tmp_path / "report"), "--reps", "200"])
    err = capsys.readouterr().err
    assert f"{broken}: config.yaml is not readable" in err
    assert f"1 unreadable line(s) in {killed} ignored" in err
    assert str(broken) in (tmp_path / "report" / "report.md").read_text()


def test_compare_prints_improvement_and_iqm_difference(sweep: Path, tmp_path: Path, capsys):
    out = tmp_path / "report"
    main([str(sweep), "--out", str(out), "--compare", "ppo", "sac", "--reps", "1000"])
    stdout = capsys.readouterr().out
    assert "P(ppo > sac) = 1.000 [1.000, 1.000]" in stdout
    assert "IQM(ppo) - IQM(sac) = " in stdout
    with (out / "compare.csv").open() as f:
        stats = {r["statistic"]: r for r in csv.DictReader(f)}
    assert float(stats["iqm_difference"]["point"]) > 0
    assert "## Comparison" in (out / "report.md").read_text()


def expect_user_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("deeprl-report: ") and err.count("\n") == 1, err
    return err


def test_compare_with_mismatched_tasks_names_them(tmp_path: Path, capsys) -> None:
    root = tmp_path / "runs"
    for seed in range(2):
        write_run(root, "ppo", "cartpole", "CartPole-v1", seed, 100.0)
        write_run(root, "ppo", "acrobot", "Acrobot-v1", seed, -90.0)
        write_run(root, "sac", "cartpole", "CartPole-v1", seed, 90.0)
    err = expect_user_error(
        [str(root), "--out", str(tmp_path / "r"), "--compare", "ppo", "sac"], capsys
    )
    assert "sac lacks Acrobot-v1" in err


def test_compare_unknown_agent(sweep: Path, tmp_path: Path, capsys) -> None:
    err = expect_user_error(
        [str(sweep), "--out", str(tmp_path / "r"), "--compare", "ppo", "sacc"], capsys
    )
    assert "'sacc'" in err and "Did you mean: sac" in err


def test_empty_directory(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    err = expect_user_error([str(empty)], capsys)
    assert "no run directories found" in err and str(empty) in err


def test_foreign_directory(tmp_path: Path, capsys) -> None:
    foreign = tmp_path / "project"
    (foreign / "conf").mkdir(parents=True)
    (foreign / "conf" / "config.yaml").write_text("lr: 0.1\n")  # no metrics.jsonl next to it
    (foreign / "README.md").write_text("not a run\n")
    err = expect_user_error([str(foreign)], capsys)
    assert "no run directories found" in err


def test_missing_path(tmp_path: Path, capsys) -> None:
    err = expect_user_error([str(tmp_path / "nope")], capsys)
    assert "nope: no such directory" in err


def test_unknown_suite(sweep: Path, capsys) -> None:
    err = expect_user_error([str(sweep), "--suite", "atary"], capsys)
    assert "unknown suite 'atary'" in err and "Did you mean: atari" in err


def test_suite_that_does_not_fit_the_tasks(sweep: Path, tmp_path: Path, capsys) -> None:
    err = expect_user_error([str(sweep), "--suite", "atari", "--out", str(tmp_path / "r")], capsys)
    assert "unknown Atari game" in err and "--metric return" in err


def test_out_is_a_file(sweep: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("")
    err = expect_user_error([str(sweep), "--out", str(blocker), "--reps", "100"], capsys)
    assert f"--out {blocker} is a file" in err


def test_unknown_reference(sweep: Path, capsys) -> None:
    err = expect_user_error([str(sweep), "--reference", "cleanrl-sacc"], capsys)
    assert "Did you mean: cleanrl-sac" in err


def test_atari_runs_are_human_normalized_with_published_reference(tmp_path: Path, capsys):
    root = tmp_path / "atari"
    # Pong: random -20.7, human 14.6; Breakout: random 1.7, human 30.5.
    for seed, (pong, breakout) in enumerate([(14.6, 30.5), (-20.7, 1.7), (-3.05, 16.1)]):
        write_run(root, "dreamer", "atari_pong", "ALE/Pong-v5", seed, pong)
        # A suite env config: the game in env.game, no gymnasium id.
        write_run(
            root, "dreamer", "atari100k", None, seed, breakout, backend="atari", game="Breakout"
        )
    out = tmp_path / "report"
    main([str(root), "--out", str(out), "--reference", "iris", "--reps", "2000"])
    md = (out / "report.md").read_text()
    assert "human-normalized score" in md
    # Scores 1.0, 0.0, 0.5 on both games.
    assert "| ALE/Pong-v5 | 0.500 ± 0.500 (n=3) | 1.000 ± 0.153 (Pong) |" in md
    assert "| Breakout | 0.500 ± 0.500 (n=3) | 2.846 ± 0.502 |" in md
    with (out / "aggregates.csv").open() as f:
        agg = {r["metric"]: float(r["point"]) for r in csv.DictReader(f)}
    assert agg["iqm"] == pytest.approx(0.5)
    assert agg["optimality_gap"] == pytest.approx(0.5)
    assert (out / "performance_profile.png").read_bytes()[:8] == PNG_SIGNATURE


def test_module_entry_point_has_no_traceback(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "deeprl.eval.report", str(empty)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip(),
    ] and result.stderr.startswith("deeprl-report: no run directories found")


def test_report_goes_beside_the_runs(sweep: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # A sweep directory: the report goes into it.
    main([str(sweep), "--reps", "100"])
    assert f"wrote {sweep / 'report' / 'report.md'} " in capsys.readouterr().out
    # Run directories (relative paths): into their common parent.
    runs = tmp_path / "runs"
    for seed in range(2):
        write_run(runs / f"day{seed}", "ppo", "cartpole", "CartPole-v1", seed, 100.0)
    monkeypatch.chdir(runs)
    main(["day0/ppo-cartpole-seed0", "day1/ppo-cartpole-seed1", "--reps", "100"])
    assert f"wrote {runs / 'report' / 'report.md'} " in capsys.readouterr().out
    assert "| CartPole-v1 | 100.0 ± 0.0 (n=2) |" in (runs / "report" / "report.md").read_text()
    # --out still decides.
    main([str(sweep), "--out", str(elsewhere / "mine"), "--reps", "100"])
    assert (elsewhere / "mine" / "per_task.csv").is_file()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["mine"]


def test_curves_draw_every_evaluation_and_single_points(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "runs"
    for seed in range(2):
        # ppo evaluated three times per run, sac once (at the end): a point, not an empty plot.
        write_run(root, "ppo", "cartpole", "CartPole-v1", seed, 300.0 + 30 * seed)
        write_run(root, "sac", "cartpole", "CartPole-v1", seed, 100.0 * seed, steps=(3000,))
    figures = []

    def keep(*args, **kwargs):
        figures.append(plot_curves(*args, **kwargs))
        return figures[-1]

    plot_curves = deeprl_report.plot_curves
    monkeypatch.setattr(deeprl_report, "plot_curves", keep)
    out = tmp_path / "report"
    main([str(root), "--out", str(out), "--reps", "100"])
    assert (out / "curves" / "CartPole-v1.png").read_bytes()[:8] == PNG_SIGNATURE
    (fig,) = figures
    (ax,) = fig.axes
    lines = {line.get_label().split()[0]: line for line in ax.get_lines()}
    # Every eval/return_mean line of metrics.jsonl is a point, averaged over the seeds.
    ppo = lines["ppo"].get_xydata()
    assert ppo.tolist() == [[1000, 105.0], [2000, 210.0], [3000, 315.0]]
    sac = lines["sac"]
    assert sac.get_xydata().tolist() == [[3000, 50.0]]
    assert sac.get_marker() == "o"
    # The single point's CI is drawn as a bar at its step (a band there would have no width).
    (bar,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    (segment,) = bar.get_segments()
    assert segment[:, 0].tolist() == [3000, 3000] and segment[0, 1] < segment[1, 1]


def test_best_scores_instead_of_final_ones(tmp_path: Path, capsys) -> None:
    for seed in range(2):
        write_run(tmp_path / "runs", "ppo", "cartpole", "CartPole-v1", seed, 100.0 + seed)
    for which, expected in (("final", "100.5"), ("best", "110.5")):
        out = tmp_path / which
        main([str(tmp_path / "runs"), "--out", str(out), "--score", which, "--reps", "100"])
        text = (out / "report.md").read_text()
        assert f"of the {which} evaluation" in text and expected in text
