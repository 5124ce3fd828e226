"""The interface every agent implements, and building agents from configs.

Division of labour: an agent owns its networks, optimizers, normalizers and losses; the
:class:`deeprl.train.trainer.Trainer` owns the loop, evaluation, logging and checkpoints. Data flows
one way: env -> collector (``Agent.act``) -> buffer (``Buffer.add``) -> ``Agent.update``.

Each agent has a dataclass of hyperparameters (its defaults cite their source) whose fields are the
keys of ``configs/agent/<name>.yaml``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from deeprl.buffers.base import Buffer
from deeprl.config import make_config
from deeprl.envs.spec import EnvSpec
from deeprl.errors import UserError, close_matches


class Agent(nn.Module, ABC):
    """Base class of all agents.

    Subclasses set ``Config`` (a dataclass) and register optimizers in ``self.optimizers`` so that
    checkpoints capture them. Everything else that must survive a resume is a module parameter or
    buffer (``register_buffer``), so ``state_dict`` holds it, or a Python-int progress counter
    named in ``counters`` (env steps, gradient steps): schedules read those on the host, with no
    wait on the device that a tensor counter would cost.
    """

    Config: ClassVar[type]
    name: ClassVar[str]
    #: attributes holding Python-int counters (0 at construction) that checkpoints save and
    #: restore.
    counters: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: EnvSpec, num_envs: int, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.spec = spec
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        for name in self.counters:
            setattr(self, name, 0)

    @abstractmethod
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, dict]:
        """Choose actions for a batch of observations (N, *obs_shape).

        Returns the actions (N,) or (N, *action_shape) and a dict of per-env tensors to store
        with the transition (e.g. ``log_prob``, ``value``). Called under ``torch.inference_mode``.
        """

    @abstractmethod
    def make_buffer(self) -> Buffer:
        """The buffer the trainer fills with this agent's transitions."""

    @abstractmethod
    def update(
        self, buffer: Buffer, step: int
    ) -> dict[str, float | torch.Tensor] | None:
        """Called after each batched env step is added to ``buffer`` (``step`` = env steps so
        far). Trains when the agent's schedule says so and returns scalar metrics, else None.
        Metrics may be 0-dim tensors: the trainer reads them only when it logs, so an update
        that runs every env step never waits on the device."""

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


def agent_registry() -> dict[str, type[Agent]]:
    """Agent classes by config name (imported lazily so ``import deeprl`` stays light)."""
    from deeprl.agents import AGENTS

    return AGENTS


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
