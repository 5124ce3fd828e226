"""Scaling of sequence models with length: forward+backward time and peak memory (issue 6).

Models at Drama's size (d_model 512, 2 layers, d_state 16, expand 2, headdim 64): Mamba-2 and
Mamba-1 on deeprl's PyTorch path, a 2-layer GRU and a 2-layer causal transformer (8 heads). For
each length L the script reports the median time of a forward pass plus ``backward()`` of the
sum of outputs, and the peak memory of one such pass; then it fits time ~ L^k and memory ~ L^k
by least squares in log-log over L >= --fit-from and prints Markdown tables.

Time on CPU is the process's CPU time per pass by default (``--clock process``): with one torch
thread it equals wall time on an idle core and stays steady when other jobs share the machine.
Every (model, L) is measured in fresh subprocesses (one for memory, one for time) so the
allocations of one measurement do not blur the next. Peak memory:
* CPU: growth of the process's peak resident set (Linux VmHWM, reset through
  /proc/self/clear_refs right before the pass) over its resident set before the pass, with
  MALLOC_MMAP_THRESHOLD_=65536 so tensors are mmap'ed and returned to the OS when freed.
* CUDA: torch.cuda.max_memory_allocated() over memory_allocated() before the pass. On a CUDA
  device the Mamba models also run with mamba-ssm's kernels (``backend="cuda"``) to compare.
Both count activations saved for backward and temporaries, not parameters or their gradients
(a warm-up pass allocates those first).

    python benchmarks/mamba_scaling.py                 # CPU: lengths 64 ... 4096, batch 1
    python benchmarks/mamba_scaling.py --lengths 64 256 1024 --batch 2 --threads 2 --clock wall
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from deeprl.worldmodels import make_sequence_model

DRAMA = {"d_model": 512, "n_layers": 2}
MODELS = {
    "mamba2-torch": ("mamba2", {"d_state": 16, "expand": 2, "headdim": 64, "backend": "torch"}),
    "mamba2-cuda": ("mamba2", {"d_state": 16, "expand": 2, "headdim": 64, "backend": "cuda"}),
    "mamba-torch": ("mamba", {"d_state": 16, "expand": 2, "backend": "torch"}),
    "mamba-cuda": ("mamba", {"d_state": 16, "expand": 2, "backend": "cuda"}),
    "gru": ("gru", {}),
    "transformer": ("transformer", {"n_heads": 8}),
}
CPU_MODELS = ["mamba2-torch", "mamba-torch", "gru", "transformer"]
CUDA_MODELS = list(MODELS)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (the CPU memory figure needs Linux)")


def worker(config: dict) -> dict:
    """Measure one (model, length) in this process: peak MiB or median seconds per pass."""
    torch.set_num_threads(config["threads"])
    torch.manual_seed(0)
    device = torch.device(config["device"])
    kind, kwargs = MODELS[config["model"]]
    model = make_sequence_model(kind, **DRAMA, **kwargs).to(device)
    x = torch.randn(config["batch"], config["length"], DRAMA["d_model"], device=device)
    cuda = device.type == "cuda"

    def one_pass() -> None:
        model.zero_grad(set_to_none=False)  # keep the gradient buffers of the warm-up pass
        y, _ = model(x)
        y.sum().backward()
        if cuda:
            torch.cuda.synchronize()

    one_pass()  # warm-up: first-call overheads (kernel autotuning) and parameter gradients
    if config["measure"] == "memory":
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            one_pass()
            return {"peak_mib": (torch.cuda.max_memory_allocated() - before) / 2**20}
        before = _status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current resident set
        one_pass()
        return {"peak_mib": (_status_kib("VmHWM") - before) / 1024}
    clock = time.process_time if config["clock"] == "process" and not cuda else time.perf_counter
    times = []
    for _ in range(config["repeats"]):
        start = clock()
        one_pass()
        times.append(clock() - start)
    return {"seconds": statistics.median(times)}


def run_worker(config: dict, timeout: float, env: dict | None = None) -> dict | None:
    """Run ``worker`` in a fresh interpreter; None if it failed or timed out."""
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(config)],
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        print(f"  {config['model']} L={config['length']}: timed out after {timeout:.0f} s",
              file=sys.stderr)
        return None
    if proc.returncode != 0:
        print(f"  {config['model']} L={config['length']} failed:\n{proc.stderr[-2000:]}",
              file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_config(config: dict, timeout: float) -> dict | None:
    """Peak memory and time of one (model, length), each in its own fresh process."""
    # Memory: every allocation >= 64 KiB is mmap'ed, so freed tensors leave the resident set.
    memory = run_worker({**config, "measure": "memory"}, timeout,
                        {"MALLOC_MMAP_THRESHOLD_": "65536"})
    # Time: the default allocator, as in training.
    timing = run_worker({**config, "measure": "time"}, timeout)
    if memory is None or timing is None:
        return None
    return memory | timing


def fit_exponent(lengths: list[int], values: list[float]) -> float:
    """Slope k of log(value) = k log(L) + c by least squares."""
    slope, _ = np.polyfit(np.log(lengths), np.log(values), 1)
    return float(slope)


def markdown(results: dict, models: list[str], lengths: list[int], fit_from: int) -> str:
    head = "| L | " + " | ".join(f"{m} ms | {m} MiB" for m in models) + " |"
    lines = [head, "|---:|" + "---:|" * (2 * len(models))]
    for length in lengths:
        cells = []
        for m in models:
            r = results[m].get(length)
            cells += ["-", "-"] if r is None else [f"{1000 * r['seconds']:.1f}",
                                                   f"{r['peak_mib']:.1f}"]
        lines.append(f"| {length} | " + " | ".join(cells) + " |")
    lines += ["", f"Fitted exponents k (value ~ L^k, least squares in log-log, L >= {fit_from}):",
              "", "| model | time k | memory k |", "|---|---:|---:|"]
    for m in models:
        points = [(n, r) for n, r in sorted(results[m].items()) if n >= fit_from]
        if len(points) < 2:
            lines.append(f"| {m} | - | - |")
            continue
        ns = [n for n, _ in points]
        k_time = fit_exponent(ns, [r["seconds"] for _, r in points])
        # Peaks near zero (noise) cannot be fitted in log space.
        mem = [r["peak_mib"] for _, r in points]
        k_mem = fit_exponent(ns, mem) if min(mem) > 0 else math.nan
        lines.append(f"| {m} | {k_time:.2f} | {k_mem:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+",
                        default=[64, 128, 256, 512, 1024, 2048, 4096])
    parser.add_argument("--models", nargs="+", choices=list(MODELS),
                        help="default: all available on the device")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per config")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument("--clock", choices=["process", "wall"], default="process",
                        help="CPU timing clock: process CPU time (default; steady when other "
                             "jobs share the cores, use with --threads 1) or wall time")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: cuda when torch sees a GPU")
    parser.add_argument("--fit-from", type=int, default=256,
                        help="fit exponents over lengths >= this (short ones are overhead-bound)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per config")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    models = args.models or (CUDA_MODELS if device == "cuda" else CPU_MODELS)
    if device == "cpu" and any(m.endswith("-cuda") for m in models):
        parser.error("the -cuda models need --device cuda (a CUDA GPU and mamba-ssm)")
    clock = "wall" if device == "cuda" else args.clock
    print(f"device={device} batch={args.batch} threads={args.threads} repeats={args.repeats} "
          f"clock={clock} torch={torch.__version__}", file=sys.stderr)
    results: dict[str, dict[int, dict]] = {m: {} for m in models}
    for m in models:
        for length in args.lengths:
            config = {"model": m, "length": length, "batch": args.batch, "device": device,
                      "threads": args.threads, "repeats": args.repeats, "clock": clock}
            start = time.perf_counter()
            result = run_config(config, args.timeout)
            if result is not None:
                results[m][length] = result
                print(f"  {m} L={length}: {1000 * result['seconds']:.1f} ms, "
                      f"{result['peak_mib']:.1f} MiB ({time.perf_counter() - start:.0f} s)",
                      file=sys.stderr, flush=True)
    print(markdown(results, models, args.lengths, args.fit_from))


if __name__ == "__main__":
    main()
