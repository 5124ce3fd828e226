"""Offline RL on generated torch-native Pendulum datasets (issue 14's acceptance runs), or on
another task's with ``--env`` (``--env mujoco/hopper``: issues 14 and 15's Hopper tables).

1. ``deeprl-dataset`` makes D4RL-recipe datasets once (random, medium, expert, medium-replay and
   medium-expert from the project's SAC; reference min/max scores in the files) under
   ``<out>/datasets``; files already there are reused.
2. ``deeprl-train`` trains, one run at a time, each with ``OMP_NUM_THREADS=1`` and
   ``train.total_steps=<updates>`` (offline progress counts gradient updates), the agents'
   defaults (CORL's / the authors' code, docs/agents.md) and a final evaluation of
   ``--eval-episodes`` deterministic episodes:

   - BC on medium;
   - BC, TD3+BC, IQL, CQL, XQL and f-DVL on medium-replay;
   - ReCOIL by the paper's protocol (after SMODICE): the expert set E is one expert trajectory
     (the first episode of the expert file: 199 transitions, Pendulum's 200th step being a
     time-limit step that D4RL's ``qlearning_dataset`` rule leaves out); the suboptimal set S is
     the random dataset plus the first K expert trajectories (episodes 0..K-1 of the expert file,
     so E's own trajectory is in S, as in SMODICE's and ReCOIL's sets: both take E and S's
     expert part from the head of the same expert-v2 file), written to
     ``<out>/datasets/<task>-random+first<K>expert.hdf5``. Default K = 200, the paper's
     count (hopper, halfcheetah, ant; walker2d 100). With the default budgets (a 500-episode
     random set) that is 29% of S's transitions against 17% beside D4RL's 1M-step random sets;
     ``--recoil-k 100`` gives D4RL's share (docs/benchmarks.md has both). ReCOIL uses no
     rewards;
   - only when named in ``--agents`` (issue 15): DT and MO-DT with its ablations on medium-replay
     (``dt``; ``modt``, all three additions; ``modt-no-regions``, ``modt-no-states``,
     ``modt-no-returns``, each with one of ``agent.region_tokens``, ``agent.predict_states``,
     ``agent.predict_returns`` off), all at one small transformer size (``DT_SIZE``: embed 64,
     2 layers, lr 1e-3, warm-up 200 updates) and with ``agent.target_return`` at the same
     normalized level as CORL's per-task constant (``dt.py``: hopper 3600, halfcheetah 12000,
     walker2d 5000, i.e. 111.2, 98.9 and 108.9 D4RL-normalized) on the files' reference scores,
     or the expert reference score (100) for a task CORL has none for (Pendulum). DT's default,
     the best episode return in the dataset, is only medium-replay's best early-SAC episode.
3. Prints a markdown table of the final normalized scores (D4RL's
   100 * (R - random) / (expert - random) with the files' references): mean +- std over seeds
   and per seed, plus the behaviour policy's normalized score on medium, from the mean episode
   return of the medium file itself.

``--set KEY=VALUE`` (repeatable) adds a Hydra override to every run, e.g. ``--agents recoil --set
agent.temp=10`` for a sweep; the overrides become part of the run names.

Runs go to ``<out>/runs/<name>-<dataset>-u<updates>[-<overrides>]-seed<seed>`` (name: the
``--agents`` one, e.g. ``modt-no-states``); one with an ``eval.json`` is not run again, so an
interrupted benchmark resumes by re-running the same command.

Full budget (the defaults): 3 seeds x 10k updates,

    OMP_NUM_THREADS=1 python benchmarks/offline_pendulum.py

The runs recorded so far had to fit about 45 minutes of a 2-core CPU shared with other
training (per 1k updates there: CQL about 240 s, f-DVL and ReCOIL about 60, the rest 10 to 20):

    OMP_NUM_THREADS=1 python benchmarks/offline_pendulum.py --seeds 0 --updates 1000
    OMP_NUM_THREADS=1 python benchmarks/offline_pendulum.py --seeds 0 --updates 10000 \\
        --agents bc td3bc iql xql fdvl recoil

(1k updates is far too few for the value-based agents: with Polyak tau 0.005 their targets
have moved only about updates x tau = 5 backups; CQL did not fit at 10k.)

Both with the default dataset budgets: SAC 10k env steps (half of
configs/tuned/sac_pendulum.yaml's 20k; its best snapshot, at 8k, is the expert), 100k steps
(500 episodes) each for random, medium and expert, reference scores over 100 episodes, seed 0;
medium-replay is SAC's first 3k steps (15 episodes).

DT and the MO-DT ablations, not in the default ``--agents`` (per 1k updates on the shared
CPU: DT about 300 s, MO-DT about 360 s, so 10k updates take about an hour a run):

    OMP_NUM_THREADS=1 python benchmarks/offline_pendulum.py \\
        --agents dt modt modt-no-regions modt-no-states modt-no-returns
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from deeprl.agent import agent_registry
from deeprl.eval.normalize import d4rl_normalized
from deeprl.offline.d4rl import read_metadata, write_d4rl

KINDS = ("random", "medium", "expert", "medium-replay", "medium-expert")
REPLAY_AGENTS = ("bc", "td3bc", "iql", "xql", "fdvl", "cql")
AGENTS = (*REPLAY_AGENTS, "recoil")
# MO-DT ablations (issue 15): each name's overrides of agent=modt; all three off would be DT
MODT_ABLATIONS = {
    "modt": (),
    "modt-no-regions": ("agent.region_tokens=false",),
    "modt-no-states": ("agent.predict_states=false",),
    "modt-no-returns": ("agent.predict_returns=false",),
}
DT_AGENTS = ("dt", *MODT_ABLATIONS)
# One size for DT and every MO-DT ablation: tests/test_dt.py's slow test, where DT learns a
# generated Pendulum expert file (normalized >= 80) in 3k updates on this CPU; CORL's default
# (embed 128, 3 layers, lr 1e-4, 10k warm-up updates) is sized for runs of 100k updates or more.
DT_SIZE = ("agent.embed_dim=64", "agent.n_layers=2", "agent.lr=1e-3", "agent.warmup_steps=200")
# CORL dt.py's target returns (the first of each pair; ../shared/reference/offline.md), in env
# units of D4RL's v2 tasks: scaled to a generated dataset through D4RL's normalized score
CORL_DT_TARGETS = {"hopper": 3600.0, "halfcheetah": 12000.0, "walker2d": 5000.0}
# ReCOIL/SMODICE's K: expert trajectories in the suboptimal set (walker2d: 100)
RECOIL_K = 200
# Kept in the ReCOIL suboptimal file: what dataset=d4rl and the eval need
METADATA_KEYS = ("env", "env_id", "action_low", "action_high", "max_episode_steps",
                 "ref_min_score", "ref_max_score", "seed", "train_steps")


def cli(name: str) -> list[str]:
    """A console script of this interpreter's environment (its ``bin/``), else from PATH."""
    local = Path(sys.executable).with_name(name)
    return [str(local)] if local.exists() else [shutil.which(name) or name]


