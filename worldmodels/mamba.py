"""Mamba-1 block: a selective state-space layer in PyTorch, interchangeable with mamba-ssm's.

Paper: Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces".

For an input u (batch, L, d_model) the block computes

    x, z    = split(in_proj(u))                          two (batch, L, d_inner) halves
    x       = silu(causal_depthwise_conv(x))             width d_conv
    Δ, B, C = softplus(dt_proj(x_proj(x)[:dt_rank])), x_proj(x)[B], x_proj(x)[C]
    h_t     = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t           A = -exp(A_log), (d_inner, d_state)
    y_t     = C_t h_t + D x_t
    out     = out_proj(y * silu(z))

with selective (input-dependent) Δ, B and C. Constructor arguments, initialisation (S4D-real A,
Δ bias drawn log-uniformly in [dt_min, dt_max] through an inverse softplus) and parameter
names/shapes follow mamba-ssm's ``Mamba`` so ``state_dict``s load either way.

Calls (the same for ``Mamba2``):

* ``y = block(x)``: (batch, L, d_model) -> (batch, L, d_model), a tensor, as mamba-ssm's blocks,
  so code written for mamba-ssm runs unchanged.
* ``y, state = block(x, state=state, reset=reset, return_state=True)``: for world models.
  ``state`` (an ``SSMState``) continues from an earlier call or ``step``, zeros when None;
  ``reset`` (batch, L) bool or None is True where a step starts a new episode: the state carried
  into that step (from the step before, or ``state`` at step 0) is replaced by zeros for that
  row, the convolution's window included, so nothing from before the reset reaches it.
* ``y_t, state = block.step(x_t, state, reset_t)``: one step, x_t (batch, d_model), reset_t
  (batch,) bool or None.

Backends: ``"torch"`` runs ``deeprl.worldmodels.scans`` (parallel Blelloch scan for training,
``step`` for recurrent use); ``"cuda"`` runs mamba-ssm's ``selective_scan_fn`` kernel;
``"auto"`` picks the kernel when mamba-ssm imports and the input is on a CUDA device.
The kernel cannot take ``reset``, so calls with one use the torch scan. This module also holds
the backend and input checks shared with ``mamba2``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deeprl.errors import close_matches
from deeprl.worldmodels.scans import (
    causal_conv1d,
    causal_conv1d_step,
    selective_scan,
    selective_step,
)

BACKENDS = ("auto", "torch", "cuda")
_INSTALL_HINT = 'on a CUDA machine run `pip install "deeprl[cuda]"`, or use backend="torch"'


class KernelUnavailableError(RuntimeError):
    """backend="cuda" was asked for where mamba-ssm's kernels cannot run."""


class SSMState(NamedTuple):
    """Recurrent state of one Mamba block.

    conv: the last d_conv inputs of the convolution, (batch, conv_channels, d_conv).
    ssm: the SSM state, (batch, d_inner, d_state) for Mamba, (batch, nheads, headdim, d_state)
        for Mamba2.
    """

    conv: Tensor
    ssm: Tensor


@functools.cache
def _load_selective_scan() -> Callable | None:
    """mamba-ssm's selective scan kernel, or None when mamba-ssm is not importable."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn


def check_backend(backend: str, kernel: Callable | None, block: str) -> None:
    """Raise when ``backend`` is unknown, or is "cuda" where the kernels cannot run."""
    if backend not in BACKENDS:
        raise ValueError(
            f"{block}: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}."
            + close_matches(backend, BACKENDS)
        )
    if backend != "cuda":
        return
    if not torch.cuda.is_available():
        raise KernelUnavailableError(
            f"{block}(backend='cuda') needs a CUDA GPU and torch sees none; {_INSTALL_HINT}."
        )
    if kernel is None:
        raise KernelUnavailableError(
            f"{block}(backend='cuda') needs mamba-ssm's kernels, which do not import here; "
            f"{_INSTALL_HINT}."
        )


def use_kernel(backend: str, kernel: Callable | None, x: Tensor, block: str) -> bool:
    """Whether this call runs mamba-ssm's kernel (see ``check_backend`` for the construction)."""
    if backend == "torch":
        return False
    if backend == "cuda":
        if not x.is_cuda:
            raise KernelUnavailableError(
                f"{block}(backend='cuda') got an input on {x.device}; move the model and input "
                f"to a CUDA device, or use backend='auto' or 'torch'."
            )
        return True
    return kernel is not None and x.is_cuda


