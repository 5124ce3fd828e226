"""What a person running deeprl-train sees and can do (issue 11): output in log files, resume
and extension, no dead ends after a failed start, best weights, runs that never learned."""

import json

import torch

from conftest import read_jsonl, run_cli
from deeprl.envs.registry import make_env
from deeprl.train.policy_eval import evaluate_policy
from toy_agents import ToyRecurrent

QUICK = ["train.total_steps=4096", "train.eval_every=2048", "train.eval_episodes=3"]


def test_output_in_a_pipe_has_start_progress_and_summary(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(f"hydra.run.dir={run_dir}", *QUICK, "train.progress_every=0.01",
                   "name=pipe-test", "tags=[smoke,cartpole]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"deeprl: run pipe-test [smoke, cartpole] -> {run_dir}")
    assert "agent ppo (" in lines[0] and "parameters" in lines[0] and "device cpu" in lines[0]
    assert any(line.startswith("deeprl: ") and "env steps (" in line for line in lines)
    assert sum(line.startswith("deeprl: eval at step") for line in lines) == 2
    assert any(line.startswith("deeprl: evaluating at step") and "steps per eval copy" in line
               for line in lines)  # a long evaluation reports while it runs
    assert lines[-1].startswith("deeprl: done: eval return") and str(run_dir) in lines[-1]
    config = (run_dir / "config.yaml").read_text()
    assert "device: cpu" in config and "name: pipe-test" in config


def test_resume_refuses_changes_to_the_run_and_extends_a_finished_one(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(f"hydra.run.dir={run_dir}", *QUICK, cwd=tmp_path).returncode == 0
    for change in ("agent.lr=0.5", "agent=dqn", "seed=3"):
        proc = run_cli(f"resume={run_dir}", change, cwd=tmp_path)
        assert proc.returncode == 2, change
        assert len(proc.stderr.strip().splitlines()) == 1 and change in proc.stderr
    proc = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0 and "already finished at step 4096" in proc.stderr
    proc = run_cli(f"resume={run_dir}", "train.total_steps=6144", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resuming at 4,096/6,144" in proc.stdout
    assert json.loads((run_dir / "eval.json").read_text())["step"] == 6144
    assert "total_steps: 6144" in (run_dir / "config.yaml").read_text()
    assert [line["step"] for line in read_jsonl(run_dir / "metrics.jsonl")
            if "eval/return_mean" in line] == [2048, 4096, 6144]


def test_a_failed_start_is_no_dead_end(tmp_path):
    run_dir = tmp_path / "run"
    args = ["agent=dqn", "train.total_steps=600", "agent.learning_starts=100",
            "train.eval_every=0", "train.eval_episodes=2"]
    proc = run_cli(f"hydra.run.dir={run_dir}", *args, "agent.buffer_size=100000000000",
                   cwd=tmp_path)
    assert proc.returncode == 2 and "lower agent.buffer_size" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli(f"hydra.run.dir={run_dir}", *args, "agent.buffer_size=1000", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_best_weights_and_a_run_that_never_learned(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(f"hydra.run.dir={run_dir}", "agent=sac", "env=pendulum",
                   "train.total_steps=400", "train.eval_every=200", "train.eval_episodes=1",
                   "agent.learning_starts=1000", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "before agent=sac made its first update (it learns from agent.learning_starts=1000" \
        in proc.stderr
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["learned"] is False
    assert report["best"]["step"] in (200, 400)
    assert report["best"]["return_mean"] >= report["return_mean"]
    assert (run_dir / "agent_best.safetensors").is_file()
    assert read_jsonl(run_dir / "metrics.jsonl")[-1]["warning/no_update"] == 1


def test_evaluation_cuts_episodes_at_the_step_cap():
    env = make_env("pendulum", 2)  # 200-step episodes
    agent = ToyRecurrent(make_env("cartpole", 1).spec, 2)
    report = evaluate_policy(_Zero(env), env, episodes=4, seed=0, max_episode_steps=50)
    assert report["lengths"] == [50, 50, 50, 50] and report["truncated"] == 4
    full = evaluate_policy(_Zero(env), env, episodes=2, seed=0)
    assert full["lengths"] == [200, 200] and full["truncated"] == 0
    seen = []
    evaluate_policy(agent, make_env("cartpole", 3), episodes=3, seed=0,
                    progress=lambda done, steps: seen.append((done, steps)))
    assert seen[-1][0] == 3 and seen == sorted(seen)
    assert [steps for _, steps in seen] == list(range(1, len(seen) + 1))  # every step


class _Zero(torch.nn.Module):
    """Zero torque: Pendulum never ends an episode before its time limit."""

    def __init__(self, env):
        super().__init__()
        self.env = env

    def initial_state(self, n):
        return None

    def act(self, obs, state=None, is_first=None, deterministic=False):
        return torch.zeros(obs.shape[0], 1), {}, state


def test_wandb_logger_offline_beside_tensorboard(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(f"hydra.run.dir={run_dir}", "train.total_steps=2048", "train.eval_every=0",
                   "train.eval_episodes=2", "logger=wandb", "wandb.mode=offline",
                   "name=offline-test", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert list(offline.glob("*.wandb"))
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
