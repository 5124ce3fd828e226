"""GymVectorEnv over real gymnasium vector envs: spec, autoreset semantics, stats and seeding."""

from __future__ import annotations

import importlib.util
import os
import signal
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import random_rollout
from deeprl.envs import make_env
from deeprl.envs.gym_env import GymVectorEnv
from deeprl.envs.spec import Box, Discrete
from deeprl.errors import UserError


@pytest.fixture
def envs():
    """Builds GymVectorEnvs and closes them after the test."""
    made = []

    def build(*args, **kwargs) -> GymVectorEnv:
        made.append(GymVectorEnv(*args, **kwargs))
        return made[-1]

    yield build
    for env in made:
        env.close()


def test_spec_from_gymnasium_spaces(envs):
    cartpole = envs("CartPole-v1", 3)
    assert cartpole.spec.id == "CartPole-v1"
    assert cartpole.spec.action_space == Discrete(2)
    assert cartpole.spec.max_episode_steps == 500
    obs_space = cartpole.spec.observation_space
    assert obs_space.shape == (4,) and obs_space.dtype == torch.float32
    assert obs_space.high[0] == pytest.approx(4.8) and obs_space.high[1] == float("inf")

    pendulum = envs("Pendulum-v1", 2)
    assert pendulum.spec.action_space == Box((1,), (-2.0,), (2.0,))
    assert pendulum.spec.observation_space.high == (1.0, 1.0, 8.0)
    assert pendulum.spec.max_episode_steps == 200
    obs = pendulum.reset(seed=0)
    assert obs.shape == (2, 3) and obs.dtype == torch.float32 and obs.device.type == "cpu"


def test_pendulum_truncates_at_200_with_final_obs_and_stats(envs):
    """Checked against plain single gymnasium envs stepped with the same seeds and actions."""
    n, seed = 2, 11
    env = envs("Pendulum-v1", n)
    obs = env.reset(seed=seed)
    singles = [gym.make("Pendulum-v1") for _ in range(n)]
    single_obs = np.stack([s.reset(seed=seed + i)[0] for i, s in enumerate(singles)])
    np.testing.assert_array_equal(obs.numpy(), single_obs)
    gen = torch.Generator().manual_seed(0)
    total = np.zeros(n)
    for t in range(1, 201):
        action = env.sample_actions(gen)
        result = env.step(action)
        steps = [s.step(a) for s, a in zip(singles, action.numpy(), strict=True)]
        total += [step[1] for step in steps]
        np.testing.assert_array_equal(result.next_obs.numpy(), np.stack([s[0] for s in steps]))
        assert not result.terminated.any()
        assert result.truncated.tolist() == [t == 200] * n
    assert result.episode_length.tolist() == [200] * n
    np.testing.assert_allclose(result.episode_return.numpy(), total, rtol=1e-6)
    # obs is the start of the next episode, as gymnasium's own reset of each copy gives it.
    reset_obs = np.stack([s.reset()[0] for s in singles])
    np.testing.assert_array_equal(result.obs.numpy(), reset_obs)
    assert not np.allclose(result.obs.numpy(), result.next_obs.numpy())
    assert result.reward.dtype == torch.float32 and result.episode_length.dtype == torch.int64


def test_cartpole_termination_final_obs_and_episode_stats(envs):
    n = 4
    env = envs("CartPole-v1", n, seed=0)
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(1)
    length = np.zeros(n, dtype=np.int64)
    finished = 0
    for _ in range(100):
        result = env.step(env.sample_actions(gen))
        length += 1
        term = result.terminated.numpy()
        assert not (term & result.truncated.numpy()).any()
        if term.any():
            final = result.next_obs.numpy()[term]
            # A terminal observation is outside the bounds; the reset one is a fresh start.
            assert ((np.abs(final[:, 0]) > 2.4) | (np.abs(final[:, 2]) > 0.2094)).all()
            assert (np.abs(result.obs.numpy()[term]) <= 0.05).all()
            finished += int(term.sum())
        np.testing.assert_array_equal(result.episode_length.numpy(), np.where(term, length, 0))
        # CartPole pays 1 per step, so the return is the length.
        np.testing.assert_array_equal(result.episode_return.numpy(), np.where(term, length, 0))
        np.testing.assert_array_equal(result.obs.numpy()[~term], result.next_obs.numpy()[~term])
        length[term] = 0
    assert finished > 0


