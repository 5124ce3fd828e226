"""``deeprl-train``: the Hydra entry point.

Before Hydra sees the command line, the config is composed and validated
(:func:`deeprl.config.compose`) for every value of a sweep, so that user mistakes (a malformed
override, an unknown name or key, a value of the wrong type or out of range, a missing resume
directory, an agent option that does not fit the dataset) end with one clear message and exit
code 2 before anything runs.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from deeprl.config import compose, config_options, parse_override, validate
from deeprl.errors import UserError

__all__ = ["config_options", "main", "run"]

PROG = "deeprl-train"

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
    overrides = [parse_override(text) for text in _positional(argv)]
    extra: list[str] = []
    for override in overrides:
        if override.key_or_group == "resume" and override.value() not in (None, "null", ""):
            run_dir = Path(str(override.value()))
            if not run_dir.is_dir():
                raise UserError(f"resume directory {run_dir} does not exist")
            if not (run_dir / "config.yaml").is_file():
                raise UserError(f"{run_dir} is not a deeprl run directory (no config.yaml)")
            if not (run_dir / "checkpoints" / "last.pt").is_file():
                raise UserError(f"{run_dir} has no checkpoint to resume (checkpoints/last.pt)")
            extra.append(f"hydra.run.dir={run_dir}")
    # hydra.* settings are Hydra's to check; hydra/<group>=... choices compose like the rest.
    checked = [o for o in overrides if not o.key_or_group.startswith("hydra.")]
    from deeprl.agent import agent_registry
    from deeprl.train import distributed

    loaded: dict[str, object] = {}
    for i, variant in enumerate(_sweep_variants(checked)):
        cfg = compose(variant, return_hydra_config=True)
        distributed.check_world_size(cfg, agent_registry()[cfg.agent.name])
        _check_dataset(cfg, agent_registry()[cfg.agent.name], loaded)
        if i == 0 and ("-m" in argv or "--multirun" in argv):
            _check_launcher(cfg, [o.input_line for o in overrides])
    return argv + extra


def _check_dataset(cfg: DictConfig, agent_cls: type, loaded: dict[str, object]) -> None:
    """Agents that check their options against the data (:meth:`Agent.check_dataset`) get the
    dataset, loaded on the CPU (``loaded`` keeps the last one for a sweep's other variants)."""
    from deeprl.agent import Agent

    if (cfg.get("resume") or not cfg.get("dataset")
            or agent_cls.check_dataset.__func__ is Agent.check_dataset.__func__):
        return  # loading a dataset can take long: only for an agent with something to check
    import torch

    from deeprl.config import make_config
    from deeprl.datasets import load_dataset

    dataset_options = OmegaConf.to_container(cfg.dataset, resolve=True)
    key = json.dumps(dataset_options, sort_keys=True, default=str)
    if key not in loaded:
        loaded.clear()
        loaded[key] = load_dataset(dataset_options, torch.device("cpu"))
    options = OmegaConf.to_container(cfg.agent, resolve=True)
    options.pop("name")
    agent_cls.check_dataset(make_config(agent_cls.Config, options), loaded[key])


#: Launchers that come with an extra: the package of their ``_target_`` -> the packages they
#: need and the extra that installs them.
_LAUNCHER_EXTRAS = {
    "hydra_plugins.hydra_ray_launcher": (("ray", "hydra_plugins.hydra_ray_launcher"), "ray"),
}


def _check_launcher(cfg: DictConfig, overrides: list[str]) -> None:
    """A sweep's launcher must be installed, and the Ray launcher must find its cluster.

    Raises:
        UserError: the launcher's packages are missing, or no Ray cluster runs at the address.
    """
    import importlib.util

    target = str(OmegaConf.select(cfg, "hydra.launcher._target_", default="") or "")
    for package, (modules, extra) in _LAUNCHER_EXTRAS.items():
        if target.startswith(package + ".") and not all(
            importlib.util.find_spec(name.split(".")[0]) and importlib.util.find_spec(name)
            for name in modules
        ):
            name = cfg.hydra.runtime.choices.get("hydra/launcher", extra)
            raise UserError(
                f"hydra/launcher={name} needs packages that are not installed: "
                f'pip install "deeprl[{extra}]"'
            )
    if target.startswith("hydra_plugins.hydra_ray_launcher."):
        given = {parse_override(o).key_or_group: o for o in overrides}
        key = "hydra.launcher.ray.init.address"
        address = given[key].split("=", 1)[1] if key in given else OmegaConf.select(cfg, key)
        _check_ray_cluster(address)


def _check_ray_cluster(address: str | None) -> None:
    """``address: auto`` (or none) attaches to the cluster ``ray start`` started here."""
    if address not in (None, "auto"):
        return
    from ray._private.services import get_ray_address_from_environment

    try:
        get_ray_address_from_environment("auto", None)
    except ConnectionError:
        raise UserError(
            "hydra/launcher=ray found no running Ray cluster on this machine: start one with "
            "`ray start --head`, or give its address with hydra.launcher.ray.init.address="
            "<host:port> (or RAY_ADDRESS)"
        ) from None


def _sweep_variants(overrides: list) -> list[list[str]]:
    """Override lists that together cover every value of every sweep: all sweeps at their first
    value, then each further value of one sweep at a time (a bad value needs no product).
    Globs and intervals, which only the sweeper can enumerate, are left to the jobs."""
    from hydra.errors import HydraException

    base: list[str] = []
    sweeps: list[tuple[int, list[str]]] = []
    for override in overrides:
        if not override.is_sweep_override():
            base.append(override.input_line)
            continue
        try:
            values = [f"{override.get_key_element()}={v}" for v in override.sweep_string_iterator()]
        except HydraException:
            continue
        if values:
            sweeps.append((len(base), values))
            base.append(values[0])
    variants = [base]
    for index, values in sweeps:
        variants += [[*base[:index], value, *base[index + 1:]] for value in values[1:]]
    return variants


#: Keys a resumed run may change: how long it runs, how it is evaluated, logged and named.
#: Anything else (agent, env, seed, device, dataset) would make it another run.
RESUMABLE_KEYS = ("train", "logger", "wandb", "name", "tags")


def _resumed_config(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """The saved config of ``run_dir`` with the overrides given on resume applied, where they
    are safe (``RESUMABLE_KEYS``).

    Raises:
        UserError: an override would change the run itself.
    """
    from deeprl.train.trainer import resolved_config

    saved = OmegaConf.load(run_dir / "config.yaml")
    given = OmegaConf.create(resolved_config(cfg))
    merged = saved.copy()
    for text in _task_overrides():
        key = parse_override(text).key_or_group
        if key == "resume" or key.startswith("hydra"):
            continue
        old = OmegaConf.select(saved, key, default=None)
        new = OmegaConf.select(given, key, default=None)
        if isinstance(old, DictConfig):
            old = OmegaConf.to_container(old)
        if isinstance(new, DictConfig):
            new = OmegaConf.to_container(new)
        if old == new:
            continue
        if key.split(".")[0] not in RESUMABLE_KEYS:
            raise UserError(
                f"resume={run_dir} continues its saved run, and {text} would change it "
                f"({key} is {old!r} there). Only train.*, logger, wandb.*, name and tags can "
                f"change on resume; start a new run (another hydra.run.dir) to change the rest"
            )
        OmegaConf.update(merged, key, new, force_add=True)
    merged.resume = str(cfg.resume)
    return merged


def run(cfg: DictConfig):
    """Train with a composed config inside the current Hydra run directory; returns the
    :class:`~deeprl.train.trainer.Trainer` (None when the run was already finished)."""
    from hydra.core.hydra_config import HydraConfig

    from deeprl.agent import agent_registry
    from deeprl.train import distributed
    from deeprl.train.trainer import CHECKPOINT, Trainer, resolved_config

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.get("resume"):
        cfg = _resumed_config(cfg, run_dir)
    if distributed.launched_by_torchrun():
        cfg = _torchrun_config(cfg, distributed.world().size)
    # Values a sweeper generates (an experiment's hydra.sweeper.params) are first seen here.
    validate(cfg)
    distributed.check_world_size(cfg, agent_registry()[cfg.agent.name])
    checkpoint = run_dir / CHECKPOINT
    world_size = int(cfg.train.world_size)
    saved_size = distributed.saved_world_size(run_dir) if checkpoint.exists() else world_size
    if saved_size != world_size:
        raise UserError(
            f"{run_dir} was trained with train.world_size={saved_size}: continue it with "
            f"train.world_size={saved_size} (each process checkpointed its own env copies)"
        )
    if not cfg.get("resume") and checkpoint.exists():
        # A re-run of a sweep lands in the same directory: continue it only if it is the same run.
        saved = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
        if saved != resolved_config(cfg):
            raise UserError(
                f"{run_dir} already holds a run with a different config; choose another "
                f"hydra.run.dir (or hydra.sweep.dir), or resume={run_dir} to continue that run"
            )
    finished = run_dir / "eval.json"
    if finished.exists():
        done = OmegaConf.load(finished).get("step", 0)
        if int(cfg.train.total_steps) <= done:
            print(
                f"{PROG}: {run_dir} already finished at step {done} (eval.json exists); "
                f"skipping. Extend it with resume={run_dir} train.total_steps=<more>",
                file=sys.stderr,
            )
            return None
        finished.unlink()  # extended: the run is unfinished until it reaches the new budget
    if world_size > 1 and not distributed.launched_by_torchrun():
        return distributed.train_parallel(cfg, run_dir)
    trainer = Trainer(cfg, run_dir)
    trainer.train()
    return trainer


def _torchrun_config(cfg: DictConfig, size: int) -> DictConfig:
    """Under torchrun the world size is torchrun's; the config records it."""
    if int(cfg.train.world_size) not in (1, size):
        raise UserError(
            f"train.world_size={cfg.train.world_size} but torchrun started {size} processes: "
            f"drop train.world_size (torchrun's --nproc_per_node sets it)"
        )
    cfg = cfg.copy()
    cfg.train.world_size = size
    return cfg


def _torchrun_argv(argv: list[str]) -> list[str]:
    """Every torchrun process runs one Hydra job: they share rank 0's run directory."""
    from deeprl.train import distributed

    if "-m" in argv or "--multirun" in argv:
        raise UserError("torchrun starts one data-parallel run: drop -m (sweeps use a launcher)")
    positional = _positional(argv)
    overrides = [o for o in positional if not o.startswith("hydra.")]
    if any(o.startswith("hydra.run.dir=") for o in positional):
        distributed.init_torchrun(str(compose(overrides).device))
        return argv
    cfg = compose(overrides, return_hydra_config=True)
    distributed.init_torchrun(str(cfg.device))
    run_dir = str(Path(cfg.hydra.run.dir).absolute()) if distributed.world().is_main else ""
    return [*argv, f"hydra.run.dir={distributed.broadcast_text(run_dir)}"]


def _task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task)


def _exit_interrupted(signum: int | None = None) -> None:
    if signum is None:
        print(f"{PROG}: interrupted during start-up; nothing was started", file=sys.stderr)
    sys.exit(128 + (signum or 2))


@hydra.main(version_base=None, config_path="pkg://deeprl.configs", config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        trainer = run(cfg)
    except UserError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _exit_interrupted()
    # An interrupted run exits 128 + signal, as shells report it, so scripts can tell it from
    # a finished one; jobs of a sweep return to the launcher, which resumes them on a re-run.
    single = HydraConfig.get().mode != RunMode.MULTIRUN
    if single and trainer is not None and trainer.stopped_by is not None:
        sys.exit(128 + trainer.stopped_by)


def main(argv: list[str] | None = None) -> None:
    # configs/hydra/launcher/ray.yaml is named as the Ray plugin's schema, which Hydra merges it
    # onto as intended, with a deprecation warning that tells a user nothing.
    warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/ray' is validated against")
    from deeprl.train import distributed

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = _check_overrides(argv)
        if distributed.launched_by_torchrun():
            argv = _torchrun_argv(argv)
    except UserError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _exit_interrupted()
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
