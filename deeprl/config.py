"""Config schemas, their registration with Hydra, and validation.

Every default has one home: an agent's hyperparameters are its ``Config`` dataclass (registered
as the Hydra config ``agent/<name>``), the top-level keys are :class:`RunSchema`, and an env's
keys are its ``configs/env`` file plus the keyword options of its backend. A field declares the
values it allows with :func:`option` (``lr: float = option(3e-4, gt=0)``); :func:`validate`
checks a composed config against all of this before anything runs, and :func:`make_config`
checks an agent's options when it builds the dataclass.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import operator
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING

from deeprl.errors import UserError, close_matches

if TYPE_CHECKING:
    from omegaconf import DictConfig

_BOUNDS = {"ge": (operator.ge, ">="), "gt": (operator.gt, ">"),
           "le": (operator.le, "<="), "lt": (operator.lt, "<")}


def option(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[str] | None = None,
    pattern: str | None = None,
) -> Any:
    """A dataclass field that declares the values it allows, for :func:`validate`.

    Bounds apply to a number, or to each item of a list; ``choices`` and ``pattern`` (a regular
    expression the whole value must match) to a string. None passes where the type allows it.
    A list, dict or dataclass default is copied for each instance.
    """
    rules = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "pattern": pattern}
    rules = {k: v for k, v in rules.items() if v is not None}
    if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
        factory = functools.partial(copy.deepcopy, default)
        return field(default_factory=factory, metadata=rules)
    return field(default=default, metadata=rules)


@dataclass
class TrainSchema:
    """``train.*``. Steps count env steps (online agents) or gradient updates (offline agents)."""

    total_steps: int = option(100_000, ge=1)
    eval_every: int = option(10_000, ge=0)  # steps between evaluations (0: only at the end)
    eval_episodes: int = option(10, ge=1)
    eval_envs: int | None = option(None, ge=1)  # parallel eval env copies (None: one per episode)
    eval_deterministic: bool = True
    # Agent steps after which an evaluation episode is cut and counted with its return so far
    # (None: the env's own time limit). Keeps a policy that never ends an episode (e.g. one that
    # never presses FIRE on Breakout) from eating the run.
    eval_max_episode_steps: int | None = option(None, ge=1)
    # Also record one evaluation episode: videos/eval_<step>.mp4 and TensorBoard.
    eval_video: bool = False
    log_every: int = option(2048, ge=0)  # steps between metrics.jsonl lines (0: at evaluations)
    # Steps between checkpoints (0: only on SIGINT/SIGTERM and at the end).
    checkpoint_every: int = option(50_000, ge=0)
    # torch CPU threads; small MLPs run fastest on one (0: torch's default).
    threads: int = option(1, ge=0)
    # Data-parallel processes (deeprl/train/distributed.py): the env copies and the step budget
    # are split among them, gradients averaged; one per CPU core or GPU at most.
    world_size: int = option(1, ge=1)
    progress: bool | None = None  # progress bar (None: only on a terminal)
    # Seconds between plain progress lines when there is no bar (output to a file or a pipe).
    progress_every: float = option(30.0, gt=0)


@dataclass
class WandbSchema:
    """``wandb.*``: Weights & Biases, used with ``logger=wandb`` (needs the extra:
    ``pip install "deeprl[wandb]"``)."""

    project: str = "deeprl"
    entity: str | None = None
    # online: sync as it runs; offline: write under <run dir>/wandb, `wandb sync` later.
    mode: str = option("online", choices=["online", "offline", "disabled"])


@dataclass
class RunSchema:
    """The top-level keys of ``deeprl-train``'s config (``configs/config.yaml`` composes it)."""

    seed: int = option(0, ge=0)  # gymnasium refuses negative reset seeds
    device: str = option("auto", pattern=r"auto|cpu|cuda(:[0-9]+)?")  # auto: CUDA when available
    resume: str | None = None  # a run directory to continue: resume=runs/...
    train: TrainSchema = field(default_factory=TrainSchema)
    agent: Any = MISSING  # a registered agent's Config, plus its name
    env: Any = MISSING  # configs/env/<name>.yaml
    dataset: Any = None  # what an offline agent learns from (the dataset group)
    name: str | None = None  # a name for the run (start line, config.yaml, W&B)
    tags: list[str] = option([])  # free labels (config.yaml, W&B)
    # Where metrics go besides metrics.jsonl: tensorboard, or wandb (TensorBoard and W&B).
    logger: str = option("tensorboard", choices=["tensorboard", "wandb"])
    wandb: WandbSchema = field(default_factory=WandbSchema)


