"""``deeprl-dataset``: offline datasets made with D4RL's recipe (Fu et al. 2020, arXiv 2004.07219,
section 5 and ``scripts/generation/mujoco/collect_data.py``) from the project's own SAC.

1. Train SAC (``agent=sac`` with the env's tuned config, e.g. ``configs/tuned/sac_pendulum.yaml``)
   for ``--train-steps`` env steps, keeping the actor every ``--snapshot-every`` steps with its
   return over ``--snapshot-episodes`` episodes of the stochastic policy, and every transition
   it collected (its replay, in order).
2. The policies: *random* is the randomly initialised actor (the step-0 snapshot), *expert* the
   best snapshot, *medium* the first snapshot whose return reaches ``--medium-fraction`` (1/3) of
   the way from the uniform-random policy's return to the expert's: D4RL's "about a third of the
   expert's return", measured from the random return so that tasks with negative returns
   (Pendulum) work too. D4RL never published which checkpoints it used (D4RL issues 119, 178).
3. The datasets, each from ``--dataset-steps`` env steps of the policy's *sampled* actions (no
   added noise), whole episodes only: ``random``, ``medium``, ``expert``; ``medium-replay`` is the
   training replay up to the medium snapshot; ``medium-expert`` is medium followed by expert
   (D4RL's ``stitch_dataset.py``).
4. Reference scores, stored in every file (``metadata/ref_min_score``, ``ref_max_score``): the
   mean return over ``--score-episodes`` (100) episodes of the uniform-random policy and of the
   expert policy, D4RL's REF_MIN_SCORE and REF_MAX_SCORE; ``dataset=d4rl`` normalizes with them.

Files: ``<out>/<env>-<kind>.hdf5`` in D4RL's layout (``timeouts`` for time limits, ``terminals``
for true terminations, ``next_observations``, ``infos/action_log_probs`` and, on MuJoCo tasks,
``infos/qpos``/``infos/qvel`` of the state each observation was taken in; ``metadata/*`` names the
policy, its training step, return and weights), and with ``--format minari`` Minari datasets
``deeprl/<env>/<kind>-v0`` under ``--minari-root``.

    deeprl-dataset --env pendulum --out datasets/pendulum
    deeprl-dataset --env mujoco/hopper --train-steps 1000000 --dataset-steps 1000000
"""

from __future__ import annotations

import argparse
import copy
import math
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deeprl.errors import UserError

KINDS = ("random", "medium", "expert", "medium-replay", "medium-expert")
#: Steps a copy may take while scoring before the env is deemed to have no time limit.
MAX_SCORE_STEPS = 1_000_000

#: act(obs (N, ...)) -> (action (N, *action_shape), log-probability (N,)).
ActFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _say(message: str) -> None:
    print(f"deeprl-dataset: {message}", file=sys.stderr, flush=True)


# ---- policies -----------------------------------------------------------------------------------


