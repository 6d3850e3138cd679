"""Evaluation: confusion-matrix mIoU (all-reduced under DDP) and temporal consistency.

Protocol (docs/datasets.md, Evaluation): the model's logits for frame t are upsampled bilinearly
to the label's native resolution (align_corners as the benchmark's reference evaluation: True for
the video benchmarks as TPS / DA-VSN, False for the image benchmarks as mmseg;
`train.eval_align_corners` overrides it), arg-maxed, and accumulated into ONE confusion matrix
over the whole split; IoU_c = TP / (TP + FP + FN) from that matrix (not a mean of per-image IoUs).
The matrix covers every train class of the protocol; the benchmark's evaluation classes are then
selected for the mean, as DA-VSN / TPS / DAFormer do: e.g. on SYNTHIA-Seq the 12-class matrix is
accumulated and fence is left out of the mean, so a fence pixel predicted as road still counts as
a false positive of road. The mean follows the field's reference code (mmseg `eval_metrics` +
nanmean, ADVENT / TPS `per_class_iu` + nanmean): a class predicted somewhere but without a
ground-truth pixel in the split has IoU 0 and counts in the mean; only a class with neither ground
truth nor prediction (0 / 0) is NaN (null in metrics.json) and left out. metrics.json lists the
classes without ground truth.

The command-line wrapper `evaluate_from_args` (checkpoint -> metrics.json) belongs to the
trainer; its place is marked at the end of this module.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from udass.benchmarks import Benchmark, get_benchmark
from udass.checkpoint import load_checkpoint
from udass.config import build_config, config_from_dict
from udass.data.clip import Clip, ClipBatch, collate_clips
from udass.data.datasets import build_dataset
from udass.data.flow import warp, warp_valid_mask
from udass.data.splits import check_split, clip_counts
from udass.data.synthetic import ensure_synthetic_root
from udass.errors import UdassError
from udass.io import write_json
from udass.models import build_model_from_config
from udass.runtime import resolve_device
from udass.progress import Progress

__all__ = ["ConfusionMatrix", "align_corners_of", "iou_per_class", "metrics_record", "network_summary",
           "evaluate_model", "temporal_consistency", "confusion_to_json", "confusion_from_json",
           "evaluate_from_args"]


# ----------------------------------------------------------------------------------- confusion
class ConfusionMatrix:
    """A [C, C] int64 confusion matrix accumulated on a device: rows ground truth, columns prediction.

    `update` ignores target pixels equal to 255 and any target id outside [0, C); a prediction
    outside [0, C) is an error. `all_reduce` sums the matrix over the processes of an initialised
    torch.distributed group (a no-op otherwise), so every rank ends with the split's matrix.
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.matrix: Tensor = torch.zeros(num_classes, num_classes, dtype=torch.int64,
                                          device=device)

    @property
    def device(self) -> torch.device:
        return self.matrix.device

    @property
    def num_pixels(self) -> int:
        """Number of evaluated (non-ignored) pixels accumulated so far."""
        return int(self.matrix.sum().item())

    def update(self, pred: Tensor, target: Tensor) -> "ConfusionMatrix":
        """Accumulate one batch.

        pred:   integer tensor of any shape, class ids in [0, C).
        target: integer tensor of the same shape, train ids; 255 and ids >= C (or < 0) ignored.
        Both are moved to the matrix's device; one bincount of `target * C + pred`.
        """
        if pred.shape != target.shape:
            raise ValueError(f"ConfusionMatrix.update: pred {tuple(pred.shape)} and target "
                             f"{tuple(target.shape)} differ in shape")
        if pred.is_floating_point() or target.is_floating_point():
            raise TypeError("ConfusionMatrix.update expects integer class ids, got floating point "
                            "(take the argmax of the logits first)")
        c = self.num_classes
        if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= c):
            raise ValueError(f"ConfusionMatrix.update: predictions outside [0, {c}) "
                             f"(min {int(pred.min())}, max {int(pred.max())})")
        # Ignored pixels go to one extra bin instead of being gathered out (a boolean-mask
        # gather costs more than the bincount itself); on the CPU numpy's bincount is ~3x faster.
        if self.device.type == "cpu":
            t = target.detach().cpu().numpy().reshape(-1).astype(np.int64, copy=False)
            p = pred.detach().cpu().numpy().reshape(-1).astype(np.int64, copy=False)
            idx = np.where((t >= 0) & (t < c), t * c + p, c * c)
            counts = np.bincount(idx, minlength=c * c + 1)[: c * c]
            self.matrix += torch.from_numpy(counts).reshape(c, c)
            return self
        pred = pred.to(self.device, torch.int64).reshape(-1)
        target = target.to(self.device, torch.int64).reshape(-1)
        idx = torch.where((target >= 0) & (target < c), target * c + pred, c * c)
        self.matrix += torch.bincount(idx, minlength=c * c + 1)[: c * c].reshape(c, c)
        return self

    def all_reduce(self) -> "ConfusionMatrix":
        """Sum the matrix over all processes when torch.distributed is initialised; else no-op."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.matrix, op=torch.distributed.ReduceOp.SUM)
        return self

    def reset(self) -> "ConfusionMatrix":
        self.matrix.zero_()
        return self

    def iou(self) -> np.ndarray:
        """Float64 [C] IoU in [0, 1], NaN for classes without ground truth (see `iou_per_class`)."""
        return iou_per_class(self.matrix)

    def __add__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot add confusion matrices of {self.num_classes} and "
                             f"{other.num_classes} classes")
        out = ConfusionMatrix(self.num_classes, self.device)
        out.matrix = self.matrix + other.matrix.to(self.device)
        return out

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(num_classes={self.num_classes}, pixels={self.num_pixels}, "
                f"device={self.device})")


def as_numpy_matrix(matrix: "ConfusionMatrix | Tensor | np.ndarray") -> np.ndarray:
    """A confusion matrix (ConfusionMatrix, tensor or array) as float64 [C, C] numpy."""
    if isinstance(matrix, ConfusionMatrix):
        matrix = matrix.matrix
    if isinstance(matrix, Tensor):
        matrix = matrix.detach().cpu().numpy()
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"a confusion matrix must be [C, C], got shape {m.shape}")
    return m


def iou_per_class(matrix: "ConfusionMatrix | Tensor | np.ndarray") -> np.ndarray:
    """IoU of every class from a confusion matrix, as mmseg and ADVENT / TPS compute it.

    matrix: [C, C] counts, rows ground truth, columns prediction (a ConfusionMatrix, tensor or array).
    Returns float64 [C] in [0, 1]: TP / (TP + FP + FN). A class predicted but absent from the
    ground truth has IoU 0; a class with neither ground truth nor prediction is NaN (0 / 0), which
    means leave out (nanmean).
    """
    m = as_numpy_matrix(matrix)
    tp = np.diag(m)
    union = m.sum(axis=1) + m.sum(axis=0) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return tp / union


def _percent(x: float) -> float | None:
    """IoU in [0, 1] -> percent rounded to 2 decimals; NaN -> None (JSON null)."""
    return None if math.isnan(x) else round(100.0 * float(x), 2)


def _mean_percent(iou: np.ndarray, ids: Sequence[int]) -> float | None:
    vals = iou[list(ids)]
    vals = vals[~np.isnan(vals)]
    return None if vals.size == 0 else round(100.0 * float(vals.mean()), 2)


def _as_benchmark(benchmark: Benchmark | str) -> Benchmark:
    return benchmark if isinstance(benchmark, Benchmark) else get_benchmark(benchmark)


def network_summary(benchmark: Benchmark | str, matrix: "ConfusionMatrix | Tensor | np.ndarray",
                    network: str, with_confusion: bool = True) -> dict[str, Any]:
    """The per-network part of metrics.json: network, miou, subsets, per_class_iou,
    classes_without_ground_truth, num_pixels (and the confusion matrix).

    IoUs in percent rounded to 2 decimals; means computed from unrounded IoUs over the classes
    (of the evaluation set / subset) that are not NaN (those with ground truth or predictions);
    None where no such class exists.
    """
    benchmark = _as_benchmark(benchmark)
    m = as_numpy_matrix(matrix)
    if m.shape[0] != benchmark.num_classes:
        raise ValueError(f"{benchmark.name} has {benchmark.num_classes} classes, the confusion "
                         f"matrix is {m.shape[0]} x {m.shape[1]}")
    iou = iou_per_class(m)
    out: dict[str, Any] = {"network": network, "miou": _mean_percent(iou, benchmark.eval_classes)}
    gt = m.sum(axis=1)
    for name, ids in benchmark.subsets.items():
        out[name] = _mean_percent(iou, ids)
    out["per_class_iou"] = {benchmark.protocol.classes[i]: _percent(iou[i])
                            for i in benchmark.eval_classes}
    out["classes_without_ground_truth"] = [benchmark.protocol.classes[i]
                                           for i in benchmark.eval_classes if gt[i] == 0]
    out["num_pixels"] = int(m.sum())
    if with_confusion:
        out["confusion_matrix"] = confusion_to_json(m, benchmark.protocol.classes)
    return out


_CORE_KEYS = ("benchmark", "step", "network", "miou", "per_class_iou", "num_pixels", "teacher",
              "confusion_matrix", "classes_without_ground_truth")


def metrics_record(benchmark: Benchmark | str, matrix_student: "ConfusionMatrix | Tensor | np.ndarray",
                   matrix_teacher: "ConfusionMatrix | Tensor | np.ndarray | None" = None,
                   step: int | None = None, extra: Mapping[str, Any] | None = None,
                   with_confusion: bool = True) -> dict[str, Any]:
    """The metrics.json record of one evaluation (docs/architecture.md, Contracts: Outputs of a run).

    Returns {"benchmark", "backbone"?, "method"? (from `extra`), "step", "network": "student",
    "miou", <benchmark subsets, e.g. "miou_16", "miou_13">, "per_class_iou": {eval class name:
    IoU % (2 decimals) or None}, "num_pixels", "confusion_matrix": {"classes", "matrix"} (all
    protocol classes; omitted with `with_confusion=False`), "teacher": the same fields for the
    teacher or None, ...other `extra` keys}.
    `extra` may not override the measured keys.
    """
    benchmark = _as_benchmark(benchmark)
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(_CORE_KEYS) | set(extra) & set(benchmark.subsets))
    if clash:
        raise ValueError(f"metrics_record: extra keys {clash} would overwrite measured values")
    rec: dict[str, Any] = {"benchmark": benchmark.name}
    for key in ("backbone", "method"):
        if key in extra:
            rec[key] = extra.pop(key)
    rec["step"] = step
    rec.update(network_summary(benchmark, matrix_student, "student", with_confusion))
    rec["teacher"] = (None if matrix_teacher is None
                      else network_summary(benchmark, matrix_teacher, "teacher", with_confusion))
    rec.update(extra)
    return rec


def confusion_to_json(matrix: "ConfusionMatrix | Tensor | np.ndarray",
                      class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """{"classes": [names] or None, "matrix": [[int]] rows ground truth} for JSON files."""
    m = as_numpy_matrix(matrix).astype(np.int64)
    if class_names is not None and len(class_names) != m.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {m.shape[0]}-class matrix")
    return {"classes": None if class_names is None else list(class_names), "matrix": m.tolist()}


def confusion_from_json(obj: Mapping[str, Any], device: torch.device | str = "cpu") -> ConfusionMatrix:
    """Inverse of `confusion_to_json` (also accepts a metrics.json record or its teacher part)."""
    if "confusion_matrix" in obj:
        obj = obj["confusion_matrix"]
    if "matrix" not in obj:
        raise UdassError("no confusion matrix in this record (expected a 'confusion_matrix' or "
                         "'matrix' key); re-run the evaluation to write one")
    m = torch.as_tensor(np.asarray(obj["matrix"], dtype=np.int64))
    cm = ConfusionMatrix(int(m.shape[0]), device)
    cm.matrix += m.to(cm.device)
    return cm


# ----------------------------------------------------------------------------------- loading
def _collate_groups(clips: Sequence[Clip]) -> list[ClipBatch]:
    """Collate clips into batches of equal frame count, frame size and label size (order kept).

    Evaluation labels keep their native resolution, which may differ between clips; each group
    is stacked separately so any batch size works.
    """
    groups: dict[tuple, list[Clip]] = {}
    for c in clips:
        key = (c.num_frames, tuple(c.frames.shape[-2:]),
               None if c.labels is None else tuple(c.labels.shape[-2:]))
        groups.setdefault(key, []).append(c)
    return [collate_clips(g) for g in groups.values()]


def _batches(dataset: Dataset, batch_size: int, max_clips: int | None, num_workers: int,
             sampler: Sampler | None, progress: bool, desc: str) -> Iterator[ClipBatch]:
    """ClipBatches over `dataset` (at most `max_clips` clips on this process); `progress` shows
    the clips done as a bar or log lines (`udass.progress`)."""
    if max_clips is not None and sampler is None:
        dataset = Subset(dataset, range(min(max_clips, len(dataset))))  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, sampler=sampler,
                        num_workers=num_workers, collate_fn=_collate_groups)
    total = len(sampler) if sampler is not None else len(dataset)  # type: ignore[arg-type]
    if max_clips is not None:
        total = min(total, max_clips)
    seen = 0
    with Progress(total, desc, unit="clip", enabled=progress) as bar:
        for groups in loader:
            for batch in groups:
                if max_clips is not None and seen + len(batch) > max_clips:
                    n = max_clips - seen
                    if n <= 0:
                        return
                    batch = ClipBatch(batch.frames[:n], batch.flows[:n],
                                      None if batch.labels is None else batch.labels[:n],
                                      batch.domain, batch.names[:n])
                seen += len(batch)
                yield batch
                bar.update(len(batch))


def _logits(model: nn.Module, frames: Tensor, flows: Tensor) -> Tensor:
    """model(frames [B,K,3,H,W], flows [B,K-1,2,H,W])['logits'] -> float [B, C, h, w]."""
    out = model(frames, flows)
    logits = out["logits"] if isinstance(out, Mapping) else out
    return logits.float()


def _predict(logits: Tensor, size: tuple[int, int], align_corners: bool = False) -> Tensor:
    """Upsample logits [B, C, h, w] bilinearly to size, argmax: int64 [B, H, W]."""
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)
    return logits.argmax(dim=1)


# ----------------------------------------------------------------------------------- evaluation
def align_corners_of(setting: bool | None, benchmark: Benchmark | str) -> bool:
    """The logit upsampling of an evaluation: `setting` (train.eval_align_corners) when given,
    else the benchmark's reference evaluation (`Benchmark.eval_align_corners`)."""
    return _as_benchmark(benchmark).eval_align_corners if setting is None else bool(setting)


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset: Dataset, benchmark: Benchmark | str,
                   device: torch.device | str, batch_size: int = 1, max_clips: int | None = None,
                   num_workers: int = 0, progress: bool = False,
                   sampler: Sampler | None = None, align_corners: bool | None = None,
                   desc: str = "") -> ConfusionMatrix:
    """Confusion matrix of `model` on a labelled evaluation dataset.

    model:   already on `device`; `model(frames [B,K,3,H,W], flows [B,K-1,2,H,W])["logits"]`
             is [B, C, h, w] at any stride. Put in eval mode for the pass, its mode restored after.
    dataset: yields Clips whose labels [K, H_l, W_l] hold frame t's train ids at native
             resolution (frame t-1 all 255). Clips with different label sizes are batched
             separately, so any batch_size works.
    The logits are upsampled bilinearly to (H_l, W_l) (align_corners: None = the benchmark's
    reference evaluation, `Benchmark.eval_align_corners`), arg-maxed and compared with labels[0]; the matrix stays on `device` and is all-reduced at the end (pass a
    DistributedSampler under DDP; `max_clips` then limits the clips of each process).
    progress: show the clips done (`udass.progress`: a bar in a terminal, else log lines),
    labelled `desc` (default "evaluate <benchmark>").
    Returns the [C, C] ConfusionMatrix (C = benchmark.num_classes).
    """
    benchmark = _as_benchmark(benchmark)
    device = torch.device(device)
    corners = benchmark.eval_align_corners if align_corners is None else align_corners
    cm = ConfusionMatrix(benchmark.num_classes, device)
    was_training = model.training
    model.eval()
    try:
        for batch in _batches(dataset, batch_size, max_clips, num_workers, sampler, progress,
                              desc or f"evaluate {benchmark.name}"):
            if batch.labels is None:
                raise UdassError(f"evaluation clip {batch.names[0]!r} has no labels; evaluate on "
                                 f"a labelled split (split='val', or with_labels=True)")
            frames = batch.frames.to(device, non_blocking=True)
            flows = batch.flows.to(device, non_blocking=True)
            logits = _logits(model, frames, flows)
            if logits.shape[1] != benchmark.num_classes:
                raise UdassError(f"the model predicts {logits.shape[1]} classes, {benchmark.name} "
                                 f"has {benchmark.num_classes}; use a checkpoint of this benchmark")
            target = batch.labels[:, 0].to(device, non_blocking=True)
            cm.update(_predict(logits, tuple(target.shape[-2:]), corners), target)
    finally:
        model.train(was_training)
    return cm.all_reduce()