@dataclass
class EnvSchema:
    """The keys every env config has; its other keys are keyword options of its backend."""

    name: str
    backend: str = "torch"  # torch | gym | a suite of deeprl.envs.suites
    id: str | None = None  # gymnasium id (backend gym)
    num_envs: int | None = option(None, ge=1)  # None: the agent's num_envs


# ---- checking values against a schema ----------------------------------------------------------
def _matches(value: Any, annotation: Any) -> bool:
    """Whether a config value fits a dataclass field annotation (ints count as floats)."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (list, tuple):
        (item,) = typing.get_args(annotation)[:1] or (Any,)
        return isinstance(value, list | tuple) and all(_matches(v, item) for v in value)
    if origin is dict or annotation is dict:
        return isinstance(value, Mapping)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if dataclasses.is_dataclass(annotation):
        return isinstance(value, Mapping | annotation)
    # Annotations a config value cannot be checked against (Callable, Literal, ...) pass.
    return not isinstance(annotation, type) or isinstance(value, annotation)


def _describe(annotation: Any) -> str:
    """An annotation in words, for messages: ``int | None`` -> 'int or null'."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if origin in (list, tuple):
        (item,) = typing.get_args(annotation)[:1] or (Any,)
        return f"a list of {_describe(item)}"
    if origin is dict or annotation is dict or dataclasses.is_dataclass(annotation):
        return "a mapping"
    return getattr(annotation, "__name__", str(annotation))


def _check_rules(key: str, value: Any, rules: Mapping[str, Any]) -> None:
    if value is None:
        return
    bounds = [(name, rules[name]) for name in _BOUNDS if name in rules]
    if any(not _BOUNDS[name][0](value, limit) for name, limit in bounds):
        allowed = " and ".join(f"{_BOUNDS[name][1]} {limit}" for name, limit in bounds)
        raise UserError(f"{key}={value!r} is out of range: it must be {allowed}")
    choices = rules.get("choices")
    if choices is not None and value not in choices:
        raise UserError(
            f"{key}={value!r} is not allowed.{close_matches(str(value), choices)} "
            f"Choose one of: {', '.join(choices)}"
        )
    pattern = rules.get("pattern")
    if pattern is not None and not re.fullmatch(pattern, str(value)):
        raise UserError(f"{key}={value!r} is not allowed: it must match {pattern}")


def _check_value(key: str, value: Any, annotation: Any, rules: Mapping[str, Any]) -> None:
    if dataclasses.is_dataclass(annotation) and isinstance(value, Mapping):
        check_options(annotation, value, key)
        return
    if not _matches(value, annotation):
        raise UserError(
            f"{key}={value!r} has the wrong type: expected {_describe(annotation)}, got "
            f"{type(value).__name__}"
        )
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_rules(f"{key}[{i}]", item, rules)
    else:
        _check_rules(key, value, rules)


def _unknown_key(full_key: str, where: str, known: Sequence[str]) -> UserError:
    key = full_key.rpartition(".")[2]
    return UserError(
        f"unknown config key {full_key!r}.{close_matches(key, known)} "
        f"Keys of {where}: {', '.join(known)}"
    )


def check_options(schema: type, options: Mapping[str, Any], prefix: str) -> None:
    """Check ``options`` (plain values) against dataclass ``schema``: every key exists, every
    value has the field's type and lies in the range its :func:`option` declares. Nested
    dataclass fields are checked recursively; ``prefix`` names the options in messages.

    Raises:
        UserError: naming the first bad key and what it allows.
    """
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key, value in options.items():
        full = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            raise _unknown_key(full, prefix or "the config", list(fields))
        _check_value(full, value, hints[key], fields[key].metadata)


def make_config(config_cls: type, options: Mapping[str, Any], prefix: str = "agent") -> Any:
    """Build a Config dataclass from plain options after :func:`check_options`; nested dataclass
    fields (e.g. ``critic``) are built recursively and ints given for floats become floats."""
    check_options(config_cls, options, prefix)
    hints = typing.get_type_hints(config_cls)
    values = {}
    for key, value in options.items():
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation) and isinstance(value, Mapping):
            value = make_config(annotation, value, f"{prefix}.{key}")
        elif annotation is float and isinstance(value, int):
            value = float(value)
        values[key] = value
    return config_cls(**values)


