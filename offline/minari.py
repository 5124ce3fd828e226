"""Minari datasets (Farama Foundation, Minari 0.5): a reader through ``minari`` itself, a writer,
and ``dataset=minari``.

On disk a dataset ``<namespace/env/name-vN>`` lives under ``$MINARI_DATASETS_PATH`` (default
``~/.minari/datasets``) as ``<id>/data/metadata.json`` and ``main_data.hdf5``, with one group
``episode_{i}`` per episode holding ``observations`` (T + 1 rows: the reset observation and one
after every step), ``actions``, ``rewards``, ``terminations``, ``truncations`` (T rows) and
``infos`` (T + 1 rows as Minari's ``DataCollector`` writes them: the reset's info, then one per
step). The metadata names the env spec the data was recorded on (and optionally an eval env
spec) and may carry ``ref_min_score``/``ref_max_score`` (random and expert policy returns).

Transitions: step t of an episode is (obs[t], action[t], reward[t], obs[t + 1], terminations[t]);
every episode's last step closes the stream (``truncated`` unless it terminated), so no
transition joins two episodes. The datasets are read with ``download=False``: nothing is fetched.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deeprl.datasets import OfflineDataset, register_dataset
from deeprl.envs.spec import Discrete, EnvSpec
from deeprl.errors import UserError
from deeprl.offline.data import (
    action_box,
    check_lengths,
    dataset_normalizer,
    observation_box,
    to_offline_dataset,
)


def _minari():
    try:
        import minari
    except ImportError:
        raise UserError("Minari datasets need minari: pip install 'deeprl[offline]'") from None
    return minari


@contextmanager
def datasets_root(root: str | Path | None) -> Iterator[None]:
    """Point Minari at ``root`` (its ``MINARI_DATASETS_PATH``) for the block; None: unchanged."""
    if root is None:
        yield
        return
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root).expanduser().resolve())
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def _where(root: str | Path | None) -> str:
    if root is not None:
        return f"dataset.root={root}"
    path = os.environ.get("MINARI_DATASETS_PATH")
    return f"MINARI_DATASETS_PATH={path}" if path else "~/.minari/datasets"


def open_minari(dataset_id: str, root: str | Path | None = None):
    """``minari.load_dataset(dataset_id, download=False)`` under ``root``.

    Raises:
        UserError: the dataset is not there, or this minari cannot read it.
    """
    minari = _minari()
    with datasets_root(root):
        try:
            return minari.load_dataset(dataset_id, download=False)
        except FileNotFoundError:
            raise UserError(
                f"Minari dataset {dataset_id!r} is not installed under {_where(root)} (nothing "
                f"is downloaded here): copy it there (`minari download {dataset_id}` where a "
                f"network is reachable) or point dataset.root at the folder holding it"
            ) from None
        except (ValueError, KeyError, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"Minari dataset {dataset_id!r} cannot be read: {reason}") from None


def read_minari(dataset) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The transitions of a loaded ``MinariDataset`` (module docstring) and its metadata.

    Raises:
        UserError: observations or actions that are not flat arrays (Dict or Tuple spaces), or
            episodes whose arrays disagree in length.
    """
    parts: dict[str, list[np.ndarray]] = {}
    for episode in dataset.iterate_episodes():
        obs, actions = episode.observations, episode.actions
        if not isinstance(obs, np.ndarray) or not isinstance(actions, np.ndarray):
            raise UserError(
                f"Minari dataset {dataset.id!r} has structured observations or actions "
                f"(Dict/Tuple spaces); deeprl reads flat arrays only"
            )
        steps = len(episode.rewards)
        if len(obs) != steps + 1 or len(actions) != steps:
            raise UserError(
                f"Minari dataset {dataset.id!r}: episode {episode.id} has {len(obs)} "
                f"observations and {len(actions)} actions for {steps} steps (expected T+1 and T)"
            )
        terminated = np.asarray(episode.terminations, dtype=bool)
        truncated = np.asarray(episode.truncations, dtype=bool).copy()
        truncated[-1] |= not terminated[-1]  # the stream leaves the episode here
        step = {
            "obs": obs[:-1], "action": actions, "reward": np.asarray(episode.rewards),
            "next_obs": obs[1:], "terminated": terminated, "truncated": truncated,
        }
        for key, value in (episode.infos or {}).items():
            value = np.asarray(value) if not isinstance(value, dict) else None
            if value is not None and value.dtype != object and len(value) in (steps, steps + 1):
                step[f"infos/{key}"] = value[len(value) - steps:]  # after each step
        check_lengths(step, f"Minari dataset {dataset.id!r}")
        for key, value in step.items():
            parts.setdefault(key, []).append(value)
    if not parts:
        raise UserError(f"Minari dataset {dataset.id!r} holds no episodes")
    keys = [k for k in parts if len(parts[k]) == len(parts["obs"])]  # infos every episode has
    transitions = {k: np.concatenate(parts[k]) for k in keys}
    return transitions, dict(dataset.storage.metadata)


