"""The image recipe's components in the training step (docs/method.md, "The image recipe's
components" and "Rules and the tests that guard them"): rare-class sampling, the ImageNet feature distance,
HRDA and MIC as the loop and the step functions run them on the tiny embedded image benchmark.
Each test watches what the student is fed and returns through a spy and recomputes the rule
from the units (udass.data.rcs, udass.method.*, udass.models.hrda); tests/mutations.py plants a
break of each rule. With every switch off nothing of the components runs or draws.
"""
from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import udass.train.step as step_module
from udass.config import IMAGE_COMPONENTS, build_config, image_recipe
from udass.data.rcs import RareClassSampler, rcs_crop_offsets
from udass.data.transforms import crop_at, random_crop, random_hflip
from udass.method.feature_distance import ImageNetEncoder, feature_distance
from udass.method.losses import multi_resolution_loss
from udass.method.losses import weighted_cross_entropy as wce
from udass.method.masking import neutral_fill
from udass.method.teacher import pseudo_label
from udass.models.hrda import HRDAModel, context_images, slide_inference, slide_windows
from udass.runtime import step_seed
from udass.train import Networks, StepEnv, Trainer
from udass.train.step import feature_distance_terms

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# every augmentation applied, no flip (clips recomputable from the batch as loaded); weights
# other than their defaults, and a pseudo-label threshold that gives DACS weights in (0, 1)
_OVER = {"augment.flip": 0.0, "augment.jitter_p": 1.0, "augment.blur_p": 1.0,
         "teacher.pseudo_threshold": 0.9, "fd.weight": 0.3, "mic.weight": 0.7,
         "model.hrda_detail_loss": 0.25}


class Spy(nn.Module):
    """Wraps the student: records the inputs, keywords and (detached) outputs of every pass."""

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


def _trainer(tmp_path, method: str = "quadmix", backbone: str = "vit",
             components: tuple[str, ...] = IMAGE_COMPONENTS, **over: Any) -> Trainer:
    cfg = build_config("synthetic-image", backbone, method, "test",
                       {**image_recipe("synthetic-image", "test", components), **_OVER, **over})
    return Trainer(cfg, tmp_path / f"{method}-{backbone}", device="cpu", progress=False)


