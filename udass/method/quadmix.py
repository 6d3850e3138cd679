"""QuadMix: the four mixing paths over frames, labels, pixel weights and flow (docs/method.md, section 5).

    (a) ss  = paste(M_s, S', S)                                  S -> S
    (b) tt  = paste(M_t, T', T)                                  T -> T
    (c) tss = paste(M_t, T', ss if (a) is on else S)             T -> (S -> S)
    (d) stt = paste(M_s, S', tt if (b) is on else T)             S -> (T -> T)

S, T: the current source and target clips; S', T': the previous step's templates with masks
M_s, M_t. Every tensor of a clip moves with its frame's mask; the flow that lives on frame i's
grid moves with frame i's mask.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Sequence

import torch
from torch import Tensor

from udass.config import QUADMIX_PATHS
from udass.errors import unknown_name
from udass.method.teacher import PseudoLabels
from udass.method.templates import Template, class_mask, cut_clip


@dataclass
class MixedClip:
    """A (possibly mixed) training clip of batch B and length K.

    frames:  [B, K, 3, H, W] float in [0, 1]; flows: [B, K-1, 2, H, W] pixels.
    labels:  [B, K, H, W] int64 (ground truth where the pixel comes from a source clip,
             pseudo-labels where it comes from a target clip; 255 ignore).
    weights: [B, K, H, W] float (1 for source pixels, DACS weights for target pixels).
    """

    frames: Tensor
    flows: Tensor
    labels: Tensor
    weights: Tensor

    @classmethod
    def from_source(cls, frames: Tensor, flows: Tensor, labels: Tensor) -> "MixedClip":
        """A source clip: labels [B, K, H, W] int64, weights 1."""
        return cls(frames, flows, labels,
                   torch.ones(labels.shape, dtype=torch.float32, device=labels.device))

    @classmethod
    def from_target(cls, frames: Tensor, flows: Tensor, pseudo: PseudoLabels) -> "MixedClip":
        """A target clip with its pseudo-labels and DACS weights; frames are cut to K2 = pseudo.num_frames."""
        frames, flows = cut_clip(frames, flows, pseudo.num_frames)
        return cls(frames, flows, pseudo.labels, pseudo.weights.float())

    def detach(self) -> "MixedClip":
        return replace(self, **{f.name: getattr(self, f.name).detach() for f in fields(self)})

    def to(self, device: torch.device | str) -> "MixedClip":
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[1])


def paste(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """paste(M, A, B) = M * A + (1 - M) * B, exactly (a select, dtype kept).

    mask: [B, K, H, W] bool, one mask per frame. a, b: same shape, one of
      [B, K, H, W]        labels / weights (frame i with mask[:, i]),
      [B, K', c, H, W]    frames (K' = K) or flows (K' = K-1; flows[:, i] lives on frame i's grid
                          and moves with mask[:, i]).
    """
    if a.shape != b.shape:
        raise ValueError(f"paste: a {tuple(a.shape)} and b {tuple(b.shape)} differ")
    if a.shape[0] != mask.shape[0] or a.shape[1] > mask.shape[1] or a.shape[-2:] != mask.shape[-2:]:
        raise ValueError(f"paste: mask {tuple(mask.shape)} does not fit tensors {tuple(a.shape)}")
    m = mask[:, :a.shape[1]].bool()
    if a.dim() == 5:
        m = m.unsqueeze(2)
    elif a.dim() != 4:
        raise ValueError(f"paste: expected a [B, K, H, W] or [B, K, c, H, W] tensor, got {tuple(a.shape)}")
    return torch.where(m, a, b)


def paste_clip(mask: Tensor, a: MixedClip | Template, b: MixedClip) -> MixedClip:
    """paste(mask, a, b) on frames, flows, labels and weights alike."""
    if a.frames.shape != b.frames.shape:
        raise ValueError(f"cannot paste a clip of frames {tuple(a.frames.shape)} onto one of "
                         f"{tuple(b.frames.shape)}: the source and target batches must have the same "
                         f"batch size, clip length and crop size")
    return MixedClip(frames=paste(mask, a.frames, b.frames), flows=paste(mask, a.flows, b.flows),
                     labels=paste(mask, a.labels, b.labels),
                     weights=paste(mask, a.weights.to(b.weights.dtype), b.weights))


def paste_template(template: Template, base: MixedClip) -> MixedClip:
    """Paste a template's masked pixels (frames, flows, labels, weights) onto `base`."""
    return paste_clip(template.mask, template, base)


def check_paths(paths: Sequence[str]) -> tuple[str, ...]:
    """Validate path names (a subset of ss, tt, tss, stt); returns them as a tuple."""
    for p in paths:
        if p not in QUADMIX_PATHS:
            raise unknown_name("quadmix path", p, QUADMIX_PATHS)
    return tuple(paths)


def quadmix(source: MixedClip, target: MixedClip, s_tpl: Template, t_tpl: Template,
            paths: Sequence[str] = QUADMIX_PATHS) -> dict[str, MixedClip]:
    """The mixed clips of the switched-on paths, keyed "ss", "tt", "tss", "stt" (in that order).

    source S, target T: the current clips; s_tpl S' (mask M_s), t_tpl T' (mask M_t): the
    previous step's templates. All share B, K and (H, W). With (a) off, (c) pastes T' on S;
    with (b) off, (d) pastes S' on T.
    """
    on = set(check_paths(paths))
    out: dict[str, MixedClip] = {}
    if "ss" in on:
        out["ss"] = paste_template(s_tpl, source)
    if "tt" in on:
        out["tt"] = paste_template(t_tpl, target)
    if "tss" in on:
        out["tss"] = paste_template(t_tpl, out.get("ss", source))
    if "stt" in on:
        out["stt"] = paste_template(s_tpl, out.get("tt", target))
    return out


def loss_samples(paths: Sequence[str]) -> list[str]:
    """The outermost mixed samples that exist, which carry the mixed loss (docs/method.md, section 5).

    tss and stt when on; ss when on and tss off; tt when on and stt off; [] when all are off
    (source + pseudo-label self-training). Returned in the order ss, tt, tss, stt.
    """
    on = set(check_paths(paths))
    outer = {"ss": "ss" in on and "tss" not in on, "tt": "tt" in on and "stt" not in on,
             "tss": "tss" in on, "stt": "stt" in on}
    return [p for p in QUADMIX_PATHS if outer[p]]


def classmix(source: MixedClip, target: MixedClip, classes: Tensor) -> MixedClip:
    """DACS baseline: the current source's chosen classes pasted onto the current target.

    classes: [B, C] bool per sample (choose_classes on the source labels of frame t). The mask
    is per frame (class_mask of source.labels); frames, flows, labels and weights move alike.
    """
    return paste_clip(class_mask(source.labels, classes), source, target)
