"""Data-parallel PPO over 2 gloo processes (deeprl/train/distributed.py): identical weights on
every rank after every update, SIGTERM and resume, torchrun, and refused world sizes."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from conftest import _cli_env, interrupt_run, read_jsonl, run_cli
from deeprl.config import compose
from deeprl.train.cli import main
from deeprl.train.distributed import free_port
from deeprl.train.trainer import Trainer


def _train_recording(rank: int, cfg, run_dir: str, address: str, out: str) -> None:
    """One rank of a 2-process run that records its weights after every update."""
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=2)
    trainer = Trainer(cfg, run_dir)
    agent, update, weights, rollouts = trainer.agent, trainer.agent.update, [], []

    def recording_update(buffer, step):
        if buffer.full:
            rollouts.append(buffer.data["obs"].clone())
        metrics = update(buffer, step)
        if metrics is not None:
            weights.append(torch.cat([p.detach().flatten() for p in agent.parameters()]))
        return metrics

    agent.update = recording_update
    trainer.train()
    save_file({"weights": torch.stack(weights), "obs": torch.stack(rollouts)},
              f"{out}/rank{rank}.safetensors")
    dist.destroy_process_group()


def test_ranks_hold_identical_weights_after_every_update(tmp_path):
    cfg = compose(["train.world_size=2", "train.total_steps=2048", "train.eval_every=0",
                   "train.checkpoint_every=0", "train.eval_episodes=2", "train.progress=false"])
    # fork: the ranks start without importing torch again (the CLI's processes are spawned).
    mp.start_processes(_train_recording, nprocs=2, start_method="fork",
                       args=(cfg, str(tmp_path / "run"), f"tcp://127.0.0.1:{free_port()}",
                             str(tmp_path)))
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]
    # 32 env copies x 16 steps per update, split 16/16: 2048 steps are 4 updates.
    assert ranks[0]["weights"].shape[0] == 4
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])
    assert not torch.equal(ranks[0]["weights"][0], ranks[0]["weights"][-1])  # it learned
    assert not torch.equal(ranks[0]["obs"], ranks[1]["obs"])  # each rank has its own envs
    assert (tmp_path / "run" / "eval.json").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        ([f"train.world_size={(os.cpu_count() or 1) + 1}"], "CPU cores"),
        (["train.world_size=2", "agent.num_envs=3", "~tuned"], "divisible by 2"),
        (["train.world_size=2", "agent=dqn"], "agent=dqn does not train data-parallel"),
    ],
)
def test_bad_world_size_is_one_clear_line(tmp_path, args, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*args, f"hydra.run.dir={tmp_path / 'run'}"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deeprl-train: ") and fragment in lines[0]
    assert not (tmp_path / "run").exists()  # refused before anything ran


PARALLEL = ["train.world_size=2", "train.total_steps=16384", "train.eval_every=4096",
            "train.log_every=1024", "train.checkpoint_every=0", "train.eval_episodes=4"]


@pytest.mark.slow
def test_sigterm_and_resume_of_two_processes_matches_uninterrupted(tmp_path):
    reference = tmp_path / "reference"
    proc = run_cli(f"hydra.run.dir={reference}", *PARALLEL, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr

    run_dir = tmp_path / "run"
    interrupt_run(PARALLEL, run_dir, cwd=tmp_path, after_lines=3)
    assert read_jsonl(run_dir / "metrics.jsonl")[-1]["step"] < 16384
    assert list((run_dir / "checkpoints").glob("rank1-*.pt"))
    proc = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resuming at" in proc.stdout
    metrics = (run_dir / "metrics.jsonl").read_text()
    assert metrics == (reference / "metrics.jsonl").read_text()
    assert json.loads((run_dir / "eval.json").read_text()) == json.loads(
        (reference / "eval.json").read_text()
    )
    # A resume cannot change how many processes hold the run's env copies.
    proc = run_cli(f"resume={run_dir}", "train.world_size=1", "train.total_steps=20480",
                   cwd=tmp_path)
    assert proc.returncode == 2 and "train.world_size=2" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_torchrun_reaches_the_single_process_threshold(tmp_path):
    budget = ["seed=0", "train.total_steps=50000", "train.eval_every=0", "train.eval_episodes=10"]
    single = run_cli(f"hydra.run.dir={tmp_path / 'single'}", *budget, cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "deeprl.train",
         f"hydra.run.dir={tmp_path / 'parallel'}", *budget],
        cwd=tmp_path, env=_cli_env(), capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    assert "x 2 processes" in proc.stdout
    for name in ("single", "parallel"):
        report = json.loads((tmp_path / name / "eval.json").read_text())
        assert report["return_mean"] >= 400, (name, report["return_mean"])
