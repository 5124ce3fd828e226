"""Offline update steps/s: deeprl's BC, TD3+BC, IQL, CQL and DT against d3rlpy 2.8.1, in one run.

Both libraries train on the same synthetic Pendulum-shaped dataset (obs 3, action 1 in [-2, 2],
``--steps`` random transitions from numpy seed 0 in episodes of 200 steps ending in time-outs),
written once to a temporary .npz that each side loads. Timing only: the data is noise and
nothing is learned. Each algorithm gets ``--warmup`` untimed updates, then ``--updates`` timed
ones; the figure is timed updates / the seconds they took (the mean rate, not a median: TD3+BC
updates its actor every second update). d3rlpy pins gymnasium 1.0.0, so it runs in its own venv
(``--peer-python``) as a subprocess of this script (``--worker``); deeprl runs in-process. Both
set ``torch.set_num_threads(--threads)`` and run on the CPU.

What one timed update is on each side:

    deeprl   ``agent.batch(buffer, batch_size)`` (uniform sample from the dataset's ReplayBuffer,
             or K-step windows for DT, states standardised, actions mapped to [-1, 1]) and
             ``agent.train_step(batch)`` (losses, backward passes, optimizer and target steps):
             the two calls of ``OfflineAgent.update``, timed apart (one untimed ``update`` first
             fits the state statistics and DT's window index).
    d3rlpy   ``dataset.sample_transition_batch(batch_size)`` (``sample_trajectory_batch(batch_size,
             context_size)`` for DT) and ``algo.update(batch)`` (numpy -> torch, the observation,
             action and reward scalers, the gradient steps, ``.item()`` of the losses): exactly the
             two calls of the loop in d3rlpy's ``fit``, without its logger, tqdm bar and metric
             bookkeeping.

"sample" is the first call of each pair, "step" the second (d3rlpy converts and scales the batch
inside ``update``, deeprl inside ``batch``), so the "step only" columns differ in that
conversion; the full updates/s is the like-for-like figure.

Equal networks and settings (deeprl's Config defaults, set on d3rlpy's configs):
    BC       deterministic tanh policy, 2 x 256 ReLU, Adam lr 3e-4, batch 256
    TD3+BC   actor and 2 critics 2 x 256, batch 256, lr 3e-4, tau 0.005, alpha 2.5, noise 0.2
             clipped at 0.5, actor every 2 updates
    IQL      actor, 2 critics and V 2 x 256, batch 256, lr 3e-4, expectile 0.7, beta 3, weight
             clip 100, actor lr cosine-decayed over the run's updates
    CQL      actor and 2 critics 3 x 256, batch 256, actor and temperature lr 3e-5, critic lr
             3e-4, 10 sampled actions, importance sampling, fixed conservative weight 10 (d3rlpy:
             ``conservative_weight=10``, ``alpha_learning_rate=0``, no Lagrange step)
    DT       linear state/action/return embeddings of width 128, 3 layers, 1 head, context 20,
             batch 64, AdamW lr 1e-4, weight decay 1e-4, grad-norm clip 0.25, linear warm-up over
             10k updates, dropout 0.1, returns-to-go scaled by 0.001
Both standardise states with the dataset's mean and std (eps 1e-3) and map actions to [-1, 1]
(d3rlpy: ``StandardObservationScaler``, ``MinMaxActionScaler``, fitted from the same arrays).

Mismatches that remain (each library's own design, not settable):
    - IQL's policy: deeprl N(tanh(f(s)), exp(log_std)) with log-std clipped to [-20, 2]; d3rlpy's
      NormalPolicy (log-std parameter clipped to [-5, 2]).
    - CQL's policy: deeprl one linear output of 2 x act_dim with a learned log-std multiplier and
      offset (CORL); d3rlpy separate mean and log-std output layers. d3rlpy evaluates Q(s, a) on
      the dataset actions twice (TD and conservative terms), deeprl once.
    - DT's transformer: deeprl pre-norm RMSNorm blocks with RoPE, a GELU 4x MLP, no bias in the
      attention projections, dropout on the embeddings only, a learned timestep embedding;
      d3rlpy GPT-2 blocks (LayerNorm, ReLU 4x MLP, attention and residual dropout 0.1) and a
      learned timestep embedding ("simple" position encoding). deeprl's window batches roll
      each window so its real tokens come first (two gathers per forward pass) and its loss
      skips the padding; d3rlpy's averages over every position.
    - The sides run one after the other (deeprl first), so a load change on the machine between
      them shows in the ratios: run it on a quiet machine.

``--profile`` then runs ``--profile-updates`` more updates of each algorithm on each side under
``torch.profiler`` (CPU) and prints, per algorithm, each side's share of self CPU time in the
matrix multiplies (one "matmul" row) and in the top other ops, with the ms per update of the ops'
self CPU time and of the wall clock (the gap is Python and framework work outside any op) and
the matmuls' GFLOP per update (torch's formulas; none for fused attention kernels).

Setup of the peer venv (torch pinned first, or pip pulls CUDA wheels) and the command:

    python3 -m venv /work/venvs/d3rlpy
    /work/venvs/d3rlpy/bin/pip install torch==2.13.0
    /work/venvs/d3rlpy/bin/pip install d3rlpy==2.8.1
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/offline_update.py --updates 500 --warmup 50
    .venv/bin/python benchmarks/offline_update.py --updates 20 --warmup 5 --algos bc dt
    .venv/bin/python benchmarks/offline_update.py --updates 30 --warmup 5 --algos iql --profile
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ALGOS = ("bc", "td3bc", "iql", "cql", "dt")
LABELS = {"bc": "BC", "td3bc": "TD3+BC", "iql": "IQL", "cql": "CQL", "dt": "DT"}
EPISODE = 200  # Pendulum's time limit
ACTION_LOW, ACTION_HIGH = -2.0, 2.0
OBS_STD_EPS = 1e-3  # both libraries' eps on the state std
DT_REWARD_SCALE = 1e-3
# Self CPU time of these ops is the dense matrix work (forward and backward) of both libraries.
MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul",
              "aten::linear", "aten::addmv", "aten::mv", "aten::dot"}
TOP_OPS = 8  # ops besides the matmul group shown per side


def make_dataset(steps: int, path: Path) -> None:
    """Random Pendulum-shaped transitions (obs 3, action 1) in episodes of ``EPISODE`` steps."""
    rng = np.random.default_rng(0)
    episodes = -(-steps // EPISODE)
    obs = rng.standard_normal((episodes, EPISODE + 1, 3)).astype(np.float32)
    timeouts = np.zeros((episodes, EPISODE), dtype=bool)
    timeouts[:, -1] = True
    arrays = {
        "obs": obs[:, :-1].reshape(-1, 3)[:steps],
        "next_obs": obs[:, 1:].reshape(-1, 3)[:steps],
        "action": rng.uniform(ACTION_LOW, ACTION_HIGH, (steps, 1)).astype(np.float32),
        "reward": rng.uniform(-16.0, 0.0, steps).astype(np.float32),
        "terminated": np.zeros(steps, dtype=bool),
        "truncated": timeouts.reshape(-1)[:steps],
    }
    arrays["truncated"][-1] = True  # the data ends mid-episode
    np.savez(path, **arrays)


def time_updates(sample: Callable, step: Callable, warmup: int, updates: int) -> dict:
    """Seconds in ``sample()`` and ``step(batch)`` over ``updates`` calls after ``warmup``."""
    spent = {"sample": 0.0, "step": 0.0}
    for i in range(warmup + updates):
        start = time.perf_counter()
        batch = sample()
        mid = time.perf_counter()
        step(batch)
        end = time.perf_counter()
        if i >= warmup:
            spent["sample"] += mid - start
            spent["step"] += end - mid
    return spent


def profile_updates(sample: Callable, step: Callable, updates: int) -> dict:
    """Per-update ms (ops' self CPU time, wall clock) and each op's % of the self CPU time over
    ``updates`` profiled updates; the ops of ``MATMUL_OPS`` are summed as "matmul"."""
    from torch.profiler import ProfilerActivity, profile

    # The FLOPs of the matmuls tell whether both sides do the same matrix work, whatever the load.
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        start = time.perf_counter()
        for _ in range(updates):
            step(sample())
        wall = time.perf_counter() - start
    self_us: dict[str, float] = {}
    flops = 0
    for event in prof.key_averages():
        name = "matmul" if event.key in MATMUL_OPS else event.key
        self_us[name] = self_us.get(name, 0.0) + event.self_cpu_time_total
        flops += event.flops if name == "matmul" else 0
    total = sum(self_us.values())
    shares = {name: round(100 * us / total, 1)
              for name, us in sorted(self_us.items(), key=lambda item: -item[1])}
    return {"ms": total / 1e3 / updates, "wall_ms": 1e3 * wall / updates,
            "gflop": flops / 1e9 / updates, "shares": shares}


# ---- deeprl ----
def run_deeprl(algo: str, data: dict[str, np.ndarray], args: argparse.Namespace) -> dict:
    import math

    from deeprl.buffers.replay import ReplayBuffer
    from deeprl.envs.spec import Box, EnvSpec
    from deeprl.offline.bc import BC
    from deeprl.offline.cql import CQL
    from deeprl.offline.dt import DT
    from deeprl.offline.iql import IQL
    from deeprl.offline.td3_bc import TD3BC

    torch.manual_seed(0)
    agent_cls = {"bc": BC, "td3bc": TD3BC, "iql": IQL, "cql": CQL, "dt": DT}[algo]
    spec = EnvSpec("random-pendulum-shaped", Box.uniform((3,), -math.inf, math.inf),
                   Box.uniform((1,), ACTION_LOW, ACTION_HIGH), max_episode_steps=EPISODE)
    agent = agent_cls(spec, 1, total_steps=args.warmup + args.updates)
    buffer = ReplayBuffer.from_arrays({k: torch.as_tensor(v) for k, v in data.items()})
    agent.update(buffer, 0)  # fits the state statistics (and DT's windows) once, untimed
    batch_size = agent.config.batch_size

    def step(batch: dict[str, torch.Tensor]) -> None:
        agent.train_step(batch)  # what agent.update does after agent.batch
        agent.grad_steps += 1

    def sample() -> dict[str, torch.Tensor]:
        return agent.batch(buffer, batch_size)

    spent = time_updates(sample, step, args.warmup, args.updates)
    if args.profile:
        spent["profile"] = profile_updates(sample, step, args.profile_updates)
    return {"batch_size": batch_size, "params": sum(p.numel() for p in agent.parameters()),
            **spent}


# ---- d3rlpy (runs in its own venv: no deeprl import here) ----
def run_d3rlpy(algo: str, data: dict[str, np.ndarray], args: argparse.Namespace) -> dict:
    import d3rlpy
    from d3rlpy.models import VectorEncoderFactory
    from d3rlpy.optimizers import AdamFactory, AdamWFactory
    from d3rlpy.optimizers.lr_schedulers import CosineAnnealingLRFactory, WarmupSchedulerFactory
    from d3rlpy.preprocessing import (
        MinMaxActionScaler,
        MultiplyRewardScaler,
        StandardObservationScaler,
    )

    d3rlpy.seed(0)
    torch.manual_seed(0)
    dataset = d3rlpy.dataset.MDPDataset(
        observations=data["obs"], actions=data["action"], rewards=data["reward"],
        terminals=data["terminated"].astype(np.float32),
        timeouts=data["truncated"].astype(np.float32),
    )
    scalers = {
        "observation_scaler": StandardObservationScaler(
            mean=data["obs"].mean(0), std=data["obs"].std(0), eps=OBS_STD_EPS),
        "action_scaler": MinMaxActionScaler(minimum=np.full(1, ACTION_LOW, np.float32),
                                            maximum=np.full(1, ACTION_HIGH, np.float32)),
    }
    mlp2 = VectorEncoderFactory(hidden_units=[256, 256])
    mlp3 = VectorEncoderFactory(hidden_units=[256, 256, 256])
    algos = d3rlpy.algos
    if algo == "bc":
        config = algos.BCConfig(batch_size=256, learning_rate=3e-4, policy_type="deterministic",
                                encoder_factory=mlp2, **scalers)
    elif algo == "td3bc":
        config = algos.TD3PlusBCConfig(
            batch_size=256, actor_learning_rate=3e-4, critic_learning_rate=3e-4,
            actor_encoder_factory=mlp2, critic_encoder_factory=mlp2, tau=0.005, n_critics=2,
            target_smoothing_sigma=0.2, target_smoothing_clip=0.5, alpha=2.5,
            update_actor_interval=2, **scalers)
    elif algo == "iql":
        cosine = AdamFactory(
            lr_scheduler_factory=CosineAnnealingLRFactory(T_max=args.warmup + args.updates))
        config = algos.IQLConfig(
            batch_size=256, actor_learning_rate=3e-4, critic_learning_rate=3e-4,
            actor_optim_factory=cosine, actor_encoder_factory=mlp2, critic_encoder_factory=mlp2,
            value_encoder_factory=mlp2, tau=0.005, n_critics=2, expectile=0.7, weight_temp=3.0,
            max_weight=100.0, **scalers)
    elif algo == "cql":
        config = algos.CQLConfig(
            batch_size=256, actor_learning_rate=3e-5, critic_learning_rate=3e-4,
            temp_learning_rate=3e-5, alpha_learning_rate=0.0, conservative_weight=10.0,
            actor_encoder_factory=mlp3, critic_encoder_factory=mlp3, tau=0.005, n_critics=2,
            n_action_samples=10, **scalers)
    else:
        config = algos.DecisionTransformerConfig(
            batch_size=64, context_size=20, max_timestep=1000, learning_rate=1e-4,
            # one Linear(obs, 128): deeprl's state embedding
            encoder_factory=VectorEncoderFactory(hidden_units=[128],
                                                 exclude_last_activation=True),
            optim_factory=AdamWFactory(
                weight_decay=1e-4, clip_grad_norm=0.25,
                lr_scheduler_factory=WarmupSchedulerFactory(warmup_steps=10_000)),
            num_heads=1, num_layers=3, attn_dropout=0.1, resid_dropout=0.1, embed_dropout=0.1,
            reward_scaler=MultiplyRewardScaler(DT_REWARD_SCALE), **scalers)
    agent = config.create(device="cpu:0")
    agent.build_with_dataset(dataset)
    if algo == "dt":
        def sample():
            return dataset.sample_trajectory_batch(config.batch_size, length=config.context_size)
    else:
        def sample():
            return dataset.sample_transition_batch(config.batch_size)
    spent = time_updates(sample, agent.update, args.warmup, args.updates)
    if args.profile:
        spent["profile"] = profile_updates(sample, agent.update, args.profile_updates)
    params = {id(p): p.numel() for module in agent.impl.modules.get_torch_modules().values()
              for p in module.parameters()}
    return {"batch_size": config.batch_size, "params": sum(params.values()),
            "version": d3rlpy.__version__, **spent}


def d3rlpy_subprocess(args: argparse.Namespace, path: Path) -> dict | str:
    """d3rlpy's figures per algorithm from its own venv, or why there are none."""
    worker = {**vars(args), "data": str(path)}
    try:
        proc = subprocess.run([args.peer_python, __file__, "--worker", json.dumps(worker)],
                              capture_output=True, text=True, timeout=args.timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"d3rlpy did not run: {exc}"
    if proc.returncode != 0:
        return f"d3rlpy failed: {proc.stderr.strip().splitlines()[-1:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(ours: dict, peer: dict | str, args: argparse.Namespace) -> None:
    two = isinstance(peer, dict)
    version = f"d3rlpy {peer['_version']}" if two else "d3rlpy"
    print(f"{args.steps} random Pendulum-shaped transitions (obs 3, action 1), "
          f"{args.threads} thread(s), cpu, torch {torch.__version__}; "
          f"{args.updates} timed updates after {args.warmup} warm-up\n")
    print(f"| algorithm | batch | parameters deeprl / d3rlpy | deeprl updates/s "
          f"| {version} updates/s | ratio deeprl/d3rlpy | deeprl step only/s "
          f"| d3rlpy step only/s | ratio step only |")
    print("| --- " * 9 + "|")
    for algo in args.algos:
        mine = ours[algo]
        rates = [args.updates / (mine["sample"] + mine["step"]), args.updates / mine["step"]]
        if two:
            theirs = peer[algo]
            peer_rates = [args.updates / (theirs["sample"] + theirs["step"]),
                          args.updates / theirs["step"]]
            params = f"{mine['params']:,} / {theirs['params']:,}"
            cells = [f"{rates[0]:.3g}", f"{peer_rates[0]:.3g}", f"{rates[0] / peer_rates[0]:.2f}x",
                     f"{rates[1]:.3g}", f"{peer_rates[1]:.3g}", f"{rates[1] / peer_rates[1]:.2f}x"]
        else:
            params = f"{mine['params']:,}"
            cells = [f"{rates[0]:.3g}", "", "", f"{rates[1]:.3g}", "", ""]
        print(f"| {LABELS[algo]} | {mine['batch_size']} | {params} | " + " | ".join(cells) + " |")
    if not two:
        print(f"\n{peer}")
    if args.profile:
        for algo in args.algos:
            report_profile(algo, ours[algo]["profile"], peer[algo]["profile"] if two else None,
                           args.profile_updates)


def report_profile(algo: str, mine: dict, theirs: dict | None, updates: int) -> None:
    """One side-by-side table of the shares of self CPU time (%) of ``profile_updates``."""
    sides = [mine] if theirs is None else [mine, theirs]
    ops = ["matmul"]
    for side in sides:
        ops += [op for op in side["shares"] if op not in ops][:TOP_OPS]
    print(f"\n{LABELS[algo]}: % of self CPU time over {updates} profiled updates\n")
    print("| op group | deeprl % |" + (" d3rlpy % |" if theirs else ""))
    print("| --- " * (1 + len(sides)) + "|")
    for op in ops:
        print(f"| {op} | " + " | ".join(f"{side['shares'].get(op, 0.0):.1f}" for side in sides)
              + " |")
    rest = [100 - sum(side["shares"].get(op, 0.0) for op in ops) for side in sides]
    print("| all other ops | " + " | ".join(f"{r:.1f}" for r in rest) + " |")
    for key, label, form in (("ms", "ops' self CPU ms / update", ".1f"),
                             ("wall_ms", "wall ms / update", ".1f"),
                             ("gflop", "matmul GFLOP / update", ".3g")):
        print(f"| {label} | " + " | ".join(f"{side[key]:{form}}" for side in sides) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--updates", type=int, default=500, help="timed updates per algorithm")
    parser.add_argument("--warmup", type=int, default=50, help="untimed updates first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides")
    parser.add_argument("--steps", type=int, default=50_000, help="transitions in the dataset")
    parser.add_argument("--peer-python", default="/work/venvs/d3rlpy/bin/python",
                        help="python of a venv with d3rlpy 2.8.1; 'none' skips the peer")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for the peer")
    parser.add_argument("--profile", action="store_true",
                        help="profile more updates per algorithm and print each op's share")
    parser.add_argument("--profile-updates", type=int, default=20,
                        help="updates profiled per algorithm with --profile")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # d3rlpy's side, as JSON
    args = parser.parse_args()
    if min(args.updates, args.threads, args.steps, args.profile_updates) < 1 or args.warmup < 0:
        parser.error("--updates, --threads, --steps and --profile-updates must be at least 1, "
                     "--warmup at least 0")
    if args.worker:
        worker = argparse.Namespace(**json.loads(args.worker))
        torch.set_num_threads(worker.threads)
        data = dict(np.load(worker.data))
        results = {algo: run_d3rlpy(algo, data, worker) for algo in worker.algos}
        results["_version"] = next(iter(results.values()))["version"]
        print(json.dumps(results))
        return
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dataset.npz"
        make_dataset(args.steps, path)
        data = dict(np.load(path))
        # Each algorithm's two sides run back to back, so a change of machine load between
        # algorithms moves both sides of a ratio alike.
        ours: dict = {}
        peer: dict | str = "skipped (--peer-python none)" if args.peer_python == "none" else {}
        for algo in args.algos:
            ours[algo] = run_deeprl(algo, data, args)
            if isinstance(peer, dict):
                theirs = d3rlpy_subprocess(argparse.Namespace(**{**vars(args), "algos": [algo]}),
                                           path)
                peer = theirs if isinstance(theirs, str) else {**peer, **theirs}
    report(ours, peer, args)


if __name__ == "__main__":
    main()
