"""deeprl-envs catalogue, make_suite_env's input checks and the warp backend's messages."""

from __future__ import annotations

import importlib.util

import pytest

from deeprl.envs.catalog import main
from deeprl.envs.suites import SUITES, make_suite_env
from deeprl.errors import UserError


def test_lists_every_suite_with_paper_protocol_and_names(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for suite in SUITES:
        assert f"\n{suite}  [" in f"\n{out}"
    papers = ["Machado et al. 2018", "Kaiser et al. 2020", "Tassa et al. 2018", "Yu et al. 2019"]
    for fact in [*papers, "HalfCheetah-v5", "walker-walk", "reach-v3", "UpNDown"]:
        assert fact in out


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
