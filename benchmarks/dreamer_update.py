"""DreamerV3 update steps/s: deeprl's agent=dreamer against sheeprl's DreamerV3, in one run.

Both build their models from their own size presets, set to the same widths (deeprl's
``agent.size`` preset: GRU width, prior/posterior hidden width, CNN depth, MLP units and layers,
32 x 32 latents; the actor and critic get the same units and layers on both sides), and train on
the same random batch shape (``--batch`` x ``--length`` steps of 64x64 RGB frames and
``--actions`` discrete actions, or ``--obs vector`` observations). One "update" is what each
library does per replayed batch: a world-model step, imagination of 15 steps from every
posterior state, an actor and a critic step and the slow critic's EMA. Batches are made once
before timing, so replay sampling is not timed on either side. Each side is timed in its own
process (sheeprl through its venv's python, ``--sheeprl-python``), after ``--warmup`` untimed
updates; the figures are the median over ``--steps`` timed updates, split into

    world model    encoder, RSSM observe pass, decoder and heads, losses, backward, Adam step
    imagination    the rollout of the prior with the actor, rewards, continues (and sheeprl's
                   critic values and lambda-returns, which its ``imagine`` computes)
    actor-critic   the rest: returns, normalization, actor and critic losses and steps

deeprl's split wraps ``Dreamer.imagination_step`` and ``ImaginationActorCritic.update``;
sheeprl's wraps ``world_model_learning``, ``behaviour_learning`` and ``imagine`` of
``sheeprl.algos.dreamer_v3.dreamer_v3`` (the functions its ``train`` calls).

    python benchmarks/dreamer_update.py --size S --steps 5 --threads 1
    python benchmarks/dreamer_update.py --size XS --obs vector --steps 20
    python benchmarks/dreamer_update.py --device cuda --steps 50   # a GPU machine
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from collections.abc import Callable

import torch

PARTS = ("world_model", "imagination", "actor_critic")
IMAGE_SHAPE = (3, 64, 64)


class Clock:
    """Seconds spent inside wrapped callables, per name, for the current update."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.spent: dict[str, float] = {}

    def now(self) -> float:
        if self.cuda:  # kernels run asynchronously: wait for them before reading the clock
            torch.cuda.synchronize()
        return time.perf_counter()

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = self.now()
            out = fn(*args, **kwargs)
            self.spent[name] = self.spent.get(name, 0.0) + self.now() - start
            return out

        return timed


def summarize(samples: list[dict[str, float]]) -> dict[str, float]:
    """Median of each timed field over the updates."""
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


# ---- deeprl ----
def run_deeprl(args: argparse.Namespace) -> dict:
    from deeprl.agents import Dreamer, DreamerConfig
    from deeprl.agents.dreamer import SIZES
    from deeprl.envs.spec import Box, Discrete, EnvSpec
    from deeprl.imagination import ImaginationConfig

    torch.manual_seed(0)
    preset = SIZES[args.size]
    units, layers = preset["units"], preset["layers"]
    obs_shape = IMAGE_SHAPE if args.obs == "image" else (args.obs_dim,)
    observation_space = (Box.uniform(obs_shape, 0, 255, torch.uint8) if args.obs == "image"
                         else Box.uniform(obs_shape, -10, 10))
    spec = EnvSpec("random-batch", observation_space, Discrete(args.actions))
    config = DreamerConfig(
        size=args.size, batch_size=args.batch, batch_length=args.length, learning_starts=0,
        buffer_size=4 * args.length,
        imagination=ImaginationConfig(actor_units=units, actor_layers=layers,
                                      critic_units=units, critic_layers=layers),
    )
    agent = Dreamer(spec, 1, device=args.device, config=config)
    buffer = agent.make_buffer()
    steps = 3 * args.length
    obs = (torch.randint(0, 256, (steps + 1, 1, *obs_shape), dtype=torch.uint8)
           if args.obs == "image" else torch.randn(steps + 1, 1, *obs_shape))
    buffer.extend({
        "obs": obs[:-1], "next_obs": obs[1:],
        "action": torch.randint(0, args.actions, (steps, 1)),
        "reward": torch.randn(steps, 1),
        "terminated": torch.rand(steps, 1) < 0.01, "truncated": torch.zeros(steps, 1, dtype=bool),
    })
    batch = buffer.sample_sequences(args.batch, args.length, allow_cross_episode=True)

    clock = Clock(args.device)
    agent.imagination_step = clock.wrap("behaviour", agent.imagination_step)
    agent.actor_critic.update = clock.wrap("actor_critic", agent.actor_critic.update)
    train_step = clock.wrap("update", agent.train_step)
    samples = []
    for i in range(args.warmup + args.steps):
        clock.spent = {}
        train_step(batch)
        if i >= args.warmup:
            spent = clock.spent
            samples.append({
                "update": spent["update"],
                "world_model": spent["update"] - spent["behaviour"],
                "imagination": spent["behaviour"] - spent["actor_critic"],
                "actor_critic": spent["actor_critic"],
            })
    world_model = [agent.encoder, agent.rssm, agent.decoder, agent.reward_head, agent.cont_head]
    return {
        "library": "deeprl",
        "params": {
            "world_model": sum(p.numel() for m in world_model for p in m.parameters()),
            "actor": sum(p.numel() for p in agent.actor_critic.actor.parameters()),
            "critic": sum(p.numel() for p in agent.actor_critic.critic.parameters()),
        },
        **summarize(samples),
    }


