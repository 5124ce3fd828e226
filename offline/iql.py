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


class IQL(OfflineAgent):
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
        self.config = cfg = config or IQLConfig()
        self.head = make_value_head(**vars(cfg.critic))
        n = self.head.num_outputs
        self.actor = GaussianActor(self.obs_dim, self.act_dim, cfg.hidden_sizes)
        self.critic = TwinQ(self.obs_dim, self.act_dim, cfg.hidden_sizes, n)
        self.critic_target = copy.deepcopy(self.critic)
        self.value = ValueNetwork(self.obs_dim, cfg.hidden_sizes, n)
        self.to(self.device)
        self.optimizers["actor"] = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.optimizers["critic"] = torch.optim.Adam(self.critic.parameters(), lr=cfg.q_lr)
        self.optimizers["value"] = torch.optim.Adam(self.value.parameters(), lr=cfg.v_lr)

    def policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor.act(obs, deterministic)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, head = self.config, self.head
        obs, action = batch["obs"], batch["action"]
        with torch.no_grad():
            next_v = head.value(self.value(batch["next_obs"]))
            target_q = torch.minimum(*(head.value(q) for q in self.critic_target(obs, action)))

        advantage = target_q - head.value(self.value(obs))
        v_loss = expectile_loss(advantage, cfg.expectile)["loss"]
        self.optimizers["value"].zero_grad(set_to_none=True)
        v_loss.backward()
        self.optimizers["value"].step()

        target = batch["reward"] + cfg.gamma * batch["mask"] * next_v
        q1, q2 = self.critic(obs, action)
        q_loss = (head.loss(q1, target).mean() + head.loss(q2, target).mean()) / 2
        self.optimizers["critic"].zero_grad(set_to_none=True)
        q_loss.backward()
        self.optimizers["critic"].step()
        polyak_update(self.critic_target, self.critic, cfg.tau)

        actor = awr_actor_loss(self.actor.log_prob(obs, action), advantage, cfg.beta)
        optimizer = self.optimizers["actor"]
        for group in optimizer.param_groups:
            group["lr"] = cosine_schedule(cfg.actor_lr, self.total_steps or 0, self.grad_steps)
        optimizer.zero_grad(set_to_none=True)
        actor["loss"].backward()
        optimizer.step()
        return {"v_loss": v_loss.detach(), "q_loss": q_loss.detach(),
                "actor_loss": actor["loss"].detach(), "adv_weight": actor["weight"].detach(),
                "q_target": target_q.mean()}
