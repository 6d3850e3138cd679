"""The shared shape of the image-only source datasets (GTAV, SYNTHIA-RAND-CITYSCAPES): one flat
folder of frames and one of labels, a train split only, one frame per clip.

The split is every frame named by an image OR a label file; the releases number their frames
without a gap (GTAV 00001..24966, SYNTHIA 0000000..0009399), so a number missing between the
first and the last is a frame of the split too. A frame whose image or label is absent is then
reported by path instead of leaving the split.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from udass.errors import UdassError


def _png_stems(d: Path) -> set[str]:
    """Stems of the PNG files in folder d (one scandir)."""
    if not d.is_dir():
        return set()
    return {e.name[:-4] for e in os.scandir(d) if e.name.endswith(".png")}


class FlatImageLayout:
    """A source-only image dataset `<folder>/<image_dir>/<key>.png` + `<folder>/<label_dir>/<key>.png`.

    Subclasses set the class attributes below and `read_label` (the dataset's label encoding).
    """

    dataset = folder = encoding = title = ""
    image_dir = label_dir = ""
    example_key = ""
    download = ""
    is_video = False
    prev_labels_optional = False
    authors_crop_bottom = 0

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def split_keys(self, split: str) -> list[str]:
        """Every frame named by an image or a label file, numbering gaps filled (train); these
        datasets have no val split."""
        if split != "train":
            raise UdassError(f"{self.title} has no {split} split (a source-only dataset: train); "
                             f"evaluate on the target (Cityscapes val)")
        d = self.root / self.image_dir
        stems = _png_stems(d) | _png_stems(self.root / self.label_dir)
        if not stems:
            raise UdassError(f"no {self.title} frames in {d} (expected {d}/{self.example_key}.png ...); "
                             f"{self.download}")
        widths = {len(s) for s in stems}
        if len(widths) == 1 and all(s.isdigit() for s in stems):
            width, numbers = widths.pop(), [int(s) for s in stems]
            return [f"{n:0{width}d}" for n in range(min(numbers), max(numbers) + 1)]
        return sorted(stems)

    def name(self, key: str) -> str:
        return key

    def frame_rel(self, key: str, offset: int = 0) -> str:
        if offset:
            raise ValueError(f"{self.title} images have no previous frame")
        return f"{self.image_dir}/{key}.png"

    def label_rel(self, key: str, offset: int = 0) -> str | None:
        return f"{self.label_dir}/{key}.png"

    def read_label(self, path: Path, hint: str = "") -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError
