"""Atari 2600 games (Arcade Learning Environment, ale-py) under two evaluation protocols.

- ``protocol="machado"``: Machado et al. 2018, "Revisiting the Arcade Learning Environment:
  Evaluation Protocols and Open Problems for General Agents" (JAIR): sticky actions with
  probability 0.25 (the stochasticity that replaces no-op starts), no no-op starts, no life-loss
  terminal; with the usual DQN-style input (as Dopamine and CleanRL): frame skip 4 with a max
  over the last two frames, 84x84 grayscale, 4 stacked frames, episodes capped at 108,000 frames
  (30 minutes of play, ALE v5's default) and the minimal action set (the paper recommends the
  full set of 18: ``full_action_space=True``).
- ``protocol="atari100k"``: Kaiser et al. 2020, "Model-Based Reinforcement Learning for Atari"
  (ICLR; SimPLe), as used by DreamerV3, IRIS and DIAMOND: 100k agent steps (400k frames), no
  sticky actions, up to 30 no-op starts, frame skip 4 with a max over the last two frames,
  minimal action set, 108k-frame cap, 64x64 RGB, no frame stacking. The life-loss signal is in
  ``info["life_loss"]`` for training only; episodes still end at game over.

Every option can be overridden; a protocol only picks the defaults. Observations are uint8
(C, H, W) with C = frame_stack x (1 grayscale | 3 RGB). ``info`` holds ``lives``, ``life_loss``
and ALE's ``episode_frame_number``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from deeprl.envs.base import VectorEnv
from deeprl.errors import UserError, close_matches

if importlib.util.find_spec("ale_py") is not None:
    import ale_py

    # ALE's C++ logger prints a banner on stderr at every ROM load; keep its warnings and errors.
    # At import, so that async workers (they import this module for its wrappers) do it too.
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Warning)

#: The 26 games of the Atari100k benchmark (Kaiser et al. 2020).
ATARI100K_GAMES: tuple[str, ...] = (
    "Alien", "Amidar", "Assault", "Asterix", "BankHeist", "BattleZone", "Boxing", "Breakout",
    "ChopperCommand", "CrazyClimber", "DemonAttack", "Freeway", "Frostbite", "Gopher", "Hero",
    "Jamesbond", "Kangaroo", "Krull", "KungFuMaster", "MsPacman", "Pong", "PrivateEye", "Qbert",
    "RoadRunner", "Seaquest", "UpNDown",
)  # fmt: skip


@dataclass(frozen=True)
class AtariProtocol:
    """Defaults of one evaluation protocol (see the module docstring)."""

    sticky_actions: float
    noop_max: int
    frame_skip: int
    size: int
    grayscale: bool
    frame_stack: int
    max_frames: int
    full_action_space: bool


PROTOCOLS: dict[str, AtariProtocol] = {
    "machado": AtariProtocol(
        sticky_actions=0.25, noop_max=0, frame_skip=4, size=84, grayscale=True, frame_stack=4,
        max_frames=108_000, full_action_space=False,
    ),
    "atari100k": AtariProtocol(
        sticky_actions=0.0, noop_max=30, frame_skip=4, size=64, grayscale=False, frame_stack=1,
        max_frames=108_000, full_action_space=False,
    ),
}  # fmt: skip


def atari100k_games() -> list[str]:
    """The 26 Atari100k games."""
    return list(ATARI100K_GAMES)


def game_names() -> list[str]:
    """Every ALE game reachable by name (``"Pong"``, ``"MontezumaRevenge"``, ...), sorted."""
    import ale_py

    gymnasium.register_envs(ale_py)
    return sorted(
        env_id[4:-3]
        for env_id in gymnasium.registry
        if env_id.startswith("ALE/") and env_id.endswith("-v5")
    )


def check_game(game: str) -> str:
    """``game`` if ALE knows it.

    Raises:
        UserError: unknown game, with close matches.
    """
    names = game_names()
    if game not in names:
        raise UserError(
            f"unknown Atari game {game!r}.{close_matches(game, names)} Set env.game to one of "
            f"the names `deeprl-envs --suite atari` lists."
        )
    return game


def resolve_protocol(protocol: str, **overrides: Any) -> AtariProtocol:
    """The protocol's defaults with the non-None ``overrides`` applied."""
    if protocol not in PROTOCOLS:
        raise UserError(
            f"unknown Atari protocol {protocol!r}.{close_matches(protocol, PROTOCOLS)} "
            f"Choose one of: {', '.join(PROTOCOLS)}."
        )
    settings = replace(PROTOCOLS[protocol], **{k: v for k, v in overrides.items() if v is not None})
    if not 0.0 <= settings.sticky_actions < 1.0:
        raise UserError(f"sticky_actions must be in [0, 1), got {settings.sticky_actions}")
    if settings.frame_skip < 1 or settings.frame_stack < 1 or settings.noop_max < 0:
        raise UserError(
            f"frame_skip and frame_stack must be >= 1 and noop_max >= 0, got {settings}"
        )
    return settings


