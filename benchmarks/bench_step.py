"""Training-step time of QuadMix against DACS and source-only, and where a QuadMix step's time goes.

    python benchmarks/bench_step.py [--steps 12] [--warmup 3] [--threads 1] [--device cpu]
                                    [--variant vit=mit_b0 ...] [--out results/benchmarks/step.json]
                                    [--profile demo] [--quick]
    python benchmarks/bench_step.py --device cuda --profile paper --out results/benchmarks/step_gpu.json

For each backbone (vit: MiT-mini + DAFormer head; cnn: DeepLabV2 on ResNet-mini), three
Trainers of the demo profile on synthetic-video (crop 96 x 192, batch 2 source + 2 target, video
clips) are built with the same seed (identical initial weights) and fed the same pre-loaded
batches. Their real `Trainer.train_step`s are called in turn, step by step, the order rotating
each step, so that load from other jobs falls on all three alike. The first `--warmup` steps are
excluded (QuadMix's first step has no templates yet and runs ClassMix). Reported: the median
step time of each method and the ratios quadmix / dacs (target <= 2.2), quadmix / source_only,
dacs / source_only.

Where the time goes, measured inside the real step through its profiler ranges: every part of
a step runs inside a `torch.profiler.record_function` range named `udass.<part>` (the student
forward, the teacher forward, each backward pass, the optimiser step, the EMA update, crop / flip,
the strong augmentation, the pseudo-label post-processing (the `pseudo_label` range minus its
teacher forward), class selection + templates, the QuadMix / ClassMix pastes, the loss functions
(upsampling + weighted cross-entropy), the aggregation loss, batch concatenation and the finite
check of the losses). The same steps are run a second time under `torch.profiler.profile`, and
each range's time minus the ranges nested in it is its part; "other" is the rest of the profiled
step (autocast contexts, dataclass copies, zero_grad, the scheduler: Python bookkeeping). Step
times and ratios come from the unprofiled rounds. The network passes are the student forward and
backward and the teacher forward; the share of a step outside them has a target of < 15 %.
`--variant vit=mit_b0` (repeatable) adds a larger model at the same crop, for the trend (timed
over `--variant-steps` steps after one warm-up step). `--profile paper` (on a GPU: MiT-B5 and
ResNet-101 at 1024 x 512, batch 1 + 1, random weights, mixed precision) measures the same figures
at the paper's scale; timers synchronise CUDA around every timed part.
"""
from __future__ import annotations

import copy
import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

from udass.profiling import range_parts  # noqa: E402

METHODS = ("source_only", "dacs", "quadmix")
NETWORK = ("student_forward", "backward", "teacher_forward")
TARGET_RATIO = 2.2       # quadmix step <= 2.2 x dacs step
TARGET_OUTSIDE = 0.15    # share of a quadmix step outside the network passes


# ----------------------------------------------------------------------------------- parts
# profiler range -> breakdown key (the pseudo_label range's own time is its post-processing);
# `udass.profiling.range_parts` reads the ranges
RENAME = {"pseudo_label": "pseudo_label_post"}


def parts_of(seconds: dict[str, float], step: float) -> dict[str, float]:
    """Disjoint parts of one step plus `other`, the time no range covers."""
    parts = dict(seconds)
    parts["other"] = step - sum(parts.values())
    return parts


# ----------------------------------------------------------------------------------- the run
def build_trainers(backbone: str, variant: str | None, profile: str, device: str, out: Path
                   ) -> dict[str, Any]:
    from udass.config import build_config
    from udass.train import Trainer

    trainers = {}
    for m in METHODS:
        over: dict[str, Any] = {"model.variant": variant} if variant else {}
        if profile == "paper":
            over["model.pretrained"] = None  # random weights: the time does not depend on them
        cfg = build_config("synthetic-video", backbone, m, profile, over)
        trainers[m] = Trainer(cfg, out / m, device=device, progress=False)
    return trainers


def _clone(batch: Any) -> Any:
    return dataclasses.replace(batch, frames=batch.frames.clone(), flows=batch.flows.clone(),
                               labels=None if batch.labels is None else batch.labels.clone())


