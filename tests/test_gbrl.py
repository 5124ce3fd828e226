"""GBRL tree actor-critics (agents/gbrl.py): trees in state dicts, SHAP completeness, the
A2C/PPO boosting schedules, config errors, the missing-extra message, CLI runs with SHAP output,
agent export and SIGTERM-resume equality, and CartPole learning (slow)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("gbrl")

import deeprl  # noqa: E402
from conftest import assert_resume_equal, run_cli  # noqa: E402
from deeprl.agents import GBRLA2C, GBRLPPO  # noqa: E402
from deeprl.agents.gbrl import pack_files, unpack_files  # noqa: E402
from deeprl.config import make_config  # noqa: E402
from deeprl.envs import make_env  # noqa: E402
from deeprl.train.collector import Collector  # noqa: E402

TINY = {"num_envs": 4, "num_steps": 32, "num_minibatches": 2, "update_epochs": 2,
        "tree": {"max_depth": 3, "n_bins": 16}}


def trained(cls, env_name: str, updates: int = 2, **overrides):
    env = make_env(env_name, num_envs=4)
    options = {**TINY, **overrides}
    if cls is GBRLA2C:
        ppo_only = ("num_minibatches", "update_epochs")
        options = {k: v for k, v in options.items() if k not in ppo_only}
    agent = cls(env.spec, 4, config=make_config(cls.Config, options), total_steps=1000)
    buffer, collector = agent.make_buffer(), Collector(env, agent, seed=0)
    metrics = None
    while agent.updates_done < updates:
        buffer.add(collector.step())
        metrics = agent.update(buffer, collector.steps) or metrics
    return agent, env, metrics


def outputs(agent, obs):
    with torch.inference_mode():
        theta, value = agent.trees(agent._features(obs))
    return torch.cat([theta, value[:, None]], 1)


def test_pack_files_round_trip():
    files = {"a.gbrl_model": b"\x00\x01\n\xff", "b.json": b'{"x": 1}', "empty": b""}
    packed = pack_files(files)
    assert packed.dtype == torch.uint8 and packed.dim() == 1
    assert unpack_files(packed) == files


@pytest.mark.parametrize(
    ("env_name", "shared"),
    [("cartpole", True), ("cartpole", False), ("pendulum", True), ("pendulum", False)],
)
def test_trees_travel_in_state_dict_and_agent_file(tmp_path, env_name, shared):
    agent, env, metrics = trained(GBRLPPO, env_name, tree={**TINY["tree"], "shared": shared})
    assert metrics["trees"] == 2 * 2 * 2  # updates x epochs x minibatches
    assert agent.model_size().startswith("8 trees")  # the start line's size, not 0 parameters
    assert np.isfinite(list(metrics.values())).all()  # a 1-output actor ensemble stays (B, 1)
    obs = env.reset(seed=1)
    state = agent.state_dict()
    assert state["trees._extra_state"].dtype == torch.uint8
    fresh = GBRLPPO(agent.spec, 4, config=agent.config, total_steps=1000)
    fresh.load_state_dict(state)
    assert torch.equal(outputs(fresh, obs), outputs(agent, obs))
    loaded = deeprl.load_agent(agent.save(tmp_path / "agent.safetensors"))
    assert torch.equal(outputs(loaded, obs), outputs(agent, obs))
    action, _ = loaded.predict(obs.numpy())
    assert action.shape == ((4,) if env_name == "cartpole" else (4, 1))


@pytest.mark.parametrize("shared", [True, False])
def test_shap_plus_base_sums_to_the_model_output(shared):
    agent, env, _ = trained(GBRLA2C, "acrobot", tree={**TINY["tree"], "shared": shared})
    obs = torch.cat([env.reset(seed=s) for s in range(3)])
    phi, base = agent.shap(obs)
    assert phi.shape == (12, 6, 4) and base.shape == (12, 4)
    np.testing.assert_allclose(base + phi.sum(1), outputs(agent, obs).numpy(), atol=1e-5)
    assert np.abs(phi).sum() > 0
    assert agent.feature_names()[0] == "cos(theta1)"


def test_a2c_grows_one_tree_per_rollout():
    agent, _, metrics = trained(GBRLA2C, "cartpole", updates=3)
    assert metrics["trees"] == 3 and metrics["clip_fraction"] == 0.0


def test_bad_tree_options_are_one_line(tmp_path):
    for override, words in (("agent.tree.max_depth=0", "max_depth"),
                            ("agent.tree.grow_policy=bushy", "grow_policy")):
        proc = run_cli("agent=gbrl_ppo", override, f"hydra.run.dir={tmp_path / 'run'}",
                       cwd=tmp_path, timeout=120)
        assert proc.returncode != 0
        assert words in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_missing_gbrl_names_the_pip_command(tmp_path):
    code = ("import sys; sys.modules['gbrl'] = None; sys.modules['gbrl.models'] = None\n"
            "from deeprl.train.cli import main\n"
            f"main(['agent=gbrl_ppo', 'hydra.run.dir={tmp_path / 'run'}'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert 'pip install "deeprl[gbrl]"' in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


CLI = ["agent=gbrl_ppo", "env=cartpole", "agent.num_envs=4", "agent.num_steps=32",
       "agent.update_epochs=2", "agent.num_minibatches=2", "agent.tree.n_bins=16",
       "agent.shap_states=64", "seed=3", "train.total_steps=1280", "train.eval_every=640",
       "train.log_every=128", "train.eval_episodes=2", "train.checkpoint_every=0"]


def test_cli_run_resumes_after_sigterm_and_explains_itself(tmp_path):
    reference = assert_resume_equal(CLI, tmp_path, total_steps=1280, after_lines=2)
    # SHAP table and plot of the finished run, with CartPole's feature names.
    with (reference / "shap.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["feature"] for r in rows][0] == "cart position" and len(rows) == 4
    assert all(float(r["policy"]) >= 0 for r in rows)
    assert (reference / "shap.png").stat().st_size > 0
    # The exported agent evaluates like a neural one.
    proc = run_cli(str(reference / "agent.safetensors"), "--episodes", "2", cwd=tmp_path,
                   module="deeprl.train.eval_cli", timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_gbrl_ppo_solves_cartpole(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("agent=gbrl_ppo", "env=cartpole", "seed=0", "train.total_steps=60000",
                   "train.eval_every=0", f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run_dir / "eval.json").read_text())["return_mean"] >= 475
