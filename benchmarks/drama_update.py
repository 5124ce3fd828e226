"""Seconds per Drama update at the paper's Atari100k settings, and what a whole run costs.

``agent=drama``'s defaults are the paper's (Wang et al. 2025, Drama's ``train.yaml``): after 1032
random steps, one update per env step, each a world-model step on 16 x 128 replayed 64x64 RGB
frames and an actor-critic step on 1024 imagined trajectories (8 context frames, horizon 16).
This script composes the config ``deeprl-train agent=drama env=atari100k env.game=Pong
<overrides>`` runs, builds the env and the agent from it as the trainer does, fills the replay
with ``--steps`` random frames and times ``--updates`` calls of ``Drama.train_step`` after
``--warmup`` untimed ones (``Clock`` of ``dreamer_update.py``), split into

    world model    replay sampling, world-model loss, backward, LaProp step
    imagination    context sampling, encoding the contexts, the 16-step rollout
    actor-critic   returns, actor and critic losses and steps

and prints the medians and the whole run's estimate: hours = the updates of 100k env steps x the
median update, and env steps/s = 100k / those seconds (the env steps, acting and evaluation are
left out: milliseconds per step beside an update).
Trailing arguments are ``deeprl-train`` overrides, checked as the CLI checks them, to time a
reduced setting: ``agent.batch_size=4 agent.batch_length=64 agent.imagine_batch=128``.

    OMP_NUM_THREADS=1 python benchmarks/drama_update.py --updates 2 --warmup 1
    # a GPU machine: mamba-ssm's kernels, then the pure-PyTorch Mamba-2 on the same device
    python benchmarks/drama_update.py --device cuda --updates 20 agent.backend=cuda
    python benchmarks/drama_update.py --device cuda --updates 20 agent.backend=torch
"""

from __future__ import annotations

import argparse
import json

import torch
from dreamer_update import Clock, summarize

ATARI100K_STEPS = 100_000


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=3, help="timed updates")
    p.add_argument("--warmup", type=int, default=1, help="untimed updates first")
    p.add_argument("--steps", type=int, default=2048, help="random frames in the replay")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    p.add_argument("overrides", nargs="*", help="deeprl-train overrides, e.g. agent.batch_size=4")
    args = p.parse_args(argv)

    from omegaconf import OmegaConf

    from deeprl.agent import make_agent
    from deeprl.config import compose
    from deeprl.errors import UserError
    from deeprl.train.trainer import build_env

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    try:
        cfg = compose(["agent=drama", "env=atari100k", "env.game=Pong", *args.overrides])
        env = build_env(cfg.env, 1, device)
        options = OmegaConf.to_container(cfg.agent, resolve=True)
        agent = make_agent(options.pop("name"), env.spec, 1, device, options)
    except UserError as exc:  # a bad override: one line, as deeprl-train prints it
        raise SystemExit(f"drama_update.py: {exc}") from None
    env.close()
    buffer = agent.make_buffer()
    n, actions = args.steps, env.spec.action_space.n
    frames = torch.randint(0, 256, (n + 1, 1, *env.spec.observation_space.shape),
                           dtype=torch.uint8)
    buffer.extend({
        "obs": frames[:-1], "next_obs": frames[1:],
        "action": torch.randint(0, actions, (n, 1)),
        "reward": torch.randint(-1, 2, (n, 1)).float(),
        "terminated": torch.rand(n, 1) < 0.001, "truncated": torch.zeros(n, 1, dtype=torch.bool),
    })

    clock = Clock(args.device)
    agent.imagination_step = clock.wrap("behaviour", agent.imagination_step)
    agent.actor_critic.update = clock.wrap("actor_critic", agent.actor_critic.update)
    train_step = clock.wrap("update", agent.train_step)
    samples = []
    for i in range(args.warmup + args.updates):
        clock.spent = {}
        train_step(buffer)
        if i >= args.warmup:
            spent = clock.spent
            samples.append({
                "update": spent["update"],
                "world_model": spent["update"] - spent["behaviour"],
                "imagination": spent["behaviour"] - spent["actor_critic"],
                "actor_critic": spent["actor_critic"],
            })
            print(f"update {i - args.warmup + 1}: " + ", ".join(
                f"{k} {v:.2f} s" for k, v in samples[-1].items()), flush=True)
    median = summarize(samples)
    config = agent.config
    updates = int(max(0, ATARI100K_STEPS - config.learning_starts) * config.updates_per_step)
    result = {
        "device": args.device, "threads": args.threads, "overrides": args.overrides,
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
