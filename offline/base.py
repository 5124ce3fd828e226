"""What every offline agent of this package shares: batches in normalised units, acting in the
env's units, and the gradient-step counter.

CORL (Tarasov et al. 2023, "CORL: Research-oriented Deep Offline Reinforcement Learning
Library") trains on states standardised with the dataset's mean and std (``normalize=True``, eps
1e-3) and evaluates with the same map; actions live in the box [-1, 1]^d (D4RL's MuJoCo tasks).
Here the action box is mapped affinely onto [-1, 1]^d, so a task with another box (Pendulum's
[-2, 2]) keeps CORL's constants (policy noise, uniform CQL actions, the Gaussian log-std). The
state statistics are computed from the dataset at the first update and saved with the weights,
so a resumed run or a loaded agent file acts exactly as the trained one.

Subclasses implement :meth:`OfflineAgent.policy` (normalised obs -> normalised action) and
:meth:`OfflineAgent.train_step` (one gradient update on a batch from :meth:`OfflineAgent.batch`,
each optimizer stepped with :meth:`OfflineAgent.optimize`).
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch

from deeprl.agent import Agent
from deeprl.buffers.base import Buffer
from deeprl.envs.spec import EnvSpec
from deeprl.errors import UserError

STATE_STD_EPS = 1e-3  # CORL's compute_mean_std(eps=1e-3)


class OfflineAgent(Agent):
    """An agent that learns from a fixed dataset of continuous-action transitions."""

    source = "offline"
    counters = ("grad_steps",)

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        total_steps: int | None = None,
    ) -> None:
        super().__init__(spec, num_envs, device, total_steps)
        if spec.discrete:
            raise UserError(
                f"agent={self.name} needs continuous actions but {spec.id} has discrete ones"
            )
        if len(spec.observation_space.shape) != 1:
            raise UserError(
                f"agent={self.name} takes vector observations; {spec.id} has shape "
                f"{tuple(spec.observation_space.shape)}"
            )
        self.obs_dim = spec.observation_space.shape[0]
        self.act_dim = math.prod(spec.action_space.shape)
        low, high = spec.action_space.bounds()
        self.register_buffer("action_scale", ((high - low) / 2).flatten())
        self.register_buffer("action_bias", ((high + low) / 2).flatten())
        self.register_buffer("obs_mean", torch.zeros(self.obs_dim))
        self.register_buffer("obs_std", torch.ones(self.obs_dim))
        self.register_buffer("obs_stats_fitted", torch.tensor(False))
        self._stats_checked = False  # read the flag above once per process, not every update

    # ---- units --------------------------------------------------------------------------------
    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """(obs - mean) / std with the dataset's statistics (identity before they are fitted)."""
        return (obs.flatten(1).float() - self.obs_mean) / self.obs_std

    def fit_obs_stats(self, buffer: Buffer) -> None:
        """Set the state statistics from every stored observation (once; ``normalize_obs`` off:
        they stay 0 and 1)."""
        self.obs_stats_fitted.fill_(True)
        if not self.config.normalize_obs:
            return
        obs = buffer.data["obs"][: buffer.size].flatten(0, 1).flatten(1).float()
        self.obs_mean.copy_(obs.mean(0))
        self.obs_std.copy_(obs.std(0, correction=0) + STATE_STD_EPS)

    def batch(self, buffer: Buffer, batch_size: int) -> dict[str, torch.Tensor]:
        """A uniform batch in normalised units: ``obs``, ``next_obs`` (B, obs_dim), ``action``
        (B, act_dim) in [-1, 1], ``reward`` (B,) and ``mask`` (B,) = 0 at terminations (time-limit
        ends bootstrap)."""
        data = buffer.sample(batch_size)
        action = (data["action"].flatten(1) - self.action_bias) / self.action_scale
        return {
            "obs": self.normalize_obs(data["obs"]),
            "next_obs": self.normalize_obs(data["next_obs"]),
            "action": action.clamp(-1.0, 1.0),
            "reward": data["reward"].float(),
            "mask": 1.0 - data["terminated"].float(),
        }

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """One gradient step of ``self.optimizers[name]`` on the scalar ``loss``."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # ---- the agent interface ------------------------------------------------------------------
    @abstractmethod
    def policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions (B, act_dim) in [-1, 1] for normalised observations (B, obs_dim)."""

    @abstractmethod
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient update on a :meth:`batch`; returns scalar metrics (0-dim tensors)."""

    def act(self, obs, state=None, is_first=None, deterministic=False):
        action = self.policy(self.normalize_obs(obs), deterministic)
        action = action * self.action_scale + self.action_bias
        return action.view(-1, *self.spec.action_space.shape), {}, state

    def update(self, buffer: Buffer, step: int) -> dict[str, torch.Tensor]:
        if not self._stats_checked:
            if not bool(self.obs_stats_fitted):
                self.fit_obs_stats(buffer)
            self._stats_checked = True
        metrics = self.train_step(self.batch(buffer, self.config.batch_size))
        self.grad_steps += 1
        return metrics