def _perturb(net: nn.Module, scale: float = 0.5, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def _spied_step(trainer: Trainer, source, target) -> tuple[dict[str, float], Any, Spy]:
    """One loop step (Trainer._step) with the student wrapped in a Spy."""
    spy = Spy(trainer.learner)
    trainer.student = spy
    try:
        values, rec = trainer.train_step_recorded(source, target)
    finally:
        trainer.student = trainer.learner
    return values, rec, spy


def _rows(out: dict[str, Any], rows: slice) -> dict[str, Any]:
    return {k: out[k][rows] for k in ("logits", "logits_detail", "detail_boxes")}


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The full recipe (RCS, FD, HRDA, MIC) under QuadMix: a step that stores templates, then a
    recorded step with them, the teacher differing from the student."""
    trainer = _trainer(tmp_path_factory.mktemp("full"))
    (s0, t0), (s1, t1) = trainer.batches(2)
    trainer.train_step(s0, t0)
    _perturb(trainer.teacher.model)
    teacher = copy.deepcopy(trainer.teacher.model)
    values, rec, spy = _spied_step(trainer, s1, t1)
    return {"trainer": trainer, "values": values, "rec": rec, "spy": spy, "teacher": teacher,
            "source": s1, "target": t1}


# ------------------------------------------------------------------ switches off
def test_with_every_switch_off_no_component_runs_or_draws(tmp_path, monkeypatch):
    """The previous step bit for bit: with the switches off, a run whose component values all
    differ from the defaults computes exactly the same losses and parameters, the student gets
    no detail-crop generator, and the components' functions are never called."""
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an image-recipe component ran with its switch off")

    for name in ("rcs_crop_offsets", "feature_distance", "block_mask", "mask_frames",
                 "multi_resolution_loss", "context_images", "neutral_fill"):
        monkeypatch.setattr(step_module, name, forbidden)
    other = {"data.rcs_temperature": 0.5, "data.rcs_min_pixels": 1, "data.rcs_min_crop_ratio": 0.1,
             "fd.weight": 0.9, "fd.min_ratio": 0.1, "mic.block_size": 2, "mic.ratio": 0.2,
             "mic.weight": 3.0, "model.hrda_context_scale": 0.25, "model.hrda_detail_size": (8, 8),
             "model.hrda_detail_loss": 0.7, "model.hrda_eval_window": (16, 16),
             "model.hrda_eval_stride": (8, 8)}
    for method in ("quadmix", "dacs", "source_only"):
        runs = []
        for over in ({}, other):
            cfg = build_config("synthetic-image", "vit", method, "test", over)
            assert not (cfg.data.rcs or cfg.fd.enabled or cfg.model.hrda or cfg.mic.enabled)
            trainer = Trainer(cfg, tmp_path / f"{method}-{len(over)}", device="cpu", progress=False)
            assert trainer.imagenet is None and not isinstance(trainer.learner.net, HRDAModel)
            values = []
            for source, target in trainer.batches(2):
                v, _, spy = _spied_step(trainer, source, target)
                assert all("generator" not in c["kw"] for c in spy.calls)
                values.append(v)
            runs.append((values, trainer.learner.state_dict(), trainer.teacher.state_dict()))
        (va, sa, ta), (vb, sb, tb) = runs
        assert va == vb and not any("loss_fd" in v or "loss_mic" in v for v in va), method
        for name in sa:
            assert torch.equal(sa[name], sb[name]), (method, name)
        for name in ta:
            assert torch.equal(ta[name], tb[name]), (method, name)


# ------------------------------------------------------------------ rare-class sampling
def test_source_batches_and_crops_come_from_rare_class_sampling(full):
    trainer, rec, source, target = full["trainer"], full["rec"], full["source"], full["target"]
    cfg = trainer.cfg
    sampler = RareClassSampler(trainer.rcs_stats(), cfg.data.rcs_temperature, cfg.data.rcs_min_pixels,
                               cfg.data.batch_source, cfg.train.seed + 1)
    ds = trainer.dataset("source")
    assert source.names == [ds[i].name for i in sampler.indices_for_step(1)]
    # the step's generator: the target's crop and flip, then the source's class-aware crop
    g = torch.Generator().manual_seed(step_seed(cfg.train.seed, 1, stream=1))
    random_hflip(random_crop(target, cfg.data.crop_size, g), cfg.augment.flip, g)
    classes = sampler.classes_for_step(1)
    ys, xs = rcs_crop_offsets(source.labels[:, 0], classes, cfg.data.crop_size,
                              cfg.data.rcs_min_pixels, cfg.data.rcs_min_crop_ratio, g)
    expected = crop_at(source, ys, xs, cfg.data.crop_size)
    assert torch.equal(rec.source.frames, expected.frames) and torch.equal(rec.source.labels, expected.labels)
    for i, c in enumerate(classes):   # the drawn class is in each crop
        assert (rec.source.labels[i, 0] == c).any()


# ------------------------------------------------------------------ HRDA
def test_hrda_passes_draw_detail_crops_and_train_with_the_multi_resolution_loss(full):
    cfg, rec, v, spy = full["trainer"].cfg, full["rec"], full["values"], full["spy"]
    assert len(spy.calls) == 3                          # [S; strong(T)], the mixed samples, MIC
    for call in spy.calls:
        assert isinstance(call["kw"]["generator"], torch.Generator)
        boxes = call["out"]["detail_boxes"]
        assert bool(((boxes[:, 1] - boxes[:, 0]) == 32).all() and (boxes % 8 == 0).all())
        assert bool((boxes[:, [1, 3]] <= 64).all()) and call["frames"].shape[-2:] == (64, 64)
    b, w = 2, cfg.model.hrda_detail_loss
    pass1, pass2 = spy.calls[0]["out"], spy.calls[1]["out"]
    S, T = rec.source, rec.target
    src = multi_resolution_loss(_rows(pass1, slice(None, b)), S.labels[:, 0], None, w)
    assert v["loss_src"] == float(src["total"]) and src["detail"] != src["fused"]
    assert v["loss_src"] != float(multi_resolution_loss(_rows(pass1, slice(None, b)), S.labels[:, 0],
                                                        None, 0.0)["total"])
    trg = multi_resolution_loss(_rows(pass1, slice(b, None)), T.labels[:, 0], T.weights[:, 0], w)
    assert v["loss_trg"] == float(cfg.train.lambda_t * trg["total"])
    c, d = rec.mixed["tss"], rec.mixed["stt"]
    mix = torch.stack([multi_resolution_loss(_rows(pass2, slice(None, b)), c.labels[:, 0], c.weights[:, 0], w)["total"],
                       multi_resolution_loss(_rows(pass2, slice(b, None)), d.labels[:, 0], d.weights[:, 0], w)["total"]])
    assert v["loss_mix"] == float(mix.mean())


def test_hrda_mixes_the_full_resolution_crops(full):
    """All mixing on the training crop before HRDA splits it (the authors' image code): mixed
    samples and templates are full crops, and pass 2 feeds the strongly augmented full crops."""
    rec, spy = full["rec"], full["spy"]
    crop = full["trainer"].cfg.data.crop_size
    for key, m in rec.mixed.items():
        assert tuple(m.frames.shape[-2:]) == crop and tuple(m.labels.shape[-2:]) == crop, key
    for tpl in rec.templates:
        assert tuple(tpl.frames.shape[-2:]) == crop
    assert torch.equal(spy.calls[1]["frames"], torch.cat([rec.strong[k] for k in rec.loss_samples]))


def test_pseudo_labels_come_from_the_teachers_hrda_sliding_inference(full):
    teacher, rec = full["teacher"], full["rec"]
    assert isinstance(teacher, HRDAModel) and not teacher.training
    crop = full["trainer"].cfg.data.crop_size
    T = rec.target
    expected = pseudo_label(teacher, T.frames, T.flows, full["trainer"].cfg.teacher.pseudo_threshold)
    assert torch.equal(rec.pseudo.labels, expected.labels) and torch.equal(rec.pseudo.weights, expected.weights)
    assert ((rec.pseudo.weights > 0) & (rec.pseudo.weights < 1)).any()   # quality weights matter
    x, r = T.frames[:, 0], teacher.output_stride
    assert len(slide_windows(crop, teacher.detail_size, teacher.detail_stride)) == 9
    with torch.no_grad():   # HRDA inference: the context pass fused with 3 x 3 detail windows
        ctx = teacher._scale_pass(context_images(x, 0.5), with_attention=True)
        detail = slide_inference(lambda c: teacher._scale_pass(c, with_attention=False)["logits"], x,
                                 teacher.detail_size, teacher.detail_stride, r)
        hr = teacher._fuse_scales(ctx, detail, (crop[0] // r, crop[1] // r), None)
        single = teacher.net(T.frames, T.flows)["logits"]
    up = torch.nn.functional.interpolate(hr, size=crop, mode="bilinear", align_corners=False)
    assert torch.equal(rec.pseudo.labels[:, 0], up.argmax(1))
    plain = torch.nn.functional.interpolate(single, size=crop, mode="bilinear", align_corners=False)
    assert not torch.equal(rec.pseudo.labels[:, 0], plain.argmax(1))   # not the plain network


# ------------------------------------------------------------------ MIC
def test_mic_trains_the_masked_strong_target_on_the_unmasked_targets_pseudo_labels(full):
    trainer, rec, v, spy = full["trainer"], full["rec"], full["values"], full["spy"]
    cfg = trainer.cfg
    call = spy.calls[2]
    frames, mask = call["frames"], rec.mic_mask
    assert call["kw"]["with_aux"] is False and mask.shape == (2, 1, 64, 64)
    # MIC's blocks: 16 x 16 cells of 4 x 4 pixels, each kept or removed as a whole
    cells = mask[:, 0].unfold(1, 4, 4).unfold(2, 4, 4)
    assert bool((cells.amin((-1, -2)) == cells.amax((-1, -2))).all())
    assert 0.1 < float(1 - mask.mean()) < 0.95                        # about mic.ratio removed
    fill = neutral_fill(trainer.learner.net.normalize).view(1, 1, 3, 1, 1)
    removed, kept = (mask == 0).unsqueeze(1).expand_as(frames), (mask == 1).unsqueeze(1).expand_as(frames)
    assert torch.equal(frames[removed], fill.expand_as(frames)[removed])
    assert not torch.equal(frames[kept], rec.target.frames[kept])     # strongly augmented
    out = call["out"]
    T = rec.target
    expected = cfg.mic.weight * multi_resolution_loss(_rows(out, slice(None)), rec.pseudo.labels[:, 0],
                                                      rec.pseudo.weights[:, 0], cfg.model.hrda_detail_loss)["total"]
    assert v["loss_mic"] == float(expected) and torch.equal(T.labels, rec.pseudo.labels)
    unweighted = multi_resolution_loss(_rows(out, slice(None)), rec.pseudo.labels[:, 0], None,
                                       cfg.model.hrda_detail_loss)["total"]
    assert v["loss_mic"] != float(cfg.mic.weight * unweighted)
    with torch.no_grad():   # not the teacher's labels of the masked image
        masked = pseudo_label(full["teacher"], frames, T.flows, cfg.teacher.pseudo_threshold)
    assert not torch.equal(masked.labels, rec.pseudo.labels)


def test_mic_joins_dacs_as_its_last_pass(tmp_path):
    trainer = _trainer(tmp_path, method="dacs", components=("mic",))
    (s0, t0), = trainer.batches(1)
    v, rec, spy = _spied_step(trainer, s0, t0)
    assert len(spy.calls) == 3 and "loss_mic" in v and rec.mic_mask is not None
    out = spy.calls[2]["out"]
    assert "logits_detail" not in out                                   # no HRDA here
    assert v["loss_mic"] == float(trainer.cfg.mic.weight * wce(out["logits"], rec.pseudo.labels[:, 0],
                                                               rec.pseudo.weights[:, 0]))


# ------------------------------------------------------------------ feature distance
def test_feature_distance_counts_thing_class_cells_only(tmp_path):
    trainer = _trainer(tmp_path, method="source_only", backbone="cnn", components=("fd",),
                       **{"fd.min_ratio": 0.75})
    g = torch.Generator().manual_seed(0)
    b, d, h, w = 2, 6, 4, 4
    student, labels = torch.randn(b, d, h, w, generator=g), torch.zeros(b, 16, 16, dtype=torch.long)
    labels[:, :8] = 13                                   # car (a thing) on the top half, road below
    images = torch.rand(b, 1, 3, 16, 16, generator=g)

    class Fixed:
        def __call__(self, x: Tensor) -> Tensor:
            assert x.shape == (b, 3, 16, 16)
            return torch.zeros(b, d, h, w)

    env = StepEnv(trainer.cfg, 19, g, thing_classes=trainer.thing_classes)
    nets = Networks(trainer.learner, trainer.teacher.model, Fixed())  # type: ignore[arg-type]
    got = feature_distance_terms(nets, {"bottleneck": student}, images, labels, b, env)["loss_fd"]
    norms = torch.linalg.vector_norm(student, dim=1)     # distance to the zero ImageNet features
    assert torch.allclose(got, 0.3 * norms[:, :2].mean(), atol=1e-6)
    assert not torch.allclose(got, 0.3 * norms.mean(), atol=1e-4)      # not every cell
    assert 13 in trainer.thing_classes and 0 not in trainer.thing_classes


def test_feature_distance_is_to_the_frozen_initial_encoder_on_the_source_pass(tmp_path):
    trainer = _trainer(tmp_path, method="dacs", backbone="cnn", components=("fd",),
                       **{"fd.min_ratio": 0.5})
    initial = copy.deepcopy(trainer.learner.net.encoder.state_dict())
    assert isinstance(trainer.imagenet, ImageNetEncoder)
    assert not ({id(p) for p in trainer.imagenet.encoder.parameters()}
                & {id(p) for grp in trainer.optimizer.param_groups for p in grp["params"]})
    for source, target in trainer.batches(2):
        v, rec, spy = _spied_step(trainer, source, target)
    out, S = spy.calls[0]["out"], rec.source
    imnet = trainer.imagenet(S.frames[:, 0])
    expected = trainer.cfg.fd.weight * feature_distance(out["bottleneck"][:2], imnet, S.labels[:, 0],
                                                        trainer.thing_classes, 19, 0.5)
    assert v["loss_fd"] == float(expected) and v["loss_fd"] > 0
    for name, t in trainer.imagenet.encoder.state_dict().items():    # frozen at initialisation
        assert torch.equal(t, initial[name]), name
    assert any(not torch.equal(t, initial[n]) for n, t in trainer.learner.net.encoder.state_dict().items())


def test_feature_distance_under_hrda_compares_the_context_pass(tmp_path):
    trainer = _trainer(tmp_path, method="source_only", components=("fd", "hrda"))
    seen = []
    real = trainer.imagenet

    def spy_imagenet(images: Tensor) -> Tensor:
        seen.append(images)
        return real(images)

    trainer.imagenet = spy_imagenet  # type: ignore[assignment]
    (source, target), = trainer.batches(1)
    v, rec, spy = _spied_step(trainer, source, target)
    frames = spy.calls[0]["frames"]
    assert len(seen) == 1 and torch.equal(seen[0], context_images(frames[:, 0], 0.5))
    assert seen[0].shape[-2:] == (32, 32) and "loss_fd" in v