# ---- sheeprl (runs in its own venv: no deeprl import here) ----
def run_sheeprl(args: argparse.Namespace, preset: dict[str, int]) -> dict:
    import gymnasium
    import hydra
    import numpy as np
    from lightning.fabric import Fabric
    from omegaconf import OmegaConf
    from sheeprl.algos.dreamer_v3 import dreamer_v3
    from sheeprl.algos.dreamer_v3.agent import build_agent
    from sheeprl.algos.dreamer_v3.utils import Moments
    from sheeprl.utils.utils import dotdict

    torch.manual_seed(0)
    units, layers = preset["units"], preset["layers"]
    vector = args.obs == "vector"
    overrides = [
        "exp=dreamer_v3", f"algo=dreamer_v3_{args.size}", "env=dummy",
        f"algo.per_rank_batch_size={args.batch}", f"algo.per_rank_sequence_length={args.length}",
        f"algo.dense_units={units}", f"algo.mlp_layers={layers}",
        f"algo.world_model.encoder.cnn_channels_multiplier={preset['depth']}",
        f"algo.world_model.recurrent_model.recurrent_state_size={preset['deter']}",
        f"algo.world_model.transition_model.hidden_size={preset['hidden']}",
        f"algo.world_model.representation_model.hidden_size={preset['hidden']}",
        f"fabric.accelerator={'cuda' if args.device.startswith('cuda') else 'cpu'}",
        *[f"algo.{keys}.{part}={value}" for part in ("encoder", "decoder")
          for keys, value in (("cnn_keys", "[]" if vector else "[rgb]"),
                              ("mlp_keys", "[state]" if vector else "[]"))],
    ]
    with hydra.initialize_config_module("sheeprl.configs", version_base="1.3"):
        # resolved into sheeprl's dotdict, as its CLI does before running an algorithm
        cfg = dotdict(OmegaConf.to_container(hydra.compose("config", overrides=overrides),
                                             resolve=True))
    fabric = Fabric(accelerator=cfg.fabric.accelerator, devices=1, precision="32-true")
    key = "state" if vector else "rgb"
    shape = (args.obs_dim,) if vector else IMAGE_SHAPE
    space = (gymnasium.spaces.Box(-10, 10, shape, np.float32) if vector
             else gymnasium.spaces.Box(0, 255, shape, np.uint8))
    obs_space = gymnasium.spaces.Dict({key: space})
    actions_dim = (args.actions,)
    world_model, actor, critic, target_critic, _ = build_agent(fabric, actions_dim, False, cfg,
                                                               obs_space)

    def optimizer(part, module):
        return hydra.utils.instantiate(part.optimizer, params=module.parameters(), _convert_="all")

    optimizers = fabric.setup_optimizers(optimizer(cfg.algo.world_model, world_model),
                                         optimizer(cfg.algo.actor, actor),
                                         optimizer(cfg.algo.critic, critic))
    moments = Moments(cfg.algo.actor.moments.decay, cfg.algo.actor.moments.max,
                      cfg.algo.actor.moments.percentile.low, cfg.algo.actor.moments.percentile.high)
    # sheeprl's batches are (L, B, ...) floats, as its sample_batches hands them to train.
    length, size, device = args.length, args.batch, fabric.device
    obs = (torch.randn(length, size, *shape) if vector
           else torch.randint(0, 256, (length, size, *shape)).float())
    batch = {
        key: obs,
        "actions": torch.nn.functional.one_hot(torch.randint(0, args.actions, (length, size)),
                                               args.actions).float(),
        "rewards": torch.randn(length, size, 1),
        "terminated": (torch.rand(length, size, 1) < 0.01).float(),
        "truncated": torch.zeros(length, size, 1),
        "is_first": torch.zeros(length, size, 1),
    }
    batch = {k: v.to(device) for k, v in batch.items()}

    clock = Clock(args.device)
    for name in ("world_model_learning", "behaviour_learning", "imagine"):
        setattr(dreamer_v3, name, clock.wrap(name, getattr(dreamer_v3, name)))

    def update() -> None:
        # The slow critic's EMA, as sheeprl's main loop does before every train call.
        tau = cfg.algo.critic.tau
        for param, target in zip(critic.module.parameters(), target_critic.parameters(),
                                 strict=True):
            target.data.copy_(tau * param.data + (1 - tau) * target.data)
        dreamer_v3.train(fabric, world_model, actor, critic, target_critic, *optimizers,
                         dict(batch), None, cfg, False, actions_dim, moments)

    timed_update = clock.wrap("update", update)
    samples = []
    for i in range(args.warmup + args.steps):
        clock.spent = {}
        timed_update()
        if i >= args.warmup:
            spent = clock.spent
            samples.append({
                "update": spent["update"],
                "world_model": spent["world_model_learning"],
                "imagination": spent["imagine"],
                "actor_critic": spent["update"] - spent["world_model_learning"] - spent["imagine"],
            })
    import sheeprl

    return {
        "library": f"sheeprl {sheeprl.__version__}",
        "params": {
            "world_model": sum(p.numel() for p in world_model.parameters()),
            "actor": sum(p.numel() for p in actor.parameters()),
            "critic": sum(p.numel() for p in critic.parameters()),
        },
        **summarize(samples),
    }