def test_make_kwargs_time_limit_truncates(envs):
    env = envs("CartPole-v1", 2, seed=0, make_kwargs={"max_episode_steps": 5})
    assert env.spec.max_episode_steps == 5
    env.step(torch.tensor([0, 1]))
    env.reset(seed=1)  # restarts the episodes and their tallies
    for _ in range(4):
        assert not env.step(torch.tensor([0, 1])).done.any()
    result = env.step(torch.tensor([0, 1]))
    assert result.truncated.all() and not result.terminated.any()
    assert result.episode_length.tolist() == [5, 5]
    assert result.episode_return.tolist() == [5.0, 5.0]


def test_same_seed_same_trajectory(envs):
    a, b = envs("CartPole-v1", 3), envs("CartPole-v1", 3)
    assert torch.equal(a.reset(seed=5), b.reset(seed=5))
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        action = a.sample_actions(gen)
        ra, rb = a.step(action), b.step(action)
        assert torch.equal(ra.obs, rb.obs) and torch.equal(ra.next_obs, rb.next_obs)
        assert torch.equal(ra.done, rb.done)
    assert not torch.equal(a.reset(seed=5), b.reset(seed=6))
    assert a.state_dict() is None


def test_async_two_envs(envs):
    env = envs("Pendulum-v1", 2, vectorization="async", seed=3)
    sync = envs("Pendulum-v1", 2, vectorization="sync", seed=3)
    action = torch.tensor([[1.0], [-0.5]])
    for _ in range(5):
        result, expected = env.step(action), sync.step(action)
        assert torch.equal(result.next_obs, expected.next_obs)
        assert torch.equal(result.reward, expected.reward)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_async_workers_match_sync(envs, env_id):
    # 5 copies over 2 worker processes (groups of 3 and 2): the same steps, resets and
    # episode statistics as stepping them in this process.
    pooled = envs(env_id, 5, vectorization="async", workers=2, wrappers=[_SuccessInfo])
    sync = envs(env_id, 5, vectorization="sync", wrappers=[_SuccessInfo])
    assert pooled.spec == sync.spec and pooled.spec.metadata["workers"] == 2
    obs, results = random_rollout(pooled, seed=3, steps=250)
    expected_obs, expected = random_rollout(sync, seed=3, steps=250)
    assert torch.equal(obs, expected_obs)
    for got, want in zip(results, expected, strict=True):
        for field in ("next_obs", "reward", "terminated", "truncated", "episode_return"):
            assert torch.equal(getattr(got, field), getattr(want, field)), field
        assert torch.equal(got.info["success"], want.info["success"])
    assert sum(int(r.done.sum()) for r in results) >= 5


class _FailingStep(gym.Wrapper):
    def step(self, action):
        raise ValueError("simulator exploded")


def test_async_workers_outlive_ctrl_c(envs):
    # The trainer answers SIGINT with a checkpoint, stepping and closing the env afterwards.
    env = envs("CartPole-v1", 4, vectorization="async", workers=2)
    for process in env.env._processes:
        os.kill(process.pid, signal.SIGINT)
    result = env.step(torch.zeros(4, dtype=torch.long))
    assert result.obs.shape == (4, 4)


