"""DQN: targets on hand-built networks, dueling, schedules, options, short runs."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import read_jsonl, run_cli
from deeprl.agents import DQN
from deeprl.agents.dqn import QNetwork
from deeprl.buffers.replay import PrioritizedReplayBuffer
from deeprl.config import make_config
from deeprl.envs import make_env
from deeprl.envs.spec import Box, Discrete, EnvSpec
from deeprl.errors import UserError
from deeprl.nets.schedules import linear_schedule
from deeprl.train.collector import Collector


def set_linear(layer: torch.nn.Linear, weight: list, bias: list) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))


def hand_built_agent(**options) -> DQN:
    """A DQN on a 1-d observation with 2 actions whose networks are linear and set by hand:
    online Q(s) = (s, 2 - s), target Qbar(s) = (3 s, 1)."""
    spec = EnvSpec("hand", Box.uniform((1,), -10, 10), Discrete(2))
    agent = DQN(spec, 1, config=make_config(DQN.Config, {"torso": "mlp", **options}))
    for net in (agent.q_network, agent.target_network):
        net.torso = torch.nn.Identity()
        net.advantage = torch.nn.Linear(1, 2)
    set_linear(agent.q_network.advantage, [[1.0], [-1.0]], [0.0, 2.0])
    set_linear(agent.target_network.advantage, [[3.0], [0.0]], [0.0, 1.0])
    return agent


def batch(**values) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v) for k, v in values.items()}


@pytest.mark.parametrize("double", [False, True])
def test_td_targets_by_hand(double):
    agent = hand_built_agent(double=double)
    data = batch(obs=[[0.5]], action=[1], next_obs=[[0.25]], reward=[1.0], discount=[0.9])
    loss, priority = agent.td_loss(data)
    # Q(s, 1) = 1.5. At s' = 0.25 the target net prefers action 1 (values 0.75, 1); the online
    # net (0.25, 1.75) prefers 1 as well; at s' = 2, target prefers 0 (6, 1), online 0 (2, 0).
    assert priority.item() == pytest.approx(abs(1 + 0.9 * 1.0 - 1.5))
    data["next_obs"] = torch.tensor([[2.0]])
    loss, priority = agent.td_loss(data)
    assert priority.item() == pytest.approx(abs(1 + 0.9 * 6.0 - 1.5))
    assert loss.item() == pytest.approx((1 + 0.9 * 6.0 - 1.5) ** 2)
    # At s' = 0.75 the two networks disagree: target (2.25, 1) -> 0; online (0.75, 1.25) -> 1.
    data["next_obs"] = torch.tensor([[0.75]])
    _, priority = agent.td_loss(data)
    bootstrap = 1.0 if double else 2.25  # Double DQN evaluates the online argmax with Qbar
    assert priority.item() == pytest.approx(abs(1 + 0.9 * bootstrap - 1.5))


def test_terminal_transitions_do_not_bootstrap():
    agent = hand_built_agent()
    data = batch(obs=[[0.5]], action=[0], next_obs=[[5.0]], reward=[2.0], discount=[0.0])
    _, priority = agent.td_loss(data)
    assert priority.item() == pytest.approx(abs(2.0 - 0.5))


def test_dueling_combination():
    torso = torch.nn.Identity()
    net = QNetwork(torso, features=1, num_actions=3, num_outputs=1, dueling=True)
    set_linear(net.advantage, [[1.0], [2.0], [6.0]], [0.0, 0.0, 0.0])
    set_linear(net.state_value, [[10.0]], [0.0])
    q = net(torch.tensor([[1.0]])).squeeze(-1)
    # V = 10, A = (1, 2, 6) with mean 3: Q = (8, 9, 13).
    assert torch.allclose(q, torch.tensor([[8.0, 9.0, 13.0]]))


def test_linear_epsilon_schedule():
    assert linear_schedule(1.0, 0.05, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.05, 100, 50) == pytest.approx(0.525)
    assert linear_schedule(1.0, 0.05, 100, 500) == pytest.approx(0.05)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"double": True, "dueling": True, "n_step": 3, "prioritized": True},
        {"critic": {"head": "c51", "v_min": 0.0, "v_max": 100.0}, "prioritized": True},
        {"critic": {"head": "hl_gauss", "v_min": 0.0, "v_max": 100.0}, "dueling": True},
    ],
)
def test_dqn_variants_run(options):
    torch.manual_seed(0)
    env = make_env("cartpole", num_envs=2)
    config = make_config(
        DQN.Config,
        {"learning_starts": 100, "batch_size": 16, "train_frequency": 2,
         "target_network_frequency": 50, **options},
    )
    agent = DQN(env.spec, 2, config=config, total_steps=300)
    buffer = agent.make_buffer()
    assert isinstance(buffer, PrioritizedReplayBuffer) == bool(options.get("prioritized"))
    collector = Collector(env, agent, seed=0)
    target_before = [p.clone() for p in agent.target_network.parameters()]
    metrics = None
    while collector.steps < 300:
        buffer.add(collector.step())
        metrics = agent.update(buffer, collector.steps) or metrics
    assert int(agent.grad_steps) == (300 - 100) // 2
    assert math.isfinite(metrics["td_loss"]) and metrics["epsilon"] == pytest.approx(0.05)
    after = agent.target_network.parameters()
    moved = any(not torch.equal(a, b) for a, b in zip(target_before, after, strict=True))
    assert moved  # hard updates at steps 150, 200, 250, 300
    if isinstance(buffer, PrioritizedReplayBuffer):
        assert buffer.beta > 0.4


def test_nature_cnn_torso_for_pixels():
    spec = EnvSpec("pixels", Box.uniform((4, 84, 84), 0, 255, torch.uint8), Discrete(6))
    agent = DQN(spec, 1)
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    action, _, _ = agent.act(obs, deterministic=True)
    assert action.shape == (2,)
    spec = EnvSpec("pixels", Box.uniform((4, 84, 84), 0, 255, torch.uint8), Discrete(6),
                   metadata={"frame_stack": 4})
    assert DQN(spec, 1).make_buffer().frame_stack == 4


def test_dqn_errors():
    env = make_env("pendulum", num_envs=1)
    with pytest.raises(UserError, match="agent=sac"):
        DQN(env.spec, 1)
    cartpole = make_env("cartpole", num_envs=1)
    with pytest.raises(UserError, match="nature_cnn"):
        DQN(cartpole.spec, 1, config=make_config(DQN.Config, {"torso": "nature_cnn"}))
    with pytest.raises(UserError, match="hl_gauss"):
        DQN(cartpole.spec, 1, config=make_config(DQN.Config, {"critic": {"head": "hl-gauss"}}))


def test_dqn_cli(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        "agent=dqn", "env=cartpole", "agent.learning_starts=200", "agent.double=true",
        "agent.critic.head=two_hot", "agent.critic.v_max=100", "agent.critic.v_min=0",
        "train.total_steps=600", "train.eval_every=0", "train.eval_episodes=2",
        f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    last = read_jsonl(run_dir / "metrics.jsonl")[-1]
    assert last["step"] == 600 and "train/td_loss" in last


def test_eval_epsilon_acts_randomly_in_evaluation_only_when_set():
    spec = EnvSpec("pixels", Box.uniform((4, 84, 84), 0, 255, torch.uint8), Discrete(6))
    obs = torch.zeros(200, 4, 84, 84, dtype=torch.uint8)  # one state: greedy is one action
    greedy, _, _ = DQN(spec, 1).act(obs, deterministic=True)
    assert greedy.unique().numel() == 1
    torch.manual_seed(0)
    agent = DQN(spec, 1, config=make_config(DQN.Config, {"eval_epsilon": 0.5}))
    action, _, _ = agent.act(obs, deterministic=True)
    greedy = agent.q_values(obs[:1]).argmax(-1)
    off_greedy = (action != greedy).float().mean().item()
    assert 0.3 < off_greedy < 0.55  # epsilon 0.5, of which 1/6 lands on the greedy action
    with pytest.raises(UserError, match="eval_epsilon"):
        make_config(DQN.Config, {"eval_epsilon": 1.5})