def sac_policy(agent) -> ActFn:
    """The SAC actor's sampled actions and their log-probabilities."""

    def act(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        action, log_prob, _ = agent.policy(agent.encoder(obs))
        return action.view(-1, *agent.spec.action_space.shape), log_prob

    return act


def uniform_policy(spec, device: torch.device, generator: torch.Generator) -> ActFn:
    """Uniform random actions in the action box, with their log-density."""
    low, high = spec.action_space.bounds(device)
    log_density = -float(torch.log(high - low).sum())

    def act(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.rand((obs.shape[0], *low.shape), generator=generator, device=device)
        return low + noise * (high - low), torch.full((obs.shape[0],), log_density, device=device)

    return act


def mujoco_states(env) -> tuple[np.ndarray, np.ndarray] | None:
    """(qpos, qvel) (N, nq), (N, nv) of every copy of a synchronously stepped gymnasium MuJoCo
    env, or None for other envs."""
    copies = getattr(getattr(env, "env", None), "envs", None)
    if not copies or not hasattr(copies[0].unwrapped, "data"):
        return None
    data = [c.unwrapped.data for c in copies]
    return np.stack([d.qpos.copy() for d in data]), np.stack([d.qvel.copy() for d in data])


# ---- rollouts -----------------------------------------------------------------------------------


class Recorder:
    """Collects batched steps (T, N) and splits them into each copy's episodes."""

    def __init__(self) -> None:
        self.steps: list[dict[str, np.ndarray]] = []

    def add(self, step: dict[str, Any]) -> None:
        self.steps.append({
            k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            for k, v in step.items()
        })

    def __len__(self) -> int:
        return len(self.steps)

    def d4rl(self, upto: int | None = None, keep_partial: bool = False) -> dict[str, np.ndarray]:
        """The first ``upto`` steps as D4RL arrays, copy after copy, whole episodes only (with
        ``keep_partial`` each copy's unfinished episode too, its last step marked a timeout)."""
        steps = self.steps[:upto]
        if not steps:
            return {}
        stacked = {k: np.stack([s[k] for s in steps]) for k in steps[0]}  # (T, N, ...)
        done = stacked["terminated"] | stacked["truncated"]
        parts = []
        for n in range(done.shape[1]):
            ends = np.flatnonzero(done[:, n])
            stop = len(done) if keep_partial else (ends[-1] + 1 if len(ends) else 0)
            if stop == 0:
                continue
            part = {k: v[:stop, n] for k, v in stacked.items()}
            if keep_partial and not done[stop - 1, n]:
                part["truncated"] = part["truncated"].copy()
                part["truncated"][-1] = True
            parts.append(part)
        if not parts:
            return {}
        flat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        out = {
            "observations": flat.pop("obs").astype(np.float32),
            "actions": flat.pop("action").astype(np.float32),
            "rewards": flat.pop("reward").astype(np.float32),
            "terminals": flat.pop("terminated").astype(bool),
            "timeouts": flat.pop("truncated").astype(bool),
            "next_observations": flat.pop("next_obs").astype(np.float32),
        }
        out.update({f"infos/{k}": v for k, v in flat.items()})
        return out


def rollout(env, act: ActFn, steps_per_env: int, seed: int) -> dict[str, np.ndarray]:
    """``steps_per_env`` steps of every copy of ``env`` with ``act``, as D4RL arrays of whole
    episodes with ``infos/action_log_probs`` (and ``infos/qpos``/``qvel`` on MuJoCo)."""
    recorder = Recorder()
    obs = env.reset(seed=seed)
    with torch.inference_mode():
        for _ in range(steps_per_env):
            state = mujoco_states(env)
            action, log_prob = act(obs)
            result = env.step(action)
            step = {"obs": obs, "action": action, "reward": result.reward,
                    "next_obs": result.next_obs, "terminated": result.terminated,
                    "truncated": result.truncated, "action_log_probs": log_prob}
            if state is not None:
                step["qpos"], step["qvel"] = state
            recorder.add(step)
            obs = result.obs
    return recorder.d4rl()


def score(env, act: ActFn, episodes: int, seed: int) -> float:
    """Mean return of ``act`` over ``episodes`` episodes (each copy's first ones, in order)."""
    per_env = math.ceil(episodes / env.num_envs)
    returns: list[list[float]] = [[] for _ in range(env.num_envs)]
    obs = env.reset(seed=seed)
    with torch.inference_mode():
        for _ in range(MAX_SCORE_STEPS):
            result = env.step(act(obs)[0])
            obs = result.obs
            if result.done.any():
                done = result.done.cpu().tolist()
                values = result.episode_return.cpu().tolist()
                for i in range(env.num_envs):
                    if done[i] and len(returns[i]) < per_env:
                        returns[i].append(values[i])
                if all(len(r) >= per_env for r in returns):
                    break
        else:
            raise UserError(
                f"{env.spec.id}: {episodes} episodes did not end in {MAX_SCORE_STEPS:,} steps a "
                f"copy; scoring needs an env with a time limit"
            )
    flat = [r for env_returns in returns for r in env_returns][:episodes]
    return float(np.mean(flat))


# ---- the recipe ---------------------------------------------------------------------------------


def _targets(
    out: Path, name: str, kinds: list[str], overwrite: bool, minari_root: Path | None
) -> dict[str, Path]:
    """The D4RL file of each kind; refuses to replace a file (or a Minari dataset, removed
    here with ``overwrite``) that exists."""
    targets = {kind: out / f"{name}-{kind}.hdf5" for kind in kinds}
    minari = [minari_root / _minari_id(name, kind) for kind in kinds] if minari_root else []
    existing = [str(p) for p in [*targets.values(), *minari] if p.exists()]
    if overwrite:
        for path in minari:
            shutil.rmtree(path, ignore_errors=True)
    if existing and not overwrite:
        raise UserError(
            f"{existing[0]} exists; choose another --out or pass --overwrite to replace it"
        )
    return targets


def generate(
    env: str,
    out: str | Path,
    train_steps: int | None = None,
    snapshot_every: int | None = None,
    snapshot_episodes: int = 5,
    dataset_steps: int = 1_000_000,
    score_episodes: int = 100,
    medium_fraction: float = 1 / 3,
    kinds: tuple[str, ...] = KINDS,
    collect_envs: int = 10,
    seed: int = 0,
    device: str = "cpu",
    overrides: tuple[str, ...] = (),
    formats: tuple[str, ...] = ("d4rl",),
    minari_root: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Run the recipe (module docstring); returns the written D4RL files by kind.

    Args:
        env: an env config name (``pendulum``, ``mujoco/hopper``).
        train_steps: SAC's env steps (None: the tuned config's ``train.total_steps``).
        snapshot_every: env steps between actor snapshots (None: train_steps // 40).
        overrides: further ``deeprl-train`` overrides for SAC (``agent.batch_size=128``).
    """
    from deeprl.agent import make_agent
    from deeprl.api import compose
    from deeprl.offline.d4rl import write_d4rl
    from deeprl.train.collector import Collector
    from deeprl.train.trainer import build_env, resolve_device, seed_everything

    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise UserError(f"unknown dataset kind {unknown[0]!r}; kinds: {', '.join(KINDS)}")
    cfg = compose("sac", env, list(overrides))
    from omegaconf import OmegaConf

    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    name = str(env_cfg["name"])
    out = Path(out)
    minari_root = Path(minari_root or out / "minari") if "minari" in formats else None
    targets = _targets(out, name, list(kinds), overwrite, minari_root)
    torch_device = resolve_device(device)
    seed_everything(seed)
    train_steps = int(train_steps or cfg.train.total_steps)
    snapshot_every = int(snapshot_every or max(1, train_steps // 40))
    options = OmegaConf.to_container(cfg.agent, resolve=True)
    options.pop("name")
    num_envs = int(env_cfg.get("num_envs") or options.get("num_envs") or 1)
    options["num_envs"] = num_envs

    train_env = build_env(env_cfg, num_envs, torch_device)
    score_env = build_env(env_cfg, min(score_episodes, collect_envs), torch_device)
    agent = make_agent("sac", train_env.spec, num_envs, torch_device, options,
                       total_steps=train_steps)
    buffer = agent.make_buffer()
    collector = Collector(train_env, agent, seed=seed)
    policy = sac_policy(agent)

    snapshots: list[tuple[int, dict, float]] = []  # (env step, weights, return)

    def snapshot(step: int) -> None:
        value = score(score_env, policy, snapshot_episodes, seed + 1)
        snapshots.append((step, copy.deepcopy(agent.state_dict()), value))
        _say(f"SAC step {step:,}: return {value:.1f} ({snapshot_episodes} episodes)")

    started = time.perf_counter()
    _say(f"training SAC on {train_env.spec.id} for {train_steps:,} env steps")
    snapshot(0)
    replay = Recorder()
    while collector.steps < train_steps:
        prev = collector.steps
        state = mujoco_states(train_env)
        transition = collector.step()
        buffer.add(transition)
        step = {k: transition[k] for k in
                ("obs", "action", "reward", "next_obs", "terminated", "truncated")}
        if state is not None:
            step["qpos"], step["qvel"] = state
        replay.add(step)
        agent.update(buffer, collector.steps)
        if collector.steps // snapshot_every > prev // snapshot_every:
            snapshot(collector.steps)
    if snapshots[-1][0] != collector.steps:
        snapshot(collector.steps)
    train_env.close()

    uniform = uniform_policy(score_env.spec, torch_device,
                             torch.Generator(torch_device).manual_seed(seed))
    ref_min = score(score_env, uniform, score_episodes, seed + 2)
    trained = snapshots[1:]  # the random initialisation is neither medium nor expert
    expert = max(trained, key=lambda s: s[2])
    agent.load_state_dict(expert[1])
    ref_max = score(score_env, policy, score_episodes, seed + 3)
    target = ref_min + medium_fraction * (ref_max - ref_min)
    medium = next((s for s in trained if s[2] >= target), expert)
    _say(f"references over {score_episodes} episodes: random {ref_min:.1f}, expert {ref_max:.1f} "
         f"(step {expert[0]:,}); medium: step {medium[0]:,} (return {medium[2]:.1f}, target "
         f"{target:.1f})")

    common = {
        "algorithm": "SAC (deeprl)", "generator": "deeprl-dataset", "env": env,
        "env_id": train_env.spec.id, "seed": seed, "train_steps": collector.steps,
        "score_episodes": score_episodes,
        "action_low": np.asarray(train_env.spec.action_space.low, np.float32),
        "action_high": np.asarray(train_env.spec.action_space.high, np.float32),
    }
    if ref_max > ref_min:
        common.update(ref_min_score=ref_min, ref_max_score=ref_max)
    else:
        _say(f"warning: the expert ({ref_max:.1f}) is no better than random ({ref_min:.1f}), "
             f"so the files carry no reference scores (no normalized score); raise "
             f"--train-steps")
    if train_env.spec.max_episode_steps is not None:
        common["max_episode_steps"] = int(train_env.spec.max_episode_steps)
    collect_env = build_env(env_cfg, collect_envs, torch_device)
    steps_per_env = max(1, math.ceil(dataset_steps / collect_envs))
    policies = {"random": snapshots[0], "medium": medium, "expert": expert}
    data: dict[str, dict[str, np.ndarray]] = {}
    metadata: dict[str, dict[str, Any]] = {}
    for kind in ("random", "medium", "expert"):
        if kind not in kinds and not (kind in ("medium", "expert") and "medium-expert" in kinds):
            continue
        step, weights, value = policies[kind]
        agent.load_state_dict(weights)
        data[kind] = rollout(collect_env, policy, steps_per_env, seed + 10 + len(data))
        metadata[kind] = {**common, "kind": kind, "iteration": step, "policy_return": value,
                          **_policy_weights(weights)}
    if "medium-replay" in kinds:
        upto = medium[0] // num_envs
        data["medium-replay"] = replay.d4rl(upto, keep_partial=True)
        metadata["medium-replay"] = {**common, "kind": "medium-replay", "iteration": medium[0],
                                     "policy_return": medium[2]}
    if "medium-expert" in kinds:
        shared = set(data["medium"]) & set(data["expert"])
        data["medium-expert"] = {k: np.concatenate([data["medium"][k], data["expert"][k]])
                                 for k in data["medium"] if k in shared}
        metadata["medium-expert"] = {**common, "kind": "medium-expert",
                                     "iteration": np.asarray([medium[0], expert[0]])}
    collect_env.close()
    score_env.close()

    empty = [kind for kind in kinds if not data[kind]]
    if empty:
        raise UserError(
            f"the {empty[0]} dataset holds no whole episode; raise --dataset-steps (or "
            f"--train-steps for medium-replay); nothing was written"
        )
    written = {}
    for kind in kinds:
        written[kind] = write_d4rl(targets[kind], data[kind], metadata[kind])
        episodes = int((data[kind]["terminals"] | data[kind]["timeouts"]).sum())
        _say(f"wrote {written[kind]} ({len(data[kind]['rewards']):,} steps, {episodes} episodes)")
        if "minari" in formats:
            _write_minari(name, kind, data[kind], train_env.spec.id, env_cfg, metadata[kind],
                          minari_root)
    _say(f"done in {time.perf_counter() - started:.0f} s")
    return written


def _policy_weights(weights: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The actor's weights as D4RL's ``metadata/policy/*`` entries."""
    return {f"policy/{k}": v.cpu().numpy() for k, v in weights.items() if k.startswith("actor.")}


def _minari_id(name: str, kind: str) -> str:
    return f"deeprl/{name}/{kind}-v0"


def _write_minari(name, kind, data, env_id, env_cfg, metadata, root) -> None:
    from deeprl.offline.minari import episodes_from_flat, write_minari

    dataset_id = _minari_id(name, kind)
    gym_id = env_id if env_cfg.get("backend") != "mujoco" else env_cfg.get("task", env_id)
    write_minari(
        dataset_id, episodes_from_flat(data), env_id=gym_id, root=root,
        ref_min_score=metadata.get("ref_min_score"), ref_max_score=metadata.get("ref_max_score"),
        algorithm_name="SAC (deeprl)",
        description=f"{kind} data of {name} made by deeprl-dataset (D4RL's recipe)",
    )
    _say(f"wrote Minari dataset {dataset_id} under {root}")


# ---- command line -------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deeprl-dataset",
        description="Make offline datasets with D4RL's recipe (random, medium, expert, "
        "medium-replay, medium-expert) from the project's SAC.",
        epilog="Example: deeprl-dataset --env pendulum --out datasets/pendulum",
    )
    p.add_argument("--env", required=True, help="env config name: pendulum, mujoco/hopper, ...")
    p.add_argument("--out", default=None, help="output folder (default datasets/<env>)")
    p.add_argument("--train-steps", type=int, default=None,
                   help="SAC env steps (default: the tuned config's train.total_steps)")
    p.add_argument("--snapshot-every", type=int, default=None,
                   help="env steps between actor snapshots (default train-steps / 40)")
    p.add_argument("--snapshot-episodes", type=int, default=5,
                   help="episodes scoring each snapshot")
    p.add_argument("--dataset-steps", type=int, default=1_000_000,
                   help="env steps collected for random, medium and expert each")
    p.add_argument("--score-episodes", type=int, default=100,
                   help="episodes of the reference scores (random and expert)")
    p.add_argument("--medium-fraction", type=float, default=1 / 3,
                   help="medium: first snapshot this far from random to expert return")
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of kinds")
    p.add_argument("--collect-envs", type=int, default=10,
                   help="env copies collecting the datasets and scoring")
    p.add_argument("--format", default="d4rl", choices=("d4rl", "minari", "both"),
                   help="d4rl files always; minari (or both) also writes Minari datasets")
    p.add_argument("--minari-root", default=None, help="Minari datasets folder (<out>/minari)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("overrides", nargs="*", help="SAC overrides, e.g. agent.batch_size=128")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    for flag in ("train_steps", "snapshot_every", "snapshot_episodes", "dataset_steps",
                 "score_episodes", "collect_envs"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            print(f"deeprl-dataset: --{flag.replace('_', '-')} must be at least 1, got {value}",
                  file=sys.stderr)
            sys.exit(2)
    try:
        generate(
            args.env, args.out or Path("datasets") / args.env.replace("/", "-"),
            train_steps=args.train_steps, snapshot_every=args.snapshot_every,
            snapshot_episodes=args.snapshot_episodes, dataset_steps=args.dataset_steps,
            score_episodes=args.score_episodes, medium_fraction=args.medium_fraction,
            kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()),
            collect_envs=args.collect_envs, seed=args.seed, device=args.device,
            overrides=tuple(args.overrides),
            formats=("d4rl", "minari") if args.format != "d4rl" else ("d4rl",),
            minari_root=args.minari_root, overwrite=args.overwrite,
        )
    except UserError as exc:
        print(f"deeprl-dataset: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("deeprl-dataset: interrupted; no file was written over", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