def measure_backbone(backbone: str, variant: str | None, profile: str, steps: int, warmup: int,
                     device: str) -> dict[str, Any]:
    """Interleaved train_steps of the three methods on one backbone; timings and breakdowns."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    with tempfile.TemporaryDirectory() as tmp:
        trainers = build_trainers(backbone, variant, profile, device, Path(tmp))
        q = trainers["quadmix"]
        _ = q.long_tail  # computed once from the source split, as before the trainer's clock starts
        batches = q.batches(warmup + steps)
        states = {m: copy.deepcopy(_state(t)) for m, t in trainers.items()}
        step_s: dict[str, list[float]] = {m: [] for m in METHODS}
        parts: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
        for profiled in (False, True):
            for m, t in trainers.items():  # both rounds start from the same weights and step
                _restore(t, states[m])
            for k, (source, target) in enumerate(batches):
                for m in METHODS[k % 3:] + METHODS[:k % 3]:  # the order rotates each step
                    src, tgt = _clone(source), _clone(target)  # copied before the clock starts
                    if not profiled:
                        dt, _ = benchlib.time_once(lambda: trainers[m].train_step(src, tgt), sync)
                        if k >= warmup:
                            step_s[m].append(dt)
                        continue
                    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                        dt, _ = benchlib.time_once(lambda: trainers[m].train_step(src, tgt), sync)
                    if k >= warmup:
                        parts[m].append(parts_of(range_parts(prof.events(), rename=RENAME), dt))
        cfg = q.cfg
    result: dict[str, Any] = {
        "variant": cfg.model.variant, "steps_timed": steps, "warmup_steps_excluded": warmup,
        "input": {"crop_hw": list(cfg.data.crop_size), "batch_source": cfg.data.batch_source,
                  "batch_target": cfg.data.batch_target, "clip_frames": "source 2, target 3"},
        "step_ms": {m: benchlib.stats(step_s[m], 1000, 1) for m in METHODS},
    }
    med = {m: result["step_ms"][m]["median"] for m in METHODS}
    per_round = [a / b for a, b in zip(step_s["quadmix"], step_s["dacs"])]
    result["ratios"] = {
        "quadmix/dacs": benchlib.ratio(med["quadmix"], med["dacs"]),
        "quadmix/source_only": benchlib.ratio(med["quadmix"], med["source_only"]),
        "dacs/source_only": benchlib.ratio(med["dacs"], med["source_only"]),
        "quadmix/dacs_median_of_steps": round(sorted(per_round)[len(per_round) // 2], 3),
    }
    result["breakdown"] = {m: breakdown(parts[m], [sum(p.values()) for p in parts[m]]) for m in METHODS}
    outside = result["breakdown"]["quadmix"]["outside_network_share"]
    result["targets"] = {
        "quadmix/dacs <= 2.2": result["ratios"]["quadmix/dacs"] <= TARGET_RATIO,
        "quadmix outside network < 15%": outside < TARGET_OUTSIDE,
    }
    return result


def _state(trainer: Any) -> dict[str, Any]:
    return {"learner": trainer.learner.state_dict(), "teacher": trainer.teacher.state_dict(),
            "optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.scheduler.state_dict(),
            "step": trainer.step, "templates": trainer.templates}


def _restore(trainer: Any, state: dict[str, Any]) -> None:
    trainer.learner.load_state_dict(state["learner"])
    trainer.teacher.load_state_dict(state["teacher"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.step, trainer.templates = state["step"], state["templates"]


def breakdown(parts: list[dict[str, float]], steps: list[float]) -> dict[str, Any]:
    """Mean milliseconds per profiled step of each part and their shares of the summed
    profiled step time (`steps`: the profiled steps' wall times)."""
    total = sum(steps)
    keys = sorted({k for p in parts for k in p})
    sums = {k: sum(p.get(k, 0.0) for p in parts) for k in keys}
    network = sum(sums.get(k, 0.0) for k in NETWORK)
    return {
        "ms_per_step": {k: benchlib.sig(1000 * v / len(steps), 4) for k, v in sums.items()},
        "share": {k: round(v / total, 4) for k, v in sums.items()},
        "network_share": round(network / total, 4),
        "outside_network_share": round(1 - network / total, 4),
    }


def run(quick: bool = False, steps: int = 12, warmup: int = 3, device: str = "cpu",
        backbones: tuple[str, ...] = ("vit", "cnn"), variants: tuple[str, ...] = (),
        variant_steps: int = 4, profile: str = "demo") -> dict[str, Any]:
    """The benchmark's result dict (`profile` demo, or paper on a GPU; `quick`: test profile,
    2 + 1 steps). Extra `variants` ("vit=mit_b0") are timed over `variant_steps` steps after one
    warm-up step."""
    profile = "test" if quick else profile
    if quick:
        steps, warmup = 2, 1
    result: dict[str, Any] = {
        "what": "train_step time of quadmix vs dacs vs source_only (same model, weights and batches, "
                "interleaved), and the parts of each step measured inside the real step",
        "command": benchlib.command_line(), "machine": benchlib.machine(device),
        "benchmark": "synthetic-video", "profile": profile, "device": device,
        "steps_timed": steps, "warmup_steps_excluded": warmup,
        "targets": {"quadmix/dacs": f"<= {TARGET_RATIO}",
                    "quadmix outside_network_share": f"< {TARGET_OUTSIDE}"},
        "backbones": {},
    }
    for b in backbones:
        result["backbones"][b] = measure_backbone(b, None, profile, steps, warmup, device)
        print(b, result["backbones"][b]["ratios"], flush=True)
    for spec in variants:
        b, v = spec.split("=")
        result["backbones"][f"{b}:{v}"] = measure_backbone(b, v, profile, variant_steps, 1, device)
        print(spec, result["backbones"][f"{b}:{v}"]["ratios"], flush=True)
    return result


def main() -> None:
    ap = benchlib.parser(__doc__, "step.json")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variant", action="append", default=[],
                    help="BACKBONE=VARIANT, an extra model at the demo crop (e.g. vit=mit_b0)")
    ap.add_argument("--variant-steps", type=int, default=4)
    ap.add_argument("--profile", default="demo",
                    help="demo, or paper (MiT-B5 / ResNet-101 at 1024 x 512, batch 1 + 1: for a GPU)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    benchlib.save(run(a.quick, a.steps, a.warmup, a.device, variants=tuple(a.variant),
                      variant_steps=a.variant_steps, profile=a.profile), a.out)


if __name__ == "__main__":
    main()
