"""Imagination actor-critic (DreamerV3): lambda-returns, return normaliser, losses, updates."""

from __future__ import annotations

import pytest
import torch

from deeprl.config import check_options
from deeprl.errors import UserError
from deeprl.imagination import (
    ImaginationActorCritic,
    ImaginationConfig,
    PercentileNormalizer,
    actor_loss,
    critic_loss,
    imagine,
    lambda_returns,
    trajectory_weights,
)
from deeprl.nets.functional import symlog
from deeprl.nets.heads import make_value_head, two_hot_target


def _small(units: int, **overrides) -> ImaginationConfig:
    """One hidden layer of ``units`` for actor and critic: fast on hand-built inputs."""
    sizes = {"actor_units": units, "critic_units": units, "actor_layers": 1, "critic_layers": 1}
    return ImaginationConfig(**sizes, **overrides)


def test_lambda_returns_match_a_hand_computation():
    # Column 0 ends after step 2 (continue 0), column 1 runs on.
    rewards = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    continues = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    values = torch.tensor([[0.5, 0.5], [1.0, 1.0], [2.0, 2.0], [4.0, 4.0]])
    # R_2 = 3 + 0.9 c_2 (0.5 * 4 + 0.5 * 4); R_1 = 2 + 0.9 (0.5 * 2 + 0.5 R_2);
    # R_0 = 1 + 0.9 (0.5 * 1 + 0.5 R_1).
    expected = torch.tensor([[3.3625, 4.0915], [4.25, 5.87], [3.0, 6.6]])
    returns = lambda_returns(rewards, continues, values, gamma=0.9, lam=0.5)
    assert torch.allclose(returns, expected)


def test_lambda_returns_limits():
    torch.manual_seed(0)
    rewards, values = torch.randn(4, 3), torch.randn(5, 3)
    continues = torch.tensor([1.0, 1.0, 0.0]).expand(4, 3)
    gamma = 0.9
    td = lambda_returns(rewards, continues, values, gamma, lam=0.0)
    assert torch.allclose(td, rewards + gamma * continues * values[1:])
    monte_carlo = lambda_returns(rewards, continues, values, gamma, lam=1.0)
    expected, running = [], values[-1]
    for t in reversed(range(4)):
        running = rewards[t] + gamma * continues[t] * running
        expected.append(running)
    assert torch.allclose(monte_carlo, torch.stack(expected[::-1]))
    with pytest.raises(ValueError, match="one more step"):
        lambda_returns(rewards, continues, values[:-1], gamma, 0.95)


def test_trajectory_weights_discount_past_predicted_ends():
    continues = torch.tensor([[1.0], [0.0], [1.0]])
    weights = trajectory_weights(continues, gamma=0.5, start_continues=torch.tensor([0.5]))
    assert torch.allclose(weights, torch.tensor([[0.5], [0.25], [0.0]]))


def test_percentile_normalizer_ema_floor_and_checkpoint():
    norm = PercentileNormalizer(decay=0.99)
    returns = torch.arange(101.0)  # P5 = 5, P95 = 95 exactly
    assert norm(returns).item() == 1.0  # range 0.95 - 0.05 = 0.9 is floored at 1
    assert norm.low.item() == pytest.approx(0.05)
    assert norm.high.item() == pytest.approx(0.95)
    scale = norm(returns)
    assert norm.low.item() == pytest.approx(0.99 * 0.05 + 0.01 * 5)
    assert norm.high.item() == pytest.approx(0.99 * 0.95 + 0.01 * 95)
    assert scale.item() == pytest.approx(1.8905 - 0.0995)
    restored = PercentileNormalizer()
    restored.load_state_dict(norm.state_dict())
    assert restored.scale().item() == pytest.approx(scale.item())


