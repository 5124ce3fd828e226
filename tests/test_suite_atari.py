"""Atari suite on the real ALE: Machado et al. 2018 and Atari100k protocol settings."""

from __future__ import annotations

import pytest
import torch

from conftest import random_rollout
from deeprl.envs.spec import Discrete
from deeprl.envs.suites import make_suite_env
from deeprl.envs.suites.atari import ATARI100K_GAMES, game_names
from deeprl.errors import UserError


def ale(env, i: int = 0):
    """The ALE interface of copy ``i`` of a sync-vectorized suite env."""
    return env.env.envs[i].unwrapped.ale



def test_machado_protocol_settings_reach_ale():
    env = make_suite_env("atari", 2, game="Pong")
    try:
        spec = env.spec
        assert spec.observation_space.shape == (4, 84, 84)
        assert spec.observation_space.dtype == torch.uint8
        assert spec.action_space == Discrete(6)  # Pong's minimal action set
        assert spec.max_episode_steps == 108_000 // 4
        assert ale(env).getFloat("repeat_action_probability") == pytest.approx(0.25)
        assert ale(env).getInt("max_num_frames_per_episode") == 108_000
        obs, results = random_rollout(env, seed=3, steps=5)
        assert obs.shape == (6, 2, 4, 84, 84) and obs.dtype == torch.uint8
        # Frame skip 4 and no no-op starts: 4 emulator frames per agent step from frame 0.
        frames = [r.info["episode_frame_number"].tolist() for r in results]
        assert frames == [[4 * (t + 1)] * 2 for t in range(5)]
        assert {"lives", "life_loss"} <= set(results[0].info)
    finally:
        env.close()


def test_same_seed_same_trajectory_with_sticky_actions():
    env = make_suite_env("atari", 2, game="Breakout")
    try:
        a, ra = random_rollout(env, seed=7, steps=40)
        b, rb = random_rollout(env, seed=7, steps=40)
        c, _ = random_rollout(env, seed=8, steps=40)
        assert torch.equal(a, b)
        assert torch.equal(torch.stack([r.reward for r in ra]), torch.stack([r.reward for r in rb]))
        assert not torch.equal(a, c)
    finally:
        env.close()


def test_atari100k_protocol_noop_starts_rgb_no_sticky():
    env = make_suite_env("atari", 4, game="Pong", protocol="atari100k")
    try:
        assert env.spec.observation_space.shape == (3, 64, 64)  # RGB, no frame stack
        assert ale(env).getFloat("repeat_action_probability") == 0.0
        env.reset(seed=0)
        first = env.step(torch.zeros(4, dtype=torch.long)).info["episode_frame_number"]
        noops = first - 4  # frames spent on no-op starts before the first agent step
        assert (noops >= 0).all() and (noops <= 30).all() and (noops > 0).any()
    finally:
        env.close()


def test_frame_cap_truncates_episode():
    env = make_suite_env("atari", 1, game="Pong", max_frames=200, frame_stack=1)
    try:
        assert env.spec.max_episode_steps == 50
        env.reset(seed=0)
        results = [env.step(torch.zeros(1, dtype=torch.long)) for _ in range(50)]
        assert not any(r.done.any() for r in results[:-1])
        result = results[-1]
        assert result.truncated.item() and not result.terminated.item()
        assert result.episode_length.item() == 50
        assert not torch.equal(result.obs, result.next_obs)  # obs is the next episode's start
    finally:
        env.close()


def test_game_names_and_errors():
    names = game_names()
    assert set(ATARI100K_GAMES) <= set(names) and len(ATARI100K_GAMES) == 26
    assert "MontezumaRevenge" in names
    with pytest.raises(UserError, match="Did you mean: Pong"):
        make_suite_env("atari", 1, game="Pongg")
    with pytest.raises(UserError, match="machado"):
        make_suite_env("atari", 1, game="Pong", protocol="machdo")
    with pytest.raises(UserError, match="sticky_actions"):
        make_suite_env("atari", 1, game="Pong", sticky_actions=1.5)
