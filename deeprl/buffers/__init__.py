"""Buffers shared by all agents: on-policy rollouts, replay, sequences, offline datasets."""

from deeprl.buffers.base import Buffer
from deeprl.buffers.rollout import RolloutBuffer, generalized_advantage_estimation

__all__ = ["Buffer", "RolloutBuffer", "generalized_advantage_estimation"]
