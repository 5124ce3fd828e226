"""Pure-PyTorch scans for selective state-space models (Mamba-1 and Mamba-2/SSD).

Papers: Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"
(selective scan), and Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient
Algorithms Through Structured State Space Duality" (SSD, Mamba-2).

Both models run the discretised linear recurrence (zero-order hold for A, Euler step for B)

    h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t,        y_t = C_t h_t + D x_t.

* Mamba-1 (selective scan): A is diagonal, one row per channel, A: (d_inner, d_state); Δ_t is per
  channel; the state is (batch, d_inner, d_state).
* Mamba-2 (SSD): A is one scalar per head; Δ_t is per head; each head carries ``headdim``
  channels that share B_t and C_t of their group; the state is (batch, nheads, headdim, d_state).

Each recurrence comes in three forms that agree up to float rounding:

* a recurrent step (``selective_step``, ``ssd_step``) for autoregressive imagination;
* a sequential reference (``*_reference``): the step in a Python loop over time, ground truth
  for tests;
* a parallel form for training without a loop over time steps:
  - ``selective_scan`` runs ``linear_scan``, a work-efficient (Blelloch) up-sweep/down-sweep scan
    of the first-order recurrence h_t = a_t h_{t-1} + b_t over 2 log2(L) levels; its backward is
    the same scan run backwards in time on the adjoint, lambda_t = g_t + a_{t+1} lambda_{t+1}.
    Only products of decays a_t in (0, 1] are formed, so nothing can overflow.
  - ``ssd_chunked`` is SSD's chunked decomposition. With chunks of Q steps and, inside a chunk,
    the cumulative log-decay s_i = sum_{k<=i} Δ_k A, the output of step i of chunk c is

        y_i = sum_{j<=i in c} exp(s_i - s_j) (C_i . B_j) Δ_j x_j     (1) diagonal block
            + exp(s_i) C_i . H_{c-1}                                 (4) off-diagonal blocks
            + D x_i,

    where S_c = sum_j exp(s_Q - s_j) Δ_j x_j B_j^T is the state chunk c adds      (2) and
    H_c = exp(s_Q) H_{c-1} + S_c is a linear scan over the L/Q chunks             (3).
    Every exponent is a sum of non-positive log-decays inside one chunk (segment sums with -inf
    above the diagonal), so no cumulative sum over the whole sequence is ever subtracted.

Resets (episode starts inside a window): the parallel forms and the references take ``reset``,
(batch, L) bool, True where step t starts afresh: the state before it (h_{t-1}, or h0 at t = 0)
is dropped, h_t = 0 * h_{t-1} + Δ_t B_t x_t. ``selective_scan`` sets those decays to 0;
``ssd_chunked`` sets their log-decays to -inf, so every exp(segment sum) that crosses a reset,
inside a chunk (1, 2) or from the chunks before it (3, 4), is exactly 0 (exponents are sums,
never differences, so no -inf - (-inf) = NaN arises). ``causal_conv1d`` hides the inputs before
a reset from the windows after it. The recurrent steps take no reset: zero the state's rows first.

Time is dimension 1 everywhere (batch first, as the modules' inputs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "causal_conv1d",
    "causal_conv1d_step",
    "linear_scan",
    "linear_scan_reference",
    "segsum",
    "selective_scan",
    "selective_scan_reference",
    "selective_step",
    "ssd_chunked",
    "ssd_reference",
    "ssd_step",
]


# --- first-order linear recurrence h_t = a_t h_{t-1} + b_t ---------------------------------------


def _combine_(a: Tensor, b: Tensor, start: int, half: int, step: int, update_a: bool) -> None:
    """For i = start, start + step, ...: b_i += a_i b_{i-half} (and a_i *= a_{i-half}), in place."""
    length = b.shape[1]
    if start >= length:
        return
    count = len(range(start, length, step))
    cur = slice(start, None, step)
    prev = slice(start - half, start - half + (count - 1) * step + 1, step)
    # cur and prev are disjoint sets of time steps, so the in-place updates do not alias.
    b[:, cur].addcmul_(a[:, cur], b[:, prev])
    if update_a:
        a[:, cur].mul_(a[:, prev])


def _scan_(a: Tensor, b: Tensor) -> Tensor:
    """Blelloch scan in place along dim 1: ``b`` becomes h (h_{-1} = 0); ``a`` is overwritten.

    Up-sweep: after the level with block size ``step``, index i = step - 1 (mod step) holds the
    aggregate of the ``step`` steps ending at i. Down-sweep: indices i = 3 step/2 - 1 (mod step)
    then take the full prefix ending at i - step/2. Works for any length, not only powers of 2.
    """
    length = b.shape[1]
    step = 2
    while step <= length:
        _combine_(a, b, step - 1, step // 2, step, update_a=True)
        step *= 2
    step //= 2
    while step >= 2:
        _combine_(a, b, step + step // 2 - 1, step // 2, step, update_a=False)
        step //= 2
    return b


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        work = b.clone()
        work[:, 0].addcmul_(a[:, 0], h0)
        h = _scan_(a.clone(), work)
        ctx.save_for_backward(a, h0, h)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        a, h0, h = ctx.saved_tensors
        # Adjoint lambda_t = g_t + a_{t+1} lambda_{t+1}: the same recurrence, backwards in time.
        a_rev = torch.cat([torch.zeros_like(a[:, :1]), a[:, 1:].flip(1)], dim=1)
        lam = _scan_(a_rev, grad_h.flip(1)).flip(1)
        grad_a = grad_h0 = None
        if ctx.needs_input_grad[0]:
            h_prev = torch.cat([h0.unsqueeze(1), h[:, :-1]], dim=1)
            grad_a = (lam * h_prev).sum_to_size(a.shape)
        if ctx.needs_input_grad[2]:
            grad_h0 = (a[:, 0] * lam[:, 0]).sum_to_size(h0.shape)
        return grad_a, lam, grad_h0


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """All states of h_t = a_t h_{t-1} + b_t along dim 1, in parallel (2 log2(L) levels).

    Args:
        a: decays, (batch, L, ...) broadcastable to ``b`` (size-1 dims allowed except time).
        b: inputs, (batch, L, *state_shape).
        h0: state before the first step, (batch, *state_shape); zeros when None.

    Returns:
        h: (batch, L, *state_shape); ``h[:, -1]`` is the final state. Differentiable in a, b, h0.
    """
    if a.dim() != b.dim() or a.shape[:2] != b.shape[:2]:
        raise ValueError(
            f"linear_scan needs a and b with the same (batch, length) and rank, "
            f"got a {tuple(a.shape)} and b {tuple(b.shape)}"
        )
    if h0 is None:
        h0 = b.new_zeros(b.shape[:1] + b.shape[2:])
    a, b, h0 = (t.to(torch.promote_types(a.dtype, b.dtype)) for t in (a, b, h0))
    return _LinearScan.apply(a, b, h0)


def linear_scan_reference(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """``linear_scan`` with a Python loop over time (ground truth for tests)."""
    h = b.new_zeros(b.shape[:1] + b.shape[2:]) if h0 is None else h0
    states = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        states.append(h)
    return torch.stack(states, dim=1)


# --- causal depthwise convolution -----------------------------------------------------------------


def causal_conv1d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    state: Tensor | None = None,
    reset: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Causal depthwise convolution over time, continuing from ``state``.

    Args:
        x: (batch, L, channels).
        weight: (channels, 1, width), as ``nn.Conv1d(groups=channels).weight``.
        bias: (channels,) or None.
        state: (batch, channels, width), the last ``width`` inputs seen (zeros at the start).
        reset: (batch, L) bool or None; where True, the output at that step and after sees no
            input (nor state) from before it, as if the row started there from zeros.

    Returns:
        y: (batch, L, channels) and the new state (batch, channels, width).
    """
    width = weight.shape[-1]
    xt = x.transpose(1, 2)
    if state is None:
        padded = F.pad(xt, (width - 1, 0))
    else:
        padded = torch.cat([state[:, :, 1:].to(xt.dtype), xt], dim=2)
    if reset is None:
        y = F.conv1d(padded, weight, bias, groups=weight.shape[0])
        return y.transpose(1, 2), padded[:, :, -width:]
    # Window t holds the inputs at steps t - width + 1 ... t; zero those before the latest reset.
    windows = padded.unfold(2, width, 1)  # (batch, channels, L, width)
    steps = torch.arange(x.shape[1], device=x.device)
    latest = torch.where(reset, steps, -width).cummax(dim=1).values  # (batch, L); -width: none
    taps = steps.unsqueeze(-1) + torch.arange(1 - width, 1, device=x.device)  # (L, width)
    windows = windows.masked_fill((taps < latest.unsqueeze(-1)).unsqueeze(1), 0.0)
    y = (windows * weight).sum(-1)
    if bias is not None:
        y = y + bias.unsqueeze(-1)
    return y.transpose(1, 2), windows[:, :, -1]


