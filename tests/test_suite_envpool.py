"""EnvPool and the gymnasium path agree on spaces and episode semantics for shared tasks."""

from __future__ import annotations

import pytest
import torch

from deeprl.envs.suites import make_suite_env
from deeprl.envs.suites.envpool_env import EnvPoolVectorEnv
from deeprl.errors import UserError


def first_episode_end(env, seed: int, max_steps: int, action=None):
    """(steps taken, StepResult) at the first step where copy 0's episode ends."""
    env.reset(seed=seed)
    for t in range(max_steps):
        result = env.step(env.sample_actions() if action is None else action)
        if result.done[0]:
            return t + 1, result
    raise AssertionError(f"no episode ended in {max_steps} steps")


def test_atari_spaces_frame_skip_and_frame_cap_agree():
    options = dict(game="Pong", max_frames=160)  # 40 agent steps at frame skip 4
    gym_env = make_suite_env("atari", 2, **options)
    pool = make_suite_env("atari", 2, vectorization="envpool", **options)
    try:
        assert pool.spec.observation_space == gym_env.spec.observation_space  # (4, 84, 84) uint8
        assert pool.spec.action_space == gym_env.spec.action_space
        assert pool.spec.max_episode_steps == gym_env.spec.max_episode_steps == 40
        noop = torch.zeros(2, dtype=torch.long)
        for env in (gym_env, pool):
            steps, result = first_episode_end(env, seed=0, max_steps=45, action=noop)
            assert steps == 40
            assert result.truncated.all() and not result.terminated.any()
            assert (result.episode_length == 40).all()
            assert result.obs.dtype == torch.uint8 and result.obs.shape == (2, 4, 84, 84)
            # Same-step autoreset on both paths: the next episode starts at once.
            assert not torch.equal(result.obs[0], result.next_obs[0])
            assert env.step(noop).episode_length.sum() == 0
    finally:
        gym_env.close()
        pool.close()


def test_mujoco_spaces_termination_and_time_limit_agree():
    for task in ("Hopper-v5", "InvertedPendulum-v5"):
        gym_env = make_suite_env("mujoco", 1, task=task)
        pool = make_suite_env("mujoco", 1, task=task, vectorization="envpool")
        try:
            assert pool.spec.observation_space.shape == gym_env.spec.observation_space.shape
            assert pool.spec.action_space == gym_env.spec.action_space
            assert pool.spec.max_episode_steps == gym_env.spec.max_episode_steps == 1000
            for env in (gym_env, pool):
                steps, result = first_episode_end(env, seed=0, max_steps=1000)
                assert result.terminated[0] and not result.truncated[0]  # fell over
                assert result.episode_length[0] == steps
                assert result.obs.dtype == torch.float32
        finally:
            gym_env.close()
            pool.close()


def test_dmc_state_spaces_and_truncation_agree():
    gym_env = make_suite_env("dmc", 1, task="cartpole-balance", action_repeat=1)
    pool = make_suite_env("dmc", 1, task="cartpole-balance", vectorization="envpool")
    try:
        assert pool.spec.observation_space.shape == gym_env.spec.observation_space.shape
        assert pool.spec.action_space == gym_env.spec.action_space
        for env in (gym_env, pool):
            steps, result = first_episode_end(env, seed=0, max_steps=1001)
            assert steps == 1000
            assert result.truncated[0] and not result.terminated[0]
    finally:
        gym_env.close()
        pool.close()


def test_envpool_cannot_render():
    with pytest.raises(UserError, match="vectorization=sync or async"):
        make_suite_env("mujoco", 1, task="Hopper-v5", vectorization="envpool", pixels=True)
    with pytest.raises(UserError, match="vectorization=sync or async"):
        make_suite_env("dmc", 1, task="walker-walk", vectorization="envpool", pixels=True)
    with pytest.raises(UserError, match="grayscale only"):
        make_suite_env("atari", 1, game="Pong", protocol="atari100k", vectorization="envpool")
    with pytest.raises(UserError, match="EnvPool has no"):
        make_suite_env("metaworld", 1, task="reach-v3", vectorization="envpool")
    with pytest.raises(
        UserError, match="EnvPool has no task 'Walker2D-v9'. Did you mean: Walker2d"
    ):
        EnvPoolVectorEnv("Walker2D-v9", 1, "cpu", name="walker", metadata={})


def test_dmc_names_map_to_envpool_ids():
    env = make_suite_env("dmc", 1, task="humanoid_CMU-stand", vectorization="envpool")
    try:
        assert env.task_id == "HumanoidCMUStand-v1" and env.spec.id == "dmc/humanoid_CMU-stand"
    finally:
        env.close()