def test_reinforce_raises_log_prob_of_positive_advantage_actions():
    logits = torch.zeros(2, 3, requires_grad=True)
    actions = torch.tensor([0, 1])
    log_p = torch.log_softmax(logits, -1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    terms = actor_loss(
        log_p.gather(-1, actions[:, None]).squeeze(-1),
        entropy,
        returns=torch.tensor([2.0, -2.0]),
        values=torch.zeros(2),
        scale=1.0,
        weights=torch.ones(2),
        entropy_coef=0.0,
    )
    terms["actor"].backward()
    # Gradient descent raises the logit of the positive-advantage action, lowers the other.
    assert logits.grad[0, 0] < 0 and logits.grad[1, 1] > 0
    assert terms["policy"].item() == pytest.approx(0.0)  # +2 log(1/3) - 2 log(1/3), halved


def test_discrete_update_prefers_the_rewarded_action():
    torch.manual_seed(0)
    cfg = _small(32, actor_lr=1e-2)
    ac = ImaginationActorCritic(feature_dim=6, num_actions=3, discrete=True, cfg=cfg)
    horizon, batch = 4, 64
    features = torch.randn(horizon + 1, batch, 6)
    actions = torch.randint(0, 3, (horizon, batch))
    rewards = (actions == 0).float()
    continues = torch.zeros(horizon, batch)  # R_t = r_t: advantage > 0 only for action 0
    before = ac.actor.log_prob_entropy(features[0], torch.zeros(batch))[0].exp().mean()
    metrics = ac.update(features, actions, rewards, continues)
    after = ac.actor.log_prob_entropy(features[0], torch.zeros(batch))[0].exp().mean()
    assert after > before
    assert before.item() == pytest.approx(1 / 3, abs=0.05)
    for key in ("actor_loss", "critic_loss", "entropy", "return_scale", "imagined_return"):
        assert torch.isfinite(metrics[key])


def _toy_world_model(feature_dim: int, action_dim: int):
    """A linear world model: s' = s + a M, reward w . s'; M and w are its parameters."""
    model = torch.nn.ParameterDict(
        {"M": torch.randn(action_dim, feature_dim), "w": torch.randn(feature_dim)}
    )
    return model, (lambda s, a: s + a @ model["M"]), (lambda s: s)


def test_continuous_dynamics_backprop_reaches_features_and_actor_only():
    torch.manual_seed(0)
    ac = ImaginationActorCritic(4, 2, discrete=False, cfg=_small(16))
    model, step, features_of = _toy_world_model(4, 2)
    start = torch.randn(8, 4, requires_grad=True)
    features, actions = imagine(ac.actor, start, step, features_of, horizon=3)
    assert features.shape == (4, 8, 4) and actions.shape == (3, 8, 2)
    features.retain_grad()
    rewards = features[1:] @ model["w"]
    total, _ = ac.loss(features, actions, rewards, torch.ones(3, 8))
    total.backward()
    assert features.grad[1:].abs().sum() > 0  # the actor loss differentiates the features
    assert all(p.grad.abs().sum() > 0 for p in ac.actor.net[-1].parameters())

    ac.zero_grad(set_to_none=True)
    model.zero_grad(set_to_none=True)
    features, actions = imagine(ac.actor, start.detach(), step, features_of, horizon=3)
    rewards = features[1:] @ model["w"]
    ac.update(features, actions, rewards, torch.ones(3, 8))
    assert model["M"].grad is None and model["w"].grad is None  # the world model is untouched


def test_backprop_actor_loss_leaves_critic_gradient_to_the_critic_loss():
    torch.manual_seed(0)
    ac = ImaginationActorCritic(4, 2, discrete=False, cfg=_small(16))
    torch.nn.init.normal_(ac.critic[-1].weight)  # nonzero values, so the returns depend on them
    model, step, features_of = _toy_world_model(4, 2)
    features, actions = imagine(ac.actor, torch.randn(8, 4), step, features_of, horizon=3)
    rewards, continues = features[1:] @ model["w"], torch.ones(3, 8)
    params = list(ac.critic.parameters())
    total, _ = ac.loss(features, actions, rewards, continues)
    from_total = torch.autograd.grad(total, params)
    values = ac.value(features.detach()).detach()
    returns = lambda_returns(rewards, continues, values, ac.cfg.gamma, ac.cfg.lam)
    slow = ac.value(features[:-1].detach(), slow=True)
    weights = trajectory_weights(continues, ac.cfg.gamma)
    terms = critic_loss(ac.head, ac.critic(features[:-1].detach()), returns, slow, weights)
    from_critic = torch.autograd.grad(terms["critic"], params)
    for a, b in zip(from_total, from_critic, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_slow_critic_is_an_ema_of_the_critic():
    torch.manual_seed(0)
    ac = ImaginationActorCritic(5, 3, discrete=True, cfg=_small(8))
    slow_before = [p.clone() for p in ac.slow_critic.parameters()]
    features = torch.randn(4, 6, 5)
    ac.update(features, torch.randint(0, 3, (3, 6)), torch.randn(3, 6), torch.ones(3, 6))
    for slow, old, new in zip(
        ac.slow_critic.parameters(), slow_before, ac.critic.parameters(), strict=True
    ):
        assert torch.allclose(slow, 0.98 * old + 0.02 * new)
        assert not slow.requires_grad


def test_critic_loss_is_two_hot_cross_entropy_to_lambda_returns():
    torch.manual_seed(0)
    head = make_value_head("two_hot", num_bins=255, v_min=-20.0, v_max=20.0, symlog=True)
    logits, returns, slow = torch.randn(3, 2, 255), torch.randn(3, 2) * 50, torch.randn(3, 2)
    terms = critic_loss(head, logits, returns, slow, torch.ones(3, 2), slow_reg=1.0)

    def cross_entropy(target):
        probs = two_hot_target(symlog(target), torch.linspace(-20.0, 20.0, 255))
        return -(probs * torch.log_softmax(logits, -1)).sum(-1).mean()

    assert terms["value"].item() == pytest.approx(cross_entropy(returns).item(), rel=1e-5)
    assert terms["slow_reg"].item() == pytest.approx(cross_entropy(slow).item(), rel=1e-5)
    assert terms["critic"].item() == pytest.approx((terms["value"] + terms["slow_reg"]).item())


def test_module_critic_targets_are_the_lambda_returns():
    torch.manual_seed(0)
    for target in ("value", "return"):
        cfg = _small(8, slow_critic_target=target)
        ac = ImaginationActorCritic(5, 3, discrete=True, cfg=cfg)
        torch.nn.init.normal_(ac.critic[-1].weight)
        features, rewards = torch.randn(4, 6, 5), torch.randn(3, 6)
        actions, continues = torch.randint(0, 3, (3, 6)), torch.ones(3, 6)
        _, metrics = ac.loss(features, actions, rewards, continues)
        with torch.no_grad():
            logits = ac.critic(features[:-1])
            returns = lambda_returns(rewards, continues, ac.value(features), cfg.gamma, cfg.lam)
            slow = ac.value(features, slow=True)
            if target == "return":
                slow = lambda_returns(rewards, continues, slow, cfg.gamma, cfg.lam)
            else:
                slow = slow[:-1]
        weights = cfg.gamma ** torch.arange(3.0)[:, None]  # w_t = gamma^t without ends
        expected_value = (ac.head.loss(logits, returns) * weights).mean()
        expected_slow = (ac.head.loss(logits, slow) * weights).mean()
        assert metrics["value_loss"].item() == pytest.approx(expected_value.item(), rel=1e-5)
        assert metrics["slow_reg_loss"].item() == pytest.approx(expected_slow.item(), rel=1e-5)
        assert metrics["imagined_return"].item() == pytest.approx(returns.mean().item())


def test_discrete_actor_unimix_keeps_every_action_possible():
    ac = ImaginationActorCritic(3, 4, discrete=True, cfg=_small(8))
    torch.nn.init.constant_(ac.actor.net[-1].bias, 0.0)
    ac.actor.net[-1].bias.data[0] = 100.0  # softmax puts ~all mass on action 0
    log_prob, _ = ac.actor.log_prob_entropy(torch.zeros(1, 3), torch.tensor([1]))
    assert log_prob.exp().item() == pytest.approx(0.01 / 4, rel=1e-3)
    assert ac.actor(torch.zeros(2, 3), sample=False).tolist() == [0, 0]


def test_continuous_actor_mean_and_std_are_bounded():
    ac = ImaginationActorCritic(3, 2, discrete=False, cfg=_small(8))
    ac.actor.net[-1].bias.data[:] = torch.tensor([50.0, -50.0, 50.0, -50.0])
    mean, std = ac.actor._normal(ac.actor.net(torch.zeros(1, 3)))
    assert torch.allclose(mean, torch.tensor([[1.0, -1.0]]))
    assert torch.allclose(std, torch.tensor([[1.0, 0.1]]))
    assert torch.equal(ac.actor(torch.zeros(1, 3), sample=False), mean)


def test_checkpoint_keeps_normalizer_and_slow_critic():
    torch.manual_seed(0)
    ac = ImaginationActorCritic(5, 3, discrete=True, cfg=_small(8))
    ac.update(
        torch.randn(4, 6, 5), torch.randint(0, 3, (3, 6)), torch.randn(3, 6) * 9, torch.ones(3, 6)
    )
    restored = ImaginationActorCritic(5, 3, discrete=True, cfg=_small(8))
    restored.load_state_dict(ac.state_dict())
    restored.optimizer.load_state_dict(ac.optimizer.state_dict())
    assert restored.normalizer.high.item() == ac.normalizer.high.item() != 0
    features = torch.randn(2, 5)
    assert torch.equal(restored.value(features, slow=True), ac.value(features, slow=True))
    assert [g["name"] for g in restored.optimizer.param_groups] == ["actor", "critic"]


def test_config_rejects_out_of_range_options():
    with pytest.raises(UserError, match="lam"):
        check_options(ImaginationConfig, {"lam": 1.5}, "agent.imagination")
    with pytest.raises(UserError, match="slow_critic_target"):
        check_options(ImaginationConfig, {"slow_critic_target": "both"}, "agent.imagination")
