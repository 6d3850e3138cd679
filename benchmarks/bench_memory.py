"""Memory of a training step: peak RSS on the CPU (demo profile) and peak GPU memory (paper profile).

    python benchmarks/bench_memory.py [--steps 3] [--out results/benchmarks/memory.json] [--quick]
    python benchmarks/bench_memory.py --device cuda [--steps 3]      # on a machine with a GPU

CPU (always): for each backbone (vit, cnn) and method (source_only, dacs, quadmix), a FRESH
Python process builds the demo-profile Trainer on synthetic-video, pre-loads its batches, then
runs `--steps` real `Trainer.train_step`s (the first QuadMix step has no templates yet, so at
least 2 are run). Reported: the process's peak RSS (getrusage ru_maxrss: Python, torch, data,
model and the steps) and its rise during the steps (peak after the steps minus peak before them:
what the step itself adds: activations, gradients, optimiser state, templates); quadmix / dacs
and quadmix / source_only of that rise.

GPU (`--device cuda`, when CUDA is available): the paper profile (MiT-B5 + DAFormer head and
DeepLabV2 ResNet-101; crop 1024 x 512, batch 1 source + 1 target, mixed precision as the trainer
uses it) on the synthetic data, `--pretrained none` (random weights: memory does not depend on
the values), quadmix and dacs: torch.cuda.max_memory_allocated / max_memory_reserved over the
steps, and the card's name. Without CUDA this part says "not measured" and gives only the static
lower bound (weights, gradients, optimiser state and the EMA teacher, counted from the number of
parameters: not a measurement).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

METHODS = ("source_only", "dacs", "quadmix")
PAPER_VARIANTS = {"vit": "mit_b5", "cnn": "resnet101"}
NOT_MEASURED = "not measured: no GPU on this machine"


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure_one(backbone: str, method: str, profile: str, steps: int, device: str) -> dict[str, Any]:
    """In THIS process (call it in a fresh one): build, pre-load, run `steps` train_steps."""
    from udass.config import build_config
    from udass.train import Trainer

    over: dict[str, Any] = {"model.pretrained": None} if profile == "paper" else {}
    cfg = build_config("synthetic-video", backbone, method, profile, over)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, device=device, progress=False)
        if method == "quadmix":
            _ = trainer.long_tail
        batches = trainer.batches(steps)
        cuda = trainer.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        before = _rss_mib()
        for source, target in batches:
            trainer.train_step(source, target)
        out: dict[str, Any] = {
            "backbone": backbone, "variant": cfg.model.variant, "method": method, "profile": profile,
            "steps": steps, "crop_hw": list(cfg.data.crop_size),
            "batch": [cfg.data.batch_source, cfg.data.batch_target],
            "peak_rss_mib": round(_rss_mib(), 1), "peak_rss_before_steps_mib": round(before, 1),
            "step_rss_rise_mib": round(_rss_mib() - before, 1),
        }
        if cuda:
            torch.cuda.synchronize()
            out.update(device=torch.cuda.get_device_name(trainer.device),
                       amp=str(trainer.amp_dtype), max_memory_allocated_mib=round(
                           torch.cuda.max_memory_allocated() / 2**20, 1),
                       max_memory_reserved_mib=round(torch.cuda.max_memory_reserved() / 2**20, 1))
    return out


def in_fresh_process(backbone: str, method: str, profile: str, steps: int, device: str,
                     threads: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", backbone, method,
           "--profile", profile, "--steps", str(steps), "--device", device, "--threads", str(threads)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=benchlib.REPO)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def static_lower_bound(backbone: str) -> dict[str, Any]:
    """MiB of the paper network's fp32 state that a step keeps: student and EMA-teacher weights
    (all parameters), gradients and optimiser state of the trainable ones (AdamW: 2 moments for
    vit; SGD: momentum for cnn, whose BatchNorm is frozen). Counted on the meta device (no memory
    used); activations, the feature-fusion layer and allocator overhead are NOT included."""
    from udass.models import build_model

    with torch.device("meta"):
        model = build_model(backbone, 19, PAPER_VARIANTS[backbone], bn="batch")
    n_all = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    states = 2 if backbone == "vit" else 1
    nbytes = 4 * (2 * n_all + (1 + states) * n_train)
    return {"variant": PAPER_VARIANTS[backbone], "params": n_all, "trainable_params": n_train,
            "what": "student + teacher weights, gradients, optimiser state; no activations "
                    "(counted, not measured)", "mib": round(nbytes / 2**20, 1)}


def run(quick: bool = False, steps: int = 3, device: str = "cpu", threads: int = 1) -> dict[str, Any]:
    steps = max(steps, 2)
    profile = "test" if quick else "demo"
    combos = [("vit", "quadmix")] if quick else [(b, m) for b in ("vit", "cnn") for m in METHODS]
    result: dict[str, Any] = {
        "what": "peak RSS of demo-profile training steps on the CPU (each in a fresh process); peak "
                "GPU memory of paper-profile steps when CUDA is available",
        "command": benchlib.command_line(), "machine": benchlib.machine(device),
        "benchmark": "synthetic-video", "cpu": {"profile": profile, "steps": steps, "runs": []},
    }
    runs = result["cpu"]["runs"]
    for b, m in combos:
        runs.append(in_fresh_process(b, m, profile, steps, "cpu", threads))
        print(json.dumps(runs[-1]), flush=True)
    rise = {(r["backbone"], r["method"]): r["step_rss_rise_mib"] for r in runs}
    result["cpu"]["ratios"] = {
        b: {f"quadmix/{m}": benchlib.ratio(rise[b, "quadmix"], rise[b, m])
            for m in ("dacs", "source_only") if (b, m) in rise and (b, "quadmix") in rise}
        for b in ("vit", "cnn") if (b, "quadmix") in rise}
    gpu: dict[str, Any] = {"profile": "paper", "crop_hw": [512, 1024], "batch": [1, 1],
                           "command": "python benchmarks/bench_memory.py --device cuda",
                           "static_lower_bound": {b: static_lower_bound(b) for b in PAPER_VARIANTS}}
    if device.startswith("cuda") and torch.cuda.is_available():
        gpu["status"] = "measured"
        gpu["runs"] = [in_fresh_process(b, m, "paper", steps, device, threads)
                       for b in PAPER_VARIANTS for m in ("dacs", "quadmix")]
        gpu["device"] = gpu["runs"][0].get("device")
    else:
        gpu["status"] = NOT_MEASURED if not torch.cuda.is_available() else "not measured: run with --device cuda"
    result["gpu"] = gpu
    return result


def main() -> None:
    ap = benchlib.parser(__doc__, "memory.json")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda to measure the paper profile too")
    ap.add_argument("--profile", default="demo", help=argparse.SUPPRESS)
    ap.add_argument("--one", nargs=2, metavar=("BACKBONE", "METHOD"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.one:  # internal: one measurement in this (fresh) process, JSON on the last line
        print(json.dumps(measure_one(a.one[0], a.one[1], a.profile, a.steps, a.device)))
        return
    benchlib.save(run(a.quick, a.steps, a.device, a.threads), a.out)


if __name__ == "__main__":
    main()
