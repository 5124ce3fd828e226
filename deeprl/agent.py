"""The interface every agent implements, and building agents from configs.

Division of labour: an agent owns its networks, optimizers, normalizers and losses; the
:class:`deeprl.train.trainer.Trainer` owns the loop, evaluation, logging and checkpoints. Data flows
one way: source (env collector or dataset) -> buffer -> ``Agent.update`` -> logger/evaluator.

Policy state. ``act`` is a pure function of its inputs and the agent's weights: a policy with
memory (an RSSM latent, a window of frames, a decision transformer's token history) receives its
state and returns the next one, so whoever steps an env (the collector, the evaluator, the video
recorder, :meth:`Agent.predict`) owns a copy sized for its env copies. A state is ``None``
(stateless agents), a tensor, or a (nested) dict of tensors, each with the env copies as leading
dimension; it goes into checkpoints as it is.

Each agent has a dataclass of hyperparameters (its defaults cite their source), the ``agent``
config group.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from deeprl.buffers.base import Buffer
from deeprl.config import make_config
from deeprl.envs.spec import EnvSpec, spec_from_dict, spec_to_dict
from deeprl.errors import UserError, close_matches

if TYPE_CHECKING:
    from deeprl.datasets import OfflineDataset

#: None, a tensor, or a (nested) dict of tensors with the env copies as leading dimension.
PolicyState = Any

AGENT_FILE_FORMAT = "deeprl-agent"
AGENT_FILE_VERSION = 1


def reset_policy_state(state: PolicyState, initial: PolicyState, is_first: torch.Tensor):
    """``state`` with the rows where ``is_first`` (N,) is True replaced by ``initial``'s rows."""
    if state is None:
        return None
    if isinstance(state, dict):
        return {k: reset_policy_state(v, initial[k], is_first) for k, v in state.items()}
    mask = is_first.view(-1, *([1] * (state.dim() - 1)))
    return torch.where(mask, initial, state)


