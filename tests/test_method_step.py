"""One QuadMix step composed from udass.method with a tiny stand-in network, for images and videos."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn

from udass.config import AggregationConfig
from udass.data.clip import pair_view
from udass.data.flow import resize_flow, warp
from udass.method import (EMATeacher, FeatureFusion, MixedClip, aggregation_loss, choose_classes,
                          feature_mix_loss, loss_samples, pseudo_label, quadmix, shared_region,
                          source_template, strong_augment, target_template, weighted_cross_entropy)

C, D = 4, 8


class StandInSeg(nn.Module):
    """Stride-2 features, a 1x1 classifier; the model contract's keys (no temporal fusion)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, D, 3, stride=2, padding=1), nn.BatchNorm2d(D), nn.ReLU())
        self.cls = nn.Conv2d(D, C, 1)

    def classify(self, features):
        return self.cls(features)

    def forward(self, frames, flows):
        cur, prev, _, static = pair_view(frames, flows)
        f = self.enc(cur)
        fp = f if static else self.enc(prev).detach()
        z = self.cls(f)
        return {"logits": z, "logits_t": z, "features": f, "aux": None,
                "logits_prev": self.cls(fp), "features_prev": fp}


@pytest.mark.parametrize("video", [True, False])
def test_one_quadmix_step_runs_end_to_end(video):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    b, h, w = 2, 16, 16
    ks, kt = (2, 3) if video else (1, 1)
    student = StandInSeg()
    teacher = EMATeacher(student)
    fusion = FeatureFusion(D)
    templates = None
    for step in range(2):
        s_frames, t_frames = torch.rand(b, ks, 3, h, w), torch.rand(b, kt, 3, h, w)
        s_flows, t_flows = torch.zeros(b, ks - 1, 2, h, w), torch.zeros(b, kt - 1, 2, h, w)
        s_labels = torch.randint(0, C, (b, ks, h, w))
        pseudo = pseudo_label(teacher.model, t_frames, t_flows)
        S = MixedClip.from_source(s_frames, s_flows, s_labels)
        T = MixedClip.from_target(t_frames, t_flows, pseudo)
        assert S.num_frames == T.num_frames == ks
        student.train()
        out = student(torch.cat([S.frames, strong_augment(T.frames, g)]), torch.cat([S.flows, T.flows]))
        loss = weighted_cross_entropy(out["logits"][:b], S.labels[:, 0])
        loss = loss + weighted_cross_entropy(out["logits"][b:], T.labels[:, 0], T.weights[:, 0])
        feats, prev = out["features"], out["features_prev"][b:]
        _, _, flow, static = pair_view(T.frames, T.flows)
        prev_w = prev if static else warp(prev, resize_flow(flow, tuple(prev.shape[-2:])))
        probs = torch.softmax(out["logits_t"][b:], 1)
        probs_prev = torch.softmax(student.classify(prev_w), 1)
        loss = loss + 0.01 * aggregation_loss(feats[:b], S.labels[:, 0], feats[b:], prev_w, probs,
                                              probs_prev, pseudo.labels[:, 0], pseudo.confidence[:, 0],
                                              AggregationConfig(confidence=0.3), C)
        if templates is not None:
            mixed = quadmix(S, T, *templates, paths=("ss", "tt", "tss", "stt"))
            keys = loss_samples(("ss", "tt", "tss", "stt"))
            samples = [dataclasses.replace(mixed[k], frames=strong_augment(mixed[k].frames, g)) for k in keys]
            mout = student(torch.cat([m.frames for m in samples]), torch.cat([m.flows for m in samples]))
            loss = loss + sum(weighted_cross_entropy(mout["logits"][i * b:(i + 1) * b], m.labels[:, 0],
                                                     m.weights[:, 0]) for i, m in enumerate(samples)) / 2
            shared = shared_region(templates[0].mask[:, 0], templates[1].mask[:, 0])
            pc, pd = fusion(mout["features"][:b], mout["features"][b:], shared)
            loss = loss + feature_mix_loss(student.classify(torch.cat([pc, pd])), samples[0].labels[:, 0],
                                           samples[0].weights[:, 0], samples[1].labels[:, 0],
                                           samples[1].weights[:, 0])
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None for p in student.parameters())
        with torch.no_grad():
            for p in student.parameters():
                p -= 0.1 * p.grad
                p.grad = None
        teacher.update(student, step, 0.999)
        c_s = choose_classes(S.labels[:, 0], C, g, long_tail=(3,))
        c_t = choose_classes(T.labels[:, 0], C, g, exclude=c_s)
        assert not (c_s & c_t).any()
        templates = (source_template(S.frames, S.flows, S.labels, c_s).detach(),
                     target_template(t_frames, t_flows, pseudo, c_t, 0.0).detach())
    assert not teacher.model.training
    for tp, sp in zip(teacher.model.parameters(), student.parameters()):
        assert not torch.equal(tp, sp)  # step 1 mixes: alpha = 0.5
