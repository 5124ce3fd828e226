"""``deeprl-envs``: list the benchmark env suites and their env names.

Examples::

    deeprl-envs                      # every suite: paper, protocol, spaces, extra, names
    deeprl-envs --suite atari        # one suite
    deeprl-envs --suite dmc cheetah-run   # build one env and print its exact spec

Unknown suites and names get a one-line error with close matches (exit status 2).
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from deeprl.envs.suites import SUITES, make_suite_env
from deeprl.errors import UserError, close_matches

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
    if suite not in SUITES:
        raise UserError(
            f"unknown suite {suite!r}.{close_matches(suite, SUITES)} Suites: {', '.join(SUITES)}."
        )
    return suite


def _wrap(text: str) -> str:
    return textwrap.fill(
        text, width=98, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False
    )


def format_suite(suite: str) -> str:
    """A paragraph describing ``suite`` and listing its names."""
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


def describe_env(suite: str, name: str) -> str:
    """Build ``name`` of ``suite`` (one copy) and describe its exact spec."""
    names = suite_names(suite)
    if name not in names:
        raise UserError(
            f"unknown {suite} env {name!r}.{close_matches(name, names)} "
            f"`deeprl-envs --suite {suite}` lists them."
        )
    env = make_suite_env(suite, 1, "cpu", **{NAME_OPTION[suite]: name})
    try:
        spec = env.spec
        obs, act = spec.observation_space, spec.action_space
        action = f"Discrete({act.n})" if spec.discrete else f"Box{act.shape} float32"
        lines = [
            f"{spec.id}",
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
        description="List deeprl's benchmark env suites, their protocols and env names.",
    )
    parser.add_argument("--suite", help=f"only this suite ({', '.join(SUITES)})")
    parser.add_argument("name", nargs="?", help="an env name of --suite: build it, print its spec")
    args = parser.parse_args(argv)
    try:
        if args.name is not None:
            if args.suite is None:
                raise UserError("give the suite of the env: deeprl-envs --suite <suite> <name>")
            print(describe_env(check_suite(args.suite), args.name))
        else:
            suites = [check_suite(args.suite)] if args.suite else list(SUITES)
            print("\n\n".join(format_suite(s) for s in suites))
    except UserError as e:
        print(f"deeprl-envs: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