def check_sequence(x: Tensor, d_model: int, who: str) -> None:
    """Raise ValueError unless x is (batch, length >= 1, d_model)."""
    if x.dim() != 3 or x.shape[-1] != d_model or x.shape[1] == 0:
        raise ValueError(
            f"{who} expects input of shape (batch, length >= 1, d_model={d_model}), "
            f"got shape {tuple(x.shape)}"
        )


def check_step_input(x_t: Tensor, d_model: int, who: str) -> None:
    """Raise ValueError unless x_t is (batch, d_model)."""
    if x_t.dim() != 2 or x_t.shape[-1] != d_model:
        raise ValueError(
            f"{who}.step expects input of shape (batch, d_model={d_model}), "
            f"got shape {tuple(x_t.shape)}"
        )


def check_reset(reset: Tensor, shape: tuple[int, ...], who: str) -> None:
    """Raise ValueError unless ``reset`` is a bool tensor of ``shape``: (batch, L) or (batch,)."""
    if (not isinstance(reset, Tensor) or reset.dtype != torch.bool
            or tuple(reset.shape) != tuple(shape)):
        got = (f"{reset.dtype} of shape {tuple(reset.shape)}" if isinstance(reset, Tensor)
               else type(reset).__name__)
        raise ValueError(f"{who} expects reset as a bool tensor of shape {tuple(shape)}, "
                         f"got {got}")


def reset_state(state: SSMState, reset: Tensor) -> SSMState:
    """``state`` with the rows where ``reset`` (batch,) is True replaced by zeros."""
    return SSMState(*(t.masked_fill(reset.view(-1, *(1,) * (t.dim() - 1)), 0.0) for t in state))


def check_state(state: SSMState, conv_shape: tuple[int, ...], ssm_shape: tuple[int, ...],
                batch: int, who: str) -> None:
    """Raise ValueError unless ``state`` holds tensors of the block's shapes for this batch."""
    if not isinstance(state, SSMState):
        raise ValueError(f"{who} expects state as an SSMState(conv, ssm), got {type(state)}")
    want = ((batch, *conv_shape), (batch, *ssm_shape))
    got = (tuple(state.conv.shape), tuple(state.ssm.shape))
    if got != want:
        raise ValueError(f"{who} expects state shapes (conv, ssm) {want}, got {got}")


