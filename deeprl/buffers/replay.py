"""Replay buffers for off-policy agents: samplers, n-step, frame stacks, sequences, layouts.

Storage is device-resident and circular. Every field ``key`` of the transitions is one tensor
``data[key]`` of shape (T, N, ...) with T = capacity // num_envs, so each env's stream is
contiguous in time and all envs share the write cursor ``pos``. Which items (time slot, env) are
replayed is the buffer's :class:`~deeprl.buffers.samplers.Sampler`'s choice (uniform,
prioritized, or any per-item weights; their P(i) are in that module), for transitions and
sequences alike. ``add`` writes one batched step; ``extend``/``from_arrays`` write whole
(L, N, ...) arrays, e.g. an offline dataset, in a fixed number of tensor operations.

n-step returns (as in Hessel et al. 2018, "Rainbow: Combining Improvements in Deep
Reinforcement Learning") are computed when sampling:
from step t of one env, with k the first step at which the window ends (k = n, or earlier at the
end of an episode),

    R_t^(n) = sum_{j<k} gamma^j r_{t+j},   discount = 0 if terminated at t+k-1 else gamma^k,

and the critic bootstraps from ``next_obs`` of step t+k-1: on truncation that is the last
observation of the cut episode, whose value still counts. Starts whose n-step window (or
sequence) is not fully written yet are never sampled.

Pixel observations with ``frame_stack=k`` (the env returns (k*C, H, W) stacks, newest frame last)
are stored once as their newest frame (C, H, W); ``next_obs`` likewise keeps only its newest frame,
which differs from the next step's ``obs`` at episode ends. Stacks are rebuilt from indices at
sample time; frames before an episode start are padded with the episode's first frame
(``frame_padding="first"``, as gymnasium's ``FrameStackObservation``) or zeros (``"zero"``, as
SB3's ``VecFrameStack``). Once the buffer wraps, the k-1 oldest steps have lost their history and
are not sampled.

Observation-only layout (``store_next_obs=False``): within an episode ``next_obs`` of step t is the
next step's ``obs``, so only the final observations are stored, in a side store ``ends``:

    next_obs_t = ends[t]       if the episode ended at t (terminated or truncated),
                 tail          if t is the newest step (its successor is not written yet),
                 obs_{t+1}     otherwise,

which halves the memory of pixel replay. The side store starts with room for ``end_capacity``
final observations and doubles while more than half of it is live (checked with one host sync
once the adds since the last check could have filled it, never while sampling).

A resumed run whose envs could not restore their state starts fresh episodes:
:meth:`ReplayBuffer.end_episodes` marks the last stored step of every env truncated (n-step
windows stop there and bootstrap from its ``next_obs``, the true last observation) and the next
added step an episode start (frame stacks and sequences restart there).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from deeprl.buffers.base import Buffer
from deeprl.buffers.samplers import PrioritizedSampler, Sampler, UniformSampler
from deeprl.buffers.sum_tree import SumTree
from deeprl.errors import UserError
from deeprl.io import load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    import numpy as np

FRAME_KEYS = ("obs", "next_obs")
# Bookkeeping fields of ``data`` that are not returned in batches.
INTERNAL_KEYS = ("is_first", "end_ref")

Spec = tuple[tuple[int, ...], torch.dtype]


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated on ``device`` (None where unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


# Memory a capacity suggestion leaves to the rest of the run (networks, batches, the env).
HEADROOM_BYTES = 2 * 2**30


def fitting_capacity(available: int, bytes_per_item: float) -> int:
    """A replay capacity to suggest when the asked one does not fit in ``available`` bytes: one
    that takes at most half of them and leaves at least ``HEADROOM_BYTES`` free (0: none)."""
    budget = min(available / 2, available - HEADROOM_BYTES)
    return max(0, int(budget // bytes_per_item))


def spec_bytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    """Bytes of a tensor of ``shape`` and ``dtype``."""
    count = 1
    for s in shape:
        count *= s
    return count * dtype.itemsize


class ReplayBuffer(Buffer):
    """Replay of batched transitions with n-step returns computed at sample time.

    Args:
        capacity: transitions over all envs (each env keeps ``capacity // num_envs`` steps).
        num_envs: N, the batch size of :meth:`add`.
        n_step, gamma: the n-step return's horizon and discount.
        frame_stack: k > 1 stores pixel ``obs``/``next_obs`` (N, k*C, H, W) as single frames.
        frame_padding: ``"first"`` or ``"zero"``, what fills a stack before an episode's start.
        sampler: which starts are replayed (default :class:`UniformSampler`); serves this buffer
            only.
        store_next_obs: False for the observation-only layout (see the module docstring); it
            assumes ``next_obs`` of a step that did not end its episode is the next ``obs``.
        end_capacity: observation-only layout: initial room for final observations (default
            1% of ``capacity``, at least ``num_envs``); it grows as needed.
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        device: torch.device | str = "cpu",
        n_step: int = 1,
        gamma: float = 0.99,
        frame_stack: int = 1,
        frame_padding: str = "first",
        sampler: Sampler | None = None,
        store_next_obs: bool = True,
        end_capacity: int | None = None,
    ) -> None:
        if num_envs < 1 or capacity < num_envs:
            raise UserError(
                f"replay capacity {capacity} is smaller than num_envs={num_envs}; raise "
                "agent.buffer_size"
            )
        if n_step < 1 or frame_stack < 1:
            raise UserError(f"n_step={n_step} and frame_stack={frame_stack} must be at least 1")
        if frame_padding not in ("first", "zero"):
            raise UserError(f"frame_padding={frame_padding!r}; use 'first' or 'zero'")
        self.capacity = capacity
        self.num_envs = num_envs
        self.steps = capacity // num_envs  # T, steps kept per env
        if self.steps < n_step + frame_stack:
            raise UserError(
                f"replay capacity {capacity} keeps {self.steps} steps per env, fewer than "
                f"n_step + frame_stack = {n_step + frame_stack}; raise agent.buffer_size"
            )
        self.device = torch.device(device)
        self.n_step = n_step
        self.gamma = gamma
        self.frame_stack = frame_stack
        self.frame_padding = frame_padding
        self.store_next_obs = store_next_obs
        self.data: dict[str, torch.Tensor] = {}
        self.pos = 0  # next time slot to write
        self.size = 0  # filled time slots per env
        # Whether the next observation added for each env starts an episode (equivalently:
        # whether the newest stored step ended its episode).
        self._episode_start = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        # Observation-only layout: rows [0, M) of ``ends`` hold final observations (the one with
        # reference r >= 1 in data["end_ref"] at row (r - 1) % M), rows [M, M + N) the newest
        # step's next_obs per env (the tail), row M + N is scratch.
        self.ends: torch.Tensor | None = None
        self._end_rows = min(self.steps * num_envs, end_capacity or max(num_envs, capacity // 100))
        self._end_next = torch.zeros((), dtype=torch.long, device=self.device)  # refs handed out
        self._end_room = 0  # adds that can record final observations before the next check
        self.sampler = sampler if sampler is not None else UniformSampler()
        self.sampler.bind(self)

    # ---- storage ------------------------------------------------------------------------------
    def _stored(self, key: str, value: torch.Tensor, batch_dims: int = 1) -> torch.Tensor:
        """What is kept of ``value`` (*batch, ...): the newest frame of a frame stack."""
        if self.frame_stack > 1 and key in FRAME_KEYS:
            channels = value.shape[batch_dims] // self.frame_stack
            return value.narrow(batch_dims, value.shape[batch_dims] - channels, channels)
        return value

    def _check_frames(self, obs_channels: int) -> None:
        if self.frame_stack > 1 and obs_channels % self.frame_stack:
            raise UserError(
                f"frame_stack={self.frame_stack} does not divide the observation's "
                f"{obs_channels} channels"
            )

    def _plan(self, fields: dict[str, Spec], end_rows: int) -> tuple[dict[str, Spec], Spec | None]:
        """Full shapes of the (T, N, ...) data tensors and of the side store ``ends``, from the
        per-step (stored) shapes of the transition's ``fields``."""
        items = (self.steps, self.num_envs)
        fields = {**fields, "is_first": ((), torch.bool)}
        ends = None
        if not self.store_next_obs:
            shape, dtype = fields.pop("next_obs")
            ends = ((end_rows + self.num_envs + 1, *shape), dtype)
            fields["end_ref"] = ((), torch.long)
        return {k: ((*items, *shape), dtype) for k, (shape, dtype) in fields.items()}, ends

    def _planned_bytes(self, fields: dict[str, Spec], end_rows: int) -> int:
        data, ends = self._plan(fields, end_rows)
        needed = sum(spec_bytes(*spec) for spec in data.values())
        needed += spec_bytes(*ends) if ends is not None else 0
        return needed + self.sampler.nbytes(self.steps * self.num_envs)

    def required_bytes(self, transition: Mapping[str, torch.Tensor]) -> int:
        """Bytes this buffer allocates for batched steps like ``transition`` (dict of (N, ...)
        tensors), without allocating: equals :attr:`nbytes` after the first :meth:`add`."""
        fields = {k: (tuple(self._stored(k, v).shape[1:]), v.dtype) for k, v in transition.items()}
        return self._planned_bytes(fields, self._end_rows)

    @property
    def nbytes(self) -> int:
        """Bytes allocated now: data, side store and sampler state (0 before the first add)."""
        if not self.data:
            return 0
        total = sum(v.nbytes for v in self.data.values())
        total += self.ends.nbytes if self.ends is not None else 0
        return total + self.sampler.nbytes(self.steps * self.num_envs)

    def _allocate(self, fields: dict[str, Spec], end_rows: int | None = None) -> None:
        """Allocate the storage for per-step ``fields`` after checking that it fits."""
        end_rows = end_rows or self._end_rows
        needed = self._planned_bytes(fields, end_rows)
        available = available_memory(self.device)
        if available is not None and needed > available:
            fits = fitting_capacity(available, needed / (self.steps * self.num_envs))
            if fits >= self.num_envs * (self.n_step + self.frame_stack):
                hint = (f"lower agent.buffer_size (about {fits} would fit using at most half of "
                        "that and leaving 2 GiB free for the rest of the run)")
            else:
                hint = f"free memory on {self.device} or lower agent.buffer_size"
            raise UserError(
                f"replay buffer capacity {self.capacity} needs {needed} bytes "
                f"({needed / 2**30:.1f} GiB) on {self.device} but only {available} bytes "
                f"({available / 2**30:.1f} GiB) are available; {hint}"
            )
        data, ends = self._plan(fields, end_rows)
        self.data = {
            k: torch.zeros(shape, dtype=dtype, device=self.device)
            for k, (shape, dtype) in data.items()
        }
        if ends is not None:
            self.ends = torch.zeros(ends[0], dtype=ends[1], device=self.device)
            self._end_rows = end_rows
        self.sampler.allocate()

    def _write(self, tensor: torch.Tensor, start: int, values: torch.Tensor) -> None:
        """``tensor[(start + j) % T] = values[j]`` for j < len(values) <= T: two slice copies."""
        first = min(len(values), self.steps - start)
        tensor[start : start + first] = values[:first]
        tensor[: len(values) - first] = values[first:]

    def add(self, transition: dict[str, torch.Tensor]) -> None:
        """Store one batched step: a dict of (N, ...) tensors with at least ``obs``, ``action``,
        ``reward``, ``next_obs``, ``terminated``, ``truncated`` (the keys of the first call)."""
        stored = {k: self._stored(k, v) for k, v in transition.items()}
        if not self.data:
            self._check_frames(transition["obs"].shape[1])
            self._allocate({k: (tuple(v.shape[1:]), v.dtype) for k, v in stored.items()})
        t = self.pos
        if not self.store_next_obs:
            self.data["end_ref"][t] = 0  # the final observations of slot t are overwritten
            if self.size > 0:
                self._close_tail()
            self.ends[self._end_rows : self._end_rows + self.num_envs] = stored.pop("next_obs")
        for key, value in stored.items():
            self.data[key][t] = value
        self.data["is_first"][t] = self._episode_start
        self._episode_start = (transition["terminated"] | transition["truncated"]).to(
            self.device, torch.bool
        )
        self.pos = (t + 1) % self.steps
        self.size = min(self.size + 1, self.steps)
        self.sampler.on_write(t, 1)

    def extend(self, data: Mapping[str, torch.Tensor | np.ndarray]) -> None:
        """Store L steps at once, as L calls of :meth:`add` would, in a fixed number of tensor
        operations: a dict of tensors or arrays of shape (L, N, ...) or, for a flat dataset of one
        env, (L, ...), with the keys :meth:`add` takes. Only the last T steps are kept if L > T.
        The observation-only layout counts the episode ends first (one host sync).
        """
        data = {k: torch.as_tensor(v, device=self.device) for k, v in data.items()}
        if data["terminated"].dim() == 1:  # a flat dataset: one env
            data = {k: v.unsqueeze(1) for k, v in data.items()}
        length, num_envs = data["terminated"].shape
        if num_envs != self.num_envs:
            raise UserError(f"extend got {num_envs} envs per step; this buffer has {self.num_envs}")
        if length == 0:
            return
        keep = min(length, self.steps)
        stored = {k: self._stored(k, v[length - keep :], batch_dims=2) for k, v in data.items()}
        if not self.data:
            self._check_frames(data["obs"].shape[2])
            self._allocate({k: (tuple(v.shape[2:]), v.dtype) for k, v in stored.items()})
        done = (data["terminated"] | data["truncated"]).bool()
        is_first = torch.cat([self._episode_start[None], done[:-1]])[length - keep :]
        start = (self.pos + length - keep) % self.steps
        if not self.store_next_obs:
            self._extend_ends(start, keep, done[length - keep :], stored.pop("next_obs"))
        for key, value in stored.items():
            self._write(self.data[key], start, value)
        self._write(self.data["is_first"], start, is_first)
        self._episode_start = done[-1]
        self.pos = (self.pos + length) % self.steps
        self.size = min(self.size + length, self.steps)
        self.sampler.on_write(start, keep)

    @classmethod
    def from_arrays(
        cls,
        data: Mapping[str, torch.Tensor | np.ndarray],
        capacity: int | None = None,
        **options,
    ) -> ReplayBuffer:
        """A buffer holding ``data`` (see :meth:`extend`): capacity L * N unless given; N is read
        from ``terminated`` ((L,) for one env, (L, N)); ``options`` go to the constructor."""
        shape = tuple(data["terminated"].shape)
        num_envs = shape[1] if len(shape) > 1 else 1
        buffer = cls(capacity or shape[0] * num_envs, num_envs, **options)
        buffer.extend(data)
        return buffer

    def end_episodes(self) -> None:
        """Close every env's stored episode at the newest step: mark it truncated unless it
        terminated, and make the next added step an episode start. A no-op when empty."""
        if self.size == 0:
            return
        newest = (self.pos - 1) % self.steps
        truncated = self.data["truncated"]
        truncated[newest] = truncated[newest] | ~self.data["terminated"][newest]
        self._episode_start = torch.ones_like(self._episode_start)

    def __len__(self) -> int:
        return self.size * self.num_envs

    @property
    def oldest(self) -> int:
        return (self.pos - self.size) % self.steps

    # ---- final observations (observation-only layout) -----------------------------------------
    def _reserve_ends(self, incoming: int) -> None:
        """Make room in ``ends`` for ``incoming`` more final observations, doubling it while more
        than half would be live, and count the adds that are safe before checking again. The one
        host sync of the observation-only layout."""
        refs = self.data["end_ref"]
        oldest = int(torch.where(refs > 0, refs, self._end_next + 1).min())
        newest = int(self._end_next)
        live = newest + 1 - oldest
        limit = self.steps * self.num_envs  # more are never live at once
        if 2 * (live + incoming) > self._end_rows and self._end_rows < limit:
            rows = min(limit, max(2 * self._end_rows, 2 * (live + incoming)))
            kept = torch.arange(oldest, newest + 1, device=self.device) - 1
            ends = self.ends.new_zeros((rows + self.num_envs + 1, *self.ends.shape[1:]))
            ends[kept % rows] = self.ends[kept % self._end_rows]
            ends[rows : rows + self.num_envs] = self.ends[self._end_rows : -1]
            self.ends, self._end_rows = ends, rows
        if self._end_rows >= limit:
            self._end_room = sys.maxsize
        else:
            self._end_room = (self._end_rows - live - incoming) // self.num_envs

    def _record_ends(self, done: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Copy ``frames`` (K, N, ...) where ``done`` (K, N) into ``ends``; returns their
        references (K, N), 0 where not done (room must have been reserved)."""
        refs = self._end_next + torch.cumsum(done.flatten(), 0).view_as(done)
        self._end_next = self._end_next + done.sum()
        rows = torch.where(done, (refs - 1) % self._end_rows, self._end_rows + self.num_envs)
        if len(done) == 1:  # no host sync: steps that did not end write the scratch row
            self.ends[rows[0]] = frames[0]
        else:
            self.ends[rows[done]] = frames[done]
        return torch.where(done, refs, 0)

    def _close_tail(self) -> None:
        """Keep the newest step's next_obs for the envs whose episode ended there."""
        if self._end_room < 1:
            self._reserve_ends(self.num_envs)
        self._end_room -= 1
        tail = self.ends[self._end_rows : self._end_rows + self.num_envs].clone()
        refs = self._record_ends(self._episode_start[None], tail[None])
        self.data["end_ref"][(self.pos - 1) % self.steps] = refs[0]

    def _extend_ends(
        self, start: int, keep: int, done: torch.Tensor, next_obs: torch.Tensor
    ) -> None:
        """:meth:`extend`'s final observations: ``done`` (K, N) and stored ``next_obs`` (K, N, ...)
        of the K kept steps, written from slot ``start``."""
        refs = self.data["end_ref"]
        self._write(
            refs,
            start,
            torch.zeros((), dtype=refs.dtype, device=self.device).expand(keep, self.num_envs),
        )
        # The previous newest step survives unless the new steps overwrite it.
        close_tail = self.size > 0 and keep < self.steps
        incoming = int(done[:-1].sum()) + (int(self._episode_start.sum()) if close_tail else 0)
        self._reserve_ends(incoming)
        if close_tail:
            self._close_tail()
        self._write(refs, start, self._record_ends(done[:-1], next_obs[:-1]))
        self.ends[self._end_rows : self._end_rows + self.num_envs] = next_obs[-1]

    # ---- gathering ----------------------------------------------------------------------------
    def next_frame(self, t: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        """Stored ``next_obs`` (B, ...) at time slots ``t`` (B,) of envs ``env`` (B,), in either
        layout (with ``frame_stack`` > 1: its newest frame only)."""
        if self.store_next_obs:
            return self.data["next_obs"][t, env]
        rows = self._end_rows
        ended = self.data["terminated"][t, env] | self.data["truncated"][t, env]
        newest = t == (self.pos - 1) % self.steps
        row = torch.where(newest, rows + env, (self.data["end_ref"][t, env] - 1) % rows)
        final = self.ends[row]
        following = self.data["obs"][(t + 1) % self.steps, env]
        use_final = (ended | newest).view(-1, *([1] * (final.dim() - 1)))
        return torch.where(use_final, final, following)

    def _frames(self, key: str, t: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        """Rebuild the (B, k*C, H, W) stack of ``key`` at time slots ``t`` (B,) of envs ``env``.

        The newest frame is the stored ``key`` at t; the older ones are ``obs`` frames at t-1,
        t-2, ... for ``obs`` and at t, t-1, ... for ``next_obs``, up to the episode's first frame.
        """
        first = self.data["is_first"]
        frames = [self.data["obs"][t, env] if key == "obs" else self.next_frame(t, env)]
        shift = 0 if key == "obs" else 1
        valid = torch.ones_like(t, dtype=torch.bool)
        index = t  # the oldest frame of the episode so far (what "first" padding repeats)
        for j in range(1, self.frame_stack):
            slot = (t - j + shift) % self.steps
            if key == "obs" or j > 1:  # obs[t] is always in next_obs[t]'s episode
                valid = valid & ~first[(slot + 1) % self.steps, env]
            index = torch.where(valid, slot, index)
            frame = self.data["obs"][index, env]
            if self.frame_padding == "zero":
                frame = frame * valid.view(-1, *([1] * (frame.dim() - 1))).to(frame.dtype)
            frames.append(frame)
        return torch.cat(frames[::-1], dim=1)

    def _gather(
        self, t: torch.Tensor, env: torch.Tensor, next_t: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """All fields at (t, env) (B,) with frame stacks rebuilt, ``next_obs`` at (next_t, env)."""
        stacked = self.frame_stack > 1
        out = {}
        for key, value in self.data.items():
            if key in INTERNAL_KEYS or key == "next_obs":
                continue
            out[key] = self._frames(key, t, env) if stacked and key == "obs" else value[t, env]
        out["next_obs"] = (
            self._frames("next_obs", next_t, env) if stacked else self.next_frame(next_t, env)
        )
        return out

    # ---- sampling -----------------------------------------------------------------------------
    def sample(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """A batch of ``batch_size`` transitions with n-step returns, starts from the sampler.

        Returns every stored field at the sampled steps, with ``reward`` (B,) the n-step return,
        ``next_obs`` the observation to bootstrap from, ``terminated``/``truncated`` of the
        window's last step, ``discount`` (B,) gamma^k or 0, ``index`` (B,) (flat ``t*N+env``,
        e.g. for :meth:`PrioritizedSampler.update_priorities`) and the sampler's extras (e.g.
        ``weight`` (B,)).
        """
        t, env, extra = self.sampler.sample(batch_size, self.n_step, generator)
        reward = self.data["reward"]
        ret = torch.zeros(batch_size, dtype=reward.dtype, device=self.device)
        scale = torch.ones_like(ret)  # gamma^j
        open_ = torch.ones_like(t, dtype=torch.bool)  # no episode end in the window so far
        last = t
        for j in range(self.n_step):
            u = (t + j) % self.steps
            ret = torch.where(open_, ret + scale * reward[u, env], ret)
            last = torch.where(open_, u, last)
            scale = scale * self.gamma
            open_ = open_ & ~(self.data["terminated"][u, env] | self.data["truncated"][u, env])
        batch = self._gather(t, env, last)
        terminated = self.data["terminated"][last, env]
        steps_taken = (last - t) % self.steps + 1
        discount = torch.where(
            terminated, torch.zeros_like(ret), self.gamma ** steps_taken.to(ret.dtype)
        )
        batch["reward"] = ret
        batch["terminated"] = terminated
        batch["truncated"] = self.data["truncated"][last, env]
        batch["discount"] = discount
        batch["index"] = t * self.num_envs + env
        batch.update(extra)
        self.sampler.on_sample(batch["index"])
        return batch

    def sample_sequences(
        self,
        batch_size: int,
        length: int,
        generator: torch.Generator | None = None,
        allow_cross_episode: bool = False,
    ) -> dict[str, torch.Tensor]:
        """``batch_size`` contiguous chunks of ``length`` steps of one env each, fields (B, L, ...),
        starting where the sampler chooses.

        ``next_obs`` (B, L, ...) holds each step's next observation, so a chunk that reaches an
        episode's end carries its final observation. ``is_first`` (B, L) marks steps whose ``obs``
        starts an episode. Unless ``allow_cross_episode``, a chunk stops at the next episode
        start: ``mask`` (B, L) is False from there on and those entries are zero. With it,
        ``mask`` is all True. ``index`` (B, L) is each step's flat index (the starts are
        ``index[:, 0]``); the sampler's extras (e.g. ``weight``) are per chunk, (B,).
        """
        start, env, extra = self.sampler.sample(batch_size, length, generator)
        batch = self.read_sequences(start, env, length, allow_cross_episode)
        batch.update(extra)
        self.sampler.on_sample(batch["index"], batch["mask"])
        return batch

    def read_sequences(
        self, start: torch.Tensor, env: torch.Tensor, length: int,
        allow_cross_episode: bool = False,
    ) -> dict[str, torch.Tensor]:
        """The chunks of ``length`` steps from time slots ``start`` (B,) of envs ``env`` (B,), laid
        out as :meth:`sample_sequences` (without sampler extras), and unseen by the sampler: a
        read that leaves training as it was (e.g. for a video of the world model)."""
        batch_size = start.shape[0]
        steps = torch.arange(length, device=self.device)
        t = (start.unsqueeze(1) + steps) % self.steps  # (B, L)
        env = env.unsqueeze(1).expand(batch_size, length)
        flat = self._gather(t.reshape(-1), env.reshape(-1), t.reshape(-1))
        batch = {k: v.reshape(batch_size, length, *v.shape[1:]) for k, v in flat.items()}
        is_first = self.data["is_first"][t, env]
        if allow_cross_episode:
            mask = torch.ones_like(is_first)
        else:
            later_starts = torch.cumsum(is_first[:, 1:].long(), dim=1)
            mask = torch.cat([torch.ones_like(is_first[:, :1]), later_starts == 0], dim=1)
            for key, value in batch.items():
                keep = mask.view(batch_size, length, *([1] * (value.dim() - 2)))
                batch[key] = torch.where(keep, value, torch.zeros_like(value))
            is_first = is_first & mask
        batch["is_first"] = is_first
        batch["mask"] = mask
        batch["index"] = t * self.num_envs + env
        return batch

    # ---- persistence --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {
            "capacity": self.capacity,
            "num_envs": self.num_envs,
            "store_next_obs": self.store_next_obs,
            "pos": self.pos,
            "size": self.size,
            "episode_start": self._episode_start,
            # A slice would make torch.save write the whole storage: clone partial buffers.
            "data": {
                k: v if self.size == self.steps else v[: self.size].clone()
                for k, v in self.data.items()
            },
            "sampler": self.sampler.state_dict(),
        }
        if self.ends is not None:
            state["ends"] = self.ends
            state["end_next"] = self._end_next
        return state

    def load_state_dict(self, state: dict) -> None:
        if (state["capacity"], state["num_envs"]) != (self.capacity, self.num_envs):
            raise UserError(
                f"the saved replay has capacity {state['capacity']} over {state['num_envs']} "
                f"envs but this run has capacity {self.capacity} over {self.num_envs}; resume "
                "with the same agent.buffer_size and number of envs"
            )
        if state["store_next_obs"] != self.store_next_obs:
            raise UserError(
                f"the saved replay has store_next_obs={state['store_next_obs']} but this run "
                f"has {self.store_next_obs}; resume with the same replay layout"
            )
        saved = state["data"]
        self.data = {}
        if saved:
            fields = {
                k: (tuple(v.shape[2:]), v.dtype) for k, v in saved.items() if k not in INTERNAL_KEYS
            }
            end_rows = None
            if not self.store_next_obs:
                ends = state["ends"]
                fields["next_obs"] = (tuple(ends.shape[1:]), ends.dtype)
                end_rows = len(ends) - self.num_envs - 1
            self._allocate(fields, end_rows)
            for key, value in saved.items():
                self.data[key][: len(value)] = value.to(self.device)
            if not self.store_next_obs:
                self.ends.copy_(state["ends"])
                self._end_next = state["end_next"].to(self.device)
                self._end_room = 0
        self.pos, self.size = int(state["pos"]), int(state["size"])
        self._episode_start = state["episode_start"].to(self.device)
        self.sampler.load_state_dict(state["sampler"])

    def save(self, path: str | Path) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (as a deeprl checkpoint file)."""
        save_checkpoint(path, self.state_dict())

    def load(self, path: str | Path) -> None:
        """Restore what :meth:`save` wrote (tensors only, loaded with ``weights_only=True``)."""
        self.load_state_dict(load_checkpoint(path, map_location=self.device))


class PrioritizedReplayBuffer(ReplayBuffer):
    """A :class:`ReplayBuffer` with a :class:`PrioritizedSampler` (alpha, beta, eps), whose
    ``beta``, ``tree`` and ``update_priorities`` it exposes; ``options`` are the other
    :class:`ReplayBuffer` arguments."""

    sampler: PrioritizedSampler

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        device: torch.device | str = "cpu",
        n_step: int = 1,
        gamma: float = 0.99,
        frame_stack: int = 1,
        frame_padding: str = "first",
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
        **options,
    ) -> None:
        sampler = PrioritizedSampler(alpha, beta, eps)
        super().__init__(
            capacity,
            num_envs,
            device,
            n_step,
            gamma,
            frame_stack,
            frame_padding,
            sampler,
            **options,
        )

    @property
    def beta(self) -> float:
        return self.sampler.beta

    @beta.setter
    def beta(self, value: float) -> None:
        self.sampler.beta = value

    @property
    def tree(self) -> SumTree | None:
        return self.sampler.tree

    def update_priorities(self, indices: torch.Tensor, priorities: torch.Tensor) -> None:
        """Set p_i = |priorities_i| + eps for the sampled flat ``indices`` (B,)."""
        self.sampler.update_priorities(indices, priorities)
