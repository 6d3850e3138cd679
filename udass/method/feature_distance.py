"""ImageNet feature distance (DAFormer, Hoyer et al., CVPR 2022, "thing-class FD").

A frozen copy of the encoder as it was initialised from ImageNet keeps the student's bottleneck
features close to ImageNet's on source pixels of "thing" classes, where ImageNet features are
most useful and most easily forgotten when training on synthetic data:

    L_FD = mean over cells p with a thing label of || Phi_student(x)_p - Phi_ImageNet(x)_p ||_2

Phi is the encoder's last stage (stride 32: the bottleneck). A cell counts when its label,
downscaled from the source label by DAFormer's rule (`downscale_label_ratio`: the majority
class of the cell, ignore when it covers less than `min_ratio` = 0.75 of the cell), is one of
the thing classes (DAFormer's list: light, sign, person, rider, car, truck, bus, train,
motorcycle, bicycle; `thing_classes`). The caller multiplies by the weight (0.005 in the
DAFormer / HRDA / MIC ViT configs) and, with HRDA, passes the context features and the context
image (HRDA's `feature_scale = 0.5`).
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from udass.benchmarks import IGNORE_INDEX

# DAFormer's `imnet_feature_dist_classes` (6, 7, 11-18 of the 19 Cityscapes classes), by name.
THING_CLASS_NAMES = ("light", "sign", "person", "rider", "car", "truck", "bus", "train",
                     "motorcycle", "bicycle")


def thing_classes(class_names: Sequence[str]) -> tuple[int, ...]:
    """Train ids of DAFormer's thing classes in a protocol's class list (cityscapes19: 6, 7,
    11, ..., 18; classes a protocol lacks are skipped)."""
    return tuple(i for i, name in enumerate(class_names) if name in THING_CLASS_NAMES)


def downscale_label_ratio(labels: Tensor, factor: int, min_ratio: float, num_classes: int) -> Tensor:
    """DAFormer's label downscaling: labels [B, H, W] int64 (255 ignore) -> [B, ceil(H / f),
    ceil(W / f)], each cell the most frequent value of its f x f block (ignore counts as a
    value), set to ignore when that value covers less than `min_ratio` of the block. Blocks cut
    by the border are judged on their pixels inside the image (DAFormer needs exact multiples)."""
    lab = labels.long().clone()
    lab[lab == IGNORE_INDEX] = num_classes
    onehot = F.one_hot(lab, num_classes + 1).permute(0, 3, 1, 2).float()
    share = F.avg_pool2d(onehot, kernel_size=factor, stride=factor, ceil_mode=True)
    ratio, out = share.max(dim=1)
    out[out == num_classes] = IGNORE_INDEX
    out[ratio < min_ratio] = IGNORE_INDEX
    return out


def feature_distance(student: Tensor, imagenet: Tensor, labels: Tensor, classes: Sequence[int],
                     num_classes: int, min_ratio: float = 0.75) -> Tensor:
    """L_FD (unweighted): the mean L2 distance over channels between student [B, D, h, w] and
    ImageNet [B, D, h, w] bottleneck features, over the cells whose downscaled label is in
    `classes`. labels: [B, H, W] source train ids at the image's resolution; the downscaling
    factor is W // w as in DAFormer (any H // h mismatch from ceil-mode grids is absorbed by
    `downscale_label_ratio`). No thing cell at all gives an exact 0 that keeps the graph
    (DAFormer returns NaN there and relies on its having no gradient)."""
    factor = max(1, labels.shape[-1] // student.shape[-1])
    small = downscale_label_ratio(labels, factor, min_ratio, num_classes)
    if tuple(small.shape[-2:]) != tuple(student.shape[-2:]):
        small = F.interpolate(small[:, None].float(), size=student.shape[-2:], mode="nearest")[:, 0].long()
    cls = torch.as_tensor(list(classes), device=labels.device, dtype=torch.long)
    mask = (small.unsqueeze(-1) == cls).any(-1)
    dist = torch.linalg.vector_norm(student.float() - imagenet.float(), dim=1)
    if not bool(mask.any()):
        return dist.sum() * 0.0
    return dist[mask].mean()


class ImageNetEncoder:
    """A frozen copy of a network's encoder and input normalisation, taken when the network
    holds its ImageNet weights (before training). Like `EMATeacher` it is not an nn.Module:
    optimisers, DDP and a parent's `.train()` never see it; it always runs in eval mode without
    gradient.

    `encoder(images [B, 3, H, W] in [0, 1])` -> the bottleneck [B, E, H/32, W/32] (the encoder's
    last stage).
    """

    def __init__(self, net: nn.Module) -> None:
        self.normalize = copy.deepcopy(net.normalize).eval().requires_grad_(False)
        self.encoder = copy.deepcopy(net.encoder).eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        if self.encoder.training:
            self.encoder.eval()
        return self.encoder(self.normalize(images))[-1]

    def to(self, device: torch.device | str) -> "ImageNetEncoder":
        self.normalize.to(device)
        self.encoder.to(device)
        return self


__all__ = ["ImageNetEncoder", "THING_CLASS_NAMES", "downscale_label_ratio", "feature_distance",
           "thing_classes"]
