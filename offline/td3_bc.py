"""TD3+BC (Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement Learning"), as
CORL's ``td3_bc.py`` (Tarasov et al. 2023).

TD3 (Fujimoto et al. 2018) on a fixed dataset D with a behaviour-cloning term in the actor. With
twin critics Q_1, Q_2, targets Qbar_i and a target actor pibar:

    a'      = clip(pibar(s') + clip(eps, -c, c), -1, 1),   eps ~ N(0, sigma^2)   (target smoothing)
    y       = r + gamma (1 - d) min_i Qbar_i(s', a')
    L_Q     = sum_i E_D[ loss_head(Q_i(s, a), y) ]                        (MSE for the scalar head)
    lambda  = alpha / mean_D |Q_1(s, pi(s))|         (detached: Eq. 3's normalisation of Q's scale)
    L_pi    = -lambda E_D[ Q_1(s, pi(s)) ] + E_D[ (pi(s) - a)^2 ]          (Eq. 3, every d steps)

then Polyak averaging of the critics and the actor (rate tau) after each actor update.
Defaults are CORL's ``TrainConfig``: alpha 2.5, sigma 0.2, c 0.5, policy delay 2, tau 0.005,
gamma 0.99, Adam lr 3e-4, batch 256, 256x256 ReLU MLPs, states standardised.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from deeprl.config import option
from deeprl.envs.spec import EnvSpec
from deeprl.nets.actors import DeterministicActor
from deeprl.nets.critics import TwinQ
from deeprl.nets.functional import polyak_update
from deeprl.nets.heads import ValueHeadConfig, make_value_head
from deeprl.offline.base import OfflineAgent


@dataclass
class TD3BCConfig:
    """TD3+BC hyperparameters (``agent=td3bc``); defaults: CORL ``td3_bc.py``."""

    batch_size: int = option(256, ge=1)
    gamma: float = option(0.99, ge=0, le=1)
    tau: float = option(0.005, gt=0, le=1)
    actor_lr: float = option(3e-4, gt=0)
    critic_lr: float = option(3e-4, gt=0)
    alpha: float = option(2.5, gt=0)  # weight of the Q term against BC (Eq. 3)
    policy_noise: float = option(0.2, ge=0)  # target smoothing noise, in [-1, 1] action units
    noise_clip: float = option(0.5, ge=0)
    policy_freq: int = option(2, ge=1)  # critic updates per actor update
    hidden_sizes: list[int] = option([256, 256], ge=1)
    normalize_obs: bool = True
    critic: ValueHeadConfig = field(default_factory=ValueHeadConfig)


def td3_target(
    reward: torch.Tensor,
    mask: torch.Tensor,
    next_q1: torch.Tensor,
    next_q2: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """y = r + gamma * mask * min(Qbar_1, Qbar_2)(s', a'); all (B,)."""
    return reward + gamma * mask * torch.minimum(next_q1, next_q2)


def td3_bc_actor_loss(
    q: torch.Tensor, pi_action: torch.Tensor, action: torch.Tensor, alpha: float
) -> dict[str, torch.Tensor]:
    """Eq. 3: -lambda mean(Q) + mean((pi(s) - a)^2) with lambda = alpha / mean|Q| detached.

    Args:
        q: (B,) Q_1(s, pi(s)); pi_action, action: (B, d) policy and dataset actions.
    Returns {"loss", "lambda", "q_term" (-lambda mean Q), "bc" (the MSE)}.
    """
    lmbda = alpha / q.abs().mean().detach()
    q_term = -lmbda * q.mean()
    bc = (pi_action - action).square().mean()
    return {"loss": q_term + bc, "lambda": lmbda, "q_term": q_term, "bc": bc}


class TD3BC(OfflineAgent):
    """TD3 with a behaviour-cloning regulariser."""

    Config = TD3BCConfig
    name = "td3bc"

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        config: TD3BCConfig | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, total_steps)
        self.config = cfg = config or TD3BCConfig()
        self.head = make_value_head(**vars(cfg.critic))
        self.actor = DeterministicActor(self.obs_dim, self.act_dim, cfg.hidden_sizes)
        self.critic = TwinQ(self.obs_dim, self.act_dim, cfg.hidden_sizes, self.head.num_outputs)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        self.to(self.device)
        self.optimizers["actor"] = torch.optim.Adam(
            self.actor.parameters(), lr=cfg.actor_lr, fused=True
        )
        self.optimizers["critic"] = torch.optim.Adam(
            self.critic.parameters(), lr=cfg.critic_lr, fused=True
        )

    def policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor(obs)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, head = self.config, self.head
        obs, action = batch["obs"], batch["action"]
        with torch.no_grad():
            noise = (torch.randn_like(action) * cfg.policy_noise).clamp(
                -cfg.noise_clip, cfg.noise_clip
            )
            next_action = (self.actor_target(batch["next_obs"]) + noise).clamp(-1.0, 1.0)
            next_q1, next_q2 = self.critic_target.values(batch["next_obs"], next_action, head)
            target = td3_target(batch["reward"], batch["mask"], next_q1, next_q2, cfg.gamma)
        q1, q2 = self.critic(obs, action)
        critic_loss = head.loss(q1, target).mean() + head.loss(q2, target).mean()
        self.optimize("critic", critic_loss)
        metrics = {"critic_loss": critic_loss.detach(), "q1": head.value(q1.detach()).mean()}

        # grad_steps counts finished updates: this is update grad_steps + 1.
        if (self.grad_steps + 1) % cfg.policy_freq == 0:
            pi = self.actor(obs)
            losses = td3_bc_actor_loss(head.value(self.critic.q1(obs, pi)), pi, action, cfg.alpha)
            self.optimize("actor", losses["loss"])
            polyak_update(self.critic_target, self.critic, cfg.tau)
            polyak_update(self.actor_target, self.actor, cfg.tau)
            metrics.update(actor_loss=losses["loss"].detach(), bc_loss=losses["bc"].detach(),
                           lmbda=losses["lambda"])
        return metrics
