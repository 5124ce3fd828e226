"""Extreme Q-Learning, offline (Garg, Hejna, Geist & Ermon 2023, "Extreme Q-Learning: MaxEnt RL
without Entropy"), as the authors' code Div99/XQL (built on IQL's JAX code).

XQL fits V by Gumbel regression, so that V(s) estimates the soft maximum beta log E_mu[exp(Q/beta)]
of Q over the data's actions (Sec. 4, Eq. 12). On z = (min_i Qbar_i(s, a) - V(s)) / beta:

    L_V  = E_D[ e^z - z - 1 ]                                              (Gumbel loss, Eq. 8)

computed as the authors do for stability: z clipped at ``max_clip`` and the loss rescaled by
e^(-m), m = stopgrad(max(max_batch z, -1)):  e^(z - m) - z e^(-m) - e^(-m).
The rest is IQL's (Kostrikov et al. 2022), in the JAX code's update order:
    (1) V from the target critics' min, (2) the AWR actor with weights min(exp(t (Q - V_new)), 100)
    from the target critics and the new V, (3) Q toward r + gamma (1 - d) V_new(s'),
    L_Q = sum_i E_D[ loss_head(Q_i(s, a), y) ], (4) Polyak averaging of the critics (tau).
The actor is IQL's Gaussian with a tanh mean and a cosine-decayed learning rate.
Defaults follow the authors' D4RL runs: beta 2 (halfcheetah; hopper-medium 5, walker2d-medium
10), max_clip 7, twin critics, AWR temperature 3, lr 3e-4, batch 256, gamma 0.99, tau 0.005,
256x256 ReLU MLPs; states standardised as in CORL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from deeprl.config import option
from deeprl.envs.spec import EnvSpec
from deeprl.nets.functional import polyak_update
from deeprl.nets.heads import ValueHeadConfig
from deeprl.offline.iql import AWRValueAgent


@dataclass
class XQLConfig:
    """XQL hyperparameters (``agent=xql``); defaults: Div99/XQL's offline D4RL settings."""

    batch_size: int = option(256, ge=1)
    gamma: float = option(0.99, ge=0, le=1)
    tau: float = option(0.005, gt=0, le=1)
    beta: float = option(2.0, gt=0)  # Gumbel loss temperature
    max_clip: float | None = option(7.0, gt=0)  # clip of z (None: no clip)
    temperature: float = option(3.0, ge=0)  # AWR inverse temperature
    actor_lr: float = option(3e-4, gt=0)  # cosine-decayed to 0 over train.total_steps
    q_lr: float = option(3e-4, gt=0)
    v_lr: float = option(3e-4, gt=0)
    hidden_sizes: list[int] = option([256, 256], ge=1)
    value_layer_norm: bool = False  # LayerNorm in V's hidden layers
    normalize_obs: bool = True
    critic: ValueHeadConfig = field(default_factory=ValueHeadConfig)  # Q's and V's value head


def gumbel_loss(
    diff: torch.Tensor,
    beta: float,
    max_clip: float | None = None,
    rescale_only: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """XQL's Gumbel regression loss on diff = Q - V (B,), rescaled by e^(-m) (see the module
    docstring): {"loss": E[e^(z - m) - z e^(-m) - e^(-m)], "z_max": m} with z = diff / beta.
    For m = 0 this is E[e^z - z - 1]; the gradient in V is e^(-m) times that of the plain loss.
    ``rescale_only`` (B2,): further differences that count in m but not in the mean (ReCOIL
    takes m over its suboptimal and expert halves, the loss over the suboptimal one).
    """
    def scaled(d: torch.Tensor) -> torch.Tensor:
        return (d / beta).clamp(max=max_clip) if max_clip is not None else d / beta

    z = scaled(diff)
    m = z.max() if rescale_only is None else torch.maximum(z.max(), scaled(rescale_only).max())
    m = m.clamp(min=-1.0).detach()
    scale = torch.exp(-m)
    loss = torch.exp(z - m) - z * scale - scale
    return {"loss": loss.mean(), "z_max": m}


class XQL(AWRValueAgent):
    """Extreme Q-Learning (XQL-offline) with a Gaussian AWR policy."""

    Config = XQLConfig
    name = "xql"

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        config: XQLConfig | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, total_steps)
        self.config = config or XQLConfig()
        self.build_nets(value_layer_norm=self.config.value_layer_norm)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, head = self.config, self.head
        obs, action = batch["obs"], batch["action"]
        with torch.no_grad():
            target_q = self.critic_target.min_value(obs, action, head)

        # (1) V by Gumbel regression on the target critics
        v_terms = gumbel_loss(target_q - head.value(self.value(obs)), cfg.beta, cfg.max_clip)
        self.optimize("value", v_terms["loss"])

        # (2) AWR actor with the new V
        with torch.no_grad():
            v = head.value(self.value(obs))
            next_v = head.value(self.value(batch["next_obs"]))
        actor = self.awr_actor_step(obs, action, target_q - v, cfg.temperature)

        # (3) Q toward r + gamma V_new(s'), (4) Polyak
        target = batch["reward"] + cfg.gamma * batch["mask"] * next_v
        q1, q2 = self.critic(obs, action)
        q_loss = head.loss(q1, target).mean() + head.loss(q2, target).mean()
        self.optimize("critic", q_loss)
        polyak_update(self.critic_target, self.critic, cfg.tau)
        return {"v_loss": v_terms["loss"].detach(), "q_loss": q_loss.detach(),
                "actor_loss": actor["loss"].detach(), "adv_weight": actor["weight"],
                "v": v.mean()}
