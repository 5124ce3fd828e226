"""Replay buffers: n-step returns, sum tree, prioritized weights, frame stacks, sequences, I/O."""

from __future__ import annotations

from collections import deque

import pytest
import torch
from scipy.stats import chisquare

from deeprl.buffers.replay import PrioritizedReplayBuffer, ReplayBuffer
from deeprl.buffers.sum_tree import SumTree
from deeprl.errors import UserError


def step(obs, next_obs, reward, terminated=False, truncated=False, **extras):
    """A one-env batched transition from plain values."""
    return {
        "obs": torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1),
        "action": torch.zeros(1, dtype=torch.long),
        "reward": torch.tensor([reward], dtype=torch.float32),
        "next_obs": torch.as_tensor(next_obs, dtype=torch.float32).reshape(1, -1),
        "terminated": torch.tensor([terminated]),
        "truncated": torch.tensor([truncated]),
        **{k: torch.tensor([v]) for k, v in extras.items()},
    }


def test_n_step_returns_stop_at_terminations_and_bootstrap_through_truncations():
    rewards = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    terminated = {2}
    truncated = {4}
    buffer = ReplayBuffer(20, 1, n_step=3, gamma=0.5)
    for t, r in enumerate(rewards):
        buffer.add(step(t, 100 + t, r, t in terminated, t in truncated))
    # (n-step return, discount, step whose next_obs is bootstrapped from) per start step.
    expected = {
        0: (1 + 0.5 * 2 + 0.25 * 3, 0.0, 2),
        1: (2 + 0.5 * 3, 0.0, 2),
        2: (3, 0.0, 2),
        3: (4 + 0.5 * 5, 0.25, 4),
        4: (5, 0.5, 4),
        5: (6 + 0.5 * 7 + 0.25 * 8, 0.125, 7),
        6: (7 + 0.5 * 8 + 0.25 * 9, 0.125, 8),
    }
    batch = buffer.sample(500, generator=torch.Generator().manual_seed(0))
    starts = batch["obs"][:, 0].long()
    assert set(starts.tolist()) == set(expected)  # steps 7 and 8: window not written yet
    for i, t in enumerate(starts.tolist()):
        ret, discount, last = expected[t]
        assert batch["reward"][i].item() == pytest.approx(ret)
        assert batch["discount"][i].item() == pytest.approx(discount)
        assert batch["next_obs"][i, 0].item() == 100 + last
        assert batch["terminated"][i].item() == (last in terminated)
        assert batch["index"][i].item() == t


def test_sum_tree_sampling_frequencies_match_priorities():
    priorities = torch.tensor(
        [1.0, 0.0, 4.0, 2.5, 0.5, 7.0, 0.0, 3.0, 1.0, 6.0], dtype=torch.float64
    )
    tree = SumTree(len(priorities))
    tree.update(torch.arange(10), priorities)
    assert tree.total.item() == pytest.approx(priorities.sum().item())
    generator = torch.Generator().manual_seed(0)
    samples = torch.cat([tree.sample(256, generator) for _ in range(40)])
    counts = torch.bincount(samples, minlength=10)
    assert counts[priorities == 0].sum() == 0
    nonzero = priorities > 0
    expected = priorities[nonzero] / priorities.sum() * len(samples)
    _, p_value = chisquare(counts[nonzero].numpy(), expected.numpy())
    assert p_value > 0.01
    # Batched updates with later changes: sums stay exact.
    tree.update(torch.tensor([5, 0]), torch.tensor([0.0, 2.0]))
    assert tree.total.item() == pytest.approx(priorities.sum().item() - 7.0 + 1.0)


