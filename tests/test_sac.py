"""SAC: losses on hand-built tensors, short runs, checkpoints with the replay buffer."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from conftest import read_jsonl, run_cli
from deeprl.agents import SAC
from deeprl.agents.sac import sac_actor_loss, sac_alpha_loss, soft_q_target
from deeprl.config import make_config
from deeprl.envs import make_env
from deeprl.errors import UserError
from deeprl.io import load_checkpoint, save_checkpoint
from deeprl.nets.distributions import squashed_gaussian
from deeprl.train.collector import Collector


def test_squashed_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    mean, log_std = torch.randn(5, 3), torch.randn(5, 3) * 0.3
    scale, bias = torch.ones(3), torch.zeros(3)
    action, log_prob = squashed_gaussian(mean, log_std, scale, bias)
    reference = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])
    # CleanRL's 1e-6 inside the log only matters near |a| = 1.
    assert torch.allclose(log_prob, reference.log_prob(action).sum(-1), atol=1e-3)
    assert action.abs().max() < 1


def test_squashed_gaussian_scales_to_the_action_box():
    mean, log_std = torch.zeros(1000, 1), torch.zeros(1000, 1)
    action, _ = squashed_gaussian(mean, log_std, torch.tensor([2.0]), torch.tensor([1.0]))
    assert action.min() > -1 and action.max() < 3


def test_soft_q_target_and_losses_by_hand():
    target = soft_q_target(
        rewards=torch.tensor([1.0, 2.0]),
        discounts=torch.tensor([0.9, 0.0]),
        next_q1=torch.tensor([10.0, 5.0]),
        next_q2=torch.tensor([8.0, 7.0]),
        next_log_prob=torch.tensor([-1.0, 3.0]),
        alpha=0.5,
    )
    # 1 + 0.9 * (min(10, 8) + 0.5) = 8.65; the terminal row keeps only its reward.
    assert torch.allclose(target, torch.tensor([8.65, 2.0]))
    actor = sac_actor_loss(torch.tensor([-1.0, 1.0]), torch.tensor([3.0, 0.0]),
                           torch.tensor([2.0, 1.0]), alpha=0.5)
    assert actor.item() == pytest.approx(((-0.5 - 2.0) + (0.5 - 0.0)) / 2)
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    loss = sac_alpha_loss(log_alpha, torch.tensor([-1.0, -3.0]), target_entropy=-1.0)
    assert loss.item() == pytest.approx(-0.5 * ((-2.0) + (-4.0)) / 2)
    loss.backward()
    # Entropy below target (log pi > -H) raises alpha; here entropy is above it, so alpha falls.
    assert log_alpha.grad.item() > 0


def run_steps(agent, env, steps):
    buffer = agent.make_buffer()
    collector = Collector(env, agent, seed=0)
    metrics = None
    actions = []
    while collector.steps < steps:
        transition = collector.step()
        actions.append(transition["action"])
        buffer.add(transition)
        metrics = agent.update(buffer, collector.steps) or metrics
    return buffer, metrics, torch.cat(actions)


@pytest.mark.parametrize("head", ["scalar", "hl_gauss"])
def test_sac_short_run_and_checkpoint(tmp_path, head):
    torch.manual_seed(0)
    env = make_env("pendulum", num_envs=2)
    config = make_config(
        SAC.Config,
        {"learning_starts": 100, "batch_size": 32, "hidden_sizes": [32, 32], "n_step": 2,
         "critic": {"head": head, "v_min": -50.0, "v_max": 50.0}},
    )
    agent = SAC(env.spec, 2, config=config)
    buffer, metrics, actions = run_steps(agent, env, 200)
    assert int(agent.grad_steps) == 100  # utd 1: one gradient step per env step after 100
    assert metrics is not None and all(math.isfinite(v) for v in metrics.values())
    assert actions.abs().max() <= 2.0  # Pendulum's torque box
    state = {"agent": agent.checkpoint_state(), "buffer": buffer.state_dict()}
    save_checkpoint(tmp_path / "last.pt", state)
    loaded = load_checkpoint(tmp_path / "last.pt")
    restored = SAC(env.spec, 2, config=config)
    restored.load_checkpoint_state(loaded["agent"])
    restored_buffer = restored.make_buffer()
    restored_buffer.load_state_dict(loaded["buffer"])
    assert len(restored_buffer) == len(buffer) == 200
    obs = torch.randn(4, 3)
    with torch.no_grad():
        assert torch.equal(agent.act(obs, deterministic=True)[0],
                           restored.act(obs, deterministic=True)[0])


def test_sac_rejects_discrete_actions():
    env = make_env("cartpole", num_envs=1)
    with pytest.raises(UserError, match="agent=dqn"):
        SAC(env.spec, 1)


def test_sac_cli_with_classification_critic(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        "agent=sac", "env=pendulum", "agent.learning_starts=100", "agent.batch_size=32",
        "agent.critic.head=hl_gauss", "agent.critic.num_bins=21", "agent.critic.v_min=-100",
        "agent.critic.v_max=10", "train.total_steps=300", "train.eval_every=0",
        "train.eval_episodes=1", f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    last = read_jsonl(run_dir / "metrics.jsonl")[-1]
    assert last["step"] == 300 and "train/q_loss" in last
