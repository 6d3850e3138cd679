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

from udass.data.flat import FlatImageLayout
from udass.data.imageio import read_label_index

DOWNLOAD = ("download the 10 parts 01_images.zip .. 10_images.zip and 01_labels.zip .. 10_labels.zip "
            "from https://download.visinf.tu-darmstadt.de/data/from_games/ into gta/images and gta/labels")


class GTALayout(FlatImageLayout):
    """GTAV frames (1914 x 1052) with Cityscapes-labelId palette labels."""

    dataset = folder = encoding = "gta"
    title = "GTAV"
    image_dir, label_dir, example_key = "images", "labels", "00001"
    download = DOWNLOAD

    def read_label(self, path: Path, hint: str = "") -> np.ndarray:
        """Raw ids = palette indices (Cityscapes labelIds), H x W uint8."""
        return read_label_index(path, hint)
