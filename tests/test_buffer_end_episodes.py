"""``end_episodes``: after a resume whose envs restart their episodes, no n-step window, frame
stack, sequence or GAE trace joins the stored episode to the new one."""

from __future__ import annotations

import pytest
import torch
from test_buffer_layout import assert_same_samples, stacked, stream

from deeprl.buffers import ReplayBuffer, RolloutBuffer, generalized_advantage_estimation

K, N_STEP, GAMMA = 3, 3, 0.9


def resumed(store_next_obs: bool, end: bool, through_state_dict: bool = False):
    """12 steps of 2 envs, a 'resume' (fresh episodes, ``end_episodes`` if ``end``), 12 more
    steps. Returns the buffer and the (24, 2, ...) true transitions; no episode ends otherwise."""
    before = stream(2, 12, frame_stack=K, p_end=0.0)
    after = stream(2, 12, frame_stack=K, p_end=0.0, seed=1, first_step=12)
    options = dict(n_step=N_STEP, frame_stack=K, gamma=GAMMA, store_next_obs=store_next_obs)
    buffer = ReplayBuffer(100, 2, **options)
    for transition in before:
        buffer.add(transition)
    if end:
        buffer.end_episodes()
    if through_state_dict:
        restored = ReplayBuffer(100, 2, **options)
        restored.load_state_dict(buffer.state_dict())
        buffer = restored
    for transition in after:
        buffer.add(transition)
    return buffer, stacked(before + after)


@pytest.mark.parametrize("store_next_obs", [True, False])
def test_replay_windows_stacks_and_sequences_stop_at_the_resume(store_next_obs):
    buffer, truth = resumed(store_next_obs, end=True)
    batch = buffer.sample(512, torch.Generator().manual_seed(0))
    step, env = batch["step"], batch["index"] % 2
    assert set(step.tolist()) == set(range(22))
    # Frame stacks: the first steps after the resume are padded, not filled from before it.
    assert torch.equal(batch["obs"], truth["obs"][step, env])
    # n-step windows from before the resume end at step 11, truncated: they bootstrap from its
    # next_obs, the true last observation.
    last = torch.where(step <= 11, (step + N_STEP - 1).clamp(max=11), step + N_STEP - 1)
    assert torch.equal(batch["next_obs"], truth["next_obs"][last, env])
    assert torch.equal(batch["truncated"], last == 11)
    assert not batch["terminated"].any()
    assert torch.allclose(batch["discount"], GAMMA ** (last - step + 1).float())
    # Sequences stop at the resume.
    sequences = buffer.sample_sequences(128, 6, torch.Generator().manual_seed(1))
    mask, steps = sequences["mask"], sequences["index"] // 2  # masked fields are zeroed
    crosses = (steps[:, :1] <= 11) & (steps >= 12)
    assert not (crosses & mask).any() and crosses.any()
    is_first = sequences["is_first"]
    assert torch.equal(is_first[:, 0], steps[:, 0] % 12 == 0) and not is_first[:, 1:].any()


def test_without_end_episodes_the_resume_joins_episodes():
    buffer, truth = resumed(store_next_obs=True, end=False)
    batch = buffer.sample(512, torch.Generator().manual_seed(0))
    assert not torch.equal(batch["obs"], truth["obs"][batch["step"], batch["index"] % 2])


@pytest.mark.parametrize("store_next_obs", [True, False])
def test_end_episodes_persists_through_state_dict(store_next_obs):
    direct, _ = resumed(store_next_obs, end=True)
    restored, _ = resumed(store_next_obs, end=True, through_state_dict=True)
    assert_same_samples(direct, restored)


def test_end_episodes_keeps_terminations_and_is_a_no_op_when_empty():
    buffer = ReplayBuffer(20, 2)
    buffer.end_episodes()
    assert len(buffer) == 0 and buffer.data == {}
    data = stream(2, 3, pixels=False, p_end=0.0)
    data[-1]["terminated"][0] = True
    for transition in data:
        buffer.add(transition)
    buffer.end_episodes()
    assert buffer.data["terminated"][2].tolist() == [True, False]
    assert buffer.data["truncated"][2].tolist() == [False, True]
    buffer.add(stream(2, 1, pixels=False, seed=1)[0])
    assert buffer.data["is_first"][3].all()


def rollout_step(t: int, terminated: bool = False) -> dict[str, torch.Tensor]:
    return {
        "obs": torch.full((2, 1), float(t)),
        "reward": torch.ones(2),
        "value": torch.zeros(2),
        "next_value": torch.full((2,), 10.0 + t),
        "terminated": torch.tensor([terminated, False]),
        "truncated": torch.zeros(2, dtype=torch.bool),
    }


def test_rollout_gae_does_not_join_across_the_resume():
    buffer = RolloutBuffer(num_steps=4, num_envs=2)
    buffer.end_episodes()  # empty: a no-op
    buffer.add(rollout_step(0))
    buffer.add(rollout_step(1, terminated=True))
    buffer.end_episodes()
    restored = RolloutBuffer(num_steps=4, num_envs=2)
    restored.load_state_dict(buffer.state_dict())
    assert restored.data["truncated"][1].tolist() == [False, True]
    restored.add(rollout_step(2))
    restored.add(rollout_step(3))
    data = restored.data
    advantages, _ = generalized_advantage_estimation(
        data["reward"],
        data["value"],
        data["next_value"],
        data["terminated"],
        data["truncated"],
        gamma=0.5,
        gae_lambda=1.0,
    )
    # Step 1 ends both envs' episodes: env 0 terminated (no bootstrap), env 1 was cut by the
    # resume and bootstraps from V(next_obs) = 11, with no trace of steps 2 and 3.
    assert advantages[1].tolist() == [1.0, 1.0 + 0.5 * 11.0]
