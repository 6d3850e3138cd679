"""GTAV (Playing for Data), as shipped: one flat folder of frames and one of labels.

    gta/images/{00001}.png
    gta/labels/{00001}.png      palette PNG whose INDEX is the Cityscapes labelId

Read the palette index, never the colour (several ids share one colour; OpenCV would decode the
colours). GTAV is a source-only dataset: it has a train split and no val split. A few GTAV
frames and their labels differ in size; training labels are resized to the frame size on load.

A key is the file stem (`00001`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from udass.data.imageio import read_label_index
from udass.errors import UdassError

DOWNLOAD = ("download the 10 parts 01_images.zip .. 10_images.zip and 01_labels.zip .. 10_labels.zip "
            "from https://download.visinf.tu-darmstadt.de/data/from_games/ into gta/images and gta/labels")


class GTALayout:
    """GTAV frames (1914 x 1052) with Cityscapes-labelId palette labels."""

    dataset = "gta"
    folder = "gta"
    encoding = "gta"
    is_video = False
    prev_labels_optional = False
    authors_crop_bottom = 0
    download = DOWNLOAD

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def split_keys(self, split: str) -> list[str]:
        """All frames of gta/images (train); GTAV has no val split."""
        if split != "train":
            raise UdassError(f"GTAV has no {split} split (a source-only dataset: train); evaluate on the "
                             f"target (Cityscapes val)")
        d = self.root / "images"
        keys = sorted(p.stem for p in d.glob("*.png")) if d.is_dir() else []
        if not keys:
            raise UdassError(f"no GTAV frames in {d} (expected {d}/00001.png ...); {DOWNLOAD}")
        return keys

    def name(self, key: str) -> str:
        return key

    def frame_rel(self, key: str, offset: int = 0) -> str:
        if offset:
            raise ValueError("GTAV images have no previous frame")
        return f"images/{key}.png"

    def label_rel(self, key: str, offset: int = 0) -> str | None:
        return f"labels/{key}.png"

    def read_label(self, path: Path, hint: str = "") -> np.ndarray:
        """Raw ids = palette indices (Cityscapes labelIds), H x W uint8."""
        return read_label_index(path, hint)
