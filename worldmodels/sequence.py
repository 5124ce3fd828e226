"""Sequence models for world models behind one interface: Mamba-2, Mamba, GRU, transformer.

Drama (Wang et al., ICLR 2025, "Drama: Mamba-Enabled Model-Based Reinforcement Learning Is
Sample and Parameter Efficient") replaces the RSSM's GRU / STORM's transformer by a stack of
Mamba-2 blocks: 2 residual layers of x <- x + Mamba2(RMSNorm(x)), d_model 512, d_state 16,
expand 2, headdim 64. ``Mamba2Model`` is that stack (``MambaModel`` the same with Mamba-1
blocks, Gu & Dao 2023); ``GRUModel`` and ``TransformerModel`` are the baselines. ``GRUModel``
wraps ``nn.GRU``, or with ``norm=True`` stacks DreamerV3's GRU cell with LayerNorm inside the
gates (``NormGRUCell``, the RSSM's default core), optionally from a learned initial state.

Every model maps (batch, L, d_model) -> (batch, L, d_model) causally and has two modes:

* ``forward(x, state=None, reset=None) -> (y, state)``: a whole sequence in parallel (training),
  optionally continuing from ``state``;
* ``step(x_t, state=None, reset=None) -> (y_t, state)``: one step (imagination), x_t
  (batch, d_model), with ``initial_state(batch_size)`` to start from.

``reset`` marks episode starts, so a training window may cross episodes: a bool tensor of shape
(batch, L) for ``forward``, (batch,) for ``step``, True where that step starts a new episode.
The state carried into such a step (from the step before, or the given state at the first step)
is replaced by the initial state for that row before the step runs, so each row's outputs and
final state equal running its episodes separately, each from ``initial_state``. The Mamba
models also cut their convolution window there; the transformer masks the keys before the
row's latest reset (RoPE is relative, so masking alone restarts positions), also in later calls
that continue from the returned ``KVCache``. ``reset=None`` costs nothing extra.

Running T steps one at a time gives the outputs and final state of one ``forward`` over the T
steps (up to float rounding), resets included. States are opaque per model (tuples of tensors),
never modified in place. ``make_sequence_model(kind, **kwargs)`` builds one by config name
(``worldmodel.sequence=mamba2``).
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deeprl.errors import close_matches
from deeprl.worldmodels.mamba import Mamba, check_reset, check_sequence, check_step_input
from deeprl.worldmodels.mamba2 import Mamba2

__all__ = [
    "SEQUENCE_MODELS",
    "GRUModel",
    "KVCache",
    "Mamba2Model",
    "MambaModel",
    "NormGRUCell",
    "SequenceModel",
    "TransformerModel",
    "make_sequence_model",
]


class SequenceModel(nn.Module, ABC):
    """Causal sequence model (batch, L, d_model) -> (batch, L, d_model) with a recurrent mode."""

    d_model: int

    @abstractmethod
    def forward(self, x: Tensor, state: Any = None,
                reset: Tensor | None = None) -> tuple[Tensor, Any]:
        """x: (batch, L, d_model), state from ``initial_state``/earlier calls or None (start),
        reset: (batch, L) bool, True where a step starts a new episode, or None.

        Returns y (batch, L, d_model) and the state after the last step.
        """

    @abstractmethod
    def step(self, x_t: Tensor, state: Any = None,
             reset: Tensor | None = None) -> tuple[Tensor, Any]:
        """x_t: (batch, d_model), reset: (batch,) bool or None -> y_t (batch, d_model) and the
        new state."""

    @abstractmethod
    def initial_state(self, batch_size: int, device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> Any:
        """The state before the first step (device/dtype default to the parameters')."""

    def _factory(self, device, dtype) -> dict:
        param = next(self.parameters())
        return {"device": param.device if device is None else device,
                "dtype": param.dtype if dtype is None else dtype}


def _check_layer_states(state: Any, n_layers: int, who: str) -> None:
    if not isinstance(state, tuple | list) or len(state) != n_layers:
        raise ValueError(f"{who} expects a state with one entry per layer ({n_layers}), "
                         f"got {type(state).__name__}")


class _PreNormResidual(nn.Module):
    """x <- x + mixer(RMSNorm(x)); names as mamba-ssm's ``Block`` (norm, mixer)."""

    def __init__(self, d_model: int, mixer: nn.Module, device=None, dtype=None) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(d_model, eps=1e-5, device=device, dtype=dtype)
        self.mixer = mixer


class _MambaStack(SequenceModel):
    """``n_layers`` pre-norm residual Mamba blocks and a final RMSNorm (mamba-ssm's MixerModel
    without the embedding: keys ``layers.{i}.norm.weight``, ``layers.{i}.mixer.*``,
    ``norm_f.weight``)."""

    def __init__(self, d_model: int, n_layers: int, make_mixer: Callable[[], nn.Module],
                 device=None, dtype=None) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.d_model = d_model
        self.n_layers = n_layers
        self.layers = nn.ModuleList(
            _PreNormResidual(d_model, make_mixer(), device, dtype) for _ in range(n_layers)
        )
        self.norm_f = nn.RMSNorm(d_model, eps=1e-5, device=device, dtype=dtype)
        # GPT-2 scheme, as mamba-ssm: residual outputs shrink with depth so the sum stays O(1).
        with torch.no_grad():
            for layer in self.layers:
                layer.mixer.out_proj.weight /= math.sqrt(n_layers)

    def forward(self, x: Tensor, state: tuple | None = None,
                reset: Tensor | None = None) -> tuple[Tensor, tuple]:
        who = type(self).__name__
        check_sequence(x, self.d_model, who)
        if state is None:
            state = (None,) * self.n_layers
        _check_layer_states(state, self.n_layers, who)
        new_state = []
        for layer, layer_state in zip(self.layers, state, strict=True):
            h, layer_state = layer.mixer(layer.norm(x), state=layer_state, reset=reset,
                                         return_state=True)
            x = x + h
            new_state.append(layer_state)
        return self.norm_f(x), tuple(new_state)

    def step(self, x_t: Tensor, state: tuple | None = None,
             reset: Tensor | None = None) -> tuple[Tensor, tuple]:
        who = type(self).__name__
        check_step_input(x_t, self.d_model, who)
        if state is None:
            state = self.initial_state(x_t.shape[0], x_t.device, x_t.dtype)
        _check_layer_states(state, self.n_layers, who)
        new_state = []
        for layer, layer_state in zip(self.layers, state, strict=True):
            h, layer_state = layer.mixer.step(layer.norm(x_t), layer_state, reset)
            x_t = x_t + h
            new_state.append(layer_state)
        return self.norm_f(x_t), tuple(new_state)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> tuple:
        """One ``SSMState(conv, ssm)`` of zeros per layer."""
        return tuple(layer.mixer.initial_state(batch_size, device, dtype) for layer in self.layers)


class Mamba2Model(_MambaStack):
    """Drama's sequence model: residual Mamba-2 blocks (defaults at Drama's size).

    Extra keyword arguments go to every ``Mamba2`` block (ngroups, dt_min, dt_max, ...).
    """

    def __init__(self, d_model: int = 512, n_layers: int = 2, d_state: int = 16,
                 d_conv: int = 4, expand: int = 2, headdim: int = 64, chunk_size: int = 64,
                 backend: str = "auto", device=None, dtype=None, **block_kwargs: Any) -> None:
        def make() -> Mamba2:
            return Mamba2(d_model, d_state=d_state, d_conv=d_conv, expand=expand,
                          headdim=headdim, chunk_size=chunk_size, backend=backend,
                          device=device, dtype=dtype, **block_kwargs)

        super().__init__(d_model, n_layers, make, device, dtype)


class MambaModel(_MambaStack):
    """Residual Mamba-1 blocks. Extra keyword arguments go to every ``Mamba`` block."""

    def __init__(self, d_model: int = 512, n_layers: int = 2, d_state: int = 16,
                 d_conv: int = 4, expand: int = 2, backend: str = "auto", device=None,
                 dtype=None, **block_kwargs: Any) -> None:
        def make() -> Mamba:
            return Mamba(d_model, d_state=d_state, d_conv=d_conv, expand=expand,
                         backend=backend, device=device, dtype=dtype, **block_kwargs)

        super().__init__(d_model, n_layers, make, device, dtype)


class NormGRUCell(nn.Module):
    """DreamerV3's GRU cell (the 2023 code's ``RSSM._gru``): one Linear over [h, x] without bias,
    LayerNorm over its 3 * hidden outputs, then

        r, c, u = split(LayerNorm(W [h, x])),  c = tanh(sigmoid(r) * c),  u = sigmoid(u - 1),
        h' = u * c + (1 - u) * h,

    the -1 biasing the update gate towards keeping h. x: (batch, input), h: (batch, hidden)."""

    def __init__(self, input_size: int, hidden_size: int, device=None, dtype=None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.linear = nn.Linear(hidden_size + input_size, 3 * hidden_size, bias=False, **factory)
        self.norm = nn.LayerNorm(3 * hidden_size, eps=1e-3, **factory)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        reset, cand, update = self.norm(self.linear(torch.cat([h, x], -1))).chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update - 1)
        return update * cand + (1 - update) * h


class GRUModel(SequenceModel):
    """Stacked GRU (the RSSM's recurrence); state (n_layers, batch, d_model).

    Args:
        norm: DreamerV3's ``NormGRUCell`` layers (LayerNorm inside the gates), stepped in a
            Python loop, instead of ``nn.GRU``'s fused cells (no norm).
        learned_initial: the initial state, also where ``reset`` restarts a row, is tanh(w) of a
            parameter w (n_layers, d_model) initialised to zeros (DreamerV3's ``initial:
            learned``) instead of zeros.
    """

    def __init__(self, d_model: int = 512, n_layers: int = 2, norm: bool = False,
                 learned_initial: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.n_layers = n_layers
        self.norm = norm
        if norm:
            self.cells = nn.ModuleList(NormGRUCell(d_model, d_model, **factory)
                                       for _ in range(n_layers))
        else:
            self.gru = nn.GRU(d_model, d_model, n_layers, batch_first=True, **factory)
        self.register_parameter(
            "initial", nn.Parameter(torch.zeros(n_layers, d_model, **factory))
            if learned_initial else None)

    def _start(self, state: Tensor | None, x: Tensor) -> Tensor:
        """The given state (checked) or the initial state for x's batch."""
        if state is None:
            return self.initial_state(x.shape[0], x.device, x.dtype)
        want = (self.n_layers, x.shape[0], self.d_model)
        if not isinstance(state, Tensor) or tuple(state.shape) != want:
            got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
            raise ValueError(f"GRUModel expects a state of shape {want}, got {got}")
        return state

    def _restart_rows(self, state: Tensor, reset: Tensor) -> Tensor:
        """State with the rows where reset (batch,) is True replaced by the initial state."""
        initial = self.initial_state(state.shape[1], state.device, state.dtype)
        return torch.where(reset.view(1, -1, 1), initial, state)

    def _cells_step(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        hs = []
        for cell, h in zip(self.cells, state, strict=True):
            x_t = cell(x_t, h)
            hs.append(x_t)
        return x_t, torch.stack(hs)

    def forward(self, x: Tensor, state: Tensor | None = None,
                reset: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_sequence(x, self.d_model, "GRUModel")
        state = self._start(state, x)
        if reset is not None:
            check_reset(reset, x.shape[:2], "GRUModel")
        if self.norm:
            ys = []
            for t in range(x.shape[1]):
                y, state = self.step(x[:, t], state, None if reset is None else reset[:, t])
                ys.append(y)
            return torch.stack(ys, 1), state
        if reset is None:
            return self.gru(x, state)
        # nn.GRU cannot reset inside a sequence: run it on the spans between the steps where
        # some row resets, restarting those rows' states in between.
        cuts = (reset[:, 1:].any(0).nonzero().flatten() + 1).tolist()
        ys = []
        for start, end in itertools.pairwise([0, *cuts, x.shape[1]]):
            y, state = self.gru(x[:, start:end], self._restart_rows(state, reset[:, start]))
            ys.append(y)
        return torch.cat(ys, dim=1), state

    def step(self, x_t: Tensor, state: Tensor | None = None,
             reset: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_step_input(x_t, self.d_model, "GRUModel")
        state = self._start(state, x_t)
        if reset is not None:
            check_reset(reset, x_t.shape[:1], "GRUModel.step")
            state = self._restart_rows(state, reset)
        if self.norm:
            return self._cells_step(x_t, state)
        y, state = self.gru(x_t.unsqueeze(1), state)
        return y.squeeze(1), state

    def initial_state(self, batch_size: int, device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> Tensor:
        """Zeros, or tanh of the learned ``initial`` for every row (with its gradient)."""
        factory = self._factory(device, dtype)
        if self.initial is None:
            return torch.zeros(self.n_layers, batch_size, self.d_model, **factory)
        initial = torch.tanh(self.initial).to(**factory)
        return initial.unsqueeze(1).expand(-1, batch_size, -1).contiguous()


class KVCache(NamedTuple):
    """Transformer state: per layer keys/values (batch, n_heads, cached, head_dim), after RoPE,
    and the number of steps seen. With a ``window`` at most window - 1 steps are kept.

    ``start`` (batch,) int64: the step (counted as ``position``) where each row's episode began;
    later queries of that row do not attend to cached keys before it. None until a call has
    had a ``reset``: no key is hidden.
    """

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    position: int
    start: Tensor | None = None


def _rotary_angles(positions: Tensor, head_dim: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos and sin (L, head_dim // 2) of the rotary angles at absolute ``positions`` (L,)."""
    half = head_dim // 2
    freqs = 10000.0 ** (-torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.to(torch.float32).unsqueeze(-1) * freqs
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary position embedding of x (..., L, head_dim) with ``_rotary_angles``' cos, sin."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class _TransformerLayer(nn.Module):
    """Pre-norm causal self-attention (RoPE, optional sliding window) and a GELU MLP."""

    def __init__(self, d_model: int, n_heads: int, window: int | None, device=None,
                 dtype=None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.n_heads = n_heads
        self.window = window
        self.norm1 = nn.RMSNorm(d_model, eps=1e-5, **factory)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False, **factory)
        self.out_proj = nn.Linear(d_model, d_model, bias=False, **factory)
        self.norm2 = nn.RMSNorm(d_model, eps=1e-5, **factory)
        self.fc1 = nn.Linear(d_model, 4 * d_model, **factory)
        self.fc2 = nn.Linear(4 * d_model, d_model, **factory)

    def forward(self, x: Tensor, keys: Tensor, values: Tensor, position: int,
                rope: tuple[Tensor, Tensor], query_start: Tensor | None
                ) -> tuple[Tensor, Tensor, Tensor]:
        """position: the first query's absolute step; rope: ``_rotary_angles`` of the queries'
        steps (the same in every layer, so computed once per call); query_start: None, or per
        row and query (batch, L or 1) the first key position that query may attend to (its
        episode's start)."""
        batch, length, width = x.shape
        qkv = self.qkv(self.norm1(x)).view(batch, length, 3, self.n_heads, -1).permute(
            2, 0, 3, 1, 4)
        q, k = _rotary(qkv[:2], *rope)  # q and k rotated in one pass
        v = qkv[2]
        cached = keys.shape[2]
        if cached:
            keys, values = torch.cat([keys, k], dim=2), torch.cat([values, v], dim=2)
        else:
            keys, values = k, v
        if query_start is None and cached == 0 and (self.window is None or length <= self.window):
            attended = F.scaled_dot_product_attention(q, keys, values, is_causal=True)
        else:
            positions = torch.arange(position, position + length, device=x.device)
            key_positions = torch.arange(position - cached, position + length, device=x.device)
            lag = positions.unsqueeze(1) - key_positions
            mask = lag >= 0
            if self.window is not None:
                mask &= lag < self.window
            if query_start is not None:  # (L, keys) -> (batch, 1 for the heads, L, keys)
                mask = (mask & (key_positions >= query_start.unsqueeze(-1))).unsqueeze(1)
            attended = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        x = x + self.out_proj(attended.transpose(1, 2).reshape(batch, length, width))
        x = x + self.fc2(F.gelu(self.fc1(self.norm2(x))))
        if self.window is not None:
            keep = min(keys.shape[2], self.window - 1)
            keys, values = keys[:, :, keys.shape[2] - keep:], values[:, :, values.shape[2] - keep:]
        return x, keys, values


class TransformerModel(SequenceModel):
    """Causal transformer baseline (pre-norm, RoPE, GELU MLP), state = ``KVCache``.

    Args:
        window: attend to at most this many steps (self included), in both modes; None: all
            steps (the cache then grows by one entry per step).
    """

    def __init__(self, d_model: int = 512, n_layers: int = 2, n_heads: int = 8,
                 window: int | None = None, device=None, dtype=None) -> None:
        super().__init__()
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(f"d_model={d_model} must split into n_heads={n_heads} heads of an "
                             f"even size (for rotary embeddings)")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.window = window
        self.layers = nn.ModuleList(
            _TransformerLayer(d_model, n_heads, window, device, dtype) for _ in range(n_layers)
        )
        self.norm_f = nn.RMSNorm(d_model, eps=1e-5, device=device, dtype=dtype)

    def _check_state(self, state: KVCache, batch: int) -> None:
        if not isinstance(state, KVCache) or len(state.keys) != self.n_layers:
            raise ValueError(f"TransformerModel expects a KVCache with {self.n_layers} layers, "
                             f"got {type(state).__name__}")
        if state.keys[0].shape[0] != batch:
            raise ValueError(f"TransformerModel state is for batch {state.keys[0].shape[0]}, "
                             f"input has batch {batch}")
        if state.start is not None and tuple(state.start.shape) != (batch,):
            raise ValueError(f"TransformerModel state has start of shape "
                             f"{tuple(state.start.shape)}, expected ({batch},)")

    def forward(self, x: Tensor, state: KVCache | None = None,
                reset: Tensor | None = None) -> tuple[Tensor, KVCache]:
        check_sequence(x, self.d_model, "TransformerModel")
        batch, length, _ = x.shape
        if state is None:
            state = self.initial_state(batch, x.device, x.dtype)
        self._check_state(state, batch)
        query_start = None if state.start is None else state.start.unsqueeze(1)
        steps = torch.arange(state.position, state.position + length, device=x.device)
        if reset is not None:
            check_reset(reset, (batch, length), "TransformerModel")
            before = steps.new_zeros(batch, 1) if query_start is None else query_start
            # Each query's episode starts at the latest reset at or before it.
            query_start = torch.where(reset, steps, before).cummax(dim=1).values
        rope = _rotary_angles(steps, self.d_model // self.n_heads, x.dtype)
        keys, values = [], []
        for layer, k, v in zip(self.layers, state.keys, state.values, strict=True):
            x, k, v = layer(x, k, v, state.position, rope, query_start)
            keys.append(k)
            values.append(v)
        start = None if query_start is None else query_start[:, -1]
        return self.norm_f(x), KVCache(tuple(keys), tuple(values), state.position + length, start)

    def step(self, x_t: Tensor, state: KVCache | None = None,
             reset: Tensor | None = None) -> tuple[Tensor, KVCache]:
        check_step_input(x_t, self.d_model, "TransformerModel")
        if reset is not None:
            check_reset(reset, x_t.shape[:1], "TransformerModel.step")
            reset = reset.unsqueeze(1)
        y, state = self.forward(x_t.unsqueeze(1), state, reset)
        return y.squeeze(1), state

    def initial_state(self, batch_size: int, device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> KVCache:
        """Empty caches (batch, n_heads, 0, head_dim) per layer, position 0."""
        empty = torch.zeros(batch_size, self.n_heads, 0, self.d_model // self.n_heads,
                            **self._factory(device, dtype))
        return KVCache((empty,) * self.n_layers, (empty,) * self.n_layers, 0)


SEQUENCE_MODELS: dict[str, type[SequenceModel]] = {
    "mamba2": Mamba2Model,
    "mamba": MambaModel,
    "gru": GRUModel,
    "transformer": TransformerModel,
}


def make_sequence_model(kind: str, **kwargs: Any) -> SequenceModel:
    """Build the sequence model named ``kind`` (a key of ``SEQUENCE_MODELS``) with ``kwargs``."""
    if kind not in SEQUENCE_MODELS:
        raise ValueError(
            f"unknown sequence model {kind!r}; choose one of {', '.join(SEQUENCE_MODELS)}."
            + close_matches(kind, SEQUENCE_MODELS)
        )
    return SEQUENCE_MODELS[kind](**kwargs)
