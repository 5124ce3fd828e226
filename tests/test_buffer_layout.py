"""Replay layouts and bulk loading: the observation-only layout samples exactly what the default
layout samples, ``extend``/``from_arrays`` equal step-by-step ``add``, memory accounting."""

from __future__ import annotations

from collections import deque

import pytest
import torch

from deeprl.buffers import PrioritizedReplayBuffer, ReplayBuffer
from deeprl.errors import UserError


def stream(
    num_envs: int,
    steps: int,
    frame_stack: int = 1,
    padding: str = "first",
    seed: int = 0,
    p_end: float = 0.2,
    pixels: bool = True,
    first_step: int = 0,
) -> list[dict[str, torch.Tensor]]:
    """Batched transitions of ``num_envs`` envs whose episodes end at random (half terminated,
    half truncated), as the trainer's collector hands them out. Observations are (k, 2, 2) uint8
    frame stacks (or (3,) floats without ``pixels``) built from distinct frames, with
    ``next_obs`` the true next observation before any reset. Extras: ``episode`` and ``step``."""
    generator = torch.Generator().manual_seed(seed)
    count = seed * 1000

    def frame() -> torch.Tensor:
        nonlocal count
        count += 1
        if pixels:
            return torch.full((1, 2, 2), count % 251, dtype=torch.uint8)
        return torch.full((3,), float(count))

    def reset() -> deque:
        f = frame()
        pad = f if padding == "first" else torch.zeros_like(f)
        return deque([pad] * (frame_stack - 1) + [f], maxlen=frame_stack)

    def observe(stacks: list[deque]) -> torch.Tensor:
        return torch.stack([torch.cat(list(s)) for s in stacks])

    stacks = [reset() for _ in range(num_envs)]
    episode = torch.arange(num_envs) + seed * 1000
    next_episode = int(episode.max()) + 1
    out = []
    for t in range(steps):
        obs = observe(stacks)
        for s in stacks:
            s.append(frame())
        u = torch.rand(num_envs, generator=generator)
        terminated = u < p_end / 2
        truncated = (u >= p_end / 2) & (u < p_end)
        out.append(
            {
                "obs": obs,
                "action": torch.randint(4, (num_envs,), generator=generator),
                "reward": torch.rand(num_envs, generator=generator),
                "next_obs": observe(stacks),
                "terminated": terminated,
                "truncated": truncated,
                "episode": episode.clone(),
                "step": torch.full((num_envs,), first_step + t),
            }
        )
        for e in torch.nonzero(terminated | truncated).flatten().tolist():
            stacks[e] = reset()
            episode[e] = next_episode
            next_episode += 1
    return out


