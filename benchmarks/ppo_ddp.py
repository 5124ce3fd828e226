"""PPO env-steps/s with 1 and 2 data-parallel processes (``train.world_size``, gloo on CPU).

Both runs are ``deeprl-train``'s default PPO on torch-native CartPole (32 env copies x 16 steps
per update; with 2 processes each steps 16 copies, so the updates see the same batch) with the
same ``train.total_steps``, no evaluation before the final one. The figure is the run's own
timing (the ``done`` line: from the first env step to the final evaluation, process start-up and
imports excluded), env steps over all processes per second.

    python benchmarks/ppo_ddp.py                          # 100k steps
    python benchmarks/ppo_ddp.py --steps 20000 --worlds 1 2

On a machine with GPUs the same comparison is (NCCL, one process per GPU)::

    python benchmarks/ppo_ddp.py --device cuda --steps 1000000 --worlds 1 2 4 8
    torchrun --standalone --nproc_per_node=8 -m deeprl.train device=cuda env=atari \\
        env.game=Pong train.total_steps=10000000
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

DONE = re.compile(r"\| ([\d,]+) env steps in ([\d:.]+)s? \|")


def seconds(text: str) -> float:
    """``4.2`` / ``2:03`` / ``1:02:03`` (deeprl.logging.format_duration) in seconds."""
    total = 0.0
    for part in text.split(":"):
        total = total * 60 + float(part)
    return total


def run(world: int, steps: int, device: str, workdir: Path) -> float:
    """Env steps per second of one run with ``world`` processes."""
    cmd = [sys.executable, "-m", "deeprl.train", f"train.world_size={world}",
           f"train.total_steps={steps}", "train.eval_every=0", "train.eval_episodes=2",
           "train.checkpoint_every=0", f"device={device}", "train.progress=false",
           f"hydra.run.dir={workdir / f'world{world}'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        sys.exit(proc.stderr)
    match = DONE.search(proc.stdout)
    return int(match.group(1).replace(",", "")) / seconds(match.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rates = {world: run(world, args.steps, args.device, Path(tmp)) for world in args.worlds}
    base = rates[args.worlds[0]]
    print("| processes | env steps/s | ratio |\n|---|---|---|")
    for world, rate in rates.items():
        print(f"| {world} | {rate:,.0f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
