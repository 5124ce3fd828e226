"""``deeprl-envs``: list the envs deeprl runs: torch-native, any gymnasium id, benchmark suites.

Examples::

    deeprl-envs                      # every section: torch-native, gymnasium, each suite
    deeprl-envs --suite atari        # one section
    deeprl-envs --suite dmc cheetah-run   # build one env as env=dmc runs it, print its exact spec
    deeprl-envs --suite dmc cheetah-run agent=sac env.pixels=true   # with deeprl-train overrides

Unknown sections and names get a one-line error with close matches (exit status 2).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence

import gymnasium
import torch

from deeprl.envs.registry import TORCH_ENVS
from deeprl.envs.suites import SUITES
from deeprl.errors import UserError, close_matches

#: Sections of the catalogue: torch-native envs (``env=<name>``), gymnasium ids
#: (``env=gym env.id=<id>``) and the benchmark suites.
TORCH, GYM = "torch", "gym"
SECTIONS = [TORCH, GYM, *SUITES]

#: Observation and action spaces of each suite, in words (exact ones: give an env name).
SPACES: dict[str, str] = {
    "atari": "obs uint8 (frame_stack x 1|3, size, size); actions Discrete(game's minimal set)",
    "mujoco": "obs float32 (D,) or pixels uint8 (3, size, size); actions Box (A,)",
    "dmc": "obs float32 (D,) or pixels uint8 (3, size, size); actions Box (A,) in [-1, 1]",
    "metaworld": "obs float32 (39,), MT10/MT50 (39 + tasks,) with the one-hot id; actions Box "
    "(4,) in [-1, 1]; info['success']",
}

#: The option naming an env in each suite.
NAME_OPTION: dict[str, str] = {
    "atari": "game", "mujoco": "task", "dmc": "task", "metaworld": "task",
}  # fmt: skip


def suite_names(suite: str) -> list[str]:
    """The env names of ``suite``, or raise UserError if its extra is missing."""
    return list(SUITES[suite].function("names")())


def check_suite(suite: str) -> str:
    if suite not in SECTIONS:
        raise UserError(
            f"unknown suite {suite!r}.{close_matches(suite, SECTIONS)} "
            f"Suites: {', '.join(SECTIONS)}."
        )
    return suite


def _wrap(text: str) -> str:
    return textwrap.fill(
        text, width=98, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False
    )


def format_torch() -> str:
    """A paragraph listing the torch-native envs (``env=<name>``)."""
    names = ", ".join(f"{name} ({cls.spec.id})" for name, cls in TORCH_ENVS.items())
    return (
        f"{TORCH}  [{len(TORCH_ENVS)} envs, env=<name>]\n"
        f"  gymnasium's classic control batched on cpu or cuda (env.backend=gym: gymnasium's own)\n"
        f"{_wrap(names)}"
    )


#: gymnasium's env families with Box observations (toy_text's are Discrete: deeprl needs a Box).
GYM_FAMILIES = ("gymnasium.envs.classic_control", "gymnasium.envs.box2d", "gymnasium.envs.mujoco")


def gym_ids() -> list[str]:
    """gymnasium's own ids of :data:`GYM_FAMILIES`, the newest version of each."""
    newest: dict[str, gymnasium.envs.registration.EnvSpec] = {}
    for spec in gymnasium.registry.values():
        if isinstance(spec.entry_point, str) and spec.entry_point.startswith(GYM_FAMILIES):
            if spec.name not in newest or (spec.version or 0) > (newest[spec.name].version or 0):
                newest[spec.name] = spec
    return [spec.id for spec in newest.values()]


def format_gym() -> str:
    """A paragraph on ``env=gym env.id=<id>``: any registered gymnasium id."""
    return (
        f"{GYM}  [any registered gymnasium id, env=gym env.id=<id>]\n"
        f"  gymnasium's vector envs (env.vectorization=sync|async); env.id=<module>:<id> first\n"
        f"  imports <module>, which registers <id>. Every registered id:\n"
        f"  python -c 'import gymnasium; gymnasium.pprint_registry()'. gymnasium's own (box2d\n"
        f'  ones need `pip install swig`, then `pip install "gymnasium[box2d]"`):\n'
        f"{_wrap(', '.join(gym_ids()))}"
    )


