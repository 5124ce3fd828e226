"""MuJoCo suite (gymnasium v5) on the real simulator: spaces, seeding, episode ends, pixels."""

from __future__ import annotations

import pytest
import torch

from conftest import random_rollout
from deeprl.envs.suites import make_suite_env
from deeprl.errors import UserError


def test_halfcheetah_spec_and_same_seed_same_trajectory_sync_and_async():
    sync = make_suite_env("mujoco", 2, task="HalfCheetah-v5")
    async_ = make_suite_env("mujoco", 2, task="HalfCheetah-v5", vectorization="async")
    try:
        assert sync.spec.observation_space.shape == (17,)
        assert sync.spec.action_space.shape == (6,)
        assert sync.spec.max_episode_steps == 1000
        assert sync.spec.observation_space == async_.spec.observation_space
        a, _ = random_rollout(sync, seed=1, steps=30)
        b, _ = random_rollout(sync, seed=1, steps=30)
        c, _ = random_rollout(async_, seed=1, steps=30)
        assert a.dtype == torch.float32 and a.shape == (31, 2, 17)
        assert torch.equal(a, b) and torch.equal(a, c)
        assert not torch.equal(a[:, 0], a[:, 1])  # copies are seeded apart
    finally:
        sync.close()
        async_.close()


def test_hopper_terminates_when_unhealthy():
    env = make_suite_env("mujoco", 1, task="Hopper-v5")
    try:
        _, results = random_rollout(env, seed=0, steps=200)
        ends = [r for r in results if r.done.any()]
        assert ends, "random actions should make Hopper fall within 200 steps"
        first = ends[0]
        assert first.terminated.item() and not first.truncated.item()
        assert not torch.equal(first.obs, first.next_obs)
    finally:
        env.close()


def test_hopper_over_two_async_workers_matches_sync():
    sync = make_suite_env("mujoco", 3, task="Hopper-v5")
    pooled = make_suite_env("mujoco", 3, task="Hopper-v5", vectorization="async", workers=2)
    try:
        a, expected = random_rollout(sync, seed=2, steps=150)
        b, results = random_rollout(pooled, seed=2, steps=150)
        assert torch.equal(a, b)
        assert any(r.terminated.any() for r in results)
        for got, want in zip(results, expected, strict=True):
            assert torch.equal(got.next_obs, want.next_obs)
            assert torch.equal(got.terminated, want.terminated)
    finally:
        sync.close()
        pooled.close()


def test_pixels_render_headless():
    env = make_suite_env("mujoco", 1, task="HalfCheetah-v5", pixels=True, size=32)
    try:
        assert env.spec.observation_space.shape == (3, 32, 32)
        obs = env.reset(seed=0)
        assert obs.dtype == torch.uint8 and obs.shape == (1, 3, 32, 32)
        assert obs.float().std() > 0  # a real image, not a blank frame
        assert env.step(env.sample_actions()).obs.shape == (1, 3, 32, 32)
    finally:
        env.close()


def test_unknown_task_lists_close_matches():
    with pytest.raises(UserError, match="Did you mean: HalfCheetah-v5"):
        make_suite_env("mujoco", 1, task="HalfCheeta-v5")
