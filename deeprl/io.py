"""Atomic, pickle-free file I/O: checkpoints and JSON files.

Below every layer that writes files (buffers, agents, the trainer), so none of them imports
another to save. Every file is written to a temporary file in the same directory and renamed over
the old one, so a crash mid-write never leaves a broken file. A checkpoint is one ``torch.save``
file of tensors and plain containers; loading uses ``torch.load(weights_only=True)``, which
refuses arbitrary pickled objects, and a corrupt or foreign file raises
:class:`~deeprl.errors.UserError`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch

from deeprl.errors import UserError

FORMAT = "deeprl-checkpoint"
VERSION = 1


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it is fsynced and renamed
    over ``path``, on any error removed, so ``path`` is always the old or the new file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; outputs are shared like logs
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically."""
    with atomic_write(path) as f:
        torch.save({"format": FORMAT, "version": VERSION, **state}, f)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"checkpoint {path} is corrupt or not a deeprl checkpoint ({reason[:200]}); "
            f"nothing was overwritten"
        ) from None
    check_format(state, path, FORMAT, VERSION, "deeprl checkpoint")
    return state


def check_format(header: Any, path: Path, name: str, version: int, what: str) -> None:
    """Raise a :class:`UserError` unless ``header`` (a file's metadata dict) carries the format
    marker ``name`` at ``version``; ``what`` names the kind of file in the message."""
    if not isinstance(header, dict) or header.get("format") != name:
        raise UserError(f"{path} is not a {what} (no '{name}' marker)")
    if header.get("version") != version:
        raise UserError(
            f"{path} is a {what} of format version {header.get('version')}; this deeprl reads "
            f"version {version}"
        )


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
