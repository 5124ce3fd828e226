"""The training loop: collect -> buffer -> update, with evaluation, logging and checkpoints.

The trainer is agent-agnostic: on-policy and off-policy agents differ only in their buffer and in
when ``Agent.update`` decides to learn. A run directory holds::

    config.yaml        resolved configuration
    metrics.jsonl      one JSON object per logging step (``step``, ``train/...``, ``eval/...``)
    tb/                TensorBoard events
    checkpoints/       last.pt (atomic) and the buffer it names, written every
                       ``train.checkpoint_every`` steps, on SIGINT/SIGTERM and at the end
    eval.json          the final evaluation; its presence marks the run as finished
    agent.safetensors  final weights, loadable anywhere without unpickling
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from deeprl.agent import Agent, make_agent
from deeprl.envs.registry import make_env
from deeprl.errors import UserError
from deeprl.logging import RunLogger
from deeprl.train.checkpoint import load_checkpoint, save_checkpoint
from deeprl.train.collector import Collector
from deeprl.train.evaluate import evaluate

CHECKPOINT = Path("checkpoints") / "last.pt"


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without CUDA is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name} but CUDA is not available here; use device=cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use cpu, cuda, cuda:<index> or auto") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seeds libraries that use the global RNG)
    torch.manual_seed(seed)


def write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def build_env(env_cfg: DictConfig, num_envs: int, device: torch.device):
    options = {
        k: v
        for k, v in OmegaConf.to_container(env_cfg, resolve=True).items()
        if k not in ("name", "backend", "id", "num_envs")
    }
    return make_env(
        env_cfg.name,
        num_envs,
        device=device,
        backend=env_cfg.get("backend", "torch"),
        env_id=env_cfg.get("id"),
        **options,
    )


def _crossed(every: int, prev: int, step: int) -> bool:
    """Whether the step counter passed a multiple of ``every`` (0: never) going prev -> step."""
    return every > 0 and step // every > prev // every


class _StopSignal:
    """Turns SIGINT/SIGTERM into a flag the loop checks once per iteration."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. some launchers): leave signals alone
                pass
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    """Runs one training run described by a composed config in ``run_dir``.

    Args:
        cfg: the full config (``agent``, ``env``, ``seed``, ``device``, ``train``).
        run_dir: where outputs go; if it holds a checkpoint the run continues from it.
    """

    def __init__(self, cfg: DictConfig, run_dir: str | Path) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        train = cfg.train
        if train.threads:
            torch.set_num_threads(int(train.threads))
        self.device = resolve_device(str(cfg.device))
        seed_everything(int(cfg.seed))

        agent_options = OmegaConf.to_container(cfg.agent, resolve=True)
        agent_name = agent_options.pop("name")
        num_envs = cfg.env.get("num_envs") or agent_options.get("num_envs") or 1
        agent_options["num_envs"] = num_envs
        self.env = build_env(cfg.env, num_envs, self.device)
        self.eval_env = build_env(cfg.env, int(train.eval_envs or train.eval_episodes), self.device)
        self.agent: Agent = make_agent(
            agent_name,
            self.env.spec,
            num_envs,
            self.device,
            agent_options,
            total_steps=int(train.total_steps),
        )
        self.buffer = self.agent.make_buffer()
        self.collector = Collector(self.env, self.agent, seed=int(cfg.seed))
        self.last_eval: dict | None = None
        self.last_eval_step = -1

    # ---- checkpoints ----------------------------------------------------------------------------
    def save(self) -> None:
        """Checkpoint the run. The buffer (a replay can hold gigabytes) goes to its own file,
        named by step and written first, so ``last.pt`` always points at a complete buffer."""
        step = self.collector.steps
        checkpoints = self.run_dir / CHECKPOINT.parent
        buffer_file = f"buffer-{step}.pt"
        save_checkpoint(checkpoints / buffer_file, {"buffer": self.buffer.state_dict()})
        state = {
            "step": step,
            "agent": self.agent.checkpoint_state(),
            "buffer_file": buffer_file,
            "collector": self.collector.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
        }
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        save_checkpoint(self.run_dir / CHECKPOINT, state)
        for old in checkpoints.glob("buffer-*.pt"):
            if old.name != buffer_file:
                old.unlink()

    def restore(self) -> int:
        state = load_checkpoint(self.run_dir / CHECKPOINT, map_location=self.device)
        buffer_path = self.run_dir / CHECKPOINT.parent / state["buffer_file"]
        buffer_state = load_checkpoint(buffer_path, map_location=self.device)["buffer"]
        self.agent.load_checkpoint_state(state["agent"])
        self.buffer.load_state_dict(buffer_state)
        self.collector.load_state_dict(state["collector"])
        self.collector.steps = int(state["step"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        return self.collector.steps

    # ---- evaluation ---------------------------------------------------------------------------
    def run_evaluation(self, step: int, logger: RunLogger) -> dict:
        train = self.cfg.train
        seed = int(self.cfg.seed) + 1_000_003
        report = evaluate(
            self.agent,
            self.eval_env,
            episodes=int(train.eval_episodes),
            seed=seed,
            deterministic=bool(train.eval_deterministic),
        )
        report["step"] = step
        self.last_eval, self.last_eval_step = report, step
        if train.eval_video:
            from deeprl.envs.render import record_video

            record_video(
                self.agent,
                self._video_env,
                self.run_dir / "videos" / f"eval_{step}.mp4",
                seed=seed,
                deterministic=bool(train.eval_deterministic),
                writer=logger.writer,
                step=step,
            )
        return report

    def _video_env(self):
        """One env copy that renders frames: torch-native tasks are shown through gymnasium's
        implementation of the same dynamics; suites and gym ids render their own."""
        env_cfg = OmegaConf.to_container(self.cfg.env, resolve=True)
        if env_cfg.get("backend", "torch") == "torch":
            env_cfg = {"name": env_cfg["name"], "backend": "gym"}
        if env_cfg["backend"] == "gym":
            env_cfg["make_kwargs"] = {**(env_cfg.get("make_kwargs") or {}),
                                      "render_mode": "rgb_array"}
        else:
            env_cfg["render"] = True
        return build_env(OmegaConf.create(env_cfg), 1, self.device)

    # ---- loop ---------------------------------------------------------------------------------
    def train(self) -> dict | None:
        """Train to ``train.total_steps``; returns the final evaluation (None if interrupted)."""
        cfg, train = self.cfg, self.cfg.train
        total = int(train.total_steps)
        eval_every = int(train.eval_every or 0)
        log_every = int(train.log_every)
        ckpt_every = int(train.checkpoint_every or 0)
        start = self.restore() if (self.run_dir / CHECKPOINT).exists() else 0
        if start:
            print(f"deeprl: resuming {self.run_dir} from step {start}", file=sys.stderr)
        else:
            # A fresh start (possibly over a run killed before its first checkpoint).
            shutil.rmtree(self.run_dir / "tb", ignore_errors=True)
            (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        logger = RunLogger(self.run_dir, total, progress=train.progress, start_step=start)
        step = start
        update_metrics: dict[str, float | torch.Tensor] = {}
        interrupted = False
        with _StopSignal() as stop:
            while step < total:
                self.buffer.add(self.collector.step())
                prev, step = step, self.collector.steps
                metrics = self.agent.update(self.buffer, step)
                if metrics is not None:
                    update_metrics = metrics
                evaluate_now = _crossed(eval_every, prev, step) or step >= total
                if _crossed(log_every, prev, step) or evaluate_now:
                    record = {f"train/{k}": float(v) for k, v in update_metrics.items()}
                    record.update(self.collector.pop_episode_stats())
                    if evaluate_now:
                        report = self.run_evaluation(step, logger)
                        record["eval/return_mean"] = report["return_mean"]
                        record["eval/return_std"] = report["return_std"]
                        if "success_rate" in report:
                            record["eval/success_rate"] = report["success_rate"]
                    logger.log(step, record)
                logger.progress(step)
                if _crossed(ckpt_every, prev, step):
                    self.save()
                if stop.received is not None:
                    interrupted = True
                    break
        if interrupted:
            self.save()
            logger.close(step)
            print(
                f"deeprl: stopped by signal {stop.received} at step {step}; checkpoint saved. "
                f"Continue with: deeprl-train resume={self.run_dir}",
                file=sys.stderr,
            )
            return None
        self.save()
        from safetensors.torch import save_file

        weights = {k: v.detach().cpu().contiguous() for k, v in self.agent.state_dict().items()}
        save_file(weights, str(self.run_dir / "agent.safetensors"))
        write_json_atomic(self.run_dir / "eval.json", self.last_eval)
        logger.close(step)
        self.env.close()
        self.eval_env.close()
        return self.last_eval
