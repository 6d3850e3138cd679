"""HRDA multi-resolution wrapper (udass.models.hrda) and its loss, at tiny sizes: detail crops
inside the context crop on the grid, the attention fusion, sliding inference, the model contract."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from udass.errors import UdassError
from udass.method.losses import multi_resolution_loss, weighted_cross_entropy
from udass.method.teacher import EMATeacher, pseudo_label
from udass.models import build_model
from udass.models.hrda import (HRDAModel, box_mask, crop_boxes, insert_boxes, random_detail_boxes,
                               slide_inference, slide_windows)


def vit_hrda(detail: int = 32, **kw) -> HRDAModel:
    torch.manual_seed(0)
    return HRDAModel(build_model("vit", 5, "mit_tiny", drop_path=0.0), detail_size=(detail, detail),
                     eval_window=(64, 64), eval_stride=(32, 32), **kw)


def no_flow(frames: torch.Tensor) -> torch.Tensor:
    return torch.zeros(frames.shape[0], 0, 2, *frames.shape[-2:])


# ----------------------------------------------------------------------------------- windows
def test_detail_boxes_lie_inside_the_crop_on_the_grid_and_reach_every_position():
    g = torch.Generator().manual_seed(0)
    boxes = random_detail_boxes(4000, (64, 96), (32, 48), 8, g)
    y1, y2, x1, x2 = boxes.unbind(1)
    assert bool(((y2 - y1) == 32).all() and ((x2 - x1) == 48).all())
    assert bool((y1 >= 0).all() and (y2 <= 64).all() and (x1 >= 0).all() and (x2 <= 96).all())
    assert set(y1.tolist()) == set(range(0, 33, 8)) and set(x1.tolist()) == set(range(0, 49, 8))
    with pytest.raises(UdassError, match="larger than the training crop"):
        random_detail_boxes(1, (16, 16), (32, 32), 8)


def test_slide_windows_cover_the_image_like_mmseg():
    assert slide_windows((1024, 2048), (1024, 1024), (512, 512)) == [
        (0, 1024, 0, 1024), (0, 1024, 512, 1536), (0, 1024, 1024, 2048)]
    assert slide_windows((1024, 1024), (512, 512), (256, 256))[-1] == (512, 1024, 512, 1024)
    assert len(slide_windows((1024, 1024), (512, 512), (256, 256))) == 9
    assert slide_windows((40, 40), (64, 64), (32, 32)) == [(0, 40, 0, 40)]  # one window: the image


def test_crop_insert_and_mask_agree():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float).view(2, 3, 8, 8)
    boxes = torch.tensor([[0, 16, 8, 24], [16, 32, 0, 16]])  # input pixels; grid 1/4
    small = crop_boxes(x, boxes, 0.25)
    assert torch.equal(small[0], x[0, :, 0:4, 2:6]) and torch.equal(small[1], x[1, :, 4:8, 0:4])
    back = insert_boxes(small, boxes, (8, 8), 0.25)
    m = box_mask(boxes, (8, 8), 0.25)
    assert torch.equal(back, x * m) and m.sum() == 2 * 16


# ----------------------------------------------------------------------------------- training
def test_detail_prediction_is_the_network_on_its_crop_inside_the_context_crop():
    model = vit_hrda().eval()  # the training pass without dropout and batch statistics
    frames = torch.rand(2, 1, 3, 64, 64)
    boxes = torch.tensor([[8, 40, 32, 64], [32, 64, 0, 32]])
    with torch.no_grad():
        out = model.forward_train(frames[:, 0], boxes)
    net = model.net
    for i, (y1, y2, x1, x2) in enumerate(boxes.tolist()):
        crop = frames[i:i + 1, :, :, y1:y2, x1:x2]
        with torch.no_grad():
            ref = net.fuse_static(net.segment(crop[:, 0]).logits)
        assert torch.allclose(out["logits_detail"][i:i + 1], ref, atol=1e-5)
    with torch.no_grad():
        ctx = net.segment(F.interpolate(frames[:, 0], scale_factor=0.5, mode="bilinear",
                                        align_corners=False))
    assert torch.allclose(out["logits_context"], net.fuse_static(ctx.logits), atol=1e-5)
    assert torch.allclose(out["features"], ctx.features, atol=1e-5)
    assert torch.equal(out["detail_boxes"], boxes)
    assert out["logits"].shape == (2, 5, 16, 16) and out["logits_detail"].shape == (2, 5, 8, 8)
    trained = model.train()(frames, no_flow(frames), boxes=boxes)
    assert trained["aux"] is None and trained["logits_t"] is trained["logits"]


def test_fusion_is_hrdas_formula():
    model = vit_hrda().train()
    frames = torch.rand(2, 1, 3, 64, 64)
    boxes = torch.tensor([[16, 48, 0, 32], [0, 32, 32, 64]])
    out = model(frames, no_flow(frames), boxes=boxes)
    # HRDA: the attention masked on the context grid at box / (r / s) = box / 8, then
    # fused = up(a) * insert(detail at box / r) + up((1 - a) * context), up = x2 bilinear
    mask = torch.zeros(2, 1, 8, 8)
    for i, (y1, y2, x1, x2) in enumerate(boxes.tolist()):
        mask[i, :, y1 // 8:y2 // 8, x1 // 8:x2 // 8] = 1
    att = out["attention"] * mask
    inserted = torch.zeros(2, 5, 16, 16)
    for i, (y1, y2, x1, x2) in enumerate(boxes.tolist()):
        inserted[i, :, y1 // 4:y2 // 4, x1 // 4:x2 // 4] = out["logits_detail"][i]
    up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
    want = up(att) * inserted + up((1 - att) * out["logits_context"])
    assert torch.allclose(out["logits"], want, atol=1e-6)


def test_saturated_attention_selects_detail_inside_and_context_outside():
    model = vit_hrda().train()
    head = model.attention.conv_seg
    torch.nn.init.zeros_(head.weight)
    frames = torch.rand(1, 1, 3, 64, 64)
    box = torch.tensor([[16, 48, 16, 48]])  # output cells 4..11; away from the edges: 5..10
    for bias, inside in ((50.0, "detail"), (-50.0, "context")):
        torch.nn.init.constant_(head.bias, bias)
        out = model(frames, no_flow(frames), boxes=box)
        ctx_up = F.interpolate(out["logits_context"], scale_factor=2, mode="bilinear",
                               align_corners=False)
        core = out["logits"][..., 5:11, 5:11]
        ref = out["logits_detail"][..., 1:7, 1:7] if inside == "detail" else ctx_up[..., 5:11, 5:11]
        assert torch.allclose(core, ref, atol=1e-6)
        assert torch.allclose(out["logits"][..., :3, :], ctx_up[..., :3, :], atol=1e-6)  # outside


def test_loss_supervises_fused_and_detail_and_trains_every_part():
    model = vit_hrda().train()
    frames = torch.rand(2, 1, 3, 64, 64)
    labels = torch.randint(0, 5, (2, 64, 64))
    labels[0, :8] = 255
    weights = torch.rand(2, 64, 64)
    out = model(frames, no_flow(frames), boxes=torch.tensor([[0, 32, 0, 32], [32, 64, 16, 48]]))
    loss = multi_resolution_loss(out, labels, weights, detail_weight=0.1)
    fused = weighted_cross_entropy(out["logits"], labels, weights)
    detail = weighted_cross_entropy(out["logits_detail"],
                                    torch.stack([labels[0, 0:32, 0:32], labels[1, 32:64, 16:48]]),
                                    torch.stack([weights[0, 0:32, 0:32], weights[1, 32:64, 16:48]]))
    assert torch.allclose(loss["fused"], fused) and torch.allclose(loss["detail"], detail)
    assert torch.allclose(loss["total"], 0.9 * fused + 0.1 * detail)
    loss["total"].backward()
    groups = model.param_groups()
    assert all(p.grad is not None for p in model.attention.parameters())
    assert {id(p) for p in model.attention.parameters()} <= {id(p) for p in groups["head"]}
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in groups["backbone"])


def test_cnn_grid_is_resampled_onto_the_output_grid():
    torch.manual_seed(0)
    model = HRDAModel(build_model("cnn", 5, "resnet_tiny"), detail_size=(32, 32),
                      eval_window=(64, 64), eval_stride=(32, 32)).train()
    assert model.divisible == 16  # output stride 8 / scale 0.5
    frames = torch.rand(2, 1, 3, 64, 64)
    out = model(frames, no_flow(frames))
    assert out["logits"].shape == (2, 5, 8, 8) and out["logits_detail"].shape == (2, 5, 4, 4)
    assert bool((out["detail_boxes"] % 16 == 0).all())
    model.eval()
    with torch.no_grad():
        assert model(frames, no_flow(frames))["logits"].shape == (2, 5, 8, 8)


# ----------------------------------------------------------------------------------- inference
def test_slide_inference_equals_full_inference_where_one_window_covers_the_image():
    model = vit_hrda().eval()
    images = torch.rand(2, 3, 32, 48)

    def predict(x):
        return model.net.segment(x).logits

    with torch.no_grad():
        full = predict(images)
        slid = slide_inference(predict, images, (64, 64), (32, 32), 4)
    assert torch.equal(slid, full)


def test_overlapping_windows_average_a_local_prediction_back_to_the_full_one():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 1)

    def predict(x):  # local and translation-equivariant on the stride-4 grid
        return F.avg_pool2d(conv(x), 4)

    images = torch.rand(2, 3, 48, 80)
    with torch.no_grad():
        slid = slide_inference(predict, images, (32, 32), (16, 16), 4)
        full = predict(images)
    assert len(slide_windows((48, 80), (32, 32), (16, 16))) == 2 * 4
    assert torch.allclose(slid, full, atol=1e-6)


def test_inference_with_one_detail_window_is_the_detail_network_fused_with_context():
    model = vit_hrda(detail=64).eval()  # the detail window is the whole 64 x 64 input
    frames = torch.rand(1, 1, 3, 64, 64)
    with torch.no_grad():
        out = model(frames, no_flow(frames))
        net = model.net
        hr = net.segment(frames[:, 0]).logits
        ctx = net.segment(model.context(frames[:, 0]))
        att = torch.sigmoid(model.attention.classify(model.attention.decode(ctx.encoder)))
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        want = up(att) * hr + up((1 - att) * ctx.logits)
    assert torch.allclose(out["logits"], want, atol=1e-5)
    assert out["features"] is None and out["logits_t"] is out["logits"]


def test_inputs_larger_than_the_eval_window_are_slid_over():
    model = vit_hrda().eval()
    frames = torch.rand(1, 1, 3, 64, 128)  # eval windows 64 x 64, stride 32: 3 windows
    with torch.no_grad():
        out = model(frames, no_flow(frames))["logits"]
        parts = [model.encode_decode(frames[:, 0, :, :, x:x + 64]) for x in (0, 32, 64)]
    want = torch.zeros(1, 5, 16, 32)
    count = torch.zeros(1, 1, 16, 32)
    for x, p in zip((0, 8, 16), parts):
        want[..., x:x + 16] += p
        count[..., x:x + 16] += 1
    assert torch.allclose(out, want / count, atol=1e-5)


def test_teacher_pseudo_labels_come_from_hrda_inference():
    model = vit_hrda()
    teacher = EMATeacher(model)
    frames = torch.rand(2, 1, 3, 64, 64)
    pl = pseudo_label(teacher.model, frames, no_flow(frames))
    with torch.no_grad():
        logits = teacher.model.inference(frames[:, 0])
    probs = torch.softmax(F.interpolate(logits, size=(64, 64), mode="bilinear", align_corners=False), 1)
    assert torch.equal(pl.labels[:, 0], probs.argmax(1))


# ----------------------------------------------------------------------------------- contract
def test_bad_inputs_are_clear_errors():
    model = vit_hrda()
    with pytest.raises(UdassError, match="one-frame clips"):
        model(torch.rand(1, 2, 3, 64, 64), torch.zeros(1, 1, 2, 64, 64))
    with pytest.raises(UdassError, match="multiples of 8"):
        model(torch.rand(1, 1, 3, 60, 64), torch.zeros(1, 0, 2, 60, 64))
    with pytest.raises(UdassError, match="hrda_detail_size"):
        HRDAModel(build_model("vit", 5, "mit_tiny"), detail_size=(30, 30))


def test_segmodel_exposes_its_bottleneck_and_static_fusion():
    torch.manual_seed(0)
    net = build_model("vit", 5, "mit_tiny").eval()
    frames = torch.rand(2, 1, 3, 32, 32)
    with torch.no_grad():
        out = net(frames, no_flow(frames))
        seg = net.segment(frames[:, 0])
    assert torch.equal(out["bottleneck"], seg.encoder[-1]) and out["bottleneck"].shape[-1] == 1
    assert torch.equal(net.fuse_static(seg.logits), out["logits"])
