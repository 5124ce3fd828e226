"""Running mean/std normalizers whose statistics live in ``state_dict`` (and so in checkpoints)."""

from __future__ import annotations

import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Running mean and variance of a stream of batches (Chan et al. parallel update).

    Args:
        shape: shape of one sample; batches are (B, *shape).
        epsilon: initial pseudo-count, so early statistics are well defined.
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        """Fold a batch (B, *shape) into the statistics."""
        batch = batch.to(torch.float64)
        batch_mean = batch.mean(0)
        batch_var = batch.var(0, unbiased=False)
        batch_count = batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean += delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count
        m2 += delta.square() * self.count * batch_count / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: torch.Tensor, clip: float | None = None, center: bool = True):
        """``(x - mean) / sqrt(var + 1e-8)``, optionally clipped to [-clip, clip]."""
        std = torch.sqrt(self.var + 1e-8).to(x.dtype)
        out = (x - self.mean.to(x.dtype)) / std if center else x / std
        return out.clamp(-clip, clip) if clip is not None else out
