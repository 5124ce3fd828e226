"""ReCOIL, offline imitation from a few expert transitions and a suboptimal set, rewards unused
(Sikchi, Zheng, Zhang & Niekum 2024, "Dual RL: Unification and New Methods for Reinforcement and
Imitation Learning", ICLR, Sec. 6), as the authors' code hari-sikchi/ReCOIL
(``offline/{learner_imitate,critic_imitate}.py``).

ReCOIL matches the mixture beta d^pi + (1 - beta) d^S to beta d^E + (1 - beta) d^S (E: expert
data, S: suboptimal data) through the dual, with no discriminator. Each step draws a batch from
S and one from E; with twin critics Q_i, their Polyak targets Qbar_i and a value network V:

    (1) V on S by XQL's Gumbel (reverse-KL) loss of z = (min_i Qbar_i(s, a) - V(s)) / lambda,
        clipped at max_clip (:func:`deeprl.offline.xql.gumbel_loss`), rescaled by e^(-m) with m
        the largest z over S and E together;
    (2) the AWR actor on S: E_S[-min(exp(t (min_i Qbar_i(s, a) - V_new(s))), 100) log pi(a|s)];
    (3) Q_i by an LSIQ-style bounded regression (plain squared error):
            L_Q = E_E[ 1/2 (Q_i(s, a) - 200)^2 ] + E_S[ 1/2 (Q_i(s, a) - y)^2 ],
            y   = -2 + gamma (1 - d) V_new(s') + gamma d (-200);
    (4) Polyak averaging of the critics (tau).

The policy is IQL's: a Gaussian (the distribution not tanh-squashed) with mean tanh(f(s)) and a
state-independent std, its learning rate cosine-decayed (the authors' code builds IQL's
``NormalTanhPolicy`` with ``tanh_squash_distribution=False``, which still squashes the mean).
The paper's MuJoCo protocol: E = the first 1000 transitions (one trajectory) of an expert dataset
(``expert_transitions``); S = the run's dataset, e.g. a random dataset plus the first K
trajectories of the same expert dataset, E's own included (K = 200; walker2d 100, after
SMODICE). The expert data is the dataset
config ``agent.expert`` (what ``dataset=`` takes: ``'++agent.expert={name: d4rl, path: ...}'``;
Hydra wants ``++`` to replace a dict), read at the first update and again on resume, never
checkpointed.
Defaults are the code's: lambda 2.5 (its README raises it 2.5 -> 5 -> 10 -> 20 while Q
diverges), max_clip 7, AWR temperature 3, batch 1024 from each set, lr 3e-4, gamma 0.99, tau
0.005, 256x256 ReLU MLPs; states standardised with the suboptimal set's statistics as in CORL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from deeprl.buffers.base import Buffer
from deeprl.buffers.replay import ReplayBuffer
from deeprl.config import option
from deeprl.envs.spec import EnvSpec
from deeprl.errors import UserError
from deeprl.nets.functional import polyak_update
from deeprl.nets.heads import ValueHeadConfig
from deeprl.offline.iql import AWRValueAgent
from deeprl.offline.xql import gumbel_loss

EXPERT_Q = 200.0  # the bounded target of expert state-actions
STEP_REWARD = -2.0  # the constant reward of the suboptimal backup
ABSORBING_VALUE = -200.0  # the value bootstrapped after a termination


@dataclass
class ReCOILConfig:
    """ReCOIL hyperparameters (``agent=recoil``); defaults: hari-sikchi/ReCOIL's MuJoCo runs."""

    # The expert set: a dataset config as ``dataset=`` takes (e.g. {name: d4rl, path: e.hdf5});
    # empty: none (``set_expert`` must give one).
    expert: dict[str, Any] = option({})
    expert_transitions: int = option(1000, ge=1)  # the first N transitions of ``expert``
    batch_size: int = option(1024, ge=1)  # from each of the two sets
    gamma: float = option(0.99, ge=0, le=1)
    tau: float = option(0.005, gt=0, le=1)
    temp: float = option(2.5, gt=0)  # lambda of the Gumbel value loss
    max_clip: float | None = option(7.0, gt=0)
    temperature: float = option(3.0, ge=0)  # AWR inverse temperature
    actor_lr: float = option(3e-4, gt=0)  # cosine-decayed to 0 over train.total_steps
    q_lr: float = option(3e-4, gt=0)
    v_lr: float = option(3e-4, gt=0)
    hidden_sizes: list[int] = option([256, 256], ge=1)
    normalize_obs: bool = True
    critic: ValueHeadConfig = field(default_factory=ValueHeadConfig)  # Q's and V's value head


def _squared_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).square()


