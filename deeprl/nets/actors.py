"""Policy networks for continuous actions shared by the offline agents.

All of them act in the normalised action box [-1, 1]^d; the agent maps that to the env's box.

``DeterministicActor``
    a = tanh(f(s)): BC and TD3+BC (Fujimoto et al. 2018, 2021; CORL's ``Actor``).
``GaussianActor``
    pi(a|s) = N(tanh(f(s)), diag(exp(log_std))) with a state-independent, learned log-std
    clipped to [log_std_min, log_std_max]: the AWR policy of IQL (Kostrikov et al. 2022; CORL's
    ``GaussianPolicy``), also used by XQL and f-DVL (their JAX code: ``NormalTanhPolicy`` with
    ``tanh_squash_distribution=False``, i.e. a tanh on the mean only), and ReCOIL.
``TanhGaussianActor``
    a = tanh(u), u ~ N(mu(s), exp(log_std(s))) with log_std = m * raw(s) + c (m, c learned scalars,
    initialised 1 and -1) clipped to [-20, 2]: CQL's policy (Kumar et al. 2020; CORL's
    ``TanhGaussianPolicy``), log-density with the tanh change of variables.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deeprl.nets.distributions import gaussian_log_prob, squashed_gaussian
from deeprl.nets.mlp import mlp


class DeterministicActor(nn.Module):
    """a = tanh(f(s)) (B, act_dim) from observations (B, obs_dim)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim, activation="relu")

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


class GaussianActor(nn.Module):
    """N(tanh(f(s)), exp(log_std)) with a state-independent log-std (act_dim,)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim, activation="relu")
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, act_dim) and log-std (act_dim,)."""
        return torch.tanh(self.net(obs)), self.log_std.clamp(self.log_std_min, self.log_std_max)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) (B,) of actions (B, act_dim) in [-1, 1]."""
        mean, log_std = self(obs)
        return gaussian_log_prob(action, mean, log_std.expand_as(mean))

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """The mean, or a sample clipped to [-1, 1] (B, act_dim)."""
        mean, log_std = self(obs)
        if deterministic:
            return mean.clamp(-1.0, 1.0)
        return (mean + torch.randn_like(mean) * log_std.exp()).clamp(-1.0, 1.0)


class TanhGaussianActor(nn.Module):
    """a = tanh(u), u ~ N(mu(s), exp(m * raw(s) + c)); log-std clipped to [-20, 2]."""

    LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * act_dim, activation="relu", out_gain=0.01)
        self.log_std_multiplier = nn.Parameter(torch.tensor(1.0))
        self.log_std_offset = nn.Parameter(torch.tensor(-1.0))
        # the [-1, 1] box's half-width and centre for squashed_gaussian, made once
        self.register_buffer("unit_scale", torch.ones(act_dim), persistent=False)
        self.register_buffer("unit_bias", torch.zeros(act_dim), persistent=False)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action (B, act_dim) and its log-density (B,) for obs (B, obs_dim)."""
        mean, raw = self.net(obs).chunk(2, -1)
        log_std = (self.log_std_multiplier * raw + self.log_std_offset).clamp(
            self.LOG_STD_MIN, self.LOG_STD_MAX
        )
        return squashed_gaussian(mean, log_std, self.unit_scale, self.unit_bias)

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if deterministic:
            return torch.tanh(self.net(obs).chunk(2, -1)[0])
        return self(obs)[0]
