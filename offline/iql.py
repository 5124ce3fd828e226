"""Implicit Q-Learning (Kostrikov, Nair & Levine 2022, "Offline Reinforcement Learning with
Implicit Q-Learning"), as CORL's ``iql.py`` (Tarasov et al. 2023).

IQL never queries Q at actions outside the dataset D. With twin critics Q_1, Q_2, their Polyak
targets Qbar_i, a state value V and expectile tau:

    L_V  = E_D[ L_2^tau(min_i Qbar_i(s, a) - V(s)) ],  L_2^tau(u) = |tau - 1(u < 0)| u^2  (Eq. 5)
    L_Q  = (1/2) sum_i E_D[ loss_head(Q_i(s, a), r + gamma (1 - d) V(s')) ]             (Eq. 6)
    L_pi = E_D[ -min(exp(beta (min_i Qbar_i(s, a) - V(s))), 100) log pi(a|s) ]   (AWR, Eq. 7)

CORL's order per step: V(s') for the Q target and the advantage are read before the V update;
then V, Q, the Polyak update (tau), then the actor with a cosine-decayed learning rate. The
policy is a Gaussian with mean tanh(f(s)) and a state-independent log-std.
Defaults are CORL's ``TrainConfig``: expectile 0.7, beta 3.0, lr 3e-4 (actor, Q, V), batch 256,
gamma 0.99, tau 0.005, 256x256 ReLU MLPs, states standardised.
The networks and the AWR actor step live in :class:`AWRValueAgent`, which XQL, f-DVL and ReCOIL
build on too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from deeprl.config import option
from deeprl.envs.spec import EnvSpec
from deeprl.nets.actors import GaussianActor
from deeprl.nets.critics import TwinQ, ValueNetwork
from deeprl.nets.functional import polyak_update
from deeprl.nets.heads import ValueHeadConfig, make_value_head
from deeprl.nets.schedules import cosine_schedule
from deeprl.offline.base import OfflineAgent

EXP_ADV_MAX = 100.0  # CORL's and IQL's clip of the AWR weight


@dataclass
class IQLConfig:
    """IQL hyperparameters (``agent=iql``); defaults: CORL ``iql.py``."""

    batch_size: int = option(256, ge=1)
    gamma: float = option(0.99, ge=0, le=1)
    tau: float = option(0.005, gt=0, le=1)
    expectile: float = option(0.7, gt=0, lt=1)  # tau of Eq. 5
    beta: float = option(3.0, ge=0)  # inverse temperature of the AWR weights
    actor_lr: float = option(3e-4, gt=0)  # cosine-decayed to 0 over train.total_steps
    q_lr: float = option(3e-4, gt=0)
    v_lr: float = option(3e-4, gt=0)
    hidden_sizes: list[int] = option([256, 256], ge=1)
    normalize_obs: bool = True
    critic: ValueHeadConfig = field(default_factory=ValueHeadConfig)  # Q's and V's value head


def expectile_loss(diff: torch.Tensor, expectile: float) -> dict[str, torch.Tensor]:
    """{"loss": E[|tau - 1(u < 0)| u^2]} for u = Q - V (B,) (IQL Eq. 5)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return {"loss": (weight * diff.square()).mean()}


def awr_actor_loss(
    log_prob: torch.Tensor, advantage: torch.Tensor, beta: float, max_weight: float = EXP_ADV_MAX
) -> dict[str, torch.Tensor]:
    """Advantage-weighted regression (Peng et al. 2019; IQL Eq. 7): E[-w log pi(a|s)] with
    w = min(exp(beta A), max_weight), A detached.

    Args:
        log_prob: (B,) log pi(a|s) of dataset actions; advantage: (B,) Q(s, a) - V(s).
    Returns {"loss", "weight" (mean w)}.
    """
    weight = torch.exp(beta * advantage.detach()).clamp(max=max_weight)
    return {"loss": -(weight * log_prob).mean(), "weight": weight.mean()}


class AWRValueAgent(OfflineAgent):
    """What IQL, XQL, f-DVL and ReCOIL share: twin critics with Polyak targets, a state value V
    (no target), a :class:`GaussianActor` trained by AWR with a cosine-decayed learning rate.
    Their ``train_step`` differ in V's loss, Q's loss and the order of the three updates."""

    def build_nets(self, value_layer_norm: bool = False) -> None:
        """The networks and their Adam optimizers (``config.actor_lr``, ``q_lr``, ``v_lr``); Q's
        and V's outputs are ``config.critic``'s value head."""
        cfg = self.config
        self.head = make_value_head(**vars(cfg.critic))
        n = self.head.num_outputs
        self.actor = GaussianActor(self.obs_dim, self.act_dim, cfg.hidden_sizes)
        self.critic = TwinQ(self.obs_dim, self.act_dim, cfg.hidden_sizes, n)
        self.critic_target = copy.deepcopy(self.critic)
        self.value = ValueNetwork(self.obs_dim, cfg.hidden_sizes, n, value_layer_norm)
        self.to(self.device)
        self.optimizers["actor"] = torch.optim.Adam(
            self.actor.parameters(), lr=cfg.actor_lr, fused=True
        )
        self.optimizers["critic"] = torch.optim.Adam(
            self.critic.parameters(), lr=cfg.q_lr, fused=True
        )
        self.optimizers["value"] = torch.optim.Adam(
            self.value.parameters(), lr=cfg.v_lr, fused=True
        )

    def policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor.act(obs, deterministic)

    def awr_actor_step(
        self, obs: torch.Tensor, action: torch.Tensor, advantage: torch.Tensor, beta: float
    ) -> dict[str, torch.Tensor]:
        """One actor update on :func:`awr_actor_loss` (obs (B, obs_dim), action (B, act_dim),
        advantage (B,)) at the learning rate ``config.actor_lr`` cosine-decayed over the run's
        ``total_steps``; returns the loss's terms."""
        lr = cosine_schedule(self.config.actor_lr, self.total_steps or 0, self.grad_steps)
        for group in self.optimizers["actor"].param_groups:
            group["lr"] = lr
        terms = awr_actor_loss(self.actor.log_prob(obs, action), advantage, beta)
        self.optimize("actor", terms["loss"])
        return terms


class IQL(AWRValueAgent):
    """Implicit Q-Learning with a Gaussian AWR policy."""

    Config = IQLConfig
    name = "iql"

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        config: IQLConfig | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, total_steps)
        self.config = config or IQLConfig()
        self.build_nets()

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, head = self.config, self.head
        obs, action = batch["obs"], batch["action"]
        with torch.no_grad():
            next_v = head.value(self.value(batch["next_obs"]))
            target_q = self.critic_target.min_value(obs, action, head)

        advantage = target_q - head.value(self.value(obs))
        v_loss = expectile_loss(advantage, cfg.expectile)["loss"]
        self.optimize("value", v_loss)

        target = batch["reward"] + cfg.gamma * batch["mask"] * next_v
        q1, q2 = self.critic(obs, action)
        q_loss = (head.loss(q1, target).mean() + head.loss(q2, target).mean()) / 2
        self.optimize("critic", q_loss)
        polyak_update(self.critic_target, self.critic, cfg.tau)

        actor = self.awr_actor_step(obs, action, advantage, cfg.beta)
        return {"v_loss": v_loss.detach(), "q_loss": q_loss.detach(),
                "actor_loss": actor["loss"].detach(), "adv_weight": actor["weight"].detach(),
                "q_target": target_q.mean()}
