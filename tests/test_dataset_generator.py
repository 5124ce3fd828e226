"""``deeprl-dataset`` on torch-native Pendulum with tiny budgets: the five D4RL-recipe files, their
keys and episode structure, the Minari copies, and an offline CLI run on a generated file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run_cli
from deeprl.datasets import load_dataset
from deeprl.offline.d4rl import read_metadata
from deeprl.offline.generate import KINDS, generate, main
from deeprl.train.eval_cli import evaluate_saved

h5py = pytest.importorskip("h5py")
pytest.importorskip("minari")

REQUIRED = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("datasets")
    files = generate(
        "pendulum", out, train_steps=400, snapshot_every=200, snapshot_episodes=1,
        dataset_steps=400, score_episodes=2, collect_envs=2, seed=0,
        overrides=("agent.learning_starts=100", "agent.batch_size=32"),
        formats=("d4rl", "minari"),
    )
    return out, files


def test_generator_writes_the_five_datasets(generated):
    out, files = generated
    assert sorted(files) == sorted(KINDS)
    sizes = {}
    for kind, path in files.items():
        assert path == out / f"pendulum-{kind}.hdf5"
        with h5py.File(path, "r") as f:
            assert all(key in f for key in REQUIRED), kind
            metadata = read_metadata(f)
            timeouts, terminals = f["timeouts"][()], f["terminals"][()]
            sizes[kind] = len(timeouts)
            assert f["observations"].dtype == np.float32 and f["observations"].shape[1] == 3
            if kind != "medium-replay":  # the replay's actions were not scored by the generator
                assert f["infos/action_log_probs"].shape == (sizes[kind],)
        # Pendulum never terminates; its 200-step time limit is a timeout, not a terminal.
        assert not terminals.any()
        ends = np.flatnonzero(timeouts)
        if kind != "medium-replay":
            np.testing.assert_array_equal(ends + 1, np.arange(200, sizes[kind] + 1, 200))
        assert ends[-1] == sizes[kind] - 1  # whole episodes (the replay's tail cut as a timeout)
        assert metadata["algorithm"] == "SAC (deeprl)" and metadata["kind"] == kind
        assert "iteration" in metadata
    assert sizes["random"] == sizes["medium"] == sizes["expert"] == 400
    assert sizes["medium-expert"] == sizes["medium"] + sizes["expert"]
    medium = read_metadata(h5py.File(files["medium"], "r"))
    assert medium["iteration"] in (200, 400)  # a trained snapshot, never the random init
    assert medium["policy/actor.0.weight"].shape == (256, 3)  # D4RL's metadata/policy/*
    assert sizes["medium-replay"] == medium["iteration"]  # the replay up to the medium policy


def test_generated_datasets_load(generated):
    out, files = generated
    dataset = load_dataset(
        {"name": "minari", "id": "deeprl/pendulum/expert-v0", "root": str(out / "minari")},
        torch.device("cpu"),
    )
    assert len(dataset.buffer) == 400
    assert dataset.env["id"] == "Pendulum-v1"
    # The D4RL file names the env it was recorded on, for the hint when env= does not match.
    dataset = load_dataset({"name": "d4rl", "path": str(files["medium"])}, torch.device("cpu"))
    assert dataset.env is None and dataset.recorded_env == "pendulum"


def test_offline_cli_run_on_a_generated_file(generated, tmp_path):
    out, files = generated
    run_dir = tmp_path / "run"
    result = run_cli(
        "agent=bc", "dataset=d4rl", f"dataset.path={files['medium']}", "env=pendulum",
        "dataset.ref_min_score=-1500", "dataset.ref_max_score=-150", "train.total_steps=50",
        "train.eval_every=25", "train.eval_episodes=2", f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    final = json.loads((run_dir / "eval.json").read_text())
    assert final["normalized_score"] == pytest.approx(
        100 * (final["return_mean"] + 1500) / 1350
    )
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "eval/normalized_score" in line] == [25, 50]
    assert "normalized score" in result.stdout + result.stderr
    # deeprl-eval repeats the final evaluation, normalized score included (the run's dataset)
    report = evaluate_saved(run_dir, out=tmp_path / "again.json")
    assert report["normalized_score"] == pytest.approx(final["normalized_score"])
    assert report["normalized_score_std"] == pytest.approx(final["normalized_score_std"])


def test_generator_refuses_to_write_over(generated, capsys):
    out, files = generated
    before = files["medium"].read_bytes()
    with pytest.raises(SystemExit) as exc:
        main(["--env", "pendulum", "--out", str(out), "--kinds", "medium"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"deeprl-dataset: {files['medium']} exists; choose another --out or pass --overwrite "
        f"to replace it"
    ]
    assert files["medium"].read_bytes() == before