def test_prioritized_importance_weights():
    buffer = PrioritizedReplayBuffer(4, 1, alpha=1.0, beta=0.5, eps=0.0)
    for t in range(4):
        buffer.add(step(t, t + 1, 0.0))
    buffer.update_priorities(torch.arange(4), torch.tensor([1.0, 2.0, 3.0, -4.0]))
    batch = buffer.sample(64, generator=torch.Generator().manual_seed(0))
    p = torch.tensor([1.0, 2.0, 3.0, 4.0])[batch["index"]]
    raw = (4 * p / 10) ** -0.5
    assert torch.allclose(batch["weight"], raw / raw.max())
    # New items get the largest priority seen so far (p = 4, alpha = 1).
    buffer.add(step(4, 5, 0.0))
    assert buffer.tree.leaves[0].item() == pytest.approx(4.0)
    assert buffer.tree.total.item() == pytest.approx(4 + 2 + 3 + 4)


def test_prioritized_buffer_waits_for_the_n_step_window():
    buffer = PrioritizedReplayBuffer(10, 1, n_step=3)
    for t in range(4):
        buffer.add(step(t, t + 1, 1.0))
    starts = buffer.sample(200, generator=torch.Generator().manual_seed(1))["obs"][:, 0]
    assert set(starts.long().tolist()) == {0, 1}


def run_pixel_stream(buffer, padding, steps, ends, k=3, num_envs=1):
    """Feed frame-stacked pixel observations as an env with ``padding`` would produce them;
    returns the naive stacks (obs, next_obs) per step. ``ends`` maps step -> 'term'|'trunc'."""
    counter = 0

    def frame():
        nonlocal counter
        counter += 1
        return torch.full((num_envs, 1, 2, 2), counter % 256, dtype=torch.uint8)

    def reset_stack(f):
        pad = f if padding == "first" else torch.zeros_like(f)
        return deque([pad] * (k - 1) + [f], maxlen=k)

    stack = reset_stack(frame())
    naive_obs, naive_next = [], []
    for t in range(steps):
        obs = torch.cat(list(stack), dim=1)
        stack.append(frame())
        next_obs = torch.cat(list(stack), dim=1)
        end = ends.get(t)
        buffer.add(
            {
                "obs": obs,
                "action": torch.zeros(num_envs, dtype=torch.long),
                "reward": torch.zeros(num_envs),
                "next_obs": next_obs,
                "terminated": torch.full((num_envs,), end == "term"),
                "truncated": torch.full((num_envs,), end == "trunc"),
            }
        )
        naive_obs.append(obs)
        naive_next.append(next_obs)
        if end:
            stack = reset_stack(frame())
    return torch.stack(naive_obs), torch.stack(naive_next)


@pytest.mark.parametrize("padding", ["first", "zero"])
@pytest.mark.parametrize("capacity", [64, 9])  # 9 < 20 steps: the buffer wraps
def test_frame_stacks_equal_naive_stacking(padding, capacity):
    ends = {1: "term", 5: "trunc", 6: "term", 12: "term"}
    buffer = ReplayBuffer(capacity, 1, frame_stack=3, frame_padding=padding)
    naive_obs, naive_next = run_pixel_stream(buffer, padding, 20, ends)
    assert buffer.data["obs"].shape == (capacity, 1, 1, 2, 2)  # single frames only
    batch = buffer.sample(400, generator=torch.Generator().manual_seed(0))
    steps_total = 20
    # Map buffer slots back to stream steps.
    slot = batch["index"]
    stream_step = slot + (steps_total - steps_total % capacity if capacity < steps_total else 0)
    stream_step = torch.where(stream_step >= steps_total, stream_step - capacity, stream_step)
    assert stream_step.min() >= max(0, steps_total - capacity)
    assert torch.equal(batch["obs"], naive_obs[stream_step, 0])
    assert torch.equal(batch["next_obs"], naive_next[stream_step, 0])


def test_frame_stacks_with_n_step_bootstrap():
    ends = {4: "trunc"}
    buffer = ReplayBuffer(32, 1, n_step=3, frame_stack=3, gamma=0.9)
    naive_obs, naive_next = run_pixel_stream(buffer, "first", 10, ends)
    batch = buffer.sample(200, generator=torch.Generator().manual_seed(0))
    for i, t in enumerate(batch["index"].tolist()):
        last = 4 if t in (2, 3, 4) else t + 2
        assert torch.equal(batch["next_obs"][i], naive_next[last, 0])
        assert torch.equal(batch["obs"][i], naive_obs[t, 0])


