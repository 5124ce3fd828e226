"""deeprl: classical and model-based deep reinforcement learning in PyTorch.

The Python API (:mod:`deeprl.api`) is importable from here: ``deeprl.learn``,
``deeprl.build_agent``, ``deeprl.compose`` and ``deeprl.load_agent``; it is loaded on first use
so that ``import deeprl`` stays light.
"""

from typing import Any

__version__ = "0.1.0"

_API = ("build_agent", "compose", "learn", "load_agent")


def __getattr__(name: str) -> Any:
    if name in _API:
        from deeprl import api

        return getattr(api, name)
    raise AttributeError(f"module 'deeprl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
