"""The training loop: source -> buffer -> update, with evaluation, logging and checkpoints.

The trainer is agent-agnostic. Its data source is online (an env stepped by a collector, filling
the agent's buffer; progress counts env steps) or offline (a read-only dataset; progress counts
gradient updates), as the agent's ``source`` declares; on- and off-policy agents differ only in
their buffer and in when ``Agent.update`` decides to learn. A run directory holds::

    config.yaml        resolved configuration
    metrics.jsonl      one JSON object per logging step (``step``, ``train/...``, ``eval/...``)
    tb/                TensorBoard events
    checkpoints/       last.pt (atomic) and the buffer it names, written every
                       ``train.checkpoint_every`` steps, on SIGINT/SIGTERM and at the end
                       (data-parallel runs: every other rank's rank<r>-<step>.pt beside it)
    eval.json          the final evaluation; its presence marks the run as finished
    agent.safetensors  the final agent, self-contained (``deeprl.load_agent``, ``deeprl-eval``)
    shap.csv, ...      the agent's ``explain`` outputs at the end (tree agents: SHAP table, plot)
    videos/            per evaluation: eval_<step>.mp4 (``train.eval_video``) and the agent's
                       ``eval_media`` (e.g. Dreamer's open_loop_<step>.mp4)
"""

from __future__ import annotations

import random
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from deeprl.agent import Agent, agent_registry, make_agent
from deeprl.envs.registry import make_env
from deeprl.errors import UserError
from deeprl.io import load_checkpoint, save_checkpoint, write_json_atomic
from deeprl.logging import RunLogger, format_duration
from deeprl.train import distributed
from deeprl.train.policy_eval import EVAL_SEED_OFFSET, add_normalized_score, evaluate_policy
from deeprl.train.sources import OfflineSource, OnlineSource

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


