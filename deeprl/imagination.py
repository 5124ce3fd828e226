"""Actor-critic learning in imagination, shared by the world-model agents (Dreamer, Drama).

Hafner et al. 2023, "Mastering Diverse Domains through World Models" (DreamerV3, Sec. "Critic
learning" and "Actor learning"), with the settings of the 2023 release of its configs:

* lambda-returns over an imagined trajectory s_0..s_H (horizon H = 15, lambda = 0.95,
  gamma = 1 - 1/333 from the config's discount horizon 333)::

      R_H = v(s_H),   R_t = r_t + gamma c_t ((1 - lambda) v(s_{t+1}) + lambda R_{t+1})

  where r_t and c_t are the reward and continue predicted for the step s_t -> s_{t+1}.
* Return normalisation: S = max(1, EMA(P95(R)) - EMA(P5(R))) with EMA decay 0.99 (data-parallel
  ranks average their batch percentiles before the EMA, so all ranks share one S).
* Actor loss (entropy coefficient eta = 3e-4)::

      L(theta) = -sum_t w_t [ sg((R_t - v(s_t)) / S) log pi(a_t | s_t) + eta H[pi(. | s_t)] ]

  for discrete actions (REINFORCE); for continuous actions the advantage (R_t - v(s_t)) / S is
  differentiated through the world model instead (dynamics backprop), as the 2023 configs'
  ``actor_grad_disc: reinforce`` and ``actor_grad_cont: backprop``.
* Critic: symlog two-hot over 255 bins in [-20, 20] (:mod:`deeprl.nets.heads`), cross entropy to
  sg(R_t) plus a regulariser (weight 1) toward the prediction of a slow critic, an EMA of the
  critic's weights (``slow_critic_fraction`` 0.02, i.e. decay 0.98).
* Weights w_t = c_start prod_{k<t} gamma c_k discount steps past a predicted episode end.
* Adam with lr 3e-5, eps 1e-5 and gradient clipping at norm 100 for both actor and critic.

Drama (Wang et al. 2025) reuses this with ``slow_critic_target="return"``: the critic's second
target is the lambda-return bootstrapped by the slow critic instead of the slow critic's value.
Its other differences are options, off by default: ``obs_norm`` (a running mean/std normaliser
of the actor's input, clipped to [-10, 10], updated from each training batch's features),
``norm="rms"`` with 3 x 256 actor and 3 x 512 critic layers, ``optimizer="laprop"``
(:class:`deeprl.optim.LaProp`, lr 4e-5, eps 1e-20, ``warmup`` 1000) and ``joint_clip`` (one
gradient-norm clip over actor and critic together).

Contract with the world model: the rollout is the caller's (:func:`imagine` runs a generic one).
Everything is time major. :meth:`ImaginationActorCritic.loss` takes ``features`` (H+1, B, F) of
s_0..s_H, ``actions`` (H, B) int64 indices (discrete) or (H, B, A) floats (continuous) taken at
s_0..s_{H-1}, ``rewards`` and ``continues`` (H, B) predicted for the steps s_t -> s_{t+1}, and
optionally ``start_continues`` (B,), the continue flags of the start states. For dynamics
backprop the features, rewards and continues must carry the graph from the sampled actions.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from deeprl.config import option
from deeprl.errors import UserError
from deeprl.nets.distributions import categorical_sample, gaussian_entropy, gaussian_log_prob
from deeprl.nets.functional import polyak_update
from deeprl.nets.heads import ValueHead, make_value_head
from deeprl.nets.normalize import RunningMeanStd, mean_over_ranks
from deeprl.optim import LaProp


@dataclass
class ImaginationConfig:
    """Actor-critic settings; defaults are DreamerV3's 2023 configs (size S: 2 x 512 layers)."""

    horizon: int = option(15, ge=1)  # imagined steps per start, used by the caller's rollout
    gamma: float = option(1 - 1 / 333, gt=0, le=1)  # the configs' discount horizon 333
    lam: float = option(0.95, ge=0, le=1)
    entropy: float = option(3e-4, ge=0)
    actor_units: int = option(512, ge=1)
    actor_layers: int = option(2, ge=0)
    critic_units: int = option(512, ge=1)
    critic_layers: int = option(2, ge=0)
    norm: str = option("layer", choices=("layer", "rms"))
    unimix: float = option(0.01, ge=0, lt=1)  # discrete actor: mix of the uniform distribution
    min_std: float = option(0.1, gt=0)  # continuous actor: std in [min_std, max_std]
    max_std: float = option(1.0, gt=0)
    num_bins: int = option(255, ge=2)
    v_min: float = -20.0  # critic support, in symlog space
    v_max: float = 20.0
    slow_critic_fraction: float = option(0.02, gt=0, le=1)
    slow_critic_target: str = option("value", choices=("value", "return"))
    slow_reg: float = option(1.0, ge=0)
    return_decay: float = option(0.99, ge=0, lt=1)
    actor_lr: float = option(3e-5, gt=0)
    critic_lr: float = option(3e-5, gt=0)
    eps: float = option(1e-5, gt=0)
    grad_clip: float = option(100.0, gt=0)
    optimizer: str = option("adam", choices=("adam", "laprop"))
    warmup: int = option(0, ge=0)  # LaProp's linear learning-rate warm-up steps
    joint_clip: bool = False  # one clip over actor and critic (Drama) instead of one each
    obs_norm: bool = False  # running mean/std normaliser of the actor's input (Drama)


