"""Conservative Q-Learning (Kumar, Zhou, Tucker & Levine 2020, "Conservative Q-Learning for
Offline Reinforcement Learning"), CQL(H) with SAC, as CORL's ``cql.py`` (Tarasov et al. 2023,
ported from young-geng/CQL).

SAC (Haarnoja et al. 2018) with a tanh-Gaussian policy, twin critics and their Polyak targets,
plus a conservative term that pushes Q down on policy and uniform actions and up on the data.
With n sampled actions per state: a_rand ~ U[-1, 1]^d, a_cur ~ pi(.|s), a_next ~ pi(.|s') (all
scored at s, as CORL), temperature T and weight alpha':

    y      = r + gamma (1 - d) min_i Qbar_i(s', a'),  a' ~ pi(.|s')      (no entropy backup)
    ood_i  = T logsumexp_j( [Q_i(s, a_rand) - log U, Q_i(s, a_next) - log pi(a_next|s'),
                             Q_i(s, a_cur) - log pi(a_cur|s)]_j / T )      (importance sampled,
                                                                             Eq. 4 / App. F)
    L_Q    = sum_i ( E_D[ loss_head(Q_i(s, a), y) ] + alpha' E_D[ ood_i - Q_i(s, a) ] )
    L_pi   = E_D[ alpha log pi(a~|s) - min_i Q_i(s, a~) ],                 a~ ~ pi(.|s)
    L_alpha = -E_D[ log alpha (log pi(a~|s) + Hbar) ],  Hbar = -|A|

with log U = log(0.5^d), the density of the uniform actions (without importance sampling the
logsumexp runs over the plain Q values, the data's included). Order per step as CORL: the
temperature, the actor, then the critics, then the Polyak update. The policy's log-std is
m * raw(s) + c with learned m, c (CORL's ``Scalar`` multiplier and offset).
Defaults are CORL's ``TrainConfig``: alpha' (``cql_alpha``) 10, 10 actions, T 1, importance
sampling, policy lr 3e-5 (also the temperature's), critic lr 3e-4, batch 256, gamma 0.99, tau
5e-3, 3 hidden layers of 256 in the critics and the actor, orthogonal init, states standardised.
The Lagrange version (``cql_lagrange``), max-target backups and BC warm-up steps (AntMaze
settings) are not implemented.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

from deeprl.config import option
from deeprl.envs.spec import EnvSpec
from deeprl.nets.actors import TanhGaussianActor
from deeprl.nets.critics import TwinQ
from deeprl.nets.functional import polyak_update
from deeprl.nets.heads import ValueHeadConfig, make_value_head
from deeprl.offline.base import OfflineAgent


@dataclass
class CQLConfig:
    """CQL hyperparameters (``agent=cql``); defaults: CORL ``cql.py``."""

    batch_size: int = option(256, ge=1)
    gamma: float = option(0.99, ge=0, le=1)
    tau: float = option(5e-3, gt=0, le=1)  # soft_target_update_rate
    policy_lr: float = option(3e-5, gt=0)  # also the temperature's
    q_lr: float = option(3e-4, gt=0)
    cql_alpha: float = option(10.0, gt=0)  # alpha', weight of the conservative term
    cql_n_actions: int = option(10, ge=1)
    cql_temp: float = option(1.0, gt=0)
    cql_importance_sample: bool = True
    alpha_multiplier: float = option(1.0, gt=0)
    autotune: bool = True  # tune the SAC temperature (else alpha = alpha_multiplier)
    hidden_sizes: list[int] = option([256, 256, 256], ge=1)  # q_n_hidden_layers 3; actor 3
    normalize_obs: bool = True
    critic: ValueHeadConfig = field(default_factory=ValueHeadConfig)


def cql_conservative_loss(
    q_data: torch.Tensor,
    q_rand: torch.Tensor,
    q_cur: torch.Tensor,
    log_pi_cur: torch.Tensor,
    q_next: torch.Tensor,
    log_pi_next: torch.Tensor,
    action_dim: int,
    temp: float = 1.0,
    importance_sample: bool = True,
) -> dict[str, torch.Tensor]:
    """The conservative gap of one critic: E[T logsumexp_j(Q(s, a_j) / T) - Q(s, a)].

    Args:
        q_data: (B,) Q(s, a) at dataset actions.
        q_rand: (B, n) Q at uniform actions in [-1, 1]^action_dim (density 0.5^action_dim).
        q_cur, log_pi_cur: (B, n) Q(s, a_cur) and log pi(a_cur|s), a_cur ~ pi(.|s).
        q_next, log_pi_next: (B, n) Q(s, a_next) and log pi(a_next|s'), a_next ~ pi(.|s').
        temp: T. importance_sample: subtract the sampling log-densities (CQL App. F) and leave
            the data's Q out of the logsumexp, as CORL.
    Returns {"loss": E[ood - Q(s, a)] (before the weight alpha'), "ood": E[ood]}.
    """
    if importance_sample:
        log_uniform = action_dim * math.log(0.5)
        scores = torch.cat(
            [q_rand - log_uniform, q_next - log_pi_next, q_cur - log_pi_cur], dim=1
        )
    else:
        scores = torch.cat([q_rand, q_data.unsqueeze(1), q_next, q_cur], dim=1)
    ood = torch.logsumexp(scores / temp, dim=1) * temp
    return {"loss": (ood - q_data).mean(), "ood": ood.mean()}


class CQL(OfflineAgent):
    """CQL(H) on SAC with a tanh-Gaussian policy."""

    Config = CQLConfig
    name = "cql"

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        config: CQLConfig | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, total_steps)
        self.config = cfg = config or CQLConfig()
        self.head = make_value_head(**vars(cfg.critic))
        self.actor = TanhGaussianActor(self.obs_dim, self.act_dim, cfg.hidden_sizes)
        self.critic = TwinQ(self.obs_dim, self.act_dim, cfg.hidden_sizes, self.head.num_outputs)
        self.critic_target = copy.deepcopy(self.critic)
        self.log_alpha = torch.nn.Parameter(torch.tensor(0.0))
        self.target_entropy = -float(self.act_dim)
        self.to(self.device)
        self.optimizers["actor"] = torch.optim.Adam(
            self.actor.parameters(), lr=cfg.policy_lr, fused=True
        )
        self.optimizers["critic"] = torch.optim.Adam(
            self.critic.parameters(), lr=cfg.q_lr, fused=True
        )
        if cfg.autotune:
            self.optimizers["alpha"] = torch.optim.Adam(
                [self.log_alpha], lr=cfg.policy_lr, fused=True
            )

    def policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor.act(obs, deterministic)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, head = self.config, self.head
        obs, action, next_obs = batch["obs"], batch["action"], batch["next_obs"]
        n = cfg.cql_n_actions

        new_action, log_pi = self.actor(obs)
        # without autotune log_alpha stays 0, so alpha is the multiplier itself
        alpha = self.log_alpha.exp().detach() * cfg.alpha_multiplier
        actor_loss = (alpha * log_pi - self.critic.min_value(obs, new_action, head)).mean()

        with torch.no_grad():
            next_action, _ = self.actor(next_obs)
            target = batch["reward"] + cfg.gamma * batch["mask"] * (
                self.critic_target.min_value(next_obs, next_action, head)
            )
            repeated = obs.unsqueeze(1).expand(-1, n, -1)
            next_repeated = next_obs.unsqueeze(1).expand(-1, n, -1)
            rand_action = torch.empty(obs.shape[0], n, self.act_dim, device=obs.device)
            rand_action.uniform_(-1.0, 1.0)
            cur_action, log_pi_cur = self.actor(repeated)
            next_sampled, log_pi_next = self.actor(next_repeated)
        q1, q2 = self.critic(obs, action)
        q_rand = self.critic.values(repeated, rand_action, head)
        q_cur = self.critic.values(repeated, cur_action, head)
        q_next = self.critic.values(repeated, next_sampled, head)
        critic_loss = obs.new_zeros(())
        gaps = []
        for i, logits in enumerate((q1, q2)):
            gap = cql_conservative_loss(
                head.value(logits), q_rand[i], q_cur[i], log_pi_cur, q_next[i], log_pi_next,
                self.act_dim, cfg.cql_temp, cfg.cql_importance_sample,
            )
            td = head.loss(logits, target).mean()
            critic_loss = critic_loss + td + cfg.cql_alpha * gap["loss"]
            gaps.append(gap["loss"].detach())

        if cfg.autotune:
            alpha_loss = -(self.log_alpha * (log_pi.detach() + self.target_entropy)).mean()
            self.optimize("alpha", alpha_loss)
        self.optimize("actor", actor_loss)
        self.optimize("critic", critic_loss)
        polyak_update(self.critic_target, self.critic, cfg.tau)
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(),
                "cql_gap": (gaps[0] + gaps[1]) / 2, "alpha": alpha,
                "q1": head.value(q1.detach()).mean()}
