"""Headless rendering and evaluation videos.

MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when it is first imported, so
:func:`setup_headless_gl` must run before any ``import mujoco`` (the suite modules call it at import
time). EGL renders on a GPU or, through Mesa, in software on CPU-only machines; OSMesa is the
fallback where EGL is missing (``MUJOCO_GL=osmesa``, pure software, slower).

Videos: :func:`record_video` plays one episode of an agent and writes an mp4 (OpenCV's ``mp4v``
encoder, shipped with ``opencv-python-headless``); :func:`add_video` puts the same frames into
TensorBoard as an animated GIF (Pillow), which TensorBoard's image tab plays.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from ctypes.util import find_library
from pathlib import Path

import numpy as np
import torch

from deeprl.envs.base import VectorEnv
from deeprl.errors import UserError


def setup_headless_gl() -> str:
    """Choose MuJoCo's headless GL backend unless the user set ``MUJOCO_GL``; returns it.

    EGL when ``libEGL`` is present (GPU, or Mesa's software EGL on CPU-only machines), else
    OSMesa when ``libOSMesa`` is. Must run before mujoco (or dm_control) is imported: a later
    change has no effect.
    """
    if "MUJOCO_GL" not in os.environ:
        use_osmesa = find_library("EGL") is None and find_library("OSMesa") is not None
        os.environ["MUJOCO_GL"] = "osmesa" if use_osmesa else "egl"
    return os.environ["MUJOCO_GL"]


def frames_to_uint8(frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Stack frames into (T, H, W, 3) uint8. Accepts (H, W, 3), (3, H, W), (H, W) or (1, H, W)
    frames; channel-first and grayscale frames are converted (a stack of grayscale frames, as
    Atari observations, shows its last frame)."""
    out = []
    for frame in frames:
        f = np.asarray(frame)
        if f.ndim == 3 and f.shape[-1] not in (1, 3):  # channel-first (C, H, W)
            f = f[-3:].transpose(1, 2, 0) if f.shape[0] % 3 == 0 else f[-1]
        if f.ndim == 2:
            f = np.repeat(f[:, :, None], 3, axis=2)
        elif f.shape[-1] == 1:
            f = np.repeat(f, 3, axis=2)
        out.append(f.astype(np.uint8, copy=False))
    return np.stack(out)


def write_mp4(frames: Sequence[np.ndarray] | np.ndarray, path: str | Path, fps: int = 30) -> Path:
    """Write frames (see :func:`frames_to_uint8`) to an mp4 file; returns its path.

    Raises:
        UserError: OpenCV missing, or no frames.
    """
    try:
        import cv2
    except ModuleNotFoundError as e:
        raise UserError(
            'writing eval videos needs OpenCV: pip install "deeprl[atari]" '
            "(or pip install opencv-python-headless)"
        ) from e
    video = frames_to_uint8(frames)
    if len(video) == 0:
        raise UserError(f"no frames to write to {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = video.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in video:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def add_video(
    writer, tag: str, frames: Sequence[np.ndarray] | np.ndarray, step: int, fps: int = 30
) -> None:
    """Add frames to a ``torch.utils.tensorboard.SummaryWriter`` as an animated GIF.

    (``SummaryWriter.add_video`` needs moviepy; this writes the same summary with Pillow.)
    """
    from PIL import Image
    from torch.utils.tensorboard.summary import Summary

    video = frames_to_uint8(frames)
    images = [Image.fromarray(f) for f in video]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(1, round(1000 / fps)),
        loop=0,
    )
    height, width = video.shape[1:3]
    image = Summary.Image(
        height=height, width=width, colorspace=3, encoded_image_string=buffer.getvalue()
    )
    writer._get_file_writer().add_summary(
        Summary(value=[Summary.Value(tag=tag, image=image)]), step
    )


def record_video(
    agent,
    env: VectorEnv | Callable[[], VectorEnv],
    path: str | Path,
    fps: int = 30,
    max_steps: int = 1000,
    seed: int = 0,
    deterministic: bool = True,
    writer=None,
    step: int = 0,
) -> Path:
    """Play one episode of ``agent`` in copy 0 of ``env`` and write it to ``path`` (mp4).

    Frames are copy 0's observations when they are pixels (uint8 (C, H, W)); otherwise copy 0
    is rendered, which needs an env made with ``render=True`` (suite envs: the gymnasium vector
    env behind it then renders ``rgb_array`` frames).

    Args:
        agent: a :class:`deeprl.agent.Agent`; the recording keeps its own policy state.
        env: a vector env, or a function making one (closed again after recording).
        path: the mp4 file to write.
        fps: frames per second of the video.
        max_steps: stop after this many steps if the episode has not ended.
        seed: reset seed.
        deterministic: act deterministically.
        writer: optional TensorBoard ``SummaryWriter``; the video is added under ``eval/video``.
        step: the global step for ``writer``.
    """
    owned = callable(env) and not isinstance(env, VectorEnv)
    venv: VectorEnv = env() if owned else env
    pixels = venv.spec.observation_space.dtype == torch.uint8
    gym_vector = getattr(venv, "env", None)
    if not pixels and getattr(gym_vector, "render_mode", None) != "rgb_array":
        raise UserError(
            f"{venv.spec.id} has state observations and was not made to render; make the eval "
            f"env with render=True (suite envs) to record videos"
        )

    def frame(obs: torch.Tensor) -> np.ndarray:
        return obs[0].cpu().numpy() if pixels else np.asarray(gym_vector.render()[0])

    was_training = agent.training
    agent.eval()
    try:
        obs = venv.reset(seed=seed)
        state = agent.initial_state(venv.num_envs)
        is_first = torch.ones(venv.num_envs, dtype=torch.bool, device=venv.device)
        # Agent.observe when there is one (envs do not import deeprl.agent: a lower layer).
        observe = getattr(agent, "observe", None)
        frames = [frame(obs)]
        for _ in range(max_steps):
            with torch.inference_mode():
                action, _, state = agent.act(obs, state, is_first, deterministic=deterministic)
            result = venv.step(action)
            if observe is not None:
                with torch.inference_mode():
                    state = observe(state, result.reward)
            if bool(result.done[0]):
                frames.append(result.next_obs[0].cpu().numpy() if pixels else frames[-1])
                break
            obs, is_first = result.obs, result.done
            frames.append(frame(obs))
    finally:
        agent.train(was_training)
        if owned:
            venv.close()
    if writer is not None:
        add_video(writer, "eval/video", frames, step, fps)
    return write_mp4(frames, path, fps)
