"""The W&B backend, offline: logged data lands in the run directory; resume continues the run."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from deeprl.errors import UserError
from deeprl.wandb_backend import WandbBackend

_BLOCK, _HEADER = 32768, 7  # wandb's record log: LevelDB's log format after a 7-byte file header


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline run's ``run-<id>.wandb`` file (wandb has no public
    reader): LevelDB log chunks (crc32, length, type) in 32 KiB blocks, FULL/FIRST/MIDDLE/LAST."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, parts, pos = [], [], _HEADER
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:  # a block's tail too short for a header is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        length, kind = struct.unpack_from("<HB", data, pos + 4)
        parts.append(data[pos + _HEADER : pos + _HEADER + length])
        pos += _HEADER + length
        if kind in (1, 4):  # FULL or LAST: a record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            records.append(record)
            parts = []
    return records


def offline_run(sync_dir: Path, run_id: str) -> list:
    """The records of the offline run ``run_id`` in ``sync_dir``, up to its exit record.
    (wandb's ``finish()`` returns before its service has written the file; the service writes
    it soon after, at the latest when the process exits.)"""
    path = sync_dir / f"run-{run_id}.wandb"
    deadline = time.monotonic() + 10
    while True:
        records = wandb_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        assert time.monotonic() < deadline, f"{path} holds no exit record"
        time.sleep(0.05)


def history(records: list) -> list[dict]:
    return [
        {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in r.history.item
        }
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]


@pytest.fixture
def wandb_home(tmp_path, monkeypatch):
    """wandb installed, with no login and no user settings: what a fresh machine (or CI) has."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / "config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "home" / "cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "home" / "data"))


def test_offline_run_holds_config_and_metrics_and_resumes(tmp_path, wandb_home):
    config = {"agent": {"name": "ppo", "lr": 3e-4}, "seed": 0}
    backend = WandbBackend(
        tmp_path, config, project="deeprl-test", name="cartpole-ppo", tags=["smoke"]
    )
    for step in (0, 64, 128):
        backend.log(step, {"train/loss": 1.0 / (step + 1), "eval/return": float(step)})
    run_id = backend.run_id
    backend.close()
    backend.close()  # a second close is a no-op
    (first_dir,) = tmp_path.glob(f"wandb/offline-run-*-{run_id}")
    assert backend.sync_command == f"wandb sync {first_dir}"

    records = offline_run(first_dir, run_id)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.run_id, run.project, run.display_name, list(run.tags)) == (
        run_id, "deeprl-test", "cartpole-ppo", ["smoke"],
    )  # fmt: skip
    logged = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert logged["agent"] == {"name": "ppo", "lr": 3e-4}
    rows = history(records)
    assert [r["global_step"] for r in rows] == [0, 64, 128]
    assert [r["eval/return"] for r in rows] == [0.0, 64.0, 128.0]
    assert rows[1]["train/loss"] == pytest.approx(1 / 65)

    # wandb names offline run directories by the second: resume in the next one.
    time.sleep(1)
    resumed = WandbBackend(tmp_path, config, project="deeprl-test", resume_id=run_id)
    assert resumed.run_id == run_id
    resumed.log(192, {"eval/return": 192.0})
    resumed.close()
    (resumed_dir,) = set(tmp_path.glob(f"wandb/offline-run-*-{run_id}")) - {first_dir}
    assert resumed.sync_command == f"wandb sync {resumed_dir}"
    assert history(offline_run(resumed_dir, run_id))[-1]["global_step"] == 192


NO_NETWORK = textwrap.dedent(
    """
    import atexit, sys, tempfile
    calls = []
    atexit.register(lambda: print("network:", calls))  # first registered: runs after wandb's

    def hook(event, args):
        if event == "socket.getaddrinfo":
            host = args[0]
        elif event == "socket.connect" and isinstance(args[1], tuple):  # not a unix socket
            host = args[1][0]
        else:
            return
        if host not in ("localhost", "127.0.0.1", "::1"):
            calls.append(host)

    sys.addaudithook(hook)
    from deeprl.wandb_backend import WandbBackend

    backend = WandbBackend(tempfile.mkdtemp(), {"seed": 0}, project="p")
    backend.log(0, {"x": 1.0})
    backend.close()
    """
)


def test_offline_mode_makes_no_network_access(tmp_path, wandb_home):
    """Not even wandb's analytics at exit (a cluster node without internet would wait on it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = subprocess.run(
        [sys.executable, "-c", NO_NETWORK], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "network: []" in result.stdout, result.stdout + result.stderr


def test_video(tmp_path, wandb_home):
    pytest.importorskip("cv2")
    from deeprl.envs.render import write_mp4

    video = write_mp4(np.zeros((4, 16, 16, 3), np.uint8), tmp_path / "eval_0.mp4")
    backend = WandbBackend(tmp_path, {})
    backend.add_video("eval/video", video, step=10)
    backend.close()
    assert list(tmp_path.glob("wandb/offline-run-*/files/media/videos/eval/video_*.mp4"))


def test_disabled_logs_nothing_and_needs_no_wandb(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    backend = WandbBackend(tmp_path, {}, mode="disabled", resume_id="abc")
    backend.log(0, {"x": 1.0})
    backend.close()
    assert backend.run_id == "abc" and backend.sync_command is None
    assert not (tmp_path / "wandb").exists()


def test_missing_wandb_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(UserError, match=r'pip install "deeprl\[wandb\]"'):
        WandbBackend(tmp_path, {})


def test_bad_mode_and_online_without_login_are_one_line(tmp_path, wandb_home):
    with pytest.raises(UserError, match="unknown W&B mode 'ofline'"):
        WandbBackend(tmp_path, {}, mode="ofline")
    # No API key: wandb refuses at once (before any network access).
    with pytest.raises(UserError, match=r"W&B could not start an online run: .*wandb login"):
        WandbBackend(tmp_path, {}, mode="online")
