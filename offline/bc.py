"""Behaviour cloning (Pomerleau 1991, "Efficient Training of Artificial Neural Networks for
Autonomous Navigation"), as CORL's ``any_percent_bc.py`` (Tarasov et al. 2023) with all of the
data (``frac`` 1.0): a deterministic policy a = tanh(f(s)) regressed onto the dataset's actions,

    L_pi = E_{(s, a) ~ D} [ (1/|A|) ||pi(s) - a||^2 ]      (F.mse_loss over batch and dims)

Defaults are CORL's ``TrainConfig``: 256x256 ReLU MLP, Adam lr 3e-4, batch 256, states
standardised with the dataset's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deeprl.config import option
from deeprl.envs.spec import EnvSpec
from deeprl.nets.actors import DeterministicActor
from deeprl.offline.base import OfflineAgent


@dataclass
class BCConfig:
    """BC hyperparameters (``agent=bc``); defaults: CORL ``any_percent_bc.py``."""

    batch_size: int = option(256, ge=1)
    lr: float = option(3e-4, gt=0)
    hidden_sizes: list[int] = option([256, 256], ge=1)
    normalize_obs: bool = True  # standardise states with the dataset's mean and std


def bc_loss(pred_action: torch.Tensor, action: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"loss": mean squared error} of predicted actions (B, d) against the dataset's (B, d)."""
    return {"loss": (pred_action - action).square().mean()}


class BC(OfflineAgent):
    """Behaviour cloning with a deterministic policy."""

    Config = BCConfig
    name = "bc"

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        config: BCConfig | None = None,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, total_steps)
        self.config = cfg = config or BCConfig()
        self.actor = DeterministicActor(self.obs_dim, self.act_dim, cfg.hidden_sizes)
        self.to(self.device)
        self.optimizers["actor"] = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr, fused=True)

    def policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor(obs)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        losses = bc_loss(self.actor(batch["obs"]), batch["action"])
        self.optimize("actor", losses["loss"])
        return {"actor_loss": losses["loss"].detach()}
