"""Confusion-matrix accumulation throughput (pixels/s) of `udass.evaluate.ConfusionMatrix` against
numpy bincount on the same data.

    python benchmarks/bench_eval.py [--repeats 7] [--threads 1] [--out results/benchmarks/eval.json]
                                    [--quick]

Data: a batch of 2 label maps at Cityscapes' native 2048 x 1024 (evaluation labels keep their
resolution), 19 classes on 16 x 16 blocks with about 5 % ignore (255) pixels, and a prediction
that agrees with the labels on about 70 % of the pixels. `ConfusionMatrix(19).update(pred, target)`
(int64 tensors, as `evaluate_model` passes them) against the numpy reference on int64 arrays
(`keep = target < C; bincount(target[keep] * C + pred[keep], minlength=C*C)`); conversions are
outside the timing. The two are called in turn (`--repeats` each, after a warm-up); the matrices
must be identical. The figure is torch pixels/s over numpy pixels/s, from the medians.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

from udass.evaluate import ConfusionMatrix  # noqa: E402

C = 19
FULL = (2, 1024, 2048)
QUICK = (2, 32, 64)


def eval_data(shape: tuple[int, int, int], seed: int = 0) -> tuple[Tensor, Tensor]:
    """(pred, target) int64 [N, H, W]: block labels with 255 ignore, a 70 %-correct prediction."""
    g = torch.Generator().manual_seed(seed)
    n, h, w = shape
    small = torch.randint(0, C, (n, -(-h // 16), -(-w // 16)), generator=g)
    small[torch.rand(small.shape, generator=g) < 0.05] = 255
    target = small.repeat_interleave(16, 1).repeat_interleave(16, 2)[:, :h, :w].contiguous()
    noise = torch.randint(0, C, shape, generator=g)
    pred = torch.where(torch.rand(shape, generator=g) < 0.7, target.clamp(max=C - 1), noise)
    return pred, target


def numpy_confusion(pred: np.ndarray, target: np.ndarray, c: int = C) -> np.ndarray:
    """The reference: one bincount over the non-ignored pixels (rows ground truth)."""
    p, t = pred.reshape(-1), target.reshape(-1)
    keep = (t >= 0) & (t < c)
    return np.bincount(t[keep] * c + p[keep], minlength=c * c).reshape(c, c)


def run(quick: bool = False, repeats: int = 7) -> dict[str, Any]:
    shape = QUICK if quick else FULL
    repeats = 2 if quick else repeats
    pred, target = eval_data(shape)
    p_np, t_np = pred.numpy().copy(), target.numpy().copy()
    ours = ConfusionMatrix(C).update(pred, target).matrix.numpy()
    identical = bool(np.array_equal(ours, numpy_confusion(p_np, t_np)))
    times = benchlib.interleaved({"udass": lambda: ConfusionMatrix(C).update(pred, target),
                                  "numpy": lambda: numpy_confusion(p_np, t_np)}, repeats)
    pixels = pred.numel()
    med = {k: benchlib.stats(v, 1000, 3) for k, v in times.items()}
    mpx = {k: round(pixels / (m["median"] / 1000) / 1e6, 1) for k, m in med.items()}
    return {
        "what": "ConfusionMatrix.update throughput vs numpy bincount on the same int64 data",
        "command": benchlib.command_line(), "machine": benchlib.machine(),
        "input": {"images": shape[0], "height": shape[1], "width": shape[2], "classes": C,
                  "pixels": pixels, "ignored_share": round(float((target == 255).float().mean()), 3)},
        "repeats": repeats, "ms": med, "mpixels_per_s": mpx,
        "throughput_ratio_udass_over_numpy": benchlib.ratio(mpx["udass"], mpx["numpy"], 2),
        "identical_matrices": identical,
    }


def main() -> None:
    ap = benchlib.parser(__doc__, "eval.json")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    benchlib.save(run(a.quick, a.repeats), a.out)


if __name__ == "__main__":
    main()
