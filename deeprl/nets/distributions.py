"""Action distributions as plain functions over tensors.

Written out rather than built from ``torch.distributions`` objects because PPO calls them once per
env step, where constructing distribution objects costs more than the arithmetic.
"""

from __future__ import annotations

import math

import torch

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def categorical_sample(logits: torch.Tensor) -> torch.Tensor:
    """Sample indices (B,) from unnormalised ``logits`` (B, n) with the Gumbel-max trick."""
    u = torch.rand_like(logits)
    return torch.argmax(logits - torch.log(-torch.log(u)), dim=-1)


def categorical_log_prob_entropy(
    logits: torch.Tensor, actions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of ``actions`` (B,) and entropy, both (B,), under softmax(logits)."""
    log_p = torch.log_softmax(logits, dim=-1)
    log_prob = log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return log_prob, entropy


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Log-density of a diagonal Gaussian, summed over the last dim: (B, d) -> (B,)."""
    z = (x - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - _LOG_SQRT_2PI).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian, summed over the last dim."""
    return (log_std + 0.5 + _LOG_SQRT_2PI).sum(-1)
