"""D4RL's HDF5 format (Fu et al. 2020, "D4RL: Datasets for Deep Data-Driven Reinforcement
Learning", arXiv 2004.07219): a reader with d4rl's ``qlearning_dataset`` rules, a writer, and
``dataset=d4rl``.

A file holds flat per-step arrays of length N: ``observations`` (N, obs_dim), ``actions``
(N, act_dim), ``rewards`` (N,), ``terminals`` (N,) (true terminations) and, when recorded,
``timeouts`` (N,) (the time limit hit), ``next_observations`` (N, obs_dim), ``infos/*`` (N, ...)
and ``metadata/*``. Episodes follow each other; an episode ends at a terminal or a timeout.

Transitions (d4rl's ``qlearning_dataset``): step i gives (obs[i], actions[i], rewards[i],
next_obs[i], terminated = terminals[i]) with next_obs[i] = next_observations[i] when the file has
them, else obs[i + 1]. Steps with ``timeouts[i]`` are left out, since obs[i + 1] there starts the
next episode (and d4rl leaves them out even when next_observations exist), so a time limit is
never a termination and no transition joins two episodes; without ``next_observations`` the last
step is left out too (it has no successor). A file without ``timeouts`` gets them from
``max_episode_steps`` as d4rl does (it counts steps since the last end).

Named datasets (``hopper-medium-v2`` ...) are evaluated with D4RL's reference scores
(``deeprl/eval/data/d4rl_scores.csv``) on the gymnasium MuJoCo v4 task of their family. D4RL's
v2 data was recorded on the v3 tasks with mujoco-py, which does not install with current
compilers and MuJoCo; the v4 tasks run the same models through the ``mujoco`` bindings with the
same observation layout (v5 changed model details, e.g. Walker2d's foot friction). Ant's 111-dim
layout needs ``use_contact_forces=True``; D4RL's ant data has zero contact forces (a mujoco-py
2.0 artefact), so ant scores are the least comparable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deeprl.config import option
from deeprl.datasets import OfflineDataset, register_dataset
from deeprl.envs.spec import EnvSpec
from deeprl.errors import UserError
from deeprl.eval.normalize import d4rl_datasets, d4rl_reference
from deeprl.offline.data import (
    action_box,
    check_file,
    check_lengths,
    dataset_normalizer,
    observation_box,
    to_offline_dataset,
)

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")

#: D4RL Gym-MuJoCo family -> the gymnasium task with its observation layout, its env options.
GYM_TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "halfcheetah": ("HalfCheetah-v4", {}),
    "hopper": ("Hopper-v4", {}),
    "walker2d": ("Walker2d-v4", {}),
    "ant": ("Ant-v4", {"use_contact_forces": True}),
}
#: D4RL's time limit of the Gym-MuJoCo tasks (files without ``timeouts``).
GYM_MAX_EPISODE_STEPS = 1000


def _h5py():
    try:
        import h5py
    except ImportError:
        raise UserError(
            "reading and writing HDF5 datasets needs h5py: pip install 'deeprl[offline]'"
        ) from None
    return h5py


def _open(path: Path):
    try:
        return _h5py().File(path, "r")
    except OSError as exc:
        reason = str(exc).split("(")[-1].rstrip(")") if "(" in str(exc) else str(exc)
        raise UserError(f"{path} is not a readable HDF5 file ({reason})") from None


def read_metadata(file) -> dict[str, Any]:
    """The file's root attributes and its ``metadata/*`` datasets (nested groups joined with
    '/'), as Python values; ``metadata/*`` wins on a clash."""
    out: dict[str, Any] = {k: _plain(v) for k, v in file.attrs.items()}
    out.update({k: _plain(v) for k, v in _arrays(file.get("metadata")).items()})
    return out


def _arrays(group) -> dict[str, np.ndarray]:
    """Every dataset under an HDF5 group, by its path inside the group ({} for None)."""
    out: dict[str, np.ndarray] = {}
    if group is not None and hasattr(group, "visititems"):
        group.visititems(lambda name, node: _collect(out, name, node))
    return out


def _collect(out: dict[str, np.ndarray], name: str, node) -> None:
    if hasattr(node, "shape"):  # a dataset, not a group
        out[name] = node[()]


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value if value.ndim else _plain(value[()])
    if isinstance(value, np.generic):
        return value.item()
    return value


def _timeouts_from_limit(terminals: np.ndarray, limit: int) -> np.ndarray:
    """d4rl's rule for files without ``timeouts``, counted as d4rl counts: a step is final when
    its episode counter reaches limit - 1; a final step restarts the counter at 0, a terminal
    one at 1 (d4rl resets before its increment)."""
    timeouts = np.zeros(len(terminals), dtype=bool)
    episode_step = 0
    for i, terminal in enumerate(terminals.tolist()):
        if episode_step == limit - 1:
            timeouts[i], episode_step = True, 0
        else:
            episode_step = 1 if terminal else episode_step + 1
    return timeouts


def read_d4rl(
    path: str | Path,
    max_episode_steps: int | None = None,
    infos: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The transitions of a D4RL-format file by ``qlearning_dataset``'s rules (module docstring).

    Args:
        path: the HDF5 file.
        max_episode_steps: the time limit, used only when the file has no ``timeouts``.
        infos: also return ``infos/<name>`` arrays of the kept steps.

    Returns:
        (transitions, metadata): transitions as described in :mod:`deeprl.offline.data`
        (``truncated`` marks where the stream leaves an episode), metadata from
        :func:`read_metadata`.

    Raises:
        UserError: missing or unreadable file, a missing required key, arrays of different
            lengths or shapes.
    """
    path = check_file(path, "dataset=d4rl")
    with _open(path) as f:
        missing = [key for key in REQUIRED_KEYS if key not in f]
        if missing:
            raise UserError(
                f"{path} has no {missing[0]!r} dataset; a D4RL file needs "
                f"{', '.join(REQUIRED_KEYS)} (it has: {', '.join(sorted(f.keys())) or 'nothing'})"
            )
        try:
            raw = {key: f[key][()] for key in (*REQUIRED_KEYS, "timeouts", "next_observations")
                   if key in f}
            info = _arrays(f.get("infos")) if infos else {}
            metadata = read_metadata(f)
        except OSError as exc:
            raise UserError(f"{path} is truncated or damaged ({exc})") from None
    for key in ("rewards", "terminals", "timeouts"):
        if key in raw and raw[key].ndim == 2 and raw[key].shape[1] == 1:
            raw[key] = raw[key][:, 0]
        if key in raw and raw[key].ndim != 1:
            raise UserError(f"{path}: {key} has shape {raw[key].shape}; expected one value a step")
    if raw["observations"].ndim < 2 or raw["actions"].ndim < 2:
        raise UserError(
            f"{path}: observations {raw['observations'].shape} and actions "
            f"{raw['actions'].shape} need a step axis and a feature axis"
        )
    if "next_observations" in raw and raw["next_observations"].shape != raw["observations"].shape:
        raise UserError(
            f"{path}: next_observations has shape {raw['next_observations'].shape}, observations "
            f"{raw['observations'].shape}; they must match"
        )
    length = check_lengths(raw, str(path))
    # infos are extras: only numeric per-step arrays come along.
    info = {k: v for k, v in info.items() if v.ndim and len(v) == length and v.dtype.kind in "biuf"}
    terminals = raw["terminals"].astype(bool)
    if "timeouts" in raw:
        timeouts = raw["timeouts"].astype(bool)
    elif max_episode_steps:
        timeouts = _timeouts_from_limit(terminals, max_episode_steps)
    else:
        timeouts = np.zeros(length, dtype=bool)
    obs = raw["observations"]
    keep = ~timeouts
    if "next_observations" in raw:
        next_obs = raw["next_observations"]
    else:
        next_obs = np.concatenate([obs[1:], obs[-1:]])
        keep[-1] = False
    index = np.flatnonzero(keep)
    following = np.append(index[1:], -1)
    terminated = terminals[index]
    transitions = {
        "obs": obs[index],
        "action": raw["actions"][index],
        "reward": raw["rewards"][index],
        "next_obs": next_obs[index],
        "terminated": terminated,
        "truncated": ~terminated & (following != index + 1),
    }
    transitions.update({f"infos/{k}": v[index] for k, v in info.items()})
    return transitions, metadata


def write_d4rl(
    path: str | Path,
    data: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any] | None = None,
    compression: str | None = "gzip",
) -> Path:
    """Write a D4RL-format file (atomically: a finished file or none).

    Args:
        path: the file to write (its folder is created).
        data: ``observations``, ``actions``, ``rewards``, ``terminals`` and optionally
            ``timeouts``, ``next_observations`` and ``infos/<name>`` arrays, one row per step.
        metadata: written as ``metadata/<key>`` datasets (strings, numbers, arrays; a key may
            hold '/' for nested groups, as D4RL's ``metadata/policy/...``).
        compression: h5py compression of the per-step arrays (D4RL's files use gzip).

    Raises:
        UserError: a required key is missing or the arrays differ in length.
    """
    h5py = _h5py()
    path = Path(path)
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise UserError(f"write_d4rl: data has no {missing[0]!r}; it needs {REQUIRED_KEYS}")
    check_lengths(dict(data), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # concurrent writers do not collide
    try:
        with h5py.File(tmp, "w") as f:
            for key, value in data.items():
                value = np.asarray(value)
                f.create_dataset(key, data=value, compression=compression if value.ndim else None)
            for key, value in (metadata or {}).items():
                f[f"metadata/{key}"] = value
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ---- dataset=d4rl -------------------------------------------------------------------------------


@dataclass
class D4RLConfig:
    """``dataset=d4rl``: a D4RL-format HDF5 file."""

    path: str | None = None  # the .hdf5 file
    # D4RL dataset id ('hopper-medium-v2'); null: from the file name (hopper_medium-v2.hdf5 too).
    # Named datasets take D4RL's reference scores and eval env; other files take env=.
    id: str | None = None
    # Reference returns of the normalized score 100 * (R - min) / (max - min); null: the file's
    # metadata (ref_min_score/ref_max_score), else D4RL's for named datasets, else none.
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    # The time limit, for files without timeouts (null: 1000 for D4RL Gym-MuJoCo ids, else none).
    max_episode_steps: int | None = option(None, ge=1)
    infos: bool = True  # keep infos/* arrays in the batches (e.g. action_log_probs)


def d4rl_id(path: Path, given: str | None) -> str | None:
    """The D4RL id of the file: ``given``, or its name if that is one ('hopper_medium-v2')."""
    table = d4rl_datasets()
    if given:
        if given.lower() not in table:
            raise UserError(
                f"dataset.id={given!r} is not a D4RL dataset id (d4rl/infos.py names, e.g. "
                f"hopper-medium-v2); drop dataset.id for a file of your own"
            )
        return given.lower()
    stem = path.name.removesuffix(".hdf5").removesuffix(".h5").lower()
    for candidate in (stem, stem.replace("_", "-")):
        if candidate in table:
            return candidate
    return None


def named_env(dataset_id: str) -> dict[str, Any] | None:
    """The eval env config of a D4RL Gym-MuJoCo dataset id (None for other families)."""
    family = dataset_id.split("-")[0]
    if family not in GYM_TASKS:
        return None
    task, options = GYM_TASKS[family]
    env = {"name": "gym", "backend": "gym", "id": task, "vectorization": "sync"}
    if options:
        env["make_kwargs"] = dict(options)
    return env


def load_d4rl(config: D4RLConfig, device: torch.device) -> OfflineDataset:
    """``dataset=d4rl``: the file's transitions in a buffer on ``device``, its eval env and its
    normalizer (module docstring)."""
    path = check_file(config.path, "dataset=d4rl")
    dataset_id = d4rl_id(path, config.id)
    limit = config.max_episode_steps
    if limit is None and dataset_id and named_env(dataset_id):
        limit = GYM_MAX_EPISODE_STEPS
    transitions, metadata = read_d4rl(path, max_episode_steps=limit, infos=config.infos)
    normalizer = dataset_normalizer(
        (config.ref_min_score, config.ref_max_score),
        (metadata.get("ref_min_score"), metadata.get("ref_max_score")),
        str(path),
    )
    if normalizer is None and dataset_id:
        normalizer = d4rl_reference(dataset_id)
    spec = EnvSpec(
        id=dataset_id or path.name,
        observation_space=observation_box(transitions["obs"]),
        action_space=action_box(
            transitions["action"], metadata.get("action_low"), metadata.get("action_high")
        ),
        max_episode_steps=metadata.get("max_episode_steps", limit),
    )
    env = named_env(dataset_id) if dataset_id else None
    return to_offline_dataset(
        transitions, spec, device, env, normalizer, dataset_id or str(path), metadata.get("env")
    )


register_dataset("d4rl", load_d4rl, D4RLConfig)
