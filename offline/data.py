"""What the dataset formats share: flat transition arrays, their checks, the reference-score
normalizer and the device-resident buffer they are loaded into once.

Transitions are a dict of numpy arrays with a leading length L: ``obs`` (L, *obs_shape),
``action`` (L, *action_shape), ``reward`` (L,), ``next_obs`` (L, *obs_shape), ``terminated`` and
``truncated`` (L,) bool (``truncated`` marks every transition after which the stored stream does
not continue the episode: a time limit, a skipped step or the end of the data) and any number of
``infos/<name>`` (L, ...) arrays.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from deeprl.buffers.replay import ReplayBuffer
from deeprl.datasets import OfflineDataset
from deeprl.envs.spec import Box, EnvSpec
from deeprl.errors import UserError
from deeprl.eval.normalize import Affine

TRANSITION_KEYS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


def check_file(path: str | Path | None, what: str, key: str = "dataset.path") -> Path:
    """``path`` as an existing file.

    Raises:
        UserError: no path given, or no file there.
    """
    if not path:
        raise UserError(f"{what} needs a file: give {key}=<file>")
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{what} file {path} does not exist; check {key}")
    return path


def reference_normalizer(
    ref_min: float | None, ref_max: float | None, source: str
) -> Affine | None:
    """D4RL's normalized score 100 * (R - ref_min) / (ref_max - ref_min), or None without both
    references.

    Raises:
        UserError: only one of the two is given, or they do not bound a range.
    """
    if ref_min is None and ref_max is None:
        return None
    if ref_min is None or ref_max is None:
        raise UserError(
            f"{source} gives only one reference score ({ref_min=}, {ref_max=}); the normalized "
            f"score needs dataset.ref_min_score and dataset.ref_max_score"
        )
    ref_min, ref_max = float(ref_min), float(ref_max)
    if not (math.isfinite(ref_min) and math.isfinite(ref_max)) or ref_max <= ref_min:
        raise UserError(
            f"{source} reference scores ref_min={ref_min}, ref_max={ref_max} do not bound a "
            f"range; ref_max_score must exceed ref_min_score"
        )
    return Affine(ref_min, ref_max, 100.0)


def dataset_normalizer(
    config: tuple[float | None, float | None],
    stored: tuple[float | None, float | None],
    source: str,
) -> Affine | None:
    """The normalizer of the config's (ref_min, ref_max) when it gives either, else of the ones
    ``source`` (the data, named in messages) stores; None when neither has any."""
    if config != (None, None):
        return reference_normalizer(*config, "the dataset config")
    return reference_normalizer(*stored, source)


def check_lengths(arrays: dict[str, np.ndarray], source: str) -> int:
    """The common length L of ``arrays``.

    Raises:
        UserError: two arrays differ in length (naming both and the file).
    """
    lengths = {key: len(value) for key, value in arrays.items()}
    first = next(iter(lengths))
    for key, length in lengths.items():
        if length != lengths[first]:
            raise UserError(
                f"{source}: {key} has {length} rows but {first} has {lengths[first]}; the "
                f"per-step arrays must have one row per step"
            )
    return lengths[first]


def action_box(actions: np.ndarray, low=None, high=None) -> Box:
    """The action space: ``low``/``high`` when the file states them, else the range the data
    covers ([-1, 1] when the actions lie inside it, as D4RL's and most normalized tasks)."""
    shape = tuple(actions.shape[1:])
    if low is None or high is None:
        if len(actions) and np.abs(actions).max() <= 1.0:
            low, high = -np.ones(shape), np.ones(shape)
        else:
            low, high = actions.min(0), actions.max(0)
    low = np.broadcast_to(np.asarray(low, np.float64), shape).ravel()
    high = np.broadcast_to(np.asarray(high, np.float64), shape).ravel()
    return Box(shape, tuple(map(float, low)), tuple(map(float, high)))


def observation_box(observations: np.ndarray) -> Box:
    """An unbounded float box of the observations' shape."""
    return Box.uniform(tuple(observations.shape[1:]), -math.inf, math.inf)


def to_offline_dataset(
    transitions: dict[str, np.ndarray],
    spec: EnvSpec,
    device: torch.device,
    env: dict | None = None,
    normalizer: Affine | None = None,
    name: str | None = None,
    recorded_env: str | None = None,
) -> OfflineDataset:
    """Put ``transitions`` into a read-only replay buffer on ``device`` in one bulk write.

    Observations, continuous actions, rewards and infos become float32 (the width the nets use),
    discrete actions int64, flags bool.

    Raises:
        UserError: no transitions.
    """
    length = check_lengths(transitions, name or "dataset")
    if length == 0:
        raise UserError(f"{name or 'the dataset'} holds no transitions to learn from")
    data = {}
    for key, value in transitions.items():
        if key in ("terminated", "truncated"):
            data[key] = torch.as_tensor(np.asarray(value, dtype=bool))
        elif key == "action" and np.issubdtype(value.dtype, np.integer):  # discrete actions
            data[key] = torch.as_tensor(np.asarray(value, dtype=np.int64))
        else:
            data[key] = torch.as_tensor(np.asarray(value, dtype=np.float32))
    buffer = ReplayBuffer.from_arrays(data, device=device)
    return OfflineDataset(spec, buffer, env, normalizer, name, recorded_env)
