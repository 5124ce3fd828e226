"""Running mean/std normalizers whose statistics live in ``state_dict`` (and so in checkpoints).

In a data-parallel run (an initialised ``torch.distributed`` group of more than one rank,
:mod:`deeprl.train.distributed`) every rank folds in the statistics of all ranks' batches, so the
ranks' normalizers stay identical; every rank must then call ``update`` at the same point.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _ranks() -> int:
    """The number of data-parallel ranks (1 without an initialised process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """``x`` averaged over the data-parallel ranks (in place; ``x`` itself with one rank)."""
    if _ranks() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x.div_(_ranks())
    return x


def batch_moments(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Count, mean and (biased) variance over dim 0 of ``batch`` (B, *shape), in float64, of the
    union of all ranks' batches: the ranks' moments merged as Chan et al.,
    mean = sum_r n_r m_r / n and M2 = sum_r n_r (v_r + (m_r - mean)^2)."""
    batch = batch.to(torch.float64)
    count = torch.tensor(float(batch.shape[0]), dtype=torch.float64, device=batch.device)
    mean, var = batch.mean(0), batch.var(0, unbiased=False)
    if _ranks() == 1:
        return count, mean, var
    sums = torch.cat([count.view(1), (count * mean).flatten()])
    dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    total, merged_mean = sums[0], (sums[1:] / sums[0]).view_as(mean)
    m2 = count * (var + (mean - merged_mean).square())
    dist.all_reduce(m2, op=dist.ReduceOp.SUM)
    return total, merged_mean, m2 / total


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
        """Fold a batch (B, *shape) into the statistics (all ranks' batches in a data-parallel
        run)."""
        batch_count, batch_mean, batch_var = batch_moments(batch)
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