# ---- env options -------------------------------------------------------------------------------
# Parameters of the env builders that the trainer fills in itself, or that take Python objects
# (wrappers, factories) no config can hold; the top-level seed seeds the env.
_ENV_ARGUMENTS = {"self", "env_id", "num_envs", "device", "seed", "wrappers", "env_fns"}


def env_options(backend: str) -> dict[str, Any]:
    """The keyword options (name -> annotation) that env ``backend`` takes from ``env.*``
    besides :class:`EnvSchema`'s keys: a suite's ``make_<suite>`` parameters, those of
    :class:`~deeprl.envs.gym_env.GymVectorEnv` for ``gym``, none for ``torch``.

    Raises:
        UserError: an unknown backend, or a suite whose extra is not installed.
    """
    if backend == "torch":
        return {}
    if backend == "gym":
        from deeprl.envs.gym_env import GymVectorEnv

        builder: Any = GymVectorEnv.__init__
    else:
        from deeprl.envs.suites import SUITES

        if backend not in SUITES:
            backends = ["torch", "gym", *SUITES]
            raise UserError(
                f"env.backend={backend!r} is not allowed.{close_matches(backend, backends)} "
                f"Choose one of: {', '.join(backends)}"
            )
        builder = SUITES[backend].function("make")
    try:
        hints = typing.get_type_hints(builder)
    except NameError:  # an annotation only importable for type checkers: check names only
        hints = {}
    return {
        name: hints.get(name, Any)
        for name, param in inspect.signature(builder).parameters.items()
        if name not in _ENV_ARGUMENTS and param.kind is not param.VAR_KEYWORD
    }


def _check_env(env: Mapping[str, Any]) -> None:
    common = [f.name for f in dataclasses.fields(EnvSchema)]
    check_options(EnvSchema, {k: v for k, v in env.items() if k in common}, "env")
    backend = env.get("backend", "torch")
    accepted = env_options(backend)
    for key, value in env.items():
        if key in common:
            continue
        if key not in accepted:
            raise _unknown_key(f"env.{key}", f"env (backend {backend})", [*common, *accepted])
        _check_value(f"env.{key}", value, accepted[key], {})


# ---- the composed config -----------------------------------------------------------------------
def _plain(cfg: DictConfig) -> dict[str, Any]:
    """The config's values, resolved, without Hydra's own node."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    keys = [k for k in cfg if k != "hydra"]
    try:
        return OmegaConf.to_container(
            OmegaConf.masked_copy(cfg, keys), resolve=True, throw_on_missing=True
        )
    except OmegaConfBaseException as exc:
        reason = str(exc).strip().splitlines()[0]
        raise UserError(f"cannot read {getattr(exc, 'full_key', 'the config')}: {reason}") from None


def validate(cfg: DictConfig) -> None:
    """Check a composed run config before anything runs: every top-level key, agent option and
    env option exists, has its type and lies in its declared range.

    Raises:
        UserError: one line naming the first bad key and the values it allows.
    """
    from deeprl.agent import agent_registry

    values = _plain(cfg)
    check_options(RunSchema, values, "")
    for group in ("agent", "env"):
        if not isinstance(values.get(group), Mapping):
            raise UserError(f"no {group} chosen: add {group}=<name>")
    options = dict(values["agent"])
    name = options.pop("name", None)
    agents = agent_registry()
    if name not in agents:
        raise UserError(
            f"agent.name={name!r} is not a registered agent.{close_matches(str(name), agents)} "
            f"Agents: {', '.join(sorted(agents))}"
        )
    check_options(agents[name].Config, options, "agent")
    _check_env(values["env"])
    if values.get("dataset"):
        from deeprl.datasets import dataset_config

        options = dict(values["dataset"])
        check_options(dataset_config(options.pop("name", None)), options, "dataset")


# ---- Hydra -------------------------------------------------------------------------------------
def store_group_config(group: str, name: str, config_cls: type) -> None:
    """Make ``<group>=<name>`` (``agent=ppo``, ``dataset=...``) compose ``config_cls``'s defaults
    (typed, so Hydra rejects a wrong type or an unknown key in an override) with ``name``
    first."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        schema = OmegaConf.structured(config_cls)
    except OmegaConfBaseException as exc:
        reason = str(exc).strip().splitlines()[0]
        raise TypeError(
            f"{config_cls.__qualname__} is not usable as a config ({reason}); annotate fields "
            f"with bool, int, float, str, lists, dicts, Optional or dataclasses"
        ) from None
    node = OmegaConf.merge({"name": name}, schema)
    ConfigStore.instance().store(group=group, name=name, node=node)