@torch.no_grad()
def temporal_consistency(model: nn.Module, dataset: Dataset, device: torch.device | str,
                         max_clips: int | None = None, batch_size: int = 1,
                         num_workers: int = 0, sampler: Sampler | None = None,
                         progress: bool = False) -> float:
    """Temporal consistency of predictions on video clips, in percent (higher is steadier).

    For each clip (frames [t, t-1, ...], flows[0] = backward flow t -> t-1 on frame t's grid):
      pred_t    = argmax of model((t, t-1), flow)["logits"], the prediction the method reports
                  for frame t (with its temporal fusion);
      pred_prev = argmax of model((t-1,), no flow)["logits"], frame t-1 as a one-frame clip (the
                  evaluation clips hold no frame t-2 to fuse it with);
    both upsampled bilinearly to the FRAME size (H, W), where the flow lives. pred_prev is warped
    to frame t with the flow (nearest neighbour): warped(p) = pred_prev(p + flow(p)). The result
    is 100 * #{p : warped(p) == pred_t(p), p + flow(p) inside the frame} / #{p : inside},
    pooled over all pixels of all clips (labels are not used; occlusions are not masked, so a
    perfect but non-trivially moving scene can score slightly below 100). A static clip with zero
    flow and a deterministic model scores 100. Under DDP the counts are summed over processes.
    Returns NaN when no pixel was counted.
    """
    device = torch.device(device)
    agree = torch.zeros((), dtype=torch.int64, device=device)
    total = torch.zeros((), dtype=torch.int64, device=device)
    was_training = model.training
    model.eval()
    try:
        for batch in _batches(dataset, batch_size, max_clips, num_workers, sampler, progress,
                              "temporal consistency"):
            if batch.num_frames < 2:
                raise UdassError(f"temporal consistency needs clips of at least 2 frames (a video "
                                 f"benchmark), clip {batch.names[0]!r} has {batch.num_frames}")
            frames = batch.frames[:, :2].to(device, non_blocking=True)
            flow = batch.flows[:, 0].to(device, non_blocking=True)
            size = tuple(frames.shape[-2:])
            pred_t = _predict(_logits(model, frames, flow[:, None]), size)
            prev_clip = frames[:, 1:2]
            no_flow = flow.new_zeros(flow.shape[0], 0, *flow.shape[1:])
            pred_prev = _predict(_logits(model, prev_clip, no_flow), size)
            warped = warp(pred_prev[:, None].float(), flow, mode="nearest")[:, 0].round().long()
            valid = warp_valid_mask(flow)
            agree += ((warped == pred_t) & valid).sum()
            total += valid.sum()
    finally:
        model.train(was_training)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        counts = torch.stack([agree, total])
        torch.distributed.all_reduce(counts)
        agree, total = counts[0], counts[1]
    n = int(total.item())
    return float("nan") if n == 0 else 100.0 * int(agree.item()) / n