def test_async_worker_errors_reach_the_caller(envs):
    env = envs("CartPole-v1", 2, vectorization="async", workers=1, wrappers=[_FailingStep])
    with pytest.raises(RuntimeError, match="(?s)env worker 0 failed.*simulator exploded"):
        env.step(torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vectorization": "sync", "workers": 2}, "need env.vectorization=async"),
        ({"vectorization": "async", "workers": 0}, r"1 <= workers <= num_envs \(3\)"),
        ({"vectorization": "async", "workers": 4}, r"1 <= workers <= num_envs \(3\)"),
    ],
)
def test_bad_worker_counts(kwargs, message):
    with pytest.raises(UserError, match=message):
        GymVectorEnv("CartPole-v1", 3, **kwargs)


def test_uint8_observations_and_wrappers(envs):
    """A uint8 box stays uint8 (pixels); wrappers are applied to each copy."""
    space = gym.spaces.Box(0, 255, (4,), np.uint8)

    def to_uint8(env: gym.Env) -> gym.Env:
        return gym.wrappers.TransformObservation(
            env, lambda o: np.clip(o * 100 + 128, 0, 255).astype(np.uint8), space
        )

    env = envs("CartPole-v1", 2, seed=0, wrappers=[to_uint8])
    assert env.spec.observation_space.dtype == torch.uint8
    assert env.spec.observation_space.high == (255.0,) * 4
    result = env.step(torch.tensor([0, 1]))
    assert result.obs.dtype == torch.uint8 and result.obs.shape == (2, 4)


class _SuccessInfo(gym.Wrapper):
    """Reports ``info["success"]`` on the step that terminates, as Meta-World-like suites do."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "success": terminated}


def test_info_entries_come_from_the_finished_step(envs):
    env = envs("CartPole-v1", 3, seed=0, wrappers=[_SuccessInfo])
    gen = torch.Generator().manual_seed(0)
    seen = False
    for _ in range(60):
        result = env.step(env.sample_actions(gen))
        assert torch.equal(result.info["success"], result.terminated)
        seen |= bool(result.terminated.any())
    assert seen


def test_unknown_id_and_unsupported_spaces():
    with pytest.raises(UserError, match="CartPole-v1"):
        GymVectorEnv("CartPol-v1", 1)
    with pytest.raises(UserError, match=r"Discrete\(16\)"):
        GymVectorEnv("FrozenLake-v1", 1)
    with pytest.raises(UserError, match="sync"):
        GymVectorEnv("CartPole-v1", 1, vectorization="threads")


@pytest.mark.skipif(importlib.util.find_spec("Box2D") is not None, reason="Box2D is installed")
@pytest.mark.parametrize(
    "kwargs", [{}, {"vectorization": "async"}, {"vectorization": "async", "workers": 1}]
)
def test_missing_box2d_is_one_line_naming_the_pip_install(kwargs):
    with pytest.raises(UserError) as error:
        GymVectorEnv("LunarLander-v3", 2, **kwargs)
    message = str(error.value)
    assert "\n" not in message and message.startswith("gymnasium env 'LunarLander-v3' needs")
    assert "Box2D" in message and 'pip install "gymnasium[box2d]"' in message


def test_make_env_gym_backend():
    env = make_env("pendulum", num_envs=2, backend="gym")
    try:
        assert isinstance(env, GymVectorEnv) and env.spec.id == "Pendulum-v1"
        assert env.step(env.sample_actions()).obs.shape == (2, 3)
    finally:
        env.close()


def test_env_fns_build_one_env_per_copy(envs):
    """Copies made by different factories (here different time limits) under one label."""
    fns = [partial(gym.make, "CartPole-v1", max_episode_steps=steps) for steps in (3, 5)]
    env = envs("cartpole-mixed", 2, seed=0, env_fns=fns)
    assert env.spec.id == "cartpole-mixed" and env.spec.max_episode_steps is None
    assert env.spec.action_space == Discrete(2) and env.spec.observation_space.shape == (4,)
    truncated = [env.step(torch.tensor([0, 1])).truncated.tolist() for _ in range(5)]
    assert truncated[2] == [True, False] and truncated[4] == [False, True]
    with pytest.raises(UserError, match="num_envs=3 but 2 env_fns"):
        GymVectorEnv("cartpole-mixed", 3, env_fns=fns)
