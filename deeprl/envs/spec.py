"""Space and environment descriptions shared by every backend and agent."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Discrete:
    """``n`` actions labelled ``0 .. n-1``; a batch of actions is a long tensor of shape (N,)."""

    n: int

    @property
    def shape(self) -> tuple[int, ...]:
        return ()


@dataclass(frozen=True)
class Box:
    """A real-valued box; a batch is a float tensor of shape (N, *shape).

    ``low``/``high`` are tuples of floats (length prod(shape)), flattened row-major, so the spec
    stays hashable and serialisable. Use :meth:`bounds` for tensors.
    """

    shape: tuple[int, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    dtype: torch.dtype = torch.float32

    def bounds(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        low = torch.tensor(self.low, dtype=torch.float32, device=device).reshape(self.shape)
        high = torch.tensor(self.high, dtype=torch.float32, device=device).reshape(self.shape)
        return low, high

    @staticmethod
    def uniform(shape: tuple[int, ...], low: float, high: float, dtype=torch.float32) -> Box:
        size = 1
        for s in shape:
            size *= s
        return Box(tuple(shape), (float(low),) * size, (float(high),) * size, dtype)


Space = Discrete | Box


@dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know about an environment.

    Attributes:
        id: the environment's name, e.g. ``"CartPole-v1"``.
        observation_space: a :class:`Box`; pixel observations are uint8 boxes (C, H, W).
        action_space: :class:`Discrete` or :class:`Box`.
        max_episode_steps: the time limit after which an episode is *truncated* (None: no limit).
        reward_range: optional bounds of one step's reward.
        metadata: suite-specific facts (protocol name, frame skip, normalizer, ...).
    """

    id: str
    observation_space: Box
    action_space: Space
    max_episode_steps: int | None = None
    metadata: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, Discrete)


def _space_to_dict(space: Space) -> dict:
    if isinstance(space, Discrete):
        return {"type": "discrete", "n": space.n}
    return {
        "type": "box",
        "shape": list(space.shape),
        "low": list(space.low),
        "high": list(space.high),
        "dtype": str(space.dtype).removeprefix("torch."),
    }


def _space_from_dict(data: dict) -> Space:
    if data["type"] == "discrete":
        return Discrete(int(data["n"]))
    dtype = getattr(torch, data["dtype"])
    return Box(tuple(data["shape"]), tuple(data["low"]), tuple(data["high"]), dtype)


def spec_to_dict(spec: EnvSpec) -> dict:
    """``spec`` as JSON-ready data (metadata entries that are not JSON values are left out)."""
    import json

    metadata = {}
    for key, value in spec.metadata.items():
        try:
            json.dumps(value, allow_nan=True)
        except (TypeError, ValueError):
            continue
        metadata[key] = value
    return {
        "id": spec.id,
        "observation_space": _space_to_dict(spec.observation_space),
        "action_space": _space_to_dict(spec.action_space),
        "max_episode_steps": spec.max_episode_steps,
        "metadata": metadata,
    }


def spec_from_dict(data: dict) -> EnvSpec:
    """The :class:`EnvSpec` that :func:`spec_to_dict` described."""
    return EnvSpec(
        id=data["id"],
        observation_space=_space_from_dict(data["observation_space"]),
        action_space=_space_from_dict(data["action_space"]),
        max_episode_steps=data["max_episode_steps"],
        metadata=dict(data["metadata"]),
    )