# ----------------------------------------------------------------------------------- CLI wrapper
# `udass evaluate`: a checkpoint written by `udass train` -> metrics.json.
def load_network(checkpoint: str | Any, network: str = "student", device: torch.device | str = "cpu"
                 ) -> tuple[nn.Module, Any, dict[str, Any]]:
    """Rebuild the segmentation network stored in a udass checkpoint.

    network: "student" or "teacher" (the EMA teacher). Returns (model in eval mode on device,
    its Config, the raw checkpoint dict).
    """
    if network not in ("student", "teacher"):
        raise UdassError(f"unknown network {network!r}; expected student or teacher")
    state = load_checkpoint(checkpoint, map_location="cpu")
    cfg = config_from_dict(state["config"])
    bench = get_benchmark(cfg.data.benchmark)
    net = build_model_from_config(cfg.model, bench.num_classes, pretrained=False)
    if network == "student":
        weights = {k[4:]: v for k, v in state["student"].items() if k.startswith("net.")}
    else:
        if not state.get("teacher"):
            raise UdassError(f"checkpoint {checkpoint} has no teacher; use --network student")
        weights = state["teacher"]
    net.load_state_dict(weights, strict=True)
    return net.to(device).eval(), cfg, state


def _one_network(state: Mapping[str, Any]) -> bool:
    """Whether the checkpoint's teacher holds exactly the student's weights (a converted release
    of one network), so that evaluating both would score one network twice."""
    student = {k[4:]: v for k, v in state["student"].items() if k.startswith("net.")}
    teacher = state.get("teacher") or {}
    return (student.keys() == teacher.keys()
            and all(student[k].shape == teacher[k].shape and torch.equal(student[k], teacher[k])
                    for k in student))


