"""The common interface of deeprl's buffers (rollout, replay, sequence, offline dataset)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Buffer(ABC):
    """Device-resident storage of batched transitions.

    ``add`` takes one batched step as a dict of tensors with leading dim N (num_envs). The keys
    the trainer always provides: ``obs``, ``action``, ``reward``, ``next_obs``, ``terminated``,
    ``truncated``; agents add their own (e.g. ``log_prob``, ``value``) through ``Agent.act``.
    """

    device: torch.device

    @abstractmethod
    def add(self, transition: dict[str, torch.Tensor]) -> None:
        """Store one batched step."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of stored transitions (over all envs)."""

    def end_episodes(self) -> None:
        """Close every env's stored episode at its last written step (marked truncated, so
        returns bootstrap from its ``next_obs``) and start a new one with the next added step.

        For resuming a run whose envs could not restore their state (they start fresh episodes):
        without it, n-step returns, frame stacks, sequences and GAE would join the old episode to
        the new one. A no-op on an empty buffer; persists through :meth:`state_dict`.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot close its stored episodes")

    @abstractmethod
    def state_dict(self) -> dict:
        """Contents and cursors, so a resumed run continues with the same data."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
