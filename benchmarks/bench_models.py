"""Speed, memory and FLOPs of the udass models.

    .venv/bin/python benchmarks/bench_models.py [--repeats 15] [--threads 2,1]
                                                [--out results/benchmarks/models.json]

1. Training cost on this CPU: one forward + backward of a clip batch at the demo crop
   (192 x 96, batch 2, K = 2: frame t with gradient, frame t-1 without, temporal fusion,
   cross-entropy (+ 0.1 aux for the CNN)) for the small variants. Median over `--repeats` after
   two warm-up steps, with 2 and with 1 torch thread (on a shared 2-core CPU, 2 threads suffer
   most from other jobs; the minimum approximates an idle machine). Peak memory: the rise of
   the process's peak RSS (getrusage) over the steps, each run in its own fresh subprocess.
2. FLOPs of one frame's forward at 1024 x 512, counted with torch.utils.flop_counter on the meta
   device (counted, not timed: nothing is computed). A FLOP is one multiply or one add
   (FlopCounterMode counts a multiply-accumulate as 2).
Writes JSON (atomically) and prints it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from udass.io import write_json
from udass.models import VARIANTS, build_model, count_parameters

TIMED = ("resnet_mini", "mit_mini", "resnet18", "mit_b0")
COUNTED = ("resnet101", "mit_b5", "resnet18", "mit_b0", "resnet_mini", "mit_mini")
CROP = (96, 192)      # H, W of the demo training crop
BATCH, FRAMES, CLASSES = 2, 2, 19


def time_variant(name: str, repeats: int, threads: int) -> dict:
    """fwd + bwd seconds (median, min, max) and peak-RSS rise of one variant, in this process."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = VARIANTS[name]
    model = build_model(spec.backbone, CLASSES, name, bn="batch").train()
    h, w = CROP
    frames = torch.rand(BATCH, FRAMES, 3, h, w)
    flows = torch.randn(BATCH, FRAMES - 1, 2, h, w)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        out = model(frames, flows)
        labels = torch.randint(0, CLASSES, (BATCH, *out["logits"].shape[-2:]))
        loss = F.cross_entropy(out["logits"], labels)
        if out["aux"] is not None:
            loss = loss + 0.1 * F.cross_entropy(out["aux"], labels)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"variant": name, "backbone": spec.backbone, "params": count_parameters(model),
            "fwd_bwd_ms_median": round(1000 * statistics.median(times), 1),
            "fwd_bwd_ms_min": round(1000 * min(times), 1), "fwd_bwd_ms_max": round(1000 * max(times), 1),
            "repeats": repeats, "peak_rss_rise_mib": round((rss1 - rss0) / 1024, 1)}


def count_flops(name: str, size: tuple[int, int] = (512, 1024)) -> dict:
    """GFLOPs of one frame's forward (K = 1, eval) at `size` (H, W), on the meta device."""
    spec = VARIANTS[name]
    with torch.device("meta"):
        model = build_model(spec.backbone, CLASSES, name).eval()
        frames = torch.empty(1, 1, 3, *size)
        flows = torch.empty(1, 0, 2, *size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(frames, flows)
    by_op = {str(k).replace("aten.", ""): round(v / 1e9, 2)
             for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return {"variant": name, "input_hw": list(size), "params": count_parameters(model),
            "encoder_params": count_parameters(model.encoder),
            "logits_hw": list(out["logits"].shape[-2:]),
            "forward_gflops": round(counter.get_total_flops() / 1e9, 1), "by_op_gflops": by_op}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", default="2,1",
                        help="comma-separated torch thread counts to time (default 2,1)")
    parser.add_argument("--out", default="results/benchmarks/models.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: time one variant, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(time_variant(args.one, args.repeats, int(args.threads))))
        return
    threads = [int(t) for t in str(args.threads).split(",")]
    load_before = os.getloadavg()
    timed = []
    for name in TIMED:  # a fresh process per run: the peak RSS is the variant's own
        for n in threads:
            cmd = [sys.executable, __file__, "--one", name, "--repeats", str(args.repeats),
                   "--threads", str(n)]
            run = subprocess.run(cmd, check=True, capture_output=True, text=True)
            timed.append({**json.loads(run.stdout.strip().splitlines()[-1]), "torch_threads": n})
    result = {
        "command": f"python benchmarks/bench_models.py --repeats {args.repeats} --threads {args.threads}",
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__,
                    "load_average_1min_before_after": [round(load_before[0], 2),
                                                       round(os.getloadavg()[0], 2)],
                    "python": platform.python_version(),
                    "note": "shared CPU (other jobs ran concurrently): timings are indicative"},
        "train_step": {"what": "one forward + backward: frame t with gradient, frame t-1 without, "
                               "temporal fusion, cross-entropy (+0.1 aux for the CNN)",
                       "input": {"batch": BATCH, "frames": FRAMES, "height": CROP[0], "width": CROP[1]},
                       "options": {"bn": "batch", "head": "daformer", "temporal_fusion": True},
                       "results": timed},
        "flops": {"what": "one frame's forward (eval), counted with FlopCounterMode on the meta "
                          "device; multiply-accumulate = 2 FLOPs",
                  "results": [count_flops(n) for n in COUNTED]},
    }
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
