"""A small Pendulum dataset for the offline agents' tests, registered as ``dataset=toy_pendulum``
on import (as a user's own dataset would be); ``python -m offline_toys <overrides>`` runs
``deeprl-train`` with it available.

The data is collected on every load from ``seed``: uniform random actions, or the stochastic
policy of a saved agent file (``policy=<path>``, e.g. a SAC trained by the test), with
Pendulum's 200-step time limit as truncation (never a terminal).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deeprl.agent import load_agent
from deeprl.buffers.replay import ReplayBuffer
from deeprl.config import option
from deeprl.datasets import OfflineDataset, register_dataset
from deeprl.envs.registry import make_env


@dataclass
class ToyPendulumConfig:
    steps: int = option(2000, ge=1)  # transitions, over ``envs`` copies
    envs: int = option(10, ge=1)
    seed: int = option(0, ge=0)
    policy: str | None = None  # an agent file acting stochastically; None: uniform random


def collect_pendulum(config: ToyPendulumConfig, device: torch.device) -> ReplayBuffer:
    """``config.steps`` transitions of Pendulum in a buffer with one column per env copy."""
    env = make_env("pendulum", config.envs, device=device)
    agent = load_agent(config.policy, device) if config.policy else None
    steps = max(1, config.steps // config.envs)
    buffer = ReplayBuffer(steps * config.envs, config.envs, device)
    low, high = env.spec.action_space.bounds(device)
    obs = env.reset(seed=config.seed)
    state = agent.initial_state(config.envs) if agent else None
    # A private random stream: loading (also mid-run, e.g. ReCOIL's expert set) leaves the
    # run's random state as it was, so resumed runs replay the same batches.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for _ in range(steps):
            if agent is None:
                action = low + torch.rand((config.envs, *low.shape), device=device) * (high - low)
            else:
                with torch.inference_mode():
                    action, _, state = agent.act(obs, state, None, deterministic=False)
            result = env.step(action)
            buffer.add({"obs": obs, "action": action, "reward": result.reward,
                        "next_obs": result.next_obs, "terminated": result.terminated,
                        "truncated": result.truncated})
            obs = result.obs
    return buffer


def load_toy_pendulum(config: ToyPendulumConfig, device: torch.device) -> OfflineDataset:
    env = make_env("pendulum", 1, device=device)
    return OfflineDataset(spec=env.spec, buffer=collect_pendulum(config, device),
                          env={"name": "pendulum"})


register_dataset("toy_pendulum", load_toy_pendulum, ToyPendulumConfig)


if __name__ == "__main__":
    from deeprl.train.cli import main

    main()
