"""Meta-World MT1 on the real simulator: spaces, seeding, the episode success flag."""

from __future__ import annotations

import pytest
import torch
from metaworld.policies import SawyerReachV3Policy

from deeprl.envs.suites import make_suite_env
from deeprl.errors import UserError


def test_mt1_spec_and_same_seed_same_trajectory():
    env = make_suite_env("metaworld", 2, task="reach-v3")
    try:
        assert env.spec.observation_space.shape == (39,)
        assert env.spec.action_space.shape == (4,)
        assert env.spec.max_episode_steps == 500

        def trajectory(seed: int) -> torch.Tensor:
            generator = torch.Generator().manual_seed(0)
            obs = [env.reset(seed=seed)]
            obs += [env.step(env.sample_actions(generator)).obs for _ in range(10)]
            return torch.stack(obs)

        a = trajectory(1)
        assert a.dtype == torch.float32
        assert torch.equal(a, trajectory(1)) and not torch.equal(a, trajectory(2))
        assert not torch.equal(a[0, 0, -3:], a[0, 1, -3:])  # copies get different goals
    finally:
        env.close()


def test_success_is_reported_for_the_episode_at_its_end():
    env = make_suite_env("metaworld", 1, task="reach-v3")
    policy = SawyerReachV3Policy()
    try:
        obs = env.reset(seed=0)
        successes = []
        for _ in range(500):
            action = torch.as_tensor(policy.get_action(obs[0].double().numpy()))[None].float()
            result = env.step(action.clamp(-1, 1))
            successes.append(result.info["success"].item())
            obs = result.obs
            if result.done.any():
                break
        assert result.truncated.item() and not result.terminated.item()
        assert result.episode_length.item() == 500
        assert 1.0 in successes
        first = successes.index(1.0)
        assert all(s == 1.0 for s in successes[first:])  # a running max: stays solved
        assert result.info["success"].item() == 1.0
    finally:
        env.close()


def test_unknown_task_and_benchmark():
    with pytest.raises(UserError, match="Did you mean: reach-v3"):
        make_suite_env("metaworld", 1, task="reech-v3")
    with pytest.raises(UserError, match="MT1"):
        make_suite_env("metaworld", 1, task="reach-v3", benchmark="MT2")
