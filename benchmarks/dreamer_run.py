"""DreamerV3 whole runs on CartPole: env steps/s of deeprl-train agent=dreamer against sheeprl's
dreamer_v3 at the same model size, in one run.

Each library trains in its own process, one after the other (sheeprl through its venv's python,
``--sheeprl-python``), through its own command line called in that process: deeprl's
``deeprl-train agent=dreamer env=gym env.id=CartPole-v1 ...`` and sheeprl's
``sheeprl exp=dreamer_v3 algo=dreamer_v3_XS env=gym env.id=CartPole-v1 ...``. Both step the
same gymnasium CartPole-v1 (deeprl's env=gym, not its torch-native cartpole), one copy, through
gymnasium's SyncVectorEnv with same-step autoreset, on the CPU with ``--threads`` torch threads
(``torch.set_num_threads`` and OMP_NUM_THREADS/MKL_NUM_THREADS in the process's environment).

Matched: ``--steps`` env steps, the first ``--prefill`` of them with uniform random actions
(deeprl's ``agent.learning_starts``, sheeprl's ``algo.learning_starts``), then ``--train-ratio``
replayed steps per env step in updates of ``--batch`` x ``--length`` steps (sheeprl's
``algo.replay_ratio`` is updates per env step: train ratio / (batch * length)); widths of
deeprl's ``agent.size`` preset on both sides (GRU width, prior/posterior hidden width, MLP units
and layers, 32 x 32 latents), actor and critic ``--ac-units`` x ``--ac-layers`` on both sides.
The defaults are those of configs/tuned/dreamer_cartpole.yaml (size XS, actor and critic
2 x 512, 16 x 32 windows, train ratio 32, 1024 random steps). Off or least on both sides:
evaluation (deeprl cannot skip its final one: one episode of at most ``--eval-steps`` steps;
sheeprl ``algo.run_test=False``), checkpoints (deeprl writes its final one, sheeprl none), metric
logs (deeprl ``train.log_every=0``, it still writes TensorBoard's steps/s every 0.5 s; sheeprl
``metric.log_level=0``), videos, sheeprl's memory-mapped buffer and its model registry.

Figures: updates done (calls of each library's update: deeprl's ``Dreamer.train_step``,
sheeprl's ``dreamer_v3.train``), parameters (counted at the first update), the process's wall
time from start to exit (imports, set-up, final evaluation and checkpoint included) and the
env steps/s after prefill: (steps - prefill) / the time between the prefill-th and the last
env step, both read by a clock on gymnasium's ``CartPoleEnv.step`` in each process (so the
updates owed after the last step are not in it, on either side).

Remaining differences: deeprl's Adams are torch's default (one for the world model, one with
actor and critic groups), sheeprl's are fused (one each for world model, actor and critic);
sheeprl samples all the batches an env step owes at once, deeprl one before each update;
sheeprl's ratio counts env steps from step prefill - 1, deeprl's from step prefill (the table
shows the updates each did); each library's own replay buffer, acting path and initialization;
deeprl's end of run (one-step evaluation, checkpoint with the buffer, agent file) and both
libraries' start-up are only in the process wall and CPU time. The CPU time (user + system of
the process) is the steadier figure on a machine with other work on it.

    python benchmarks/dreamer_run.py                       # 3000 steps, a quiet machine
    python benchmarks/dreamer_run.py --steps 600 --prefill 256
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SCRIPT = str(Path(__file__).resolve())


# ---- the worker: one library's run in this process, with clocks around it ----
def install_clocks(args: argparse.Namespace, found: dict) -> None:
    """Times of the prefill-th and the last env step, on gymnasium's CartPole itself."""
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    step = CartPoleEnv.step
    marks = {args.prefill: "prefill_time", args.steps: "end_time"}

    def timed_step(env, action):
        out = step(env, action)
        found["env_steps"] += 1
        if found["env_steps"] in marks:
            found[marks[found["env_steps"]]] = time.perf_counter()
        return out

    CartPoleEnv.step = timed_step


