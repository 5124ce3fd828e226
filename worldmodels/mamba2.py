"""Mamba-2 block: state space duality (SSD) in PyTorch, interchangeable with mamba-ssm's.

Paper: Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient Algorithms
Through Structured State Space Duality". Used by Drama (Wang et al., ICLR 2025, "Drama:
Mamba-Enabled Model-Based Reinforcement Learning Is Sample and Parameter Efficient") as the
world model's sequence model.

For an input u (batch, L, d_model) the block computes

    z, xBC, dt = split(in_proj(u))                 d_inner, d_inner + 2 G N, nheads wide
    x, B, C    = split(silu(causal_depthwise_conv(xBC)))   conv over x, B and C together
    Δ          = softplus(dt + dt_bias)            one step size per head (clamped to dt_limit)
    h_t        = exp(Δ_t A) h_{t-1} + Δ_t x_t B_t^T         A = -exp(A_log), a scalar per head
    y_t        = h_t C_t + D x_t
    out        = out_proj(RMSNorm_grouped(y * silu(z)))     (norm_before_gate=False)

with heads of ``headdim`` channels and ``ngroups`` groups of B/C shared by nheads/ngroups heads.
Training runs the chunked SSD decomposition (``scans.ssd_chunked``; equations there), imagination
runs ``step``. Constructor arguments, initialisation and parameter names/shapes follow mamba-ssm's
``Mamba2`` (without tensor parallelism and the ``d_ssm`` gated-MLP split), so ``state_dict``s load
either way. Calls as ``Mamba``'s: ``y = block(x)`` returns the tensor, as mamba-ssm's, and
``y, state = block(x, state=state, reset=reset, return_state=True)`` passes the recurrent state
and episode resets (see ``deeprl.worldmodels.mamba``). Backends as there: "cuda"/"auto" run
mamba-ssm's ``mamba_chunk_scan_combined`` for the scan; a reset becomes its ``seq_idx`` (the
episode number of each step in its row), which keeps episodes apart and gives
``initial_states`` to episode 0 only, as a reset needs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deeprl.worldmodels.mamba import (
    SSMState,
    check_backend,
    check_positive,
    check_reset,
    check_sequence,
    check_state,
    check_step_input,
    dt_bias_init,
    reset_state,
    use_kernel,
)
from deeprl.worldmodels.scans import causal_conv1d, causal_conv1d_step, ssd_chunked, ssd_step


@functools.cache
def _load_chunk_scan() -> Callable | None:
    """mamba-ssm's SSD kernel, or None when mamba-ssm (with triton) is not importable."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except ImportError:
        return None
    return mamba_chunk_scan_combined


