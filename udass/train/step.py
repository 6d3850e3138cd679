"""The training step of each method, one function per method, each readable top to bottom.

    supervised_step   `source_only` (source labels) and `oracle` (target labels)
    dacs_step         `dacs`: same-step ClassMix of the current source onto the current target
    quadmix_step      `quadmix` (docs/method.md): teacher pseudo-labels -> the four paths from
                      the previous step's templates -> strong augmentation -> the loss terms ->
                      the templates of the next step

The image recipe's components (docs/method.md, "The image recipe's components") join every
step where they apply, each behind its switch, and with every switch off a step computes what it
computed without them: rare-class sampling crops each source sample around the class it was
drawn for (`data.rcs`); the ImageNet feature distance joins the source pass (`fd.enabled`,
`loss_fd`); HRDA networks draw their detail crops from the step's generator and are trained with
the multi-resolution loss (`model.hrda`); MIC adds a last pass over the masked target
(`mic.enabled`, `loss_mic`, mixing methods only).

A step receives the networks, the step's source and target batches as loaded (on the device),
the previous step's templates and a `StepEnv` (the config, the step's random generator, how to
run a student pass). It does no I/O and no seeding: every random draw comes from
`env.generator`, which the loop seeds by (seed, step, rank). Each student pass (two or three for
the mixing methods: a pass's graph is freed before the next is built) runs its forward and its
`env.backward` inside `env.student_pass(last)`, `last` being whether it is the step's last pass
(under DDP only that one synchronises the gradients). A step returns a `StepOutput`: the loss terms, the templates for the next step, and, when
`env.record` is set, a `StepRecord` of the samples it built. The optimiser step, the EMA update,
checkpoints and logs belong to the loop (`udass.train.loop`).

Each part runs inside a `torch.profiler.record_function` range named after it (`udass.crop_flip`,
`udass.pseudo_label`, `udass.paste`, `udass.classes_templates`, `udass.strong_augment`,
`udass.concat_batches`, `udass.aggregation_loss`, `udass.feature_distance`, `udass.mic_mask`;
the networks, losses, backward passes, optimiser and EMA update have theirs where they run), so
a profiler (benchmarks/bench_step.py) times them without touching the code.
"""
from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import record_function

from udass.config import Config
from udass.data.clip import ClipBatch, pair_view
from udass.data.flow import resize_flow, warp, warp_valid_mask
from udass.data.rcs import rcs_crop_offsets
from udass.data.transforms import crop_at, match_source_histograms, random_crop, random_hflip
from udass.errors import UdassError
from udass.method.aggregation import aggregation_loss
from udass.method.augment import strong_augment
from udass.method.feature_distance import ImageNetEncoder, feature_distance
from udass.method.feature_mix import feature_mix_loss, shared_region
from udass.method.losses import multi_resolution_loss
from udass.method.losses import weighted_cross_entropy as wce
from udass.method.masking import block_mask, mask_frames, neutral_fill
from udass.method.quadmix import MixedClip, classmix, loss_samples, quadmix
from udass.method.teacher import PseudoLabels, pseudo_label
from udass.method.templates import Template, choose_classes, source_template, target_template
from udass.models.hrda import context_images

Templates = tuple[Template, Template]


def _plain_backward(loss: Tensor) -> None:
    loss.backward()


def _no_context(last: bool) -> ContextManager[Any]:
    return nullcontext()


@dataclass
class Networks:
    """The networks a step uses.

    student: the Learner (possibly wrapped in DistributedDataParallel): every student pass.
    teacher: the EMA teacher's segmentation network (eval mode, no gradient): pseudo-labels.
    imagenet: the frozen ImageNet encoder of the feature distance (fd.enabled), or None.
    """

    student: nn.Module
    teacher: nn.Module
    imagenet: ImageNetEncoder | None = None


