"""Evaluation: confusion matrix, IoU, the metrics.json record, evaluate_model, temporal consistency."""
from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from udass.data.clip import Clip
from udass.data.protocols import BENCHMARKS
from udass.evaluate import (ConfusionMatrix, confusion_from_json, confusion_to_json,
                            evaluate_model, iou_per_class, metrics_record, temporal_consistency)
from udass.io import write_json

SEQ = BENCHMARKS["synthia-seq2cityscapes-seq"]
SYN = BENCHMARKS["synthia2cityscapes"]


# ----------------------------------------------------------------------------------- matrix / IoU
def test_perfect_prediction_gives_iou_one_and_miou_100(gen):
    target = torch.randint(0, 12, (2, 40, 50), generator=gen)
    cm = ConfusionMatrix(12).update(target.clone(), target)
    assert np.allclose(iou_per_class(cm), 1.0)
    rec = metrics_record(SEQ, cm)
    assert rec["miou"] == 100.0
    assert all(v == 100.0 for v in rec["per_class_iou"].values())


def test_known_confusion_matrix_gives_hand_computed_ious():
    target = torch.tensor([0, 0, 0, 1, 1, 2, 255, 7])  # 255 and 7 (>= C) are ignored
    pred = torch.tensor([0, 0, 1, 1, 2, 2, 0, 0])
    cm = ConfusionMatrix(3).update(pred, target)
    assert cm.matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert cm.num_pixels == 6
    # IoU = TP / (GT + PRED - TP): 2/(3+2-2), 1/(2+2-1), 1/(1+2-1)
    assert np.allclose(iou_per_class(cm), [2 / 3, 1 / 3, 1 / 2])


def test_ignored_pixels_do_not_change_the_matrix(gen):
    target = torch.randint(0, 4, (30, 30), generator=gen)
    pred = torch.randint(0, 4, (30, 30), generator=gen)
    base = ConfusionMatrix(4).update(pred, target).matrix.clone()
    t2 = torch.cat([target, torch.full((5, 30), 255)])
    p2 = torch.cat([pred, torch.randint(0, 4, (5, 30), generator=gen)])
    assert torch.equal(ConfusionMatrix(4).update(p2, t2).matrix, base)


def test_update_rejects_bad_input():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(4, dtype=torch.long), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        cm.update(torch.tensor([3]), torch.tensor([0]))
    with pytest.raises(TypeError):
        cm.update(torch.zeros(2), torch.zeros(2, dtype=torch.long))


def test_add_reset_and_json_round_trip():
    a = ConfusionMatrix(3).update(torch.tensor([0, 1]), torch.tensor([0, 2]))
    b = ConfusionMatrix(3).update(torch.tensor([2]), torch.tensor([2]))
    s = a + b
    assert s.matrix.tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]
    assert torch.equal(confusion_from_json(confusion_to_json(s)).matrix, s.matrix)
    a.reset()
    assert a.num_pixels == 0


def test_a_predicted_class_without_ground_truth_counts_as_zero_as_the_field_computes_it():
    """mmseg (`eval_metrics` + nanmean) and ADVENT / TPS (`per_class_iu` + nanmean): a class that is
    predicted but absent from the ground truth has IoU 0 and counts in the mean; only a class
    with neither ground truth nor prediction (0 / 0) is left out."""
    c = SEQ.num_classes
    target = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 0, 1, 2])  # class 2 (building) predicted but never in the ground truth
    cm = ConfusionMatrix(c).update(pred, target)
    iou = iou_per_class(cm)
    assert iou[0] == 1.0 and iou[1] == 0.5 and iou[2] == 0.0 and math.isnan(iou[11])
    rec = metrics_record(SEQ, cm)
    assert rec["per_class_iou"]["building"] == 0.0 and rec["per_class_iou"]["car"] is None
    assert rec["miou"] == 50.0  # (100 + 50 + 0) / 3
    assert rec["classes_without_ground_truth"] == [n for n in SEQ.eval_class_names()
                                                   if n not in ("road", "sidewalk")]
    json.loads(json.dumps(rec))  # NaN never reaches JSON: null instead
    # the two reference formulas on a random matrix with an empty ground-truth row
    rng = np.random.default_rng(0)
    m = rng.integers(0, 50, (c, c)).astype(np.int64)
    m[4] = 0
    hist = m.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        advent = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
    intersect, pred_area, label_area = np.diag(hist), hist.sum(0), hist.sum(1)
    mmseg = intersect / (pred_area + label_area - intersect)
    assert np.array_equal(iou_per_class(m), advent) and np.array_equal(iou_per_class(m), mmseg)
    ids = list(SEQ.eval_classes)
    assert metrics_record(SEQ, m)["miou"] == round(100 * float(np.nanmean(advent[ids])), 2)


