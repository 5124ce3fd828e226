"""Score normalizers and the benchmark suites that declare them.

A normalizer maps a task's raw score to a scale shared across the tasks of a suite, so scores of
different tasks can be aggregated:

- ``human_normalized`` (suite ``atari``): (score - random) / (human - random), with the random and
  human scores of the 57 Atari games (``data/atari_scores.csv``, cited there);
- ``d4rl`` (suite ``d4rl``): 100 * (score - ref_min) / (ref_max - ref_min), with D4RL's reference
  returns (``data/d4rl_scores.csv``, cited there);
- ``success_rate`` (suite ``metaworld``): the evaluation success rate, unchanged;
- ``identity`` (suites ``dmc``, ``mujoco``, ``classic``, ``raw``): the raw return, unchanged.

Every normalizer is affine per task (:class:`Affine`), so a standard deviation scales by the slope
and a published normalized score converts back to a return.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
from numpy.typing import ArrayLike

from deeprl.errors import UserError, close_matches


def read_data_csv(name: str) -> list[dict[str, str]]:
    """Rows of ``deeprl/eval/data/<name>`` as dicts; lines starting with '#' are citations."""
    text = (resources.files("deeprl.eval") / "data" / name).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return list(csv.DictReader(lines))


@dataclass(frozen=True)
class Affine:
    """The map ``score -> scale * (score - low) / (high - low)``: low -> 0, high -> scale."""

    low: float = 0.0
    high: float = 1.0
    scale: float = 1.0

    @property
    def slope(self) -> float:
        """Factor applied to score differences (and to standard deviations)."""
        return self.scale / (self.high - self.low)

    def __call__(self, score: ArrayLike) -> np.ndarray | float:
        """Normalize ``score`` (a float or an array of any shape; same shape out)."""
        out = (np.asarray(score, dtype=np.float64) - self.low) * self.slope
        return float(out) if out.ndim == 0 else out

    def inverse(self, value: ArrayLike) -> np.ndarray | float:
        """Raw score whose normalized value is ``value``."""
        out = np.asarray(value, dtype=np.float64) / self.slope + self.low
        return float(out) if out.ndim == 0 else out


IDENTITY = Affine()


# --- Atari -----------------------------------------------------------------------------------


def _atari_key(name: str) -> str:
    """'ALE/Pong-v5', 'PongNoFrameskip-v4', 'atari_pong', 'pong' -> 'pong'."""
    stem = re.sub(r"^(ALE/|atari(100k|57)?[_/-])", "", name.strip(), flags=re.IGNORECASE)
    stem = re.sub(r"(NoFrameskip|Deterministic)?-v\d+$", "", stem)
    return stem.replace("_", "").replace("-", "").lower()


@cache
def _atari_table() -> dict[str, tuple[str, float, float, bool]]:
    """key -> (game, random, human, in Atari100k)."""
    return {
        _atari_key(row["game"]): (
            row["game"],
            float(row["random"]),
            float(row["human"]),
            row["atari100k"] == "1",
        )
        for row in read_data_csv("atari_scores.csv")
    }


def atari_games(atari100k: bool = False) -> list[str]:
    """The 57 Atari games (or the 26 of Atari100k) by their ALE names, e.g. 'Pong'."""
    return [game for game, _, _, in_100k in _atari_table().values() if in_100k or not atari100k]


def atari_game(name: str) -> str:
    """ALE name of the game behind an env id or name ('ALE/Pong-v5' -> 'Pong').

    Raises:
        UserError: ``name`` is none of the 57 games.
    """
    entry = _atari_table().get(_atari_key(name))
    if entry is None:
        stem = re.sub(r"^(ALE/|atari[_/-])|(NoFrameskip)?-v\d+$", "", name)
        raise UserError(
            f"unknown Atari game {name!r}: human-normalized scores exist for the 57 Atari-57 "
            f"games only.{close_matches(stem, atari_games())} Use --metric return to report raw "
            f"returns."
        )
    return entry[0]


def atari_reference(name: str) -> Affine:
    """Affine map of the human-normalized score (random -> 0, human -> 1) for a game."""
    _, random, human, _ = _atari_table()[_atari_key(atari_game(name))]
    return Affine(random, human)


def atari_hns(name: str, score: ArrayLike) -> np.ndarray | float:
    """Human-normalized score of ``score`` on the game ``name`` (an env id or game name)."""
    return atari_reference(name)(score)


# --- D4RL ------------------------------------------------------------------------------------


@cache
def _d4rl_table() -> dict[str, tuple[float, float]]:
    """dataset id -> (ref_min, ref_max)."""
    return {
        row["dataset"]: (float(row["ref_min"]), float(row["ref_max"]))
        for row in read_data_csv("d4rl_scores.csv")
    }


def d4rl_datasets() -> set[str]:
    """The D4RL dataset ids with reference scores ('hopper-medium-v2', ...)."""
    return set(_d4rl_table())


def d4rl_reference(name: str) -> Affine:
    """Affine map of D4RL's normalized score (0-100) for a dataset id.

    ``name`` is a dataset id ('hopper-medium-v2') or a prefix whose datasets all share their
    constants ('hopper', 'hopper-medium', 'antmaze'), since D4RL sets them per environment.

    Raises:
        UserError: no dataset matches, or the matching datasets have different constants.
    """
    table = _d4rl_table()
    key = name.strip().lower()
    if key in table:
        low, high = table[key]
        return Affine(low, high, 100.0)
    matches = {table[d] for d in table if d.startswith(key + "-")}
    if len(matches) == 1:
        low, high = matches.pop()
        return Affine(low, high, 100.0)
    hint = (
        " Its datasets have different constants; give the full dataset id."
        if matches
        else close_matches(key, table)
    )
    raise UserError(f"unknown D4RL dataset {name!r}.{hint} Known ids: d4rl/infos.py names.")


def d4rl_normalized(name: str, score: ArrayLike) -> np.ndarray | float:
    """D4RL normalized score (0 = random policy, 100 = expert) of ``score`` on a dataset."""
    return d4rl_reference(name)(score)


# --- Normalizers and suites ------------------------------------------------------------------


@dataclass(frozen=True)
class Normalizer:
    """A per-task affine score map.

    Attributes:
        name: registry name.
        label: axis label of normalized values.
        score_key: what is normalized: ``"return"`` (eval/return_mean) or ``"success_rate"``.
        reference: task (env id or name) -> its :class:`Affine` map; raises UserError for tasks
            it has no constants for.
    """

    name: str
    label: str
    score_key: str
    reference: Callable[[str], Affine]

    @property
    def is_identity(self) -> bool:
        """True when values are reported unchanged."""
        return self.reference is _identity_reference

    def __call__(self, task: str, score: ArrayLike) -> np.ndarray | float:
        return self.reference(task)(score)


def _identity_reference(task: str) -> Affine:
    return IDENTITY


NORMALIZERS: dict[str, Normalizer] = {
    n.name: n
    for n in (
        Normalizer("human_normalized", "human-normalized score", "return", atari_reference),
        Normalizer("d4rl", "D4RL normalized score", "return", d4rl_reference),
        Normalizer("success_rate", "success rate", "success_rate", _identity_reference),
        Normalizer("identity", "evaluation return", "return", _identity_reference),
    )
}


@dataclass(frozen=True)
class Suite:
    """A family of tasks scored the same way; ``normalizer`` names an entry of NORMALIZERS."""

    name: str
    normalizer_name: str
    description: str

    @property
    def normalizer(self) -> Normalizer:
        return NORMALIZERS[self.normalizer_name]


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("atari", "human_normalized", "Atari 2600 games (ALE), human-normalized"),
        Suite("d4rl", "d4rl", "D4RL offline datasets, D4RL normalized score (0-100)"),
        Suite("metaworld", "success_rate", "Meta-World manipulation tasks, success rate"),
        Suite("dmc", "identity", "DeepMind Control Suite, raw return (0-1000)"),
        Suite("mujoco", "identity", "Gymnasium MuJoCo locomotion, raw return"),
        Suite("classic", "identity", "classic control (torch-native or gymnasium), raw return"),
        Suite("raw", "identity", "any other env, raw return"),
    )
}


def get_suite(name: str) -> Suite:
    """The suite called ``name``.

    Raises:
        UserError: unknown name (the message lists close matches and all suites).
    """
    if name not in SUITES:
        raise UserError(
            f"unknown suite {name!r}.{close_matches(name, SUITES)} Suites: {', '.join(SUITES)}."
        )
    return SUITES[name]


def normalize(suite: str, task: str, score: ArrayLike) -> np.ndarray | float:
    """Normalize a raw ``score`` of ``task`` with the normalizer of ``suite``."""
    return get_suite(suite).normalizer(task, score)


# Why hard-coded rather than imported from deeprl.envs: that module imports torch, and reports
# should not pay torch's start-up time. Keep in step with deeprl.envs.registry.TORCH_ENVS.
_CLASSIC_NAMES = {"cartpole", "acrobot", "mountaincar", "mountaincar_continuous", "pendulum"}
_CLASSIC_ID = re.compile(r"^(CartPole|Acrobot|MountainCar|MountainCarContinuous|Pendulum)-v\d+$")
_MUJOCO_ID = re.compile(
    r"^(Ant|HalfCheetah|Hopper|Humanoid|HumanoidStandup|InvertedDoublePendulum|InvertedPendulum"
    r"|Pusher|Reacher|Swimmer|Walker2d)-v\d+$"
)


def _suite_of(name: str) -> str | None:
    low = name.lower()
    if low.startswith(("ale/", "atari")) or "noframeskip" in low:
        return "atari"
    if low.startswith(("meta-world/", "metaworld")):
        return "metaworld"
    if low.startswith(("dm_control/", "dmc")):
        return "dmc"
    if low.startswith("d4rl") or low in _d4rl_table():
        return "d4rl"
    if low.startswith("mujoco") or _MUJOCO_ID.match(name):
        return "mujoco"
    if low in _CLASSIC_NAMES or _CLASSIC_ID.match(name):
        return "classic"
    return None


def infer_suite(env_name: str, env_id: str | None = None, backend: str | None = None) -> str:
    """Suite of an env from its config name, gymnasium id and backend ('raw' if nothing matches).

    A backend that names a suite (``env.backend: atari`` of deeprl's suite envs) decides. Then the
    id is tried: 'ALE/...' and '*NoFrameskip-v4' -> atari, 'dm_control/...' -> dmc,
    'Meta-World/...' -> metaworld, D4RL dataset ids -> d4rl, MuJoCo ids ('Hopper-v5') -> mujoco,
    classic-control ids -> classic; then the name ('atari_pong', 'dmc_walker_walk', 'cartpole').
    """
    if backend in SUITES:
        return backend
    for name in (env_id, env_name):
        suite = _suite_of(name) if name else None
        if suite is not None:
            return suite
    return "raw"