def format_suite(suite: str) -> str:
    """A paragraph describing ``suite`` and listing its names."""
    if suite == TORCH:
        return format_torch()
    if suite == GYM:
        return format_gym()
    info = SUITES[suite]
    try:
        names = suite_names(suite)
        listing = ", ".join(names) if names else "(none yet)"
    except UserError as e:
        names, listing = [], f"(not installed: {e})"
    body = _wrap(listing)
    if info.subset is not None:
        label, attribute = info.subset
        body += f"\n  {label}:\n{_wrap(', '.join(info.function('subset')()))}"
    return (
        f"{suite}  [{len(names)} envs, {NAME_OPTION[suite]}=<name>]\n"
        f"  paper:    {info.paper}\n"
        f"  protocol: {info.protocol}\n"
        f"  spaces:   {SPACES[suite]}\n"
        f'  install:  pip install "deeprl[{info.extra}]"\n'
        f"{body}"
    )


def train_overrides(suite: str, name: str, overrides: Sequence[str] = ()) -> list[str]:
    """The ``deeprl-train`` overrides that run env ``name`` of ``suite`` (``overrides`` last; an
    ``env=<config>`` among them replaces the suite's config, e.g. ``env=atari100k``)."""
    if suite == TORCH:
        return [f"env={name}", *overrides]
    if suite == GYM:
        config = "gym"
    elif suite == "mujoco":
        config = f"mujoco/{name.split('-')[0].lower()}"  # Hopper-v5: configs/env/mujoco/hopper
    else:
        config = suite
    choice = [o for o in overrides if o.startswith("env=")] or [f"env={config}"]
    option = "id" if suite == GYM else NAME_OPTION[suite]
    return [*choice, f"env.{option}={name}", *(o for o in overrides if not o.startswith("env="))]


def describe_env(suite: str, name: str, overrides: Sequence[str] = ()) -> str:
    """Build ``name`` of ``suite`` (one copy) as ``deeprl-train`` builds it, with the env config's
    values (and those of the default agent's tuned config), and describe its exact spec."""
    from omegaconf import OmegaConf

    from deeprl.config import compose
    from deeprl.train.trainer import build_env

    names = list(TORCH_ENVS) if suite == TORCH else None if suite == GYM else suite_names(suite)
    if names is not None and name not in names:
        raise UserError(
            f"unknown {suite} env {name!r}.{close_matches(name, names)} "
            f"`deeprl-envs --suite {suite}` lists them."
        )
    args = train_overrides(suite, name, overrides)
    cfg = compose(args)
    env = build_env(OmegaConf.to_container(cfg.env, resolve=True), 1, torch.device("cpu"))
    try:
        spec = env.spec
        obs, act = spec.observation_space, spec.action_space
        action = f"Discrete({act.n})" if spec.discrete else f"Box{act.shape} float32"
        lines = [
            f"{spec.id}",
            f"  as run by:   deeprl-train {' '.join(args)} (agent {cfg.agent.name})",
            f"  observation: {tuple(obs.shape)} {str(obs.dtype).removeprefix('torch.')}",
            f"  action:      {action}",
            f"  max_episode_steps: {spec.max_episode_steps}",
            *(f"  {k}: {v}" for k, v in spec.metadata.items()),
        ]
    finally:
        env.close()
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deeprl-envs",
        description="List deeprl's envs: torch-native, gymnasium ids, and the benchmark suites "
        "with their protocols and env names.",
    )
    parser.add_argument("--suite", help=f"only this section ({', '.join(SECTIONS)})")
    parser.add_argument(
        "name", nargs="?", help="an env name (gym: an id) of --suite: build it, print its spec"
    )
    parser.add_argument(
        "overrides", nargs="*", help="deeprl-train overrides for the env built, e.g. agent=sac"
    )
    args = parser.parse_args(argv)
    try:
        if args.name is not None:
            if args.suite is None:
                raise UserError("give the suite of the env: deeprl-envs --suite <suite> <name>")
            print(describe_env(check_suite(args.suite), args.name, args.overrides))
        else:
            suites = [check_suite(args.suite)] if args.suite else SECTIONS
            print("\n\n".join(format_suite(s) for s in suites))
    except UserError as e:
        print(f"deeprl-envs: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
