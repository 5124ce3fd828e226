"""Meta-World on the real simulator: MT1 spaces, seeding and the episode success flag; MT10
one-hot task ids; ML1 train/test goals; option errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metaworld.policies import SawyerReachV3Policy

from deeprl.envs.suites import make_suite_env
from deeprl.envs.suites.metaworld import benchmark_task_names
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


def test_every_benchmark_lists_its_tasks():
    sizes = {"MT10": 10, "MT25": 25, "MT50": 50, "ML10": 10, "ML25": 25, "ML45": 45}
    for benchmark, size in sizes.items():
        tasks = benchmark_task_names(benchmark)
        assert len(tasks) == len(set(tasks)) == size
        if benchmark.startswith("ML"):
            held_out = benchmark_task_names(benchmark, "test")
            # metaworld 3.1.1 lists basketball-v3 in both of ML25's splits (docs/envs.md)
            shared = {"basketball-v3"} if benchmark == "ML25" else set()
            assert len(held_out) == 5 and set(held_out) & set(tasks) == shared
    assert benchmark_task_names("MT25")[:2] == ["reach-v3", "push-v3"]  # metaworld's order


def test_mt10_one_hot_task_per_copy():
    env = make_suite_env("metaworld", 10, benchmark="MT10")
    try:
        names = benchmark_task_names("MT10")
        assert len(set(names)) == 10
        assert env.spec.id == "metaworld/MT10"
        assert env.spec.observation_space.shape == (49,)
        assert env.spec.action_space.shape == (4,) and env.spec.max_episode_steps == 500
        assert env.spec.metadata["copy_tasks"] == names  # round-robin: copy i runs task i
        assert len({type(copy.unwrapped) for copy in env.env.envs}) == 10  # a task per copy
        obs = env.reset(seed=0)
        assert obs.shape == (10, 49) and obs.dtype == torch.float32
        assert torch.equal(obs[:, 39:], torch.eye(10))
        result = env.step(env.sample_actions(torch.Generator().manual_seed(0)))
        assert torch.equal(result.obs[:, 39:], torch.eye(10))
        assert result.info["success"].shape == (10,)
    finally:
        env.close()


def _goals(env) -> set[tuple[float, ...]]:
    """The goals copy 0 samples from (metaworld's task list), as rounded tuples, read through
    metaworld's own ``set_task`` (the next reset picks a task again)."""
    copy = env.env.envs[0]
    goals = set()
    for task in copy.get_wrapper_attr("tasks"):
        copy.unwrapped.set_task(task)
        goals.add(tuple(np.round(copy.unwrapped._last_rand_vec, 6)))
    return goals


def test_ml1_train_and_test_goals_differ():
    train = make_suite_env("metaworld", 1, benchmark="ML1", task="reach-v3", split="train")
    test = make_suite_env("metaworld", 1, benchmark="ML1", task="reach-v3", split="test")
    try:
        assert train.spec.id == "metaworld/ML1-train/reach-v3"
        assert test.spec.id == "metaworld/ML1-test/reach-v3"
        train_goals, test_goals = _goals(train), _goals(test)
        assert len(train_goals) == len(test_goals) == 50 and not train_goals & test_goals
        obs = train.reset(seed=0)
        assert obs.shape == (1, 39) and not obs[0, 36:].any()  # ML: goal hidden, no task id
        goal = tuple(np.round(train.env.envs[0].unwrapped._last_rand_vec, 6))
        assert goal in train_goals
    finally:
        train.close()
        test.close()


def test_bad_num_envs_and_benchmark_options():
    with pytest.raises(UserError, match=r"multiple of 10 \(10, 20, 30, ...\), got 3"):
        make_suite_env("metaworld", 3, benchmark="MT10")
    with pytest.raises(UserError, match="multiple of 5"):
        make_suite_env("metaworld", 2, benchmark="ML10", split="test")
    with pytest.raises(UserError, match="Did you mean:.*MT10"):
        make_suite_env("metaworld", 10, benchmark="MT01")
    with pytest.raises(UserError, match="Did you mean: test"):
        make_suite_env("metaworld", 1, benchmark="ML1", split="tset")
    with pytest.raises(UserError, match="only training tasks"):
        make_suite_env("metaworld", 10, benchmark="MT10", split="test")
