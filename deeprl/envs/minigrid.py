"""MiniGrid (Chevalier-Boisvert et al. 2023, "Minigrid & Miniworld") with its categorical grid
encoding as a flat vector, for the gymnasium route (``env=minigrid``, configs/env/minigrid.yaml).

MiniGrid observes a dict: ``image``, the agent's 7x7 egocentric view with three categorical codes
per cell (object type, colour, state: minigrid's OBJECT_TO_IDX, COLOR_TO_IDX, STATE_TO_IDX),
``direction`` (0-3) and a text ``mission``. :class:`FlatGridEncoding` keeps the codes as they are
(no one-hot, no scaling), cell by cell, then the direction: a float32 vector of 7 * 7 * 3 + 1 =
148 features, each named (``cell(dx,dy) object`` ...), which trees split on directly (the setting
where GBRL reports trees beating networks; Fuhrer et al. 2025). The mission is dropped: it is
fixed within each of the tasks this is meant for (DoorKey, Empty, FourRooms, ...).

Importing this module registers ``deeprl/<MiniGrid id>`` for every MiniGrid id, e.g.
``deeprl/MiniGrid-DoorKey-5x5-v0``; ``env.id=deeprl.envs.minigrid:deeprl/MiniGrid-DoorKey-5x5-v0``
imports it first. Needs ``pip install "deeprl[minigrid]"``.
"""

from __future__ import annotations

import gymnasium
import numpy as np

from deeprl.errors import UserError

try:
    import minigrid  # noqa: F401 (registers the MiniGrid ids)
    from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
except ImportError:
    raise UserError(
        'MiniGrid envs need the minigrid package, which is not installed: '
        'pip install "deeprl[minigrid]"'
    ) from None

NAMESPACE = "deeprl"


class FlatGridEncoding(gymnasium.ObservationWrapper):
    """A MiniGrid env's ``image`` codes (H, W, 3) and ``direction`` as one float32 vector
    (H * W * 3 + 1,), with ``metadata["feature_names"]`` naming each entry."""

    def __init__(self, env: gymnasium.Env) -> None:
        super().__init__(env)
        height, width, channels = env.observation_space["image"].shape
        maxima = [max(OBJECT_TO_IDX.values()), max(COLOR_TO_IDX.values()),
                  max(STATE_TO_IDX.values())]
        high = np.array(maxima * (height * width) + [3], dtype=np.float32)
        self.observation_space = gymnasium.spaces.Box(0.0, high, dtype=np.float32)
        # image[i, j] is column i, row j of the view, the agent at the bottom middle: named
        # cell(dx, dy) with dx the offset to the agent's right and dy the cells ahead of it.
        names = [
            f"cell({i - width // 2},{height - 1 - j}) {kind}"
            for i in range(width) for j in range(height)
            for kind in ("object", "color", "state")[:channels]
        ]
        self.metadata = {**env.metadata, "feature_names": [*names, "direction"]}

    def observation(self, observation: dict) -> np.ndarray:
        image = np.asarray(observation["image"], dtype=np.float32).reshape(-1)
        return np.append(image, np.float32(observation["direction"]))


def make_flat(task: str, **kwargs) -> gymnasium.Env:
    """``gymnasium.make(task, **kwargs)`` wrapped in :class:`FlatGridEncoding`."""
    return FlatGridEncoding(gymnasium.make(task, **kwargs))


def register_flat_ids() -> None:
    """Register ``deeprl/<id>`` for every MiniGrid id gymnasium knows (idempotent)."""
    for env_id, spec in list(gymnasium.registry.items()):
        flat_id = f"{NAMESPACE}/{env_id}"
        if env_id.startswith("MiniGrid-") and flat_id not in gymnasium.registry:
            gymnasium.register(
                flat_id,
                entry_point=make_flat,
                kwargs={"task": env_id},
                max_episode_steps=spec.max_episode_steps,
            )


register_flat_ids()
