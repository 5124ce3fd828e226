"""Sweeps through Hydra's Ray launcher on a local Ray cluster: a killed sweep re-run with the same
command finishes every run without redoing the finished ones, as with joblib (test_sweep.py)."""

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import _cli_env, run_cli
from deeprl.train.cli import main
from deeprl.train.distributed import free_port

# deeprl[ray]: Ray and Hydra's Ray launcher plugin (the CLI asks for both).
RAY_INSTALLED = all(importlib.util.find_spec(name) is not None
                    for name in ("ray", "hydra_plugins.hydra_ray_launcher"))


def assert_user_error(proc, fragment: str) -> None:
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("deeprl-train: ") and fragment in last, proc.stderr


def _running_jobs(pgid: int) -> list[int]:
    """Ray workers of the cluster's process group that are running a Hydra job."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getpgid(int(entry.name)) == pgid:
                if b"_run_job" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
    return pids


@pytest.fixture
def ray_cluster(tmp_path):
    """A local Ray cluster (`ray start --head`) in its own process group; stopped afterwards."""
    port = free_port()
    log = tmp_path / "ray-start.log"
    # Ray's socket paths must stay under 107 bytes: pytest's tmp_path is too deep for them.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**_cli_env(), "OMP_NUM_THREADS": "1"}
    cluster = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
         f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while "Ray runtime started" not in log.read_text():
            assert cluster.poll() is None and time.time() < deadline, log.read_text()
            time.sleep(0.2)
        yield cluster, f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cluster.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            cluster.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):  # whatever still runs in its group
            os.killpg(cluster.pid, signal.SIGKILL)
        cluster.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def sweep_command(sweep_dir: Path, address: str) -> list[str]:
    return [sys.executable, "-m", "deeprl.train", "-m", "hydra/launcher=ray",
            f"hydra.launcher.ray.init.address={address}", "seed=0,1,2,3",
            f"hydra.sweep.dir={sweep_dir}", "~hydra.callbacks.report", "train.total_steps=8192",
            "train.eval_every=4096", "train.checkpoint_every=1024", "train.eval_episodes=2"]


@pytest.mark.slow
@pytest.mark.skipif(not RAY_INSTALLED, reason='needs pip install "deeprl[ray]"')
def test_killed_ray_sweep_resumes_without_redoing_finished_runs(tmp_path, ray_cluster):
    cluster, address = ray_cluster
    sweep = tmp_path / "sweep"
    driver = subprocess.Popen(sweep_command(sweep, address), cwd=tmp_path, env=_cli_env(),
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list(sweep.glob("*/eval.json")):
        assert driver.poll() is None, "the sweep ended before it was killed"
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    # Ray stops the jobs of a dead driver; the re-run must not race them for the run directories.
    deadline = time.time() + 60
    while _running_jobs(cluster.pid):
        assert time.time() < deadline, "Ray kept the killed sweep's jobs running"
        time.sleep(0.2)
    finished = {p: p.stat().st_mtime_ns for p in sweep.glob("*/eval.json")}
    assert 1 <= len(finished) < 4

    done = subprocess.run(sweep_command(sweep, address), cwd=tmp_path, env=_cli_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(list(sweep.glob("*/eval.json"))) == 4
    for path, mtime in finished.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.parent.name} was run again"
    assert done.stdout.count("already finished") + done.stderr.count("already finished") == len(
        finished
    )


@pytest.mark.skipif(RAY_INSTALLED, reason="Ray is installed")
def test_ray_launcher_without_ray_names_the_extra(tmp_path):
    proc = run_cli("-m", "hydra/launcher=ray", "seed=0,1", cwd=tmp_path)
    assert_user_error(proc, 'pip install "deeprl[ray]"')


@pytest.mark.skipif(not RAY_INSTALLED, reason='needs pip install "deeprl[ray]"')
def test_ray_launcher_without_a_cluster(capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(sys, "argv", sys.argv[:])
    with pytest.raises(SystemExit) as exit_info:
        main(["-m", "hydra/launcher=ray", "seed=0,1"])
    err = capsys.readouterr().err
    if "found no running Ray cluster" not in err:
        pytest.skip("a Ray cluster is running on this machine")
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "ray start --head" in err