def test_record_lists_only_eval_classes_and_the_contract_keys():
    cm = ConfusionMatrix(SEQ.num_classes).update(torch.arange(12), torch.arange(12))
    rec = metrics_record(SEQ, cm, cm, step=40, extra={"backbone": "vit", "method": "quadmix",
                                                      "seed": 1})
    assert list(rec)[:7] == ["benchmark", "backbone", "method", "step", "network", "miou",
                             "per_class_iou"]
    assert rec["seed"] == 1 and rec["step"] == 40 and rec["network"] == "student"
    assert len(rec["per_class_iou"]) == 11 and "fence" not in rec["per_class_iou"]
    assert rec["teacher"]["network"] == "teacher" and rec["teacher"]["miou"] == 100.0
    assert metrics_record(SEQ, cm)["teacher"] is None
    with pytest.raises(ValueError, match="overwrite"):
        metrics_record(SEQ, cm, extra={"miou": 3.0})


def test_fence_pixels_still_count_as_false_positives_of_other_classes():
    # SYNTHIA-Seq: fence (3) is not evaluated, but fence predicted as road lowers road's IoU.
    target = torch.tensor([0, 0, 3, 3])
    pred = torch.tensor([0, 0, 0, 0])
    rec = metrics_record(SEQ, ConfusionMatrix(12).update(pred, target))
    assert rec["per_class_iou"]["road"] == 50.0 and rec["miou"] == 50.0


def test_synthia_subsets_average_the_right_classes():
    c = SYN.num_classes
    ids = torch.arange(c)
    pred = ids.clone()
    wall, sky = SYN.protocol.index("wall"), SYN.protocol.index("sky")
    pred[wall] = sky  # wall IoU 0, sky IoU 1/2; every other class present and perfect
    rec = metrics_record(SYN, ConfusionMatrix(c).update(pred, ids))
    assert len(rec["per_class_iou"]) == 16
    assert not {"terrain", "truck", "train"} & set(rec["per_class_iou"])
    assert rec["per_class_iou"]["wall"] == 0.0 and rec["per_class_iou"]["sky"] == 50.0
    assert rec["miou_16"] == rec["miou"] == round(100 * 14.5 / 16, 2)
    assert rec["miou_13"] == round(100 * 12.5 / 13, 2)  # no wall, fence, pole


def test_all_reduce_in_a_single_process_group_keeps_the_matrix():
    import torch.distributed as dist

    cm = ConfusionMatrix(3).update(torch.tensor([0, 1, 2]), torch.tensor([0, 2, 2]))
    before = cm.matrix.clone()
    assert torch.equal(cm.all_reduce().matrix, before)  # not initialised: no-op
    with tempfile.TemporaryDirectory() as d:
        dist.init_process_group("gloo", init_method=f"file://{os.path.join(d, 'pg')}",
                                rank=0, world_size=1)
        try:
            assert torch.equal(cm.all_reduce().matrix, before)
        finally:
            dist.destroy_process_group()


