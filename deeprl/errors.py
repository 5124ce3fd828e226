"""User-facing errors.

A :class:`UserError` means the input was wrong (a name, a path, a value), not the code. The CLIs
print its message on one line and exit non-zero without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user; the message says what was wrong and how to fix it."""


def close_matches(name: str, choices: Iterable[str], n: int = 5) -> str:
    """A ' Did you mean: a, b?' suffix listing the choices closest to ``name`` (or '')."""
    choices = list(choices)
    matches = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not matches:
        lowered = name.lower()
        matches = [c for c in choices if lowered in c.lower() or c.lower() in lowered][:n]
    return f" Did you mean: {', '.join(matches)}?" if matches else ""
