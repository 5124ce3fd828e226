"""f-DVL, dual value learning for offline RL (Sikchi, Zheng, Zhang & Niekum 2024, "Dual RL:
Unification and New Methods for Reinforcement and Imitation Learning", ICLR), as the authors'
code hari-sikchi/DVL (``offline/{critic,actor,learner}.py``).

The dual of regularised policy optimisation with an f-divergence to the data's distribution
gives a value loss on x = min_i Qbar_i(s, a) - V(s) over the data, with temperature lambda:

    chi-square        L_V = E[ lambda max(x + x^2/4, 0) - (1 - lambda) x ]
    total variation   L_V = E[ lambda max(x, 0) - (1 - lambda) x ]
    reverse KL        L_V = XQL's Gumbel loss on z = x / lambda, clipped at max_clip and
                            rescaled by e^(-m) (:func:`deeprl.offline.xql.gumbel_loss`)

With ``sample_random_times`` = k the V loss also sees each state k times with a uniform action
in [-1, 1]^d (the README's locomotion runs use 1). The official update order per step
(learner.py), with no target V network:

    (1) V on the target critics' min Qbar(s, a);
    (2) the AWR actor: E[-min(exp(t (min_i Qbar_i(s, a) - V_new(s))), 100) log pi(a|s)];
    (3) Q_i toward y = r + gamma (1 - d) V_new(s') with the Huber loss (delta 20)
        (``agent.critic.loss=mse``: squared error; another value head: its own loss);
    (4) Polyak averaging of the critics (tau).

Defaults are the code's locomotion settings: chi-square, lambda 1, max_clip 5 (reverse KL
only), AWR temperature 3, batch 1024, lr 3e-4, gamma 0.99, tau 0.005, 256x256 ReLU MLPs,
LayerNorm in V, twin critics, cosine-decayed actor lr; states standardised as in CORL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from deeprl.config import option
from deeprl.envs.spec import EnvSpec
from deeprl.nets.functional import polyak_update
from deeprl.nets.heads import ScalarHead, ValueHead, ValueHeadConfig
from deeprl.offline.iql import AWRValueAgent
from deeprl.offline.xql import gumbel_loss

DIVERGENCES = ("chi_square", "total_variation", "reverse_kl")
HUBER_DELTA = 20.0  # critic.py's huber_loss(x, delta=20.0)


@dataclass
class FDVLConfig:
    """f-DVL hyperparameters (``agent=fdvl``); defaults: hari-sikchi/DVL's locomotion runs.

    The Q loss is ``critic.loss``: ``huber`` (the default, as critic.py) with delta
    ``huber_delta`` (20; the other agents' Huber has delta 1) or ``mse``.
    """

    batch_size: int = option(1024, ge=1)
    gamma: float = option(0.99, ge=0, le=1)
    tau: float = option(0.005, gt=0, le=1)
    f: str = option("chi_square", choices=DIVERGENCES)  # the f-divergence
    temp: float = option(1.0, gt=0)  # lambda of the value loss
    max_clip: float | None = option(5.0, gt=0)  # reverse KL only (None: no clip)
    sample_random_times: int = option(1, ge=0)  # uniform actions per state in the V loss
    temperature: float = option(3.0, ge=0)  # AWR inverse temperature
    actor_lr: float = option(3e-4, gt=0)  # cosine-decayed to 0 over train.total_steps
    q_lr: float = option(3e-4, gt=0)
    v_lr: float = option(3e-4, gt=0)
    hidden_sizes: list[int] = option([256, 256], ge=1)
    value_layer_norm: bool = True
    normalize_obs: bool = True
    huber_delta: float = option(HUBER_DELTA, gt=0)  # of the Q loss when critic.loss=huber
    critic: ValueHeadConfig = field(  # Q's and V's value head
        default_factory=lambda: ValueHeadConfig(loss="huber")
    )


def fdvl_value_loss(
    diff: torch.Tensor, f: str, temp: float, max_clip: float | None = None
) -> dict[str, torch.Tensor]:
    """The f-DVL value loss on diff = Q - V (B,): {"loss": its mean} (see the module docstring;
    ``max_clip`` applies to ``reverse_kl`` only, as in the official code)."""
    if f == "chi_square":
        loss = temp * torch.clamp(diff + diff.square() / 4, min=0) - (1 - temp) * diff
    elif f == "total_variation":
        loss = temp * torch.clamp(diff, min=0) - (1 - temp) * diff
    elif f == "reverse_kl":
        return {"loss": gumbel_loss(diff, temp, max_clip)["loss"]}
    else:
        raise ValueError(f"unknown f-divergence {f!r}; choose from {DIVERGENCES}")
    return {"loss": loss.mean()}


def dvl_q_loss(
    q1: torch.Tensor,
    q2: torch.Tensor,
    target: torch.Tensor,
    head: ValueHead,
    huber_delta: float = HUBER_DELTA,
) -> dict[str, torch.Tensor]:
    """{"loss": E[fit(Q_1, y)] + E[fit(Q_2, y)]}: fit is critic.py's Huber with delta
    ``huber_delta`` for the scalar head with ``critic.loss=huber`` (and no symlog), else the head's
    own loss (``mse``: squared error).

    Args:
        q1, q2: (B, head.num_outputs) the critics' outputs; target: (B,) y.
    """
    if isinstance(head, ScalarHead) and head.loss_type == "huber" and not head.symlog:
        loss = sum(F.huber_loss(head.value(q), target, delta=huber_delta) for q in (q1, q2))
    else:
        loss = sum(head.loss(q, target).mean() for q in (q1, q2))
    return {"loss": loss}


class FDVL(AWRValueAgent):
    """f-DVL with twin critics, a value network without target, and a Gaussian AWR policy."""

    Config = FDVLConfig
    name = "fdvl"

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        config: FDVLConfig | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, total_steps)
        self.config = config or FDVLConfig()
        self.build_nets(value_layer_norm=self.config.value_layer_norm)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, head = self.config, self.head
        obs, action = batch["obs"], batch["action"]
        with torch.no_grad():
            target_q = self.critic_target.min_value(obs, action, head)
            v_obs, v_q = obs, target_q
            if cfg.sample_random_times > 0:
                repeated = obs.repeat(cfg.sample_random_times, 1)
                uniform = torch.empty(repeated.shape[0], self.act_dim, device=obs.device)
                uniform.uniform_(-1.0, 1.0)
                v_obs = torch.cat([obs, repeated])
                v_q = torch.cat([target_q, self.critic_target.min_value(repeated, uniform, head)])

        # (1) V on the target critics
        v_loss = fdvl_value_loss(v_q - head.value(self.value(v_obs)), cfg.f, cfg.temp,
                                 cfg.max_clip)["loss"]
        self.optimize("value", v_loss)

        # (2) AWR actor with the target critics and the new V
        with torch.no_grad():
            v = head.value(self.value(obs))
            next_v = head.value(self.value(batch["next_obs"]))
        actor = self.awr_actor_step(obs, action, target_q - v, cfg.temperature)

        # (3) Q toward r + gamma V_new(s') (no target V), (4) Polyak
        target = batch["reward"] + cfg.gamma * batch["mask"] * next_v
        q1, q2 = self.critic(obs, action)
        q_loss = dvl_q_loss(q1, q2, target, head, cfg.huber_delta)["loss"]
        self.optimize("critic", q_loss)
        polyak_update(self.critic_target, self.critic, cfg.tau)
        return {"v_loss": v_loss.detach(), "q_loss": q_loss.detach(),
                "actor_loss": actor["loss"].detach(), "adv_weight": actor["weight"],
                "v": v.mean()}
