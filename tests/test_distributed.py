"""Data-parallel PPO and Dreamer over 2 gloo processes (deeprl/train/distributed.py): identical
weights (and normaliser statistics) on every rank after every update, SIGTERM and resume,
torchrun, and refused world sizes."""

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
from test_drama import TINY_CLI as DRAMA_TINY_CLI
from test_dreamer import TINY_CLI

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


def _train_recording_state(rank: int, cfg, run_dir: str, address: str, out: str) -> None:
    """One rank of a 2-process run that records its weights after every update and its agent's
    state (weights and buffers) at the end."""
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=2)
    trainer = Trainer(cfg, run_dir)
    agent, update, weights = trainer.agent, trainer.agent.update, []

    def recording_update(buffer, step):
        metrics = update(buffer, step)
        if metrics is not None:
            weights.append(torch.cat([p.detach().flatten() for p in agent.parameters()]))
        return metrics

    agent.update = recording_update
    trainer.train()
    state = {f"state.{k}": v.detach().clone().contiguous() for k, v in agent.state_dict().items()}
    counters = {f"counter.{name}": torch.tensor(getattr(agent, name)) for name in agent.counters}
    save_file({"weights": torch.stack(weights), **state, **counters},
              f"{out}/rank{rank}.safetensors")
    dist.destroy_process_group()


def _run_two_ranks(cfg, tmp_path) -> list[dict[str, torch.Tensor]]:
    mp.start_processes(_train_recording_state, nprocs=2, start_method="fork",
                       args=(cfg, str(tmp_path / "run"), f"tcp://127.0.0.1:{free_port()}",
                             str(tmp_path)))
    return [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]


def test_ppo_ranks_share_their_normalisers(tmp_path):
    cfg = compose(["train.world_size=2", "train.total_steps=1024", "train.eval_every=0",
                   "train.checkpoint_every=0", "train.eval_episodes=2", "train.progress=false",
                   "agent.normalize_obs=true", "agent.normalize_reward=true"])
    ranks = _run_two_ranks(cfg, tmp_path)
    assert ranks[0]["weights"].shape[0] == 2  # 32 env copies x 16 steps: 2 updates
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])
    for name in ("obs_rms.mean", "obs_rms.var", "obs_rms.count", "return_rms.mean",
                 "return_rms.var", "return_rms.count"):
        assert torch.equal(ranks[0][f"state.{name}"], ranks[1][f"state.{name}"]), name
    # Both rollouts of both ranks (2 x 512 steps) went into the statistics.
    assert ranks[0]["state.obs_rms.count"].item() == pytest.approx(1024, abs=1e-3)
    assert ranks[0]["state.return_rms.count"].item() == pytest.approx(1024, abs=1e-3)
    # Each rank keeps the discounted returns of its own env copies.
    assert not torch.equal(ranks[0]["state.running_return"], ranks[1]["state.running_return"])


@pytest.mark.parametrize(
    "agent_args, updates",
    [
        # 4 x 8 replayed steps per update (2 windows per rank), 2 per env step past 100.
        ([*TINY_CLI, "agent.train_ratio=2"], 12),
        # An update per 20 env steps past 100; 2 windows and 4 imagination contexts per rank.
        ([*DRAMA_TINY_CLI, "agent.updates_per_step=0.05"], 10),
    ],
    ids=["dreamer", "drama"],
)
def test_world_model_ranks_hold_identical_weights_and_buffers(tmp_path, agent_args, updates):
    cfg = compose([*agent_args, "env=cartpole", "agent.num_envs=2", "train.world_size=2",
                   "train.total_steps=300", "train.eval_every=0", "train.checkpoint_every=0",
                   "train.eval_episodes=1", "train.progress=false"])
    ranks = _run_two_ranks(cfg, tmp_path)
    assert ranks[0]["counter.grad_steps"].item() == updates
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])
    assert not torch.equal(ranks[0]["weights"][0], ranks[0]["weights"][-1])  # it learned
    assert ranks[0].keys() == ranks[1].keys()
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name


@pytest.mark.parametrize(
    "args, fragment",
    [
        ([f"train.world_size={(os.cpu_count() or 1) + 1}"], "CPU cores"),
        (["train.world_size=2", "agent.num_envs=3", "~tuned"], "divisible by 2"),
        (["train.world_size=2", "agent=dqn"], "agent=dqn does not train data-parallel"),
        (["train.world_size=2", "agent=dreamer", "agent.num_envs=2", "agent.batch_size=5"],
         "agent.batch_size=5"),
        (["train.world_size=2", "agent=drama", "agent.num_envs=2", "agent.imagine_batch=5"],
         "agent.imagine_batch=5"),
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
