"""Seconds per Drama update at the paper's Atari100k settings, and what a whole run costs.

``agent=drama``'s defaults are the paper's (Wang et al. 2025, Drama's ``train.yaml``): after 1032
random steps, one update per env step, each a world-model step on 16 x 128 replayed 64x64 RGB
frames and an actor-critic step on 1024 imagined trajectories (8 context frames, horizon 16).
This script builds that agent for Pong's shape (6 actions), fills its replay with ``--steps``
random frames and times ``--updates`` calls of ``Drama.train_step`` after ``--warmup`` untimed
ones, split into

    world model    replay sampling, world-model loss, backward, LaProp step
    imagination    context sampling, encoding the contexts, the 16-step rollout
    actor-critic   returns, actor and critic losses and steps

and prints the medians and the whole run's estimate: hours = the updates of 100k env steps x the
median update, and env steps/s = 100k / those seconds (the env steps, acting and evaluation are
left out: milliseconds per step beside an update).
``--set`` changes a ``DramaConfig`` field to time a reduced setting, e.g.
``--set batch_size=4 --set batch_length=64 --set imagine_batch=128``.

    OMP_NUM_THREADS=1 python benchmarks/drama_update.py --updates 2 --warmup 1
    # a GPU machine: mamba-ssm's kernels, then the pure-PyTorch Mamba-2 on the same device
    python benchmarks/drama_update.py --device cuda --updates 20 --set backend=cuda
    python benchmarks/drama_update.py --device cuda --updates 20 --set backend=torch
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable

import torch

ATARI100K_STEPS = 100_000
PONG_ACTIONS = 6


def timed(spent: dict[str, float], name: str, fn: Callable, cuda: bool) -> Callable:
    """``fn`` that adds its wall seconds to ``spent[name]`` (waiting for CUDA kernels)."""

    def wrapper(*args, **kwargs):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        if cuda:
            torch.cuda.synchronize()
        spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
        return out

    return wrapper


def parse_overrides(items: list[str], config_type: type) -> dict:
    """``["batch_size=4", ...]`` -> typed keyword arguments of ``config_type``."""
    fields = {f.name: f for f in dataclasses.fields(config_type)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields or fields[key].type not in ("int", "float", "str"):
            raise SystemExit(f"--set {item!r}: expected NAME=VALUE with NAME an int, float or "
                             f"str field of DramaConfig")
        out[key] = {"int": int, "float": float, "str": str}[fields[key].type](value)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=3, help="timed updates")
    p.add_argument("--warmup", type=int, default=1, help="untimed updates first")
    p.add_argument("--steps", type=int, default=2048, help="random frames in the replay")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = p.parse_args(argv)

    from deeprl.agents import Drama, DramaConfig
    from deeprl.envs.spec import Box, Discrete, EnvSpec

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = DramaConfig(**parse_overrides(args.set, DramaConfig))
    spec = EnvSpec("atari/Pong-shaped", Box.uniform((3, 64, 64), 0, 255, torch.uint8),
                   Discrete(PONG_ACTIONS))
    agent = Drama(spec, 1, device=args.device, config=config)
    buffer = agent.make_buffer()
    n = args.steps
    frames = torch.randint(0, 256, (n + 1, 1, 3, 64, 64), dtype=torch.uint8)
    buffer.extend({
        "obs": frames[:-1], "next_obs": frames[1:],
        "action": torch.randint(0, PONG_ACTIONS, (n, 1)),
        "reward": torch.randint(-1, 2, (n, 1)).float(),
        "terminated": torch.rand(n, 1) < 0.001, "truncated": torch.zeros(n, 1, dtype=torch.bool),
    })

    cuda = torch.device(args.device).type == "cuda"
    spent: dict[str, float] = {}
    agent.imagination_step = timed(spent, "behaviour", agent.imagination_step, cuda)
    agent.actor_critic.update = timed(spent, "actor_critic", agent.actor_critic.update, cuda)
    train_step = timed(spent, "update", agent.train_step, cuda)
    samples = []
    for i in range(args.warmup + args.updates):
        spent.clear()
        train_step(buffer)
        if i >= args.warmup:
            samples.append({
                "update": spent["update"],
                "world_model": spent["update"] - spent["behaviour"],
                "imagination": spent["behaviour"] - spent["actor_critic"],
                "actor_critic": spent["actor_critic"],
            })
            print(f"update {i - args.warmup + 1}: " + ", ".join(
                f"{k} {v:.2f} s" for k, v in samples[-1].items()), flush=True)
    median = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    updates = int(max(0, ATARI100K_STEPS - config.learning_starts) * config.updates_per_step)
    result = {
        "device": args.device, "threads": args.threads, "overrides": args.set,
        "parameters": {"world_model": sum(p.numel() for p in agent.world_model.parameters()),
                       "agent": sum(p.numel() for p in agent.parameters())},
        "median_s": median,
        "atari100k_updates": updates,
        "atari100k_hours": updates * median["update"] / 3600,
        "atari100k_env_steps_per_s": ATARI100K_STEPS / (updates * median["update"]),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
