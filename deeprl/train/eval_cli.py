"""``deeprl-eval``: evaluate a saved agent (a finished run's directory or an agent file).

As rl-baselines3-zoo's ``enjoy``: episodes of the saved policy, deterministic or not, with
another seed or a video, the report written as JSON next to the run. By default it repeats the
run's final evaluation (the same env, episodes, eval copies and seed), so on a finished run it
reproduces ``eval.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from deeprl.agent import load_agent, read_agent_header
from deeprl.errors import UserError
from deeprl.eval.normalize import Affine
from deeprl.io import write_json_atomic
from deeprl.train.policy_eval import EVAL_SEED_OFFSET, add_normalized_score, evaluate_policy

PROG = "deeprl-eval"


def _locate(path: Path) -> tuple[Path, dict[str, Any]]:
    """The agent file and the run's ``train`` settings and seed (empty for a bare file)."""
    if path.is_dir():
        file = path / "agent.safetensors"
        if not file.is_file():
            raise UserError(
                f"{path} holds no agent.safetensors: the run has not finished (continue it with "
                f"deeprl-train resume={path}) or is not a deeprl run directory"
            )
        config = path / "config.yaml"
        run = OmegaConf.to_container(OmegaConf.load(config)) if config.is_file() else {}
        return file, run
    if not path.exists():
        raise UserError(f"{path} does not exist; give a run directory or an agent file")
    return path, {}


def _dataset_normalizer(run: dict[str, Any]) -> Affine | None:
    """The score map of the dataset an offline run trained on (None: no dataset, or none
    defined); the dataset is read again, as the trainer reads it on resume."""
    if not run.get("dataset"):
        return None
    from deeprl.datasets import load_dataset

    try:
        return load_dataset(dict(run["dataset"]), torch.device("cpu")).normalizer
    except UserError as exc:
        print(f"{PROG}: no normalized score: {exc}", file=sys.stderr)
        return None


def evaluate_saved(
    path: str | Path,
    episodes: int | None = None,
    seed: int | None = None,
    deterministic: bool | None = None,
    eval_envs: int | None = None,
    video: bool = False,
    device: str = "cpu",
    out: str | Path | None = None,
) -> dict:
    """Evaluate the agent saved at ``path`` (a run directory or an agent file).

    Unset arguments take the run's final-evaluation settings (``train.eval_episodes``,
    ``train.eval_envs``, ``train.eval_deterministic``, reset seed ``seed + 1_000_003``), or 10
    deterministic episodes from seed 1_000_003 for a bare file. Writes the report (with the
    settings used) to ``out``, by default ``eval_seed<S>_<N>ep[_stochastic].json`` next to the
    run, and returns it.
    """
    from deeprl.train.trainer import build_env, build_video_env, resolve_device

    path = Path(path)
    file, run = _locate(path)
    header = read_agent_header(file)
    env_cfg = header.get("env") or run.get("env")
    if not env_cfg:
        raise UserError(
            f"{file} does not say which env it was trained on (saved without env=...); "
            f"evaluate it from Python with deeprl.train.policy_eval.evaluate_policy"
        )
    train = run.get("train", {})
    episodes = episodes or train.get("eval_episodes") or 10
    if episodes < 1 or (eval_envs is not None and eval_envs < 1):
        raise UserError(f"--episodes ({episodes}) and --envs ({eval_envs}) must be at least 1")
    eval_envs = eval_envs or train.get("eval_envs") or episodes
    if seed is None:
        seed = int(run.get("seed", 0)) + EVAL_SEED_OFFSET
    if deterministic is None:
        deterministic = bool(train.get("eval_deterministic", True))
    device = resolve_device(device)

    agent = load_agent(file, device)
    env = build_env(env_cfg, eval_envs, device)
    try:
        report = evaluate_policy(agent, env, episodes, seed, deterministic=deterministic)
    finally:
        env.close()
    report.update(
        agent=str(file), seed=seed, deterministic=deterministic, eval_envs=eval_envs,
        counters=header["counters"],
    )
    normalizer = _dataset_normalizer(run)
    if normalizer is not None:  # an offline run: the dataset's score map, as in eval.json
        add_normalized_score(report, normalizer)
    name = f"eval_seed{seed}_{episodes}ep{'' if deterministic else '_stochastic'}"
    stem = str(path / name if path.is_dir() else file.with_name(f"{file.stem}.{name}"))
    if video:
        from deeprl.envs.render import record_video

        video_path = record_video(
            agent, lambda: build_video_env(env_cfg, device), Path(f"{stem}.mp4"),
            seed=seed, deterministic=deterministic,
        )
        report["video"] = str(video_path)
    out = Path(out) if out else Path(f"{stem}.json")
    write_json_atomic(out, report)
    report["out"] = str(out)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Evaluate a saved deeprl agent: a finished run directory or an agent file "
        "(agent.safetensors). Defaults repeat the run's final evaluation.",
    )
    parser.add_argument("path", help="run directory or agent file")
    parser.add_argument("--episodes", type=int, help="episodes (default: the run's)")
    parser.add_argument("--seed", type=int, help="reset seed of the eval env (default: the "
                        "run's evaluation seed, seed + 1000003)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stochastic", dest="deterministic", action="store_false", default=None,
                      help="sample actions instead of the deterministic policy")
    mode.add_argument("--deterministic", dest="deterministic", action="store_true")
    parser.add_argument("--envs", type=int, help="parallel eval env copies (default: the run's)")
    parser.add_argument("--video", action="store_true", help="also record one episode (mp4)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--out", help="the JSON report to write (default: next to the run)")
    args = parser.parse_args(argv)
    try:
        report = evaluate_saved(
            args.path, episodes=args.episodes, seed=args.seed, deterministic=args.deterministic,
            eval_envs=args.envs, video=args.video, device=args.device, out=args.out,
        )
    except UserError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        sys.exit(130)
    score = (f" | normalized score {report['normalized_score']:.1f} +- "
             f"{report['normalized_score_std']:.1f}" if "normalized_score" in report else "")
    print(
        f"{PROG}: return {report['return_mean']:.2f} +- {report['return_std']:.2f} over "
        f"{report['episodes']} episodes (seed {report['seed']}){score} -> {report['out']}"
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