def register_configs() -> None:
    """Put the schema and every registered agent's config into Hydra's ConfigStore. Call it in
    any process before composing ``deeprl.configs``; calling it again is harmless."""
    from hydra.core.config_store import ConfigStore

    import deeprl.offline  # noqa: F401 (registers the built-in datasets)
    from deeprl.agent import agent_registry

    ConfigStore.instance().store(name="deeprl_schema", node=RunSchema)
    for name, cls in agent_registry().items():
        store_group_config("agent", name, cls.Config)


def config_options(group: str) -> list[str]:
    """Config names available in a group: files shipped in ``deeprl.configs`` (``env`` ->
    ['acrobot', ..., 'mujoco/hopper']) and configs registered in Hydra's ConfigStore (every
    registered agent)."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.object_type import ObjectType

    register_configs()
    names: set[str] = set()

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".yaml"):
                names.add(prefix + child.name[: -len(".yaml")])

    root = resources.files("deeprl.configs") / group
    if root.is_dir():
        walk(root, "")
    store = ConfigStore.instance()
    if store.get_type(group) is ObjectType.GROUP:
        names.update(n[: -len(".yaml")] for n in store.list(group) if n.endswith(".yaml"))
    return sorted(names)


#: Config groups whose names overrides choose (``agent=ppo``); unknown names are refused early.
GROUPS = ("agent", "env", "experiment", "dataset")


def parse_override(text: str):
    """One command-line override, parsed by Hydra.

    Raises:
        UserError: the override is malformed.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        (override,) = OverridesParser.create().parse_overrides([text])
    except OverrideParseException as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(
            f"malformed override {text!r} ({first}). Overrides look like key=value, "
            f"e.g. agent.lr=1e-3 or env=pendulum; quote values with spaces."
        ) from None
    return override


def compose(overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """The config that ``deeprl-train <overrides>`` runs, validated (no sweeps).

    Raises:
        UserError: a malformed override, an unknown name or key, a value of the wrong type or
            out of range.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    overrides = list(overrides)
    for text in overrides:
        override = parse_override(text)
        if override.key_or_group in GROUPS and not override.is_delete():
            options = config_options(override.key_or_group)
            if str(override.value()) not in options:
                raise UserError(
                    f"unknown {override.key_or_group} {override.value()!r}."
                    f"{close_matches(str(override.value()), options)} "
                    f"Available: {', '.join(options) or 'none'}"
                )

    def attempt(args: list[str]) -> DictConfig:
        if GlobalHydra.instance().is_initialized():  # inside a deeprl-train job
            return hydra_compose("config", args, return_hydra_config=return_hydra_config)
        with initialize_config_module("deeprl.configs", version_base=None):
            return hydra_compose("config", args, return_hydra_config=return_hydra_config)

    try:
        cfg = attempt(overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise _composition_error(exc, overrides, attempt) from None
    validate(cfg)
    return cfg


def _composition_error(exc: Exception, overrides: list[str], attempt) -> UserError:
    """One line for a failed composition."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException, ValidationError

    cause = exc.__cause__ or exc
    key = getattr(cause, "full_key", None)
    if isinstance(cause, ValidationError) and key:
        return UserError(f"bad value for {key}: {str(cause).strip().splitlines()[0]}")
    given = [o for o in overrides if o.split("=", 1)[0] == key]
    if isinstance(cause, OmegaConfBaseException) and given:
        # A key the composed config lacks. Added with '+', validate() says whether it exists
        # after all (an option of the env's backend that its config file does not set) or
        # raises naming the keys there are.
        try:
            validate(attempt([f"+{o}" if o in given else o for o in overrides]))
        except (HydraException, OmegaConfBaseException):
            pass  # not addable either: report Hydra's own error
        else:
            return UserError(f"{key} is not set by this config; add it with '+': +{given[0]}")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return UserError(" ".join(lines[:2]))
