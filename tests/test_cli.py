"""Bad input on the command line: one clear message, non-zero exit, no traceback."""

import dataclasses
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from deeprl.agent import agent_registry
from deeprl.agents import PPOConfig
from deeprl.config import RunSchema, TrainSchema
from deeprl.nets.heads import ValueHeadConfig
from deeprl.train.cli import main


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
        (["agent.lr=fast"], ["agent.lr", "'fast'"]),
        (["resume=does/not/exist"], ["does/not/exist", "does not exist"]),
        (["env=gym", "env.id=CartPol-v1"], ["CartPol-v1", "CartPole-v1"]),
        (["agent=sac", "env=pendulum", "agent.buffer_size=100000000000"],
         ["capacity 100000000000", "lower agent.buffer_size"]),
        (["agent=dqn", "agent.critic.head=hl_gaus"], ["agent.critic.head='hl_gaus'", "hl_gauss"]),
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


def test_help_lists_groups_keys_and_examples(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "== Groups ==" in proc.stdout and "cartpole" in proc.stdout and "Examples" in proc.stdout
    # Other tests register toy agents in this process; the CLI sees the built-ins.
    built_in = sorted(n for n, c in agent_registry().items() if c.__module__.startswith("deeprl."))
    assert "agent: " + ", ".join(built_in) in proc.stdout
    keys = {line.split(":")[0].strip() for line in proc.stdout.splitlines() if ":" in line}
    schema_keys = [f.name for f in dataclasses.fields(RunSchema) + dataclasses.fields(TrainSchema)]
    agent_keys = ["name", *(f.name for f in dataclasses.fields(PPOConfig))]
    assert not set(schema_keys + agent_keys) - keys


@pytest.mark.parametrize("agent", ["ppo", "sac", "dqn"])
def test_cfg_job_shows_every_key_of_the_agent(agent, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", sys.argv[:])
    env = "pendulum" if agent == "sac" else "cartpole"
    main([f"agent={agent}", f"env={env}", "--cfg", "job"])
    cfg = yaml.safe_load(capsys.readouterr().out)
    config_cls = agent_registry()[agent].Config
    assert list(cfg["agent"]) == ["name", *(f.name for f in dataclasses.fields(config_cls))]
    assert list(cfg["agent"]["critic"]) == [f.name for f in dataclasses.fields(ValueHeadConfig)]
    assert list(cfg["train"]) == [f.name for f in dataclasses.fields(TrainSchema)]
    assert list(cfg) == [f.name for f in dataclasses.fields(RunSchema)]