class Agent(nn.Module, ABC):
    """Base class of all agents.

    Subclasses set ``Config`` (a dataclass), ``name`` (the config name) and ``source`` (where they
    learn from: ``"online"``, an env through a collector and ``make_buffer()``'s buffer, or
    ``"offline"``, a fixed dataset; progress counts env steps or gradient updates), and register
    optimizers in ``self.optimizers`` so that checkpoints capture them. Everything else that must
    survive a resume is a module parameter or buffer (``register_buffer``), so ``state_dict``
    holds it, or a Python-int progress counter named in ``counters`` (env steps, gradient steps):
    schedules read those on the host, with no wait on the device that a tensor counter would cost.
    """

    Config: ClassVar[type]
    name: ClassVar[str]
    source: ClassVar[str] = "online"
    #: attributes holding Python-int counters (0 at construction) that checkpoints save and
    #: restore.
    counters: ClassVar[tuple[str, ...]] = ()
    #: whether ``train.world_size > 1`` may train it (deeprl/train/distributed.py): each rank
    #: updates on its own slice of the data with gradients averaged over the ranks.
    data_parallel: ClassVar[bool] = False

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        device: torch.device | str = "cpu",
        total_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.total_steps = total_steps
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        for name in self.counters:
            setattr(self, name, 0)

    @classmethod
    def check_dataset(cls, config: Any, dataset: OfflineDataset) -> None:
        """Refuse hyperparameters (``config``, a ``Config``) that do not fit a loaded dataset,
        e.g. a decision transformer's context longer than every episode. ``deeprl-train`` calls
        it before Hydra claims the run directory, only for agents that override it (it loads
        the dataset once more for that). Nothing to check by default.

        Raises:
            UserError: naming the bad option and the fix.
        """

    # ---- acting -------------------------------------------------------------------------------
    def initial_state(self, num_envs: int) -> PolicyState:
        """The policy state of ``num_envs`` env copies before their first step (None: no memory)."""
        return None

    @abstractmethod
    def act(
        self,
        obs: torch.Tensor,
        state: PolicyState = None,
        is_first: torch.Tensor | None = None,
        deterministic: bool = False,
    ) -> tuple[torch.Tensor, dict, PolicyState]:
        """Choose actions for a batch of observations (N, *obs_shape).

        Args:
            obs: (N, *obs_shape) observations on the agent's device.
            state: the policy state from :meth:`initial_state` or the previous call.
            is_first: (N,) bool, True where ``obs`` starts an episode (the state of those rows
                must restart; None: no copy starts one).
            deterministic: the greedy/mean action instead of a sample.
        Returns:
            the actions (N,) or (N, *action_shape), a dict of per-env tensors to store with the
            transition (e.g. ``log_prob``, ``value``), and the next policy state. Called under
            ``torch.inference_mode``.
        """

    def observe(self, state: PolicyState, reward: torch.Tensor) -> PolicyState:
        """The policy state after the env answered :meth:`act`'s actions with ``reward`` (N,)
        (e.g. a decision transformer lowers its target return by it). Whoever steps an env
        calls it after each step, under ``torch.inference_mode``, through
        :func:`reward_observer`; unchanged by default."""
        return state

    def predict(
        self,
        obs: np.ndarray | torch.Tensor,
        state: PolicyState = None,
        episode_start: np.ndarray | torch.Tensor | bool | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray | torch.Tensor, PolicyState]:
        """Actions for one observation (*obs_shape) or a batch (N, *obs_shape), numpy or torch.

        As Stable-Baselines3's ``predict``: returns ``(action, state)`` with the action of the
        same kind as ``obs`` (numpy array or tensor) and batched like it; pass the returned state
        back in the next call (``None`` starts every copy fresh), with ``episode_start`` True for
        copies that begin a new episode. Runs without autograd.
        """
        as_numpy = not isinstance(obs, torch.Tensor)
        space = self.spec.observation_space
        x = torch.as_tensor(np.asarray(obs) if as_numpy else obs, device=self.device)
        single = tuple(x.shape) == tuple(space.shape)
        if single:
            x = x.unsqueeze(0)
        elif tuple(x.shape[1:]) != tuple(space.shape):
            raise UserError(
                f"{self.name}.predict got observations of shape {tuple(x.shape)}; {self.spec.id} "
                f"observations have shape {tuple(space.shape)} (or (N, ...) for a batch)"
            )
        x = x.to(space.dtype)
        n = x.shape[0]
        if state is None:
            state = self.initial_state(n)
            is_first = torch.ones(n, dtype=torch.bool, device=self.device)
        elif episode_start is None:
            is_first = torch.zeros(n, dtype=torch.bool, device=self.device)
        else:
            is_first = torch.as_tensor(episode_start, device=self.device).to(torch.bool)
            is_first = is_first.expand(n) if is_first.dim() == 0 else is_first
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                action, _, state = self.act(x, state, is_first, deterministic=deterministic)
        finally:
            self.train(was_training)
        if single:
            action = action[0]
        return (action.cpu().numpy() if as_numpy else action), state

    @abstractmethod
    def update(self, buffer: Buffer, step: int) -> dict[str, float | torch.Tensor] | None:
        """Called after each advance of the data source (``step``: env steps so far for online
        agents, after the batched env step was added to ``buffer``; gradient updates so far for
        offline agents, with ``buffer`` the dataset). Trains when the agent's schedule says so
        and returns scalar metrics, else None. Metrics may be 0-dim tensors: the trainer reads
        them only when it logs, so an update that runs every env step never waits on the
        device."""

    def make_buffer(self) -> Buffer:
        """The buffer the trainer fills with this agent's transitions (online agents)."""
        raise TypeError(f"{type(self).__name__} learns from a dataset and has no online buffer")

    def model_size(self) -> str:
        """The model's size for the run's start line: its parameter count by default."""
        return f"{sum(p.numel() for p in self.parameters()):,} parameters"

    def eval_media(self, buffer: Buffer) -> dict[str, torch.Tensor]:
        """Videos to show at every evaluation, {name: uint8 (T, H, W, C) with C = 1 or 3}
        (e.g. a world model's open-loop predictions on ``buffer``, the trainer's buffer or
        dataset). The trainer writes each to ``videos/<name>_<step>.mp4`` and TensorBoard's
        ``eval/<name>``. None by default."""
        return {}

    def explain(self, env: Any, seed: int, out_dir: Path) -> list[Path]:
        """Write interpretability outputs into ``out_dir`` at the end of a run (e.g. a tree
        policy's SHAP attributions on states of ``env``, the evaluation env, reset with
        ``seed``) and return their paths. None by default."""
        return []

    # ---- checkpoints and files ----------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """Weights, normalizers, optimizer states and counters, as tensors and plain containers."""
        return {
            "modules": self.state_dict(),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "counters": {name: getattr(self, name) for name in self.counters},
        }

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["modules"])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        for name in self.counters:
            setattr(self, name, int(state["counters"][name]))

    def save(self, path: str | Path, env: dict | None = None) -> Path:
        """Write one self-contained safetensors file: weights, counters, config and env spec.

        Args:
            path: the file to write (atomically).
            env: the ``env`` config the agent was trained on, so ``deeprl-eval`` can rebuild it.
        Load it with :func:`load_agent` (no pickle involved).
        """
        from safetensors.torch import save as to_bytes

        from deeprl.io import atomic_write

        header = {
            "format": AGENT_FILE_FORMAT,
            "version": AGENT_FILE_VERSION,
            "agent": self.name,
            "config": _plain(self.config),
            "spec": spec_to_dict(self.spec),
            "num_envs": self.num_envs,
            "total_steps": self.total_steps,
            "counters": {name: getattr(self, name) for name in self.counters},
            "env": env,
        }
        weights = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        path = Path(path)
        with atomic_write(path) as f:
            f.write(to_bytes(weights, metadata={"deeprl": json.dumps(header)}))
        return path