def sheeprl_subprocess(args: argparse.Namespace) -> dict | str:
    """sheeprl's figures from its own venv, or why there are none."""
    from deeprl.agents.dreamer import SIZES

    worker = {**vars(args), "preset": SIZES[args.size]}
    try:
        proc = subprocess.run([args.sheeprl_python, __file__, "--worker", json.dumps(worker)],
                              capture_output=True, text=True, timeout=args.timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sheeprl did not run: {exc}"
    if proc.returncode != 0:
        return f"sheeprl failed: {proc.stderr.strip().splitlines()[-1:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(ours: dict, peer: dict | str, args: argparse.Namespace) -> None:
    rows = [ours] + ([peer] if isinstance(peer, dict) else [])
    print(f"size {args.size}, batch {args.batch} x {args.length}, {args.obs} obs, "
          f"{args.actions} discrete actions, {args.threads} thread(s), {args.device}, "
          f"median of {args.steps} updates after {args.warmup} warm-up\n")
    print("| | " + " | ".join(r["library"] for r in rows)
          + (" | ratio deeprl/sheeprl |" if len(rows) == 2 else " |"))
    print("| --- " * (len(rows) + 1 + (len(rows) == 2)) + "|")

    def line(label: str, values: list[float], fmt: str, ratio: float | None) -> None:
        cells = " | ".join(format(v, fmt) for v in values)
        print(f"| {label} | {cells} |" + (f" {ratio:.2f}x |" if ratio is not None
                                            else " |" if two else ""))

    two = len(rows) == 2
    for key, label in (("update", "full updates/s"), ("world_model", "world-model updates/s")):
        rates = [1 / r[key] for r in rows]
        line(label, rates, ".3g", rates[0] / rates[1] if two else None)
    for key in PARTS:
        shares = [100 * r[key] / r["update"] for r in rows]
        line(f"{key.replace('_', ' ')} share of an update, %", shares, ".0f", None)
    for key in ("world_model", "actor", "critic"):
        counts = [r["params"][key] / 1e6 for r in rows]
        line(f"{key.replace('_', ' ')} parameters, M", counts, ".2f", None)
    if not two:
        print(f"\n{peer}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="S", choices=("XS", "S", "M", "L", "XL"))
    parser.add_argument("--steps", type=int, default=5, help="timed updates per library")
    parser.add_argument("--warmup", type=int, default=1, help="untimed updates first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--obs", default="image", choices=("image", "vector"))
    parser.add_argument("--obs-dim", type=int, default=17, help="--obs vector: its size")
    parser.add_argument("--actions", type=int, default=6, help="discrete actions (Pong: 6)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sheeprl-python", default="/work/venvs/sheeprl/bin/python",
                        help="python of a venv with sheeprl; 'none' skips the peer")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for the peer")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # sheeprl's side, as JSON
    args = parser.parse_args()
    if args.worker:
        worker = json.loads(args.worker)
        torch.set_num_threads(worker["threads"])
        print(json.dumps(run_sheeprl(argparse.Namespace(**worker), worker["preset"])))
        return
    torch.set_num_threads(args.threads)
    ours = run_deeprl(args)
    peer = ("skipped (--sheeprl-python none)" if args.sheeprl_python == "none"
            else sheeprl_subprocess(args))
    report(ours, peer, args)


if __name__ == "__main__":
    main()
