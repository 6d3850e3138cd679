"""Training-step time of each image-recipe ablation row: what RCS, FD, HRDA and MIC cost a step.

    python benchmarks/bench_image_recipe.py [--profile demo] [--steps 12] [--warmup 3]
                                            [--threads 1] [--out runs/benchmarks/image_recipe.json]

For each row of `udass.config.ablation_rows("synthetic-image", profile)` (quadmix, +rcs, +fd,
+hrda, +mic; each keeps the components of the row above), a Trainer of QuadMix with the ViT is
built with the same seed and fed its own pre-loaded batches (the rows draw different source
batches once RCS is on). Their real `Trainer.train_step`s are called in turn, step by step, the
order rotating each step, so that load from other jobs falls on all rows alike; the first
`--warmup` steps are excluded (QuadMix's first step has no templates). Reported per row: the
median step time, its ratio to the `quadmix` row, and the row's student passes and pixels per
sample (HRDA: the context and the detail crop). The CPU is shared with other jobs, so the
figures are indicative; the ratios are what the rotation makes comparable.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/bench_image_recipe.py` from a source checkout
    sys.path.insert(0, str(REPO))


def run(profile: str = "demo", steps: int = 12, warmup: int = 3) -> dict:
    """{"rows": {row: {"median_ms", "ratio_to_quadmix", "passes", "pixels_per_sample"}}, ...}."""
    from udass.config import ablation_rows, build_config
    from udass.train import Trainer

    rows = ablation_rows("synthetic-image", profile)
    out: dict = {"profile": profile, "steps": steps, "warmup": warmup,
                 "threads": torch.get_num_threads(), "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        trainers, batches, times = {}, {}, {}
        for name, (method, over) in rows.items():
            cfg = build_config("synthetic-image", "vit", method, profile, over)
            trainers[name] = Trainer(cfg, Path(tmp) / name.strip("+"), device="cpu", progress=False)
            batches[name] = trainers[name].batches(warmup + steps)
            times[name] = []
        names = list(rows)
        for k in range(warmup + steps):
            for name in names[k % len(names):] + names[:k % len(names)]:
                t0 = time.perf_counter()
                trainers[name].train_step(*batches[name][k])
                if k >= warmup:
                    times[name].append(time.perf_counter() - t0)
        base = statistics.median(times["quadmix"])
        for name in names:
            cfg = trainers[name].cfg
            h, w = cfg.data.crop_size
            if cfg.model.hrda:
                dh, dw = cfg.model.hrda_detail_size
                s = cfg.model.hrda_context_scale
                pixels = round(h * s) * round(w * s) + dh * dw
            else:
                pixels = h * w
            med = statistics.median(times[name])
            out["rows"][name] = {"median_ms": round(1000 * med, 1), "ratio_to_quadmix": round(med / base, 3),
                                 "passes": 2 + int(cfg.mic.enabled), "pixels_per_sample": pixels}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    res = run(a.profile, a.steps, a.warmup)
    for name, r in res["rows"].items():
        print(f"{name:8} {r['median_ms']:8.1f} ms  x{r['ratio_to_quadmix']:.2f}  passes {r['passes']}  "
              f"pixels/sample {r['pixels_per_sample']}")
    if a.out is not None:
        from udass.io import write_json

        write_json(a.out, res)


if __name__ == "__main__":
    main()