def build_env(env_cfg: DictConfig | dict, num_envs: int, device: torch.device):
    """The vector env an ``env`` config describes, with ``num_envs`` copies."""
    if isinstance(env_cfg, DictConfig):
        env_cfg = OmegaConf.to_container(env_cfg, resolve=True)
    options = {
        k: v for k, v in env_cfg.items() if k not in ("name", "backend", "id", "num_envs")
    }
    return make_env(
        env_cfg["name"],
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
        cfg: the full config (``agent``, ``env``, ``seed``, ``device``, ``train``, and
            ``dataset`` for offline agents).
        run_dir: where outputs go; if it holds a checkpoint the run continues from it.
    """

    def __init__(self, cfg: DictConfig, run_dir: str | Path) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        train = cfg.train
        if train.threads:
            torch.set_num_threads(int(train.threads))
        # Data-parallel ranks (deeprl.train.distributed) step their own env copies, seeded apart.
        self.world = distributed.world()
        self.device = self.world.device(resolve_device(str(cfg.device)))
        seed = int(cfg.seed) + self.world.seed_offset
        seed_everything(seed)

        agent_options = OmegaConf.to_container(cfg.agent, resolve=True)
        agent_name = agent_options.pop("name")
        agent_cls = agent_registry()[agent_name]
        self.env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
        eval_envs = int(train.eval_envs or train.eval_episodes)
        if agent_cls.source == "offline":
            dataset_cfg = cfg.get("dataset")
            if not dataset_cfg:
                raise UserError(
                    f"agent={agent_name} learns from a dataset: choose one with dataset=<name>"
                )
            from deeprl.datasets import load_dataset

            dataset = load_dataset(OmegaConf.to_container(dataset_cfg, resolve=True), self.device)
            self.env_cfg = dataset.env or self.env_cfg
            spec, num_envs = dataset.spec, 1
            self.eval_env = build_env(self.env_cfg, eval_envs, self.device)
            _check_dataset_env(spec, self.eval_env.spec, dataset.recorded_env)
        else:
            if cfg.get("dataset"):
                raise UserError(
                    f"agent={agent_name} learns online from an env; drop the dataset "
                    f"(~dataset) or choose an offline agent"
                )
            num_envs = cfg.env.get("num_envs") or agent_options.get("num_envs") or 1
            num_envs //= self.world.size
            agent_options["num_envs"] = num_envs
            env = build_env(self.env_cfg, num_envs, self.device)
            spec = env.spec
            self.eval_env = build_env(self.env_cfg, eval_envs, self.device)
        self.agent: Agent = make_agent(
            agent_name, spec, num_envs, self.device, agent_options,
            total_steps=int(train.total_steps) // self.world.size,
        )
        if self.world.size > 1:
            distributed.share_agent(self.agent)
        # The dataset's score map (D4RL's normalized score), reported beside the return.
        self.normalizer = dataset.normalizer if agent_cls.source == "offline" else None
        if agent_cls.source == "offline":
            self.source = OfflineSource(dataset)
        else:
            self.source = OnlineSource(env, self.agent, seed=seed)
        self.last_eval: dict | None = None
        self.best: dict | None = None  # the best evaluation so far: return_mean/std, step
        self.learned = False  # whether the agent has made an update yet
        # The last update's metrics, logged at every log step until the next update (so
        # checkpointed: a resume between an update and the next log line logs the same).
        self.update_metrics: dict[str, float | torch.Tensor] = {}
        self.stopped_by: int | None = None  # the signal that interrupted train(), if any
        self.wandb_id: str | None = None  # the W&B run this run logs to (logger=wandb)
        # Setup succeeded: from here on the directory holds this run.
        self.run_dir.mkdir(parents=True, exist_ok=True)

    @property
    def buffer(self):
        """The buffer the agent learns from (the replay or rollout online, the dataset offline)."""
        return self.source.buffer

    # ---- checkpoints ----------------------------------------------------------------------------
    def save(self) -> None:
        """Checkpoint the run. An online buffer (a replay can hold gigabytes) goes to its own
        file, named by step and written first, so ``last.pt`` always points at a complete
        buffer; a dataset is not saved (it is read again on resume). Data-parallel ranks other
        than 0 write their state (env, buffer, RNG) to ``rank<r>-<step>.pt`` first; rank 0's
        ``last.pt`` follows them."""
        step = self.source.steps
        checkpoints = self.run_dir / CHECKPOINT.parent
        prefix = f"rank{self.world.rank}-" if self.world.rank else ""
        state = {
            "step": step,
            "world_size": self.world.size,
            "agent": self.agent.checkpoint_state(),
            "source": self.source.state_dict(),
            # last_eval: a run killed after its final checkpoint still writes eval.json on resume
            "progress": {"learned": self.learned, "best": self.best, "last_eval": self.last_eval,
                         "wandb_id": self.wandb_id,
                         "update_metrics": {k: float(v) for k, v in self.update_metrics.items()}},
            "rng": {"torch": torch.get_rng_state()},
        }
        if self.source.persistent:
            state["buffer_file"] = f"{prefix}buffer-{step}.pt"
            buffer_state = {"buffer": self.buffer.state_dict()}
            save_checkpoint(checkpoints / state["buffer_file"], buffer_state)
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        if self.world.rank:
            save_checkpoint(checkpoints / f"{prefix}{step}.pt", state)
        self.world.barrier()
        if self.world.rank:
            return
        save_checkpoint(self.run_dir / CHECKPOINT, state)
        for old in checkpoints.glob("*-*.pt"):  # buffers and ranks' files of earlier steps
            if not old.name.endswith(f"-{step}.pt"):
                old.unlink()

    def restore(self) -> int:
        state = load_checkpoint(self.run_dir / CHECKPOINT, map_location=self.device)
        if self.world.rank:
            own = self.run_dir / CHECKPOINT.parent / f"rank{self.world.rank}-{state['step']}.pt"
            state = load_checkpoint(own, map_location=self.device)
        self.agent.load_checkpoint_state(state["agent"])
        if self.source.persistent:
            buffer_path = self.run_dir / CHECKPOINT.parent / state["buffer_file"]
            buffer_state = load_checkpoint(buffer_path, map_location=self.device)["buffer"]
            self.buffer.load_state_dict(buffer_state)
        self.source.load_state_dict(state["source"])
        self.learned = bool(state["progress"]["learned"])
        self.best = state["progress"]["best"]
        self.last_eval = state["progress"].get("last_eval")  # absent in older checkpoints
        self.wandb_id = state["progress"]["wandb_id"]
        self.update_metrics = state["progress"].get("update_metrics", {})  # absent in older ones
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        return self.source.steps * self.world.size

    # ---- evaluation ---------------------------------------------------------------------------
    def run_evaluation(self, step: int, logger: RunLogger) -> dict:
        """Evaluate the current policy; keep its weights as ``agent_best.safetensors`` when it
        is the best evaluation so far (as Stable-Baselines3's ``EvalCallback``)."""
        train = self.cfg.train
        seed = int(self.cfg.seed) + EVAL_SEED_OFFSET
        episodes = int(train.eval_episodes)
        started = time.perf_counter()
        report = evaluate_policy(
            self.agent,
            self.eval_env,
            episodes=episodes,
            seed=seed,
            deterministic=bool(train.eval_deterministic),
            max_episode_steps=train.eval_max_episode_steps,
            progress=lambda done, steps: logger.eval_progress(step, done, episodes, steps, started),
        )
        report["step"] = step
        if self.normalizer is not None:
            add_normalized_score(report, self.normalizer)
        logger.eval_done(step, report, time.perf_counter() - started)
        if self.best is None or report["return_mean"] > self.best["return_mean"]:
            self.best = {k: report[k] for k in ("return_mean", "return_std", "step")}
            self.agent.save(self.run_dir / "agent_best.safetensors", env=self.env_cfg)
        self.last_eval = report
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
        self._write_eval_media(step, logger)
        return report

    def _write_eval_media(self, step: int, logger: RunLogger) -> None:
        """The agent's own videos of this evaluation (``Agent.eval_media``), if any."""
        videos = self.agent.eval_media(self.buffer)
        if not videos:
            return
        from deeprl.envs.render import add_video, write_mp4

        for name, video in videos.items():
            frames = video.cpu().numpy()
            write_mp4(frames, self.run_dir / "videos" / f"{name}_{step}.mp4")
            if logger.writer is not None:
                add_video(logger.writer, f"eval/{name}", frames, step)

    def _video_env(self):
        return build_video_env(self.env_cfg, self.device)

    # ---- loop ---------------------------------------------------------------------------------
    def _start_line(self, start: int, total: int) -> str:
        cfg = self.cfg
        env = self.eval_env.spec.id
        copies = getattr(self.source, "env", None)
        copies = f", {copies.num_envs} copies" if copies is not None else ""
        if self.world.size > 1:
            copies += f" x {self.world.size} processes"
        dataset = cfg.get("dataset")
        data = f" | dataset {dataset.name}" if dataset else ""
        label = f" {cfg.name}" if cfg.get("name") else ""
        tags = f" [{', '.join(cfg.tags)}]" if cfg.get("tags") else ""
        what = f"resuming at {start:,}/{total:,}" if start else f"{total:,}"
        return (
            f"deeprl: run{label}{tags} -> {self.run_dir} | agent {self.agent.name} "
            f"({self.agent.model_size()}) | env {env}{copies}{data} | device {self.device} | "
            f"{what} {self._unit}"
        )

    @property
    def _unit(self) -> str:
        return "updates" if self.agent.source == "offline" else "env steps"

    def _no_update_warning(self, step: int) -> str:
        config = getattr(self.agent, "config", None)
        known = [f"agent.{k}={getattr(config, k)}" for k in ("learning_starts", "batch_size")
                 if hasattr(config, k)]
        hint = f" (it learns from {' and '.join(known)})" if known else ""
        return (
            f"deeprl: warning: the run ended at step {step:,} before agent={self.agent.name} "
            f"made its first update{hint}: its evaluation is of the untrained policy. Raise "
            f"train.total_steps, or let the agent start learning sooner."
        )

    def _make_logger(self, total: int, start: int) -> RunLogger:
        cfg, train = self.cfg, self.cfg.train
        backends = []
        if cfg.get("logger") == "wandb":
            from deeprl.wandb_backend import WandbBackend

            wandb = WandbBackend(
                self.run_dir, resolved_config(cfg, self.device), project=cfg.wandb.project,
                name=cfg.get("name"), tags=list(cfg.get("tags") or ()), mode=cfg.wandb.mode,
                resume_id=self.wandb_id, entity=cfg.wandb.entity,
            )
            self.wandb_id = wandb.run_id
            backends.append(wandb)
        return RunLogger(
            self.run_dir, total, progress=train.progress, start_step=start,
            progress_every=float(train.progress_every), unit=self._unit, backends=backends,
        )

    def train(self) -> dict | None:
        """Train to ``train.total_steps``; returns the final evaluation (None if interrupted,
        with the signal in ``stopped_by``)."""
        cfg, train = self.cfg, self.cfg.train
        total = int(train.total_steps)
        eval_every = int(train.eval_every or 0)
        log_every = int(train.log_every)
        ckpt_every = int(train.checkpoint_every or 0)
        start = self.restore() if (self.run_dir / CHECKPOINT).exists() else 0
        main = self.world.is_main  # the run's outputs (evaluation, logs, files) are rank 0's
        if not start and main:
            # A fresh start (possibly over a run killed before its first checkpoint).
            shutil.rmtree(self.run_dir / "tb", ignore_errors=True)
        if main:
            write_config(self.run_dir, cfg, self.device)
        logger = self._make_logger(total, start) if main else distributed.SilentLogger()
        logger.say(self._start_line(start, total))
        step = start
        with _StopSignal() as stop:
            while step < total:
                prev, step = step, self.source.advance() * self.world.size
                metrics = self.agent.update(self.buffer, step)
                if metrics is not None:
                    self.update_metrics, self.learned = metrics, True
                evaluate_now = _crossed(eval_every, prev, step) or step >= total
                if main and (_crossed(log_every, prev, step) or evaluate_now):
                    record = {f"train/{k}": float(v) for k, v in self.update_metrics.items()}
                    record.update(self.source.pop_stats())
                    if evaluate_now:
                        report = self.run_evaluation(step, logger)
                        record["eval/return_mean"] = report["return_mean"]
                        record["eval/return_std"] = report["return_std"]
                        if "success_rate" in report:
                            record["eval/success_rate"] = report["success_rate"]
                        if "normalized_score" in report:
                            record["eval/normalized_score"] = report["normalized_score"]
                    if step >= total and not self.learned:
                        record["warning/no_update"] = 1.0
                    logger.log(step, record)
                logger.progress(step)
                if _crossed(ckpt_every, prev, step):
                    self.save()
                # Ranks stop together, at an update: their common points besides the end.
                signum = stop.received
                if self.world.size > 1:
                    signum = self.world.agree_stop(signum) if metrics is not None else None
                if signum is not None:
                    self.stopped_by = signum
                    break
        self.save()
        if not main:
            return None
        if self.stopped_by is not None:
            logger.close(step)
            print(
                f"deeprl: stopped by signal {self.stopped_by} at step {step:,}; checkpoint "
                f"saved. Continue with: deeprl-train resume={self.run_dir}",
                file=sys.stderr,
            )
            return None
        self.agent.save(self.run_dir / "agent.safetensors", env=self.env_cfg)
        self.agent.explain(self.eval_env, int(cfg.seed) + EVAL_SEED_OFFSET, self.run_dir)
        final = {**self.last_eval, "best": self.best, "learned": self.learned}
        write_json_atomic(self.run_dir / "eval.json", final)
        logger.say(
            f"deeprl: done: eval return {final['return_mean']:.2f} +- {final['return_std']:.2f}"
            f" (best {self.best['return_mean']:.2f} at step {self.best['step']:,}) | "
            f"{step:,} {self._unit} in {format_duration(logger.elapsed)} | {self.run_dir}"
        )
        logger.close(step)
        if not self.learned:
            print(self._no_update_warning(step), file=sys.stderr)
        self.source.close()
        self.eval_env.close()
        return final


def write_config(run_dir: Path, cfg: DictConfig, device: torch.device) -> None:
    """``config.yaml``: the resolved config, with the device actually used."""
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved_config(cfg, device)))


