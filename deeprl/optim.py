"""Optimizers not in torch: LaProp with a linear learning-rate warm-up.

LaProp (Ziyin, Wang & Ueda 2020, "LaProp: Separating Momentum and Adaptivity in Adam", Alg. 1)
normalises each gradient by the running RMS *before* the momentum average, where Adam divides
the averaged momentum afterwards. Per parameter, at step t with learning rate eta_t::

    v_t  = beta2 v_{t-1} + (1 - beta2) g_t^2
    m_t  = beta1 m_{t-1} + (1 - beta1) eta_t g_t / (sqrt(v_t / (1 - beta2^t)) + eps)
    e_t  = beta1 e_{t-1} + (1 - beta1) eta_t                (momentum bias correction)
    p_t  = p_{t-1} - (eta_t / e_t) m_t

so with a constant eta_t = eta the step is eta m_t / (1 - beta1^t) in units of normalised
gradients, as the paper's bias-corrected form; the learning rate sits inside the momentum so a
changing eta_t (the warm-up) is averaged like the gradients. Warm-up, as ``pytorch_warmup``'s
``LinearWarmup`` that Drama (Wang et al. 2025) and DreamerV3's 2024 configs use with LaProp:
eta_t = lr * min(1, t / warmup) for t = 1, 2, ...  Drama's settings: lr 4e-5, eps 1e-20,
warm-up 1000, betas (0.9, 0.999) (LaProp's defaults).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class LaProp(torch.optim.Optimizer):
    """LaProp (equations in the module docstring) as a ``torch.optim.Optimizer``.

    The step t and e_t are counted per param group (a parameter without a gradient at a step
    keeps its moments; the group's clock still advances).

    Args:
        params: parameters or param groups (each group may set its own ``lr``, ``warmup``...).
        lr: peak learning rate. betas: (beta1, beta2). eps: added to the RMS.
        warmup: steps of the linear warm-up (0: none).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 4e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-20,
        warmup: int = 0,
    ) -> None:
        if lr < 0:
            raise ValueError(f"LaProp: lr must be >= 0, got {lr}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"LaProp: betas must be in [0, 1), got {betas}")
        if eps < 0 or warmup < 0:
            raise ValueError(f"LaProp: eps and warmup must be >= 0, got {eps} and {warmup}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "warmup": warmup})

    def current_lr(self, group: dict, step: int) -> float:
        """eta_t of ``group`` at step ``step`` (1-based): the warm-up's share of its lr."""
        warmup = group["warmup"]
        return group["lr"] * (min(1.0, step / warmup) if warmup else 1.0)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # t and e_t are per group, plain floats: param_groups are saved as they are, while
            # load_state_dict would cast per-parameter state tensors to the parameter's dtype.
            group["t"] = t = group.get("t", 0) + 1
            beta1, beta2 = group["betas"]
            lr = self.current_lr(group, t)
            group["lr_avg"] = lr_avg = beta1 * group.get("lr_avg", 0.0) + (1 - beta1) * lr
            if lr_avg <= 0:
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("LaProp does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                grad = p.grad
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq / (1 - beta2**t)).sqrt_().add_(group["eps"])
                exp_avg.mul_(beta1).add_(grad / denom, alpha=(1 - beta1) * lr)
                p.add_(exp_avg, alpha=-lr / lr_avg)
        return loss