def lambda_returns(
    rewards: torch.Tensor,
    continues: torch.Tensor,
    values: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """lambda-returns R (T, B) of rewards and continues (T, B) for the steps s_t -> s_{t+1} and
    values (T + 1, B) of s_0..s_T: R_t = r_t + gamma c_t ((1 - lam) v_{t+1} + lam R_{t+1}), with
    the bootstrap R_T = v_T (so lam = 1 gives discounted returns bootstrapped by v_T, lam = 0
    one-step TD targets)."""
    if values.shape[0] != rewards.shape[0] + 1:
        raise ValueError(
            f"values need one more step than rewards (T + 1 = {rewards.shape[0] + 1}), "
            f"got {values.shape[0]}"
        )
    discounts = gamma * continues
    # The (1 - lam) part does not depend on later returns: compute it for all steps at once.
    interm = rewards + discounts * (1 - lam) * values[1:]
    last = values[-1]
    out = []
    for t in reversed(range(rewards.shape[0])):
        last = interm[t] + discounts[t] * lam * last
        out.append(last)
    return torch.stack(out[::-1])


def trajectory_weights(
    continues: torch.Tensor, gamma: float, start_continues: torch.Tensor | None = None
) -> torch.Tensor:
    """Loss weights (T, B) w_t = c_start prod_{k<t} gamma c_k of steps s_0..s_{T-1}, from the
    continues (T, B) of the steps s_k -> s_{k+1} and those of the start states (B,), default 1."""
    shifted = torch.cat([torch.ones_like(continues[:1]), gamma * continues[:-1]])
    weights = torch.cumprod(shifted, 0)
    if start_continues is not None:
        weights = weights * start_continues
    return weights.detach()


class PercentileNormalizer(nn.Module):
    """Return scale S = max(floor, high - low), with low and high EMAs (``decay``) of the
    ``low_pct`` and ``high_pct`` percentiles of the returns; both start at 0. The EMAs are buffers
    so checkpoints keep them."""

    def __init__(
        self,
        decay: float = 0.99,
        low_pct: float = 5.0,
        high_pct: float = 95.0,
        floor: float = 1.0,
    ) -> None:
        super().__init__()
        self.decay, self.floor = decay, floor
        self.register_buffer("quantiles", torch.tensor([low_pct, high_pct]) / 100)
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> None:
        """Fold the percentiles of ``returns`` (any shape) into the EMAs. Data-parallel ranks
        fold in the mean of their percentiles, so their EMAs stay identical."""
        quantiles = torch.quantile(returns.detach().flatten().float(), self.quantiles)
        low, high = mean_over_ranks(quantiles)
        self.low.lerp_(low, 1 - self.decay)
        self.high.lerp_(high, 1 - self.decay)

    def scale(self) -> torch.Tensor:
        """S = max(floor, high - low), a scalar tensor."""
        return (self.high - self.low).clamp(min=self.floor)

    def forward(self, returns: torch.Tensor) -> torch.Tensor:
        """Update with ``returns``, then return the scale, as DreamerV3 does in each loss."""
        self.update(returns)
        return self.scale()


def actor_loss(
    log_probs: torch.Tensor,
    entropies: torch.Tensor,
    returns: torch.Tensor,
    values: torch.Tensor,
    scale: torch.Tensor | float,
    weights: torch.Tensor,
    entropy_coef: float = 3e-4,
    estimator: str = "reinforce",
) -> dict[str, torch.Tensor]:
    """Actor loss terms over (T, B) tensors: log pi(a_t | s_t), policy entropies, lambda-returns,
    values v(s_t), the return scale S and weights w_t.

    ``reinforce``: -sg((R - v) / S) log pi; ``backprop``: -(R - v) / S, differentiated through the
    returns (dynamics backprop). Returns ``actor`` (the weighted mean minus the entropy bonus),
    ``policy`` (the weighted policy-gradient term), ``entropy`` (mean) and ``advantage`` (mean).
    """
    advantage = (returns - values) / scale
    if estimator == "reinforce":
        policy = -log_probs * advantage.detach()
    elif estimator == "backprop":
        policy = -advantage
    else:
        raise ValueError(f"unknown actor gradient estimator {estimator!r}: reinforce or backprop")
    weights = weights.detach()
    return {
        "actor": ((policy - entropy_coef * entropies) * weights).mean(),
        "policy": (policy * weights).mean(),
        "entropy": entropies.mean(),
        "advantage": advantage.detach().mean(),
    }


def critic_loss(
    head: ValueHead,
    logits: torch.Tensor,
    returns: torch.Tensor,
    slow_targets: torch.Tensor,
    weights: torch.Tensor,
    slow_reg: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Critic loss terms: ``head``'s loss (for the symlog two-hot head, the cross entropy against
    the two-hot encoding of symlog(target)) of ``logits`` (T, B, K) against sg(returns) (T, B),
    plus ``slow_reg`` times the same against sg(slow_targets) (T, B), weighted by ``weights``.
    Returns ``critic`` (the total), ``value`` and ``slow_reg`` (each weighted mean)."""
    weights = weights.detach()
    value = (head.loss(logits, returns.detach()) * weights).mean()
    reg = (head.loss(logits, slow_targets.detach()) * weights).mean()
    return {"critic": value + slow_reg * reg, "value": value, "slow_reg": reg}


def _mlp(in_dim: int, units: int, layers: int, out_dim: int, norm: str) -> nn.Sequential:
    """DreamerV3's MLP: ``layers`` x (Linear, LayerNorm or RMSNorm, SiLU), then a linear output."""
    norm_cls = nn.LayerNorm if norm == "layer" else nn.RMSNorm
    blocks: list[nn.Module] = []
    last = in_dim
    for _ in range(layers):
        # No bias: the norm right after has its own shift.
        blocks += [nn.Linear(last, units, bias=False), norm_cls(units), nn.SiLU()]
        last = units
    blocks.append(nn.Linear(last, out_dim))
    return nn.Sequential(*blocks)


class Actor(nn.Module):
    """Policy over features (..., F).

    Discrete: a categorical over ``num_actions`` whose probabilities mix ``unimix`` of the uniform
    distribution into the softmax (keeps log-probs finite); actions are int64 indices (...).
    Continuous: Normal(tanh(mean), std) per dimension with std = (max_std - min_std) *
    sigmoid(raw + 2) + min_std, as the 2023 configs' ``normal`` actor; actions (..., A) are
    reparameterised samples (not clipped: the env wrapper clips to the box [-1, 1]).
    """

    def __init__(self, feature_dim: int, num_actions: int, discrete: bool, cfg: ImaginationConfig):
        super().__init__()
        self.discrete, self.num_actions = discrete, num_actions
        self.unimix, self.min_std, self.max_std = cfg.unimix, cfg.min_std, cfg.max_std
        out = num_actions if discrete else 2 * num_actions
        self.net = _mlp(feature_dim, cfg.actor_units, cfg.actor_layers, out, cfg.norm)
        self.obs_norm = RunningMeanStd((feature_dim,)) if cfg.obs_norm else None

    def _out(self, features: torch.Tensor) -> torch.Tensor:
        if self.obs_norm is not None:
            features = self.obs_norm.normalize(features, clip=10.0)
        return self.net(features)

    def _log_probs(self, out: torch.Tensor) -> torch.Tensor:
        if not self.unimix:
            return torch.log_softmax(out, -1)  # stays finite where the softmax underflows
        probs = (1 - self.unimix) * torch.softmax(out, -1) + self.unimix / self.num_actions
        return probs.log()

    def _normal(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw_std = out.chunk(2, -1)
        std = (self.max_std - self.min_std) * torch.sigmoid(raw_std + 2.0) + self.min_std
        return torch.tanh(mean), std

    def forward(self, features: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """An action for each feature vector: sampled (``sample``) or the mode."""
        out = self._out(features)
        if self.discrete:
            log_p = self._log_probs(out)
            return categorical_sample(log_p) if sample else log_p.argmax(-1)
        mean, std = self._normal(out)
        return mean + std * torch.randn_like(mean) if sample else mean

    def log_prob_entropy(
        self, features: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(actions | features) and the entropy of pi(. | features), both (...)."""
        out = self._out(features)
        if self.discrete:
            log_p = self._log_probs(out)
            log_prob = log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            return log_prob, -(log_p.exp() * log_p).sum(-1)
        mean, std = self._normal(out)
        log_std = std.log()
        return gaussian_log_prob(actions, mean, log_std), gaussian_entropy(log_std)


class ImaginationActorCritic(nn.Module):
    """Actor, critic, slow critic and return normaliser learned from imagined trajectories.

    Args:
        feature_dim: F, the size of the world model's features the actor and critic read.
        num_actions: actions of a discrete space, or A, the dimension of a continuous one.
        discrete: discrete actions (REINFORCE) or continuous in [-1, 1]^A (dynamics backprop).
        cfg: :class:`ImaginationConfig`.

    ``optimizer`` is one Adam (or LaProp) with the param groups ``actor`` and ``critic``, each
    clipped to ``grad_clip`` separately as DreamerV3's two optimizers (or together with
    ``joint_clip``); a checkpoint holds
    ``state_dict()`` (normaliser EMAs and slow critic included) and ``optimizer.state_dict()``.
    """

    def __init__(
        self,
        feature_dim: int,
        num_actions: int,
        discrete: bool,
        cfg: ImaginationConfig | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg = cfg or ImaginationConfig()
        self.estimator = "reinforce" if discrete else "backprop"
        self.actor = Actor(feature_dim, num_actions, discrete, cfg)
        self.head = make_value_head(
            "two_hot", num_bins=cfg.num_bins, v_min=cfg.v_min, v_max=cfg.v_max, symlog=True
        )
        self.critic = _mlp(
            feature_dim, cfg.critic_units, cfg.critic_layers, self.head.num_outputs, cfg.norm
        )
        # Zero output layer (the configs' outscale 0): every value starts at exactly 0.
        nn.init.zeros_(self.critic[-1].weight)
        nn.init.zeros_(self.critic[-1].bias)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.normalizer = PercentileNormalizer(decay=cfg.return_decay)
        groups = [
            {"params": list(self.actor.parameters()), "lr": cfg.actor_lr, "name": "actor"},
            {"params": list(self.critic.parameters()), "lr": cfg.critic_lr, "name": "critic"},
        ]
        if cfg.optimizer == "laprop":
            self.optimizer = LaProp(groups, eps=cfg.eps, warmup=cfg.warmup)
        elif cfg.warmup:
            raise UserError(f"agent.imagination.warmup={cfg.warmup} is LaProp's warm-up: set "
                            f"agent.imagination.optimizer=laprop or agent.imagination.warmup=0")
        else:
            self.optimizer = torch.optim.Adam(groups, eps=cfg.eps)

    def value(self, features: torch.Tensor, slow: bool = False) -> torch.Tensor:
        """Value estimates (...) of features (..., F) by the critic or the slow critic."""
        return self.head.value((self.slow_critic if slow else self.critic)(features))

    def loss(
        self,
        features: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        continues: torch.Tensor,
        start_continues: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Actor loss + critic loss of an imagined trajectory (shapes in the module docstring),
        and detached metrics. Updates the return normaliser's EMAs (once per call).

        The sum's gradient with respect to the actor's parameters is the actor loss's and with
        respect to the critic's the critic loss's: the critic reads sg(features) for its own
        loss, and the values inside the returns use detached critic weights. Backpropagate with
        ``inputs=`` the actor and critic parameters (as :meth:`update`) so no gradient reaches
        the world model.
        """
        cfg, horizon = self.cfg, rewards.shape[0]
        if features.shape[0] != horizon + 1 or actions.shape[0] != horizon:
            raise ValueError(
                f"features need H + 1 steps and actions H (H = {horizon} rewards), got "
                f"{features.shape[0]} and {actions.shape[0]}"
            )
        features_sg = features.detach()
        logits = self.critic(features_sg)
        if self.estimator == "backprop":
            # Dynamics backprop differentiates v(s_t) through the features, not the critic.
            params = {k: p.detach() for k, p in self.critic.named_parameters()}
            values = self.head.value(functional_call(self.critic, params, (features,)))
        else:
            values = self.head.value(logits).detach()
        returns = lambda_returns(rewards, continues, values, cfg.gamma, cfg.lam)
        weights = trajectory_weights(continues, cfg.gamma, start_continues)
        scale = self.normalizer(returns)

        if self.actor.obs_norm is not None:
            self.actor.obs_norm.update(features_sg[:-1].flatten(0, -2))
        log_probs, entropies = self.actor.log_prob_entropy(features_sg[:-1], actions.detach())
        actor_terms = actor_loss(
            log_probs, entropies, returns, values[:-1], scale, weights, cfg.entropy, self.estimator
        )

        with torch.no_grad():
            slow_values = self.value(features_sg, slow=True)
            if cfg.slow_critic_target == "return":
                slow_targets = lambda_returns(
                    rewards.detach(), continues.detach(), slow_values, cfg.gamma, cfg.lam
                )
            else:
                slow_targets = slow_values[:-1]
        critic_terms = critic_loss(
            self.head, logits[:-1], returns, slow_targets, weights, cfg.slow_reg
        )

        metrics = {
            "actor_loss": actor_terms["actor"],
            "policy_loss": actor_terms["policy"],
            "entropy": actor_terms["entropy"],
            "advantage": actor_terms["advantage"],
            "critic_loss": critic_terms["critic"],
            "value_loss": critic_terms["value"],
            "slow_reg_loss": critic_terms["slow_reg"],
            "return_scale": scale,
            "imagined_return": returns.mean(),
            "value": values.mean(),
        }
        total = actor_terms["actor"] + critic_terms["critic"]
        return total, {k: v.detach() for k, v in metrics.items()}

    def update(
        self,
        features: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        continues: torch.Tensor,
        start_continues: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One optimizer step on :meth:`loss`, then the slow critic's EMA step; returns the
        metrics plus ``actor_grad_norm`` and ``critic_grad_norm`` (before clipping), or
        ``actor_critic_grad_norm`` with ``joint_clip``."""
        total, metrics = self.loss(features, actions, rewards, continues, start_continues)
        self.optimizer.zero_grad(set_to_none=True)
        groups = {g["name"]: g["params"] for g in self.optimizer.param_groups}
        total.backward(inputs=groups["actor"] + groups["critic"])
        if self.cfg.joint_clip:
            groups = {"actor_critic": groups["actor"] + groups["critic"]}
        for name, params in groups.items():
            norm = nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
            metrics[f"{name}_grad_norm"] = norm.detach()
        self.optimizer.step()
        polyak_update(self.slow_critic, self.critic, self.cfg.slow_critic_fraction)
        return metrics


def imagine(
    actor: Actor,
    start: Any,
    step: Callable[[Any, torch.Tensor], Any],
    features: Callable[[Any], torch.Tensor],
    horizon: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll ``actor`` out for ``horizon`` steps in a world model given as two callables:
    ``step(state, action) -> next state`` (the prior step; discrete actions arrive as int64
    indices (B,)) and ``features(state) -> (B, F)``. ``start`` is the world model's state of B
    starts (any type). Returns features (H + 1, B, F) and actions (H, B) or (H, B, A).

    The actor reads sg(features), as DreamerV3's imagination; continuous actions are
    reparameterised samples, so the world model's graph carries their gradient. Discrete actions
    (REINFORCE) need no graph: the caller may run this under ``torch.no_grad()``.
    """
    state, feats, actions = start, [features(start)], []
    for _ in range(horizon):
        action = actor(feats[-1].detach())
        state = step(state, action)
        actions.append(action)
        feats.append(features(state))
    return torch.stack(feats), torch.stack(actions)
