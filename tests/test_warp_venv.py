"""The MuJoCo Warp tests, run in the environment the warp extra needs.

mujoco-warp needs ``mujoco>=3.13`` while metaworld 3.1.1 (in this environment) pins 3.3.0, so the
warp extra lives in a second virtual environment (docs/envs.md). This test sets it up the way the
docs say, once (``.venv/warp``, inside ``.venv`` so that removing it removes both: torch==2.13.0
first, then ``deeprl[warp]``), and runs tests/test_suite_warp.py there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv" / "warp"
# Written last, with the pyproject.toml it was built from: a half-built or stale one is rebuilt.
READY = VENV / "deeprl-ready"


def _install(python: Path, *packages: str) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *packages], check=True, timeout=1200
    )


@pytest.mark.slow  # builds a second environment (minutes) on first use
@pytest.mark.skipif(
    importlib.util.find_spec("mujoco_warp") is not None,
    reason="this environment has the warp extra: it runs tests/test_suite_warp.py directly",
)
def test_warp_backend_in_its_own_environment(tmp_path):
    python = VENV / "bin" / "python"
    built_from = (ROOT / "pyproject.toml").read_text()
    if not READY.exists() or READY.read_text() != built_from:
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        _install(python, "torch==2.13.0")  # the CPU wheel, before anything can pull CUDA ones
        _install(python, "-e", f"{ROOT}[warp]", "pytest", "pytest-xdist")  # pyproject's addopts
        READY.write_text(built_from)
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "test_suite_warp.py")],
        cwd=tmp_path,  # mujoco 4 writes MUJOCO_LOG.TXT (deprecation warnings) into the cwd
        env={**os.environ, "MUJOCO_GL": "egl"}, capture_output=True, text=True,
        timeout=1800,
    )  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "passed" in summary and "skipped" not in summary, summary
