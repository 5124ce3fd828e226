"""Proximal Policy Optimization (Schulman et al. 2017, "Proximal Policy Optimization Algorithms").

With probability ratio r_t(theta) = pi_theta(a_t|s_t) / pi_old(a_t|s_t) and GAE advantages A_t
(see :mod:`deeprl.buffers.rollout`), one minibatch minimises

    L = L_clip + c_v * L_V - c_e * H[pi_theta]
    L_clip = E[ max(-A_t r_t, -A_t clip(r_t, 1 - eps, 1 + eps)) ]                   (eq. 7)
    L_V    = 1/2 E[ max((V - R_t)^2, (V_old + clip(V - V_old, -eps, eps) - R_t)^2) ]

(the clipped value loss is optional and applies to the scalar head). The critic's output goes
through a value head (:mod:`deeprl.nets.heads`), so ``agent.critic.head=hl_gauss`` trains V by
classification (Farebrother et al. 2024) with L_V the head's cross-entropy.

Implementation details follow Huang et al. 2022, "The 37 Implementation Details of PPO" and
CleanRL's ``ppo.py`` / ``ppo_continuous_action.py``, whose defaults this config uses: separate
64x64 tanh actor and critic, orthogonal init, Adam eps 1e-5, learning-rate annealing,
per-minibatch advantage normalisation, global grad-norm clipping 0.5, a state-independent
log-std for continuous actions, and optional running mean/std observation and return-based
reward normalisation (as SB3's ``VecNormalize``).

Normaliser statistics are updated after each update from the rollout just used, so the
observations an update trains on are normalised exactly as they were when the actions were taken.
Data-parallel ranks (``train.world_size``) merge their rollouts' statistics, so they share them.

Pixel observations (uint8 (C, H, W); ``torso: auto`` or ``nature_cnn``) follow CleanRL's
``ppo_atari.py``: one Nature CNN torso (Mnih et al. 2015) on frames scaled to [0, 1], shared by
pi and V, which are single linear layers on its 512 features (orthogonal init, gains 0.01 and 1),
so L_clip, L_V and the entropy term all train the torso.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from deeprl.agent import Agent
from deeprl.buffers.rollout import RolloutBuffer, generalized_advantage_estimation
from deeprl.config import option
from deeprl.envs.spec import EnvSpec
from deeprl.nets.distributions import (
    categorical_log_prob_entropy,
    categorical_sample,
    gaussian_entropy,
    gaussian_log_prob,
)
from deeprl.nets.heads import ScalarHead, ValueHeadConfig, make_value_head
from deeprl.nets.mlp import ACTIVATIONS, mlp
from deeprl.nets.normalize import RunningMeanStd, mean_over_ranks
from deeprl.nets.schedules import linear_schedule
from deeprl.nets.torso import TORSOS, FlatObservation, make_torso, resolve_torso


@dataclass
class PPOConfig:
    """PPO hyperparameters (``agent=ppo``); defaults are CleanRL ``ppo.py`` (Huang et al. 2022):
    4 envs x 128 steps, 4 minibatches, 4 epochs, lr 2.5e-4 annealed, 64x64 tanh MLPs."""

    num_envs: int = option(4, ge=1)
    num_steps: int = option(128, ge=1)  # env steps per env copy per rollout
    lr: float = option(2.5e-4, gt=0)
    anneal_lr: bool = True  # linearly to 0 over the run
    gamma: float = option(0.99, ge=0, le=1)
    gae_lambda: float = option(0.95, ge=0, le=1)
    num_minibatches: int = option(4, ge=1)
    update_epochs: int = option(4, ge=1)
    norm_adv: bool = True  # per-minibatch advantage normalisation
    clip_coef: float = option(0.2, gt=0)
    clip_vloss: bool = True
    ent_coef: float = option(0.01, ge=0)
    vf_coef: float = option(0.5, ge=0)
    max_grad_norm: float = option(0.5, gt=0)
    target_kl: float | None = option(None, gt=0)  # stop the update's epochs past this KL
    # deeprl.nets.torso; auto: nature_cnn for uint8 (C, H, W) images (one torso shared by actor
    # and critic, as CleanRL's ppo_atari.py), else mlp (separate actor and critic MLPs)
    torso: str = option("auto", choices=TORSOS)
    hidden_sizes: list[int] = option([64, 64], ge=1)  # the mlp torso's actor and critic layers
    activation: str = option("tanh", choices=tuple(ACTIVATIONS))
    init_log_std: float = 0.0  # continuous actions: the initial log standard deviation
    normalize_obs: bool = False  # vector observations (a CNN torso scales pixels by 1/255)
    normalize_reward: bool = False
    obs_clip: float = option(10.0, gt=0)
    reward_clip: float = option(10.0, gt=0)
    critic: ValueHeadConfig = field(default_factory=ValueHeadConfig)  # the value head of V


def clipped_value_loss(
    new_value: torch.Tensor, old_value: torch.Tensor, returns: torch.Tensor, clip_coef: float
) -> torch.Tensor:
    """Per-sample 1/2 max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2), shape (B,)."""
    v_clipped = old_value + (new_value - old_value).clamp(-clip_coef, clip_coef)
    return 0.5 * torch.max((new_value - returns).square(), (v_clipped - returns).square())


def ppo_loss(
    new_log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    value_loss: torch.Tensor,
    clip_coef: float,
    ent_coef: float,
    vf_coef: float,
    diagnostics: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The PPO objective for one minibatch; inputs are (B,). ``value_loss`` is the critic's
    per-sample loss (scalar regression, clipped or not, or a classification head's
    cross-entropy). Returns (loss, statistics); the statistics are empty without
    ``diagnostics`` (minibatches whose statistics nobody reads skip their ops)."""
    log_ratio = new_log_prob - old_log_prob
    ratio = log_ratio.exp()
    pg_loss = torch.max(
        -advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)
    ).mean()
    v_loss = value_loss.mean()
    entropy_mean = entropy.mean()
    # Without an entropy bonus its term stays out of the graph, so backward skips the entropy's
    # ops (it would add exact zeros to the gradient).
    loss = (pg_loss - ent_coef * entropy_mean if ent_coef else pg_loss) + vf_coef * v_loss
    if not diagnostics:
        return loss, {}
    with torch.no_grad():
        stats = {
            "policy_loss": pg_loss,
            "value_loss": v_loss,
            "entropy": entropy_mean,
            # k3 estimator of KL(old || new) (Schulman 2020), unbiased and always >= 0
            "approx_kl": ((ratio - 1) - log_ratio).mean(),
            "clip_fraction": ((ratio - 1).abs() > clip_coef).float().mean(),
        }
    return loss, stats


