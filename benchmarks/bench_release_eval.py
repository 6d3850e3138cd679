"""What evaluating a released network costs: `udass evaluate` of a paper-size network (random
weights, the architecture a converted release has) on the target val clips of a data root, and
the time projected to the real val split (Cityscapes(-Seq) val: 500 clips).

    udass synth --benchmark viper2cityscapes-seq --size paper --out DIR     # real resolutions
    python benchmarks/bench_release_eval.py --data-root DIR [--benchmark B] [--backbone vit|cnn]
                                            [--device cpu] [--threads N] [--out FILE] [--quick]

The checkpoint is written as `udass convert` writes a one-network release (the student, and the
teacher sharing its weights), so `udass evaluate` does what it does for a converted release: the
network once (its teacher record is the same network's) and, on a video benchmark, the temporal
consistency, over every val clip
the root holds (`--allow-partial`: a generated root holds a few). Reported: wall seconds of the
whole evaluation, seconds per clip, peak RSS, and the projection to 500 clips.
--quick: the test profile's network on the tiny generated root (a smoke test of the script).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

from udass.benchmarks import get_benchmark  # noqa: E402
from udass.checkpoint import save_checkpoint  # noqa: E402
from udass.config import build_config  # noqa: E402
from udass.evaluate import evaluate_from_args  # noqa: E402
from udass.models.factory import build_model_from_config  # noqa: E402

VAL_CLIPS = 500   # Cityscapes val and Cityscapes-Seq val: 500 annotated frames


def random_release(benchmark: str, backbone: str, profile: str, path: Path) -> Path:
    """A udass checkpoint of the profile's network with random weights, laid out as a converted
    one-network release (teacher = the student's weights)."""
    cfg = build_config(benchmark, backbone, "quadmix", profile, pretrained=None)
    torch.manual_seed(0)
    net = build_model_from_config(cfg.model, get_benchmark(benchmark).num_classes, pretrained=False)
    weights = net.state_dict()
    save_checkpoint(path, {"config": cfg.to_dict(), "student": {f"net.{k}": v for k, v in weights.items()},
                           "teacher": weights, "step": 0})
    return path


def run(data_root: str | None, benchmark: str = "viper2cityscapes-seq", backbone: str = "vit",
        device: str = "cpu", quick: bool = False) -> dict[str, Any]:
    profile = "test" if quick else "paper"
    if quick:
        benchmark = "synthetic-video"
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = random_release(benchmark, backbone, profile, Path(tmp) / "release.pt")
        args = argparse.Namespace(checkpoint=str(ckpt), benchmark=benchmark, data_root=data_root,
                                  network="student", out=None, device=device, flow_root=None,
                                  allow_partial=True)
        t0 = time.perf_counter()
        rec = evaluate_from_args(args)
        wall = time.perf_counter() - t0
    clips = int(rec["clips"]["evaluated"]) if isinstance(rec.get("clips"), dict) else None
    per_clip = wall / clips if clips else None
    return {
        "what": "udass evaluate of a converted one-network release (random weights): student, "
                "the teacher record (the same network, no second pass) and, for video, temporal consistency, on the val clips of the root",
        "command": benchlib.command_line(), "machine": benchlib.machine(device),
        "benchmark": benchmark, "backbone": backbone, "profile": profile,
        "variant": rec.get("variant"), "clips": rec.get("clips"),
        "miou_student": rec.get("miou"), "miou_teacher": (rec.get("teacher") or {}).get("miou"),
        "wall_seconds": benchlib.sig(wall),
        "seconds_per_clip": None if per_clip is None else benchlib.sig(per_clip),
        "projected_seconds_500_clips": None if per_clip is None else round(per_clip * VAL_CLIPS),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2),
    }


def main() -> None:
    ap = benchlib.parser(__doc__, "release_eval.json")
    ap.add_argument("--data-root", default=None, help="a root holding the benchmark's val split "
                    "(default: none; required unless --quick)")
    ap.add_argument("--benchmark", default="viper2cityscapes-seq")
    ap.add_argument("--backbone", default="vit", choices=("vit", "cnn"))
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.data_root is None and not a.quick:
        ap.error("--data-root DIR is required (a `udass synth --size paper` root)")
    torch.set_num_threads(a.threads)
    benchlib.save(run(a.data_root, a.benchmark, a.backbone, a.device, a.quick), a.out)


if __name__ == "__main__":
    main()