def causal_conv1d_step(
    x_t: Tensor, weight: Tensor, bias: Tensor | None, state: Tensor
) -> tuple[Tensor, Tensor]:
    """One step of ``causal_conv1d``: x_t (batch, channels) -> y_t (batch, channels), new state."""
    state = torch.cat([state[:, :, 1:], x_t.unsqueeze(-1).to(state.dtype)], dim=2)
    y = (state * weight.squeeze(1)).sum(-1)
    if bias is not None:
        y = y + bias
    return y, state


# --- Mamba-1: selective scan ----------------------------------------------------------------------


def selective_step(
    h: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """One step of the selective SSM.

    Args:
        h: state (batch, d_inner, d_state).
        u, delta: input and positive step size, (batch, d_inner).
        A: (d_inner, d_state), negative. B, C: (batch, d_state). D: (d_inner,) or None.

    Returns:
        y: (batch, d_inner) and the new state.
    """
    h = torch.exp(delta.unsqueeze(-1) * A) * h + (delta * u).unsqueeze(-1) * B.unsqueeze(1)
    y = (h * C.unsqueeze(1)).sum(-1)
    if D is not None:
        y = y + D * u
    return y, h


def selective_scan_reference(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    h0: Tensor | None = None,
    reset: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``selective_scan`` as a loop of ``selective_step`` over time (ground truth)."""
    h = u.new_zeros(u.shape[0], *A.shape) if h0 is None else h0
    ys = []
    for t in range(u.shape[1]):
        if reset is not None:
            h = h.masked_fill(reset[:, t, None, None], 0.0)
        y, h = selective_step(h, u[:, t], delta[:, t], A, B[:, t], C[:, t], D)
        ys.append(y)
    return torch.stack(ys, dim=1), h


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    h0: Tensor | None = None,
    reset: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Selective SSM over a whole sequence in parallel.

    Args:
        u, delta: (batch, L, d_inner); delta > 0 (after softplus).
        A: (d_inner, d_state), negative. B, C: (batch, L, d_state). D: (d_inner,) or None.
        h0: initial state (batch, d_inner, d_state) or None for zeros.
        reset: (batch, L) bool or None; True where the state before the step is dropped.

    Returns:
        y: (batch, L, d_inner) and the final state (batch, d_inner, d_state).
    """
    decay = torch.exp(delta.unsqueeze(-1) * A)  # (batch, L, d_inner, d_state)
    if reset is not None:
        decay = decay.masked_fill(reset[:, :, None, None], 0.0)
    inputs = (delta * u).unsqueeze(-1) * B.unsqueeze(2)
    h = linear_scan(decay, inputs, h0)
    y = torch.einsum("bldn,bln->bld", h, C.to(h.dtype))
    if D is not None:
        y = y + D * u
    return y, h[:, -1]


# --- Mamba-2: state space duality -----------------------------------------------------------------


def _group_to_heads(t: Tensor, nheads: int) -> Tensor:
    """(..., ngroups, N) -> (..., nheads, N): head h reads group h // (nheads / ngroups)."""
    return t.repeat_interleave(nheads // t.shape[-2], dim=-2)


def ssd_step(
    h: Tensor, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """One step of the SSD recurrence.

    Args:
        h: state (batch, nheads, headdim, d_state).
        x: (batch, nheads, headdim). dt: positive step size (batch, nheads). A: (nheads,), negative.
        B, C: (batch, ngroups, d_state). D: broadcastable to (nheads, headdim) or None.

    Returns:
        y: (batch, nheads, headdim) and the new state.
    """
    nheads = x.shape[1]
    B, C = _group_to_heads(B, nheads), _group_to_heads(C, nheads)
    decay = torch.exp(dt * A)[..., None, None]
    h = decay * h + (dt.unsqueeze(-1) * x).unsqueeze(-1) * B.unsqueeze(2)
    y = (h * C.unsqueeze(2)).sum(-1)
    if D is not None:
        y = y + D * x
    return y, h


def ssd_reference(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    h0: Tensor | None = None,
    reset: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``ssd_chunked`` as a loop of ``ssd_step`` over time (ground truth)."""
    batch, _, nheads, headdim = x.shape
    h = x.new_zeros(batch, nheads, headdim, B.shape[-1]) if h0 is None else h0
    ys = []
    for t in range(x.shape[1]):
        if reset is not None:
            h = h.masked_fill(reset[:, t, None, None, None], 0.0)
        y, h = ssd_step(h, x[:, t], dt[:, t], A, B[:, t], C[:, t], D)
        ys.append(y)
    return torch.stack(ys, dim=1), h


def segsum(a: Tensor) -> Tensor:
    """Segment sums of log-decays: out[..., i, j] = sum_{j<k<=i} a[..., k], -inf where j > i.

    Built by masked cumulative sums rather than cumsum differences, so entries are exact sums of
    the few terms they cover (no cancellation between large partial sums).
    """
    length = a.shape[-1]
    ones = torch.ones(length, length, dtype=torch.bool, device=a.device)
    terms = a.unsqueeze(-1).expand(*a.shape, length)  # terms[..., k, j] = a_k
    terms = terms.masked_fill(~torch.tril(ones, diagonal=-1), 0.0)
    return terms.cumsum(dim=-2).masked_fill(~torch.tril(ones), float("-inf"))


def ssd_chunked(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int,
    D: Tensor | None = None,
    h0: Tensor | None = None,
    reset: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """SSD over a whole sequence by its chunked decomposition (see the module docstring).

    Args:
        x: (batch, L, nheads, headdim). dt: positive step sizes (batch, L, nheads).
        A: (nheads,), negative. B, C: (batch, L, ngroups, d_state), nheads % ngroups == 0.
        chunk_size: steps per chunk Q; L need not be a multiple (the tail is zero-padded:
            Δ = 0 leaves the state unchanged). Chunks are shortened to L when L < Q.
        D: broadcastable to (nheads, headdim) or None. h0: (batch, nheads, headdim, d_state).
        reset: (batch, L) bool or None; True where the state before the step is dropped.

    Returns:
        y: (batch, L, nheads, headdim) and the final state (batch, nheads, headdim, d_state).
    """
    batch, length, nheads, headdim = x.shape
    ngroups, d_state = B.shape[-2:]
    reps = nheads // ngroups
    q = min(chunk_size, length)
    pad = -length % q
    if pad:
        x, dt, B, C = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, dt, B, C))
    nchunks = (length + pad) // q
    dtype = torch.promote_types(x.dtype, A.dtype)
    log_decay = (dt * A).to(dtype)
    if reset is not None:
        log_decay = log_decay.masked_fill(F.pad(reset, (0, pad)).unsqueeze(-1), float("-inf"))

    # b: batch, c: chunk, l/s: step in chunk, g: group, r: head in group, p: headdim, n: d_state
    xdt = (x * dt.unsqueeze(-1)).to(dtype).reshape(batch, nchunks, q, ngroups, reps, headdim)
    Bc = B.to(dtype).reshape(batch, nchunks, q, ngroups, d_state)
    Cc = C.to(dtype).reshape(batch, nchunks, q, ngroups, d_state)
    log_decay = log_decay.reshape(batch, nchunks, q, ngroups, reps).permute(0, 3, 4, 1, 2)
    cum = log_decay.cumsum(dim=-1)  # (b, g, r, c, l)

    # (1) diagonal blocks: attention-like form inside each chunk.
    scores = torch.einsum("bclgn,bcsgn->bgcls", Cc, Bc)
    decays = torch.exp(segsum(log_decay))  # (b, g, r, c, l, s)
    y = torch.einsum("bgrcls,bcsgrp->bclgrp", scores.unsqueeze(2) * decays, xdt)

    # (2) state each chunk adds, decayed to the chunk's end (the last row of the segment sums).
    to_end = decays[..., -1, :]
    chunk_states = torch.einsum("bclgn,bgrcl,bclgrp->bcgrpn", Bc, to_end, xdt)

    # (3) recurrence over chunks: H_c = exp(s_Q) H_{c-1} + S_c.
    chunk_decay = torch.exp(cum[..., -1]).permute(0, 3, 1, 2)[..., None, None]  # (b, c, g, r, 1, 1)
    if h0 is None:
        h0 = xdt.new_zeros(batch, ngroups, reps, headdim, d_state)
    else:
        h0 = h0.to(dtype).reshape(batch, ngroups, reps, headdim, d_state)
    states = linear_scan(chunk_decay, chunk_states, h0)
    before = torch.cat([h0.unsqueeze(1), states[:, :-1]], dim=1)

    # (4) off-diagonal blocks: the state entering the chunk, decayed to each step and read by C.
    y = y + torch.einsum("bclgn,bcgrpn,bgrcl->bclgrp", Cc, before, torch.exp(cum))

    y = y.reshape(batch, nchunks * q, nheads, headdim)[:, :length]
    if D is not None:
        y = y + D * x[:, :length]
    return y, states[:, -1].reshape(batch, nheads, headdim, d_state)