class GatedRMSNorm(nn.Module):
    """RMSNorm over groups of ``group_size`` channels, gated by silu(z) (mamba-ssm's layout).

    norm_before_gate=False: weight * rmsnorm(y * silu(z)); True: weight * rmsnorm(y) * silu(z).
    """

    def __init__(self, hidden_size: int, eps: float = 1e-5, group_size: int | None = None,
                 norm_before_gate: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        self.eps = eps
        self.group_size = hidden_size if group_size is None else group_size
        self.norm_before_gate = norm_before_gate
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        """y, z: (..., hidden_size) -> (..., hidden_size), computed in at least fp32."""
        dtype = y.dtype
        y = y.float() if y.dtype in (torch.float16, torch.bfloat16) else y
        gate = F.silu(z.to(y.dtype))
        if not self.norm_before_gate:
            y = y * gate
        groups = y.unflatten(-1, (-1, self.group_size))
        groups = groups * torch.rsqrt(groups.square().mean(-1, keepdim=True) + self.eps)
        y = groups.flatten(-2) * self.weight
        if self.norm_before_gate:
            y = y * gate
        return y.to(dtype)


class Mamba2(nn.Module):
    """Mamba-2 block (SSD); input and output (batch, L, d_model).

    Args (as mamba-ssm's ``Mamba2``):
        d_model: model width. d_state: SSM state size N. d_conv: convolution width.
        conv_init: if set, conv weights ~ U(-conv_init, conv_init). expand: d_inner = expand *
        d_model. headdim: channels per head (nheads = d_inner / headdim). ngroups: groups of
        B/C. A_init_range: A = -U(A_init_range). D_has_hdim: D per channel instead of per head.
        rmsnorm, norm_before_gate: gated RMSNorm before out_proj (else y * silu(z)).
        dt_min, dt_max, dt_init_floor: range of the initial Δ. dt_limit: clamp of Δ.
        bias, conv_bias: biases of the projections / convolution. chunk_size: SSD chunk length.
        backend: "auto", "torch" or "cuda".
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        conv_init: float | None = None,
        expand: int = 2,
        headdim: int = 64,
        ngroups: int = 1,
        A_init_range: tuple[float, float] = (1, 16),
        D_has_hdim: bool = False,
        rmsnorm: bool = True,
        norm_before_gate: bool = False,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_limit: tuple[float, float] = (0.0, float("inf")),
        bias: bool = False,
        conv_bias: bool = True,
        chunk_size: int = 256,
        backend: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_positive(d_model=d_model, d_state=d_state, d_conv=d_conv, expand=expand,
                       headdim=headdim, ngroups=ngroups, chunk_size=chunk_size)
        d_inner = int(expand * d_model)
        if d_inner % headdim:
            raise ValueError(
                f"d_model * expand = {d_inner} must be divisible by headdim={headdim}"
            )
        nheads = d_inner // headdim
        if nheads % ngroups:
            raise ValueError(f"nheads = {nheads} must be divisible by ngroups={ngroups}")
        if not 0 < A_init_range[0] <= A_init_range[1]:
            raise ValueError(f"need 0 < A_init_range[0] <= A_init_range[1], got {A_init_range}")
        if not 0 <= dt_limit[0] < dt_limit[1]:
            raise ValueError(f"need 0 <= dt_limit[0] < dt_limit[1], got {dt_limit}")
        check_backend(backend, _load_chunk_scan(), "Mamba2")
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = d_inner
        self.headdim = headdim
        self.nheads = nheads
        self.ngroups = ngroups
        self.D_has_hdim = D_has_hdim
        self.rmsnorm = rmsnorm
        self.dt_limit = dt_limit
        self.chunk_size = chunk_size
        self.backend = backend
        self.conv_dim = d_inner + 2 * ngroups * d_state

        # in_proj output order: [z, x, B, C, dt].
        self.in_proj = nn.Linear(d_model, d_inner + self.conv_dim + nheads, bias=bias, **factory)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim,
                                padding=d_conv - 1, bias=conv_bias, **factory)
        if conv_init is not None:
            nn.init.uniform_(self.conv1d.weight, -conv_init, conv_init)
        self.dt_bias = nn.Parameter(dt_bias_init(nheads, dt_min, dt_max, dt_init_floor, **factory))
        a = torch.empty(nheads, dtype=torch.float32, device=device).uniform_(*A_init_range)
        self.A_log = nn.Parameter(torch.log(a).to(dtype))
        self.D = nn.Parameter(torch.ones(d_inner if D_has_hdim else nheads, device=device))
        if rmsnorm:
            self.norm = GatedRMSNorm(d_inner, eps=1e-5, group_size=d_inner // ngroups,
                                     norm_before_gate=norm_before_gate, **factory)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias, **factory)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> SSMState:
        """Zero state: conv (batch, conv_dim, d_conv), ssm (batch, nheads, headdim, d_state)."""
        device = self.A_log.device if device is None else device
        dtype = self.in_proj.weight.dtype if dtype is None else dtype
        return SSMState(
            torch.zeros(batch_size, self.conv_dim, self.d_conv, device=device, dtype=dtype),
            torch.zeros(batch_size, self.nheads, self.headdim, self.d_state, device=device,
                        dtype=dtype),
        )

    def _check_state(self, state: SSMState, batch: int) -> None:
        check_state(state, (self.conv_dim, self.d_conv),
                    (self.nheads, self.headdim, self.d_state), batch, "Mamba2")

    def _project(self, u: Tensor, conv_state: Tensor | None, step: bool,
                 reset: Tensor | None = None):
        """in_proj, convolution and Δ; shared by forward (..., L, ·) and step (..., ·)."""
        z, xbc, dt = self.in_proj(u).split([self.d_inner, self.conv_dim, self.nheads], dim=-1)
        if step:
            xbc, conv_state = causal_conv1d_step(xbc, self.conv1d.weight, self.conv1d.bias,
                                                 conv_state)
        else:
            xbc, conv_state = causal_conv1d(xbc, self.conv1d.weight, self.conv1d.bias,
                                            conv_state, reset)
        x, B, C = F.silu(xbc).split(
            [self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1
        )
        dt = F.softplus(dt + self.dt_bias)
        if self.dt_limit != (0.0, float("inf")):
            dt = dt.clamp(*self.dt_limit)
        x = x.unflatten(-1, (self.nheads, self.headdim))
        B = B.unflatten(-1, (self.ngroups, self.d_state))
        C = C.unflatten(-1, (self.ngroups, self.d_state))
        return z, x, B, C, dt, conv_state

    def _output(self, y: Tensor, z: Tensor, dtype: torch.dtype) -> Tensor:
        y = y.flatten(-2)
        y = self.norm(y, z) if self.rmsnorm else y * F.silu(z)
        return self.out_proj(y.to(dtype))

    def forward(self, x: Tensor, *, state: SSMState | None = None, reset: Tensor | None = None,
                return_state: bool = False) -> Tensor | tuple[Tensor, SSMState]:
        """Run a sequence. x: (batch, L, d_model) -> y (batch, L, d_model), and with
        ``return_state`` the final state too (state and reset as in ``Mamba.forward``).
        """
        check_sequence(x, self.d_model, "Mamba2")
        if state is not None:
            self._check_state(state, x.shape[0])
        if reset is not None:
            check_reset(reset, x.shape[:2], "Mamba2")
        z, xs, B, C, dt, conv_state = self._project(
            x, None if state is None else state.conv, step=False, reset=reset
        )
        A = -torch.exp(self.A_log.float())
        h0 = None if state is None else state.ssm
        kernel = _load_chunk_scan()
        if use_kernel(self.backend, kernel, x, "Mamba2"):
            D = self.D.view(self.nheads, self.headdim) if self.D_has_hdim else self.D
            seq_idx = None if reset is None else reset.cumsum(1, dtype=torch.int32)
            y, ssm_state = kernel(xs, dt, A, B, C, self.chunk_size, D=D, initial_states=h0,
                                  seq_idx=seq_idx, dt_softplus=False, return_final_states=True)
        else:
            y, ssm_state = ssd_chunked(xs, dt, A, B, C, self.chunk_size,
                                       D=self.D.view(self.nheads, -1), h0=h0, reset=reset)
        y = self._output(y, z, x.dtype)
        return (y, SSMState(conv_state, ssm_state)) if return_state else y

    def step(self, x_t: Tensor, state: SSMState | None = None,
             reset: Tensor | None = None) -> tuple[Tensor, SSMState]:
        """One recurrent step. x_t: (batch, d_model) -> y_t (batch, d_model), new state.

        reset: (batch,) bool or None; True rows start from the zero state. Runs in torch on
        every backend; the state is not modified in place.
        """
        check_step_input(x_t, self.d_model, "Mamba2")
        if state is None:
            state = self.initial_state(x_t.shape[0], x_t.device, x_t.dtype)
        self._check_state(state, x_t.shape[0])
        if reset is not None:
            check_reset(reset, x_t.shape[:1], "Mamba2.step")
            state = reset_state(state, reset)
        z, xs, B, C, dt, conv_state = self._project(x_t, state.conv, step=True)
        A = -torch.exp(self.A_log.float())
        y, ssm_state = ssd_step(state.ssm, xs, dt, A, B, C, self.D.view(self.nheads, -1))
        return self._output(y, z, x_t.dtype), SSMState(conv_state, ssm_state)