def _ddp_worker(rank: int, path: str, out: str) -> None:
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler

    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    cm = ConfusionMatrix(2).update(torch.tensor([rank]), torch.tensor([0]))
    cm.all_reduce()
    data = _ddp_clips()
    sampler = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=False)
    model = StrideFourStandIn(SEQ.num_classes, left=0, right=2)
    split = evaluate_model(model, data, SEQ, "cpu", sampler=sampler)
    if rank == 0:
        write_json(out, {"sum": cm.matrix.tolist(), "eval": split.matrix.tolist()})
    dist.barrier()  # no rank leaves while the other still communicates (gloo aborts otherwise)
    dist.destroy_process_group()


def _ddp_clips() -> list[Clip]:
    labels = [torch.full((16, 16), i % 3, dtype=torch.long) for i in range(4)]
    return [_eval_clip(16, 16, lab, str(i)) for i, lab in enumerate(labels)]


@pytest.mark.timeout(120)
def test_all_reduce_sums_over_two_processes(tmp_path):
    """DDP on CPU (gloo, 2 processes): the matrix and a sharded evaluation are summed over ranks."""
    import torch.multiprocessing as mp

    out = tmp_path / "m.json"
    mp.spawn(_ddp_worker, args=(str(tmp_path / "pg"), str(out)), nprocs=2)
    got = json.loads(out.read_text())
    assert got["sum"] == [[1, 1], [0, 0]]
    single = evaluate_model(StrideFourStandIn(SEQ.num_classes, 0, 2), _ddp_clips(), SEQ, "cpu")
    assert got["eval"] == single.matrix.tolist() and single.num_pixels == 4 * 256


