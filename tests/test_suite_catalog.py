"""deeprl-envs catalogue, make_suite_env's input checks, the warp backend's messages, and no
third-party INFO chatter when suite envs are built."""

from __future__ import annotations

import importlib.resources
import importlib.util
import subprocess
import sys
import textwrap

import pytest
from omegaconf import OmegaConf

from deeprl.envs.catalog import main
from deeprl.envs.suites import SUITES, make_suite_env
from deeprl.errors import UserError


def installed(suite: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in SUITES[suite].modules)


def test_lists_every_suite_with_paper_protocol_and_names(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for suite in SUITES:
        assert f"\n{suite}  [" in f"\n{out}"
    papers = ["Machado et al. 2018", "Kaiser et al. 2020", "Tassa et al. 2018", "Yu et al. 2019"]
    for fact in [*papers, "HalfCheetah-v5", "walker-walk", "reach-v3", "UpNDown"]:
        assert fact in out
    # The torch-native envs and the gymnasium route come first.
    assert out.startswith("torch  [5 envs, env=<name>]")
    assert "cartpole (CartPole-v1)" in out and "pendulum (Pendulum-v1)" in out
    assert "\ngym  [any registered gymnasium id, env=gym env.id=<id>]" in out
    assert "LunarLander-v3" in out and "FrozenLake" not in out  # Discrete observations


def test_env_is_described_as_deeprl_train_runs_it(capsys):
    assert main(["--suite", "torch", "pendulum"]) == 0
    out = capsys.readouterr().out
    assert "deeprl-train env=pendulum (agent ppo)" in out and "Box(1,)" in out
    assert main(["--suite", "gym", "MountainCar-v0"]) == 0
    out = capsys.readouterr().out
    assert "deeprl-train env=gym env.id=MountainCar-v0" in out and "Discrete(3)" in out


@pytest.mark.skipif(not installed("dmc"), reason="the dmc extra is not installed")
def test_dmc_shows_the_action_repeat_env_dmc_trains_with(capsys):
    config = OmegaConf.load(importlib.resources.files("deeprl.configs") / "env" / "dmc.yaml")
    assert config.action_repeat != 1  # else this test shows nothing
    assert main(["--suite", "dmc", "cheetah-run"]) == 0
    out = capsys.readouterr().out
    assert "deeprl-train env=dmc env.task=cheetah-run (agent ppo)" in out
    assert f"action_repeat: {config.action_repeat}" in out
    assert f"max_episode_steps: {1000 // config.action_repeat}" in out
    assert main(["--suite", "dmc", "cheetah-run", "env.action_repeat=4"]) == 0
    assert "action_repeat: 4" in capsys.readouterr().out


def test_one_suite_and_one_env(capsys):
    assert main(["--suite", "atari"]) == 0
    out = capsys.readouterr().out
    assert "Atari100k games" in out and "MontezumaRevenge" in out and "mujoco  [" not in out
    assert main(["--suite", "mujoco", "Hopper-v5"]) == 0
    out = capsys.readouterr().out
    assert "mujoco/Hopper-v5" in out and "(11,) float32" in out and "Box(3,)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--suite", "atri"], "unknown suite 'atri'. Did you mean: atari"),
        (["--suite", "atari", "Breakot"], "Did you mean: Breakout"),
        (["Pong"], "deeprl-envs --suite <suite> <name>"),
        (["--suite", "torch", "cartpol"], "Did you mean: cartpole"),
    ],
)
def test_unknown_names_get_close_matches(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_make_suite_env_checks_suite_and_options():
    with pytest.raises(UserError, match="Did you mean: metaworld"):
        make_suite_env("metaworl", 1)
    with pytest.raises(UserError, match="Did you mean: action_repeat"):
        make_suite_env("dmc", 1, action_repat=2)
    with pytest.raises(UserError, match="vectorization"):
        make_suite_env("mujoco", 1, vectorization="threads")


@pytest.mark.skipif(
    importlib.util.find_spec("mujoco_warp") is not None, reason="the warp extra is installed"
)
def test_missing_extra_names_the_pip_install():
    # mujoco_warp cannot share this environment with metaworld: the honest "extra missing" path
    # (.venv/warp checks the same for metaworld: tests/test_suite_warp.py).
    with pytest.raises(UserError, match=r'pip install "deeprl\[warp\]"'):
        make_suite_env("mujoco", 1, "cuda", task="Hopper-v5", vectorization="warp")
    with pytest.raises(UserError, match="'Humanoid-v5' is not available with env.vectorization"):
        make_suite_env("mujoco", 1, "cuda", task="Humanoid-v5", vectorization="warp")


CHATTER = textwrap.dedent(
    """
    import importlib.util, logging, sys
    logging.basicConfig(level=logging.INFO)  # as deeprl-train's Hydra job logging: INFO shown
    from deeprl.envs.gym_env import GymVectorEnv
    from deeprl.envs.suites import SUITES, make_suite_env
    builds = {
        "atari": {"game": "Pong"}, "dmc": {"task": "cheetah-run"},
        "metaworld": {"task": "reach-v3"}, "mujoco": {"task": "Hopper-v5"},
    }
    for suite, options in builds.items():
        if all(importlib.util.find_spec(m) for m in SUITES[suite].modules):
            env = make_suite_env(suite, 1, "cpu", **options)
            env.step(env.sample_actions())
            env.close()
    env = GymVectorEnv("CartPole-v1", 1, make_kwargs={"render_mode": "rgb_array"})
    env.env.render()  # pygame, as for eval videos
    env.close()
    if importlib.util.find_spec("absl"):
        from absl import logging as absl_logging
        absl_logging.warning("a real warning")
    print("built")
    """
)


def test_building_envs_prints_no_third_party_info():
    """ALE's banner (C++, stderr), dm_control's absl INFO and PyOpenGL's INFO lines, SDL's
    display probe: none reach the output of a run; warnings still do."""
    result = subprocess.run(
        [sys.executable, "-c", CHATTER], capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "built" in result.stdout, output
    noise = ["INFO:", "A.L.E", "Powered by Stella", "XDG_RUNTIME_DIR", "pygame"]
    assert not [line for line in output.splitlines() if any(n in line for n in noise)], output
    if importlib.util.find_spec("absl"):
        assert "WARNING:absl:a real warning" in output
