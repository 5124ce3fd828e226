"""Buffers shared by all agents: on-policy rollouts, replay, sequences, offline datasets."""

from deeprl.buffers.base import Buffer
from deeprl.buffers.replay import PrioritizedReplayBuffer, ReplayBuffer
from deeprl.buffers.rollout import RolloutBuffer, generalized_advantage_estimation
from deeprl.buffers.samplers import (
    DFSSampler,
    PrioritizedSampler,
    Sampler,
    UniformSampler,
    WeightedSampler,
)
from deeprl.buffers.sum_tree import SumTree

__all__ = [
    "Buffer",
    "DFSSampler",
    "PrioritizedReplayBuffer",
    "PrioritizedSampler",
    "ReplayBuffer",
    "RolloutBuffer",
    "Sampler",
    "SumTree",
    "UniformSampler",
    "WeightedSampler",
    "generalized_advantage_estimation",
]