def reward_observer(policy: Any) -> Callable[[PolicyState, torch.Tensor], PolicyState] | None:
    """``policy.observe`` when the policy overrides :meth:`Agent.observe`, else None. Whoever
    steps an env decides once and skips the per-step call for policies that only act (a plain
    module with ``initial_state`` and ``act`` included)."""
    observe = getattr(type(policy), "observe", None)
    return None if observe is None or observe is Agent.observe else policy.observe


def _plain(config: Any) -> Any:
    """A config dataclass as JSON-ready dicts and lists."""
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(config)))


def read_agent_header(path: str | Path) -> dict[str, Any]:
    """The metadata of an agent file written by :meth:`Agent.save`.

    Raises:
        UserError: the file is missing or is not a deeprl agent file.
    """
    from safetensors import SafetensorError, safe_open

    from deeprl.io import check_format

    path = Path(path)
    if not path.is_file():
        raise UserError(f"agent file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(
            f"{path} is not a deeprl agent file (not safetensors: {str(exc)[:120]})"
        ) from None
    try:
        header = json.loads(metadata["deeprl"])
    except (KeyError, ValueError):
        raise UserError(f"{path} is a safetensors file but not a deeprl agent file") from None
    check_format(header, path, AGENT_FILE_FORMAT, AGENT_FILE_VERSION, "deeprl agent file")
    return header


def load_agent(path: str | Path, device: torch.device | str = "cpu") -> Agent:
    """Rebuild the agent saved by :meth:`Agent.save`: same class, config, spec, weights and
    counters, so it acts exactly as it did (e.g. a SAC past ``learning_starts`` acts with its
    policy, not uniformly at random)."""
    from safetensors.torch import load_file

    header = read_agent_header(path)
    spec = spec_from_dict(header["spec"])
    agent = make_agent(
        header["agent"], spec, header["num_envs"], device, header["config"],
        total_steps=header["total_steps"],
    )
    agent.load_state_dict(load_file(str(path), device=str(torch.device(device))))
    for name in agent.counters:
        setattr(agent, name, int(header["counters"][name]))
    agent.eval()
    return agent


_REGISTRY: dict[str, type[Agent]] = {}


def register_agent(cls: type[Agent]) -> type[Agent]:
    """Make ``cls`` the agent ``agent=<cls.name>``: :func:`make_agent` builds it and its
    ``Config`` becomes the Hydra config ``agent/<cls.name>``, defaults and ranges included.
    Returns ``cls``, so it also works as a class decorator::

        @register_agent
        class MyAgent(Agent):
            Config = MyConfig
            name = "mine"
    """
    import dataclasses

    from deeprl.config import store_group_config

    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise TypeError(f"register_agent takes an Agent subclass, not {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} needs a config name: set name = '<name>'")
    if not dataclasses.is_dataclass(getattr(cls, "Config", None)):
        raise TypeError(f"{cls.__qualname__}.Config must be a dataclass of its hyperparameters")
    previous = _REGISTRY.get(name)
    # The same class again (a re-imported module) is fine; another class must pick a new name.
    if previous is not None and (previous.__module__, previous.__qualname__) != (
        cls.__module__, cls.__qualname__
    ):
        raise ValueError(f"agent name {name!r} is taken by {previous.__qualname__}")
    store_group_config("agent", name, cls.Config)
    _REGISTRY[name] = cls
    return cls


def agent_registry() -> dict[str, type[Agent]]:
    """Agent classes by config name: the built-ins and those given to :func:`register_agent`."""
    import deeprl.agents  # noqa: F401 (registers the built-ins; imported late to keep import light)

    return dict(_REGISTRY)


def make_agent(
    name: str,
    spec: EnvSpec,
    num_envs: int,
    device: torch.device | str,
    options: dict[str, Any],
    total_steps: int | None = None,
) -> Agent:
    """Build agent ``name`` from a config dict (the ``agent`` group without its ``name`` key).

    Every agent class takes ``(spec, num_envs, device, config, total_steps=None)``; the budget
    lets schedules (learning-rate annealing, epsilon decay) span the run.
    """
    agents = agent_registry()
    if name not in agents:
        raise UserError(f"unknown agent {name!r}.{close_matches(name, agents)}")
    cls = agents[name]
    config = make_config(cls.Config, options)
    return cls(spec, num_envs, device, config, total_steps=total_steps)