def update_metrics(
    stats: dict[str, torch.Tensor], returns: torch.Tensor, old_values: torch.Tensor
) -> dict[str, float]:
    """An update's report: the last minibatch's ``stats`` and the explained variance
    1 - Var[R - V_old] / Var[R] of the rollout's values (B,) (NaN when the returns are
    constant)."""
    var_returns = returns.var()
    explained_var = 1 - (returns - old_values).var() / var_returns
    metrics = {k: v.item() for k, v in stats.items()}
    metrics["explained_variance"] = explained_var.item() if var_returns > 0 else float("nan")
    return metrics


class PPO(Agent):
    """PPO for discrete (categorical) and continuous (diagonal Gaussian) actions.

    Example::

        from deeprl.agents import PPO
        from deeprl.envs import make_env
        env = make_env("cartpole", num_envs=4)
        agent = PPO(env.spec, env.num_envs)
    """

    Config = PPOConfig
    name = "ppo"
    data_parallel = True  # train.world_size > 1 (deeprl/train/distributed.py)

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        config: PPOConfig | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, total_steps)
        self.config = cfg = config or PPOConfig()
        self.batch_size = cfg.num_steps * num_envs
        if self.batch_size % cfg.num_minibatches:
            raise ValueError(
                f"num_steps * num_envs = {self.batch_size} is not divisible by "
                f"num_minibatches = {cfg.num_minibatches}"
            )
        self.minibatch_size = self.batch_size // cfg.num_minibatches
        self.num_updates = max(1, (total_steps or self.batch_size) // self.batch_size)

        if spec.discrete:
            act_dim = spec.action_space.n
        else:
            act_dim = math.prod(spec.action_space.shape)
            self.log_std = nn.Parameter(torch.full((act_dim,), cfg.init_log_std))
        torso = resolve_torso(cfg.torso, spec)
        self.normalize_obs = cfg.normalize_obs and torso == "mlp"
        if torso == "mlp":
            # Actor and critic read the flat observation through MLPs of their own; uint8
            # observations are scaled to [0, 1] unless normalized.
            uint8 = spec.observation_space.dtype == torch.uint8
            self.torso = FlatObservation(scale=uint8 and not self.normalize_obs)
            features, hidden = math.prod(spec.observation_space.shape), cfg.hidden_sizes
        else:
            # One CNN torso whose features both linear heads read (CleanRL's ppo_atari.py).
            self.torso, features = make_torso(torso, spec.observation_space, orthogonal=True)
            hidden = []
        self.actor = mlp(features, hidden, act_dim, cfg.activation, out_gain=0.01)
        self.value_head = make_value_head(**vars(cfg.critic))
        self.critic = mlp(
            features, hidden, self.value_head.num_outputs, cfg.activation, out_gain=1.0
        )
        # Clipping the value update is defined for a scalar regression head only.
        self.clip_value = cfg.clip_vloss and isinstance(self.value_head, ScalarHead)
        self.obs_rms = RunningMeanStd(spec.observation_space.shape)
        self.return_rms = RunningMeanStd(())
        self.register_buffer("running_return", torch.zeros(num_envs, dtype=torch.float64))
        self.register_buffer("updates_done", torch.zeros((), dtype=torch.int64))
        self.to(self.device)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=cfg.lr, eps=1e-5, fused=True)
        self.optimizers["main"] = self.optimizer

    # ---- acting -------------------------------------------------------------------------------
    def _prepare(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations as the torso reads them: normalized and clipped with ``normalize_obs``."""
        if self.normalize_obs:
            obs = self.obs_rms.normalize(obs.to(torch.float32))
            obs = obs.clamp(-self.config.obs_clip, self.config.obs_clip)
        return obs

    def act(self, obs, state=None, is_first=None, deterministic=False):
        # Old log-probabilities and values are not computed here: the policy is fixed during a
        # rollout, so the update recomputes them for the whole rollout in one batched pass.
        out = self.actor(self.torso(self._prepare(obs)))
        if self.spec.discrete:
            action = out.argmax(-1) if deterministic else categorical_sample(out)
        else:
            action = out if deterministic else out + torch.randn_like(out) * self.log_std.exp()
            action = action.view(-1, *self.spec.action_space.shape)
        return action, {}, state

    def _evaluate(self, x: torch.Tensor, actions: torch.Tensor):
        """Log-prob and entropy (B,) of stored actions, and the critic's logits (B, outputs)."""
        h = self.torso(x)
        out = self.actor(h)
        if self.spec.discrete:
            log_prob, entropy = categorical_log_prob_entropy(out, actions)
        else:
            log_prob = gaussian_log_prob(actions.flatten(1), out, self.log_std)
            entropy = gaussian_entropy(self.log_std).expand(out.shape[0])
        return log_prob, entropy, self.critic(h)

    # ---- learning -----------------------------------------------------------------------------
    def make_buffer(self) -> RolloutBuffer:
        return RolloutBuffer(self.config.num_steps, self.num_envs, self.device)

    def _scaled_rewards(self, rewards: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """Divide rewards by the running std of the discounted return (SB3 VecNormalize)."""
        returns = torch.empty_like(rewards, dtype=torch.float64)
        running = self.running_return
        for t in range(rewards.shape[0]):
            running = running * self.config.gamma + rewards[t]
            returns[t] = running
            running = running.masked_fill(done[t], 0.0)
        self.running_return.copy_(running)
        self.return_rms.update(returns.flatten())
        scaled = self.return_rms.normalize(rewards, center=False)
        return scaled.clamp(-self.config.reward_clip, self.config.reward_clip)

    def update(self, buffer: RolloutBuffer, step: int) -> dict[str, float] | None:
        if not buffer.full:
            return None
        cfg = self.config
        data = buffer.data
        obs_shape = self.spec.observation_space.shape
        if cfg.anneal_lr:
            self.optimizer.param_groups[0]["lr"] = linear_schedule(
                cfg.lr, 0.0, self.num_updates, self.updates_done.item()
            )

        rewards = data["reward"]
        if cfg.normalize_reward:
            rewards = self._scaled_rewards(rewards, data["terminated"] | data["truncated"])
        obs = self._prepare(data["obs"].flatten(0, 1))
        actions = data["action"].flatten(0, 1)
        with torch.no_grad():
            old_log_prob, _, old_logits = self._evaluate(obs, actions)
            old_values = self.value_head.value(old_logits)
            next_obs = self._prepare(data["next_obs"].flatten(0, 1))
            next_values = self.value_head.value(self.critic(self.torso(next_obs)))
            advantages, returns = generalized_advantage_estimation(
                rewards,
                old_values.view_as(rewards),
                next_values.view_as(rewards),
                data["terminated"],
                data["truncated"],
                cfg.gamma,
                cfg.gae_lambda,
            )
        advantages, returns = advantages.flatten(), returns.flatten()

        params = list(self.parameters())  # walks the modules once per update, not per minibatch
        for _epoch in range(cfg.update_epochs):
            order = torch.randperm(self.batch_size, device=self.device)
            for start in range(0, self.batch_size, self.minibatch_size):
                idx = order[start : start + self.minibatch_size]
                new_log_prob, entropy, logits = self._evaluate(obs[idx], actions[idx])
                adv = advantages[idx]
                if cfg.norm_adv:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                if self.clip_value:
                    new_value = self.value_head.value(logits)
                    value_loss = clipped_value_loss(
                        new_value, old_values[idx], returns[idx], cfg.clip_coef
                    )
                else:
                    value_loss = 0.5 * self.value_head.loss(logits, returns[idx])
                loss, stats = ppo_loss(
                    new_log_prob,
                    old_log_prob[idx],
                    adv,
                    entropy,
                    value_loss,
                    cfg.clip_coef,
                    cfg.ent_coef,
                    cfg.vf_coef,
                    # only the epoch's last minibatch is reported and checked against target_kl
                    diagnostics=start + self.minibatch_size == self.batch_size,
                )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                self.optimizer.step()
            # Data-parallel ranks stop on their mean KL, so all leave the epochs together.
            if cfg.target_kl is not None and mean_over_ranks(stats["approx_kl"]) > cfg.target_kl:
                break

        if self.normalize_obs:
            self.obs_rms.update(data["obs"].flatten(0, 1).view(-1, *obs_shape))
        self.updates_done += 1
        buffer.reset()
        metrics = update_metrics(stats, returns, old_values)
        metrics["learning_rate"] = self.optimizer.param_groups[0]["lr"]
        return metrics
