"""Data-parallel training over processes with ``torch.distributed`` (gloo on CPU, NCCL on GPUs).

``train.world_size=N`` starts N processes on this machine (``torch.multiprocessing``; this process
is rank 0), or ``torchrun --nproc_per_node=N -m deeprl.train ...`` starts them (its ``RANK``,
``WORLD_SIZE`` and ``MASTER_ADDR``/``MASTER_PORT`` set up the process group). Agents with
``data_parallel = True`` support it: ``agent=ppo``, ``agent=dreamer`` and ``agent=drama``. The
split follows CleanRL's ``ppo_atari_multigpu.py``: the run's env copies (``agent.num_envs``), its
env-step budget (``train.total_steps``) and a replay agent's batches (``agent.batch_size``,
Drama's ``agent.imagine_batch``) are divided among the ranks, so one update sees the same number
of samples, and the run makes the same number of updates, as a single process would. Each rank
steps its own env copies with its own seed (``seed + rank * RANK_SEED_STRIDE``) into its own
buffer (Dreamer and Drama sample their batch share from their own replay); the gradients are
averaged over the ranks at the end of every backward (one flat ``all_reduce`` of the parameters
that backward reached, queued on autograd's engine by the first parameter's post-accumulate-grad
hook, as DDP averages them before any gradient clipping and the optimizer step), so the ranks
hold identical weights after every update, also with several backwards and optimizers per update
(a world model's, then an actor-critic's). Statistics the agents keep besides their weights merge
over the ranks too (:mod:`deeprl.nets.normalize`: PPO's observation and return normalisers, the
imagination actor-critic's return percentiles and input normaliser, Drama's BatchNorm running
statistics), so the ranks' buffers stay identical as well.
Evaluation, logging and the run's outputs are rank 0's; every rank checkpoints its own state
(env, buffer, RNG, per-copy agent buffers) and the ranks agree to stop at an update.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch import nn

from deeprl.errors import UserError

#: Rank r seeds its RNGs and env copies with ``seed + r * RANK_SEED_STRIDE`` (rank 0: the seed).
RANK_SEED_STRIDE = 1_000_003
# A rank waits this long at a collective (rank 0 evaluating, a slow checkpoint) before failing.
_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (rank 0 of 1 without torch.distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def seed_offset(self) -> int:
        return self.rank * RANK_SEED_STRIDE

    def device(self, device: torch.device) -> torch.device:
        """A CUDA rank uses the GPU of its local rank."""
        if self.size > 1 and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def agree_stop(self, signum: int | None) -> int | None:
        """The signal any rank received (all ranks call this at the same loop iteration)."""
        if self.size == 1:
            return signum
        flag = torch.tensor([signum or 0], device=_collective_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def world() -> World:
    """The running process group's world, or a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    rank = dist.get_rank()
    # torchrun says which GPU of its node a rank has; train_parallel's ranks share one machine.
    return World(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def _collective_device() -> torch.device:
    if dist.get_backend() == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _backend(device: str) -> str:
    return "nccl" if _uses_cuda(device) else "gloo"


def _uses_cuda(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def check_world_size(cfg: DictConfig, agent_cls: type) -> None:
    """A data-parallel run needs an agent that supports it, a process per device, and env copies
    and (replay agents) an ``agent.batch_size`` that split evenly among the ranks.

    Raises:
        UserError: naming the bad value and the fix.
    """
    size = int(cfg.train.world_size)
    if size == 1:
        return
    if not getattr(agent_cls, "data_parallel", False):
        raise UserError(
            f"train.world_size={size}: agent={agent_cls.name} does not train data-parallel "
            f"yet (agent=ppo, dreamer and drama do); use train.world_size=1"
        )
    device = str(cfg.device)
    if _uses_cuda(device):
        available, what = torch.cuda.device_count(), "CUDA devices"
    else:
        # One process per core: more would only time-share the cores and slow every rank.
        available, what = os.cpu_count() or 1, "CPU cores"
    # torchrun across nodes: this node's share of the ranks.
    here = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    if here > available:
        raise UserError(
            f"train.world_size={size} puts {here} processes on this machine, which has "
            f"{available} {what}: use train.world_size<={available}"
        )
    num_envs = int(cfg.env.get("num_envs") or cfg.agent.get("num_envs") or 1)
    if num_envs % size:
        raise UserError(
            f"train.world_size={size} splits the run's {num_envs} env copies among the ranks: "
            f"choose agent.num_envs (or env.num_envs) divisible by {size}"
        )
    for key in ("batch_size", "imagine_batch"):  # a replay agent's batches (Dreamer, Drama)
        batch = cfg.agent.get(key)
        if batch is not None and int(batch) % size:
            raise UserError(
                f"train.world_size={size} splits agent.{key}={batch} among the ranks: "
                f"choose agent.{key} divisible by {size}"
            )


def share_agent(agent: nn.Module) -> None:
    """Give every rank rank 0's weights, and average the gradients over the ranks at the end of
    every backward (before clipping and the optimizer step, as DDP), in one ``all_reduce`` per
    dtype: one optimizer step then keeps the ranks identical.

    Only the parameters this backward reached are averaged, so an agent with several backwards
    and optimizers per update (a world model's, then an actor-critic's) averages each part's
    gradients once; a gradient left from an earlier backward is already averaged, and one this
    backward adds to it is averaged into it (mean(g_old + g_r) = g_old + mean(g_r))."""
    for tensor in [*agent.parameters(), *agent.buffers()]:
        dist.broadcast(tensor.data, src=0)
    params = [p for p in agent.parameters() if p.requires_grad]
    size = dist.get_world_size()
    queued = [False]
    reached: set[int] = set()  # ids of the parameters this backward accumulated into

    def average() -> None:
        queued[0] = False
        groups: dict[tuple, list[torch.Tensor]] = {}
        # In the parameters' order, the same on every rank (not the hooks' firing order).
        for param in params:
            if id(param) in reached:
                groups.setdefault((param.grad.dtype, param.grad.device), []).append(param.grad)
        reached.clear()
        for grads in groups.values():
            flat = torch.cat([g.flatten() for g in grads])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat.div_(size)
            offset = 0
            for grad in grads:
                grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
                offset += grad.numel()

    def queue(param: torch.Tensor) -> None:
        reached.add(id(param))
        # The first gradient of a backward schedules the averaging for its end (as DDP does).
        if not queued[0]:
            queued[0] = True
            torch.autograd.Variable._execution_engine.queue_callback(average)

    for param in params:
        param.register_post_accumulate_grad_hook(queue)


class SilentLogger:
    """The logger of ranks other than 0: the run's output is rank 0's."""

    elapsed = 0.0
    writer = None

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that no one listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _init(device: str, rank: int, size: int, address: str) -> None:
    if _uses_cuda(device):
        torch.cuda.set_device(rank)
    dist.init_process_group(_backend(device), init_method=address, rank=rank,
                            world_size=size, timeout=_TIMEOUT)


def _train_rank(index: int, cfg: DictConfig, run_dir: str, size: int, address: str) -> None:
    """Ranks 1..N-1 (started by :func:`train_parallel`)."""
    from deeprl.train.trainer import Trainer

    _init(str(cfg.device), index + 1, size, address)
    try:
        Trainer(cfg, run_dir).train()
    finally:
        dist.destroy_process_group()


def train_parallel(cfg: DictConfig, run_dir: Path):
    """Train with ``train.world_size`` processes on this machine; this one is rank 0. Returns
    rank 0's :class:`~deeprl.train.trainer.Trainer`."""
    import torch.multiprocessing as mp

    from deeprl.train.trainer import Trainer

    size = int(cfg.train.world_size)
    address = f"tcp://127.0.0.1:{free_port()}"
    others = mp.start_processes(_train_rank, args=(cfg, str(run_dir), size, address),
                                nprocs=size - 1, join=False, start_method="spawn")
    _init(str(cfg.device), 0, size, address)
    try:
        trainer = Trainer(cfg, run_dir)
        trainer.train()
    finally:
        dist.destroy_process_group()
        while not others.join():
            pass
    return trainer


def init_torchrun(device: str) -> World:
    """Join the process group torchrun set up (``env://``)."""
    if not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", 0))
        if _uses_cuda(device):
            torch.cuda.set_device(local)
        dist.init_process_group(_backend(device), timeout=_TIMEOUT)
    return world()


def broadcast_text(text: str) -> str:
    """Rank 0's ``text`` on every rank (as bytes in tensors: nothing is unpickled)."""
    device = _collective_device()
    data = torch.tensor(list(text.encode()), dtype=torch.uint8, device=device)
    length = torch.tensor([data.numel()], device=device)
    dist.broadcast(length, src=0)
    if dist.get_rank():
        data = torch.empty(int(length.item()), dtype=torch.uint8, device=device)
    dist.broadcast(data, src=0)
    return bytes(data.cpu().tolist()).decode()


def saved_world_size(run_dir: Path) -> int:
    """The world size a run directory's saved config records (1 for runs from before it)."""
    saved = OmegaConf.load(run_dir / "config.yaml")
    return int(OmegaConf.select(saved, "train.world_size", default=1) or 1)