# ----------------------------------------------------------------------------------- evaluate_model
class StrideFourStandIn(nn.Module):
    """Logits at stride 4: one-hot (x10) of class `left` on the left half, `right` on the right."""

    def __init__(self, num_classes: int, left: int, right: int) -> None:
        super().__init__()
        self.num_classes, self.left, self.right = num_classes, left, right
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.calls: list[tuple[int, ...]] = []

    def forward(self, frames: Tensor, flows: Tensor) -> dict[str, Tensor]:
        assert not self.training, "evaluation must run in eval mode"
        b, k, _, h, w = frames.shape
        assert flows.shape == (b, k - 1, 2, h, w)
        self.calls.append(tuple(frames.shape))
        cls = torch.full((b, h // 4, w // 4), self.left, dtype=torch.long)
        cls[..., w // 8:] = self.right
        onehot = torch.nn.functional.one_hot(cls, self.num_classes).permute(0, 3, 1, 2)
        return {"logits": self.scale * onehot.float()}


def _eval_clip(h: int, w: int, label: Tensor, name: str) -> Clip:
    k = 2
    labels = torch.full((k, *label.shape), 255, dtype=torch.long)
    labels[0] = label
    return Clip(torch.rand(k, 3, h, w), torch.zeros(k - 1, 2, h, w), labels, "target", name)


def test_evaluate_model_upsamples_to_native_label_size_and_restores_mode():
    c = SEQ.num_classes
    model = StrideFourStandIn(c, left=0, right=2).train()
    # frames 16 x 16 -> logits 4 x 4; labels 32 x 32 (native, larger than the frames).
    # Bilinear (align_corners=False) upsampling of the 2-column halves splits exactly at column 16.
    lab = torch.zeros(32, 32, dtype=torch.long)
    lab[:, 16:] = 2
    lab[:8, :] = 1            # 8 x 32 pixels of class 1, half predicted 0, half 2
    lab[30:, :] = 255         # ignored
    lab2 = torch.full((24, 24), 2, dtype=torch.long)  # a second native size: split at column 12
    data = [_eval_clip(16, 16, lab, "a"), _eval_clip(16, 16, lab2, "b")]
    cm = evaluate_model(model, data, SEQ, "cpu", batch_size=2)
    m = cm.matrix
    assert model.training  # mode restored
    assert m[1, 0] == 8 * 16 and m[1, 2] == 8 * 16
    assert m[0, 0] == 22 * 16 and m[2, 2] == 22 * 16 + 24 * 12
    assert m[2, 0] == 24 * 12
    assert cm.num_pixels == 30 * 32 + 24 * 24
    # clips of different label sizes in one loader batch are run as two model calls
    assert model.calls == [(1, 2, 3, 16, 16), (1, 2, 3, 16, 16)]
    assert evaluate_model(model, data, SEQ, "cpu", max_clips=1).num_pixels == 30 * 32


# ----------------------------------------------------------------------------------- consistency
class ThresholdStandIn(nn.Module):
    """Full-resolution prediction from the content of frame t: class 1 where red > 0.5, else 0."""

    def forward(self, frames: Tensor, flows: Tensor) -> dict[str, Tensor]:
        fg = (frames[:, 0, 0] > 0.5).float()
        return {"logits": torch.stack([1 - fg, fg], dim=1)}


def _stripes(h: int, w: int, shift: int) -> Tensor:
    xs = torch.arange(w) + shift
    img = ((xs // 3) % 2).float().expand(h, w)
    return img.expand(3, h, w).clone()


def test_temporal_consistency_is_100_for_a_static_clip_with_zero_flow():
    frame = torch.rand(3, 16, 16)
    clip = Clip(torch.stack([frame, frame]), torch.zeros(1, 2, 16, 16), None, "target", "s")
    model = StrideFourStandIn(SEQ.num_classes, 3, 5)
    assert temporal_consistency(model, [clip, clip], "cpu") == 100.0
    assert temporal_consistency(ThresholdStandIn(), [clip], "cpu") == 100.0


def test_temporal_consistency_follows_the_flow():
    h, w, s = 12, 30, 2
    prev, cur = _stripes(h, w, 0), _stripes(h, w, s)  # cur(x) = prev(x + s)
    flow = torch.zeros(1, 2, h, w)
    flow[:, 0] = s  # backward flow t -> t-1: frame_t(p) = frame_{t-1}(p + flow)
    moving = Clip(torch.stack([cur, prev]), flow, None, "target", "m")
    assert temporal_consistency(ThresholdStandIn(), [moving], "cpu") == 100.0
    wrong = Clip(torch.stack([cur, prev]), torch.zeros(1, 2, h, w), None, "target", "w")
    assert temporal_consistency(ThresholdStandIn(), [wrong], "cpu") < 80.0


class _RandomLogits(nn.Module):
    """Fixed random logits at 1/4 of the frame size."""

    def __init__(self, num_classes: int, seed: int = 0) -> None:
        super().__init__()
        self.num_classes, self.seed = num_classes, seed

    def forward(self, frames: Tensor, flows: Tensor) -> dict[str, Tensor]:
        b, _, _, h, w = frames.shape
        g = torch.Generator().manual_seed(self.seed)
        return {"logits": torch.randn(b, self.num_classes, h // 4, w // 4, generator=g)}


@pytest.mark.parametrize("name,corners", [("synthia-seq2cityscapes-seq", True), ("gtav2cityscapes", False)])
def test_logits_are_upsampled_as_each_benchmarks_reference_evaluation(name, corners):
    """TPS / DA-VSN evaluate the video benchmarks with align_corners=True, mmseg the image ones
    with False; `align_corners` overrides the benchmark's choice."""
    bench = BENCHMARKS[name]
    assert bench.eval_align_corners is corners
    model = _RandomLogits(bench.num_classes)
    label = torch.randint(0, bench.num_classes, (24, 40))
    clips = [_eval_clip(24, 40, label, "a")]
    logits = model(clips[0].frames[None], clips[0].flows[None])["logits"]
    for setting in (None, not corners):
        used = corners if setting is None else setting
        cm = evaluate_model(model, clips, bench, "cpu", align_corners=setting)
        pred = torch.nn.functional.interpolate(logits, size=(24, 40), mode="bilinear",
                                               align_corners=used).argmax(1)
        assert torch.equal(cm.matrix, ConfusionMatrix(bench.num_classes).update(pred, label[None]).matrix)
    other = torch.nn.functional.interpolate(logits, size=(24, 40), mode="bilinear",
                                            align_corners=not corners).argmax(1)
    assert not torch.equal(other, torch.nn.functional.interpolate(
        logits, size=(24, 40), mode="bilinear", align_corners=corners).argmax(1))