def eval_env_config(dataset) -> dict[str, Any] | None:
    """The ``env`` config of the dataset's eval env spec (else its env spec), run through
    gymnasium with the spec's options; None when the dataset names no env."""
    spec = getattr(dataset, "_eval_env_spec", None) or dataset.env_spec
    if spec is None:
        return None
    env: dict[str, Any] = {"name": "gym", "backend": "gym", "id": spec.id, "vectorization": "sync"}
    kwargs = {k: v for k, v in (spec.kwargs or {}).items() if _jsonable(v)}
    if spec.max_episode_steps is not None:
        kwargs["max_episode_steps"] = spec.max_episode_steps
    if kwargs:
        env["make_kwargs"] = kwargs
    return env


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def write_minari(
    dataset_id: str,
    episodes: Sequence[Mapping[str, Any]],
    env_id: str | None = None,
    observation_space=None,
    action_space=None,
    root: str | Path | None = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    algorithm_name: str | None = None,
    description: str | None = None,
):
    """Write a Minari dataset with minari's own storage (``minari.create_dataset_from_buffers``;
    no jax needed, unlike ``DataCollector``).

    Args:
        dataset_id: e.g. ``"deeprl/pendulum/medium-v0"``.
        episodes: per episode ``observations`` (T + 1, ...), ``actions`` (T, ...), ``rewards``,
            ``terminations``, ``truncations`` (T,) and optionally ``infos`` {name: (T, ...)}
            (stored with the reset's row first, as ``DataCollector`` does).
        env_id: the gymnasium id the data was recorded on (its spec goes into the metadata).
        observation_space, action_space: gymnasium spaces (default: the env's).
        root: the datasets folder (default ``$MINARI_DATASETS_PATH``).

    Returns:
        The written ``MinariDataset``.

    Raises:
        UserError: the dataset exists already, or no env and no spaces are given.
    """
    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    buffers = []
    for index, episode in enumerate(episodes):
        infos = {
            k: np.concatenate([np.asarray(v)[:1], np.asarray(v)])
            for k, v in (episode.get("infos") or {}).items()
        }
        buffers.append(EpisodeBuffer(
            id=index,
            observations=np.asarray(episode["observations"]),
            actions=np.asarray(episode["actions"]),
            rewards=np.asarray(episode["rewards"], dtype=np.float64),
            terminations=np.asarray(episode["terminations"], dtype=bool),
            truncations=np.asarray(episode["truncations"], dtype=bool),
            infos=infos or None,
        ))
    if env_id is None and (observation_space is None or action_space is None):
        raise UserError("write_minari needs env_id or both observation_space and action_space")
    with datasets_root(root), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # minari's reminders to name an author and a code link
        try:
            return minari.create_dataset_from_buffers(
                dataset_id, buffers, env=env_id, observation_space=observation_space,
                action_space=action_space, ref_min_score=ref_min_score,
                ref_max_score=ref_max_score, algorithm_name=algorithm_name,
                author="deeprl-dataset", description=description,
            )
        except ValueError as exc:
            raise UserError(f"Minari dataset {dataset_id!r}: {exc}") from None


def episodes_from_flat(data: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Split D4RL-layout arrays (``observations``, ``actions``, ``rewards``, ``terminals``,
    ``timeouts``, ``next_observations``, ``infos/*``) into Minari episodes at terminals and
    timeouts; the data must end at an episode end (D4RL's generators keep whole episodes)."""
    ends = np.flatnonzero(np.asarray(data["terminals"], bool) | np.asarray(data["timeouts"], bool))
    infos = {k.removeprefix("infos/"): v for k, v in data.items() if k.startswith("infos/")}
    episodes, start = [], 0
    for end in ends:
        rows = slice(start, end + 1)
        episodes.append({
            "observations": np.concatenate(
                [data["observations"][rows], data["next_observations"][end : end + 1]]
            ),
            "actions": data["actions"][rows],
            "rewards": data["rewards"][rows],
            "terminations": data["terminals"][rows],
            "truncations": data["timeouts"][rows],
            "infos": {k: v[rows] for k, v in infos.items()},
        })
        start = end + 1
    return episodes


# ---- dataset=minari -----------------------------------------------------------------------------


@dataclass
class MinariConfig:
    """``dataset=minari``: a Minari dataset installed locally."""

    id: str | None = None  # e.g. mujoco/hopper/medium-v0
    root: str | None = None  # the datasets folder (null: $MINARI_DATASETS_PATH or ~/.minari)
    # Reference returns of the normalized score (null: the dataset's metadata, else none).
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    infos: bool = True  # keep per-step infos/* arrays in the batches


def load_minari(config: MinariConfig, device: torch.device) -> OfflineDataset:
    """``dataset=minari``: the dataset's transitions in a buffer on ``device``, the env of its
    (eval) env spec and its reference scores."""
    if not config.id:
        raise UserError("dataset=minari needs a dataset: give dataset.id=<namespace/env/name-vN>")
    dataset = open_minari(config.id, config.root)
    transitions, metadata = read_minari(dataset)
    if not config.infos:
        transitions = {k: v for k, v in transitions.items() if not k.startswith("infos/")}
    normalizer = dataset_normalizer(
        (config.ref_min_score, config.ref_max_score),
        (metadata.get("ref_min_score"), metadata.get("ref_max_score")),
        f"Minari dataset {config.id!r}",
    )
    env_spec = dataset.env_spec
    spec = EnvSpec(
        id=config.id,
        observation_space=observation_box(transitions["obs"]),
        action_space=_action_space(dataset.action_space, transitions["action"]),
        max_episode_steps=env_spec.max_episode_steps if env_spec is not None else None,
    )
    return to_offline_dataset(
        transitions, spec, device, eval_env_config(dataset), normalizer, config.id
    )


def _action_space(space, actions: np.ndarray):
    if hasattr(space, "n"):
        return Discrete(int(space.n))
    return action_box(actions, getattr(space, "low", None), getattr(space, "high", None))


register_dataset("minari", load_minari, MinariConfig)
