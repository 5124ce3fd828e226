"""Critic networks over vector observations: Q(s, a) and V(s), each ending in a value head's
``num_outputs`` logits (:mod:`deeprl.nets.heads`), so every critic takes any value head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deeprl.nets.heads import ValueHead
from deeprl.nets.mlp import mlp


class QNetwork(nn.Module):
    """Q(s, a): a ReLU MLP over [obs, action] (B, obs_dim + act_dim) -> (B, num_outputs) logits."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], num_outputs: int) -> None:
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden, num_outputs, activation="relu")

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], -1))


class TwinQ(nn.Module):
    """Two independent Q-networks (clipped double Q, Fujimoto et al. 2018): ``forward`` returns
    both logits, (B, num_outputs) each."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: Sequence[int], num_outputs: int
    ) -> None:
        super().__init__()
        self.q1 = QNetwork(obs_dim, act_dim, hidden, num_outputs)
        self.q2 = QNetwork(obs_dim, act_dim, hidden, num_outputs)

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q1(obs, action), self.q2(obs, action)

    def values(
        self, obs: torch.Tensor, action: torch.Tensor, head: ValueHead
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both critics' values (...,) at (obs, action) with any leading dims, read by ``head``."""
        q1, q2 = self(obs, action)
        return head.value(q1), head.value(q2)

    def min_value(self, obs: torch.Tensor, action: torch.Tensor, head: ValueHead) -> torch.Tensor:
        """min(Q_1, Q_2)(s, a) (...,): the clipped double-Q estimate."""
        return torch.minimum(*self.values(obs, action, head))


class ValueNetwork(nn.Module):
    """V(s): a ReLU MLP (B, obs_dim) -> (B, num_outputs) logits, optionally with LayerNorm."""

    def __init__(
        self, obs_dim: int, hidden: Sequence[int], num_outputs: int, layer_norm: bool = False
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, num_outputs, activation="relu", layer_norm=layer_norm)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)
