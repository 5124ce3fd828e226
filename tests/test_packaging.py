"""The package installs as the design card says: one ``deeprl`` with mapped subpackages."""

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"agents": "deeprl.agents", "worldmodels": "deeprl.worldmodels",
          "offline": "deeprl.offline", "configs": "deeprl.configs"}


def test_package_list_covers_every_package_in_the_tree():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for folder, package in [("deeprl", "deeprl"), *MAPPED.items()]:
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]))
    assert found == listed, f"pyproject packages differ from the tree: {found ^ listed}"


@pytest.mark.parametrize("bare", ["agents", "offline", "worldmodels"])
def test_algorithm_folders_are_not_importable_bare(bare):
    proc = subprocess.run([sys.executable, "-c", f"import {bare}"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert f"import deeprl.{bare}" in proc.stderr


def test_wheel_ships_configs_and_trains_from_an_install(tmp_path):
    wheel_dir = tmp_path / "wheel"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheel_dir), str(ROOT)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = wheel_dir.glob("deeprl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("deeprl/configs/config.yaml", "deeprl/configs/tuned/ppo_cartpole.yaml",
                     "deeprl/configs/env/cartpole.yaml", "deeprl/agents/ppo.py",
                     "deeprl/worldmodels/__init__.py", "deeprl/offline/__init__.py",
                     "deeprl/eval/data/atari_scores.csv"):
        assert required in names, required
    assert not any(n.startswith(("agents/", "offline/", "worldmodels/", "configs/"))
                   for n in names)

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(wheel)], check=True)
    # -S skips site-packages' .pth files (the editable install); only the wheel provides deeprl.
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])}
    work = tmp_path / "elsewhere"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-S", "-c",
         "import deeprl, sys; sys.argv[1:] = ['train.total_steps=512', 'hydra.run.dir=run'];"
         "print(deeprl.__file__); from deeprl.train.cli import main; main()"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert str(site) in proc.stdout
    assert (work / "run" / "eval.json").exists()
