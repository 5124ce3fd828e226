"""Multi-layer perceptrons with the orthogonal initialisation used across PPO implementations."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}


def orthogonal_init(layer: nn.Linear, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights and constant bias (Engstrom et al. 2020, "Implementation Matters")."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(
    in_dim: int,
    hidden_sizes: Sequence[int],
    out_dim: int,
    activation: str = "tanh",
    out_gain: float = 1.0,
    layer_norm: bool = False,
) -> nn.Sequential:
    """``in_dim -> hidden... -> out_dim`` with ``activation`` between layers, orthogonal init.

    Hidden layers use gain sqrt(2); the output layer ``out_gain`` (0.01 for policy logits and
    1.0 for values in PPO, following CleanRL's ppo.py). ``layer_norm`` puts a LayerNorm between
    each hidden Linear and its activation (as the IQL/XQL/DVL JAX code's value networks).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    last = in_dim
    for size in hidden_sizes:
        layers.append(orthogonal_init(nn.Linear(last, size)))
        if layer_norm:
            layers.append(nn.LayerNorm(size))
        layers.append(ACTIVATIONS[activation]())
        last = size
    layers.append(orthogonal_init(nn.Linear(last, out_dim), gain=out_gain))
    return nn.Sequential(*layers)
