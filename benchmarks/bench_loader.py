"""Data-loader throughput of the paper profile at the datasets' real resolutions.

    python benchmarks/bench_loader.py [--roots DIR] [--workers 1,2,4] [--steps 8]
                                      [--out results/benchmarks/loader.json] [--quick]

For each paper benchmark, a `udass synth --size paper` root (under `--roots`, generated there
when absent) is read with the paper profile's data config exactly as `udass train` reads it:
the source and the target DataLoader (`udass.train.make_loader`, the Trainer's step-indexed
samplers, `data.num_workers` = each value of `--workers` for each of the two loaders), iterated
together, one (source, target) batch per step. The warm-up is left out: the first step (worker
start-up) and the batches the workers can have ready by then (`buffered_steps`: workers x
prefetch_factor per loader; counting them would credit the start-up's parallel reads to the
timed steps); then `--steps` steps are timed. Reported per benchmark and worker count: steps per second,
clips per second (a step is batch_source + batch_target clips), and the slowest training step
the loaders keep fed (1 / steps per second): a GPU step shorter than that waits for data.

The roots hold 3-4 clips per role, so the files come from the page cache after the first
reads: disk or network reads of a real dataset are not in these figures (decoding, resizing and
flow reading are).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

PAPER_IDS = ("synthia-seq2cityscapes-seq", "viper2cityscapes-seq", "gtav2cityscapes",
             "synthia2cityscapes")


def paper_root(benchmark: str, roots: Path, size: str) -> Path:
    """The generated root of `benchmark` at `size` under `roots` (generated when absent or stale):
    `roots/<benchmark>` for the paper size, `roots/<benchmark>-<size>` otherwise."""
    from udass.data.synthetic import ensure_synthetic_root

    name = benchmark if size == "paper" else f"{benchmark}-{size}"
    return ensure_synthetic_root(benchmark, size=size, root=roots / name)


def buffered_steps(loader: torch.utils.data.DataLoader) -> int:
    """How many batches `loader`'s workers can hold ready before the first one is taken: each of
    its workers prefetches `prefetch_factor` batches (0 without workers)."""
    return loader.num_workers * (loader.prefetch_factor or 0)


def loader_rate(benchmark: str, root: Path, workers: int, steps: int, profile: str) -> dict[str, Any]:
    """Steps and clips per second of the run's two DataLoaders with `workers` workers each: the
    datasets of `udass train` (source and target train splits, the profile's data config) and
    its step-indexed batch samplers (source seed + 1, target seed)."""
    from udass.config import build_config
    from udass.data.datasets import build_dataset
    from udass.train import StepBatchSampler, make_loader

    over: dict[str, Any] = {"data.num_workers": workers}
    if profile == "test" and benchmark.startswith("synthia-seq"):
        over["data.source_crop_bottom"] = 5  # a tiny SYNTHIA-Seq frame has 32 rows
    cfg = build_config(benchmark, "cnn", "quadmix", profile, over)
    d, seed = cfg.data, cfg.train.seed
    datasets = [(build_dataset(benchmark, "train", root, domain, data_cfg=d), batch, s)
                for domain, batch, s in (("source", d.batch_source, seed + 1), ("target", d.batch_target, seed))]
    warm = 1 + max(buffered_steps(make_loader(ds, StepBatchSampler(len(ds), batch, s, 0, 1), workers, False))
                   for ds, batch, s in datasets)
    n = warm + steps
    loaders = [make_loader(ds, StepBatchSampler(len(ds), batch, s, 0, n), workers, False)
               for ds, batch, s in datasets]
    times = []
    t0 = time.perf_counter()
    for _ in zip(*loaders):
        times.append(time.perf_counter() - t0)
    rate = steps / (times[-1] - times[warm - 1])
    per_step = d.batch_source + d.batch_target
    return {"workers_per_loader": workers, "warmup_steps": warm, "steps_timed": steps,
            "first_step_seconds": round(times[0], 2),
            "steps_per_second": round(rate, 3), "clips_per_second": round(rate * per_step, 3),
            "feeds_a_step_of_at_least_seconds": round(1 / rate, 3), "clips_per_step": per_step}


def run(roots: Path, workers: tuple[int, ...], steps: int, quick: bool = False) -> dict[str, Any]:
    size, profile = ("tiny", "test") if quick else ("paper", "paper")
    if quick:
        workers, steps = workers[:1], 2
    from udass.config import build_config

    result: dict[str, Any] = {
        "what": "DataLoader throughput of the paper profile's data path (source and target loaders "
                "together, as udass train iterates them) on udass synth --size paper roots",
        "command": benchlib.command_line(), "machine": benchlib.machine("cpu"),
        "size": size, "profile": profile, "steps_timed": steps, "benchmarks": {},
    }
    for b in PAPER_IDS:
        root = paper_root(b, roots, size)
        d = build_config(b, "cnn", "quadmix", profile).data
        result["benchmarks"][b] = {
            "input": {"source_size": list(d.source_size), "target_size": list(d.target_size),
                      "batch": [d.batch_source, d.batch_target]},
            "rates": [loader_rate(b, root, w, steps, profile) for w in workers]}
        print(b, [(r["workers_per_loader"], r["clips_per_second"]) for r in result["benchmarks"][b]["rates"]],
              flush=True)
    return result


def main() -> None:
    ap = benchlib.parser(__doc__, "loader.json")
    ap.add_argument("--roots", type=Path, default=Path(tempfile.gettempdir()) / "udass-paper-roots",
                    help="folder of the paper-size roots (<benchmark>-paper; generated when absent)")
    ap.add_argument("--workers", default="1,2,4", help="worker counts per loader, comma-separated")
    ap.add_argument("--steps", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    workers = tuple(int(w) for w in a.workers.split(","))
    benchlib.save(run(a.roots, workers, a.steps, a.quick), a.out)


if __name__ == "__main__":
    main()
