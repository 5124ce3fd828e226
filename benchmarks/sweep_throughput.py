"""Sweep throughput, runs per hour: the ``classic_mini`` experiment (PPO, 3 classic tasks x 3
seeds) through Hydra's joblib launcher and through its Ray launcher on a local Ray cluster.

Both launchers run one job per CPU core (joblib's ``n_jobs=-1``; a cluster of ``os.cpu_count()``
CPUs, one per Ray task). The time is the sweep command's wall time, driver start-up included,
report off; the Ray cluster is started before and stopped after the timing (it is long-lived in
use). ``--steps`` shortens every run (the experiment's 30k by default).

    python benchmarks/sweep_throughput.py                 # needs pip install "deeprl[ray]"
    python benchmarks/sweep_throughput.py --steps 5000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deeprl.train.distributed import free_port

RUNS = 9  # classic_mini: cartpole, acrobot, pendulum x seeds 0, 1, 2


def sweep(launcher: list[str], steps: int, sweep_dir: Path) -> float:
    """Wall seconds of the classic_mini sweep with the given launcher overrides."""
    cmd = [sys.executable, "-m", "deeprl.train", "-m", "+experiment=classic_mini", *launcher,
           f"train.total_steps={steps}", "train.eval_every=0", "train.checkpoint_every=0",
           f"hydra.sweep.dir={sweep_dir}", "~hydra.callbacks.report"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr)
    assert len(list(sweep_dir.glob("*/eval.json"))) == RUNS, proc.stderr
    return time.perf_counter() - started


@contextlib.contextmanager
def ray_cluster(cpus: int):
    """A local Ray cluster in its own process group (stopped by signalling that group only)."""
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
    log = Path(temp_dir) / "start.log"
    cluster = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
    )
    try:
        while "Ray runtime started" not in log.read_text():
            if cluster.poll() is not None:
                sys.exit(log.read_text())
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cluster.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            cluster.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cluster.pid, signal.SIGKILL)
        cluster.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30_000)
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        joblib = sweep(["hydra/launcher=joblib"], args.steps, Path(tmp) / "joblib")
        with ray_cluster(cpus) as address:
            ray = sweep(["hydra/launcher=ray", f"hydra.launcher.ray.init.address={address}"],
                        args.steps, Path(tmp) / "ray")
    print(f"classic_mini, {RUNS} runs x {args.steps:,} steps, {cpus} CPUs")
    print("| launcher | wall s | runs/hour | ratio |\n|---|---|---|---|")
    for name, wall in (("joblib", joblib), ("ray", ray)):
        print(f"| {name} | {wall:.0f} | {RUNS * 3600 / wall:,.0f} | {joblib / wall:.2f}x |")


if __name__ == "__main__":
    main()
