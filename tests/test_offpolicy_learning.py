"""Learning tests of the off-policy agents (minutes each on a 2-core CPU: marked slow)."""

import json

import pytest

from conftest import run_cli


@pytest.mark.slow
def test_sac_learns_pendulum_in_8k_steps(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        "agent=sac", "env=pendulum", "seed=0", "agent.learning_starts=1000",
        "train.total_steps=8000", "train.eval_every=0", "train.eval_episodes=5",
        f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run_dir / "eval.json").read_text())["return_mean"] >= -250


@pytest.mark.slow
def test_dqn_solves_cartpole_in_50k_steps(tmp_path):
    # rl-baselines3-zoo's DQN CartPole-v1 settings (lr 2.3e-3, batch 64, 256x256, 1000 random
    # steps, exploration 16% to 0.04), with one update per 2 env steps and a hard target update
    # every 256 env steps in place of the zoo's bursts of 128 updates per 256 steps.
    run_dir = tmp_path / "run"
    proc = run_cli(
        "agent=dqn", "env=cartpole", "seed=0", "agent.lr=2.3e-3", "agent.batch_size=64",
        "agent.buffer_size=100000", "agent.learning_starts=1000",
        "agent.target_network_frequency=256", "agent.train_frequency=2",
        "agent.exploration_fraction=0.16", "agent.end_e=0.04", "agent.hidden_sizes=[256,256]",
        "train.total_steps=50000", "train.eval_every=0", f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run_dir / "eval.json").read_text())["return_mean"] >= 475
