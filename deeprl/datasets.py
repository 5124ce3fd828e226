"""Offline data sources: what an offline agent learns from, and the ``dataset`` config group.

A loader turns the ``dataset`` config (``dataset=<name>`` plus its keys) into an
:class:`OfflineDataset`: the env spec the data was recorded with, a buffer filled once in bulk
that agents only sample from, and optionally the env to evaluate on. The trainer reads the
dataset; it never writes it into checkpoints (a resumed run loads it again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from deeprl.buffers.base import Buffer
from deeprl.envs.spec import EnvSpec
from deeprl.errors import UserError, close_matches
from deeprl.eval.normalize import Affine


@dataclass
class OfflineDataset:
    """A fixed dataset.

    Attributes:
        spec: observation and action spaces of the data (an agent is built for it).
        buffer: the transitions, on the training device; read-only for the agent.
        env: the ``env`` config to evaluate on (``{"name": ..., ...}``), or None to use the run's
            ``env`` config.
        normalizer: the dataset's score map, e.g. D4RL's 100 * (R - ref_min) / (ref_max -
            ref_min); evaluations then also report ``normalized_score``. None: raw returns only.
        name: what the data is called in messages (a dataset id or a file).
        recorded_env: the ``env=`` choice the data was recorded on, when the data says so (a
            hint in messages; the eval env is still ``env``).
    """

    spec: EnvSpec
    buffer: Buffer
    env: dict[str, Any] | None = None
    normalizer: Affine | None = None
    name: str | None = None
    recorded_env: str | None = None


#: ``loader(config, device)``: ``config`` is an instance of the dataset's config dataclass.
DatasetLoader = Callable[[Any, torch.device], OfflineDataset]

_DATASETS: dict[str, tuple[DatasetLoader, type]] = {}


def register_dataset(name: str, loader: DatasetLoader, config: type) -> None:
    """Make ``dataset=<name>`` load data with ``loader(config, device)``.

    ``config`` is a dataclass of the dataset's keys and defaults (ranges with
    :func:`deeprl.config.option`); it becomes the config node ``dataset/<name>``, so overrides
    like ``dataset.path=...`` are checked as agent options are.
    """
    from deeprl.config import store_group_config

    _DATASETS[name] = (loader, config)
    store_group_config("dataset", name, config)


def _registered() -> dict[str, tuple[DatasetLoader, type]]:
    import deeprl.offline  # noqa: F401 (registers the built-in loaders)

    return _DATASETS


def dataset_config(name: str | None) -> type:
    """The config dataclass of dataset ``name``.

    Raises:
        UserError: no dataset of that name is registered.
    """
    datasets = _registered()
    if name not in datasets:
        raise UserError(
            f"unknown dataset {name!r}.{close_matches(str(name), datasets)} "
            f"Datasets: {', '.join(sorted(datasets)) or 'none registered'}"
        )
    return datasets[name][1]


def load_dataset(options: dict[str, Any], device: torch.device) -> OfflineDataset:
    """Load the dataset that a composed ``dataset`` config names."""
    from deeprl.config import make_config

    options = dict(options)
    name = options.pop("name", None)
    config = make_config(dataset_config(name), options, prefix="dataset")
    return _DATASETS[name][0](config, device)
