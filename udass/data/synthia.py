"""SYNTHIA-RAND-CITYSCAPES, as shipped.

    synthia/RGB/{0000000}.png
    synthia/GT/LABELS/{0000000}.png   16-bit 3-channel PNG, class id in the first RGB channel

Other folders of the release (GT/COLOR, Depth) are skipped. The labels must be read with OpenCV
`IMREAD_UNCHANGED` (PIL truncates 16-bit RGB to 8 bits); the class id is index 2 of OpenCV's BGR
array. Source-only: a train split, no val split.

A key is the file stem (`0000000`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from udass.data.imageio import read_label_synthia
from udass.errors import UdassError

DOWNLOAD = ("download SYNTHIA-RAND-CITYSCAPES.rar from http://synthia-dataset.net/downloads/ and "
            "unpack its RGB/ and GT/ folders into synthia/")


class SynthiaLayout:
    """SYNTHIA-RAND-CITYSCAPES frames (1280 x 760), 9400 on the real data."""

    dataset = "synthia"
    folder = "synthia"
    encoding = "synthia"
    is_video = False
    prev_labels_optional = False
    authors_crop_bottom = 0
    download = DOWNLOAD

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def split_keys(self, split: str) -> list[str]:
        """All frames of synthia/RGB (train); SYNTHIA has no val split."""
        if split != "train":
            raise UdassError(f"SYNTHIA-RAND-CITYSCAPES has no {split} split (a source-only dataset: "
                             f"train); evaluate on the target (Cityscapes val)")
        d = self.root / "RGB"
        keys = sorted(p.stem for p in d.glob("*.png")) if d.is_dir() else []
        if not keys:
            raise UdassError(f"no SYNTHIA frames in {d} (expected {d}/0000000.png ...); {DOWNLOAD}")
        return keys

    def name(self, key: str) -> str:
        return key

    def frame_rel(self, key: str, offset: int = 0) -> str:
        if offset:
            raise ValueError("SYNTHIA-RAND-CITYSCAPES images have no previous frame")
        return f"RGB/{key}.png"

    def label_rel(self, key: str, offset: int = 0) -> str | None:
        return f"GT/LABELS/{key}.png"

    def read_label(self, path: Path, hint: str = "") -> np.ndarray:
        """Raw SYNTHIA class ids (first RGB channel of the 16-bit PNG), H x W uint16."""
        return read_label_synthia(path, hint)
