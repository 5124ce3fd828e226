"""The Python API: the command line's names and keys, from Python.

::

    import deeprl

    run = deeprl.learn(agent="sac", env="pendulum", overrides=["train.total_steps=20000"])
    run.agent.save("sac_pendulum.safetensors")
    agent = deeprl.load_agent("sac_pendulum.safetensors")
    action, state = agent.predict(obs)          # numpy or torch, one observation or a batch

``overrides`` are exactly ``deeprl-train``'s (``agent.lr=1e-3``, ``train.total_steps=...``,
``env.num_envs=8``), as a list of strings or a dict, and go through the same checks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from deeprl.agent import Agent, load_agent, make_agent

__all__ = ["build_agent", "compose", "learn", "load_agent"]


def _override_strings(overrides: Sequence[str] | Mapping[str, Any]) -> list[str]:
    if isinstance(overrides, Mapping):
        return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]
    return list(overrides)


def compose(
    agent: str = "ppo",
    env: str = "cartpole",
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> DictConfig:
    """The config ``deeprl-train agent=<agent> env=<env> <overrides>`` would run, validated.

    Raises:
        UserError: an unknown name or key, or a value of the wrong type or out of range.
    """
    from deeprl.config import compose as compose_overrides

    return compose_overrides([f"agent={agent}", f"env={env}", *_override_strings(overrides)])


def default_run_dir(cfg: DictConfig) -> Path:
    """``runs/<env>-<agent>/seed<S>-<time>``, as ``deeprl-train`` names its runs."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.env.name}-{cfg.agent.name}" / f"seed{cfg.seed}-{stamp}"


def learn(
    agent: str = "ppo",
    env: str = "cartpole",
    overrides: Sequence[str] | Mapping[str, Any] = (),
    run_dir: str | Path | None = None,
):
    """Train as ``deeprl-train`` does (evaluation, logging, checkpoints, ``agent.safetensors``)
    and return the :class:`~deeprl.train.trainer.Trainer`: ``.agent`` the trained agent,
    ``.run_dir`` its outputs, ``.last_eval`` the final evaluation.

    A ``run_dir`` that holds a checkpoint of the same run continues it.
    """
    from deeprl.train.trainer import Trainer

    cfg = compose(agent, env, overrides)
    trainer = Trainer(cfg, Path(run_dir) if run_dir is not None else default_run_dir(cfg))
    trainer.train()
    return trainer


def build_agent(
    agent: str = "ppo",
    env: str = "cartpole",
    overrides: Sequence[str] | Mapping[str, Any] = (),
    device: torch.device | str = "cpu",
) -> Agent:
    """A fresh agent for ``env`` with the config ``deeprl-train`` would use, untrained.

    Online agents only (an offline agent's spaces come from its dataset: use :func:`train`).
    """
    from deeprl.train.trainer import build_env

    cfg = compose(agent, env, overrides)
    options = OmegaConf.to_container(cfg.agent, resolve=True)
    name = options.pop("name")
    num_envs = cfg.env.get("num_envs") or options.get("num_envs") or 1
    options["num_envs"] = num_envs
    probe = build_env(cfg.env, 1, torch.device(device))
    spec = probe.spec
    probe.close()
    return make_agent(name, spec, num_envs, device, options, total_steps=int(cfg.train.total_steps))