def fill_episodes(buffer, num_envs, steps, seed=0):
    """Random episode ends; extras ``episode`` (id) and ``t`` (global step)."""
    generator = torch.Generator().manual_seed(seed)
    episode = torch.arange(num_envs)
    next_id = num_envs
    for t in range(steps):
        done = torch.rand(num_envs, generator=generator) < 0.2
        buffer.add(
            {
                "obs": torch.full((num_envs, 2), float(t)),
                "action": torch.zeros(num_envs, 1),
                "reward": torch.ones(num_envs),
                "next_obs": torch.full((num_envs, 2), t + 0.5),
                "terminated": done,
                "truncated": torch.zeros(num_envs, dtype=torch.bool),
                "episode": episode.clone(),
            }
        )
        for e in torch.nonzero(done).flatten().tolist():
            episode[e] = next_id
            next_id += 1


def test_sequences_stay_in_one_episode_and_mask():
    buffer = ReplayBuffer(60, 2)
    fill_episodes(buffer, 2, 50)  # wraps: 30 steps kept per env
    batch = buffer.sample_sequences(64, 8, generator=torch.Generator().manual_seed(0))
    assert batch["obs"].shape == (64, 8, 2) and batch["mask"].shape == (64, 8)
    mask, episode = batch["mask"], batch["episode"]
    assert mask[:, 0].all()
    assert (mask[:, 1:] <= mask[:, :-1]).all()  # a prefix
    assert not mask.all()  # some chunks met an episode start
    assert (episode == episode[:, :1])[mask].all()
    assert (batch["obs"][~mask] == 0).all()
    assert not batch["is_first"][:, 1:].any()
    # Valid steps are consecutive in time.
    times = batch["obs"][..., 0]
    assert ((times[:, 1:] - times[:, :-1] == 1) | ~mask[:, 1:]).all()


def test_sequences_may_cross_episodes():
    buffer = ReplayBuffer(60, 2)
    fill_episodes(buffer, 2, 50)
    batch = buffer.sample_sequences(
        64, 8, generator=torch.Generator().manual_seed(0), allow_cross_episode=True
    )
    assert batch["mask"].all()
    changed = batch["episode"][:, 1:] != batch["episode"][:, :-1]
    assert torch.equal(changed, batch["is_first"][:, 1:])
    assert (batch["obs"][:, 1:, 0] - batch["obs"][:, :-1, 0] == 1).all()


def test_save_load_round_trip(tmp_path):
    buffer = PrioritizedReplayBuffer(40, 2, n_step=2, gamma=0.9)
    fill_episodes(buffer, 2, 30)
    buffer.update_priorities(torch.tensor([0, 5, 7]), torch.tensor([3.0, 0.1, 9.0]))
    buffer.save(tmp_path / "replay.pt")
    restored = PrioritizedReplayBuffer(40, 2, n_step=2, gamma=0.9)
    restored.load(tmp_path / "replay.pt")
    assert (restored.pos, restored.size, len(restored)) == (buffer.pos, buffer.size, len(buffer))
    a = buffer.sample(32, generator=torch.Generator().manual_seed(3))
    b = restored.sample(32, generator=torch.Generator().manual_seed(3))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert torch.equal(buffer.tree.tree, restored.tree.tree)
    with pytest.raises(UserError, match="capacity 40"):
        ReplayBuffer(80, 2).load(tmp_path / "replay.pt")


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer])
def test_capacity_that_does_not_fit_fails_before_allocating(cls):
    buffer = cls(10**12, 1)
    with pytest.raises(UserError) as info:
        buffer.add(step([0.0] * 4, [0.0] * 4, 1.0))
    message = str(info.value)
    assert "1000000000000" in message and "agent.buffer_size" in message
    assert "available" in message
    assert buffer.data == {}


def test_bad_configuration_errors():
    with pytest.raises(UserError, match="buffer_size"):
        ReplayBuffer(3, 4)
    with pytest.raises(UserError, match="frame_padding"):
        ReplayBuffer(10, 1, frame_padding="edge")