def counted(fn, found: dict, parts):
    """``fn`` counting its calls; the first one records the parameter counts of ``parts(args)``
    (world model, actor, critic: an iterable of parameters each)."""

    def wrapper(*fn_args, **kwargs):
        if not found["updates"]:
            found["params"] = [sum(p.numel() for p in params) / 1e6 for params in parts(fn_args)]
        found["updates"] += 1
        return fn(*fn_args, **kwargs)

    return wrapper


def deeprl_overrides(args: argparse.Namespace, run_dir: str) -> list[str]:
    return [
        "agent=dreamer", "env=gym", "env.id=CartPole-v1", "device=cpu", f"seed={args.seed}",
        f"agent.size={args.size}", f"agent.batch_size={args.batch}",
        f"agent.batch_length={args.length}", f"agent.train_ratio={args.train_ratio}",
        f"agent.learning_starts={args.prefill}",
        *[f"agent.imagination.{part}_{key}={value}" for part in ("actor", "critic")
          for key, value in (("units", args.ac_units), ("layers", args.ac_layers))],
        f"train.total_steps={args.steps}", "train.eval_every=0", "train.eval_episodes=1",
        f"train.eval_max_episode_steps={args.eval_steps}", "train.checkpoint_every=0",
        "train.log_every=0", f"train.threads={args.threads}", "train.progress=false",
        f"hydra.run.dir={run_dir}",
    ]


def sheeprl_overrides(args: argparse.Namespace, preset: dict[str, int]) -> list[str]:
    return [
        "exp=dreamer_v3", f"algo=dreamer_v3_{args.size}", "env=gym", "env.id=CartPole-v1",
        "env.num_envs=1", "env.sync_env=True", "env.capture_video=False", f"seed={args.seed}",
        f"num_threads={args.threads}", "fabric.accelerator=cpu", f"algo.total_steps={args.steps}",
        f"algo.learning_starts={args.prefill}",
        f"algo.replay_ratio={args.train_ratio / (args.batch * args.length)}",
        f"algo.per_rank_batch_size={args.batch}", f"algo.per_rank_sequence_length={args.length}",
        *[f"algo.{keys}.{part}={value}" for part in ("encoder", "decoder")
          for keys, value in (("cnn_keys", "[]"), ("mlp_keys", "[state]"))],
        f"algo.dense_units={preset['units']}", f"algo.mlp_layers={preset['layers']}",
        f"algo.world_model.recurrent_model.recurrent_state_size={preset['deter']}",
        f"algo.world_model.transition_model.hidden_size={preset['hidden']}",
        f"algo.world_model.representation_model.hidden_size={preset['hidden']}",
        f"algo.world_model.stochastic_size={preset['stoch']}",
        f"algo.world_model.discrete_size={preset['classes']}",
        *[f"algo.{part}.{key}={value}" for part in ("actor", "critic")
          for key, value in (("dense_units", args.ac_units), ("mlp_layers", args.ac_layers))],
        "algo.run_test=False", "checkpoint.every=0", "checkpoint.save_last=False",
        "buffer.checkpoint=False", "buffer.memmap=False", "metric.log_level=0",
        "model_manager.disabled=True",
    ]


