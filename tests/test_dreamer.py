"""DreamerV3 agent: acting with its policy state, updates, agent files, the CLI, bad input."""

from __future__ import annotations

import math

import pytest
import torch

import deeprl
from conftest import assert_resume_equal, read_jsonl, run_cli
from deeprl.agents import Dreamer
from deeprl.config import make_config
from deeprl.envs import make_env
from deeprl.envs.spec import Box, Discrete, EnvSpec
from deeprl.train.collector import Collector

TINY = {
    "size": "XS", "deter": 32, "hidden": 32, "units": 32, "layers": 1, "stoch": 4, "classes": 4,
    "batch_size": 4, "batch_length": 8, "learning_starts": 32, "train_ratio": 8,
    "imagination": {"horizon": 5, "actor_units": 32, "critic_units": 32, "actor_layers": 1,
                    "critic_layers": 1, "num_bins": 15},
}
TINY_CLI = [
    "agent=dreamer", "agent.size=XS", "agent.deter=32", "agent.hidden=32", "agent.units=32",
    "agent.layers=1", "agent.stoch=4", "agent.classes=4", "agent.batch_size=4",
    "agent.batch_length=8", "agent.learning_starts=100", "agent.train_ratio=16",
    "agent.imagination.horizon=5", "agent.imagination.actor_units=32",
    "agent.imagination.critic_units=32", "agent.imagination.actor_layers=1",
    "agent.imagination.critic_layers=1",
]


def tiny_agent(env_name: str, num_envs: int = 2, **overrides) -> tuple[Dreamer, object]:
    env = make_env(env_name, num_envs=num_envs)
    config = make_config(Dreamer.Config, {**TINY, **overrides})
    return Dreamer(env.spec, num_envs, config=config), env


def test_deterministic_acting_samples_the_latent_and_takes_the_actions_mode():
    """The actor only trains on sampled latents, so acting samples the latent in both modes;
    ``deterministic`` only takes the action's mode (the same draw gives the same action)."""
    agent, env = tiny_agent("cartpole")
    obs = env.reset(seed=0)
    with torch.inference_mode():
        draws = []
        for seed in (1, 2, 1):
            torch.manual_seed(seed)
            draws.append(agent.act(obs, agent.initial_state(2), None, deterministic=True))
    (a1, _, s1), (_, _, s2), (a3, _, s3) = draws
    assert not torch.equal(s1["stoch"], s2["stoch"])  # untrained posterior: near-uniform draws
    assert torch.equal(s1["stoch"], s3["stoch"]) and torch.equal(a1, a3)


def test_actor_and_critic_widths_follow_the_size_preset_unless_set():
    agent, _ = tiny_agent("cartpole", imagination={"horizon": 5, "num_bins": 15})
    assert (agent.actor_critic.cfg.actor_units, agent.actor_critic.cfg.critic_layers) == (32, 1)
    agent, _ = tiny_agent("cartpole", imagination={"actor_units": 48, "critic_layers": 2})
    assert (agent.actor_critic.cfg.actor_units, agent.actor_critic.cfg.critic_layers) == (48, 2)
    assert agent.actor_critic.cfg.critic_units == 32


def run_steps(agent, env, steps):
    buffer = agent.make_buffer()
    collector = Collector(env, agent, seed=0)
    metrics = None
    while collector.steps < steps:
        buffer.add(collector.step())
        metrics = agent.update(buffer, collector.steps) or metrics
    return buffer, metrics


@pytest.mark.parametrize("env_name", ["cartpole", "pendulum"])
def test_dreamer_acts_with_per_copy_state(env_name):
    torch.manual_seed(0)
    agent, env = tiny_agent(env_name, num_envs=3)
    state = agent.initial_state(3)
    assert state["deter"].shape == (3, 32) and state["stoch"].shape == (3, 4, 4)
    assert state["core.0"].shape == (3, 1, 32)  # GRU (layers, batch, width), copies first
    obs = env.reset(seed=0)
    is_first = torch.ones(3, dtype=torch.bool)
    agent.env_steps = 10**6  # past learning_starts: the actor acts
    with torch.inference_mode():
        action, extras, state = agent.act(obs, state, is_first)
        action, _, state = agent.act(obs, state, torch.tensor([False, True, False]))
    assert extras == {}
    assert all(v.shape[0] == 3 for v in state.values())
    assert state["action"].shape == (3, agent.action_dim)
    if env_name == "cartpole":
        assert action.shape == (3,) and action.dtype == torch.int64
    else:
        assert action.shape == (3, 1) and action.abs().max() <= 2.0
    # Only the reset copy changes when one copy starts an episode.
    fresh = agent.initial_state(1)
    with torch.inference_mode():
        _, _, one = agent.act(obs[1:2], fresh, torch.ones(1, dtype=torch.bool),
                              deterministic=True)
        _, _, three = agent.act(obs, state, torch.tensor([False, True, False]),
                                deterministic=True)
    assert torch.allclose(one["deter"][0], three["deter"][1], atol=1e-6)


