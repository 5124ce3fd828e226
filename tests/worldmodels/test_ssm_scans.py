"""Parallel scans equal their sequential references (outputs, final states and gradients), also
with resets."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from deeprl.worldmodels.scans import (
    causal_conv1d,
    causal_conv1d_step,
    linear_scan,
    linear_scan_reference,
    segsum,
    selective_scan,
    selective_scan_reference,
    ssd_chunked,
    ssd_reference,
)

LENGTHS = [1, 2, 7, 16, 37, 64, 100]
TOL = {"rtol": 1e-4, "atol": 1e-5}


def _grads(outputs, inputs, cotangents):
    return torch.autograd.grad(outputs, inputs, cotangents)


def _assert_close_all(got, want, **tol):
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **(tol or TOL))


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("broadcast", [False, True])
def test_linear_scan_matches_loop(length, broadcast):
    gen = torch.Generator().manual_seed(length)
    a_shape = (2, length, 3, 1) if broadcast else (2, length, 3, 4)
    a = torch.rand(a_shape, generator=gen).requires_grad_()
    b = torch.randn(2, length, 3, 4, generator=gen).requires_grad_()
    h0 = torch.randn(2, 3, 4, generator=gen).requires_grad_()
    h = linear_scan(a, b, h0)
    ref = linear_scan_reference(a, b, h0)
    torch.testing.assert_close(h, ref, **TOL)
    cot = torch.randn(ref.shape, generator=gen)
    _assert_close_all(_grads(h, (a, b, h0), cot), _grads(ref, (a, b, h0), cot))


def test_linear_scan_gradcheck_float64():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 11, 3, 1, dtype=torch.float64, generator=gen).requires_grad_()
    b = torch.randn(2, 11, 3, 2, dtype=torch.float64, generator=gen).requires_grad_()
    h0 = torch.randn(2, 3, 2, dtype=torch.float64, generator=gen).requires_grad_()
    assert torch.autograd.gradcheck(linear_scan, (a, b, h0))


def test_linear_scan_underflowing_decays_stay_finite():
    # Long products of small decays underflow to 0 instead of overflowing anywhere.
    a = torch.full((1, 4096, 2), 1e-3, requires_grad=True)
    b = torch.randn(1, 4096, 2, requires_grad=True)
    h = linear_scan(a, b)
    h.sum().backward()
    assert torch.isfinite(h).all() and torch.isfinite(a.grad).all()
    torch.testing.assert_close(h[:, -5:], linear_scan_reference(a, b)[:, -5:])


def _selective_inputs(length, gen, batch=2, d=6, n=4):
    u = torch.randn(batch, length, d, generator=gen)
    delta = F.softplus(torch.randn(batch, length, d, generator=gen) - 1)
    A = -torch.rand(d, n, generator=gen) * 4 - 0.5
    B = torch.randn(batch, length, n, generator=gen)
    C = torch.randn(batch, length, n, generator=gen)
    D = torch.randn(d, generator=gen)
    h0 = torch.randn(batch, d, n, generator=gen)
    return [t.requires_grad_() for t in (u, delta, A, B, C, D, h0)]


@pytest.mark.parametrize("length", LENGTHS)
def test_selective_scan_matches_reference(length):
    gen = torch.Generator().manual_seed(length)
    inputs = _selective_inputs(length, gen)
    y, h = selective_scan(*inputs)
    y_ref, h_ref = selective_scan_reference(*inputs)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(h, h_ref, **TOL)
    cots = torch.randn(y.shape, generator=gen), torch.randn(h.shape, generator=gen)
    _assert_close_all(_grads((y, h), inputs, cots), _grads((y_ref, h_ref), inputs, cots))


def _ssd_inputs(length, gen, d_per_head, batch=2, nheads=4, headdim=3, ngroups=2, n=5):
    x = torch.randn(batch, length, nheads, headdim, generator=gen)
    dt = F.softplus(torch.randn(batch, length, nheads, generator=gen) - 1)
    A = -torch.rand(nheads, generator=gen) * 4 - 0.5
    B = torch.randn(batch, length, ngroups, n, generator=gen)
    C = torch.randn(batch, length, ngroups, n, generator=gen)
    D = torch.randn(nheads, headdim if d_per_head else 1, generator=gen)
    h0 = torch.randn(batch, nheads, headdim, n, generator=gen)
    return [t.requires_grad_() for t in (x, dt, A, B, C, D, h0)]


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("chunk_size", [1, 16])
def test_ssd_chunked_matches_reference(length, chunk_size):
    gen = torch.Generator().manual_seed(length)
    x, dt, A, B, C, D, h0 = inputs = _ssd_inputs(length, gen, d_per_head=length % 2 == 0)
    y, h = ssd_chunked(x, dt, A, B, C, chunk_size, D=D, h0=h0)
    y_ref, h_ref = ssd_reference(x, dt, A, B, C, D=D, h0=h0)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(h, h_ref, **TOL)
    cots = torch.randn(y.shape, generator=gen), torch.randn(h.shape, generator=gen)
    _assert_close_all(_grads((y, h), inputs, cots), _grads((y_ref, h_ref), inputs, cots))


def test_ssd_chunked_with_large_decays_is_finite():
    # Δ A down to -200 per step: chunk-local segment sums keep every exponent <= 0.
    gen = torch.Generator().manual_seed(0)
    x, dt, A, B, C, D, h0 = _ssd_inputs(64, gen, d_per_head=False)
    dt = (dt * 50).detach().requires_grad_()
    y, h = ssd_chunked(x, dt, A, B, C, 16, D=D, h0=h0)
    y_ref, h_ref = ssd_reference(x, dt, A, B, C, D=D, h0=h0)
    torch.testing.assert_close(y, y_ref, **TOL)
    y.sum().backward()
    assert torch.isfinite(dt.grad).all()


def test_segsum():
    a = torch.tensor([1.0, 2.0, 3.0])
    inf = float("-inf")
    want = torch.tensor([[0.0, inf, inf], [2.0, 0.0, inf], [5.0, 3.0, 0.0]])
    torch.testing.assert_close(segsum(a), want)


def test_causal_conv_continues_from_state_and_matches_steps():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 5, generator=gen)
    weight, bias = torch.randn(5, 1, 4, generator=gen), torch.randn(5, generator=gen)
    y, state = causal_conv1d(x, weight, bias)
    want = F.conv1d(x.transpose(1, 2), weight, bias, padding=3, groups=5)[..., :9]
    torch.testing.assert_close(y, want.transpose(1, 2))
    y1, s1 = causal_conv1d(x[:, :2], weight, bias)  # shorter than the kernel
    y2, s2 = causal_conv1d(x[:, 2:], weight, bias, s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y)
    torch.testing.assert_close(s2, state)
    s = torch.zeros(2, 5, 4)
    for t in range(9):
        y_t, s = causal_conv1d_step(x[:, t], weight, bias, s)
        torch.testing.assert_close(y_t, y[:, t])
    torch.testing.assert_close(s, state)


# --- resets ---------------------------------------------------------------------------------------
# 13 steps; per row: step 0 (after a non-zero h0) and 4, a chunk boundary for chunks of 4; two
# consecutive steps inside a chunk; 8 and 12, chunk boundaries, 12 the last step; none.
RESETS = [[0, 4], [5, 6], [8, 12], []]
RESET_LENGTH = 13


def _reset_mask():
    mask = torch.zeros(len(RESETS), RESET_LENGTH, dtype=torch.bool)
    for row, starts in enumerate(RESETS):
        mask[row, starts] = True
    return mask


def _assert_restarts_after_last_reset(y, h, run_fresh):
    """Each row from its last reset on equals ``run_fresh(row, start)`` from a zero state."""
    for row, starts in enumerate(RESETS):
        if starts:
            y_fresh, h_fresh = run_fresh(row, starts[-1])
            torch.testing.assert_close(y[row:row + 1, starts[-1]:], y_fresh, **TOL)
            torch.testing.assert_close(h[row:row + 1], h_fresh, **TOL)


def _assert_grads_match_and_finite(outputs, ref_outputs, inputs, gen):
    cots = [torch.randn(o.shape, generator=gen) for o in outputs]
    grads = _grads(outputs, inputs, cots)
    assert all(torch.isfinite(g).all() for g in grads)
    _assert_close_all(grads, _grads(ref_outputs, inputs, cots))


def test_selective_scan_with_resets_matches_reference():
    gen = torch.Generator().manual_seed(0)
    u, delta, A, B, C, D, h0 = inputs = _selective_inputs(RESET_LENGTH, gen, batch=4)
    reset = _reset_mask()
    y, h = selective_scan(*inputs, reset=reset)
    y_ref, h_ref = selective_scan_reference(*inputs, reset=reset)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(h, h_ref, **TOL)
    _assert_restarts_after_last_reset(y, h, lambda row, t: selective_scan(
        u[row:row + 1, t:], delta[row:row + 1, t:], A, B[row:row + 1, t:], C[row:row + 1, t:], D))
    _assert_grads_match_and_finite((y, h), (y_ref, h_ref), inputs, gen)


@pytest.mark.parametrize("chunk_size", [1, 4, 5, 16])
def test_ssd_chunked_with_resets_matches_reference(chunk_size):
    gen = torch.Generator().manual_seed(chunk_size)
    x, dt, A, B, C, D, h0 = inputs = _ssd_inputs(RESET_LENGTH, gen, d_per_head=True, batch=4)
    reset = _reset_mask()
    y, h = ssd_chunked(x, dt, A, B, C, chunk_size, D=D, h0=h0, reset=reset)
    y_ref, h_ref = ssd_reference(x, dt, A, B, C, D=D, h0=h0, reset=reset)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(h, h_ref, **TOL)
    _assert_restarts_after_last_reset(y, h, lambda row, t: ssd_chunked(
        x[row:row + 1, t:], dt[row:row + 1, t:], A, B[row:row + 1, t:], C[row:row + 1, t:],
        chunk_size, D=D))
    _assert_grads_match_and_finite((y, h), (y_ref, h_ref), inputs, gen)


def test_causal_conv_reset_hides_inputs_before_it():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, RESET_LENGTH, 5, generator=gen)
    weight, bias = torch.randn(5, 1, 4, generator=gen), torch.randn(5, generator=gen)
    state = torch.randn(4, 5, 4, generator=gen)
    y, new_state = causal_conv1d(x, weight, bias, state, _reset_mask())
    for row, starts in enumerate(RESETS):
        piece_state = state[row:row + 1]
        for start, end in itertools.pairwise(sorted({0, *starts, RESET_LENGTH})):
            if start in starts:
                piece_state = None
            y_piece, piece_state = causal_conv1d(x[row:row + 1, start:end], weight, bias,
                                                 piece_state)
            torch.testing.assert_close(y[row:row + 1, start:end], y_piece)
        torch.testing.assert_close(new_state[row:row + 1], piece_state)
