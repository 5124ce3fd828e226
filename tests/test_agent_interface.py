"""The agent contract: policy state owned by each caller, offline sources, agent files,
``deeprl-eval`` and the Python API."""

import json

import numpy as np
import pytest
import torch

from conftest import interrupt_run, read_jsonl, run_cli
from deeprl.agent import load_agent
from deeprl.envs.registry import make_env
from deeprl.train.collector import Collector
from deeprl.train.policy_eval import evaluate_policy
from toy_agents import ToyRecurrent


def test_collector_and_evaluator_keep_their_own_policy_state():
    torch.manual_seed(0)
    env = make_env("cartpole", 4)
    agent = ToyRecurrent(env.spec, 4)
    collector = Collector(env, agent, seed=0)
    episodes = 0
    for _ in range(300):
        collector.step()
        episodes += int(collector.is_first.sum())
        # The state counts the steps of the running episode: reset exactly at episode starts.
        count = collector.policy_state["count"]
        assert torch.equal(torch.where(collector.is_first, 0, count), env.elapsed)
    assert episodes > 4
    before = {k: v.clone() for k, v in collector.policy_state.items()}
    report = evaluate_policy(agent, make_env("cartpole", 3), episodes=5, seed=1)
    assert report["episodes"] == 5
    assert all(torch.equal(before[k], collector.policy_state[k]) for k in before)


def test_predict_threads_the_state_and_restarts_it_at_episode_starts():
    env = make_env("cartpole", 1)
    agent = ToyRecurrent(env.spec, 1)
    obs = np.zeros(4, dtype=np.float32)
    action, state = agent.predict(obs)
    assert isinstance(action, np.ndarray) and action.shape == ()
    assert state["count"].tolist() == [1]
    _, state = agent.predict(obs, state)
    assert state["count"].tolist() == [2]
    _, state = agent.predict(obs, state, episode_start=True)
    assert state["count"].tolist() == [1]
    batch, state = agent.predict(torch.zeros(5, 4))
    assert isinstance(batch, torch.Tensor) and batch.shape == (5,) and not batch.requires_grad
    assert state["count"].tolist() == [1] * 5


