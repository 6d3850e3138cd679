"""Weighted cross-entropy, EMA teacher and flow-propagated pseudo-labels (docs/method.md, section 3)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from leave import leave_without_teardown
from udass.data.flow import warp, warp_valid_mask
from udass.method.losses import weighted_cross_entropy
from udass.method.teacher import (EMATeacher, PseudoLabels, dacs_weight, ema_alpha, propagate_probs,
                                  pseudo_label, unwrap_model)


# ------------------------------------------------------------------------------------- losses
def test_weighted_cross_entropy_uniform_logits_is_log_c_times_mean_weight_over_labelled():
    c = 4
    logits = torch.zeros(2, c, 3, 5, requires_grad=True)
    labels = torch.randint(0, c, (2, 3, 5))
    labels[0, 0] = 255  # 5 ignored pixels
    weights = torch.full((2, 3, 5), 0.5)
    weights[1] = 0.25
    loss = weighted_cross_entropy(logits, labels, weights)
    valid = labels != 255
    expected = math.log(c) * (weights * valid).sum() / valid.sum()
    assert torch.allclose(loss, expected)
    assert torch.allclose(weighted_cross_entropy(logits, labels), torch.tensor(math.log(c)))
    loss.backward()
    assert logits.grad is not None


def test_weighted_cross_entropy_upsamples_logits_bilinearly():
    logits = torch.randn(2, 3, 4, 6)
    labels = torch.randint(0, 3, (2, 8, 12))
    up = F.interpolate(logits, size=(8, 12), mode="bilinear", align_corners=False)
    assert torch.allclose(weighted_cross_entropy(logits, labels), F.cross_entropy(up, labels))


def test_weighted_cross_entropy_all_ignored_is_zero_with_graph():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = weighted_cross_entropy(logits, torch.full((1, 2, 2), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


# ------------------------------------------------------------------------------------- EMA
class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.bn(self.conv(x)))


def test_ema_alpha_formula():
    assert ema_alpha(0, 0.999) == 0.0
    assert ema_alpha(1, 0.999) == 0.5
    assert ema_alpha(3, 0.999) == 0.75
    assert ema_alpha(100000, 0.999) == 0.999


def test_ema_update_matches_formula_for_params_and_bn_buffers():
    torch.manual_seed(0)
    student = TinyNet()
    teacher = EMATeacher(student)
    assert not teacher.model.training
    assert all(not p.requires_grad for p in teacher.model.parameters())
    # change the student: parameters and BN statistics
    student.train()
    student(torch.rand(4, 3, 6, 6))
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    old_t = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    new_s = {k: v.clone() for k, v in student.state_dict().items()}
    alpha = teacher.update(student, step=5, ema=0.999)
    assert alpha == pytest.approx(1 - 1 / 6)
    now = teacher.model.state_dict()
    for k in now:
        if now[k].is_floating_point():
            assert torch.allclose(now[k], alpha * old_t[k] + (1 - alpha) * new_s[k], atol=1e-6), k
        else:
            assert torch.equal(now[k], new_s[k]), k  # num_batches_tracked copied
    assert not torch.equal(now["bn.running_mean"], old_t["bn.running_mean"])
    assert not teacher.model.training and not teacher.model.drop.training


def test_ema_step_zero_copies_student_and_teacher_stays_eval():
    student = TinyNet()
    teacher = EMATeacher(student)
    with torch.no_grad():
        student.conv.weight.add_(1.0)
    student.train()
    teacher.update(nn.DataParallel(student), step=0, ema=0.99)  # wrapped students are unwrapped
    assert torch.equal(teacher.model.conv.weight, student.conv.weight)
    assert not teacher.model.training
    x = torch.rand(2, 3, 5, 5)
    assert torch.equal(teacher.model(x), teacher.model(x))  # dropout off


def test_ema_update_follows_the_students_current_tensors_after_its_pairing_is_cached():
    """The teacher pairs tensors once per student; later updates must still read what the
    student holds now: a buffer replaced by assignment, another student object of the same
    architecture, and a teacher switched to training mode by a caller."""
    torch.manual_seed(0)
    student = TinyNet()
    teacher = EMATeacher(student)
    teacher.update(student, step=3, ema=0.999)  # the pairing is cached here
    student.bn.running_mean = torch.full((4,), 8.0)  # replaces the buffer object, not its values
    old = teacher.model.bn.running_mean.clone()
    alpha = teacher.update(student, step=3, ema=0.999)
    assert torch.allclose(teacher.model.bn.running_mean, alpha * old + (1 - alpha) * 8.0)
    other = TinyNet()  # a second student object: its values, not the first one's
    with torch.no_grad():
        other.conv.weight.fill_(3.0)
    teacher.update(other, step=0, ema=0.999)
    assert torch.equal(teacher.model.conv.weight, other.conv.weight)
    teacher.model.train()
    teacher.update(other, step=0, ema=0.999)
    assert not teacher.model.training and not teacher.model.drop.training


def test_ema_update_averages_a_shared_weight_once():
    """A weight registered in two modules (tied) is one tensor: one EMA step, not two."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 3, 1)
    student = nn.Sequential(conv, nn.ReLU(), conv)
    teacher = EMATeacher(student)
    with torch.no_grad():
        student[0].weight.add_(1.0)
    old = teacher.model[0].weight.clone()
    assert teacher.model[0].weight is teacher.model[2].weight  # deepcopy keeps the tie
    alpha = teacher.update(student, step=1, ema=0.999)
    assert torch.allclose(teacher.model[0].weight, alpha * old + (1 - alpha) * student[0].weight)


def test_ema_update_rejects_a_student_of_another_architecture():
    teacher = EMATeacher(TinyNet())
    with pytest.raises(ValueError, match="differ in tensors"):
        teacher.update(nn.Sequential(nn.Conv2d(3, 4, 3)), step=1, ema=0.999)


def test_teacher_state_dict_round_trip():
    a, b = EMATeacher(TinyNet()), EMATeacher(TinyNet())
    b.load_state_dict(a.state_dict())
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert not b.model.training


def _unwrap_worker(rank: int, init: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=1)
    student = TinyNet()
    ddp = nn.parallel.DistributedDataParallel(student)
    teacher = EMATeacher(ddp)
    keys = set(teacher.state_dict()) == set(student.state_dict())
    with torch.no_grad():
        student.conv.bias.fill_(2.0)
    teacher.update(ddp, step=0, ema=0.999)
    torch.save({"unwrapped": unwrap_model(ddp) is student, "keys": keys,
                "bias": torch.equal(teacher.model.conv.bias, student.conv.bias)}, out)
    dist.destroy_process_group()
    leave_without_teardown()  # a DDP wrapper is not torn down (tests/leave.py)


def test_teacher_unwraps_distributed_data_parallel(tmp_path):
    """In a process of its own: a DDP wrapper freed in the test process could hang it
    (tests/leave.py)."""
    import torch.multiprocessing as mp

    mp.spawn(_unwrap_worker, args=(str(tmp_path / "pg"), str(tmp_path / "r")), nprocs=1)
    assert torch.load(tmp_path / "r") == {"unwrapped": True, "keys": True, "bias": True}


# ------------------------------------------------------------------------------------- pseudo-labels
class StandIn(nn.Module):
    """Logits of frame t only: `scale * frames[:, 0]` (3 classes = the RGB channels), counting calls."""

    def __init__(self, scale: float = 10.0, stride: int = 1) -> None:
        super().__init__()
        self.scale, self.stride, self.calls, self.batches = scale, stride, 0, []

    def forward(self, frames, flows):
        assert flows.shape[1] == frames.shape[1] - 1
        self.calls += 1
        self.batches.append(frames.shape[0])
        x = frames[:, 0]
        if self.stride > 1:
            x = x[..., ::self.stride, ::self.stride]
        return {"logits": self.scale * x}


