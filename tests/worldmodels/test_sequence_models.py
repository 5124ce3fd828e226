"""Sequence models: step mode equals the parallel pass, resets, gradients, errors, mamba-ssm
layouts and calls."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import deeprl.worldmodels.mamba as mamba_module
import deeprl.worldmodels.mamba2 as mamba2_module
from deeprl.worldmodels import (
    SEQUENCE_MODELS,
    KernelUnavailableError,
    Mamba,
    Mamba2,
    Mamba2Model,
    SSMState,
    TransformerModel,
    make_sequence_model,
)
from deeprl.worldmodels.scans import selective_scan_reference, ssd_reference

SMALL = {
    "mamba2": {"d_model": 32, "n_layers": 2, "d_state": 8, "headdim": 16, "chunk_size": 4},
    "mamba": {"d_model": 32, "n_layers": 2, "d_state": 8},
    "gru": {"d_model": 32, "n_layers": 2},
    "gru-learned": {"d_model": 32, "n_layers": 2, "learned_initial": True},
    "gru-norm": {"d_model": 32, "n_layers": 2, "norm": True, "learned_initial": True},
    "transformer": {"d_model": 32, "n_layers": 2, "n_heads": 4},
    "transformer-window": {"d_model": 32, "n_layers": 2, "n_heads": 4, "window": 5},
}
TOL = {"rtol": 1e-4, "atol": 1e-5}


def _model(name):
    torch.manual_seed(0)
    model = make_sequence_model(name.split("-")[0], **SMALL[name])
    if getattr(model, "initial", None) is not None:  # a learned initial state: not zeros
        with torch.no_grad():
            model.initial.normal_()
    return model


def _leaves(state):
    """Tensors and ints of a state made of (named) tuples."""
    if isinstance(state, tuple | list):
        return [leaf for item in state for leaf in _leaves(item)]
    return [state]


def _assert_states_close(got, want):
    assert type(got) is type(want)
    for g, w in zip(_leaves(got), _leaves(want), strict=True):
        if isinstance(w, torch.Tensor):
            torch.testing.assert_close(g, w, **TOL)
        else:
            assert g == w


@pytest.mark.parametrize("name", list(SMALL))
def test_step_mode_equals_parallel_pass(name):
    model = _model(name)
    x = torch.randn(3, 13, 32)
    y, state = model(x)
    step_state = model.initial_state(3)
    ys = []
    for t in range(x.shape[1]):
        y_t, step_state = model.step(x[:, t], step_state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y, **TOL)
    _assert_states_close(step_state, state)


@pytest.mark.parametrize("name", list(SMALL))
def test_forward_continues_from_state(name):
    model = _model(name)
    x = torch.randn(2, 11, 32)
    y, state = model(x)
    y1, s1 = model(x[:, :3])
    y2, s2 = model(x[:, 3:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, **TOL)
    _assert_states_close(s2, state)


@pytest.mark.parametrize("name", ["mamba2", "mamba"])
def test_gradients_through_steps_equal_parallel(name):
    model = _model(name)
    x = torch.randn(2, 9, 32)
    y, _ = model(x)
    parallel = torch.autograd.grad(y.square().mean(), list(model.parameters()))
    state, ys = model.initial_state(2), []
    for t in range(9):
        y_t, state = model.step(x[:, t], state)
        ys.append(y_t)
    stepped = torch.autograd.grad(torch.stack(ys, 1).square().mean(), list(model.parameters()))
    for p, s in zip(parallel, stepped, strict=True):
        torch.testing.assert_close(p, s, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("name", list(SMALL))
def test_gradients_reach_every_parameter(name):
    model = _model(name)
    y, _ = model(torch.randn(2, 10, 32))
    y.square().mean().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, pname


# --- resets: windows that cross episodes ------------------------------------------------------
# Episode starts per row in a window of 9 steps: inside the first Mamba-2 chunk (of 4); at step 0,
# dropping a non-zero incoming state, then exactly on a chunk boundary; two inside chunks; none.
RESETS = [[3], [0, 4], [2, 7], []]
LENGTH = 9


def _reset_mask(resets, length):
    mask = torch.zeros(len(resets), length, dtype=torch.bool)
    for row, starts in enumerate(resets):
        mask[row, starts] = True
    return mask


def _state_row(state, row):
    """One batch row of a GRU or Mamba state, keeping the batch dimension."""
    if isinstance(state, torch.Tensor):  # GRU: (n_layers, batch, d_model)
        return state[:, row:row + 1]
    return tuple(SSMState(*(t[row:row + 1] for t in layer)) for layer in state)


def _window_crossing_episodes(seed=1):
    gen = torch.Generator().manual_seed(seed)
    warm, x, after = (torch.randn(4, n, 32, generator=gen) for n in (5, LENGTH, 3))
    return warm, x, after, _reset_mask(RESETS, LENGTH)


@pytest.mark.parametrize("name", list(SMALL))
def test_reset_equals_running_episodes_separately(name):
    model = _model(name)
    warm, x, after, reset = _window_crossing_episodes()
    _, state = model(warm)
    y, state = model(x, state, reset)
    y_after, _ = model(after, state)
    for row, starts in enumerate(RESETS):
        _, piece_state = model(warm[row:row + 1])
        for start, end in itertools.pairwise(sorted({0, *starts, LENGTH})):
            if start in starts:
                piece_state = None
            y_piece, piece_state = model(x[row:row + 1, start:end], piece_state)
            torch.testing.assert_close(y[row:row + 1, start:end], y_piece, **TOL)
        if not isinstance(model, TransformerModel):  # its cache also holds the masked keys
            _assert_states_close(_state_row(state, row), piece_state)
        # The final state continues as the last episode's does (the masked keys stay hidden).
        torch.testing.assert_close(y_after[row:row + 1], model(after[row:row + 1], piece_state)[0],
                                   **TOL)


@pytest.mark.parametrize("name", list(SMALL))
def test_step_with_reset_equals_forward_with_reset(name):
    model = _model(name)
    warm, x, _, reset = _window_crossing_episodes()
    _, state = model(warm)
    y, final = model(x, state, reset)
    ys = []
    for t in range(LENGTH):
        y_t, state = model.step(x[:, t], state, reset[:, t])
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y, **TOL)
    _assert_states_close(state, final)


@pytest.mark.parametrize("name", list(SMALL))
def test_forward_with_reset_continues_from_state(name):
    model = _model(name)
    _, x, after, reset = _window_crossing_episodes()
    y, state = model(x, None, reset)
    y_after, _ = model(after, state)
    y1, s1 = model(x[:, :4], None, reset[:, :4])
    y2, s2 = model(x[:, 4:], s1, reset[:, 4:])  # row 1 resets at the first step of this call
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, **TOL)
    _assert_states_close(s2, state)
    torch.testing.assert_close(model(after, s2)[0], y_after, **TOL)


@pytest.mark.parametrize("name", ["mamba2", "mamba"])
def test_gradients_with_resets_are_finite_and_equal_steps(name):
    model = _model(name)
    _, x, _, reset = _window_crossing_episodes()
    y, _ = model(x, None, reset)
    parallel = torch.autograd.grad(y.square().mean(), list(model.parameters()))
    state, ys = None, []
    for t in range(LENGTH):
        y_t, state = model.step(x[:, t], state, reset[:, t])
        ys.append(y_t)
    stepped = torch.autograd.grad(torch.stack(ys, 1).square().mean(), list(model.parameters()))
    for p, s in zip(parallel, stepped, strict=True):
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p, s, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("name", list(SMALL))
def test_bad_reset_is_refused(name):
    model = _model(name)
    x = torch.randn(2, 5, 32)
    with pytest.raises(ValueError, match=r"reset as a bool tensor of shape \(2, 5\)"):
        model(x, None, torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="reset as a bool tensor"):
        model(x, None, torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"step expects reset as a bool tensor of shape \(2,\)"):
        model.step(x[:, 0], model.initial_state(2), torch.zeros(2, 1, dtype=torch.bool))


# --- mamba-ssm compatibility ----------------------------------------------------------------------
# Names and shapes read from state-spaces/mamba (mamba_ssm/modules/mamba_simple.py, mamba2.py,
# ops/triton/layernorm_gated.py), for Drama's sizes d_model=512, d_state=16, d_conv=4, expand=2:
# Mamba: d_inner = 1024, dt_rank = ceil(512 / 16) = 32, in_proj -> [x, z], x_proj -> [dt, B, C].
MAMBA_SSM_MAMBA = {
    "in_proj.weight": (2048, 512),
    "conv1d.weight": (1024, 1, 4),
    "conv1d.bias": (1024,),
    "x_proj.weight": (32 + 2 * 16, 1024),
    "dt_proj.weight": (1024, 32),
    "dt_proj.bias": (1024,),
    "A_log": (1024, 16),
    "D": (1024,),
    "out_proj.weight": (512, 1024),
}
# Mamba2 with headdim=64, ngroups=1: nheads = 16, in_proj -> [z, x, B, C, dt] = 2*1024+2*16+16,
# conv over xBC = 1024 + 2*16 channels, D and A_log per head, grouped RMSNorm weight (d_inner,).
MAMBA_SSM_MAMBA2 = {
    "in_proj.weight": (2096, 512),
    "conv1d.weight": (1056, 1, 4),
    "conv1d.bias": (1056,),
    "dt_bias": (16,),
    "A_log": (16,),
    "D": (16,),
    "norm.weight": (1024,),
    "out_proj.weight": (512, 1024),
}


def _shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_state_dict_layout_matches_mamba_ssm():
    assert _shapes(Mamba(512, d_state=16)) == MAMBA_SSM_MAMBA
    assert _shapes(Mamba2(512, d_state=16, headdim=64)) == MAMBA_SSM_MAMBA2
    model = Mamba2Model(d_model=512, n_layers=2, d_state=16)
    want = {f"layers.{i}.mixer.{k}": v for i in range(2) for k, v in MAMBA_SSM_MAMBA2.items()}
    want |= {f"layers.{i}.norm.weight": (512,) for i in range(2)} | {"norm_f.weight": (512,)}
    assert _shapes(model) == want


def test_initialisation_follows_mamba_ssm():
    torch.manual_seed(0)
    block = Mamba(64, d_state=8, dt_min=0.001, dt_max=0.1)
    torch.testing.assert_close(block.A_log.exp(), torch.arange(1.0, 9.0).repeat(128, 1))
    dt = F.softplus(block.dt_proj.bias)
    assert dt.min() >= 0.001 * 0.999 and dt.max() <= 0.1 * 1.001
    block2 = Mamba2(64, d_state=8, headdim=16, A_init_range=(1, 16))
    assert ((block2.A_log.exp() >= 1) & (block2.A_log.exp() <= 16)).all()
    assert (block2.D == 1).all() and (block2.norm.weight == 1).all()


def test_state_dict_loads_across_blocks_of_same_config():
    a, b = Mamba2(32, d_state=8, headdim=16, chunk_size=4), Mamba2(32, d_state=8, headdim=16)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 9, 32)
    torch.testing.assert_close(a(x), b(x), **TOL)


@pytest.mark.parametrize(("block_type", "kwargs"),
                         [(Mamba, {"d_state": 8}), (Mamba2, {"d_state": 8, "headdim": 16})])
def test_blocks_are_called_as_mamba_ssm_blocks(block_type, kwargs):
    block = block_type(32, **kwargs)
    x = torch.randn(2, 6, 32)
    y = block(x)  # as mamba-ssm's: the output tensor alone
    assert isinstance(y, torch.Tensor) and y.shape == x.shape
    y_state, state = block(x, return_state=True)
    torch.testing.assert_close(y_state, y)
    assert isinstance(state, SSMState)


# --- backends -------------------------------------------------------------------------------------
# mamba-ssm kernels written to their documented contracts (selective_scan_fn: (B, D, L) layout,
# out = (y + D u) * silu(z); mamba_chunk_scan_combined: (B, L, H, P) layout, initial/final states)
# with the torch references inside: they check deeprl's glue around the kernels on CPU.


def fake_selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                           delta_softplus=False, return_last_state=False):
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    y, last = selective_scan_reference(u.mT, delta.mT, A, B.mT, C.mT, D)
    y = y.mT if z is None else y.mT * F.silu(z)
    return (y, last) if return_last_state else y


def fake_mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
                                   initial_states=None, seq_idx=None, cu_seqlens=None,
                                   dt_softplus=False, dt_limit=(0.0, math.inf),
                                   return_final_states=False, **kwargs):
    if dt_bias is not None:
        dt = dt + dt_bias
    if dt_softplus:
        dt = F.softplus(dt)
    D = D if D is None or D.dim() == 2 else D[:, None]
    # A step whose seq_idx differs from the step before (from 0 at the first) starts afresh.
    reset = None
    if seq_idx is not None:
        reset = torch.diff(seq_idx, dim=1, prepend=torch.zeros_like(seq_idx[:, :1])) != 0
    y, final = ssd_reference(x, dt.clamp(*dt_limit), A, B, C, D, initial_states, reset)
    return (y, final) if return_final_states else y


@pytest.mark.parametrize(
    ("module", "loader", "fake", "make"),
    [
        (mamba_module, "_load_selective_scan", fake_selective_scan_fn,
         lambda backend: Mamba(32, d_state=8, backend=backend)),
        (mamba2_module, "_load_chunk_scan", fake_mamba_chunk_scan_combined,
         lambda backend: Mamba2(32, d_state=8, headdim=8, ngroups=2, chunk_size=4,
                                backend=backend)),
        (mamba2_module, "_load_chunk_scan", fake_mamba_chunk_scan_combined,
         lambda backend: Mamba2(32, d_state=8, headdim=8, D_has_hdim=True, backend=backend)),
    ],
)
def test_kernel_path_glue_matches_torch_path(monkeypatch, module, loader, fake, make):
    torch.manual_seed(0)
    reference = make("torch")
    monkeypatch.setattr(module, loader, lambda: fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    kernel_block = make("cuda")
    kernel_block.load_state_dict(reference.state_dict())
    monkeypatch.setattr(module, "use_kernel", lambda *args: True)
    x = torch.randn(2, 10, 32)
    y, state = kernel_block(x, return_state=True)
    y_ref, state_ref = reference(x, return_state=True)
    torch.testing.assert_close(y, y_ref, **TOL)
    _assert_states_close(state, state_ref)
    # Resets (Mamba: the torch fallback; Mamba2: the kernel's seq_idx) after a non-zero state.
    reset = _reset_mask([[0, 4], [3, 7]], 10)
    y, state = kernel_block(x, state=state, reset=reset, return_state=True)
    y_ref, state_ref = reference(x, state=state_ref, reset=reset, return_state=True)
    torch.testing.assert_close(y, y_ref, **TOL)
    _assert_states_close(state, state_ref)


def test_auto_backend_runs_torch_on_cpu_even_with_kernels(monkeypatch):
    def kernel_must_not_run(*args, **kwargs):
        raise AssertionError("kernel called for a CPU input")

    monkeypatch.setattr(mamba2_module, "_load_chunk_scan", lambda: kernel_must_not_run)
    block = Mamba2(32, d_state=8, headdim=16, backend="auto")
    assert block(torch.randn(1, 5, 32)).shape == (1, 5, 32)


@pytest.mark.skipif(not torch.cuda.is_available() or mamba_module._load_selective_scan() is None,
                    reason="needs a CUDA GPU and mamba-ssm")
@pytest.mark.parametrize("kind", ["mamba", "mamba2"])
def test_cuda_kernels_match_torch_path(kind):
    torch.manual_seed(0)
    torch_model = make_sequence_model(kind, d_model=128, backend="torch").cuda()
    cuda_model = make_sequence_model(kind, d_model=128, backend="cuda").cuda()
    cuda_model.load_state_dict(torch_model.state_dict())
    x = torch.randn(2, 300, 128, device="cuda")
    torch.testing.assert_close(cuda_model(x)[0], torch_model(x)[0], rtol=1e-3, atol=1e-3)
    reset = torch.zeros(2, 300, dtype=torch.bool, device="cuda")
    reset[0, [0, 64, 100]] = reset[1, 255] = True  # Mamba-2's seq_idx; Mamba-1 runs torch
    torch.testing.assert_close(cuda_model(x, None, reset)[0], torch_model(x, None, reset)[0],
                               rtol=1e-3, atol=1e-3)


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SMALL))
def test_bad_input_shapes_name_expected_and_got(name):
    model = _model(name)
    expected = r"\(batch, length >= 1, d_model=32\), got shape \(4, 32\)"
    with pytest.raises(ValueError, match=expected):
        model(torch.randn(4, 32))
    with pytest.raises(ValueError, match=r"d_model=32\), got shape \(2, 5, 31\)"):
        model(torch.randn(2, 5, 31))
    with pytest.raises(ValueError, match=r"step expects input of shape \(batch, d_model=32\)"):
        model.step(torch.randn(2, 1, 32), model.initial_state(2))


@pytest.mark.parametrize("name", list(SMALL))
def test_state_for_another_batch_size_is_refused(name):
    model = _model(name)
    with pytest.raises(ValueError, match="state"):
        model(torch.randn(3, 4, 32), model.initial_state(2))


@pytest.mark.parametrize("chunk_size", [0, -4])
def test_chunk_size_must_be_positive(chunk_size):
    with pytest.raises(ValueError, match=f"chunk_size must be > 0, got {chunk_size}"):
        Mamba2(32, headdim=16, chunk_size=chunk_size)


def test_bad_block_configurations():
    with pytest.raises(ValueError, match="d_model \\* expand = 96 must be divisible by headdim=64"):
        Mamba2(48)
    with pytest.raises(ValueError, match="nheads = 4 must be divisible by ngroups=3"):
        Mamba2(32, headdim=16, ngroups=3)
    with pytest.raises(ValueError, match="d_state must be > 0"):
        Mamba(32, d_state=0)
    with pytest.raises(ValueError, match="Did you mean: cuda"):
        Mamba(32, backend="cdua")


@pytest.mark.parametrize("block", [Mamba, Mamba2])
def test_cuda_backend_without_gpu_names_the_fix(monkeypatch, block):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(KernelUnavailableError,
                       match=r'needs a CUDA GPU.*pip install "deeprl\[cuda\]".*backend="torch"'):
        block(64, backend="cuda")


@pytest.mark.parametrize(("block", "module", "loader"), [
    (Mamba, mamba_module, "_load_selective_scan"), (Mamba2, mamba2_module, "_load_chunk_scan")])
def test_cuda_backend_without_mamba_ssm_names_the_fix(monkeypatch, block, module, loader):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(module, loader, lambda: None)
    with pytest.raises(RuntimeError,
                       match=r'mamba-ssm.*pip install "deeprl\[cuda\]".*backend="torch"'):
        block(64, backend="cuda")


def test_cuda_backend_refuses_cpu_input(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(mamba2_module, "_load_chunk_scan", lambda: fake_mamba_chunk_scan_combined)
    block = Mamba2(32, headdim=16, backend="cuda")
    with pytest.raises(KernelUnavailableError, match="got an input on cpu"):
        block(torch.randn(1, 4, 32))


def test_unknown_sequence_model_lists_close_matches():
    with pytest.raises(ValueError, match="sequence model 'mamba3'.*Did you mean: mamba, mamba2"):
        make_sequence_model("mamba3")
    assert set(SEQUENCE_MODELS) == {"mamba2", "mamba", "gru", "transformer"}