@pytest.mark.parametrize("env_name", ["cartpole", "pendulum"])
def test_dreamer_updates_and_agent_file_round_trip(tmp_path, env_name):
    torch.manual_seed(0)
    agent, env = tiny_agent(env_name)
    _, metrics = run_steps(agent, env, 64)
    # 2 envs: 32 env steps past learning_starts x train ratio 8 / (4 x 8) replayed per update.
    assert agent.grad_steps == agent.updates_due(64) == 8
    for name in ("model_loss", "recon_obs_loss", "reward_loss", "cont_loss", "dyn_loss",
                 "rep_loss", "kl", "actor_loss", "critic_loss", "entropy", "return_scale",
                 "imagined_return"):
        assert metrics[name].dim() == 0 and math.isfinite(metrics[name].item()), name
    path = agent.save(tmp_path / "agent.safetensors")
    loaded = deeprl.load_agent(path)
    assert loaded.grad_steps == agent.grad_steps
    obs = env.reset(seed=1)
    agent.eval()
    with torch.inference_mode():  # the latent is sampled in both modes: same seed, same draw
        torch.manual_seed(5)
        first = agent.act(obs, agent.initial_state(2), None, deterministic=True)[0]
        torch.manual_seed(5)
        again = loaded.act(obs, loaded.initial_state(2), None, deterministic=True)[0]
    assert torch.equal(first, again)


def test_dreamer_mamba2_core_acts_and_updates():
    torch.manual_seed(0)
    agent, env = tiny_agent("cartpole", sequence="mamba2")
    _, metrics = run_steps(agent, env, 48)
    assert metrics is not None and math.isfinite(metrics["model_loss"].item())
    assert all(v.shape[0] == 2 for v in agent.initial_state(2).values())


@pytest.mark.parametrize("option", [
    "agent.size=XXL", "agent.sequence=lstm", "agent.sequence=transformer", "agent.train_ratio=0",
    "agent.depth=16",  # the CNN width, on CartPole's vector observations
    "agent.compile=true", "agent.precision=bf16",  # CUDA only; this run is on the CPU
])
def test_dreamer_bad_input_is_one_line(tmp_path, option):
    proc = run_cli("agent=dreamer", "env=cartpole", "device=cpu", option, cwd=tmp_path,
                   timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert option.split("=")[0] in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_dreamer_cli_run(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        *TINY_CLI, "env=cartpole", "train.total_steps=600", "train.eval_every=0",
        "train.eval_episodes=1", f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "eval.json").exists()
    logged = read_jsonl(run_dir / "metrics.jsonl")
    assert any("train/model_loss" in row for row in logged)


def test_dreamer_on_uint8_images():
    torch.manual_seed(0)
    spec = EnvSpec("pixels", Box.uniform((3, 16, 16), 0, 255, torch.uint8), Discrete(3))
    config = make_config(Dreamer.Config, {**TINY, "depth": 4, "learning_starts": 0})
    agent = Dreamer(spec, 2, config=config)
    buffer = agent.make_buffer()
    frames = torch.randint(0, 256, (41, 2, 3, 16, 16), dtype=torch.uint8)
    for t in range(40):
        done = torch.tensor([t % 13 == 12, False])
        buffer.add({"obs": frames[t], "action": torch.randint(3, (2,)), "reward": torch.rand(2),
                    "next_obs": frames[t + 1], "terminated": done,
                    "truncated": torch.zeros(2, dtype=torch.bool)})
    metrics = agent.update(buffer, 40)
    assert agent.grad_steps == 10 and math.isfinite(metrics["recon_obs_loss"].item())
    with torch.inference_mode():
        action, _, state = agent.act(frames[0], agent.initial_state(2), None)
    assert action.shape == (2,) and state["stoch"].shape == (2, 4, 4)


def test_dreamer_resume_after_sigterm_equals_uninterrupted(tmp_path):
    args = [*TINY_CLI, "agent.train_ratio=8", "env=cartpole", "seed=3",
            "train.total_steps=800", "train.eval_every=400", "train.log_every=100",
            "train.eval_episodes=1", "train.checkpoint_every=0"]
    assert_resume_equal(args, tmp_path, total_steps=800, after_lines=3)
