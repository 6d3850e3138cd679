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

from udass.data.flat import FlatImageLayout
from udass.data.imageio import read_label_synthia

DOWNLOAD = ("download SYNTHIA-RAND-CITYSCAPES.rar from http://synthia-dataset.net/downloads/ and "
            "unpack its RGB/ and GT/ folders into synthia/")


class SynthiaLayout(FlatImageLayout):
    """SYNTHIA-RAND-CITYSCAPES frames (1280 x 760), 9400 on the real data."""

    dataset = folder = encoding = "synthia"
    title = "SYNTHIA-RAND-CITYSCAPES"
    image_dir, label_dir, example_key = "RGB", "GT/LABELS", "0000000"
    download = DOWNLOAD

    def read_label(self, path: Path, hint: str = "") -> np.ndarray:
        """Raw SYNTHIA class ids (first RGB channel of the 16-bit PNG), H x W uint16."""
        return read_label_synthia(path, hint)
