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

Where the time goes, measured inside the real step (no estimate): forward hooks on the student
(the Learner: network, temporal fusion, feature-level fusion) and on the teacher network, timers
around `Trainer._backward` (loss.backward), the optimiser step (step hooks), the EMA update, the
strong augmentation, crop / flip, the pseudo-label post-processing (`pseudo_label` minus its
teacher forward), class selection + templates, the QuadMix / ClassMix pastes, the loss functions
(upsampling + weighted cross-entropy), the aggregation loss, batch concatenation and the finite
check of the losses; "other" is the rest (autocast contexts, dataclass copies, zero_grad, the
scheduler: Python bookkeeping). The network passes are the student forward and
backward and the teacher forward; the share of a step outside them has a target of < 15 %.
`--variant vit=mit_b0` (repeatable) adds a larger model at the same crop, for the trend (timed
over `--variant-steps` steps after one warm-up step). `--profile paper` (on a GPU: MiT-B5 and
ResNet-101 at 1024 x 512, batch 1 + 1, random weights, mixed precision) measures the same figures
at the paper's scale; timers synchronise CUDA around every timed part.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

METHODS = ("source_only", "dacs", "quadmix")
NETWORK = ("student_forward", "backward", "teacher_forward")
TARGET_RATIO = 2.2       # quadmix step <= 2.2 x dacs step
TARGET_OUTSIDE = 0.15    # share of a quadmix step outside the network passes


# ----------------------------------------------------------------------------------- timers
class Profile:
    """Seconds per part of one train_step; the module-level `_ACTIVE` profile is filled."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)


_ACTIVE: list[Profile | None] = [None]


def _add(key: str, dt: float) -> None:
    prof = _ACTIVE[0]
    if prof is not None:
        prof.seconds[key] += dt


def _timed(fn: Callable, key: str, sync: Callable[[], None] | None) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if sync:
            sync()
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if sync:
                sync()
            _add(key, time.perf_counter() - t0)
    return wrapper


def _hook_forward(module: torch.nn.Module, key: str, sync: Callable[[], None] | None) -> None:
    starts: list[float] = []

    def pre(_m: Any, _args: Any) -> None:
        if sync:
            sync()
        starts.append(time.perf_counter())

    def post(_m: Any, _args: Any, _out: Any) -> None:
        if sync:
            sync()
        _add(key, time.perf_counter() - starts.pop())

    module.register_forward_pre_hook(pre)
    module.register_forward_hook(post)


@contextlib.contextmanager
def method_timers(sync: Callable[[], None] | None) -> Iterator[None]:
    """Timers around the functions the step imports at call time (module attributes), removed
    on exit."""
    import udass.train as tr

    qm, te, tp, lo = (importlib.import_module(f"udass.method.{n}")  # the modules themselves:
                      for n in ("quadmix", "teacher", "templates", "losses"))  # udass.method re-exports names
    targets = [(te, "pseudo_label", "pseudo_label_incl_teacher"), (qm, "quadmix", "paste"),
               (qm, "classmix", "paste"), (lo, "weighted_cross_entropy", "losses"),
               (tr, "_cat_clips", "concat_batches")]
    targets += [(tp, n, "classes_templates") for n in ("choose_classes", "source_template", "target_template")]
    originals = [(mod, name, getattr(mod, name)) for mod, name, _ in targets]
    for mod, name, key in targets:
        setattr(mod, name, _timed(getattr(mod, name), key, sync))
    try:
        yield
    finally:
        for mod, name, fn in originals:
            setattr(mod, name, fn)


def instrument(trainer: Any, sync: Callable[[], None] | None = None) -> None:
    """Attach the timers to one Trainer (its student, teacher, optimiser and step helpers; the
    method functions are timed inside `method_timers`)."""
    _hook_forward(trainer.learner, "student_forward", sync)
    _hook_forward(trainer.teacher.model, "teacher_forward", sync)
    trainer._backward = _timed(trainer._backward, "backward", sync)
    trainer.teacher.update = _timed(trainer.teacher.update, "ema_update", sync)
    trainer._strong = _timed(trainer._strong, "strong_augment", sync)
    trainer._geometric = _timed(trainer._geometric, "crop_flip", sync)
    trainer._aggregation = _timed(trainer._aggregation, "aggregation_loss", sync)
    trainer._check_finite = _timed(trainer._check_finite, "finite_check", sync)
    starts: list[float] = []

    def pre(*_: Any) -> None:
        if sync:
            sync()
        starts.append(time.perf_counter())

    def post(*_: Any) -> None:
        if sync:
            sync()
        _add("optimizer_step", time.perf_counter() - starts.pop())

    trainer.optimizer.register_step_pre_hook(pre)
    trainer.optimizer.register_step_post_hook(post)


def parts_of(seconds: dict[str, float], step: float) -> dict[str, float]:
    """Disjoint parts of one step: the pseudo-label post-processing excludes its teacher forward;
    `other` is what no timer covers."""
    parts = {k: v for k, v in seconds.items() if k != "pseudo_label_incl_teacher"}
    if "pseudo_label_incl_teacher" in seconds:
        parts["pseudo_label_post"] = seconds["pseudo_label_incl_teacher"] - seconds.get("teacher_forward", 0.0)
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
        for t in trainers.values():
            instrument(t, sync)
        step_s: dict[str, list[float]] = {m: [] for m in METHODS}
        parts: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
        with method_timers(sync):
            for k, (source, target) in enumerate(batches):
                for m in METHODS[k % 3:] + METHODS[:k % 3]:  # the order rotates each step
                    prof = Profile()
                    _ACTIVE[0] = prof
                    src, tgt = _clone(source), _clone(target)  # copied before the clock starts
                    dt, _ = benchlib.time_once(lambda: trainers[m].train_step(src, tgt), sync)
                    _ACTIVE[0] = None
                    if k >= warmup:
                        step_s[m].append(dt)
                        parts[m].append(parts_of(prof.seconds, dt))
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
    result["breakdown"] = {m: breakdown(parts[m], step_s[m]) for m in METHODS}
    outside = result["breakdown"]["quadmix"]["outside_network_share"]
    result["targets"] = {
        "quadmix/dacs <= 2.2": result["ratios"]["quadmix/dacs"] <= TARGET_RATIO,
        "quadmix outside network < 15%": outside < TARGET_OUTSIDE,
    }
    return result


def breakdown(parts: list[dict[str, float]], steps: list[float]) -> dict[str, Any]:
    """Mean milliseconds per step of each part and their shares of the summed step time."""
    total = sum(steps)
    keys = sorted({k for p in parts for k in p})
    sums = {k: sum(p.get(k, 0.0) for p in parts) for k in keys}
    network = sum(sums.get(k, 0.0) for k in NETWORK)
    return {
        "ms_per_step": {k: round(1000 * v / len(steps), 2) for k, v in sums.items()},
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
