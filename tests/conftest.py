"""Shared helpers: run deeprl's CLIs in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, cwd: Path, timeout: float = 600, module: str = "deeprl.train"):
    """Run ``python -m <module> args...``; returns the CompletedProcess (text output)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MUJOCO_GL": "egl"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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
