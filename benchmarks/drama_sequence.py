"""World-model update time and memory against sequence length: Drama's Mamba-2 world model
against DreamerV3's GRU RSSM and a transformer world model at equal parameter count (issue 13,
point 7; Drama's O(n) claim, Wang et al. 2025, Sec. 4).

Models, on vector observations (so the CNN, the same O(n) cost for every model, does not hide
the sequence model), 6 discrete actions, 32 x 32 latents, 2-layer 256-unit vector MLPs:

* ``drama-mamba2``: :class:`deeprl.worldmodels.drama.DramaWorldModel` with Drama's Mamba-2
  (d_model 512, 2 layers, d_state 16, expand 2, headdim 64) on the PyTorch path: one parallel
  pass over the window (chunked SSD scan).
* ``drama-transformer``: the same world model with the causal transformer core (d_model 512,
  8 heads, layers chosen for the parameter count): one parallel pass, attention O(L^2).
* ``dreamer-rssm-gru``: DreamerV3's RSSM (:class:`deeprl.worldmodels.rssm.RSSM`, GRU core,
  ``deter`` chosen for the parameter count) with the same encoder, decoder and heads: a loop of
  L posterior steps (each step's core input needs the posterior latent of the step before).

One update = the world-model loss (reconstruction, reward, termination/continue, KL terms),
``backward()`` and a LaProp step, on a batch of B windows of L steps. Reported: the median CPU
time of ``--repeats`` updates (process CPU time, one torch thread by default, which stays
steady when other jobs share the machine), and the memory the update keeps for backward: the
bytes of every tensor autograd saves (``torch.autograd.graph.saved_tensors_hooks``, views of one
storage counted once), which is what grows with L (weights and optimizer state do not). Then
the exponent k of time ~ L^k and memory ~ L^k, fitted in log-log over all lengths.

    python benchmarks/drama_sequence.py                          # B 16, L 64 ... 1024
    python benchmarks/drama_sequence.py --batch 2 --lengths 64 256 1024 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from deeprl.optim import LaProp
from deeprl.worldmodels.drama import DramaWorldModel
from deeprl.worldmodels.dreamer_parts import (
    ContinueHead,
    ValueMLPHead,
    VectorDecoder,
    VectorEncoder,
)
from deeprl.worldmodels.rssm import RSSM, world_model_loss

OBS, ACTIONS, UNITS = 64, 6, 256


class RSSMWorldModel(torch.nn.Module):
    """DreamerV3's world model on vectors around the shared RSSM (loss as agents/dreamer.py)."""

    def __init__(self, deter: int) -> None:
        super().__init__()
        self.encoder = VectorEncoder(OBS, UNITS, 2)
        self.rssm = RSSM(ACTIONS, self.encoder.out_dim, deter, 32, 32, 512, "gru")
        self.decoder = VectorDecoder(self.rssm.feature_dim, OBS, UNITS, 2)
        self.reward_head = ValueMLPHead(self.rssm.feature_dim, 256, 1)
        self.cont_head = ContinueHead(self.rssm.feature_dim, 256, 1)

    def loss(self, obs, action, reward, terminated, is_first):
        seen = self.rssm.observe(self.encoder(obs), action, is_first)
        features = self.rssm.features(seen.deter, seen.stoch)
        recon = {"obs": self.decoder.loss(self.decoder(features), obs)}
        reward = self.reward_head.loss(self.reward_head(features), reward)
        cont = self.cont_head.loss(self.cont_head(features), ~terminated)
        return world_model_loss(recon, reward, cont, seen.post_logits, seen.prior_logits)


def build(name: str) -> torch.nn.Module:
    common = {"stoch": 32, "classes": 32, "d_model": 512, "units": UNITS, "head_units": 256}
    if name == "drama-mamba2":
        return DramaWorldModel((OBS,), ACTIONS, sequence="mamba2", sequence_kwargs={
            "n_layers": 2, "d_state": 16, "expand": 2, "headdim": 64, "backend": "torch"},
            **common)
    if name == "drama-transformer":
        return DramaWorldModel((OBS,), ACTIONS, sequence="transformer",
                               sequence_kwargs={"n_layers": 1, "n_heads": 8}, **common)
    if name == "dreamer-rssm-gru":
        return RSSMWorldModel(deter=512)
    raise ValueError(f"unknown model {name!r}")


MODELS = ("drama-mamba2", "drama-transformer", "dreamer-rssm-gru")


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves while ``fn()`` runs (each storage once)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fn()
    loss.backward()
    return sum(storages.values())


def measure(name: str, batch: int, length: int, repeats: int, clock) -> tuple[float, int]:
    torch.manual_seed(0)
    model = build(name)
    optimizer = LaProp(model.parameters(), lr=4e-5, eps=1e-20)
    obs = torch.randn(batch, length, OBS)
    action = F.one_hot(torch.randint(ACTIONS, (batch, length)), ACTIONS).float()
    reward = torch.randn(batch, length)
    terminated = torch.zeros(batch, length, dtype=torch.bool)
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True

    def loss() -> torch.Tensor:
        return model.loss(obs, action, reward, terminated, is_first)["loss"]

    def update() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()

    update()  # warm-up: allocates gradients and optimizer state
    times = []
    for _ in range(repeats):
        start = clock()
        update()
        times.append(clock() - start)
    optimizer.zero_grad(set_to_none=True)
    return statistics.median(times), saved_bytes(loss)


def slope(lengths: list[int], values: list[float]) -> float:
    return float(np.polyfit(np.log(lengths), np.log(values), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("process", "wall"), default="process")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "process" else time.perf_counter
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {args.threads} thread(s), batch {args.batch}, "
          f"{args.clock} time\n")
    print("| model | parameters | L | update (s) | saved for backward (MiB) |")
    print("|---|---|---|---|---|")
    fits = {}
    for name in args.models:
        params = sum(p.numel() for p in build(name).parameters())
        times, memory = [], []
        for length in args.lengths:
            seconds, saved = measure(name, args.batch, length, args.repeats, clock)
            times.append(seconds)
            memory.append(saved)
            print(f"| {name} | {params / 1e6:.2f}M | {length} | {seconds:.3f} | "
                  f"{saved / 2**20:.1f} |", flush=True)
        if len(args.lengths) > 1:
            fits[name] = (slope(args.lengths, times), slope(args.lengths, memory))
    print("\n| model | time ~ L^k | memory ~ L^k |")
    print("|---|---|---|")
    for name, (k_time, k_mem) in fits.items():
        print(f"| {name} | {k_time:.2f} | {k_mem:.2f} |")


if __name__ == "__main__":
    main()
