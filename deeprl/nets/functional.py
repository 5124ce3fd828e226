"""Stateless tensor math shared by agents and world models: value transforms and target updates."""

from __future__ import annotations

import torch
from torch import nn


def symlog(x: torch.Tensor) -> torch.Tensor:
    """symlog(x) = sign(x) log(|x| + 1), elementwise (any shape -> same shape).

    Hafner et al. 2023, "Mastering Diverse Domains through World Models" (DreamerV3, "Symlog
    Predictions"): compresses large magnitudes while staying close to the identity around 0, so
    one set of hyperparameters fits targets of any scale. Inverse: :func:`symexp`.
    """
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """symexp(x) = sign(x) (exp(|x|) - 1), elementwise (any shape -> same shape): the inverse of
    :func:`symlog` (Hafner et al. 2023, "Mastering Diverse Domains through World Models").
    """
    return torch.sign(x) * torch.expm1(x.abs())


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- tau * source + (1 - tau) * target, parameter-wise (tau = 1: hard copy).

    The soft target-network update of Lillicrap et al. 2016, "Continuous control with deep
    reinforcement learning" (DDPG, Sec. 3), used by SAC; DQN's periodic hard copy (Mnih et al.
    2015) is tau = 1. ``target`` and ``source`` must have the same parameters in the same order
    (same shapes); buffers are not touched.
    """
    # One fused call over all tensors instead of a Python loop of small ops.
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
