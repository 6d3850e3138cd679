"""Feature-level QuadMix and spatio-temporal aggregation (docs/method.md, sections 6 and 7)."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn

from udass.config import AggregationConfig
from udass.method.aggregation import (aggregate_temporal, aggregation_loss, class_prototypes,
                                      downsample_labels, entropy_weights, mean_entropy, mmd_loss,
                                      prototype_contrastive_loss)
from udass.method.feature_mix import FeatureFusion, feature_mix_loss, shared_region
from udass.method.losses import weighted_cross_entropy
from udass.method.quadmix import MixedClip, quadmix
from udass.method.templates import Template


# ------------------------------------------------------------------------------------- feature mix
def test_shared_region_on_constructed_masks():
    ms = torch.tensor([[[True, True, False, False]]])
    mt = torch.tensor([[[True, False, True, False]]])
    assert shared_region(ms, mt).tolist() == [[[False, True, True, False]]]
    assert shared_region(ms, mt, ss=False).tolist() == [[[False, False, True, False]]]
    assert shared_region(ms, mt, tt=False).tolist() == [[[False, True, False, False]]]


@pytest.mark.parametrize("ss,tt", list(itertools.product([True, False], repeat=2)))
def test_tss_and_stt_agree_exactly_on_the_shared_region(gen, ss, tt):
    b, k, h, w = 2, 2, 6, 7
    clips = [MixedClip(torch.rand(b, k, 3, h, w, generator=gen), torch.rand(b, k - 1, 2, h, w),
                       torch.randint(0, 5, (b, k, h, w)), torch.rand(b, k, h, w)) for _ in range(4)]
    ms, mt = (torch.rand(b, k, h, w, generator=gen) > 0.5 for _ in range(2))
    tpl = [Template(c.frames, c.flows, c.labels, c.weights, m, torch.zeros(b, 5, dtype=torch.bool))
           for c, m in ((clips[2], ms), (clips[3], mt))]
    paths = [p for p, on in (("ss", ss), ("tt", tt)) if on] + ["tss", "stt"]
    out = quadmix(clips[0], clips[1], tpl[0], tpl[1], paths)
    shared = shared_region(ms[:, 0], mt[:, 0], ss=ss, tt=tt)
    same = (out["tss"].frames[:, 0] == out["stt"].frames[:, 0]).all(dim=1)
    assert torch.equal(same, shared)  # random content: equal exactly where the content is shared


def test_feature_fusion_is_identity_at_init_and_fuses_inside_the_mask_only():
    torch.manual_seed(0)
    fusion = FeatureFusion(4)
    assert fusion.g.bias is None
    pc, pd = torch.randn(2, 4, 3, 5), torch.randn(2, 4, 3, 5)
    shared = torch.rand(2, 6, 10) > 0.5
    oc, od = fusion(pc, pd, shared)
    assert torch.equal(oc, pc) and torch.equal(od, pd)
    nn.init.normal_(fusion.g.weight)
    oc, od = fusion(pc, pd, shared)
    m = shared[:, ::2, ::2].unsqueeze(1)  # nearest 2x downsampling keeps the even pixels
    gc = fusion.g(torch.cat([pc, pd], 1))
    gd = fusion.g(torch.cat([pd, pc], 1))
    assert torch.allclose(oc, torch.where(m, gc, pc), atol=1e-6)
    assert torch.allclose(od, torch.where(m, gd, pd), atol=1e-6)


def test_feature_mix_loss_is_the_mean_of_the_two_weighted_ces():
    classify = nn.Conv2d(4, 3, 1)
    pc, pd = torch.randn(2, 4, 3, 5, requires_grad=True), torch.randn(2, 4, 3, 5)
    lc, ld = torch.randint(0, 3, (2, 6, 10)), torch.randint(0, 3, (2, 6, 10))
    wc, wd = torch.rand(2, 6, 10), torch.rand(2, 6, 10)
    loss = feature_mix_loss(classify(torch.cat([pc, pd])), lc, wc, ld, wd)
    ref = 0.5 * (weighted_cross_entropy(classify(pc), lc, wc)
                 + weighted_cross_entropy(classify(pd), ld, wd))
    assert torch.allclose(loss, ref, atol=1e-6)
    # the X_tss half is supervised with Y_tss, the X_stt half with Y_stt: swapping them changes it
    swapped = feature_mix_loss(classify(torch.cat([pc, pd])), ld, wd, lc, wc)
    assert not torch.allclose(loss, swapped, atol=1e-4)
    loss.backward()
    assert pc.grad is not None and classify.weight.grad is not None
    with pytest.raises(ValueError, match="2B"):
        feature_mix_loss(classify(pc), lc, wc, ld, wd)


# ------------------------------------------------------------------------------------- prototypes
def test_class_prototypes_match_a_loop_reference(gen):
    b, d, h, w, c = 2, 3, 5, 6, 5
    feats = torch.randn(b, d, h, w, generator=gen)
    labels = torch.randint(0, c + 1, (b, h, w), generator=gen)
    labels[labels == c] = 255
    labels[labels == 4] = 3  # class 4 absent
    labels[0, 0, :3] = 2
    protos, valid = class_prototypes(feats, labels, c, min_pixels=5)
    for k in range(c):
        pix = [feats[bi, :, y, x] for bi in range(b) for y in range(h) for x in range(w)
               if labels[bi, y, x] == k]
        assert bool(valid[k]) == (len(pix) >= 5)
        ref = torch.stack(pix).mean(0) if len(pix) >= 5 else torch.zeros(d)
        assert torch.allclose(protos[k], ref, atol=1e-5), k
    assert not valid[4]


def test_prototypes_are_differentiable_and_labels_downsample_nearest():
    feats = torch.randn(1, 2, 4, 4, requires_grad=True)
    protos, valid = class_prototypes(feats, torch.zeros(1, 4, 4, dtype=torch.long), 2)
    protos[0].sum().backward()
    assert torch.allclose(feats.grad, torch.full_like(feats, 1 / 16))
    labels = torch.arange(16).view(1, 4, 4)
    assert downsample_labels(labels, (2, 2)).tolist() == [[[0, 2], [8, 10]]]


def test_entropy_and_entropy_weights_favour_the_certain_view():
    c = 4
    uniform = torch.full((1, c, 2, 3), 1 / c)
    onehot = torch.zeros(1, c, 2, 3)
    onehot[:, 1] = 1
    assert mean_entropy(uniform).item() == pytest.approx(1.0, abs=1e-6)
    assert mean_entropy(onehot).item() == pytest.approx(0.0, abs=1e-6)
    mixed = torch.cat([uniform[..., :1], onehot[..., 1:]], -1)
    mask = torch.zeros(1, 2, 3, dtype=torch.bool)
    mask[..., 1:] = True
    assert mean_entropy(mixed, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert mean_entropy(mixed, ~mask).item() == pytest.approx(1.0, abs=1e-6)
    w = entropy_weights(torch.tensor([0.1, 0.9]))
    assert w[0] > w[1] and w.sum().item() == pytest.approx(1.0)
    assert torch.allclose(w, torch.softmax(-torch.tensor([0.1, 0.9]), 0))
    assert torch.allclose(entropy_weights(torch.tensor([0.4, 0.4])), torch.tensor([0.5, 0.5]))


def test_aggregate_temporal_weights_and_validity():
    protos = torch.stack([torch.zeros(3, 2), torch.ones(3, 2)])  # view 0 = 0, view 1 = 1
    valid = torch.tensor([[True, True, False], [True, False, False]])
    ent = torch.tensor([0.2, 0.8])
    fused, ok = aggregate_temporal(protos, valid, ent)
    w = torch.softmax(-ent, 0)
    assert torch.allclose(fused[0], torch.full((2,), w[1].item()))  # weighted mean of 0 and 1
    assert torch.equal(fused[1], torch.zeros(2)) and torch.equal(fused[2], torch.zeros(2))
    assert ok.tolist() == [True, True, False]
    plain, _ = aggregate_temporal(protos, valid, ent, weighting=False)
    assert torch.allclose(plain[0], torch.full((2,), 0.5))
    assert fused[0, 0] < plain[0, 0]  # the certain view (0) pulls towards its prototype


def test_mmd_is_zero_for_identical_sets_and_grows_with_a_shift(gen):
    x = torch.randn(8, 16, generator=gen)
    assert abs(mmd_loss(x, x.clone()).item()) < 1e-6
    values = [mmd_loss(x, x + s).item() for s in (0.1, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(values, values[1:])) and values[0] > 0


def test_contrastive_loss_decreases_when_features_move_to_their_prototypes(gen):
    c, d = 4, 8
    protos = torch.randn(c, d, generator=gen)
    labels = torch.randint(0, c, (2, 5, 6), generator=gen)
    labels[0, 0] = 255
    noise = torch.randn(2, d, 5, 6, generator=gen)
    target = protos[labels.clamp(max=c - 1)].permute(0, 3, 1, 2)
    valid = torch.ones(c, dtype=torch.bool)
    losses = [prototype_contrastive_loss((1 - t) * noise + t * target, labels, protos, valid).item()
              for t in (0.0, 0.3, 0.6, 0.9)]
    assert all(a > b for a, b in zip(losses, losses[1:]))
    # an invalid prototype is neither a positive nor a negative
    valid[1] = False
    assert prototype_contrastive_loss(noise, labels, protos, valid).isfinite()


def agg_inputs(gen, shift: float = 0.0, conf: float = 1.0):
    b, d, c, h, w = 2, 6, 3, 8, 8
    labels = torch.zeros(b, 2 * h, 2 * w, dtype=torch.long)  # input resolution 2x the features
    labels[:, :, w // 2:w] = 1
    labels[:, :, w:] = 2
    small = downsample_labels(labels, (h, w))
    centres = torch.randn(c, d, generator=gen)
    src = centres[small].permute(0, 3, 1, 2) + 0.01 * torch.randn(b, d, h, w, generator=gen)
    tgt = src + shift
    probs = torch.softmax(torch.randn(b, c, h, w, generator=gen), 1)
    return dict(src_features=src.requires_grad_(), src_labels=labels, tgt_features=tgt.requires_grad_(),
                tgt_features_prev_warped=tgt.detach().clone(), tgt_probs=probs,
                tgt_probs_prev_warped=probs, tgt_labels=labels,
                tgt_confidence=torch.full(labels.shape, conf), num_classes=c)


def test_aggregation_loss_mmd_aligns_and_is_zero_when_nothing_is_valid(gen):
    cfg = AggregationConfig()
    aligned = aggregation_loss(**agg_inputs(gen), cfg=cfg)
    shifted_inputs = agg_inputs(torch.Generator().manual_seed(0), shift=1.0)
    shifted = aggregation_loss(**shifted_inputs, cfg=cfg)
    assert aligned.item() < 1e-3 < shifted.item()
    shifted.backward()
    assert shifted_inputs["tgt_features"].grad.abs().sum() > 0
    empty_inputs = agg_inputs(gen, conf=0.5)  # below cfg.confidence: no target prototype
    empty = aggregation_loss(**empty_inputs, cfg=cfg)
    assert empty.item() == 0.0
    empty.backward()  # the zero keeps the graph (DDP sees every parameter used)
    assert empty_inputs["src_features"].grad is not None


def test_aggregation_loss_temporal_weighting_switch_and_contrastive_option(gen):
    inputs = agg_inputs(gen, shift=0.5)
    inputs["tgt_features_prev_warped"] = inputs["tgt_features"].detach() + 1.0
    onehot = torch.nn.functional.one_hot(torch.zeros(2, 8, 8, dtype=torch.long), 3)
    onehot = onehot.permute(0, 3, 1, 2).float()
    inputs["tgt_probs_prev_warped"] = 0.9 * onehot + 0.1 / 3  # the previous view is more certain
    on = aggregation_loss(**inputs, cfg=AggregationConfig(temporal_weighting=True))
    off = aggregation_loss(**inputs, cfg=AggregationConfig(temporal_weighting=False))
    assert on.item() != pytest.approx(off.item())
    valid_prev = torch.zeros(2, 16, 16, dtype=torch.bool)  # the warp is defined nowhere
    only_cur = aggregation_loss(**inputs, cfg=AggregationConfig(), tgt_valid_prev=valid_prev)
    inputs_cur = dict(inputs, tgt_features_prev_warped=inputs["tgt_features"])
    same = aggregation_loss(**inputs_cur, cfg=AggregationConfig())
    assert only_cur.item() == pytest.approx(same.item(), rel=1e-4)
    con = aggregation_loss(**inputs, cfg=AggregationConfig(loss="contrastive"))
    assert con.isfinite() and con.item() > 0
    con.backward()
    with pytest.raises(ValueError):
        aggregation_loss(**inputs, cfg=AggregationConfig(loss="l2"))
