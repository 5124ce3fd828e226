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


def squashed_gaussian(
    mean: torch.Tensor, log_std: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised sample a = tanh(u) * scale + bias, u ~ N(mean, exp(log_std)), and its
    log-density.

    Haarnoja et al. 2018, "Soft Actor-Critic: Off-Policy Maximum Entropy Deep Reinforcement
    Learning with a Stochastic Actor" (Appendix C, enforcing action bounds): log pi(a) =
    log N(u; mean, std) - sum_j log(scale_j (1 - tanh(u_j)^2)), with eps 1e-6 inside the log as
    CleanRL. ``mean``, ``log_std``: (B, d); ``scale``, ``bias``: (d,) (half-width and center of the
    action box). Returns the action (B, d) and its log-density (B,).
    """
    u = mean + torch.randn_like(mean) * log_std.exp()
    squashed = torch.tanh(u)
    log_prob = gaussian_log_prob(u, mean, log_std)
    log_prob = log_prob - torch.log(scale * (1 - squashed.square()) + 1e-6).sum(-1)
    return squashed * scale + bias, log_prob


def squashed_gaussian_median(
    mean: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """The deterministic action tanh(mean) * scale + bias (B, d) of :func:`squashed_gaussian`
    from ``mean`` (B, d), ``scale``, ``bias`` (d,): its median (tanh is monotone), which SAC acts
    with at evaluation (the mean action of Haarnoja et al. 2018's evaluation runs)."""
    return torch.tanh(mean) * scale + bias
