"""Memory and time of HRDA at the paper crop on the CPU: peak RSS of the student's forward +
backward, and of the teacher's pseudo-label inference.

    python benchmarks/bench_hrda_memory.py [--variant mit_b5] [--batches 1,2] [--passes 2]
                                           [--threads 2] [--out runs/benchmarks/hrda_memory.json]

For each batch size, in a FRESH Python process: `build_model("vit", 19, variant)` (random
weights: memory does not depend on the values) wrapped in `HRDAModel` (context = the 1024 x 1024
crop at 0.5 = 512 x 512, detail 512 x 512), a batch of 1024 x 1024 one-frame clips and random
labels, then `--passes` x (zero_grad, training forward, `multi_resolution_loss`, backward) in
fp32. Reported: peak RSS (getrusage ru_maxrss) before the passes (Python, torch, weights, inputs)
and after them, their difference (what one pass adds: activations kept for the backward,
gradients), and the seconds of each pass (the first one includes allocator warm-up). A second
fresh process measures the teacher's HRDA inference on the same crops (no gradient: the context
pass plus 9 overlapping 512 x 512 detail windows), which a training step adds.

This is the student pass alone, not a whole training step (no EMA teacher copy, no optimiser
state, no second forward for mixed samples, no MIC pass); a GPU figure is not measured here.
`--quick` runs MiT-tiny at 64 x 64 (tests).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

DEFAULT_OUT = benchlib.REPO / "runs" / "benchmarks" / "hrda_memory.json"


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure_one(mode: str, variant: str, batch: int, crop: int, detail: int, passes: int) -> dict[str, Any]:
    """In THIS process (call it in a fresh one): `passes` student training passes (mode "train")
    or teacher inference passes (mode "teacher") of HRDA on batch x crop x crop clips."""
    from udass.method.losses import multi_resolution_loss
    from udass.models import build_model, count_parameters
    from udass.models.hrda import HRDAModel

    torch.manual_seed(0)
    model = HRDAModel(build_model("vit", 19, variant), detail_size=(detail, detail),
                      eval_window=(crop, crop), eval_stride=(crop // 2, crop // 2))
    frames = torch.rand(batch, 1, 3, crop, crop)
    flows = torch.zeros(batch, 0, 2, crop, crop)
    labels = torch.randint(0, 19, (batch, crop, crop))
    before = _rss_mib()
    seconds = []
    if mode == "train":
        model.train()
        for _ in range(passes):
            t0 = time.perf_counter()
            model.zero_grad(set_to_none=True)
            out = model(frames, flows)
            multi_resolution_loss(out, labels)["total"].backward()
            del out
            seconds.append(round(time.perf_counter() - t0, 2))
    else:
        model.eval()
        for _ in range(passes):
            t0 = time.perf_counter()
            with torch.no_grad():
                model(frames, flows)
            seconds.append(round(time.perf_counter() - t0, 2))
    after = _rss_mib()
    return {"mode": mode, "variant": variant, "batch": batch, "crop_hw": [crop, crop],
            "context_hw": [crop // 2, crop // 2], "detail_hw": [detail, detail],
            "params": count_parameters(model), "passes": passes,
            "peak_rss_before_mib": round(before, 1), "peak_rss_mib": round(after, 1),
            "pass_rss_rise_mib": round(after - before, 1), "seconds_per_pass": seconds}


def in_fresh_process(mode: str, variant: str, batch: int, crop: int, detail: int, passes: int,
                     threads: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", mode, "--variant", variant,
           "--batches", str(batch), "--crop", str(crop), "--detail", str(detail),
           "--passes", str(passes), "--threads", str(threads)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=benchlib.REPO)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def run(variant: str = "mit_b5", batches: tuple[int, ...] = (1, 2), crop: int = 1024,
        detail: int = 512, passes: int = 2, threads: int = 2, teacher: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = {
        "what": "peak RSS and seconds of HRDA student training passes (forward + backward, fp32) "
                "and teacher inference passes on the CPU, each configuration in a fresh process",
        "command": benchlib.command_line(), "machine": benchlib.machine("cpu"), "runs": [],
        "gpu": "not measured: no GPU on this machine" if not torch.cuda.is_available() else
               "not measured by this script (CPU only)",
    }
    for batch in batches:
        for mode in ("train", "teacher") if teacher else ("train",):
            result["runs"].append(in_fresh_process(mode, variant, batch, crop, detail, passes, threads))
            print(json.dumps(result["runs"][-1]), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="mit_b5")
    ap.add_argument("--batches", default="1,2", help="comma-separated batch sizes")
    ap.add_argument("--crop", type=int, default=1024, help="full-resolution training crop (square)")
    ap.add_argument("--detail", type=int, default=512, help="detail crop (square)")
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-teacher", action="store_true", help="skip the teacher inference runs")
    ap.add_argument("--quick", action="store_true", help="MiT-tiny at 64 x 64 (tests)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--one", choices=("train", "teacher"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    batches = tuple(int(b) for b in a.batches.split(","))
    if a.quick:
        a.variant, a.crop, a.detail = "mit_tiny", 64, 32
    if a.one:  # internal: one measurement in this (fresh) process, JSON on the last line
        print(json.dumps(measure_one(a.one, a.variant, batches[0], a.crop, a.detail, a.passes)))
        return
    benchlib.save(run(a.variant, batches, a.crop, a.detail, a.passes, a.threads,
                      teacher=not a.no_teacher), a.out)


if __name__ == "__main__":
    main()