def _converted_from(state: Mapping[str, Any]) -> dict[str, Any]:
    """{"converted_from": release format} for a checkpoint written by `udass convert`, else {}."""
    info = state.get("converted")
    return {"converted_from": info["format"]} if isinstance(info, Mapping) and "format" in info else {}


def evaluate_from_args(args: Any) -> dict[str, Any]:
    """`udass evaluate --checkpoint CKPT [--benchmark B] [--data-root DIR] [--network N] [--out DIR]
    [--allow-partial]`.

    Evaluates the chosen network (and, for the record, the other one when present; a one-network
    release's teacher holds the student's weights and gets the same record without a second pass)
    on the benchmark's target val split and writes metrics.json to --out (default: print only). An
    incomplete val split is refused unless --allow-partial (udass.data.splits.check_split);
    metrics.json records the clips evaluated and expected.
    """
    device = resolve_device(getattr(args, "device", "auto"))
    net, cfg, state = load_network(args.checkpoint, args.network, device)
    bench_name = args.benchmark or cfg.data.benchmark
    bench = get_benchmark(bench_name)
    if bench.num_classes != get_benchmark(cfg.data.benchmark).num_classes:
        raise UdassError(f"checkpoint {args.checkpoint} predicts "
                         f"{get_benchmark(cfg.data.benchmark).num_classes} classes; benchmark "
                         f"{bench_name} needs {bench.num_classes}")
    data_root = args.data_root or cfg.data.data_root
    if data_root is None and bench.synthetic:
        data_root = ensure_synthetic_root(bench.name, size=cfg.data.synth_size, seed=cfg.data.synth_seed)
    # another benchmark of the same classes is read with its own preset's data settings
    data_cfg = (cfg.data if bench.name == cfg.data.benchmark
                else build_config(bench.name, profile=cfg.train.profile).data)
    val = build_dataset(bench.name, "val", data_root, domain="target", data_cfg=data_cfg,
                        flow_root=getattr(args, "flow_root", None) or cfg.data.flow_root)
    val = check_split(val, allow_partial=bool(getattr(args, "allow_partial", False)))
    other = "teacher" if args.network == "student" else "student"
    corners = align_corners_of(cfg.train.eval_align_corners, bench)
    mats = {args.network: evaluate_model(net, val, bench, device, progress=True, align_corners=corners,
                                         desc=f"evaluate {args.network}")}
    if state.get("teacher") and _one_network(state):
        # a one-network release (`udass convert` stores its weights as both networks): the other
        # network's predictions are these, so its confusion matrix is this one, not a second pass
        mats[other] = mats[args.network]
    elif other == "student" or state.get("teacher"):
        other_net, _, _ = load_network(args.checkpoint, other, device)
        mats[other] = evaluate_model(other_net, val, bench, device, align_corners=corners,
                                     progress=True, desc=f"evaluate {other}")
    rec = metrics_record(bench, mats["student"].matrix,
                         mats["teacher"].matrix if "teacher" in mats else None,
                         step=int(state["step"]),
                         extra={"backbone": cfg.model.backbone, "variant": cfg.model.variant,
                                "method": cfg.train.method, "profile": cfg.train.profile,
                                "seed": cfg.train.seed, "checkpoint": str(args.checkpoint),
                                "eval_align_corners": corners,
                                "clips": clip_counts(val, len(val)),
                                **_converted_from(state)})
    rec["network"] = "student"
    if bench.is_video:
        rec["temporal_consistency"] = round(temporal_consistency(net, val, device, progress=True), 2)
    if args.out is not None:
        write_json(args.out / "metrics.json", rec)
    teacher = rec.get("teacher") or {}
    print(f"{bench.name}: mIoU student {rec['miou']:.2f}"
          + (f", teacher {teacher['miou']:.2f}" if teacher else "")
          + (f" -> {args.out / 'metrics.json'}" if args.out is not None else ""))
    return rec