def recoil_q_loss(
    q_expert: torch.Tensor,
    q_suboptimal: torch.Tensor,
    next_v: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    fit: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _squared_error,
) -> dict[str, torch.Tensor]:
    """ReCOIL's Q loss of one critic (step (3) of the module docstring).

    Args:
        q_expert: (B_E, ...) Q at expert (s, a); q_suboptimal: (B, ...) Q at suboptimal (s, a)
            (values, or a value head's logits when ``fit`` is its loss).
        next_v: (B,) V_new(s'); mask: (B,) 0 where the suboptimal transition terminated.
        fit: per-element loss fit(pred, scalar target) (default squared error).
    Returns {"loss": expert + suboptimal, "expert": E_E[fit/2], "suboptimal": E_S[fit/2]}.
    """
    target = STEP_REWARD + gamma * mask * next_v + gamma * (1 - mask) * ABSORBING_VALUE
    expert = 0.5 * fit(q_expert, target.new_full((len(q_expert),), EXPERT_Q))
    suboptimal = 0.5 * fit(q_suboptimal, target)
    return {"loss": expert.mean() + suboptimal.mean(), "expert": expert.mean(),
            "suboptimal": suboptimal.mean()}


def first_transitions(buffer: Buffer, count: int) -> ReplayBuffer:
    """A buffer of the first ``count`` time steps of a read-only dataset ``buffer``."""
    keys = ("obs", "action", "reward", "next_obs", "terminated", "truncated")
    if "next_obs" not in buffer.data:
        raise UserError("agent.expert must be a dataset stored with next observations")
    n = min(count, buffer.size)
    return ReplayBuffer.from_arrays({k: buffer.data[k][:n] for k in keys}, device=buffer.device)


class ReCOIL(AWRValueAgent):
    """ReCOIL: imitation from expert and suboptimal transitions without rewards."""

    Config = ReCOILConfig
    name = "recoil"

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        config: ReCOILConfig | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, total_steps)
        self.config = config or ReCOILConfig()
        self.build_nets()
        self.expert_buffer: Buffer | None = None  # set by set_expert or read from cfg.expert

    def set_expert(self, buffer: Buffer) -> None:
        """Use the first ``expert_transitions`` steps of ``buffer`` as the expert set."""
        self.expert_buffer = first_transitions(buffer, self.config.expert_transitions)

    def batch(self, buffer: Buffer, batch_size: int) -> dict[str, torch.Tensor]:
        """A suboptimal batch from ``buffer`` plus ``expert_obs``/``expert_action`` from E."""
        if self.expert_buffer is None:
            if not self.config.expert:
                raise UserError(
                    "agent=recoil needs expert transitions: set agent.expert to a dataset "
                    "config, e.g. '++agent.expert={name: d4rl, path: expert.hdf5}'"
                )
            from deeprl.datasets import load_dataset

            self.set_expert(load_dataset(dict(self.config.expert), self.device).buffer)
        expert = super().batch(self.expert_buffer, batch_size)
        return {**super().batch(buffer, batch_size), "expert_obs": expert["obs"],
                "expert_action": expert["action"]}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, head = self.config, self.head
        obs, action = batch["obs"], batch["action"]
        expert_obs, expert_action = batch["expert_obs"], batch["expert_action"]
        with torch.no_grad():
            target_q = self.critic_target.min_value(obs, action, head)
            expert_diff = (self.critic_target.min_value(expert_obs, expert_action, head)
                           - head.value(self.value(expert_obs)))

        # (1) V on the suboptimal set, rescaled by the largest z of both sets as the authors'
        # code does (its loss runs over the concatenated batch and keeps the suboptimal half)
        v_loss = gumbel_loss(target_q - head.value(self.value(obs)), cfg.temp, cfg.max_clip,
                             rescale_only=expert_diff)["loss"]
        self.optimize("value", v_loss)

        # (2) AWR actor on the suboptimal set with the new V
        with torch.no_grad():
            v = head.value(self.value(obs))
            next_v = head.value(self.value(batch["next_obs"]))
        actor = self.awr_actor_step(obs, action, target_q - v, cfg.temperature)

        # (3) Q: expert state-actions to 200, suboptimal ones to the reward-free backup
        expert_q = self.critic(expert_obs, expert_action)
        suboptimal_q = self.critic(obs, action)
        terms = [recoil_q_loss(e, s, next_v, batch["mask"], cfg.gamma, head.loss)
                 for e, s in zip(expert_q, suboptimal_q, strict=True)]
        q_loss = terms[0]["loss"] + terms[1]["loss"]
        self.optimize("critic", q_loss)
        polyak_update(self.critic_target, self.critic, cfg.tau)
        return {"v_loss": v_loss.detach(), "q_loss": q_loss.detach(),
                "actor_loss": actor["loss"].detach(), "adv_weight": actor["weight"],
                "q_expert": head.value(expert_q[0].detach()).mean(), "v": v.mean()}
