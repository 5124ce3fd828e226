"""Shared helpers: run deeprl's CLIs in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _cli_env() -> dict[str, str]:
    # tests/ on the path: `-m toy_agents` runs deeprl-train with the test's own agents.
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "MUJOCO_GL": "egl", "PYTHONPATH": path}


def video_frames(path: Path) -> list:
    """The frames (H, W, 3) uint8 BGR arrays of a video file, read with OpenCV."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    capture.release()
    return frames


def run_cli(*args: str, cwd: Path, timeout: float = 600, module: str = "deeprl.train"):
    """Run ``python -m <module> args...``; returns the CompletedProcess (text output)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def interrupt_run(args: list[str], run_dir: Path, cwd: Path, after_lines: int = 4,
                  module: str = "deeprl.train") -> str:
    """Start ``python -m <module> hydra.run.dir=<run_dir> args...``, send SIGTERM once
    ``metrics.jsonl`` has ``after_lines`` lines, and return its stderr (asserting a clean
    stop with a checkpoint, and the exit status 128 + SIGTERM that tells it from a finished
    run)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, f"hydra.run.dir={run_dir}", *args],
        cwd=cwd, env=_cli_env(), stderr=subprocess.PIPE, text=True,
    )
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= after_lines:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "checkpoint saved" in stderr
    assert not (run_dir / "eval.json").exists()
    return stderr


def assert_resume_equal(args: list[str], tmp_path: Path, total_steps: int,
                        after_lines: int = 4) -> Path:
    """Run ``args`` to the end in ``tmp_path/reference``, and again in ``tmp_path/interrupted``
    stopped by SIGTERM before ``total_steps`` and resumed; assert both runs wrote the same
    ``metrics.jsonl`` and ``eval.json``. Returns the reference run's directory."""
    reference = tmp_path / "reference"
    proc = run_cli(f"hydra.run.dir={reference}", *args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "interrupted"
    interrupt_run(args, run_dir, cwd=tmp_path, after_lines=after_lines)
    assert read_jsonl(run_dir / "metrics.jsonl")[-1]["step"] < total_steps
    proc = run_cli(f"resume={run_dir}", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    assert json.loads((run_dir / "eval.json").read_text()) == json.loads(
        (reference / "eval.json").read_text()
    )
    return reference


def random_rollout(env, seed: int, steps: int):
    """Reset ``env`` with ``seed`` and take ``steps`` seeded random actions.

    Returns the observations stacked (steps + 1, N, ...) and the list of StepResults.
    """
    import torch

    obs = [env.reset(seed=seed)]
    generator = torch.Generator().manual_seed(seed)
    results = []
    for _ in range(steps):
        results.append(env.step(env.sample_actions(generator)))
        obs.append(results[-1].obs)
    return torch.stack(obs), results


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def cli():
    return run_cli
