"""Benchmark sweeps: a killed sweep re-run with the same command finishes without redoing runs."""

import os
import signal
import subprocess
import sys
import time


def sweep_command(sweep_dir):
    return [sys.executable, "-m", "deeprl.train", "-m", "+experiment=classic_mini",
            f"hydra.sweep.dir={sweep_dir}", "train.total_steps=6144", "train.eval_every=2048",
            "train.checkpoint_every=2048", "train.eval_episodes=4"]


def test_killed_sweep_resumes_without_redoing_finished_runs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(sweep_command(sweep), cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(sweep.glob("*/eval.json"))) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in sweep.glob("*/eval.json")}
    assert 3 <= len(finished) < 9

    done = subprocess.run(sweep_command(sweep), cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(list(sweep.glob("*/eval.json"))) == 9
    for path, mtime in finished.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.parent.name} was run again"
    report = (sweep / "report" / "report.md").read_text()
    for task in ("CartPole-v1", "Acrobot-v1", "Pendulum-v1"):
        assert task in report
    assert len(list((sweep / "report" / "curves").glob("*.png"))) == 3
