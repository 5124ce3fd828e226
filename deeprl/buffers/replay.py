"""Replay buffers for off-policy agents: uniform and prioritized, n-step, frame stacks, sequences.

Storage is device-resident and circular. Every field ``key`` of the transitions is one tensor
``data[key]`` of shape (T, N, ...) with T = capacity // num_envs, so each env's stream is
contiguous in time and all envs share the write cursor ``pos``.

n-step returns (as in Hessel et al. 2018, "Rainbow: Combining Improvements in Deep
Reinforcement Learning") are computed when sampling:
from step t of one env, with k the first step at which the window ends (k = n, or earlier at the
end of an episode),

    R_t^(n) = sum_{j<k} gamma^j r_{t+j},   discount = 0 if terminated at t+k-1 else gamma^k,

and the critic bootstraps from ``next_obs`` of step t+k-1: on truncation that is the last
observation of the cut episode, whose value still counts. Starts whose n-step window is not fully
written yet are never sampled.

Prioritized replay (Schaul et al. 2016, "Prioritized Experience Replay", proportional variant):
item i is sampled with P(i) = p_i^alpha / sum_k p_k^alpha, p_i = |delta_i| + eps; new items get
the largest priority seen so far; importance weights w_i = (N P(i))^-beta are divided by the
batch's largest weight (as Dopamine's ``PrioritizedReplayBuffer`` does) so they only scale
updates down.

Pixel observations with ``frame_stack=k`` (the env returns (k*C, H, W) stacks, newest frame last)
are stored once as their newest frame (C, H, W); ``next_obs`` likewise keeps only its newest frame,
which differs from the next step's ``obs`` at episode ends. Stacks are rebuilt from indices at
sample time; frames before an episode start are padded with the episode's first frame
(``frame_padding="first"``, as gymnasium's ``FrameStackObservation``) or zeros (``"zero"``, as
SB3's ``VecFrameStack``). Once the buffer wraps, the k-1 oldest steps have lost their history and
are not sampled.
"""

from __future__ import annotations

from pathlib import Path

import torch

from deeprl.buffers.base import Buffer
from deeprl.buffers.sum_tree import SumTree
from deeprl.errors import UserError
from deeprl.train.checkpoint import load_checkpoint, save_checkpoint

FRAME_KEYS = ("obs", "next_obs")


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


