"""Samplers: which stored items a :class:`~deeprl.buffers.replay.ReplayBuffer` replays.

An item is one (time slot t, env) pair of the buffer's (T, N) storage, with flat index
``i = t * N + env``. Transitions (``sample``) and sequences (``sample_sequences``) both ask the
buffer's sampler for the *starts* of windows of ``L`` steps (L = n_step for transitions, the
sequence length for sequences). The valid starts V_L are the items whose window is fully written
and, once the buffer has wrapped, whose frame history (frame_stack - 1 earlier steps) has not been
overwritten. In time order from the oldest slot they are one contiguous range of slots, so they
are one circular range of flat indices.

- :class:`UniformSampler`: P(i) = 1 / |V_L|.
- :class:`WeightedSampler`: P(i) = w_i / sum_{k in V_L} w_k for per-item weights kept in a
  :class:`~deeprl.buffers.sum_tree.SumTree` (any non-negative scores, e.g. use counts).
- :class:`PrioritizedSampler`: proportional prioritized replay (Schaul et al. 2016, "Prioritized
  Experience Replay"): w_i = p_i^alpha, p_i = |delta_i| + eps, new items get the largest
  priority seen so far, and importance weights w_i = (|V_L| P(i))^-beta are divided by the
  batch's largest weight (as Dopamine's ``PrioritizedReplayBuffer`` does) so they only scale
  updates down.

- :class:`DFSSampler`: Drama's dynamic frequency-based sampling (Wang et al. 2025, "Drama:
  Mamba-Enabled Model-Based Reinforcement Learning Is Sample and Parameter Efficient", Sec. 3.3):
  per-item counts c (world-model batches) and i (imagination batches) of the window starts;
  world-model starts P(i) = softmax_i(-c_i / tau), imagination starts
  P(i) = softmax_i(min(0, c_i - i_i / s) / tau_im) with s = imagination batch / model batch.

After each batch the buffer calls :meth:`Sampler.on_sample` with the flat indices it used, so a
sampler can track usage (e.g. per-item counts for frequency-based sampling).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

from deeprl.buffers.sum_tree import SumTree

if TYPE_CHECKING:
    from deeprl.buffers.replay import ReplayBuffer


class Sampler:
    """Draws the starts of replayed windows. Subclasses implement :meth:`sample`.

    A sampler serves one buffer: the buffer calls :meth:`bind` when it is built, :meth:`allocate`
    when it allocates its storage, :meth:`on_write` after every write and :meth:`on_sample` after
    every batch.
    """

    buffer: ReplayBuffer

    def bind(self, buffer: ReplayBuffer) -> None:
        """Attach to ``buffer`` (read for its cursors, sizes and device)."""
        self.buffer = buffer

    def nbytes(self, items: int) -> int:
        """Bytes :meth:`allocate` takes for a buffer of ``items`` (T * N) items."""
        return 0

    def allocate(self) -> None:
        """Allocate per-item state, once the buffer allocates its storage."""

    def on_write(self, start: int, count: int) -> None:
        """Time slots ``start, ..., start + count - 1`` (mod T) were (over)written for every env."""

    def on_sample(self, index: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """The flat indices a batch used: (B,) for transitions (the starts), (B, L) for sequences,
        where ``mask`` (B, L) marks the steps that belong to the start's episode."""

    def valid_starts(self, window: int) -> tuple[int, int]:
        """Offsets [low, high) from ``buffer.oldest`` of the time slots that may start a window of
        ``window`` steps: the window is fully written and the frame history is intact."""
        buffer = self.buffer
        # Once the buffer wraps, the frame_stack - 1 oldest slots have lost their history.
        low = buffer.frame_stack - 1 if buffer.size == buffer.steps else 0
        high = buffer.size - window + 1
        if high <= low:
            raise RuntimeError(
                f"cannot sample windows of {window} steps: {buffer.size} steps per env stored, "
                f"{window + low} needed"
            )
        return low, high

    def _items(self, start: int, count: int) -> torch.Tensor:
        """Flat indices (count * N,) of time slots start .. start + count - 1 (mod T)."""
        buffer = self.buffer
        slots = (start + torch.arange(count, device=buffer.device)) % buffer.steps
        envs = torch.arange(buffer.num_envs, device=buffer.device)
        return (slots[:, None] * buffer.num_envs + envs).flatten()

    def sample(
        self, batch_size: int, window: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Starts of ``batch_size`` windows of ``window`` steps: time slots (B,), envs (B,) and
        extra batch fields (e.g. importance weights (B,))."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (after :meth:`allocate`)."""


class UniformSampler(Sampler):
    """Every valid start equally likely: a uniform time offset and a uniform env."""

    def sample(
        self, batch_size: int, window: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        buffer = self.buffer
        low, high = self.valid_starts(window)
        device = buffer.device
        offset = torch.randint(low, high, (batch_size,), device=device, generator=generator)
        env = torch.randint(buffer.num_envs, (batch_size,), device=device, generator=generator)
        return (buffer.oldest + offset) % buffer.steps, env, {}


class WeightedSampler(Sampler):
    """Starts drawn in proportion to per-item weights (a :class:`SumTree` over all T * N items).

    Newly written items get :meth:`initial_weight`; :meth:`set_weights` changes weights. Sampling
    is stratified over the valid starts' total weight (one draw per equal slice), and every valid
    start must have a positive weight.
    """

    def __init__(self) -> None:
        self.tree: SumTree | None = None

    def nbytes(self, items: int) -> int:
        return SumTree.nbytes(items)

    def allocate(self) -> None:
        self.tree = SumTree(self.buffer.steps * self.buffer.num_envs, self.buffer.device)

    def initial_weight(self) -> torch.Tensor:
        """Weight () of a newly written item."""
        return torch.ones((), dtype=torch.float64, device=self.buffer.device)

    def on_write(self, start: int, count: int) -> None:
        items = self._items(start, count)
        self.tree.update(items, self.initial_weight().expand(items.shape[0]))

    def set_weights(self, index: torch.Tensor, weights: torch.Tensor) -> None:
        """Set the weights of flat items ``index`` (any shape) to ``weights`` (same shape)."""
        self.tree.update(index.flatten(), weights.flatten())

    def _extras(
        self, index: torch.Tensor, prob: torch.Tensor, count: int
    ) -> dict[str, torch.Tensor]:
        """Extra batch fields from the drawn items (B,), their probabilities (B,) and |V_L|."""
        return {}

    def sample(
        self, batch_size: int, window: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        buffer = self.buffer
        low, high = self.valid_starts(window)
        first = (buffer.oldest + low) % buffer.steps
        count = (high - low) * buffer.num_envs
        index, mass = self.tree.sample_range(batch_size, first * buffer.num_envs, count, generator)
        prob = self.tree.leaves[index] / mass
        extras = self._extras(index, prob, count)
        return index // buffer.num_envs, index % buffer.num_envs, extras

    def state_dict(self) -> dict:
        buffer = self.buffer
        written = buffer.size * buffer.num_envs
        return {"weights": self.tree.leaves[:written].clone() if self.tree is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if self.tree is not None:
            weights = state["weights"]
            self.tree.leaves.zero_()
            self.tree.leaves[: len(weights)] = weights.to(self.tree.tree.device)
            self.tree.rebuild()


class PrioritizedSampler(WeightedSampler):
    """Proportional prioritized replay (Schaul et al. 2016): see the module docstring.

    Batches gain ``weight`` (B,), the normalized importance weights at exponent ``beta`` (the
    agent anneals ``beta``); feed |TD errors| back with :meth:`update_priorities`. Defaults alpha
    0.6, beta 0.4: Schaul et al. 2016's choice for the proportional variant.
    """

    def __init__(self, alpha: float = 0.6, beta: float = 0.4, eps: float = 1e-6) -> None:
        super().__init__()
        self.alpha, self.beta, self.eps = alpha, beta, eps
        self.max_priority: torch.Tensor | None = None

    def bind(self, buffer: ReplayBuffer) -> None:
        super().bind(buffer)
        self.max_priority = torch.ones((), dtype=torch.float64, device=buffer.device)

    def initial_weight(self) -> torch.Tensor:
        return self.max_priority**self.alpha

    def update_priorities(self, index: torch.Tensor, priorities: torch.Tensor) -> None:
        """Set p_i = |priorities_i| + eps for the sampled flat ``index`` (B,)."""
        p = priorities.detach().to(torch.float64).abs() + self.eps
        self.max_priority = torch.maximum(self.max_priority, p.max())
        self.set_weights(index, p**self.alpha)

    def _extras(
        self, index: torch.Tensor, prob: torch.Tensor, count: int
    ) -> dict[str, torch.Tensor]:
        weight = (count * prob) ** (-self.beta)
        return {"weight": (weight / weight.max()).float()}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "max_priority": self.max_priority}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.max_priority = state["max_priority"].to(self.buffer.device)


class DFSSampler(Sampler):
    """Drama's dynamic frequency-based sampling (DFS); formulas in the module docstring.

    Two int32 counters per item live on the buffer's device: ``model_counts`` (c, the times an
    item started a world-model window) and ``imagine_counts`` (i, the times it started an
    imagination context); only the start of a window is counted, as Drama's replay does. Batches
    count toward c unless drawn inside ``with sampler.imagination():``, which also switches to
    the imagination scores. The imagination score min(0, c - i / s) is 0 (the most likely) for
    starts the model has trained on at least as often as imagination used them (scaled by
    ``imagine_scale`` s, Drama's 1024 / 16), and falls for starts imagined more often than
    trained on. Starts are drawn without replacement (``torch.multinomial``), or with
    replacement when a batch asks for more than there are valid starts. Overwritten items'
    counts restart at 0. Defaults tau = tau_im = 10 (Drama's train.yaml ``Tau``,
    ``ImaginationTau``).
    """

    def __init__(self, tau: float = 10.0, imagine_tau: float = 10.0,
                 imagine_scale: float = 64.0) -> None:
        for name, value in (("tau", tau), ("imagine_tau", imagine_tau),
                            ("imagine_scale", imagine_scale)):
            if not value > 0:
                raise ValueError(f"DFSSampler: {name} must be > 0, got {value}")
        self.tau, self.imagine_tau, self.imagine_scale = tau, imagine_tau, imagine_scale
        self.imagining = False
        self.model_counts: torch.Tensor | None = None
        self.imagine_counts: torch.Tensor | None = None

    def nbytes(self, items: int) -> int:
        return 2 * 4 * items

    def allocate(self) -> None:
        items = self.buffer.steps * self.buffer.num_envs
        self.model_counts = torch.zeros(items, dtype=torch.int32, device=self.buffer.device)
        self.imagine_counts = torch.zeros_like(self.model_counts)

    @contextmanager
    def imagination(self) -> Iterator[DFSSampler]:
        """Inside: batches are imagination starts (scored and counted as such)."""
        self.imagining = True
        try:
            yield self
        finally:
            self.imagining = False

    def on_write(self, start: int, count: int) -> None:
        items = self._items(start, count)
        self.model_counts[items] = 0
        self.imagine_counts[items] = 0

    def probabilities(self, items: torch.Tensor, imagination: bool) -> torch.Tensor:
        """P over the flat ``items`` (M,) (the valid starts) for world-model or imagination
        batches (M,), from the current counts."""
        c = self.model_counts[items].float()
        if imagination:
            score = (c - self.imagine_counts[items].float() / self.imagine_scale).clamp(max=0)
            return torch.softmax(score / self.imagine_tau, 0)
        return torch.softmax(-c / self.tau, 0)

    def sample(
        self, batch_size: int, window: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        low, high = self.valid_starts(window)
        items = self._items(self.buffer.oldest + low, high - low)
        probs = self.probabilities(items, self.imagining)
        pick = torch.multinomial(probs, batch_size, replacement=batch_size > items.shape[0],
                                 generator=generator)
        index = items[pick]
        return index // self.buffer.num_envs, index % self.buffer.num_envs, {}

    def on_sample(self, index: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        starts = index[:, 0] if index.dim() == 2 else index
        counts = self.imagine_counts if self.imagining else self.model_counts
        counts.index_add_(0, starts, torch.ones_like(starts, dtype=counts.dtype))

    def state_dict(self) -> dict:
        written = self.buffer.size * self.buffer.num_envs
        if self.model_counts is None:
            return {"model_counts": None, "imagine_counts": None}
        return {"model_counts": self.model_counts[:written].clone(),
                "imagine_counts": self.imagine_counts[:written].clone()}

    def load_state_dict(self, state: dict) -> None:
        if self.model_counts is None or state["model_counts"] is None:
            return
        for name in ("model_counts", "imagine_counts"):
            counts = getattr(self, name)
            counts.zero_()
            counts[: len(state[name])] = state[name].to(counts.device)
