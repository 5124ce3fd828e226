"""End-to-end runs of deeprl-train: run directory contents, determinism, resume, multirun."""

import json

import pytest

from conftest import interrupt_run, read_jsonl, run_cli

SHORT = ["train.total_steps=6144", "train.eval_every=2048", "train.log_every=1024"]


def test_run_directory_contents(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(f"hydra.run.dir={run_dir}", "seed=3", *SHORT, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("config.yaml", "metrics.jsonl", "eval.json", "checkpoints/last.pt",
                 "agent.safetensors"):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert "seed: 3" in (run_dir / "config.yaml").read_text()
    lines = read_jsonl(run_dir / "metrics.jsonl")
    assert all("step" in line for line in lines)
    evals = [line for line in lines if "eval/return_mean" in line]
    assert [line["step"] for line in evals] == [2048, 4096, 6144]
    assert all("eval/return_std" in line for line in evals)
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["step"] == 6144 and report["episodes"] == 10
    assert {"return_mean", "return_std", "returns"} <= report.keys()
    # A finished run is not run again.
    proc = run_cli(f"hydra.run.dir={run_dir}", "seed=3", *SHORT, cwd=tmp_path)
    assert proc.returncode == 0 and "already finished" in proc.stderr
    # Killed after its last checkpoint but before eval.json: the re-run only writes eval.json.
    (run_dir / "eval.json").unlink()
    proc = run_cli(f"hydra.run.dir={run_dir}", "seed=3", *SHORT, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run_dir / "eval.json").read_text()) == report
    assert read_jsonl(run_dir / "metrics.jsonl") == lines


def test_same_seed_same_metrics(tmp_path):
    files = []
    for name in ("a", "b"):
        proc = run_cli(f"hydra.run.dir={tmp_path / name}", "seed=11", *SHORT, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        files.append((tmp_path / name / "metrics.jsonl").read_text())
    assert files[0] == files[1]
    proc = run_cli(f"hydra.run.dir={tmp_path / 'c'}", "seed=12", *SHORT, cwd=tmp_path)
    assert (tmp_path / "c" / "metrics.jsonl").read_text() != files[0]


RESUME_CASES = {
    # on-policy, torch-native env state restored exactly; a log line every half rollout (2048
    # steps) repeats the last update's metrics, so the stop falls between an update and a log
    "ppo": ["seed=5", "env=pendulum", "train.total_steps=20480", "train.eval_every=4096",
            "train.log_every=1024"],
    # off-policy: the replay buffer must come back intact
    "sac": ["seed=5", "agent=sac", "env=pendulum", "agent.learning_starts=500",
            "agent.batch_size=64", "agent.hidden_sizes=[64,64]", "train.total_steps=2000",
            "train.eval_every=1000", "train.log_every=250", "train.eval_episodes=2"],
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_sigterm_then_resume_equals_uninterrupted(tmp_path, case):
    args = [*RESUME_CASES[case], "train.checkpoint_every=0"]
    reference = tmp_path / "reference"
    assert run_cli(f"hydra.run.dir={reference}", *args, cwd=tmp_path).returncode == 0
    total = int(next(a for a in args if a.startswith("train.total_steps=")).split("=")[1])

    run_dir = tmp_path / "interrupted"
    interrupt_run(args, run_dir, cwd=tmp_path)
    metrics = run_dir / "metrics.jsonl"
    assert read_jsonl(metrics)[-1]["step"] < total

    proc = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resuming at" in proc.stdout
    assert metrics.read_text() == (reference / "metrics.jsonl").read_text()
    assert json.loads((run_dir / "eval.json").read_text()) == json.loads(
        (reference / "eval.json").read_text()
    )


def test_multirun_with_joblib_launcher(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                   f"hydra.sweep.dir={sweep}", "train.total_steps=1024", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    reports = sorted(sweep.glob("*/eval.json"))
    assert len(reports) == 2
    seeds = sorted(json.loads((r.parent / "config.yaml").read_text().split("seed: ")[1][:1])
                   for r in reports)
    assert seeds == [0, 1]
