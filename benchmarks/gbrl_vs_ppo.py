"""GBRL PPO (gradient-boosted trees, agents/gbrl.py) against our neural PPO (agents/ppo.py), in one
run: learning curves and env-steps/s on CartPole, Acrobot, MountainCar and MiniGrid DoorKey-5x5.

Each (env, agent, seed) is one ``deeprl-train`` run with the agent's shipped tuned config for that
env where there is one (configs/tuned/<agent>_<env>.yaml), evaluated every ``--evals``-th of the
budget on 10 deterministic episodes. Reported per env and agent: the final eval return (mean over
seeds), the best one, the first step whose eval reached ``--solved`` (CartPole: 475), and the
env steps per second of the run's wall time (the ``deeprl-train`` process, start-up and
evaluations included); the ratio column is GBRL / PPO. Curves go to ``<out>/curves.png``,
numbers to ``<out>/results.json``.

    python benchmarks/gbrl_vs_ppo.py                                  # 3 seeds, full budgets
    python benchmarks/gbrl_vs_ppo.py --envs cartpole --seeds 0 --steps cartpole=20000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENVS = {"cartpole": 100_000, "acrobot": 100_000, "mountaincar": 200_000, "minigrid": 100_000}
AGENTS = ("gbrl_ppo", "ppo")


def run(agent: str, env: str, seed: int, steps: int, evals: int, run_dir: Path) -> dict:
    """One training run; returns its eval curve and wall time."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "deeprl.train", f"agent={agent}", f"env={env}", f"seed={seed}",
         f"train.total_steps={steps}", f"train.eval_every={max(1, steps // evals)}",
         "train.progress=false", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{agent} on {env} seed {seed} failed:\n{proc.stderr[-2000:]}")
    curve = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "eval/return_mean" in record:
            curve.append((record["step"], record["eval/return_mean"]))
    return {"curve": curve, "wall_s": wall, "steps": steps}


def summarize(runs: list[dict], solved: float | None) -> dict:
    finals = [r["curve"][-1][1] for r in runs]
    firsts = []
    for r in runs:
        hit = [step for step, ret in r["curve"] if solved is not None and ret >= solved]
        firsts.append(hit[0] if hit else None)
    return {
        "final_mean": sum(finals) / len(finals),
        "finals": finals,
        "best": max(ret for r in runs for _, ret in r["curve"]),
        "first_solved_step": firsts,
        "steps_per_s": sum(r["steps"] for r in runs) / sum(r["wall_s"] for r in runs),
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.2), squeeze=False)
    for ax, (env, by_agent) in zip(axes[0], results.items(), strict=True):
        for agent, entry in by_agent.items():
            for i, r in enumerate(entry["runs"]):
                steps, returns = zip(*r["curve"], strict=True)
                ax.plot(steps, returns, color="C0" if agent == "gbrl_ppo" else "C1",
                        alpha=0.7, label=agent if i == 0 else None)
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.legend()
    axes[0][0].set_ylabel("eval return")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=list(AGENTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", nargs="*", default=[], metavar="ENV=STEPS",
                        help="budgets other than the defaults, e.g. minigrid=50000")
    parser.add_argument("--evals", type=int, default=10, help="evaluations per run")
    parser.add_argument("--solved", type=float, default=475.0, help="CartPole's threshold")
    parser.add_argument("--out", default="benchmarks/results/gbrl_vs_ppo")
    args = parser.parse_args(argv)
    budgets = dict(ENVS)
    for item in args.steps:
        env, _, steps = item.partition("=")
        budgets[env] = int(steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for env in args.envs:
            results[env] = {}
            for agent in args.agents:
                runs = [run(agent, env, seed, budgets[env], args.evals,
                            Path(tmp) / f"{env}-{agent}-{seed}") for seed in args.seeds]
                solved = args.solved if env == "cartpole" else None
                results[env][agent] = {"runs": runs, **summarize(runs, solved)}
    print("| env | agent | steps | final return (mean; per seed) | best | first >= solved "
          "| env steps/s |")
    print("|---|---|---|---|---|---|---|")
    for env, by_agent in results.items():
        for agent, entry in by_agent.items():
            finals = ", ".join(f"{f:.1f}" for f in entry["finals"])
            print(f"| {env} | {agent} | {budgets[env]:,} | {entry['final_mean']:.1f} "
                  f"({finals}) | {entry['best']:.1f} | {entry['first_solved_step']} "
                  f"| {entry['steps_per_s']:.0f} |")
        if len(by_agent) == 2:
            ratio = by_agent["gbrl_ppo"]["steps_per_s"] / by_agent["ppo"]["steps_per_s"]
            print(f"| {env} | speed ratio gbrl_ppo / ppo | | | | | {ratio:.2f} |")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "curves.png")
    print(f"wrote {out / 'results.json'} and {out / 'curves.png'}")


if __name__ == "__main__":
    main()
