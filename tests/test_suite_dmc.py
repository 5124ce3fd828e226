"""DeepMind Control suite on the real dm_control: action repeat, float32 state, truncation,
headless pixels."""

from __future__ import annotations

import pytest
import torch

from deeprl.envs.suites import make_suite_env
from deeprl.errors import UserError


def physics_time(env) -> float:
    return float(env.env.envs[0].unwrapped._env.physics.data.time)


def test_walker_state_action_repeat_and_seeding():
    one = make_suite_env("dmc", 1, task="walker-walk", action_repeat=1)
    two = make_suite_env("dmc", 1, task="walker-walk", action_repeat=2)
    try:
        assert two.spec.observation_space.shape == (24,)
        assert two.spec.observation_space.dtype == torch.float32
        assert two.spec.action_space.shape == (6,)
        assert two.spec.max_episode_steps == 500 and one.spec.max_episode_steps == 1000
        action = torch.full((1, 6), 0.3)
        for env in (one, two):
            env.reset(seed=0)
            for _ in range(3):
                obs = env.step(action).obs
            assert obs.dtype == torch.float32
        assert physics_time(two) == pytest.approx(2 * physics_time(one))

        def trajectory(seed: int) -> torch.Tensor:
            obs = [two.reset(seed=seed)]
            obs += [two.step(action).obs for _ in range(10)]
            return torch.stack(obs)

        assert torch.equal(trajectory(4), trajectory(4))
        assert not torch.equal(trajectory(4), trajectory(5))
    finally:
        one.close()
        two.close()


def test_time_limit_is_a_truncation():
    env = make_suite_env("dmc", 1, task="cartpole-swingup", action_repeat=8)
    try:
        assert env.spec.max_episode_steps == 125  # 1000 control steps / 8
        env.reset(seed=0)
        results = [env.step(env.sample_actions()) for _ in range(125)]
        assert not any(r.done.any() for r in results[:-1])
        result = results[-1]
        assert result.truncated.item() and not result.terminated.item()
        assert result.episode_length.item() == 125
    finally:
        env.close()


def test_pixels_render_headless():
    env = make_suite_env("dmc", 1, task="cheetah-run", pixels=True, size=32, camera=0)
    try:
        assert env.spec.observation_space.shape == (3, 32, 32)
        obs = env.reset(seed=0)
        assert obs.dtype == torch.uint8 and obs.float().std() > 0
        assert env.step(env.sample_actions()).obs.shape == (1, 3, 32, 32)
    finally:
        env.close()


def test_unknown_task_lists_close_matches():
    with pytest.raises(UserError, match="Did you mean: walker-walk"):
        make_suite_env("dmc", 1, task="walker-wlk")


def test_every_task_builds_resets_and_steps():
    from deeprl.envs.suites.dmc import task_names

    names = task_names()
    assert len(names) == 51 and "quadruped-run" in names  # quadruped needs numpy's in1d shim
    for name in names:
        env = make_suite_env("dmc", 1, task=name)
        try:
            obs = env.reset(seed=0)
            result = env.step(env.sample_actions(torch.Generator().manual_seed(0)))
            assert obs.shape == (1, *env.spec.observation_space.shape), name
            assert torch.isfinite(result.reward).all(), name
        finally:
            env.close()
