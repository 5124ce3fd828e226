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

    @abstractmethod
    def state_dict(self) -> dict:
        """Contents and cursors, so a resumed run continues with the same data."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
