"""The shared shape of the image-only source datasets (GTAV, SYNTHIA-RAND-CITYSCAPES): one flat
folder of frames and one of labels, a train split only, one frame per clip."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from udass.errors import UdassError


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
        """Every frame of the image folder (train); these datasets have no val split."""
        if split != "train":
            raise UdassError(f"{self.title} has no {split} split (a source-only dataset: train); "
                             f"evaluate on the target (Cityscapes val)")
        d = self.root / self.image_dir
        keys = sorted(p.stem for p in d.glob("*.png")) if d.is_dir() else []
        if not keys:
            raise UdassError(f"no {self.title} frames in {d} (expected {d}/{self.example_key}.png ...); "
                             f"{self.download}")
        return keys

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