def td3bc_name() -> str:
    """TD3+BC's registered name (``td3bc``, formerly ``td3_bc``)."""
    registry = agent_registry()
    return next(name for name in ("td3bc", "td3_bc") if name in registry)


def read_raw(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The per-step arrays (no infos) and metadata of a D4RL file as written."""
    import h5py

    with h5py.File(path, "r") as f:
        keys = ("observations", "actions", "rewards", "terminals", "timeouts",
                "next_observations")
        return {k: f[k][()] for k in keys}, read_metadata(f)


def episode_bounds(data: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    """[start, end) of each whole episode (ended by a terminal or a timeout)."""
    ends = np.flatnonzero(data["terminals"] | data["timeouts"]) + 1
    return list(zip(np.concatenate([[0], ends[:-1]]).tolist(), ends.tolist(), strict=True))


def file_prefix(env: str) -> str:
    """deeprl-dataset's file prefix for an env config name: mujoco/hopper -> hopper."""
    return env.rsplit("/", 1)[-1]


def normalized(value: float, metadata: dict) -> float:
    low, high = float(metadata["ref_min_score"]), float(metadata["ref_max_score"])
    return 100 * (value - low) / (high - low)


def dt_target(env: str, metadata: dict) -> float:
    """DT's acting target (env units) on the files of ``env``: CORL's constant for the task at
    the same D4RL-normalized level on the files' references, else the expert reference score."""
    task = file_prefix(env)
    if task not in CORL_DT_TARGETS:
        return float(metadata["ref_max_score"])
    level = float(d4rl_normalized(task, CORL_DT_TARGETS[task])) / 100
    low, high = float(metadata["ref_min_score"]), float(metadata["ref_max_score"])
    return low + level * (high - low)


def run_tag(overrides: list[str]) -> str:
    """The run-name part of ``--set`` overrides: agent.temp=10 -> temp10."""
    return "-".join(o.rsplit(".", 1)[-1].replace("=", "") for o in overrides)


def make_datasets(args: argparse.Namespace) -> dict[str, Path]:
    """The five D4RL-recipe files, generated unless all are present."""
    folder = args.out / "datasets"
    files = {kind: folder / f"{file_prefix(args.env)}-{kind}.hdf5" for kind in KINDS}
    if all(path.exists() for path in files.values()):
        print(f"reusing the datasets in {folder}", flush=True)
        return files
    command = [*cli("deeprl-dataset"), "--env", args.env, "--out", str(folder),
               "--train-steps", str(args.sac_steps), "--dataset-steps", str(args.dataset_steps),
               "--score-episodes", str(args.score_episodes), "--seed", str(args.data_seed),
               "--overwrite"]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True, env=run_env())
    missing = [str(path) for path in files.values() if not path.exists()]
    if missing:  # a group config (dmc, atari) names its files after its task, not --env
        raise SystemExit(f"--env {args.env}: deeprl-dataset wrote no {missing[0]}; give an env "
                         f"config named as its files (pendulum, mujoco/<task>)")
    return files


