"""A plain ``deeprl-train -m`` sweep (no experiment config) ends with a report in its directory."""

import csv

from conftest import run_cli


def test_plain_sweep_writes_its_report_and_a_single_run_none(tmp_path):
    sweep = tmp_path / "sweep"
    done = run_cli("-m", "seed=0,1", "train.total_steps=1024", f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = sweep / "report"
    assert f"wrote {report / 'report.md'} " in done.stdout
    with (report / "per_task.csv").open() as f:
        (row,) = csv.DictReader(f)
    assert (row["agent"], row["task"], row["seeds"]) == ("ppo", "CartPole-v1", "0 1")
    assert (report / "aggregates.csv").is_file() and (report / "per_task.tex").is_file()
    # One evaluation per run (at the end): the curve is still drawn.
    assert (report / "curves" / "CartPole-v1.png").is_file()

    single = run_cli("train.total_steps=1024", f"hydra.run.dir={tmp_path / 'single'}",
                     cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    assert "deeprl-report" not in single.stdout + single.stderr
    assert [p.parent for p in tmp_path.rglob("report.md")] == [report]
