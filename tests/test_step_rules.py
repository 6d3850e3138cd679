"""The rules of the method as the training step applies them (docs/method.md, "Rules and the tests
that guard them"). Each test calls the real step functions (udass.train.step) or the real loop
(Trainer) on the tiny embedded benchmark, watches what the student is fed and returns through a
spy, and recomputes one rule from the method's units. tests/mutations.py plants a break of each
rule in a copy of the code and checks that these tests catch it.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from udass.config import build_config
from udass.data.clip import ClipBatch, pair_view
from udass.data.flow import resize_flow, warp, warp_valid_mask
from udass.data.transforms import match_histograms
from udass.method.aggregation import (aggregate_temporal, aggregation_loss, class_prototypes,
                                      downsample_labels, mean_entropy, mmd_loss)
from udass.method.feature_mix import feature_mix_loss, shared_region
from udass.method.losses import weighted_cross_entropy as wce
from udass.method.quadmix import MixedClip, paste_clip, quadmix
from udass.method.teacher import PseudoLabels, pseudo_label
from udass.method.templates import class_mask, present_classes
from udass.train import Networks, StepEnv, Trainer, dacs_step, quadmix_step
from udass.train.step import aggregation_term, next_templates

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Rule tests see every augmentation applied (jitter and blur on every clip), and no crop or flip,
# so that the clips the step builds can be recomputed from the batch as loaded; weights other
# than 1 (and a template confidence other than its default), so that a dropped weight shows.
_OVER = {"augment.flip": 0.0, "augment.jitter_p": 1.0, "augment.blur_p": 1.0,
         "train.lambda_t": 0.5, "feature_mix.weight": 0.5, "aggregation.weight": 0.3,
         "quadmix.template_confidence": 0.5}


class Spy(nn.Module):
    """Wraps the student: records the inputs and (detached) outputs of every pass."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[dict[str, Any]] = []

    def forward(self, frames: Tensor, flows: Tensor, **kw: Any) -> dict[str, Any]:
        out = self.inner(frames, flows, **kw)
        self.calls.append({"frames": frames.detach().clone(), "kw": kw,
                           "out": {k: v.detach() if isinstance(v, Tensor) else v
                                   for k, v in out.items()}})
        return out


def _trainer(tmp_path, method: str = "quadmix", backbone: str = "vit", benchmark: str = "synthetic-video",
             **over: Any) -> Trainer:
    cfg = build_config(benchmark, backbone, method, "test", {**_OVER, **over})
    return Trainer(cfg, tmp_path / f"{method}-{backbone}", device="cpu", progress=False)


