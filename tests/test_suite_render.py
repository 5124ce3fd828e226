"""Headless GL setup and eval videos (mp4 files and TensorBoard) from real suite envs."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import pytest
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from deeprl.envs.render import record_video
from deeprl.envs.suites import make_suite_env
from deeprl.errors import UserError


class RandomAgent(nn.Module):
    """The part of the Agent interface record_video uses: initial_state and act."""

    def __init__(self, env) -> None:
        super().__init__()
        self.env = env

    def initial_state(self, num_envs: int) -> None:
        return None

    def act(self, obs: torch.Tensor, state=None, is_first=None, deterministic: bool = False):
        return self.env.sample_actions(), {}, state


def frame_count(path) -> int:
    video = cv2.VideoCapture(str(path))
    try:
        return int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        video.release()


def test_mujoco_gl_defaults_to_egl_before_mujoco_is_imported():
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}
    code = "import os, deeprl.envs.suites, mujoco; print(os.environ['MUJOCO_GL'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "egl", out.stderr
    code = "import os, deeprl.envs.suites; print(os.environ['MUJOCO_GL'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**env, "MUJOCO_GL": "osmesa"}, capture_output=True,
        text=True,
    )  # fmt: skip
    assert out.stdout.strip() == "osmesa"  # a user's choice is kept


def test_video_of_pixel_env_and_tensorboard(tmp_path):
    env = make_suite_env("atari", 1, game="Pong", max_frames=80)  # 20-step episodes
    try:
        writer = SummaryWriter(tmp_path / "tb")
        path = record_video(
            RandomAgent(env), env, tmp_path / "eval.mp4", fps=15, max_steps=100, writer=writer,
            step=7,
        )  # fmt: skip
        writer.close()
    finally:
        env.close()
    assert path.stat().st_size > 0
    assert frame_count(path) == 21  # reset frame + one per step, the last one the final frame
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    (image,) = events.Images("eval/video")
    assert image.step == 7 and image.encoded_image_string[:3] == b"GIF"


def test_video_of_state_env_renders_copy_zero(tmp_path):
    def factory():
        return make_suite_env("dmc", 2, task="cartpole-swingup", render=True, size=48)

    env = factory()
    agent = RandomAgent(env)
    path = record_video(agent, factory, tmp_path / "dmc.mp4", max_steps=10)
    env.close()
    assert frame_count(path) == 11
    video = cv2.VideoCapture(str(path))
    ok, frame = video.read()
    video.release()
    assert ok and frame.shape == (48, 48, 3)


def test_state_env_without_render_is_a_user_error(tmp_path):
    env = make_suite_env("mujoco", 1, task="InvertedPendulum-v5")
    try:
        with pytest.raises(UserError, match="render=True"):
            record_video(RandomAgent(env), env, tmp_path / "x.mp4")
    finally:
        env.close()
