"""Bad input on the command line: one clear message, non-zero exit, no traceback."""

import shutil
from pathlib import Path

import pytest

from conftest import run_cli


def assert_user_error(proc, *fragments: str) -> None:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("deeprl-train: "), proc.stderr
    for fragment in fragments:
        assert fragment in last, last


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["env=cartpol"], ["unknown env 'cartpol'", "cartpole"]),
        (["agent=ppx"], ["unknown agent 'ppx'", "ppo"]),
        (["agent.lr=[1,"], ["malformed override"]),
        (["agent.lrr=1e-3"], ["unknown config key 'agent.lrr'", "lr"]),
        (["seed=abc"], ["seed"]),
        (["agent.lr=fast"], ["agent.lr", "float"]),
        (["resume=does/not/exist"], ["does/not/exist", "does not exist"]),
        (["env=gym", "env.id=CartPol-v1"], ["CartPol-v1", "CartPole-v1"]),
        (["agent=sac", "env=pendulum", "agent.buffer_size=100000000000"],
         ["capacity 100000000000", "lower agent.buffer_size"]),
        (["agent=dqn", "agent.critic.head=hl_gaus"], ["unknown critic head 'hl_gaus'", "hl_gauss"]),
        (["agent=sac", "env=cartpole"], ["continuous actions"]),
        (["env=atari", "env.game=Pongg"], ["Pongg", "Pong"]),
    ],
)
def test_bad_input_exits_with_one_message(tmp_path, args, fragments):
    proc = run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}", "train.total_steps=64", cwd=tmp_path)
    assert_user_error(proc, *fragments)


def test_resume_from_corrupt_or_foreign_checkpoint_overwrites_nothing(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(f"hydra.run.dir={run_dir}", "train.total_steps=1024", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir / "eval.json").unlink()  # make it look unfinished
    checkpoint = run_dir / "checkpoints" / "last.pt"
    metrics_before = (run_dir / "metrics.jsonl").read_text()

    checkpoint.write_bytes(b"not a checkpoint at all")
    proc = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert_user_error(proc, "corrupt")
    assert checkpoint.read_bytes() == b"not a checkpoint at all"
    assert (run_dir / "metrics.jsonl").read_text() == metrics_before

    # A pickle of an arbitrary object is refused without being executed.
    import pickle

    checkpoint.write_bytes(pickle.dumps({"format": "deeprl-checkpoint", "x": Path("/")}))
    proc = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert_user_error(proc, "corrupt or not a deeprl checkpoint")


def test_resume_needs_a_run_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_user_error(run_cli(f"resume={tmp_path / 'empty'}", cwd=tmp_path), "config.yaml")
    run_dir = tmp_path / "run"
    proc = run_cli(f"hydra.run.dir={run_dir}", "train.total_steps=512", cwd=tmp_path)
    assert proc.returncode == 0
    shutil.rmtree(run_dir / "checkpoints")
    assert_user_error(run_cli(f"resume={run_dir}", cwd=tmp_path), "no checkpoint")


def test_help_lists_groups_and_examples(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "== Groups ==" in proc.stdout and "cartpole" in proc.stdout and "Examples" in proc.stdout