RESUME_CASES = {
    # a policy with memory: the collector's state is checkpointed with the run
    "recurrent": ["agent=toy_recurrent", "env=cartpole", "train.total_steps=3200",
                  "train.eval_every=640", "train.log_every=128", "train.eval_episodes=3"],
    # an offline learner: progress is gradient updates, the dataset is read again on resume
    "offline": ["agent=toy_bc", "dataset=toy_cartpole", "env=cartpole",
                "train.total_steps=1500", "train.eval_every=300", "train.log_every=50",
                "train.eval_episodes=3"],
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_toy_agents_resume_after_sigterm_as_if_uninterrupted(tmp_path, case):
    args = [*RESUME_CASES[case], "seed=2", "train.checkpoint_every=0"]
    reference = tmp_path / "reference"
    proc = run_cli(f"hydra.run.dir={reference}", *args, cwd=tmp_path, module="toy_agents")
    assert proc.returncode == 0, proc.stderr
    total = int(next(a for a in args if a.startswith("train.total_steps=")).split("=")[1])
    lines = read_jsonl(reference / "metrics.jsonl")
    assert lines[-1]["step"] == total and "eval/return_mean" in lines[-1]
    assert any("train/loss" in line for line in lines)

    run_dir = tmp_path / "interrupted"
    interrupt_run(args, run_dir, cwd=tmp_path, module="toy_agents")
    assert read_jsonl(run_dir / "metrics.jsonl")[-1]["step"] < total
    proc = run_cli(f"resume={run_dir}", cwd=tmp_path, module="toy_agents")
    assert proc.returncode == 0, proc.stderr
    assert "resuming at" in proc.stdout
    assert (run_dir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    assert json.loads((run_dir / "eval.json").read_text()) == json.loads(
        (reference / "eval.json").read_text()
    )


def test_offline_agent_checkpoint_holds_no_dataset(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(f"hydra.run.dir={run_dir}", *RESUME_CASES["offline"],
                   "train.total_steps=200", cwd=tmp_path, module="toy_agents")
    assert proc.returncode == 0, proc.stderr
    assert not list((run_dir / "checkpoints").glob("buffer-*"))
    assert load_agent(run_dir / "agent.safetensors").name == "toy_bc"


def test_agent_file_restores_weights_counters_and_normalizers(tmp_path):
    from deeprl.agents import PPO, SAC, PPOConfig

    env = make_env("pendulum", 2)
    sac = SAC(env.spec, 2)
    sac.env_steps = sac.config.learning_starts + 1  # past the uniform-random warm-up
    ppo = PPO(env.spec, 2, config=PPOConfig(normalize_obs=True))
    ppo.obs_rms.update(torch.randn(64, 3, dtype=torch.float64) * 5 + 2)
    obs = torch.randn(8, 3)
    for agent in (sac, ppo):
        path = agent.save(tmp_path / f"{agent.name}.safetensors", env={"name": "pendulum"})
        loaded = load_agent(path)
        assert type(loaded) is type(agent) and loaded.config == agent.config
        for deterministic in (True, False):
            torch.manual_seed(3)
            expected, _ = agent.predict(obs, deterministic=deterministic)
            torch.manual_seed(3)
            got, _ = loaded.predict(obs, deterministic=deterministic)
            assert torch.equal(expected, got), (agent.name, deterministic)
    assert load_agent(tmp_path / "sac.safetensors").env_steps == sac.env_steps


def test_deeprl_eval_reproduces_the_runs_final_evaluation(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(f"hydra.run.dir={run_dir}", "seed=4", "train.total_steps=2048",
                   "train.eval_every=0", "train.eval_episodes=4", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(str(run_dir), cwd=tmp_path, module="deeprl.train.eval_cli")
    assert proc.returncode == 0, proc.stderr
    (report_path,) = run_dir.glob("eval_seed*_4ep.json")
    assert str(report_path) in proc.stdout
    report = json.loads(report_path.read_text())
    final = json.loads((run_dir / "eval.json").read_text())
    assert report["returns"] == final["returns"]
    assert report["return_mean"] == final["return_mean"]
    # Another seed and sampled actions, on the agent file alone.
    proc = run_cli(str(run_dir / "agent.safetensors"), "--seed", "9", "--episodes", "2",
                   "--stochastic", cwd=tmp_path, module="deeprl.train.eval_cli")
    assert proc.returncode == 0, proc.stderr
    other = json.loads((run_dir / "agent.eval_seed9_2ep_stochastic.json").read_text())
    assert other["episodes"] == 2 and other["deterministic"] is False


@pytest.mark.parametrize("what", ["config", "checkpoint", "missing", "safetensors"])
def test_deeprl_eval_refuses_what_is_not_an_agent(tmp_path, what):
    from safetensors.torch import save_file

    path = {
        "config": tmp_path / "config.yaml",
        "checkpoint": tmp_path / "last.pt",
        "missing": tmp_path / "nothing.safetensors",
        "safetensors": tmp_path / "weights.safetensors",
    }[what]
    if what == "config":
        path.write_text("seed: 0\n")
    elif what == "checkpoint":
        torch.save({"x": torch.zeros(2)}, path)
    elif what == "safetensors":
        save_file({"w": torch.zeros(2)}, str(path))
    proc = run_cli(str(path), cwd=tmp_path, module="deeprl.train.eval_cli")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize("override", ["+dataset.stepz=1", "dataset.steps=0", "dataset=toy_cartpol"])
def test_dataset_options_are_checked_like_agent_options(override):
    import deeprl
    from deeprl.errors import UserError

    with pytest.raises(UserError, match="dataset"):
        deeprl.compose("toy_bc", "cartpole", ["dataset=toy_cartpole", override])


def test_agents_and_datasets_need_the_right_source():
    import deeprl
    from deeprl.errors import UserError
    from deeprl.train.trainer import Trainer

    with pytest.raises(UserError, match="dataset=<name>"):
        Trainer(deeprl.compose("toy_bc", "cartpole"), "unused")
    with pytest.raises(UserError, match="learns online"):
        Trainer(deeprl.compose("ppo", "cartpole", ["dataset=toy_cartpole"]), "unused")
