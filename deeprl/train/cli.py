"""``deeprl-train``: the Hydra entry point.

Before Hydra sees the command line, overrides are checked so that user mistakes (a malformed
override, an unknown agent or env name, a missing resume directory) end with one clear message
and exit code 2 instead of a stack trace.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from deeprl.errors import UserError, close_matches

PROG = "deeprl-train"


@dataclass
class TrainSchema:
    """Types of the ``train`` keys (values live in configs/config.yaml)."""

    total_steps: int = MISSING
    eval_every: int = MISSING
    eval_episodes: int = MISSING
    eval_envs: Optional[int] = MISSING  # noqa: UP045 (omegaconf needs typing.Optional)
    eval_deterministic: bool = MISSING
    eval_video: bool = MISSING
    log_every: int = MISSING
    checkpoint_every: int = MISSING
    threads: int = MISSING
    progress: Optional[bool] = MISSING  # noqa: UP045


@dataclass
class RunSchema:
    """Types of the top-level keys; Hydra checks overrides against it."""

    seed: int = MISSING
    device: str = MISSING
    resume: Optional[str] = MISSING  # noqa: UP045
    train: TrainSchema = field(default_factory=TrainSchema)
    agent: Any = MISSING
    env: Any = MISSING


ConfigStore.instance().store(name="deeprl_schema", node=RunSchema)


def config_options(group: str) -> list[str]:
    """Config names available in a group, e.g. ``env`` -> ['cartpole', ..., 'mujoco/hopper']."""
    root = resources.files("deeprl.configs") / group
    names: list[str] = []

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".yaml"):
                names.append(prefix + child.name[: -len(".yaml")])

    if root.is_dir():
        walk(root, "")
    return sorted(names)


# Hydra flags that take a value in the next argument.
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name",
                     "-cn", "--config-dir", "-cd", "--experimental-rerun"}
_INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def _positional(argv: list[str]) -> list[str]:
    """The overrides in argv: everything that is neither a flag nor a flag's value."""
    overrides, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg in _FLAGS_WITH_VALUE:
            skip = True
        elif arg in ("--info", "-i"):
            skip = i + 1 < len(argv) and argv[i + 1] in _INFO_TOPICS
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides


def _check_overrides(argv: list[str]) -> list[str]:
    """Validate the overrides in ``argv``; returns argv with resume's run dir wired in."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    overrides = _positional(argv)
    parser = OverridesParser.create()
    extra: list[str] = []
    for text in overrides:
        try:
            (override,) = parser.parse_overrides([text])
        except OverrideParseException as exc:
            first = str(exc).strip().splitlines()[0]
            raise UserError(
                f"malformed override {text!r} ({first}). Overrides look like key=value, "
                f"e.g. agent.lr=1e-3 or env=pendulum; quote values with spaces."
            ) from None
        key = override.key_or_group.lstrip("+~")
        if key in ("agent", "env", "experiment") and not override.is_delete():
            values = override.value()
            values = values if isinstance(values, list) else [values]
            if override.is_sweep_override() and not isinstance(override.value(), list):
                continue  # ranges/globs: Hydra expands and checks them
            options = config_options(key)
            for value in values:
                if str(value) not in options:
                    raise UserError(
                        f"unknown {key} {value!r}.{close_matches(str(value), options)} "
                        f"Available: {', '.join(options)}"
                    )
        if key == "resume" and override.value() not in (None, "null", ""):
            run_dir = Path(str(override.value()))
            if not run_dir.is_dir():
                raise UserError(f"resume directory {run_dir} does not exist")
            if not (run_dir / "config.yaml").is_file():
                raise UserError(f"{run_dir} is not a deeprl run directory (no config.yaml)")
            if not (run_dir / "checkpoints" / "last.pt").is_file():
                raise UserError(f"{run_dir} has no checkpoint to resume (checkpoints/last.pt)")
            extra.append(f"hydra.run.dir={run_dir}")
    _check_keys([o for o in overrides if not o.startswith("hydra.")])
    return argv + extra


def _check_keys(overrides: list[str]) -> None:
    """Compose the config once to catch unknown keys before Hydra launches anything."""
    from hydra import compose, initialize_config_module
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import OmegaConfBaseException, ValidationError

    parser_overrides = [o for o in overrides if "," not in o.split("=", 1)[-1]]  # skip sweeps
    with initialize_config_module("deeprl.configs", version_base=None):
        try:
            compose("config", overrides=parser_overrides, return_hydra_config=True)
        except ConfigCompositionException as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError) and getattr(cause, "full_key", None):
                reason = str(cause).strip().splitlines()[0]
                raise UserError(f"bad value for {cause.full_key}: {reason}") from None
            if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
                parent, _, key = str(cause.full_key).rpartition(".")
                cfg = compose("config")
                known = OmegaConf.select(cfg, parent) if parent else cfg
                options = list(known.keys()) if isinstance(known, DictConfig) else []
                raise UserError(
                    f"unknown config key {cause.full_key!r}.{close_matches(key, options)} "
                    f"To add a new key, prefix it with '+' (+{cause.full_key}=...)."
                ) from None
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            raise UserError(" ".join(lines[:2])) from None


def run(cfg: DictConfig) -> dict | None:
    """Train with a composed config inside the current Hydra run directory."""
    from hydra.core.hydra_config import HydraConfig

    from deeprl.train.trainer import Trainer

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.get("resume"):
        saved = OmegaConf.load(run_dir / "config.yaml")
        saved.resume = cfg.resume
        saved.train.total_steps = cfg.train.total_steps if _given("train.total_steps") else (
            saved.train.total_steps
        )
        cfg = saved
    elif (run_dir / "config.yaml").exists():
        # A re-run of a sweep lands in the same directory: continue it only if it is the same run.
        saved = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
        if saved != OmegaConf.to_container(cfg, resolve=True):
            raise UserError(
                f"{run_dir} already holds a run with a different config; choose another "
                f"hydra.run.dir (or hydra.sweep.dir), or resume={run_dir} to continue that run"
            )
    if (run_dir / "eval.json").exists():
        print(f"{PROG}: {run_dir} already finished (eval.json exists); skipping", file=sys.stderr)
        return None
    return Trainer(cfg, run_dir).train()


def _given(key: str) -> bool:
    from hydra.core.hydra_config import HydraConfig

    return any(o.split("=", 1)[0].lstrip("+") == key for o in HydraConfig.get().overrides.task)


@hydra.main(version_base=None, config_path="pkg://deeprl.configs", config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except UserError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = _check_overrides(argv)
    except UserError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [PROG, *argv]
    try:
        _hydra_main()
    except ValueError as exc:  # Hydra's own flag errors, e.g. -m together with --cfg
        if "can be specified" not in str(exc):
            raise
        print(f"{PROG}: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
