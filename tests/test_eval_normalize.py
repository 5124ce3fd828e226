"""Score normalizers against hand-computed values, suite registry and suite inference."""

from __future__ import annotations

import numpy as np
import pytest

from deeprl.errors import UserError
from deeprl.eval.normalize import (
    NORMALIZERS,
    SUITES,
    Affine,
    atari_game,
    atari_games,
    atari_hns,
    d4rl_normalized,
    d4rl_reference,
    get_suite,
    infer_suite,
    normalize,
)


def test_atari_table_has_57_games_and_26_atari100k() -> None:
    assert len(atari_games()) == 57
    assert len(atari_games(atari100k=True)) == 26
    assert "Pong" in atari_games(atari100k=True) and "Asteroids" not in atari_games(True)


@pytest.mark.parametrize(
    "name", ["Pong", "pong", "ALE/Pong-v5", "PongNoFrameskip-v4", "atari_pong"]
)
def test_pong_human_normalized(name: str) -> None:
    # Pong: random -20.7, human 14.6.
    assert atari_hns(name, 14.6) == pytest.approx(1.0)
    assert atari_hns(name, -20.7) == pytest.approx(0.0)
    assert atari_hns(name, 21.0) == pytest.approx((21.0 + 20.7) / 35.3)


def test_atari_spellings_of_multiword_games() -> None:
    assert atari_game("ALE/MontezumaRevenge-v5") == "MontezumaRevenge"
    assert atari_game("montezuma_revenge") == "MontezumaRevenge"
    assert atari_game("UpNDownNoFrameskip-v4") == "UpNDown"
    # Breakout: random 1.7, human 30.5; Seaquest: random 68.4, human 42054.7.
    assert atari_hns("breakout", 30.5) == pytest.approx(1.0)
    assert atari_hns("ALE/Seaquest-v5", 68.4 + 0.25 * (42054.7 - 68.4)) == pytest.approx(0.25)


def test_atari_array_input_keeps_shape() -> None:
    out = atari_hns("Pong", np.array([[-20.7, 14.6], [-3.05, 49.9]]))
    np.testing.assert_allclose(out, [[0.0, 1.0], [0.5, 2.0]])


def test_unknown_atari_game_suggests_close_names() -> None:
    with pytest.raises(UserError, match=r"unknown Atari game 'ALE/Pongg-v5'.*Did you mean: Pong"):
        atari_hns("ALE/Pongg-v5", 0.0)


def test_d4rl_hopper_and_prefix_lookup() -> None:
    # hopper: REF_MIN -20.272305, REF_MAX 3234.3 (d4rl/infos.py).
    assert d4rl_normalized("hopper-medium-v2", 3234.3) == pytest.approx(100.0)
    assert d4rl_normalized("hopper-medium-v2", -20.272305) == pytest.approx(0.0)
    midpoint = (-20.272305 + 3234.3) / 2
    assert d4rl_normalized("hopper-medium-v2", midpoint) == pytest.approx(50.0)
    # All hopper datasets share constants, so the family name works too.
    assert d4rl_reference("hopper") == d4rl_reference("hopper-expert-v0")
    assert d4rl_normalized("antmaze-umaze-v2", 0.75) == pytest.approx(75.0)
    assert d4rl_normalized("kitchen-mixed-v0", 2.0) == pytest.approx(50.0)
    assert d4rl_normalized("pen-human-v1", 3076.8331017826877) == pytest.approx(100.0)


def test_d4rl_ambiguous_and_unknown_names() -> None:
    with pytest.raises(UserError, match="different constants"):
        d4rl_reference("maze2d")  # every maze has its own constants
    with pytest.raises(UserError, match=r"Did you mean: hopper-medium-v2"):
        d4rl_reference("hoper-medium-v2")


def test_identity_suites_and_metaworld_success_rate() -> None:
    for suite in ("dmc", "mujoco", "classic", "raw"):
        assert normalize(suite, "anything", 123.5) == 123.5
    assert get_suite("metaworld").normalizer.score_key == "success_rate"
    assert normalize("metaworld", "Meta-World/reach-v3", 0.8) == 0.8
    assert normalize("atari", "ALE/Pong-v5", 14.6) == pytest.approx(1.0)


def test_registry_names_and_unknown_suite() -> None:
    assert set(SUITES) == {"atari", "d4rl", "metaworld", "dmc", "mujoco", "classic", "raw"}
    assert all(s.normalizer_name in NORMALIZERS for s in SUITES.values())
    with pytest.raises(UserError, match=r"unknown suite 'mujuco'.*Did you mean: mujoco"):
        get_suite("mujuco")


def test_affine_inverse_and_slope() -> None:
    f = Affine(-20.7, 14.6)
    assert f.inverse(f(3.0)) == pytest.approx(3.0)
    assert f.slope == pytest.approx(1 / 35.3)
    assert Affine(0.0, 4.0, 100.0)(1.0) == pytest.approx(25.0)


@pytest.mark.parametrize(
    ("name", "env_id", "suite"),
    [
        ("atari_pong", "ALE/Pong-v5", "atari"),
        ("gym", "BreakoutNoFrameskip-v4", "atari"),
        ("atari_pong", None, "atari"),
        ("hopper", "Hopper-v5", "mujoco"),
        ("gym", "HalfCheetah-v4", "mujoco"),
        ("dmc_walker_walk", None, "dmc"),
        ("gym", "dm_control/cheetah-run-v0", "dmc"),
        ("metaworld_reach", "Meta-World/reach-v3", "metaworld"),
        ("offline", "hopper-medium-v2", "d4rl"),
        ("cartpole", "CartPole-v1", "classic"),
        ("mountaincar_continuous", None, "classic"),
        ("gym", "Pendulum-v1", "classic"),
        ("gym", "LunarLander-v3", "raw"),
    ],
)
def test_infer_suite(name: str, env_id: str | None, suite: str) -> None:
    assert infer_suite(name, env_id) == suite


def test_infer_suite_from_a_suite_backend() -> None:
    # deeprl's suite envs: env.backend names the suite, env.game / env.task the task.
    assert infer_suite("atari100k", None, backend="atari") == "atari"
    assert infer_suite("dmc", "walker-walk", backend="dmc") == "dmc"
    assert infer_suite("cartpole", "CartPole-v1", backend="torch") == "classic"
