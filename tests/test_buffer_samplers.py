"""Samplers shared by transition and sequence sampling: priorities, arbitrary weights, the
usage hook, valid starts, and the sum tree's range queries."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from deeprl.buffers import (
    PrioritizedReplayBuffer,
    PrioritizedSampler,
    ReplayBuffer,
    SumTree,
    UniformSampler,
    WeightedSampler,
)


def fill(buffer: ReplayBuffer, steps: int) -> None:
    """``steps`` batched steps of one long episode; ``obs`` is (step, env)."""
    n = buffer.num_envs
    for t in range(steps):
        obs = torch.stack([torch.full((n,), float(t)), torch.arange(n, dtype=torch.float32)], 1)
        buffer.add(
            {
                "obs": obs,
                "action": torch.zeros(n, dtype=torch.long),
                "reward": torch.ones(n),
                "next_obs": obs + 0.5,
                "terminated": torch.zeros(n, dtype=torch.bool),
                "truncated": torch.zeros(n, dtype=torch.bool),
            }
        )


def start_counts(draw, items: int, rounds: int = 40) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    starts = torch.cat([draw(generator) for _ in range(rounds)])
    return torch.bincount(starts, minlength=items)


def test_sequences_follow_priorities():
    buffer = PrioritizedReplayBuffer(40, 2, alpha=1.0, beta=0.5, eps=0.0)
    fill(buffer, 20)
    priorities = torch.rand(40, generator=torch.Generator().manual_seed(1)).double() + 0.05
    buffer.update_priorities(torch.arange(40), priorities)
    length = 5
    counts = start_counts(lambda g: buffer.sample_sequences(256, length, g)["index"][:, 0], 40)
    valid = torch.arange(40) // 2 <= 20 - length  # the whole chunk is written
    assert counts[~valid].sum() == 0
    expected = priorities[valid] / priorities[valid].sum() * counts.sum()
    _, p_value = chisquare(counts[valid].numpy(), expected.numpy())
    assert p_value > 0.01
    # Uniform starts would not fit these counts.
    _, p_uniform = chisquare(counts[valid].numpy())
    assert p_uniform < 1e-6
    batch = buffer.sample_sequences(64, length, torch.Generator().manual_seed(2))
    p = priorities[batch["index"][:, 0]]
    assert batch["weight"].shape == (64,)
    assert torch.allclose(batch["weight"], ((p / p.min()) ** -0.5).float())


class Scores(WeightedSampler):
    """Weights set from outside, as a frequency-based sampler would set them from counts."""


def test_weighted_sampler_draws_valid_starts_in_proportion_after_wrapping():
    buffer = ReplayBuffer(30, 3, n_step=3, frame_stack=2, sampler=Scores())
    fill(buffer, 13)  # T = 10: wrapped, oldest slot 3
    weights = torch.rand(30, generator=torch.Generator().manual_seed(0)).double() + 0.1
    buffer.sampler.set_weights(torch.arange(30), weights)
    counts = start_counts(lambda g: buffer.sample(256, g)["index"], 30)
    # Valid start steps 4 .. 10 (frame history of step 3 is gone; 11, 12 lack a 3-step window),
    # held in time slots (step % 10).
    valid = torch.zeros(30, dtype=torch.bool)
    for step in range(4, 11):
        valid[(step % 10) * 3 : (step % 10) * 3 + 3] = True
    assert counts[~valid].sum() == 0
    expected = weights[valid] / weights[valid].sum() * counts.sum()
    _, p_value = chisquare(counts[valid].numpy(), expected.numpy())
    assert p_value > 0.01


class CountingSampler(UniformSampler):
    """Records what the usage hook receives (per-item use counts, as Drama's sampler needs)."""

    def allocate(self) -> None:
        self.counts = torch.zeros(self.buffer.steps * self.buffer.num_envs, dtype=torch.long)
        self.calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def on_sample(self, index: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        self.calls.append((index, mask))
        used = torch.ones_like(index) if mask is None else mask.long()
        self.counts.index_add_(0, index.flatten(), used.flatten())


def test_usage_hook_gets_the_flat_indices_of_each_batch():
    buffer = ReplayBuffer(40, 2, sampler=CountingSampler())
    fill(buffer, 20)
    batch = buffer.sample(16)
    index, mask = buffer.sampler.calls[-1]
    assert mask is None and torch.equal(index, batch["index"])
    sequences = buffer.sample_sequences(8, 4)
    index, mask = buffer.sampler.calls[-1]
    assert torch.equal(index, sequences["index"]) and torch.equal(mask, sequences["mask"])
    # index[b, j] is step j of chunk b: obs holds (step, env).
    step, env = index // 2, index % 2
    assert torch.equal(sequences["obs"], torch.stack([step, env], -1).float())
    assert buffer.sampler.counts.sum() == 16 + 8 * 4


def test_prioritized_sampler_on_a_plain_replay_buffer_equals_the_convenience_class():
    plain = ReplayBuffer(40, 2, n_step=2, sampler=PrioritizedSampler(alpha=0.7, beta=0.5))
    convenience = PrioritizedReplayBuffer(40, 2, n_step=2, alpha=0.7, beta=0.5)
    for buffer in (plain, convenience):
        fill(buffer, 25)
    update = torch.tensor([3, 8, 11]), torch.tensor([2.0, -0.5, 4.0])
    plain.sampler.update_priorities(*update)
    convenience.update_priorities(*update)
    a = plain.sample(64, torch.Generator().manual_seed(0))
    b = convenience.sample(64, torch.Generator().manual_seed(0))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_too_few_steps_for_the_window():
    buffer = PrioritizedReplayBuffer(40, 2)
    fill(buffer, 4)
    with pytest.raises(RuntimeError, match="windows of 5 steps"):
        buffer.sample_sequences(4, 5)


def test_sum_tree_prefix_and_wrapped_ranges():
    priorities = torch.tensor([1.0, 0.0, 4.0, 2.5, 0.5, 7.0, 3.0], dtype=torch.float64)
    tree = SumTree(7)
    tree.update(torch.arange(7), priorities)
    cumulative = torch.cat([torch.zeros(1, dtype=torch.float64), priorities.cumsum(0)])
    assert torch.allclose(tree.prefix(*range(8)), cumulative)
    # Items 5, 6, 0, 1: a range that wraps around the end.
    generator = torch.Generator().manual_seed(0)
    draws = [tree.sample_range(128, 5, 4, generator) for _ in range(40)]
    assert draws[0][1].item() == pytest.approx(7.0 + 3.0 + 1.0)
    counts = torch.bincount(torch.cat([d[0] for d in draws]), minlength=7)
    assert counts[[1, 2, 3, 4]].sum() == 0
    expected = torch.tensor([7.0, 3.0, 1.0], dtype=torch.float64) / 11.0 * counts.sum()
    _, p_value = chisquare(counts[[5, 6, 0]].numpy(), expected.numpy())
    assert p_value > 0.01
