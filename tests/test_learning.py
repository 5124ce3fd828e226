"""Learning tests: the shipped configs reach published-level returns with small budgets (a
minute or more each on a 2-core CPU: marked slow)."""

import json

import pytest

from conftest import run_cli


@pytest.mark.slow
def test_ppo_solves_cartpole_in_100k_steps(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("agent=ppo", "env=cartpole", "seed=0", "train.total_steps=100000",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run_dir / "eval.json").read_text())["return_mean"] >= 475


@pytest.mark.slow
def test_ppo_learns_pendulum(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("agent=ppo", "env=pendulum", "seed=0", f"hydra.run.dir={run_dir}",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run_dir / "eval.json").read_text())["return_mean"] >= -300
