"""The offline agents: one update each on a small Pendulum dataset, config validation, CLI runs
through the offline trainer (a sweep over the agents, ReCOIL with its expert set and a
SIGTERM-resume), and a slow learning test on an expert dataset made by the project's SAC."""

from __future__ import annotations

import json

import pytest
import torch
from offline_toys import ToyPendulumConfig, load_toy_pendulum

import deeprl
from conftest import interrupt_run, read_jsonl, run_cli
from deeprl.agent import agent_registry, make_agent
from deeprl.config import make_config
from deeprl.errors import UserError

AGENTS = ("bc", "td3bc", "iql", "cql", "xql", "fdvl", "recoil")
TINY = {"hidden_sizes": [32, 32], "batch_size": 32}
TINY_CLI = ["agent.hidden_sizes=[32,32]", "agent.batch_size=32"]


@pytest.fixture(scope="module")
def dataset():
    return load_toy_pendulum(ToyPendulumConfig(steps=400, envs=4, seed=0), torch.device("cpu"))


def tiny_agent(name: str, dataset, **options):
    agent = make_agent(name, dataset.spec, 1, "cpu", {**TINY, **options}, total_steps=100)
    if name == "recoil":
        agent.set_expert(dataset.buffer)
    return agent


@pytest.mark.parametrize("name", AGENTS)
def test_agent_updates_acts_and_restores(name, dataset):
    torch.manual_seed(0)
    agent = tiny_agent(name, dataset)
    before = {k: v.clone() for k, v in agent.actor.state_dict().items()}
    for step in range(1, 5):
        metrics = agent.update(dataset.buffer, step)
    assert agent.grad_steps == 4
    assert metrics and all(torch.isfinite(torch.as_tensor(v)).all() for v in metrics.values())
    assert any(not torch.equal(before[k], v) for k, v in agent.actor.state_dict().items())
    # the dataset's state statistics are fitted once and travel with the weights
    obs = dataset.buffer.data["obs"][: dataset.buffer.size].flatten(0, 1)
    assert torch.allclose(agent.obs_mean, obs.mean(0), atol=1e-5)
    probe = torch.randn(6, 3) * 3
    for deterministic in (True, False):
        action, _, _ = agent.act(probe, None, None, deterministic=deterministic)
        assert action.shape == (6, 1) and action.abs().max() <= 2.0
    restored = tiny_agent(name, dataset)
    restored.load_checkpoint_state(agent.checkpoint_state())
    assert restored.grad_steps == 4
    expected = agent.act(probe, None, None, True)[0]
    assert torch.equal(restored.act(probe, None, None, True)[0], expected)


@pytest.mark.parametrize("name", ["iql", "fdvl"])
def test_critics_take_any_value_head(name, dataset):
    agent = tiny_agent(name, dataset, critic={"head": "hl_gauss", "v_min": -20, "v_max": 5})
    assert agent.critic.q1.net[-1].out_features == 51
    metrics = agent.update(dataset.buffer, 1)
    assert torch.isfinite(metrics["q_loss"])


@pytest.mark.parametrize("name, option, value", [
    ("td3bc", "alpha", 0.0),
    ("iql", "expectile", 1.0),
    ("iql", "expectile", 0.0),
    ("cql", "cql_alpha", -1.0),
    ("fdvl", "f", "kl"),
])
def test_bad_hyperparameters_fail_in_one_line(name, option, value):
    with pytest.raises(UserError) as info:
        make_config(agent_registry()[name].Config, {option: value})
    message = str(info.value)
    assert f"agent.{option}" in message and "\n" not in message


def test_bad_hyperparameter_is_refused_when_composing():
    with pytest.raises(UserError, match=r"agent\.f.*chi_square"):
        deeprl.compose("fdvl", "pendulum", ["dataset=toy_pendulum", "agent.f=kl"])


def test_recoil_without_expert_set_says_how_to_give_one(dataset):
    agent = make_agent("recoil", dataset.spec, 1, "cpu", TINY)
    with pytest.raises(UserError, match=r"agent\.expert"):
        agent.update(dataset.buffer, 1)


