"""Value heads: how a critic's outputs encode a value, and the loss that fits them to a target.

Any critic (PPO's V, SAC's and DQN's Q, a world model's critic) ends in ``head.num_outputs`` logits
per value; the head turns them into a scalar estimate (``value``) and scores them against scalar
targets (``loss``, per element). Heads:

``scalar``
    One output; squared error or Huber loss (delta 1).
``hl_gauss``
    Farebrother et al. 2024, "Stop Regressing: Training Value Functions via Classification for
    Scalable Deep RL" (HL-Gauss, Sec. 3.1): with bin edges e_0 < ... < e_m over [v_min, v_max] and
    the target y clipped to the support, bin i gets the mass of N(y, sigma^2) on [e_i, e_{i+1}],

        p_i = (Phi((e_{i+1} - y) / sigma) - Phi((e_i - y) / sigma)) / (Phi((e_m - y) / sigma)
                                                                       - Phi((e_0 - y) / sigma))

    with sigma = sigma_ratio * bin width (0.75, the paper's recommendation). The loss is the cross
    entropy of softmax(logits) against p; the value is sum_i softmax(logits)_i * center_i.
``two_hot``
    Two-hot encoding over bin centers c_0 < ... < c_{m-1} (as in Schrittwieser et al. 2020 and
    Hafner et al. 2023): y in [c_k, c_{k+1}] puts (c_{k+1} - y) / (c_{k+1} - c_k) on c_k and the
    rest on c_{k+1}, so the expectation equals y exactly.
``c51``
    Bellemare et al. 2017, "A Distributional Perspective on Reinforcement Learning": a categorical
    distribution over the fixed support z_i = v_min + i (v_max - v_min) / (m - 1), fitted by cross
    entropy against the projected Bellman target (Algorithm 1, :func:`categorical_projection`).
    A scalar target projects to its two-hot encoding on the support.

``symlog`` (Hafner et al. 2023, "Mastering Diverse Domains through World Models"):
targets are compressed with symlog(x) = sign(x) log(|x| + 1) before the loss, and ``value``
returns symexp(x) = sign(x) (exp(|x|) - 1) of the head's estimate; v_min/v_max are then in symlog
space (both from :mod:`deeprl.nets.functional`).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deeprl.config import option
from deeprl.errors import UserError, close_matches
from deeprl.nets.functional import symexp, symlog


def hl_gauss_target(values: torch.Tensor, edges: torch.Tensor, sigma: float) -> torch.Tensor:
    """HL-Gauss target distribution (..., m) of scalar ``values`` (...) over bins with ``edges``
    (m + 1,); values outside [edges[0], edges[-1]] are clipped to it."""
    y = values.clamp(edges[0], edges[-1]).unsqueeze(-1)
    cdf = torch.erf((edges - y) / (math.sqrt(2.0) * sigma))
    mass = cdf[..., 1:] - cdf[..., :-1]
    return mass / (cdf[..., -1:] - cdf[..., :1])


def two_hot_target(values: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Two-hot distribution (..., m) of scalar ``values`` (...) over increasing ``centers`` (m,);
    values outside [centers[0], centers[-1]] are clipped to it."""
    y = values.clamp(centers[0], centers[-1])
    upper = torch.searchsorted(centers, y.contiguous(), right=True).clamp(1, len(centers) - 1)
    lower = upper - 1
    c_lo, c_hi = centers[lower], centers[upper]
    w_hi = (y - c_lo) / (c_hi - c_lo)
    target = torch.zeros((*y.shape, len(centers)), dtype=centers.dtype, device=centers.device)
    target.scatter_(-1, lower.unsqueeze(-1), (1 - w_hi).unsqueeze(-1))
    target.scatter_add_(-1, upper.unsqueeze(-1), w_hi.unsqueeze(-1))
    return target


def categorical_projection(
    next_probs: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor, support: torch.Tensor
) -> torch.Tensor:
    """Project the distribution of r + discount * Z onto ``support`` (C51, Algorithm 1).

    Args:
        next_probs: (B, m) probabilities of Z(s', a*) on ``support`` (m,).
        rewards: (B,) (n-step) rewards; discounts: (B,) gamma^n, or 0 at terminal states.
    Returns:
        (B, m) target probabilities on ``support``.
    """
    v_min, v_max = support[0], support[-1]
    delta = (v_max - v_min) / (len(support) - 1)
    tz = (rewards.unsqueeze(-1) + discounts.unsqueeze(-1) * support).clamp(v_min, v_max)
    b = (tz - v_min) / delta
    lower = b.floor().long().clamp(0, len(support) - 1)
    upper = b.ceil().long().clamp(0, len(support) - 1)
    # When b is an integer, lower == upper and all mass goes to that atom.
    w_upper = b - lower
    w_lower = 1.0 - w_upper
    target = torch.zeros_like(next_probs)
    target.scatter_add_(-1, lower, next_probs * w_lower)
    target.scatter_add_(-1, upper, next_probs * w_upper)
    return target


@dataclass
class ValueHeadConfig:
    """Config of a critic's value head (``agent.critic.*``); fields a head does not use are
    ignored by it. Defaults: C51's support [-10, 10] (Bellemare et al. 2017) with 51 bins, HL-Gauss
    sigma 0.75 bin widths (Farebrother et al. 2024)."""

    head: str = option("scalar", choices=("scalar", "hl_gauss", "two_hot", "c51"))
    loss: str = option("mse", choices=("mse", "huber"))  # of the scalar head
    num_bins: int = option(51, ge=2)
    v_min: float = -10.0
    v_max: float = 10.0
    sigma_ratio: float = option(0.75, gt=0)  # hl_gauss: sigma in bin widths
    symlog: bool = False  # fit symlog(target) (Hafner et al. 2023)