def resolved_config(cfg: DictConfig, device: torch.device | None = None) -> dict:
    """The config as plain data, interpolations resolved and ``device`` as used (``auto`` ->
    ``cpu``/``cuda``), as ``config.yaml`` records it."""
    data = OmegaConf.to_container(cfg, resolve=True)
    data["device"] = str(device if device is not None else resolve_device(str(cfg.device)))
    return data


def build_video_env(env_cfg: dict, device: torch.device):
    """One env copy that renders frames: torch-native tasks are shown through gymnasium's
    implementation of the same dynamics; suites and gym ids render their own."""
    env_cfg = dict(env_cfg)
    if env_cfg.get("backend", "torch") == "torch":
        env_cfg = {"name": env_cfg["name"], "backend": "gym"}
    if env_cfg["backend"] == "gym":
        env_cfg["make_kwargs"] = {**(env_cfg.get("make_kwargs") or {}), "render_mode": "rgb_array"}
    else:
        env_cfg["render"] = True
    return build_env(env_cfg, 1, device)


def _check_dataset_env(data: Any, env: Any, recorded_env: str | None = None) -> None:
    """The eval env must have the dataset's observation and action spaces."""
    choice = f"env={recorded_env}" if recorded_env else "env=<name>"
    for what in ("observation_space", "action_space"):
        a, b = getattr(data, what), getattr(env, what)
        if type(a) is not type(b) or a.shape != b.shape:
            raise UserError(
                f"the dataset {data.id}'s {what.removesuffix('_space')}s ({_space_text(a)}) do "
                f"not match the eval env {env.id}'s ({_space_text(b)}); choose the env the data "
                f"was recorded on with {choice}"
            )


def _space_text(space: Any) -> str:
    """'box (3,)', 'discrete ()': a space's kind and shape, for messages."""
    return f"{type(space).__name__.lower()} {tuple(space.shape)}"