@pytest.mark.parametrize("name", AGENTS[:-1])
def test_offline_trainer_runs_each_agent(name, tmp_path):
    # deeprl.learn is deeprl-train in-process (the CLI itself: the ReCOIL runs below)
    trainer = deeprl.learn(name, "pendulum", [
        "dataset=toy_pendulum", "dataset.steps=400", *TINY_CLI, "train.total_steps=20",
        "train.eval_every=0", "train.log_every=10", "train.eval_episodes=1", "train.threads=1",
    ], run_dir=tmp_path / name)
    lines = read_jsonl(tmp_path / name / "metrics.jsonl")
    assert [line["step"] for line in lines] == [10, 20] and "eval/return_mean" in lines[-1]
    assert any(key.startswith("train/") for key in lines[0])
    assert trainer.agent.grad_steps == 20


RECOIL_CLI = [
    "agent=recoil", "dataset=toy_pendulum", "dataset.steps=400", "env=pendulum", *TINY_CLI,
    "++agent.expert={name: toy_pendulum, seed: 1, steps: 200}", "agent.expert_transitions=100",
    "seed=2", "train.total_steps=500", "train.eval_every=250", "train.log_every=25",
    "train.eval_episodes=1", "train.checkpoint_every=0",
]


def test_recoil_resume_after_sigterm_equals_uninterrupted(tmp_path):
    reference = tmp_path / "reference"
    proc = run_cli(f"hydra.run.dir={reference}", *RECOIL_CLI, cwd=tmp_path, module="offline_toys")
    assert proc.returncode == 0, proc.stderr
    lines = read_jsonl(reference / "metrics.jsonl")
    assert lines[-1]["step"] == 500 and "train/q_expert" in lines[-1]

    run_dir = tmp_path / "interrupted"
    # stopped early (after 2 of 20 log lines) so a busy machine still catches it running
    interrupt_run(RECOIL_CLI, run_dir, cwd=tmp_path, after_lines=2, module="offline_toys")
    assert read_jsonl(run_dir / "metrics.jsonl")[-1]["step"] < 500
    proc = run_cli(f"resume={run_dir}", cwd=tmp_path, module="offline_toys")
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    assert json.loads((run_dir / "eval.json").read_text()) == json.loads(
        (reference / "eval.json").read_text()
    )


@pytest.mark.slow
def test_bc_and_td3_bc_learn_from_sac_expert_pendulum_data(tmp_path):
    """SAC (8k env steps, as test_offpolicy_learning) is the behaviour policy; 20k of its
    stochastic transitions (100 episodes) are the dataset; BC and TD3+BC trained offline on it
    reach the behaviour policy's mean episode return (-452 here; uniform random actions: about
    -1200; measured: BC -366, TD3+BC -356 over 10 eval episodes after 5000 updates)."""
    sac = tmp_path / "sac"
    proc = run_cli("agent=sac", "env=pendulum", "seed=0", "agent.learning_starts=1000",
                   "train.total_steps=8000", "train.eval_every=0", "train.eval_episodes=5",
                   f"hydra.run.dir={sac}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    policy = str(sac / "agent.safetensors")
    data = load_toy_pendulum(ToyPendulumConfig(steps=20000, policy=policy), torch.device("cpu"))
    episodes = data.buffer.size * data.buffer.num_envs / 200  # Pendulum's time limit
    behaviour = float(data.buffer.data["reward"][: data.buffer.size].sum()) / episodes
    for agent in ("bc", "td3bc"):
        run_dir = tmp_path / agent
        proc = run_cli(f"agent={agent}", "dataset=toy_pendulum", "dataset.steps=20000",
                       f"dataset.policy={policy}", "env=pendulum", "seed=0",
                       "train.total_steps=5000", "train.eval_every=0", "train.eval_episodes=10",
                       f"hydra.run.dir={run_dir}", cwd=tmp_path, module="offline_toys")
        assert proc.returncode == 0, proc.stderr
        score = json.loads((run_dir / "eval.json").read_text())["return_mean"]
        print(f"{agent}: {score:.1f} (behaviour data {behaviour:.1f})")
        assert score >= max(behaviour, -500) - 25, (agent, score, behaviour)