def _perturb(net: nn.Module, scale: float = 0.5, seed: int = 1) -> None:
    """Make a network differ from its copy (so student and teacher predict differently)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def _env(trainer: Trainer, seed: int = 0, **kw: Any) -> StepEnv:
    return StepEnv(trainer.cfg, trainer.benchmark.num_classes, torch.Generator().manual_seed(seed),
                   **{"long_tail": (), "record": True, **kw})


def _two_steps(trainer: Trainer, **step_kw: Any):
    """A QuadMix step without templates (it stores them), then one with them; returns the second
    step's (output, spy, source batch, target batch) and the first step's output."""
    (s0, t0), (s1, t1) = trainer.batches(2)
    first = quadmix_step(Networks(trainer.learner, trainer.teacher.model), s0, t0, None, _env(trainer))
    spy = Spy(trainer.learner)
    out = quadmix_step(Networks(spy, trainer.teacher.model), s1, t1, first.templates,
                       _env(trainer, seed=1), **step_kw)
    return out, spy, s1, t1, first


def _cut(batch: ClipBatch, k: int = 2) -> tuple[Tensor, Tensor]:
    return batch.frames[:, :k], batch.flows[:, :k - 1]


@pytest.fixture(scope="module")
def qm(tmp_path_factory):
    """A QuadMix step with templates on video, the teacher differing from the student."""
    trainer = _trainer(tmp_path_factory.mktemp("qm"))
    _perturb(trainer.teacher.model)
    out, spy, source, target, first = _two_steps(trainer)
    return {"trainer": trainer, "out": out, "spy": spy, "source": source, "target": target,
            "first": first}


# ------------------------------------------------------------------ section 3: teacher, augmentation
def test_pseudo_labels_come_from_the_teacher_flow_propagated(qm):
    t, rec = qm["trainer"], qm["out"].record
    teacher = pseudo_label(t.teacher.model, qm["target"].frames, qm["target"].flows,
                           t.cfg.teacher.pseudo_threshold, propagate=True)
    assert torch.equal(rec.pseudo.labels, teacher.labels)
    assert torch.equal(rec.pseudo.weights, teacher.weights)
    student = pseudo_label(t.learner.net, qm["target"].frames, qm["target"].flows,
                           t.cfg.teacher.pseudo_threshold)
    assert not torch.equal(student.labels, teacher.labels)  # the two networks do differ
    unpropagated = pseudo_label(t.teacher.model, qm["target"].frames, qm["target"].flows,
                                t.cfg.teacher.pseudo_threshold, propagate=False)
    assert not torch.equal(unpropagated.labels[:, 0], teacher.labels[:, 0])


def test_the_teacher_is_used_before_its_ema_update(tmp_path):
    """Step k's pseudo-labels come from the teacher as it was when the step began; the EMA
    update follows the optimiser step."""
    trainer = _trainer(tmp_path)
    batches = trainer.batches(3)
    for source, target in batches[:2]:
        trainer.train_step(source, target)
    before = copy.deepcopy(trainer.teacher.model)
    source, target = batches[2]
    _, rec = trainer.train_step_recorded(source, target)
    expected = pseudo_label(before, target.frames, target.flows, trainer.cfg.teacher.pseudo_threshold)
    assert torch.equal(rec.pseudo.labels, expected.labels)
    assert torch.equal(rec.pseudo.confidence, expected.confidence)
    # and the update did happen, with alpha_2 = 2/3 over parameters
    s = dict(trainer.learner.net.named_parameters())
    for name, p in trainer.teacher.model.named_parameters():
        ref = 2 / 3 * dict(before.named_parameters())[name] + 1 / 3 * s[name]
        assert torch.allclose(p, ref, atol=1e-6), name


def test_the_ema_teacher_copies_the_student_at_step_zero_and_averages_after(tmp_path):
    trainer = _trainer(tmp_path, method="dacs")
    (s0, t0), (s1, t1) = trainer.batches(2)
    trainer.train_step(s0, t0)  # alpha_0 = 0: the teacher is the student after the step
    for (name, tp), sp in zip(trainer.teacher.model.state_dict().items(),
                              trainer.learner.net.state_dict().values()):
        assert torch.equal(tp, sp), name
    teacher0 = copy.deepcopy(trainer.teacher.model.state_dict())
    trainer.train_step(s1, t1)  # alpha_1 = 1/2, over parameters and floating buffers
    student = trainer.learner.net.state_dict()
    for name, tp in trainer.teacher.model.state_dict().items():
        if tp.is_floating_point():
            assert torch.allclose(tp, 0.5 * teacher0[name] + 0.5 * student[name], atol=1e-6), name


def test_source_clips_are_histogram_matched_to_their_target_frame_t(qm):
    rec = qm["out"].record
    expected = match_histograms(qm["source"].frames, qm["target"].frames[:, 0])[:, :2]
    assert torch.equal(rec.source.frames, expected)
    assert not torch.equal(rec.source.frames, qm["source"].frames[:, :2])


def test_the_switch_turns_histogram_matching_off(tmp_path):
    trainer = _trainer(tmp_path, **{"data.hist_match": False})
    (source, target), = trainer.batches(1)
    out = dacs_step(Networks(trainer.learner, trainer.teacher.model), source, target, _env(trainer))
    assert torch.equal(out.record.source.frames, source.frames[:, :2])


def test_target_and_mixed_inputs_are_strongly_augmented_and_the_source_is_not(qm):
    rec, calls = qm["out"].record, qm["spy"].calls
    b = rec.source.frames.shape[0]
    pass1, pass2 = calls
    assert torch.equal(pass1["frames"][:b], rec.source.frames)        # S as it is
    strong_t = pass1["frames"][b:]
    for i in range(b):                                                  # strong(T), every clip
        assert not torch.equal(strong_t[i], rec.target.frames[i])
    keys = rec.loss_samples
    assert keys == ["tss", "stt"]
    for j, key in enumerate(keys):                                      # strong(X_tss), strong(X_stt)
        fed = pass2["frames"][j * b:(j + 1) * b]
        assert torch.equal(fed, rec.strong[key])
        for i in range(b):
            assert not torch.equal(fed[i], rec.mixed[key].frames[i])


# ------------------------------------------------------------------ section 4: templates
def test_templates_are_this_steps_source_and_unaugmented_target(qm):
    rec, (s_tpl, t_tpl) = qm["out"].record, qm["out"].templates
    assert torch.equal(s_tpl.frames, rec.source.frames) and torch.equal(s_tpl.labels, rec.source.labels)
    assert torch.equal(s_tpl.flows, rec.source.flows)
    assert torch.equal(t_tpl.frames, rec.target.frames)                 # not strong(T)
    assert torch.equal(t_tpl.flows, rec.target.flows)
    assert torch.equal(t_tpl.labels, rec.pseudo.labels) and torch.equal(t_tpl.weights, rec.pseudo.weights)
    assert torch.equal(s_tpl.mask, class_mask(s_tpl.labels, s_tpl.classes))
    confident = rec.pseudo.confidence >= qm["trainer"].cfg.quadmix.template_confidence
    assert torch.equal(t_tpl.mask, class_mask(t_tpl.labels, t_tpl.classes) & confident)


def test_template_classes_are_half_of_the_present_ones_and_target_excludes_source(qm):
    t = qm["trainer"]
    c = t.benchmark.num_classes
    g = torch.Generator().manual_seed(0)
    b = 2
    labels = torch.arange(c).repeat_interleave(8).view(1, 1, c, 8).expand(b, 2, c, 8).contiguous()
    frames = torch.rand(b, 2, 3, c, 8, generator=g)
    S = MixedClip.from_source(frames, torch.zeros(b, 1, 2, c, 8), labels)
    pseudo = PseudoLabels(labels.flip(-2).contiguous(), torch.ones(b, 2, c, 8), torch.ones(b, 2, c, 8),
                          torch.zeros(b, c, 8, dtype=torch.bool))
    T = MixedClip.from_target(frames, torch.zeros(b, 1, 2, c, 8), pseudo)
    for seed in range(5):
        s_tpl, t_tpl = next_templates(S, T, pseudo, _env(t, seed=seed, long_tail=(3,)))
        assert not (s_tpl.classes & t_tpl.classes).any()
        half = (c + 1) // 2                                              # ceil(half) of the present
        n_s = s_tpl.classes.sum(1)
        assert ((n_s == half) | (n_s == half + 1)).all()                 # + the long tail if not drawn
        assert s_tpl.classes[:, 3].all()                                  # long tail always in
        rest = c - s_tpl.classes.sum(1)
        assert torch.equal(t_tpl.classes.sum(1), torch.ceil(rest / 2).long())


def test_the_step_mixes_with_the_previous_steps_templates(qm):
    rec, templates = qm["out"].record, qm["first"].templates
    for kept, given in zip(rec.templates, templates):
        assert torch.equal(kept.frames, given.frames) and torch.equal(kept.mask, given.mask)
    S, T = rec.source, rec.target
    expected = quadmix(S, T, *templates)
    for key in ("ss", "tt", "tss", "stt"):
        for f in ("frames", "flows", "labels", "weights"):
            assert torch.equal(getattr(rec.mixed[key], f), getattr(expected[key], f)), (key, f)
    # and not with templates made from this step's own clips
    assert not torch.equal(rec.mixed["ss"].frames, S.frames)


def test_the_loop_keeps_each_steps_templates_for_the_next_step(tmp_path):
    trainer = _trainer(tmp_path)
    (s0, t0), (s1, t1) = trainer.batches(2)
    _, rec0 = trainer.train_step_recorded(s0, t0)
    assert rec0.templates is None and list(rec0.mixed) == ["mix"]     # first step: ClassMix
    _, rec1 = trainer.train_step_recorded(s1, t1)
    s_tpl, t_tpl = rec1.templates
    assert torch.equal(s_tpl.frames, rec0.source.frames) and torch.equal(t_tpl.frames, rec0.target.frames)
    assert torch.equal(t_tpl.labels, rec0.pseudo.labels)


# ------------------------------------------------------------------ section 5: paths and losses
def test_losses_are_the_weighted_terms_of_the_paper(qm):
    cfg, rec, losses = qm["trainer"].cfg, qm["out"].record, qm["out"].losses
    pass1, pass2 = (c["out"] for c in qm["spy"].calls)
    b = rec.source.frames.shape[0]
    S, T = rec.source, rec.target
    assert torch.equal(losses["loss_src"], wce(pass1["logits"][:b].float(), S.labels[:, 0]))
    assert (T.weights < 1).any()                                        # DACS weights matter here
    lam = cfg.train.lambda_t
    assert lam == 0.5
    assert torch.equal(losses["loss_trg"], lam * wce(pass1["logits"][b:].float(), T.labels[:, 0],
                                                     T.weights[:, 0]))
    c, d = rec.mixed["tss"], rec.mixed["stt"]
    logits = pass2["logits"].float()
    expected_mix = torch.stack([wce(logits[:b], c.labels[:, 0], c.weights[:, 0]),
                                wce(logits[b:], d.labels[:, 0], d.weights[:, 0])]).mean()
    assert torch.equal(losses["loss_mix"], expected_mix)
    unweighted = torch.stack([wce(logits[:b], c.labels[:, 0]), wce(logits[b:], d.labels[:, 0])]).mean()
    assert not torch.allclose(losses["loss_mix"], unweighted)
    env = _env(qm["trainer"])
    agg = aggregation_term(pass1, S, T, rec.pseudo, b, env)
    assert cfg.aggregation.weight == 0.3
    assert torch.allclose(losses["loss_agg"], cfg.aggregation.weight * agg, rtol=1e-5, atol=1e-9)
    assert set(losses) == {"loss_src", "loss_trg", "loss_agg", "loss_mix", "loss_feat", "pseudo_weight"}
    assert losses["pseudo_weight"] == T.weights[:, 0].mean()


def test_the_cnn_adds_its_auxiliary_term_on_the_source_only(tmp_path):
    trainer = _trainer(tmp_path, backbone="cnn")
    out, spy, *_ = _two_steps(trainer)
    rec = out.record
    b = rec.source.frames.shape[0]
    pass1, pass2 = (c["out"] for c in spy.calls)
    assert torch.equal(out.losses["loss_aux"], trainer.cfg.train.aux_weight
                       * wce(pass1["aux"][:b].float(), rec.source.labels[:, 0]))
    assert pass2["aux"] is None and spy.calls[1]["kw"]["with_aux"] is False


def test_feature_mixing_fuses_on_the_shared_region_and_supervises_with_each_samples_labels(qm):
    cfg, rec, losses = qm["trainer"].cfg, qm["out"].record, qm["out"].losses
    s_tpl, t_tpl = rec.templates
    region = shared_region(s_tpl.mask[:, 0], t_tpl.mask[:, 0])
    assert torch.equal(rec.feature_mix_region, region) and region.any() and not region.all()
    pass2 = qm["spy"].calls[1]
    assert torch.equal(pass2["kw"]["fuse_shared"], region)
    c, d = rec.mixed["tss"], rec.mixed["stt"]
    fused = pass2["out"]["fused_logits"].float()
    expected = cfg.feature_mix.weight * feature_mix_loss(fused, c.labels[:, 0], c.weights[:, 0],
                                                         d.labels[:, 0], d.weights[:, 0])
    assert torch.equal(losses["loss_feat"], expected)
    swapped = feature_mix_loss(fused, d.labels[:, 0], d.weights[:, 0], c.labels[:, 0], c.weights[:, 0])
    assert not torch.allclose(losses["loss_feat"], cfg.feature_mix.weight * swapped)


@pytest.mark.parametrize("paths,keys", [(("ss", "tt"), ["ss", "tt"]), (("tt", "tss"), ["tt", "tss"]),
                                        ((), [])])
def test_the_mixed_loss_falls_on_the_outermost_switched_on_samples(tmp_path, paths, keys):
    trainer = _trainer(tmp_path, **{"quadmix.paths": paths})
    out, spy, *_ = _two_steps(trainer)
    assert out.record.loss_samples == keys and sorted(out.record.mixed) == sorted(paths)
    assert len(spy.calls) == (2 if keys else 1)
    if keys:
        assert torch.equal(spy.calls[1]["frames"], torch.cat([out.record.strong[k] for k in keys]))
        assert "fuse_shared" not in spy.calls[1]["kw"] or spy.calls[1]["kw"]["fuse_shared"] is None
    assert ("loss_mix" in out.losses) == bool(keys)


def test_dacs_is_same_step_classmix_with_its_own_losses_only(tmp_path):
    trainer = _trainer(tmp_path, method="dacs", backbone="cnn")
    _perturb(trainer.teacher.model)
    (s0, t0), (s1, t1) = trainer.batches(2)
    for source, target in ((s0, t0), (s1, t1)):
        spy = Spy(trainer.learner)
        out = dacs_step(Networks(spy, trainer.teacher.model), source, target, _env(trainer))
        rec = out.record
        assert out.templates is None and rec.templates is None
        assert set(out.losses) == {"loss_src", "loss_aux", "loss_mix", "pseudo_weight"}
        S, T = rec.source, rec.target
        assert torch.equal(spy.calls[0]["frames"], S.frames)          # pass 1: the source alone
        mix = rec.mixed["mix"]
        assert (mix.weights < 1).any()                                 # target pixels keep DACS weights
        # the pasted pixels are whole classes of THIS step's source, on this step's target:
        # read the chosen classes off the pasted pixels, paste them again and compare
        c = trainer.benchmark.num_classes
        pasted = (mix.frames == S.frames).all(2)[:, 0]                 # frame t, [B, H, W]
        for i in range(len(S.frames)):
            s_i, t_i, m_i = _index(S, i), _index(T, i), _index(mix, i)
            chosen = present_classes(s_i.labels[:, 0][pasted[i:i + 1]].view(1, -1), c)
            again = paste_clip(class_mask(s_i.labels, chosen), s_i, t_i)
            assert torch.equal(m_i.frames, again.frames) and torch.equal(m_i.labels, again.labels)
            n_present = int(present_classes(s_i.labels[:, 0], c).sum())
            assert int(chosen.sum()) == (n_present + 1) // 2
        logits = spy.calls[1]["out"]["logits"].float()
        assert torch.equal(out.losses["loss_mix"], wce(logits, mix.labels[:, 0], mix.weights[:, 0]))


@pytest.mark.parametrize("method,keys", [
    ("source_only", {"loss_src"}), ("oracle", {"loss_src"}),
    ("dacs", {"loss_src", "loss_mix", "pseudo_weight"}),
    ("quadmix", {"loss_src", "loss_trg", "loss_agg", "loss_mix", "loss_feat", "pseudo_weight"})])
def test_the_loop_runs_each_methods_own_step(tmp_path, method, keys):
    trainer = _trainer(tmp_path, method=method)
    for source, target in trainer.batches(2):
        values, record = trainer.train_step_recorded(source, target)
    assert set(values) - {"lr", "loss_total"} == keys
    assert (trainer.templates is not None) == (method == "quadmix")
    assert (record is None) == (method in ("source_only", "oracle"))
    if method == "dacs":
        assert list(record.mixed) == ["mix"] and record.templates is None


def _index(clip: MixedClip, i: int) -> MixedClip:
    return dataclasses.replace(clip, **{f.name: getattr(clip, f.name)[i:i + 1]
                                        for f in dataclasses.fields(clip)})


def test_the_first_quadmix_step_trains_classmix_and_stores_templates(qm):
    first = qm["first"]
    assert list(first.record.mixed) == ["mix"] and first.record.templates is None
    assert first.templates is not None and "loss_feat" not in first.losses


def test_before_the_start_step_quadmix_trains_as_dacs_and_still_stores_templates(tmp_path):
    trainer = _trainer(tmp_path)
    out, spy, *_ = _two_steps(trainer, warmup=True)
    assert set(out.losses) == {"loss_src", "loss_mix", "pseudo_weight"}
    assert list(out.record.mixed) == ["mix"] and out.templates is not None
    assert torch.equal(out.templates[0].frames, out.record.source.frames)


def test_images_take_the_same_step_with_one_frame_clips(tmp_path):
    trainer = _trainer(tmp_path, benchmark="synthetic-image")
    out, spy, source, target, _ = _two_steps(trainer)
    rec = out.record
    assert rec.source.frames.shape[1] == 1 and rec.mixed["tss"].frames.shape[1] == 1
    assert trainer.learner.net.temporal is None                       # nothing to fuse on images
    assert torch.equal(rec.source.frames, source.frames)              # no histogram matching
    assert set(out.losses) >= {"loss_src", "loss_trg", "loss_mix", "loss_feat", "loss_agg"}


# ------------------------------------------------------------------ section 7: aggregation
def _aggregation_case(seed: int = 0, c: int = 4, d: int = 6):
    """Features, predictions and labels of a source and a target pair (flow: a shift of 2 px)."""
    g = torch.Generator().manual_seed(seed)
    b, h, w = 2, 8, 12
    out = {"features": torch.randn(2 * b, d, h, w, generator=g),
           "features_prev": torch.randn(2 * b, d, h, w, generator=g),
           "logits_t": torch.randn(2 * b, c, h, w, generator=g) * 3,
           "logits_prev": torch.randn(2 * b, c, h, w, generator=g) * 0.2}
    src_labels = torch.randint(0, c, (b, 2, h, w), generator=g)
    S = MixedClip.from_source(torch.rand(b, 2, 3, h, w, generator=g), torch.zeros(b, 1, 2, h, w),
                              src_labels)
    flows = torch.zeros(b, 1, 2, h, w)
    flows[:, :, 0] = 2.0
    labels = torch.randint(0, c, (b, 2, h, w), generator=g)
    pseudo = PseudoLabels(labels, torch.ones(b, 2, h, w), torch.ones(b, 2, h, w),
                          torch.ones(b, h, w, dtype=torch.bool))
    T = MixedClip.from_target(torch.rand(b, 2, 3, h, w, generator=g), flows, pseudo)
    return out, S, T, pseudo


def test_aggregation_warps_the_previous_views_features_to_frame_t(tmp_path):
    trainer = _trainer(tmp_path)
    out, S, T, pseudo = _aggregation_case()
    env = _env(trainer)
    b = 2
    got = aggregation_term(out, S, T, pseudo, b, env)
    _, _, flow, _ = pair_view(T.frames, T.flows)
    size = tuple(out["features"].shape[-2:])
    warped = warp(out["features_prev"][b:], resize_flow(flow, size))
    logits_prev_w = warp(out["logits_prev"][b:], resize_flow(flow, size))
    probs = torch.softmax(out["logits_t"][b:], 1)
    probs_prev = torch.softmax(logits_prev_w, 1)
    expected = aggregation_loss(out["features"][:b], S.labels[:, 0], out["features"][b:], warped,
                                probs, probs_prev, pseudo.labels[:, 0], pseudo.confidence[:, 0],
                                trainer.cfg.aggregation, trainer.benchmark.num_classes,
                                tgt_valid_prev=warp_valid_mask(flow))
    assert torch.allclose(got, expected, atol=1e-6)
    unwarped = aggregation_loss(out["features"][:b], S.labels[:, 0], out["features"][b:],
                                out["features_prev"][b:], probs, probs_prev, pseudo.labels[:, 0],
                                pseudo.confidence[:, 0], trainer.cfg.aggregation,
                                trainer.benchmark.num_classes, tgt_valid_prev=warp_valid_mask(flow))
    assert not torch.allclose(got, unwarped, atol=1e-4)


def _reference_aggregation(src_f, src_l, tgt_f, prev_f, probs, probs_prev, tgt_l, cfg, c):
    """docs/method.md, section 7 b-d from the units: prototypes (>= min_pixels), entropy-weighted views
    (the current view's weight from its own entropy), MMD over classes valid on both sides."""
    size = tuple(tgt_f.shape[-2:])
    sp, sv = class_prototypes(src_f, downsample_labels(src_l, size), c, cfg.min_pixels)
    lab = downsample_labels(tgt_l, size)
    cur = class_prototypes(tgt_f, lab, c, cfg.min_pixels)
    prev = class_prototypes(prev_f, lab, c, cfg.min_pixels)
    ent = torch.stack([mean_entropy(probs), mean_entropy(probs_prev)])
    tp, tv = aggregate_temporal(torch.stack([cur[0], prev[0]]), torch.stack([cur[1], prev[1]]), ent)
    both = sv & tv
    return mmd_loss(sp[both], tp[both], num_kernels=cfg.mmd_kernels)


def test_aggregation_weighs_the_more_certain_view_more_and_skips_small_classes():
    cfg = build_config("synthetic-video", "vit", "quadmix", "test").aggregation
    cfg = dataclasses.replace(cfg, confidence=0.0)
    g = torch.Generator().manual_seed(3)
    c, d, b, h, w = 3, 4, 1, 6, 6
    src_l = torch.zeros(b, h, w, dtype=torch.long)
    src_l[:, :3] = 1
    src_l[:, 3:, :3] = 2
    tgt_l = src_l.clone()
    tgt_l[:, 3:, :3] = 1
    tgt_l[0, 5, :3] = 2          # class 2: 3 target pixels, below the minimum of 5: not a prototype
    src_f, tgt_f, prev_f = (torch.randn(b, d, h, w, generator=g) for _ in range(3))
    certain = torch.zeros(b, c, h, w)
    certain[:, 0] = 20.0
    probs, probs_prev = certain.softmax(1), torch.zeros(b, c, h, w).softmax(1)  # prev: uniform
    got = aggregation_loss(src_f, src_l, tgt_f, prev_f, probs, probs_prev, tgt_l, torch.ones(b, h, w),
                           cfg, c)
    ref = _reference_aggregation(src_f, src_l, tgt_f, prev_f, probs, probs_prev, tgt_l, cfg, c)
    assert torch.allclose(got, ref, atol=1e-6)
    views_swapped = _reference_aggregation(src_f, src_l, tgt_f, prev_f, probs_prev, probs, tgt_l, cfg, c)
    assert not torch.allclose(got, views_swapped, atol=1e-4)
    no_minimum = _reference_aggregation(src_f, src_l, tgt_f, prev_f, probs, probs_prev, tgt_l,
                                        dataclasses.replace(cfg, min_pixels=1), c)
    assert not torch.allclose(got, no_minimum, atol=1e-4)
