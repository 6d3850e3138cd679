"""Class-aware online patch templates (docs/method.md, section 4).

At the end of step k the trainer keeps the step's source clip and un-augmented target clip as
templates for step k+1, each with a per-sample class set and the per-frame class mask it
induces. A template carries frames, flow, labels and pixel weights: a paste moves all of them.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Mapping, Sequence

import torch
from torch import Tensor

from udass.method.teacher import PseudoLabels


@dataclass
class Template:
    """A patch template of batch B and clip length K (2 for video mixing, 1 for images).

    frames:  [B, K, 3, H, W] float in [0, 1]; flows: [B, K-1, 2, H, W] pixels (frame i -> i+1).
    labels:  [B, K, H, W] int64 (ground truth or pseudo-labels; 255 ignore).
    weights: [B, K, H, W] float in [0, 1] (1 for source, DACS weights for target).
    mask:    [B, K, H, W] bool, the pixels that are pasted (label in `classes`, confident).
    classes: [B, C] bool, the chosen class set of each sample.
    """

    frames: Tensor
    flows: Tensor
    labels: Tensor
    weights: Tensor
    mask: Tensor
    classes: Tensor

    def __post_init__(self) -> None:
        b, k = self.frames.shape[:2]
        hw = tuple(self.frames.shape[-2:])
        expect = {"flows": (b, k - 1, 2, *hw), "labels": (b, k, *hw), "weights": (b, k, *hw),
                  "mask": (b, k, *hw)}
        for name, shape in expect.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"Template.{name}: expected {shape} for frames "
                                 f"{tuple(self.frames.shape)}, got {tuple(getattr(self, name).shape)}")
        if self.classes.dim() != 2 or self.classes.shape[0] != b:
            raise ValueError(f"Template.classes: expected [{b}, C], got {tuple(self.classes.shape)}")

    def detach(self) -> "Template":
        return replace(self, **{f.name: getattr(self, f.name).detach() for f in fields(self)})

    def to(self, device: torch.device | str) -> "Template":
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def state_dict(self) -> dict[str, Tensor]:
        """A dict of (detached) tensors, for checkpoints; `Template.from_state_dict` inverts it."""
        return {f.name: getattr(self, f.name).detach() for f in fields(self)}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> "Template":
        missing = [f.name for f in fields(cls) if f.name not in state]
        if missing:
            raise ValueError(f"Template.from_state_dict: missing tensors {missing}")
        return cls(**{f.name: state[f.name] for f in fields(cls)})

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[1])


def _table_index(labels: Tensor, num_classes: int) -> Tensor:
    """labels [B, ...] as [B, N] indices into a per-sample table of C + 2 slots: class c at
    slot c + 1; slot 0 (labels < 0) and slot C + 1 (labels >= C, the ignore label 255 among
    them) hold nothing. An add and a clamp (vectorised) instead of comparisons and a select."""
    return labels.reshape(labels.shape[0], -1).long().add(1).clamp_(0, num_classes + 1)


def present_classes(labels: Tensor, num_classes: int) -> Tensor:
    """Bool [B, C]: classes that occur in each sample of labels [B, ...] int64 (255 / >= C ignored)."""
    present = torch.zeros(labels.shape[0], num_classes + 2, dtype=torch.bool, device=labels.device)
    present.scatter_(1, _table_index(labels, num_classes), True)
    return present[:, 1:num_classes + 1]


def choose_classes(labels_t: Tensor, num_classes: int, generator: torch.Generator,
                   fraction: float = 0.5, long_tail: Sequence[int] = (),
                   exclude: Tensor | None = None) -> Tensor:
    """The template class set of every sample (ClassMix rule, per sample).

    labels_t: [B, H, W] int64 labels of frame t (255 ignore); exclude: [B, C] bool or None.
    Candidates = classes present in the sample, minus `exclude`; ceil(fraction x #candidates) of
    them are drawn uniformly without replacement (independent per sample), then every
    candidate that is a long-tail class is added (so long-tail classes present are always in,
    on top of the random half). 255 is never a class. Returns [B, C] bool.
    Vectorised: one uniform score per (sample, class), the top-n candidates of each row.
    """
    if labels_t.dim() != 3:
        raise ValueError(f"choose_classes: expected labels_t [B, H, W], got {tuple(labels_t.shape)}")
    b = labels_t.shape[0]
    candidates = present_classes(labels_t, num_classes)
    if exclude is not None:
        candidates &= ~exclude.to(device=candidates.device, dtype=torch.bool)
    n_pick = torch.ceil(candidates.sum(1).float() * fraction - 1e-6).long()  # [B]
    scores = torch.rand(b, num_classes, generator=generator, device=generator.device).to(labels_t.device)
    scores = torch.where(candidates, scores, torch.full_like(scores, -1.0))
    order = scores.argsort(dim=1, descending=True)
    rank_ok = torch.arange(num_classes, device=labels_t.device).unsqueeze(0) < n_pick.unsqueeze(1)
    chosen = torch.zeros_like(candidates).scatter_(1, order, rank_ok)
    if long_tail:
        lt = torch.zeros(num_classes, dtype=torch.bool, device=labels_t.device)
        lt[[c for c in long_tail if 0 <= c < num_classes]] = True
        chosen |= candidates & lt.unsqueeze(0)
    return chosen


def class_mask(labels: Tensor, classes: Tensor) -> Tensor:
    """M = [label in class set], per sample and frame.

    labels: [B, K, H, W] (or [B, H, W]) int64, 255 ignore (never in the mask); classes: [B, C]
    bool. Returns bool of labels' shape.
    """
    b, c = classes.shape
    none = classes.new_zeros(b, 1, dtype=torch.bool)
    table = torch.cat([none, classes.bool(), none], dim=1)
    return torch.gather(table, 1, _table_index(labels, c)).view(labels.shape)


def source_template(frames: Tensor, flows: Tensor, labels: Tensor, classes: Tensor) -> Template:
    """Source template: the clip with its ground truth, weights 1, mask = class_mask(labels, C_s).

    frames [B, K, 3, H, W]; flows [B, K-1, 2, H, W]; labels [B, K, H, W] int64; classes [B, C] bool.
    """
    return Template(frames=frames, flows=flows, labels=labels,
                    weights=torch.ones(labels.shape, dtype=torch.float32, device=labels.device),
                    mask=class_mask(labels, classes), classes=classes)


def target_template(frames: Tensor, flows: Tensor, pseudo: PseudoLabels, classes: Tensor,
                    confidence_threshold: float = 0.9) -> Template:
    """Target template: the un-augmented clip with its pseudo-labels and DACS weights.

    mask = [pseudo-label in C_t] AND [confidence >= confidence_threshold], per frame.
    frames [B, K, 3, H, W] with K >= K2 = pseudo.num_frames: a longer clip (the t-2 frame of a
    video target training clip) is cut to its first K2 frames and K2-1 flows.
    """
    k2 = pseudo.num_frames
    frames, flows = cut_clip(frames, flows, k2)
    mask = class_mask(pseudo.labels, classes) & (pseudo.confidence >= confidence_threshold)
    return Template(frames=frames, flows=flows, labels=pseudo.labels, weights=pseudo.weights.float(),
                    mask=mask, classes=classes)


def cut_clip(frames: Tensor, flows: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The first k frames [B, k, 3, H, W] and k-1 flows [B, k-1, 2, H, W] of a clip (newest first)."""
    if frames.shape[1] < k:
        raise ValueError(f"clip of {frames.shape[1]} frames cannot be cut to {k} frames")
    return frames[:, :k], flows[:, :k - 1]