def run_worker(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    found = {"env_steps": 0, "updates": 0, "params": None}
    install_clocks(args, found)
    if args.side == "deeprl":
        from deeprl.agents.dreamer import Dreamer
        from deeprl.train.cli import main

        def parts(call_args):  # train_step(self, batch): the world model, actor and critic
            agent = call_args[0]
            return (agent.model_params, agent.actor_critic.actor.parameters(),
                    agent.actor_critic.critic.parameters())

        Dreamer.train_step = counted(Dreamer.train_step, found, parts)
        main(deeprl_overrides(args, os.path.join(os.getcwd(), "deeprl")))
    else:
        from sheeprl.algos.dreamer_v3 import dreamer_v3
        from sheeprl.cli import run

        # train(fabric, world_model, actor, critic, ...), as the main loop calls it
        dreamer_v3.train = counted(dreamer_v3.train, found,
                                   lambda a: [module.parameters() for module in a[1:4]])
        sys.argv = ["sheeprl", *sheeprl_overrides(args, args.preset)]
        run()
    return found


# ---- the parent: both runs, one after the other, and the table ----
def cpu_seconds() -> float:
    """User and system CPU time of the finished child processes (each run is one, in turn)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_side(args: argparse.Namespace, side: str, python: str) -> dict | str:
    """One library's figures from its own process, or why there are none."""
    from deeprl.agents.dreamer import SIZES

    worker = {**vars(args), "side": side, "preset": SIZES[args.size]}
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    with tempfile.TemporaryDirectory(prefix=f"dreamer_run_{side}_") as cwd:
        started = time.perf_counter()
        cpu = cpu_seconds()
        try:
            proc = subprocess.run([python, SCRIPT, "--worker", json.dumps(worker)], cwd=cwd,
                                  env=env, capture_output=True, text=True, timeout=args.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{side} did not run: {exc}"
        wall = time.perf_counter() - started
        cpu = cpu_seconds() - cpu
    if proc.returncode != 0:
        return f"{side} failed: {proc.stderr.strip().splitlines()[-3:]}"
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**found, "side": side, "wall": wall, "cpu": cpu}


def report(rows: list[dict | str], args: argparse.Namespace) -> None:
    print(f"CartPole-v1 (gymnasium), {args.steps} env steps, {args.prefill} random first, "
          f"train ratio {args.train_ratio:g}, batch {args.batch} x {args.length}, size "
          f"{args.size}, actor/critic {args.ac_layers} x {args.ac_units}, {args.threads} "
          f"thread(s), cpu\n")
    print("| side | env steps | updates | params M (model/actor/critic) | process wall s "
          "| process CPU s | env steps/s after prefill | env steps/s whole process |")
    print("| --- " * 8 + "|")
    rates = {}
    for row in rows:
        if isinstance(row, str):
            print(f"\n{row}")
            continue
        after = (args.steps - args.prefill) / (row["end_time"] - row["prefill_time"])
        rates[row["side"]] = (after, args.steps / row["wall"])
        params = "/".join(f"{p:.3f}" for p in row["params"] or ())
        print(f"| {row['side']} | {min(row['env_steps'], args.steps)} | {row['updates']} | "
              f"{params} | {row['wall']:.1f} | {row['cpu']:.1f} | {after:.1f} | "
              f"{args.steps / row['wall']:.1f} |")
    if len(rates) == 2:
        after, whole = (rates["deeprl"][i] / rates["sheeprl"][i] for i in range(2))
        print(f"| ratio deeprl/sheeprl | | | | | | {after:.2f}x | {whole:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="env steps per library")
    parser.add_argument("--prefill", type=int, default=1024, help="random env steps first")
    parser.add_argument("--train-ratio", type=float, default=32.0,
                        help="replayed steps per env step")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--size", default="XS", choices=("XS", "S", "M", "L", "XL"))
    parser.add_argument("--ac-units", type=int, default=512, help="actor and critic width")
    parser.add_argument("--ac-layers", type=int, default=2, help="actor and critic layers")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-steps", type=int, default=1,
                        help="deeprl's final evaluation episode: at most this many steps")
    parser.add_argument("--sheeprl-python", default="/work/venvs/sheeprl/bin/python",
                        help="python of a venv with sheeprl; 'none' skips the peer")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for each run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one side's run, as JSON
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(argparse.Namespace(**json.loads(args.worker)))))
        return
    rows = [run_side(args, "deeprl", sys.executable)]
    rows.append("sheeprl skipped (--sheeprl-python none)" if args.sheeprl_python == "none"
                else run_side(args, "sheeprl", args.sheeprl_python))
    report(rows, args)


if __name__ == "__main__":
    main()