def stacked(transitions: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The transitions as (L, N, ...) arrays."""
    return {k: torch.stack([tr[k] for tr in transitions]) for k in transitions[0]}


def assert_batches_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_same_samples(a: ReplayBuffer, b: ReplayBuffer, seed: int = 0) -> None:
    """Transitions and sequences (masked and not) drawn with the same seed are equal."""
    for draw in (
        lambda buffer, g: buffer.sample(256, g),
        lambda buffer, g: buffer.sample_sequences(32, 5, g),
        lambda buffer, g: buffer.sample_sequences(32, 5, g, allow_cross_episode=True),
    ):
        assert_batches_equal(
            draw(a, torch.Generator().manual_seed(seed)),
            draw(b, torch.Generator().manual_seed(seed)),
        )


# (frame_stack, n_step, capacity, num_envs): 60 steps always wrap the smaller buffers.
LAYOUT_CASES = [(1, 1, 400, 2), (1, 3, 40, 2), (3, 1, 36, 2), (3, 3, 27, 1), (4, 2, 200, 3)]


@pytest.mark.parametrize("frame_stack, n_step, capacity, num_envs", LAYOUT_CASES)
def test_obs_only_layout_samples_equal_the_default_layout(frame_stack, n_step, capacity, num_envs):
    data = stream(num_envs, 60, frame_stack, pixels=frame_stack > 1)
    data[-1]["terminated"][0] = True  # an episode ending at the newest step
    options = dict(n_step=n_step, frame_stack=frame_stack, gamma=0.9)
    full = ReplayBuffer(capacity, num_envs, **options)
    obs_only = ReplayBuffer(capacity, num_envs, store_next_obs=False, end_capacity=1, **options)
    for transition in data:
        full.add(transition)
        obs_only.add(transition)
    assert "next_obs" not in obs_only.data
    assert_same_samples(full, obs_only)
    # The side store grew from room for one final observation but stayed smaller than the data.
    assert 1 < obs_only._end_rows < obs_only.steps * num_envs
    if n_step == 1:  # and the rebuilt next_obs is the true one
        batch = obs_only.sample(256, torch.Generator().manual_seed(1))
        truth = stacked(data)["next_obs"][batch["step"], batch["index"] % num_envs]
        assert torch.equal(batch["next_obs"], truth)


def test_obs_only_sequences_carry_final_observations():
    data = stream(2, 30, p_end=0.3, pixels=False)
    buffer = ReplayBuffer(60, 2, store_next_obs=False)
    for transition in data:
        buffer.add(transition)
    batch = buffer.sample_sequences(64, 6, torch.Generator().manual_seed(0))
    truth = stacked(data)["next_obs"][batch["step"], batch["index"] % 2]
    mask = batch["mask"]
    assert torch.equal(batch["next_obs"][mask], truth[mask])
    ended = (batch["terminated"] | batch["truncated"]) & mask
    assert ended.any()
    # At an episode's end next_obs is its final observation, not the next episode's first.
    following = batch["obs"][:, 1:][ended[:, :-1]]
    assert not torch.equal(batch["next_obs"][:, :-1][ended[:, :-1]], following)


@pytest.mark.parametrize("store_next_obs", [True, False])
def test_state_dict_round_trip_in_both_layouts(store_next_obs, tmp_path):
    buffer = PrioritizedReplayBuffer(
        40, 2, n_step=2, frame_stack=3, store_next_obs=store_next_obs, end_capacity=2
    )
    for transition in stream(2, 30, frame_stack=3):
        buffer.add(transition)
    buffer.update_priorities(torch.tensor([0, 5, 7]), torch.tensor([3.0, 0.1, 9.0]))
    buffer.save(tmp_path / "replay.pt")
    restored = PrioritizedReplayBuffer(
        40, 2, n_step=2, frame_stack=3, store_next_obs=store_next_obs, end_capacity=2
    )
    restored.load(tmp_path / "replay.pt")
    assert_same_samples(buffer, restored)
    # Both continue identically (the restored one re-checks its side store's room).
    for transition in stream(2, 25, frame_stack=3, seed=1):
        buffer.add(transition)
        restored.add(transition)
    assert_same_samples(buffer, restored, seed=1)
    with pytest.raises(UserError, match="store_next_obs"):
        ReplayBuffer(40, 2, store_next_obs=not store_next_obs).load(tmp_path / "replay.pt")


@pytest.mark.parametrize("store_next_obs", [True, False])
@pytest.mark.parametrize("num_envs, flat", [(1, True), (2, False)])
def test_extend_equals_step_by_step_adds(store_next_obs, num_envs, flat):
    data = stream(num_envs, 70, frame_stack=3)
    options = dict(n_step=2, frame_stack=3, store_next_obs=store_next_obs, end_capacity=1)
    added = ReplayBuffer(30 * num_envs, num_envs, **options)
    bulk = ReplayBuffer(30 * num_envs, num_envs, **options)
    arrays = stacked(data)
    if flat:
        arrays = {k: v.squeeze(1).numpy() for k, v in arrays.items()}
    # Chunks continue each other; the 35-step one wraps the 30-step buffer on its own.
    for begin, end in [(0, 0), (0, 12), (12, 13), (13, 48), (48, 70)]:
        for transition in data[begin:end]:
            added.add(transition)
        bulk.extend({k: v[begin:end] for k, v in arrays.items()})
        assert (bulk.pos, bulk.size) == (added.pos, added.size)
        if end:
            assert_same_samples(added, bulk, seed=end)
    for key in added.data:
        if key != "end_ref":  # references count final observations the 35 steps overwrote
            assert torch.equal(added.data[key], bulk.data[key]), key


def test_from_arrays_loads_a_flat_dataset_of_numpy_arrays():
    data = stream(1, 50, pixels=False, p_end=0.1)
    arrays = {k: v.squeeze(1).numpy() for k, v in stacked(data).items()}
    buffer = PrioritizedReplayBuffer.from_arrays(arrays, n_step=3, store_next_obs=False)
    assert isinstance(buffer, PrioritizedReplayBuffer)
    assert (buffer.capacity, buffer.num_envs, len(buffer)) == (50, 1, 50)
    added = PrioritizedReplayBuffer(50, 1, n_step=3, store_next_obs=False)
    for transition in data:
        added.add(transition)
    assert_same_samples(added, buffer)
    batched = ReplayBuffer.from_arrays(stacked(stream(4, 10, pixels=False)), capacity=80)
    assert (batched.num_envs, batched.steps, len(batched)) == (4, 20, 40)
    with pytest.raises(UserError, match="4 envs"):
        ReplayBuffer(20, 2).extend(stacked(stream(4, 10, pixels=False)))


def pixel_step(num_envs: int, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    return {
        "obs": torch.zeros((num_envs, *shape), dtype=torch.uint8),
        "action": torch.zeros(num_envs, dtype=torch.long),
        "reward": torch.zeros(num_envs),
        "next_obs": torch.zeros((num_envs, *shape), dtype=torch.uint8),
        "terminated": torch.zeros(num_envs, dtype=torch.bool),
        "truncated": torch.zeros(num_envs, dtype=torch.bool),
    }


@pytest.mark.parametrize("store_next_obs", [True, False])
@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer])
def test_required_bytes_equals_the_allocation(cls, store_next_obs):
    buffer = cls(600, 2, frame_stack=4, store_next_obs=store_next_obs)
    transition = pixel_step(2, (12, 8, 8))
    planned = buffer.required_bytes(transition)
    assert buffer.nbytes == 0
    buffer.add(transition)
    tensors = list(buffer.data.values()) + ([buffer.ends] if buffer.ends is not None else [])
    tree = buffer.tree.tree.nbytes if cls is PrioritizedReplayBuffer else 0
    assert buffer.nbytes == planned == sum(t.nbytes for t in tensors) + tree


def test_obs_only_layout_halves_pixel_memory():
    transition = pixel_step(1, (3, 64, 64))
    full = ReplayBuffer(10_000, 1).required_bytes(transition)
    obs_only = ReplayBuffer(10_000, 1, store_next_obs=False).required_bytes(transition)
    assert 0.5 < obs_only / full < 0.52