class ValueHead(nn.Module):
    """Interface: ``num_outputs`` logits per value, ``value(logits)`` (..., num_outputs) -> (...),
    ``loss(logits, target)`` with scalar targets (...) -> per-element loss (...)."""

    num_outputs: int

    def __init__(self, symlog: bool = False) -> None:
        super().__init__()
        self.symlog = symlog

    def encode(self, target: torch.Tensor) -> torch.Tensor:
        """The target in the space the head fits (symlog or identity)."""
        return symlog(target) if self.symlog else target

    def decode(self, estimate: torch.Tensor) -> torch.Tensor:
        return symexp(estimate) if self.symlog else estimate

    def value(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class ScalarHead(ValueHead):
    """One output regressed onto the target with squared error (``mse``) or Huber (``huber``)."""

    num_outputs = 1

    def __init__(self, loss: str = "mse", symlog: bool = False) -> None:
        super().__init__(symlog)
        if loss not in ("mse", "huber"):
            raise UserError(f"unknown critic loss {loss!r}; use agent.critic.loss=mse or huber")
        self.loss_type = loss

    def value(self, logits: torch.Tensor) -> torch.Tensor:
        return self.decode(logits.squeeze(-1))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = logits.squeeze(-1), self.encode(target)
        if self.loss_type == "huber":
            return F.huber_loss(pred, target, reduction="none", delta=1.0)
        return (pred - target).square()


class _CategoricalHead(ValueHead):
    """A softmax over ``num_bins`` bins with centers ``centers``; cross-entropy loss."""

    def __init__(self, num_bins: int, v_min: float, v_max: float, symlog: bool) -> None:
        super().__init__(symlog)
        if num_bins < 2:
            raise UserError(f"agent.critic.num_bins={num_bins} must be at least 2")
        if not v_min < v_max:
            raise UserError(f"agent.critic.v_min={v_min} must be below agent.critic.v_max={v_max}")
        self.num_outputs = num_bins
        self.v_min, self.v_max = float(v_min), float(v_max)

    def target_probs(self, target: torch.Tensor) -> torch.Tensor:
        """The target distribution (..., num_bins) of scalar targets (...)."""
        raise NotImplementedError

    def value(self, logits: torch.Tensor) -> torch.Tensor:
        return self.decode((torch.softmax(logits, -1) * self.centers).sum(-1))

    def cross_entropy(self, logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
        """-sum_i p_i log softmax(logits)_i over the last dim."""
        return -(target_probs * torch.log_softmax(logits, -1)).sum(-1)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = self.target_probs(self.encode(target).to(self.centers.dtype))
        return self.cross_entropy(logits, probs)


class HLGaussHead(_CategoricalHead):
    """HL-Gauss (Farebrother et al. 2024): bins of equal width tile [v_min, v_max]."""

    def __init__(
        self,
        num_bins: int = 51,
        v_min: float = -10.0,
        v_max: float = 10.0,
        sigma_ratio: float = 0.75,
        symlog: bool = False,
    ) -> None:
        super().__init__(num_bins, v_min, v_max, symlog)
        edges = torch.linspace(v_min, v_max, num_bins + 1)
        self.register_buffer("edges", edges)
        self.register_buffer("centers", (edges[1:] + edges[:-1]) / 2)
        self.sigma = sigma_ratio * (v_max - v_min) / num_bins

    def target_probs(self, target: torch.Tensor) -> torch.Tensor:
        return hl_gauss_target(target, self.edges, self.sigma)


class TwoHotHead(_CategoricalHead):
    """Two-hot targets over ``num_bins`` centers spanning [v_min, v_max]."""

    def __init__(
        self, num_bins: int = 51, v_min: float = -10.0, v_max: float = 10.0, symlog: bool = False
    ) -> None:
        super().__init__(num_bins, v_min, v_max, symlog)
        self.register_buffer("centers", torch.linspace(v_min, v_max, num_bins))

    def target_probs(self, target: torch.Tensor) -> torch.Tensor:
        return two_hot_target(target, self.centers)


class C51Head(TwoHotHead):
    """C51 (Bellemare et al. 2017): the support is ``centers``; distributional targets come from
    :meth:`projected_target` and are fitted with :meth:`cross_entropy`."""

    def projected_target(
        self, next_logits: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor
    ) -> torch.Tensor:
        """Projected Bellman target (B, m) from the target network's logits (B, m) at a*."""
        if self.symlog:
            raise UserError(
                "agent.critic.head=c51 with symlog=true has no distributional Bellman target; "
                "use symlog with hl_gauss or two_hot"
            )
        next_probs = torch.softmax(next_logits, -1)
        return categorical_projection(next_probs, rewards, discounts, self.centers)


HEADS: dict[str, type[ValueHead]] = {
    "scalar": ScalarHead,
    "hl_gauss": HLGaussHead,
    "two_hot": TwoHotHead,
    "c51": C51Head,
}


def make_value_head(head: str = "scalar", **cfg) -> ValueHead:
    """Build the head named ``head`` from ``ValueHeadConfig`` fields (those it does not take are
    ignored, so one config serves every head)."""
    if head not in HEADS:
        raise UserError(f"unknown critic head {head!r}.{close_matches(head, HEADS)}")
    known = {f for f in ValueHeadConfig.__dataclass_fields__ if f != "head"}
    unknown = set(cfg) - known
    if unknown:
        key = sorted(unknown)[0]
        raise UserError(
            f"unknown option agent.critic.{key}.{close_matches(key, known)} "
            f"Options: {', '.join(sorted(known))}"
        )
    cls = HEADS[head]
    params = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in cfg.items() if k in params})