def probs_of(frame, scale=10.0):
    return torch.softmax(scale * frame, dim=1)


def test_pseudo_label_identical_frames_average_equals_p_t_in_one_batched_call():
    b, h, w = 2, 6, 8
    f = torch.rand(b, 1, 3, h, w)
    frames = f.repeat(1, 3, 1, 1, 1)
    model = StandIn()
    pl = pseudo_label(model, frames, torch.zeros(b, 2, 2, h, w))
    assert model.calls == 1 and model.batches == [2 * b]
    p = probs_of(f[:, 0])
    assert pl.labels.shape == (b, 2, h, w) and pl.labels.dtype == torch.int64
    assert torch.equal(pl.labels[:, 0], p.argmax(1)) and torch.equal(pl.labels[:, 1], p.argmax(1))
    assert torch.allclose(pl.confidence[:, 0], p.max(1).values)
    assert pl.valid.all()


def test_pseudo_label_averages_where_flow_valid_and_uses_p_t_elsewhere():
    b, h, w = 2, 6, 8
    frames = torch.rand(b, 3, 3, h, w)
    flows = torch.zeros(b, 2, 2, h, w)
    flows[:, 0, 0, :, : w // 2] = -100.0  # left half of frame t points outside frame t-1
    pl = pseudo_label(StandIn(), frames, flows)
    p_t, p_prev = probs_of(frames[:, 0]), probs_of(frames[:, 1])
    expected = (p_t + p_prev) / 2  # zero flow on the right half: warp is the identity
    expected[..., : w // 2] = p_t[..., : w // 2]
    assert torch.equal(pl.valid[..., : w // 2], torch.zeros(b, h, w // 2, dtype=torch.bool))
    assert pl.valid[..., w // 2:].all()
    assert torch.allclose(pl.confidence[:, 0], expected.max(1).values, atol=1e-6)
    assert torch.equal(pl.labels[:, 0], expected.argmax(1))
    assert torch.equal(pl.labels[:, 1], p_prev.argmax(1))
    off = pseudo_label(StandIn(), frames, flows, propagate=False)
    assert torch.equal(off.labels[:, 0], p_t.argmax(1)) and not off.valid.any()


def test_propagate_probs_is_the_formula_bit_for_bit():
    """P = (P_t + warp(P_{t-1}, F)) / 2 where the warp is valid, P_t elsewhere: the same bits as
    the plain expression (the implementation works in the warp's output buffer)."""
    g = torch.Generator().manual_seed(0)
    p_t = torch.softmax(torch.randn(2, 5, 9, 14, generator=g), 1)
    p_prev = torch.softmax(torch.randn(2, 5, 9, 14, generator=g), 1)
    flow = torch.randn(2, 2, 9, 14, generator=g) * 3
    flow[:, 0, :, :3] = -20.0  # leaves the frame
    inputs = (p_t.clone(), p_prev.clone())
    out, valid = propagate_probs(p_t, p_prev, flow)
    ref_valid = warp_valid_mask(flow)
    ref = torch.where(ref_valid.unsqueeze(1), 0.5 * (p_t + warp(p_prev, flow)), p_t)
    assert torch.equal(valid, ref_valid) and (~valid).any() and valid.any()
    assert torch.equal(out.view(torch.int32), ref.view(torch.int32))
    assert torch.equal(p_t, inputs[0]) and torch.equal(p_prev, inputs[1])  # inputs untouched
    p_prev.requires_grad_(True)  # differentiable too (no out= under autograd)
    grad_out, _ = propagate_probs(p_t, p_prev, flow)
    assert torch.equal(grad_out, ref)
    grad_out.sum().backward()
    assert p_prev.grad is not None and p_prev.grad.abs().sum() > 0


def test_pseudo_label_warps_the_previous_prediction_by_flow():
    """Frame t-1 is frame t shifted by 2 columns; the flow says so; the warped P_{t-1} agrees with P_t."""
    b, h, w = 1, 5, 12
    cur = torch.rand(b, 3, h, w)
    prev = torch.zeros_like(cur)
    prev[..., 2:] = cur[..., :-2]  # cur(p) = prev(p + (2, 0))
    flows = torch.zeros(b, 2, 2, h, w)
    flows[:, 0, 0] = 2.0
    frames = torch.stack([cur, prev, prev], 1)
    pl = pseudo_label(StandIn(), frames, flows)
    p_t = probs_of(cur)
    assert pl.valid[..., :-2].all() and not pl.valid[..., -2:].any()
    assert torch.allclose(pl.confidence[:, 0], p_t.max(1).values, atol=1e-6)
    assert torch.equal(pl.labels[:, 0], p_t.argmax(1))


def test_pseudo_label_k2_uses_one_frame_clip_for_t_minus_1_and_k1_one_pass():
    b, h, w = 2, 4, 6
    frames = torch.rand(b, 2, 3, h, w)
    model = StandIn()
    pl = pseudo_label(model, frames, torch.zeros(b, 1, 2, h, w))
    assert model.calls == 2 and pl.labels.shape == (b, 2, h, w)
    assert torch.equal(pl.labels[:, 1], probs_of(frames[:, 1]).argmax(1))
    model = StandIn()
    img = pseudo_label(model, frames[:, :1], torch.zeros(b, 0, 2, h, w))
    assert model.calls == 1
    assert img.labels.shape == (b, 1, h, w) and img.weights.shape == (b, 1, h, w)
    assert torch.equal(img.labels[:, 0], probs_of(frames[:, 0]).argmax(1))
    assert not img.valid.any()


def test_pseudo_label_upsamples_logits_to_frame_size():
    b, h, w = 1, 8, 8
    frames = torch.rand(b, 1, 3, h, w)
    pl = pseudo_label(StandIn(stride=2), frames, torch.zeros(b, 0, 2, h, w))
    logits = 10 * frames[:, 0, :, ::2, ::2]
    up = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    assert pl.labels.shape == (b, 1, h, w)
    assert torch.allclose(pl.confidence[:, 0], torch.softmax(up, 1).max(1).values, atol=1e-6)


def test_dacs_weights_are_the_share_above_threshold_per_sample_and_frame():
    b, h, w = 2, 4, 5
    frames = torch.zeros(b, 3, 3, h, w)
    frames[0, :, 0, :, :2] = 1.0  # sample 0: 8 of 20 pixels confident (p = 0.99991 > 0.968)
    frames[1, :, 0, :3, :] = 1.0  # sample 1: 15 of 20
    frames[1, 1:, 0] = 0.0        # sample 1, frames t-1, t-2: nothing confident
    pl = pseudo_label(StandIn(), frames, torch.zeros(b, 2, 2, h, w), threshold=0.968)
    assert torch.allclose(pl.weights[0, 0], torch.full((h, w), 8 / 20))
    assert torch.allclose(pl.weights[0, 1], torch.full((h, w), 8 / 20))
    # sample 1, frame t: averaging with the unconfident t-1 drops confidence below the threshold
    assert torch.allclose(pl.weights[1, 0], torch.zeros(h, w))
    assert torch.allclose(pl.weights[1, 1], torch.zeros(h, w))
    noprop = pseudo_label(StandIn(), frames, torch.zeros(b, 2, 2, h, w), propagate=False)
    assert torch.allclose(noprop.weights[1, 0], torch.full((h, w), 15 / 20))
    conf = torch.tensor([[[0.5, 0.97], [0.99, 0.1]]])
    assert torch.equal(dacs_weight(conf, 0.968), torch.full((1, 2, 2), 0.5))


def test_pseudo_labels_to_device_keeps_fields():
    pl = PseudoLabels(torch.zeros(1, 1, 2, 2, dtype=torch.long), torch.ones(1, 1, 2, 2),
                      torch.ones(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool))
    moved = pl.to("cpu")
    assert torch.equal(moved.labels, pl.labels) and moved.num_frames == 1