@dataclass
class StepEnv:
    """What the loop hands a step besides the networks and the data.

    cfg: the run's Config; num_classes: C; generator: the step's random generator (seeded by
    the loop); long_tail: the benchmark's long-tail class ids (source template classes);
    backward(loss): one backward pass (the loop's AMP scaling); student_pass(last): the context
    of one student pass, its forward and its backward (the loop's DDP handling: every pass but
    the step's last accumulates its gradients locally, and DDP decides that at the forward);
    autocast: the mixed-precision context of a forward pass;
    record: keep a StepRecord of the step's samples (CPU copies, for inspection);
    thing_classes: the train ids of the feature distance's thing classes; mask_fill: the RGB
    value [3] of MIC's removed pixels (`neutral_fill` of the student's input normalisation;
    None: the teacher's).
    """

    cfg: Config
    num_classes: int
    generator: torch.Generator
    long_tail: tuple[int, ...] = ()
    backward: Callable[[Tensor], None] = _plain_backward
    student_pass: Callable[[bool], ContextManager[Any]] = _no_context
    autocast: Callable[[], ContextManager[Any]] = nullcontext
    record: bool = False
    thing_classes: tuple[int, ...] = ()
    mask_fill: Tensor | None = None


@dataclass
class StepRecord:
    """The samples of one step (detached CPU copies), for the QuadMix explorer.

    source, target: the clips S and T (MixedClip: frames, flows, labels or pseudo-labels,
    weights); pseudo: T's pseudo-labels; templates: the previous step's (S', T') or None;
    mixed: the mixed clips by path ("ss", "tt", "tss", "stt", or "mix" for ClassMix);
    loss_samples: the keys of `mixed` that carried the mixed loss; strong: their strongly
    augmented frames; feature_mix_region: [B, H, W] bool, the shared region of feature-level
    mixing, or None; mic_mask: [B, 1, H, W] MIC's block mask (1 kept) of the masked target, or
    None.
    """

    source: MixedClip
    target: MixedClip
    pseudo: PseudoLabels
    templates: Templates | None
    mixed: dict[str, MixedClip]
    loss_samples: list[str]
    strong: dict[str, Tensor]
    feature_mix_region: Tensor | None
    mic_mask: Tensor | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts of tensors: {"source": {"frames", "flows", "labels", "weights"}, ...}."""
        def clip(m: Any) -> dict[str, Tensor]:
            return {f.name: getattr(m, f.name) for f in dataclasses.fields(m)}

        return {"source": clip(self.source), "target": clip(self.target), "pseudo": clip(self.pseudo),
                "templates": None if self.templates is None else tuple(clip(t) for t in self.templates),
                "mixed": {k: clip(m) for k, m in self.mixed.items()},
                "loss_samples": list(self.loss_samples), "strong": dict(self.strong),
                "feature_mix_region": self.feature_mix_region, "mic_mask": self.mic_mask}


@dataclass
class StepOutput:
    """losses: the loss terms by log name (`loss_src`, `loss_aux`, `loss_trg`, `loss_mix`,
    `loss_feat`, `loss_agg`, `loss_fd`, `loss_mic`) and `pseudo_weight` (the mean DACS weight of
    T), scalars whose graphs the step's backward passes have consumed; templates: the templates
    for the next step (QuadMix) or None; record: a StepRecord when env.record was set."""

    losses: dict[str, Tensor]
    templates: Templates | None = None
    record: StepRecord | None = None


# ===================================================================================== parts
def geometric(batch: ClipBatch, cfg: Config, g: torch.Generator) -> ClipBatch:
    """Random crop to data.crop_size (with data.rcs, a source batch's crop is `rcs_crop`), then
    horizontal flip with probability augment.flip; the flow follows both (docs/method.md,
    Augmentation)."""
    with record_function("udass.crop_flip"):
        if cfg.data.rcs and batch.domain == "source":
            batch = rcs_crop(batch, cfg, g)
        else:
            batch = random_crop(batch, cfg.data.crop_size, g)
        return random_hflip(batch, cfg.augment.flip, g)


def rcs_crop(batch: ClipBatch, cfg: Config, g: torch.Generator) -> ClipBatch:
    """Rare-class sampling's crop (DAFormer): each sample's random crop is redrawn until the
    class it was drawn for covers more than data.rcs_min_pixels x data.rcs_min_crop_ratio of its
    frame-t label (`udass.data.rcs.rcs_crop_offsets`). The classes come in
    batch.extras["rcs_class"] (int64 [B], put there by the loop from its RareClassSampler) and
    leave the batch here. A crop that covers the frames leaves them whole, as `random_crop`."""
    extras = dict(batch.extras)
    classes = extras.pop("rcs_class", None)
    if classes is None:
        raise UdassError("data.rcs: a source batch without extras['rcs_class'] (the class each "
                         "sample was drawn for); train through udass.train.Trainer, whose rare-class "
                         "sampler adds it, or turn data.rcs off")
    batch = dataclasses.replace(batch, extras=extras)
    h, w = batch.frames.shape[-2:]
    size = (min(cfg.data.crop_size[0], h), min(cfg.data.crop_size[1], w))
    if size == (h, w):
        return batch
    ys, xs = rcs_crop_offsets(batch.labels[:, 0], classes, size, cfg.data.rcs_min_pixels,
                              cfg.data.rcs_min_crop_ratio, g)
    return crop_at(batch, ys, xs, size)


def strong(clip: MixedClip, cfg: Config, g: torch.Generator) -> MixedClip:
    """The clip with its frames strongly augmented (DACS colour jitter + blur, one draw per clip)."""
    a = cfg.augment
    with record_function("udass.strong_augment"):
        frames = strong_augment(clip.frames, g, jitter=a.jitter, jitter_p=a.jitter_p,
                                blur_p=a.blur_p, blur_sigma=a.blur_sigma)
    return dataclasses.replace(clip, frames=frames)


def mix_length(batch: ClipBatch) -> int:
    """Student and mixed clips have K = 2 for video (t, t-1) and K = 1 for images."""
    return min(batch.num_frames, 2)


def cat_clips(clips: list[MixedClip]) -> tuple[Tensor, Tensor]:
    """One student batch from several clip batches: (frames, flows) concatenated on dim 0."""
    with record_function("udass.concat_batches"):
        return torch.cat([c.frames for c in clips]), torch.cat([c.flows for c in clips])


def detail_draws(env: StepEnv) -> dict[str, Any]:
    """The keyword of a student pass: with model.hrda, {"generator": the step's generator}, from
    which the HRDA network draws each sample's detail crop; else nothing."""
    return {"generator": env.generator} if env.cfg.model.hrda else {}


def seg_loss(out: dict[str, Any], rows: slice, labels: Tensor, weights: Tensor | None, cfg: Config
             ) -> Tensor:
    """The segmentation loss of the samples `rows` of a student pass: CE_w(logits, labels
    [n, H, W], weights [n, H, W] or None); for an HRDA pass (it has `logits_detail`), HRDA's
    multi_resolution_loss: (1 - model.hrda_detail_loss) x CE_w(fused) + model.hrda_detail_loss x
    CE_w(detail prediction, labels and weights inside its crop)."""
    if out.get("logits_detail") is None:
        return wce(out["logits"][rows].float(), labels, weights)
    part = {"logits": out["logits"][rows].float(), "logits_detail": out["logits_detail"][rows].float(),
            "detail_boxes": out["detail_boxes"][rows]}
    return multi_resolution_loss(part, labels, weights, cfg.model.hrda_detail_loss)["total"]


def source_terms(out: dict[str, Any], labels: Tensor, cfg: Config, b: int) -> dict[str, Tensor]:
    """L_src = CE(f(S), Y_s) on the first b samples of a student pass (`seg_loss`), and the CNN's
    auxiliary term aux_weight x CE(aux(S), Y_s) when the network has an auxiliary head."""
    terms = {"loss_src": seg_loss(out, slice(None, b), labels, None, cfg)}
    if out.get("aux") is not None:
        terms["loss_aux"] = cfg.train.aux_weight * wce(out["aux"][:b].float(), labels)
    return terms


def feature_distance_terms(nets: Networks, out: dict[str, Any], frames: Tensor, labels: Tensor,
                           b: int, env: StepEnv) -> dict[str, Tensor]:
    """With fd.enabled: {"loss_fd": fd.weight x L_FD} between the student's bottleneck of the
    pass's first b samples (the source clips frames [b, K, 3, H, W] with labels [b, H, W]) and
    the frozen ImageNet encoder's bottleneck of the same frame t (with HRDA, of the context
    image, as HRDA's feature_scale 0.5), on the cells of the thing classes (DAFormer). {} when
    off."""
    cfg = env.cfg
    if not cfg.fd.enabled:
        return {}
    if nets.imagenet is None:
        raise UdassError("fd.enabled: the step needs the frozen ImageNet encoder (Networks.imagenet); "
                         "the Trainer builds it at initialisation")
    with record_function("udass.feature_distance"):
        images = frames[:, 0]
        if cfg.model.hrda:
            images = context_images(images, cfg.model.hrda_context_scale)
        loss = feature_distance(out["bottleneck"][:b], nets.imagenet(images), labels,
                                env.thing_classes, env.num_classes, cfg.fd.min_ratio)
    return {"loss_fd": cfg.fd.weight * loss}


def masked_terms(nets: Networks, T: MixedClip, env: StepEnv) -> tuple[dict[str, Tensor], Tensor]:
    """MIC (mic.enabled): a student pass over T strongly augmented (its own draws) with MIC's
    random blocks removed, trained against the teacher's pseudo-labels of the unmasked T and
    their DACS weights: {"loss_mic": mic.weight x `seg_loss`}, and the block mask [B, 1, H, W]
    (1 kept). Removed pixels take `env.mask_fill`, the colour the input normalisation maps to 0."""
    cfg, g = env.cfg, env.generator
    aug = strong(T, cfg, g)
    with record_function("udass.mic_mask"):
        mask = block_mask(len(T.frames), tuple(T.frames.shape[-2:]), cfg.mic.block_size,
                          cfg.mic.ratio, g, T.frames.device)
        fill = env.mask_fill if env.mask_fill is not None else neutral_fill(nets.teacher.normalize)
        frames = mask_frames(aug.frames, mask, fill)
    with env.autocast():
        out = nets.student(frames, T.flows, with_aux=False, **detail_draws(env))
        loss = cfg.mic.weight * seg_loss(out, slice(None), T.labels[:, 0], T.weights[:, 0], cfg)
    return {"loss_mic": loss}, mask


def teacher_pseudo_labels(teacher: nn.Module, target: ClipBatch, env: StepEnv) -> PseudoLabels:
    """The teacher's flow-propagated pseudo-labels, confidence and DACS weights of T."""
    t = env.cfg.teacher
    with record_function("udass.pseudo_label"), env.autocast():
        return pseudo_label(teacher, target.frames, target.flows, threshold=t.pseudo_threshold,
                            propagate=t.flow_propagation)


def aggregation_term(out: dict[str, Any], S: MixedClip, T: MixedClip, pseudo: PseudoLabels,
                     b: int, env: StepEnv) -> Tensor:
    """The unweighted spatio-temporal aggregation loss of a student pass over [S (b); strong(T) (b)]
    (docs/method.md, section 7): source prototypes from S's features and labels; target prototypes
    from T's frame-t features (current view) and its frame t-1 features warped to t by the flow
    (previous view), fused with entropy weights of the two views' predictions."""
    with record_function("udass.aggregation_loss"):
        feats = out["features"].float()
        prev_feats = out["features_prev"].float()
        _, _, flow, static = pair_view(T.frames, T.flows)
        logits_t = out["logits_t"][b:].float()
        logits_prev = out["logits_prev"][b:].float()
        size = feats.shape[-2:]
        if static:
            prev_feats_w, logits_prev_w, valid_prev = prev_feats[b:], logits_prev, None
        else:
            prev_feats_w = warp(prev_feats[b:], resize_flow(flow, size))
            logits_prev_w = warp(logits_prev, resize_flow(flow, logits_prev.shape[-2:]))
            valid_prev = warp_valid_mask(flow)  # [B, H, W] at input resolution
        probs = F.softmax(F.interpolate(logits_t, size=size, mode="bilinear", align_corners=False), 1)
        probs_prev = F.softmax(F.interpolate(logits_prev_w, size=size, mode="bilinear",
                                             align_corners=False), 1)
        return aggregation_loss(feats[:b], S.labels[:, 0], feats[b:], prev_feats_w.detach(), probs,
                                probs_prev, pseudo.labels[:, 0], pseudo.confidence[:, 0],
                                env.cfg.aggregation, env.num_classes, tgt_valid_prev=valid_prev)


def mixed_terms(nets: Networks, samples: list[MixedClip], fuse: Tensor | None, env: StepEnv
                ) -> dict[str, Tensor]:
    """Student pass 2 over the strongly augmented mixed samples (already augmented by the caller):
    L_mix = the mean of `seg_loss` over the samples (each with its mixed labels and pixel weights);
    with `fuse` (the shared region of X_tss, X_stt), also feature_mix.weight x L_feat."""
    b = samples[0].frames.shape[0]
    frames, flows = cat_clips(samples)
    with env.autocast():
        out = nets.student(frames, flows, fuse_shared=fuse, with_aux=False, **detail_draws(env))
        terms = {"loss_mix": torch.stack([
            seg_loss(out, slice(i * b, (i + 1) * b), m.labels[:, 0], m.weights[:, 0], env.cfg)
            for i, m in enumerate(samples)]).mean()}
        if fuse is not None:
            c, d = samples
            terms["loss_feat"] = env.cfg.feature_mix.weight * feature_mix_loss(
                out["fused_logits"].float(), c.labels[:, 0], c.weights[:, 0], d.labels[:, 0],
                d.weights[:, 0])
    return terms


def next_templates(S: MixedClip, T: MixedClip, pseudo: PseudoLabels, env: StepEnv) -> Templates:
    """The templates of the next step (docs/method.md, section 4): S with half of its classes plus the
    long-tail classes present (ClassMix rule, per sample); the un-augmented T with its
    pseudo-labels, confidence mask and half of its classes that are not in C_s."""
    c = env.num_classes
    with record_function("udass.classes_templates"):
        c_s = choose_classes(S.labels[:, 0], c, env.generator, long_tail=env.long_tail)
        c_t = choose_classes(T.labels[:, 0], c, env.generator, exclude=c_s)
        return (source_template(S.frames, S.flows, S.labels, c_s).detach(),
                target_template(T.frames, T.flows, pseudo, c_t,
                                env.cfg.quadmix.template_confidence).detach())


def _total(terms: dict[str, Tensor]) -> Tensor:
    return sum(terms.values())  # type: ignore[return-value]


def _record(S: MixedClip, T: MixedClip, pseudo: PseudoLabels, templates: Templates | None,
            mixed: dict[str, MixedClip], keys: list[str], strong_samples: list[MixedClip],
            fuse: Tensor | None, mic_mask: Tensor | None = None) -> StepRecord:
    cpu = lambda x: x.detach().cpu()  # noqa: E731
    return StepRecord(
        source=S.to("cpu").detach(), target=T.to("cpu").detach(), pseudo=pseudo.to("cpu"),
        templates=None if templates is None else tuple(t.to("cpu").detach() for t in templates),
        mixed={k: m.to("cpu").detach() for k, m in mixed.items()}, loss_samples=list(keys),
        strong={k: cpu(m.frames) for k, m in zip(keys, strong_samples)},
        feature_mix_region=None if fuse is None else cpu(fuse),
        mic_mask=None if mic_mask is None else cpu(mic_mask))


# ===================================================================================== the steps
def supervised_step(nets: Networks, batch: ClipBatch, env: StepEnv) -> StepOutput:
    """`source_only` (batch = the source batch) and `oracle` (batch = the labelled target batch):
    L_src (+ the CNN's auxiliary term) on the batch's frame-t labels, one student pass; on a
    source batch also the feature distance (fd.enabled)."""
    batch = geometric(batch, env.cfg, env.generator)
    k = mix_length(batch)
    with env.student_pass(True):
        with env.autocast():
            out = nets.student(batch.frames[:, :k], batch.flows[:, :k - 1], **detail_draws(env))
            terms = source_terms(out, batch.labels[:, 0], env.cfg, len(batch))
            if batch.domain == "source":
                terms.update(feature_distance_terms(nets, out, batch.frames, batch.labels[:, 0],
                                                    len(batch), env))
        env.backward(_total(terms))
    return StepOutput(terms)


def _clips(nets: Networks, source: ClipBatch, target: ClipBatch, env: StepEnv
           ) -> tuple[MixedClip, MixedClip, PseudoLabels]:
    """Match each source clip's colours to its target clip's frame t (data.hist_match), crop and
    flip both batches, then S (with its labels) and T (with the teacher's pseudo-labels and
    weights), both cut to the mixing length (2 frames for video, 1 for images)."""
    if env.cfg.data.hist_match:
        with record_function("udass.hist_match"):
            source = match_source_histograms(source, target)
    target = geometric(target, env.cfg, env.generator)
    source = geometric(source, env.cfg, env.generator)
    km = min(mix_length(source), mix_length(target))
    pseudo = teacher_pseudo_labels(nets.teacher, target, env)
    S = MixedClip.from_source(source.frames[:, :km], source.flows[:, :km - 1], source.labels[:, :km])
    T = MixedClip.from_target(target.frames[:, :km], target.flows[:, :km - 1], pseudo)
    return S, T, pseudo


def _dacs(nets: Networks, S: MixedClip, T: MixedClip, pseudo: PseudoLabels, env: StepEnv
          ) -> StepOutput:
    """The DACS step on prepared clips: L_src (+ L_FD) on S, then L_mix on
    strong(ClassMix(S -> T)), then (mic.enabled) L_mic on the masked strong(T)."""
    g, b = env.generator, len(S.frames)
    mic = env.cfg.mic.enabled
    with record_function("udass.classes_templates"):
        s_cls = choose_classes(S.labels[:, 0], env.num_classes, g)
    with record_function("udass.paste"):
        mix = classmix(S, T, s_cls)
    with env.student_pass(False):
        with env.autocast():
            out = nets.student(S.frames, S.flows, **detail_draws(env))
            terms = source_terms(out, S.labels[:, 0], env.cfg, b)
            terms.update(feature_distance_terms(nets, out, S.frames, S.labels[:, 0], b, env))
        env.backward(_total(terms))
    sample = strong(mix, env.cfg, g)
    with env.student_pass(not mic):
        mix_terms = mixed_terms(nets, [sample], None, env)
        env.backward(_total(mix_terms))
    terms.update(mix_terms)
    mic_mask = None
    if mic:
        with env.student_pass(True):
            mic_terms, mic_mask = masked_terms(nets, T, env)
            env.backward(_total(mic_terms))
        terms.update(mic_terms)
    terms["pseudo_weight"] = pseudo.weights[:, 0].mean().detach()
    record = (_record(S, T, pseudo, None, {"mix": mix}, ["mix"], [sample], None, mic_mask)
              if env.record else None)
    return StepOutput(terms, None, record)


def dacs_step(nets: Networks, source: ClipBatch, target: ClipBatch, env: StepEnv) -> StepOutput:
    """DACS (the standard baseline): the teacher's pseudo-labels of T; L_src on S; half of the
    classes of each current source sample pasted onto the current target (ClassMix: frames,
    labels, weights and flow), strongly augmented, trained with its mixed labels and pixel
    weights (L_mix). No templates, no target-only term, no feature mixing, no aggregation.
    With the image recipe's switches: L_FD on S, L_mic (MIC) on the masked target."""
    S, T, pseudo = _clips(nets, source, target, env)
    return _dacs(nets, S, T, pseudo, env)


def quadmix_step(nets: Networks, source: ClipBatch, target: ClipBatch, templates: Templates | None,
                 env: StepEnv, *, warmup: bool = False) -> StepOutput:
    """QuadMix (docs/method.md, sections 3-7).

    1. T's pseudo-labels from the teacher (flow-propagated), DACS weights.
    2. From the previous step's templates (S', T'): X_ss, X_tt, X_tss, X_stt (the switched-on
       paths); the mixed loss falls on the outermost samples. Without templates (the first
       step), ClassMix of S onto T (quadmix.first_step = classmix) or no mixed sample (store).
    3. Pass 1 over [S; strong(T)]: L_src (+ aux), lambda_T x L_trg (CE_w of strong(T) against
       the pseudo-labels), aggregation.weight x L_agg.
    4. Pass 2 over the strongly augmented mixed samples: L_mix (1/2 X_tss + 1/2 X_stt), and on
       the shared template region of X_tss and X_stt the fused features' L_feat.
    5. The templates of the next step from this step's S and un-augmented T.
    With the image recipe's switches, pass 1 also gives fd.weight x L_FD on S, and a pass 3
    over the masked strong(T) gives mic.weight x L_mic (MIC).
    warmup: before quadmix.start_step the step trains as DACS and still stores templates.
    """
    cfg, g, b = env.cfg, env.generator, len(source)
    S, T, pseudo = _clips(nets, source, target, env)
    if warmup:
        out = _dacs(nets, S, T, pseudo, env)
        out.templates = next_templates(S, T, pseudo, env)
        return out

    # 2. the mixed samples
    if templates is not None:
        with record_function("udass.paste"):
            mixed, keys = quadmix(S, T, *templates, cfg.quadmix.paths), loss_samples(cfg.quadmix.paths)
    elif cfg.quadmix.first_step == "classmix":
        with record_function("udass.classes_templates"):
            s_cls = choose_classes(S.labels[:, 0], env.num_classes, g)
        with record_function("udass.paste"):
            mixed, keys = {"mix": classmix(S, T, s_cls)}, ["mix"]
    else:
        mixed, keys = {}, []

    # 3. pass 1: S and strong(T)
    T_strong = strong(T, cfg, g)
    mic = cfg.mic.enabled
    with env.student_pass(not keys and not mic):
        with env.autocast():
            out = nets.student(*cat_clips([S, T_strong]), **detail_draws(env))
            terms = source_terms(out, S.labels[:, 0], cfg, b)
            if cfg.train.lambda_t:
                terms["loss_trg"] = cfg.train.lambda_t * seg_loss(out, slice(b, None), T.labels[:, 0],
                                                                  T.weights[:, 0], cfg)
            if cfg.aggregation.enabled:
                terms["loss_agg"] = cfg.aggregation.weight * aggregation_term(out, S, T, pseudo, b,
                                                                              env)
            terms.update(feature_distance_terms(nets, out, S.frames, S.labels[:, 0], b, env))
        env.backward(_total(terms))
    if not cfg.train.lambda_t:  # weight 0 (the demo recipe): logged as 0, not computed and scaled by 0
        terms["loss_trg"] = torch.zeros((), device=S.frames.device)

    # 4. pass 2: the strongly augmented mixed samples
    samples = [strong(mixed[k], cfg, g) for k in keys]
    fuse = None
    if keys[:2] == ["tss", "stt"] and cfg.feature_mix.enabled and templates is not None:
        s_tpl, t_tpl = templates
        fuse = shared_region(s_tpl.mask[:, 0], t_tpl.mask[:, 0], ss="ss" in cfg.quadmix.paths,
                             tt="tt" in cfg.quadmix.paths)
    if keys:
        with env.student_pass(not mic):
            mix_terms = mixed_terms(nets, samples, fuse, env)
            env.backward(_total(mix_terms))
        terms.update(mix_terms)

    # (MIC) pass 3: the masked strong(T) against T's pseudo-labels
    mic_mask = None
    if mic:
        with env.student_pass(True):
            mic_terms, mic_mask = masked_terms(nets, T, env)
            env.backward(_total(mic_terms))
        terms.update(mic_terms)
    terms["pseudo_weight"] = pseudo.weights[:, 0].mean().detach()
    record = (_record(S, T, pseudo, templates, mixed, keys, samples, fuse, mic_mask)
              if env.record else None)

    # 5. the templates of the next step
    return StepOutput(terms, next_templates(S, T, pseudo, env), record)