class ReplayBuffer(Buffer):
    """Uniform replay of batched transitions with n-step returns computed at sample time.

    Args:
        capacity: transitions over all envs (each env keeps ``capacity // num_envs`` steps).
        num_envs: N, the batch size of :meth:`add`.
        n_step, gamma: the n-step return's horizon and discount.
        frame_stack: k > 1 stores pixel ``obs``/``next_obs`` (N, k*C, H, W) as single frames.
        frame_padding: ``"first"`` or ``"zero"``, what fills a stack before an episode's start.
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
        self.data: dict[str, torch.Tensor] = {}
        self.pos = 0  # next time slot to write
        self.size = 0  # filled time slots per env
        # Whether the next observation added for each env starts an episode.
        self._episode_start = torch.ones(num_envs, dtype=torch.bool, device=self.device)

    # ---- storage ------------------------------------------------------------------------------
    def _stored(self, key: str, value: torch.Tensor) -> torch.Tensor:
        """What is kept of ``value`` (N, ...): the newest frame of a frame stack."""
        if self.frame_stack > 1 and key in FRAME_KEYS:
            channels = value.shape[1] // self.frame_stack
            return value[:, -channels:]
        return value

    def _extra_bytes(self) -> int:
        return 0

    def _allocate(self, fields: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> None:
        """Allocate (T, N, *shape) per field after checking that it fits on the device."""
        fields = {**fields, "is_first": ((), torch.bool)}
        needed = self._extra_bytes()
        for shape, dtype in fields.values():
            count = self.steps * self.num_envs
            for s in shape:
                count *= s
            needed += count * dtype.itemsize
        available = available_memory(self.device)
        if available is not None and needed > available:
            per_item = needed / (self.steps * self.num_envs)
            raise UserError(
                f"replay buffer capacity {self.capacity} needs {needed} bytes "
                f"({needed / 2**30:.1f} GiB) on {self.device} but only {available} bytes "
                f"({available / 2**30:.1f} GiB) are available; lower agent.buffer_size "
                f"(about {int(available / per_item)} would fit)"
            )
        self.data = {
            k: torch.zeros((self.steps, self.num_envs, *shape), dtype=dtype, device=self.device)
            for k, (shape, dtype) in fields.items()
        }

    def add(self, transition: dict[str, torch.Tensor]) -> None:
        """Store one batched step: a dict of (N, ...) tensors with at least ``obs``, ``action``,
        ``reward``, ``next_obs``, ``terminated``, ``truncated`` (the keys of the first call)."""
        stored = {k: self._stored(k, v) for k, v in transition.items()}
        if not self.data:
            if self.frame_stack > 1 and transition["obs"].shape[1] % self.frame_stack:
                raise UserError(
                    f"frame_stack={self.frame_stack} does not divide the observation's "
                    f"{transition['obs'].shape[1]} channels"
                )
            self._allocate({k: (tuple(v.shape[1:]), v.dtype) for k, v in stored.items()})
        t = self.pos
        for key, value in stored.items():
            self.data[key][t] = value
        self.data["is_first"][t] = self._episode_start
        self._episode_start = (transition["terminated"] | transition["truncated"]).to(
            self.device, torch.bool
        )
        self.pos = (t + 1) % self.steps
        self.size = min(self.size + 1, self.steps)
        self._after_add(t)

    def _after_add(self, t: int) -> None:
        """Hook for subclasses, called after time slot ``t`` was written."""

    def __len__(self) -> int:
        return self.size * self.num_envs

    @property
    def oldest(self) -> int:
        return (self.pos - self.size) % self.steps

    def _first_sampleable(self) -> int:
        """Offset from the oldest slot of the first start whose frame history is intact."""
        return self.frame_stack - 1 if self.size == self.steps else 0

    # ---- gathering ----------------------------------------------------------------------------
    def _frames(self, key: str, t: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        """Rebuild the (B, k*C, H, W) stack of ``key`` at time slots ``t`` (B,) of envs ``env``.

        The newest frame is ``data[key][t]``; the older ones are ``obs`` frames at t-1, t-2, ...
        for ``obs`` and at t, t-1, ... for ``next_obs``, up to the episode's first frame.
        """
        first = self.data["is_first"]
        frames = [self.data[key][t, env]]
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

    def _gather(self, t: torch.Tensor, env: torch.Tensor) -> dict[str, torch.Tensor]:
        """All stored fields (except ``is_first``) at (t, env), frame stacks rebuilt."""
        out = {}
        for key, value in self.data.items():
            if key == "is_first":
                continue
            if self.frame_stack > 1 and key in FRAME_KEYS:
                out[key] = self._frames(key, t, env)
            else:
                out[key] = value[t, env]
        return out

    # ---- sampling -----------------------------------------------------------------------------
    def _sample_indices(
        self, batch_size: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Time slots (B,), envs (B,) and extra outputs (e.g. importance weights)."""
        low = self._first_sampleable()
        high = self.size - self.n_step + 1
        if high <= low:
            raise RuntimeError(
                f"cannot sample: {self.size} steps per env stored, the n-step window needs "
                f"{self.n_step + low}"
            )
        offset = torch.randint(low, high, (batch_size,), device=self.device, generator=generator)
        env = torch.randint(self.num_envs, (batch_size,), device=self.device, generator=generator)
        return (self.oldest + offset) % self.steps, env, {}

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """A batch of ``batch_size`` transitions with n-step returns.

        Returns every stored field at the sampled steps, with ``reward`` (B,) the n-step return,
        ``next_obs`` the observation to bootstrap from, ``terminated``/``truncated`` of the
        window's last step, ``discount`` (B,) gamma^k or 0, and ``index`` (B,) (flat ``t*N+env``,
        for :meth:`PrioritizedReplayBuffer.update_priorities`).
        """
        t, env, extra = self._sample_indices(batch_size, generator)
        batch = self._gather(t, env)
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
        terminated = self.data["terminated"][last, env]
        steps_taken = (last - t) % self.steps + 1
        discount = torch.where(
            terminated, torch.zeros_like(ret), self.gamma ** steps_taken.to(ret.dtype)
        )
        batch["reward"] = ret
        batch["terminated"] = terminated
        batch["truncated"] = self.data["truncated"][last, env]
        if self.n_step > 1:
            batch["next_obs"] = (
                self._frames("next_obs", last, env)
                if self.frame_stack > 1
                else self.data["next_obs"][last, env]
            )
        batch["discount"] = discount
        batch["index"] = t * self.num_envs + env
        batch.update(extra)
        return batch

    def sample_sequences(
        self,
        batch_size: int,
        length: int,
        generator: torch.Generator | None = None,
        allow_cross_episode: bool = False,
    ) -> dict[str, torch.Tensor]:
        """``batch_size`` contiguous chunks of ``length`` steps of one env each, fields (B, L, ...).

        ``is_first`` (B, L) marks steps whose ``obs`` starts an episode. Unless
        ``allow_cross_episode``, a chunk stops at the next episode start: ``mask`` (B, L) is False
        from there on and those entries are zero. With it, ``mask`` is all True.
        """
        low = self._first_sampleable()
        high = self.size - length + 1
        if high <= low:
            raise RuntimeError(f"cannot sample sequences of {length}: {self.size} steps stored")
        offset = torch.randint(low, high, (batch_size,), device=self.device, generator=generator)
        env = torch.randint(self.num_envs, (batch_size,), device=self.device, generator=generator)
        steps = torch.arange(length, device=self.device)
        t = ((self.oldest + offset).unsqueeze(1) + steps) % self.steps  # (B, L)
        env = env.unsqueeze(1).expand(batch_size, length)
        flat = self._gather(t.reshape(-1), env.reshape(-1))
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
        return batch

    # ---- persistence --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "capacity": self.capacity,
            "num_envs": self.num_envs,
            "pos": self.pos,
            "size": self.size,
            "episode_start": self._episode_start,
            # A slice would make torch.save write the whole storage: clone partial buffers.
            "data": {
                k: v if self.size == self.steps else v[: self.size].clone()
                for k, v in self.data.items()
            },
        }

    def load_state_dict(self, state: dict) -> None:
        if (state["capacity"], state["num_envs"]) != (self.capacity, self.num_envs):
            raise UserError(
                f"the saved replay has capacity {state['capacity']} over {state['num_envs']} "
                f"envs but this run has capacity {self.capacity} over {self.num_envs}; resume "
                "with the same agent.buffer_size and number of envs"
            )
        saved = state["data"]
        self.data = {}
        if saved:
            self._allocate(
                {k: (tuple(v.shape[2:]), v.dtype) for k, v in saved.items() if k != "is_first"}
            )
            for key, value in saved.items():
                self.data[key][: len(value)] = value.to(self.device)
        self.pos, self.size = int(state["pos"]), int(state["size"])
        self._episode_start = state["episode_start"].to(self.device)

    def save(self, path: str | Path) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (as a deeprl checkpoint file)."""
        save_checkpoint(path, self.state_dict())

    def load(self, path: str | Path) -> None:
        """Restore what :meth:`save` wrote (tensors only, loaded with ``weights_only=True``)."""
        self.load_state_dict(load_checkpoint(path, map_location=self.device))


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay over a :class:`SumTree` of all (T, N) slots.

    ``sample`` adds ``weight`` (B,), the normalized importance weights at exponent ``beta`` (the
    agent anneals ``self.beta``); feed |TD errors| back with :meth:`update_priorities`.
    Defaults alpha 0.6, beta 0.4: Schaul et al. 2016's choice for the proportional variant.
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
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
    ) -> None:
        super().__init__(capacity, num_envs, device, n_step, gamma, frame_stack, frame_padding)
        self.alpha, self.beta, self.eps = alpha, beta, eps
        self.tree: SumTree | None = None
        self.max_priority = torch.ones((), dtype=torch.float64, device=self.device)

    def _extra_bytes(self) -> int:
        return SumTree.nbytes(self.steps * self.num_envs)

    def _allocate(self, fields: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> None:
        super()._allocate(fields)
        self.tree = SumTree(self.steps * self.num_envs, self.device)

    def _slots(self, t: int) -> torch.Tensor:
        """Flat indices of time slot ``t`` for every env."""
        return (t % self.steps) * self.num_envs + torch.arange(self.num_envs, device=self.device)

    def _after_add(self, t: int) -> None:
        zeros = torch.zeros(self.num_envs, dtype=torch.float64, device=self.device)
        # The overwritten slot is not sampleable until its n-step window is written ...
        self.tree.update(self._slots(t), zeros)
        # ... nor are the oldest steps whose frame history was just overwritten ...
        if self.size == self.steps:
            for j in range(1, self.frame_stack):
                self.tree.update(self._slots(t + j), zeros)
        # ... while the step whose window this add completes becomes sampleable.
        if self.size >= self.n_step:
            start = self._slots(t - self.n_step + 1)
            self.tree.update(start, (self.max_priority**self.alpha).expand(self.num_envs))

    def _sample_indices(
        self, batch_size: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        if self.tree is None or self.tree.total.item() <= 0:
            raise RuntimeError("cannot sample: no step with a complete n-step window yet")
        index = self.tree.sample(batch_size, generator)
        prob = self.tree.leaves[index] / self.tree.total
        weight = (len(self) * prob) ** (-self.beta)
        weight = (weight / weight.max()).float()
        return index // self.num_envs, index % self.num_envs, {"weight": weight}

    def update_priorities(self, indices: torch.Tensor, priorities: torch.Tensor) -> None:
        """Set p_i = |priorities_i| + eps for the sampled flat ``indices`` (B,)."""
        p = priorities.detach().to(torch.float64).abs() + self.eps
        self.max_priority = torch.maximum(self.max_priority, p.max())
        self.tree.update(indices, p**self.alpha)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["max_priority"] = self.max_priority
        state["priorities"] = (
            self.tree.leaves[: self.size * self.num_envs].clone() if self.tree is not None else None
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.max_priority = state["max_priority"].to(self.device)
        if self.tree is not None:
            priorities = state["priorities"]
            self.tree.leaves[: len(priorities)] = priorities.to(self.device)
            self.tree.rebuild()