def check_positive(**values: float) -> None:
    """Raise ValueError naming the first argument that is not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")


def dt_bias_init(
    n: int, dt_min: float, dt_max: float, dt_init_floor: float, device=None, dtype=None
) -> Tensor:
    """Bias b with softplus(b) log-uniform in [dt_min, dt_max] (floored at dt_init_floor)."""
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
    log_dt = torch.rand(n, device=device, dtype=dtype) * (math.log(dt_max) - math.log(dt_min))
    dt = torch.exp(log_dt + math.log(dt_min)).clamp(min=dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))  # inverse of softplus


class Mamba(nn.Module):
    """Mamba-1 block (selective SSM); input and output (batch, L, d_model).

    Args (as mamba-ssm's ``Mamba``):
        d_model: model width. d_state: SSM state size N. d_conv: convolution width.
        expand: d_inner = expand * d_model. dt_rank: rank of the Δ projection ("auto":
        ceil(d_model / 16)). dt_min, dt_max, dt_init_floor: range of the initial Δ.
        dt_init: "random" or "constant" init of dt_proj.weight, scaled by dt_scale.
        conv_bias: bias in the convolution. bias: biases in in_proj and out_proj.
        backend: "auto", "torch" or "cuda" (see the module docstring).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        backend: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_positive(d_model=d_model, d_state=d_state, d_conv=d_conv, expand=expand)
        if dt_rank != "auto":
            check_positive(dt_rank=dt_rank)
        if dt_init not in ("random", "constant"):
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        check_backend(backend, _load_selective_scan(), "Mamba")
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.backend = backend

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias, **factory)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
        # Δ starts in [dt_min, dt_max] and the low-rank path keeps its variance.
        std = self.dt_rank**-0.5 * dt_scale
        with torch.no_grad():
            if dt_init == "constant":
                self.dt_proj.weight.fill_(std)
            else:
                self.dt_proj.weight.uniform_(-std, std)
            self.dt_proj.bias.copy_(dt_bias_init(self.d_inner, dt_min, dt_max, dt_init_floor,
                                                 **factory))
        # S4D-real: A[:, n] = -(n + 1); kept in fp32 as log.
        a = torch.arange(1, d_state + 1, dtype=torch.float32, device=device)
        self.A_log = nn.Parameter(torch.log(a).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> SSMState:
        """Zero state: conv (batch, d_inner, d_conv), ssm (batch, d_inner, d_state)."""
        device = self.A_log.device if device is None else device
        dtype = self.in_proj.weight.dtype if dtype is None else dtype
        return SSMState(
            torch.zeros(batch_size, self.d_inner, self.d_conv, device=device, dtype=dtype),
            torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=dtype),
        )

    def _selection(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Input-dependent Δ (softplus, > 0), B and C from the convolved input (..., d_inner)."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.softplus(self.dt_proj(dt)), B, C

    def _check_state(self, state: SSMState, batch: int) -> None:
        check_state(state, (self.d_inner, self.d_conv), (self.d_inner, self.d_state), batch,
                    "Mamba")

    def forward(self, x: Tensor, *, state: SSMState | None = None, reset: Tensor | None = None,
                return_state: bool = False) -> Tensor | tuple[Tensor, SSMState]:
        """Run a sequence. x: (batch, L, d_model) -> y (batch, L, d_model), and with
        ``return_state`` the final state too (see the module docstring for state and reset).

        mamba-ssm's kernel can neither start from a given SSM state nor reset, so calls with a
        state or a reset use the torch scan.
        """
        check_sequence(x, self.d_model, "Mamba")
        if state is not None:
            self._check_state(state, x.shape[0])
        if reset is not None:
            check_reset(reset, x.shape[:2], "Mamba")
        xin, z = self.in_proj(x).chunk(2, dim=-1)
        xc, conv_state = causal_conv1d(xin, self.conv1d.weight, self.conv1d.bias,
                                       None if state is None else state.conv, reset)
        xc = F.silu(xc)
        delta, B, C = self._selection(xc)
        A = -torch.exp(self.A_log.float())
        kernel = _load_selective_scan()
        if use_kernel(self.backend, kernel, x, "Mamba") and state is None and reset is None:
            y, ssm_state = kernel(
                xc.transpose(1, 2).contiguous(), delta.transpose(1, 2).contiguous(), A,
                B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(), self.D.float(),
                z=z.transpose(1, 2).contiguous(), delta_softplus=False, return_last_state=True,
            )
            y = y.transpose(1, 2)
        else:
            y, ssm_state = selective_scan(xc, delta, A, B, C, self.D,
                                          None if state is None else state.ssm, reset)
            y = y * F.silu(z)
        y = self.out_proj(y.to(x.dtype))
        return (y, SSMState(conv_state, ssm_state)) if return_state else y

    def step(self, x_t: Tensor, state: SSMState | None = None,
             reset: Tensor | None = None) -> tuple[Tensor, SSMState]:
        """One recurrent step. x_t: (batch, d_model) -> y_t (batch, d_model), new state.

        reset: (batch,) bool or None; True rows start from the zero state. Runs in torch on
        every backend (one step is a few small ops; the kernels pay off over sequences). The
        state is not modified in place, so gradients flow through rollouts.
        """
        check_step_input(x_t, self.d_model, "Mamba")
        if state is None:
            state = self.initial_state(x_t.shape[0], x_t.device, x_t.dtype)
        self._check_state(state, x_t.shape[0])
        if reset is not None:
            check_reset(reset, x_t.shape[:1], "Mamba.step")
            state = reset_state(state, reset)
        xin, z = self.in_proj(x_t).chunk(2, dim=-1)
        xc, conv_state = causal_conv1d_step(xin, self.conv1d.weight, self.conv1d.bias,
                                            state.conv)
        xc = F.silu(xc)
        delta, B, C = self._selection(xc)
        A = -torch.exp(self.A_log.float())
        y, ssm_state = selective_step(state.ssm, xc, delta, A, B, C, self.D)
        y = y * F.silu(z)
        return self.out_proj(y.to(x_t.dtype)), SSMState(conv_state, ssm_state)