class LifeLossInfo(gymnasium.Wrapper):
    """Adds ``info["life_loss"]`` (True on the step a life is lost), a training-only signal."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._lives = info["lives"]
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["life_loss"] = info["lives"] < self._lives
        self._lives = info["lives"]
        return obs, reward, terminated, truncated, info


class ChannelFirst(gymnasium.ObservationWrapper):
    """Stacked frames (S, H, W) or (S, H, W, 3) as one uint8 image (C, H, W), C = S or 3 S."""

    def __init__(self, env: gymnasium.Env) -> None:
        super().__init__(env)
        shape = env.observation_space.shape
        self._rgb = len(shape) == 4
        channels = shape[0] * (3 if self._rgb else 1)
        self.observation_space = gymnasium.spaces.Box(0, 255, (channels, *shape[1:3]), np.uint8)

    def observation(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        if self._rgb:
            obs = obs.transpose(0, 3, 1, 2)
        return obs.reshape(self.observation_space.shape)


def make_atari(
    num_envs: int,
    device: torch.device | str = "cpu",
    game: str = "Pong",
    protocol: str = "machado",
    vectorization: str = "sync",
    workers: int | None = None,
    sticky_actions: float | None = None,
    noop_max: int | None = None,
    frame_skip: int | None = None,
    size: int | None = None,
    grayscale: bool | None = None,
    frame_stack: int | None = None,
    max_frames: int | None = None,
    full_action_space: bool | None = None,
    render: bool = False,
) -> VectorEnv:
    """Atari ``game`` under ``protocol``; options left None take the protocol's value.

    Args:
        num_envs: parallel copies.
        device: where tensors go.
        game: ALE game name, e.g. ``"Pong"`` (see :func:`game_names`).
        protocol: ``"machado"`` or ``"atari100k"``.
        vectorization: ``"sync"``, ``"async"`` (a process per copy) or ``"envpool"``.
        workers: with ``vectorization="async"``, worker processes the copies are split over
            (None: one process per copy).
        sticky_actions: probability of repeating the previous action at each emulator frame.
        noop_max: the episode starts with 0..noop_max random no-op steps (0: none).
        frame_skip: emulator frames per agent step (reward summed, max over the last two frames).
        size: square observation side.
        grayscale: grayscale (1 channel per frame) or RGB (3).
        frame_stack: frames stacked on the channel axis.
        max_frames: emulator frames after which an episode is truncated.
        full_action_space: 18 actions instead of the game's minimal set.
        render: also render RGB frames of copy 0 for videos.

    Returns:
        A :class:`VectorEnv` with uint8 observations (N, C, size, size) and Discrete actions.
    """
    check_game(game)
    s = resolve_protocol(
        protocol, sticky_actions=sticky_actions, noop_max=noop_max, frame_skip=frame_skip,
        size=size, grayscale=grayscale, frame_stack=frame_stack, max_frames=max_frames,
        full_action_space=full_action_space,
    )  # fmt: skip
    metadata = {"suite": "atari", "protocol": protocol, "game": game, **s.__dict__}
    max_steps = s.max_frames // s.frame_skip
    if vectorization == "envpool":
        from deeprl.envs.suites.envpool_env import EnvPoolVectorEnv

        if not s.grayscale or render:
            raise UserError(
                "EnvPool's Atari is grayscale only and cannot render; set env.grayscale=true, or "
                "use env.vectorization=sync or async"
            )
        return EnvPoolVectorEnv(
            f"{game}-v5", num_envs, device, name=f"atari/{game}", metadata=metadata,
            max_episode_steps=max_steps, stack_num=s.frame_stack, frame_skip=s.frame_skip,
            noop_max=max(s.noop_max, 1), img_height=s.size, img_width=s.size,
            repeat_action_probability=s.sticky_actions, full_action_space=s.full_action_space,
            episodic_life=False, reward_clip=False, use_fire_reset=False,
        )  # fmt: skip

    import ale_py

    from deeprl.envs.suites import gym_suite_env

    gymnasium.register_envs(ale_py)
    make_kwargs = {
        "frameskip": 1,  # AtariPreprocessing skips frames (and max-pools the last two)
        "repeat_action_probability": s.sticky_actions,
        "full_action_space": s.full_action_space,
        "max_num_frames_per_episode": s.max_frames,
        "render_mode": "rgb_array" if render else None,
    }
    wrappers = [
        partial(
            AtariPreprocessing, noop_max=s.noop_max, frame_skip=s.frame_skip,
            screen_size=s.size, grayscale_obs=s.grayscale, terminal_on_life_loss=False,
        ),
        LifeLossInfo,
        partial(FrameStackObservation, stack_size=s.frame_stack),
        ChannelFirst,
    ]  # fmt: skip
    return gym_suite_env(
        f"ALE/{game}-v5", num_envs, device, vectorization, name=f"atari/{game}",
        max_episode_steps=max_steps, metadata=metadata, make_kwargs=make_kwargs,
        wrappers=wrappers,
        workers=workers,
    )  # fmt: skip