def make_recoil_sets(files: dict[str, Path], k: int) -> tuple[Path, int, int]:
    """S = random + expert episodes 0..K-1 (file); E = the expert file's first episode.

    Returns:
        (S's path, K, E's transition count for ``agent.expert_transitions``).
    """
    random, metadata = read_raw(files["random"])
    expert, _ = read_raw(files["expert"])
    episodes = episode_bounds(expert)
    if not 1 <= k <= len(episodes):
        raise SystemExit(f"--recoil-k {k}: give 1 to {len(episodes)} (the expert file's episodes)")
    start, end = episodes[0]
    # D4RL's rule leaves a timeout step out (no transition joins two episodes)
    expert_transitions = end - start - int(bool(expert["timeouts"][end - 1]))
    upto = episodes[k - 1][1]
    prefix = files["random"].name.removesuffix("-random.hdf5")
    path = files["random"].with_name(f"{prefix}-random+first{k}expert.hdf5")
    if not path.exists():
        data = {key: np.concatenate([random[key], expert[key][:upto]])
                for key in random}
        kept = {key: metadata[key] for key in METADATA_KEYS if key in metadata}
        write_d4rl(path, data, {**kept, "kind": f"random+first{k}expert"})
    return path, k, expert_transitions


def run_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def train(args: argparse.Namespace, name: str, agent: str, label: str, dataset: Path, seed: int,
          extra: tuple[str, ...] = ()) -> tuple[float, float]:
    """One ``deeprl-train`` run of ``agent`` (skipped when finished), ``name`` telling it apart
    (an ablation's); returns (normalized score, seconds)."""
    tag = f"-{run_tag(args.set)}" if args.set else ""
    run_dir = args.out / "runs" / f"{name}-{label}-u{args.updates}{tag}-seed{seed}"
    result = run_dir / "eval.json"
    if not result.exists():
        command = [*cli("deeprl-train"), f"agent={agent}", f"env={args.env}", "dataset=d4rl",
                   f"dataset.path={dataset.resolve()}", f"seed={seed}",
                   f"train.total_steps={args.updates}", f"train.eval_every={args.eval_every}",
                   f"train.eval_episodes={args.eval_episodes}", "train.checkpoint_every=0",
                   f"train.log_every={max(1, args.updates // 10)}", "train.threads=1",
                   f"hydra.run.dir={run_dir.resolve()}", *extra, *args.set]
        print(" ".join(command), flush=True)
        started = time.perf_counter()
        proc = subprocess.run(command, env=run_env(), capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{name} on {label} (seed {seed}) failed:\n{proc.stderr[-3000:]}")
        (run_dir / "seconds.txt").write_text(f"{seconds:.1f}\n")
    seconds = float((run_dir / "seconds.txt").read_text()) if (run_dir / "seconds.txt").exists() \
        else float("nan")
    score = float(json.loads(result.read_text())["normalized_score"])
    print(f"{name} on {label}, seed {seed}: normalized {score:.1f} ({seconds:.0f} s)", flush=True)
    return score, seconds


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="pendulum",
                   help="deeprl-dataset --env and the runs' env=: pendulum, mujoco/<task> "
                        "(a config whose files take its name)")
    p.add_argument("--out", type=Path, default=Path("runs/offline_pendulum"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--updates", type=int, default=10_000, help="train.total_steps of each run")
    p.add_argument("--eval-every", type=int, default=0, help="train.eval_every (0: at the end)")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--sac-steps", type=int, default=10_000, help="deeprl-dataset --train-steps")
    p.add_argument("--dataset-steps", type=int, default=100_000,
                   help="deeprl-dataset --dataset-steps (random, medium, expert each)")
    p.add_argument("--score-episodes", type=int, default=100,
                   help="deeprl-dataset --score-episodes (reference scores)")
    p.add_argument("--data-seed", type=int, default=0, help="deeprl-dataset --seed")
    p.add_argument("--recoil-k", type=int, default=RECOIL_K,
                   help="expert trajectories in ReCOIL's suboptimal set (default: the paper's "
                        "200)")
    p.add_argument("--agents", nargs="+", choices=(*AGENTS, *DT_AGENTS), default=list(AGENTS),
                   help="a subset to run (bc: on medium and on medium-replay); DT and the MO-DT "
                        "ablations only when named")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a Hydra override for every run (repeatable), e.g. agent.temp=10")
    args = p.parse_args(argv)
    bad = [o for o in args.set if "=" not in o]
    if bad:
        p.error(f"--set {bad[0]!r} is not KEY=VALUE; write e.g. --set agent.temp=10")

    files = make_datasets(args)
    td3bc = td3bc_name()
    recoil_data, k, expert_transitions = make_recoil_sets(files, args.recoil_k)
    expert_set = f"++agent.expert={{name: d4rl, path: {files['expert'].resolve()}}}"
    replay = [(name, name, "medium-replay", files["medium-replay"], ())
              for name in (td3bc if a == "td3bc" else a for a in REPLAY_AGENTS)]
    _, replay_meta = read_raw(files["medium-replay"])
    # DT's target return in env units (module docstring)
    dt_extra = (*DT_SIZE, f"agent.target_return={dt_target(args.env, replay_meta):.1f}")
    dt_family = [(name, "dt" if name == "dt" else "modt", "medium-replay", files["medium-replay"],
                  (*dt_extra, *MODT_ABLATIONS.get(name, ()))) for name in DT_AGENTS]
    # Jobs: (name, agent, dataset label, file, overrides). CQL, by far the slowest per update,
    # last: a run cut short by a deadline has the rest
    jobs = [("bc", "bc", "medium", files["medium"], ()), *replay[:-1],
            ("recoil", "recoil", f"random+first{k}expert", recoil_data,
             (expert_set, f"agent.expert_transitions={expert_transitions}")),
            *dt_family, replay[-1]]
    chosen = {td3bc if a == "td3bc" else a for a in args.agents}
    jobs = [job for job in jobs if job[0] in chosen]

    results: dict[tuple[str, str], list[float]] = {}
    times: dict[tuple[str, str], list[float]] = {}
    for seed in args.seeds:  # seeds outermost: a cut-short run still has whole seeds
        for name, agent, label, dataset, extra in jobs:
            score, seconds = train(args, name, agent, label, dataset, seed, extra)
            results.setdefault((name, label), []).append(score)
            times.setdefault((name, label), []).append(seconds)

    medium, medium_meta = read_raw(files["medium"])
    returns = [float(medium["rewards"][a:b].sum()) for a, b in episode_bounds(medium)]
    behaviour = normalized(statistics.fmean(returns), medium_meta)
    print(f"\n{args.env} datasets: {args.out / 'datasets'} (references: random "
          f"{float(medium_meta['ref_min_score']):.1f}, expert "
          f"{float(medium_meta['ref_max_score']):.1f}); {args.updates:,} updates per run, "
          f"{args.eval_episodes} eval episodes; ReCOIL: E = 1 expert trajectory "
          f"({expert_transitions} transitions), S = random + K = {k} expert trajectories\n")
    seeds = " | ".join(f"seed {s}" for s in args.seeds)
    print(f"| agent | dataset | normalized (mean ± std) | {seeds} | s/run |")
    print("|---|---|---|" + "---|" * len(args.seeds) + "---|")
    print(f"| behaviour policy | medium | {behaviour:.1f} ({len(returns)} episodes) |"
          + " |" * len(args.seeds) + " |")
    for (name, label), scores in results.items():
        std = statistics.stdev(scores) if len(scores) > 1 else 0.0
        per_seed = " | ".join(f"{s:.1f}" for s in scores)
        print(f"| {name} | {label} | {statistics.fmean(scores):.1f} ± {std:.1f} | {per_seed} | "
              f"{statistics.fmean(times[name, label]):.0f} |")


if __name__ == "__main__":
    main()
