import torch

from deeprl.agents import PPO, PPOConfig
from deeprl.agents.ppo import clipped_value_loss, ppo_loss
from deeprl.envs import make_env


def test_ppo_loss_clips_the_ratio():
    # ratio = e^0.5 > 1.2 with positive advantage: the clipped term (1.2 * A) is used.
    new = torch.tensor([0.5])
    old = torch.tensor([0.0])
    adv = torch.tensor([2.0])
    zero = torch.zeros(1)
    loss, stats = ppo_loss(new, old, adv, zero, zero, 0.2, 0.0, 0.0)
    torch.testing.assert_close(loss, torch.tensor(-1.2 * 2.0))
    assert stats["clip_fraction"] == 1.0
    # negative advantage: max(-A r, -A clip(r)) picks the unclipped (larger) penalty
    loss, _ = ppo_loss(new, old, -adv, zero, zero, 0.2, 0.0, 0.0)
    torch.testing.assert_close(loss, torch.tensor(2.0 * torch.e**0.5))


def test_ppo_value_clipping_and_entropy_terms():
    zero = torch.zeros(1)
    new_v, old_v, ret = torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([3.0])
    ent = torch.tensor([0.7])
    value_loss = clipped_value_loss(new_v, old_v, ret, 0.2)
    loss, stats = ppo_loss(zero, zero, zero, ent, value_loss, 0.2, 0.1, 0.5)
    # clipped value 0.2 -> (0.2-3)^2 = 7.84 > (2-3)^2 = 1: the pessimistic (clipped) term counts
    torch.testing.assert_close(stats["value_loss"], torch.tensor(0.5 * 7.84))
    torch.testing.assert_close(loss, torch.tensor(0.5 * 0.5 * 7.84 - 0.1 * 0.7))


def test_ppo_loss_shortcuts_keep_the_loss_and_its_gradient():
    # With ent_coef 0 the entropy stays out of the graph, and diagnostics=False skips the
    # statistics; the loss and the gradient are those of the full expression, bit for bit.
    torch.manual_seed(0)
    new, entropy = torch.randn(8, requires_grad=True), torch.rand(8, requires_grad=True)
    old, adv, value_loss = torch.randn(8), torch.randn(8), torch.rand(8)
    loss, stats = ppo_loss(new, old, adv, entropy, value_loss, 0.2, 0.0, 0.5, diagnostics=False)
    loss.backward()
    assert stats == {} and entropy.grad is None
    ratio = (new - old).exp()
    pg = torch.max(-adv * ratio, -adv * ratio.clamp(0.8, 1.2)).mean()
    reference = pg - 0.0 * entropy.mean() + 0.5 * value_loss.mean()
    (expected,) = torch.autograd.grad(reference, new)
    assert torch.equal(loss, reference) and torch.equal(new.grad, expected)


def test_act_shapes_discrete_and_continuous():
    for name, action_shape in (("cartpole", (3,)), ("pendulum", (3, 1))):
        env = make_env(name, num_envs=3)
        agent = PPO(env.spec, 3)
        obs = env.reset(seed=0)
        action, _, state = agent.act(obs)
        assert action.shape == action_shape and state is None
        deterministic, _, _ = agent.act(obs, deterministic=True)
        assert deterministic.shape == action_shape


def test_normalizer_statistics_are_in_the_checkpoint():
    env = make_env("pendulum", num_envs=4)
    config = PPOConfig(num_envs=4, num_steps=8, num_minibatches=2, normalize_obs=True,
                       normalize_reward=True)
    agent = PPO(env.spec, 4, config=config)
    buffer = agent.make_buffer()
    from deeprl.train.collector import Collector

    collector = Collector(env, agent, seed=0)
    while agent.update(buffer, collector.steps) is None:
        buffer.add(collector.step())
    state = agent.checkpoint_state()
    fresh = PPO(env.spec, 4, config=config)
    fresh.load_checkpoint_state(state)
    assert fresh.obs_rms.count.item() > 1
    torch.testing.assert_close(fresh.obs_rms.mean, agent.obs_rms.mean)
    torch.testing.assert_close(fresh.return_rms.var, agent.return_rms.var)


def test_classification_value_head_learns_cartpole_values(tmp_path):
    """PPO's critic through an HL-Gauss head (agent.critic.head=hl_gauss) still learns."""
    from conftest import run_cli

    run_dir = tmp_path / "run"
    proc = run_cli("agent.critic.head=hl_gauss", "agent.critic.v_min=0", "agent.critic.v_max=100",
                   "train.total_steps=30000", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    import json

    assert json.loads((run_dir / "eval.json").read_text())["return_mean"] >= 150
