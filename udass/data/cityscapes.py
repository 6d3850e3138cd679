"""Cityscapes (images) and Cityscapes-Seq (video snippets), as shipped (PROTOCOLS.md).

    cityscapes/leftImg8bit/{train,val}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png
    cityscapes/gtFine/{train,val}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_labelIds.png
    cityscapes/leftImg8bit_sequence/{train,val}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png

Split lists come from gtFine (2975 train / 500 val annotated frames on the real data); the other
gtFine files (`_color.png`, `_instanceIds.png`, `_polygons.json`) are skipped. In a snippet the
annotated frame is the 20th whatever its number (e.g. frankfurt_000000_000294), so previous
frames are found by arithmetic on the annotated frame's number, never by assuming ...000019.

A key is `{split}/{city}/{city}_{seq}_{frame}` (the annotated frame t).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from udass.data.imageio import read_label_index
from udass.errors import UdassError

LABEL_SUFFIX = "_gtFine_labelIds.png"
FRAME_SUFFIX = "_leftImg8bit.png"
DOWNLOAD = ("download gtFine_trainvaltest.zip, leftImg8bit_trainvaltest.zip (images) and "
            "leftImg8bit_sequence_trainvaltest.zip (video) from "
            "https://www.cityscapes-dataset.com/downloads/")

# The authors' released flow folders (TPS / DA-VSN / QuadMix READMEs), by split; first = preferred.
AUTHORS_FLOW_DIRS = {
    "train": ("estimated_optical_flow_cityscapes_seq_train",),
    "val": ("estimated_optical_flow_cityscapes_seq_val", "Cityscapes_val_optical_flow_scale512"),
}


def shift_frame(name: str, offset: int) -> str:
    """`aachen_000000_000294`, 2 -> `aachen_000000_000292` (frame number minus offset)."""
    stem, frame = name.rsplit("_", 1)
    return f"{stem}_{int(frame) - offset:0{len(frame)}d}"


class CityscapesSeqLayout:
    """Cityscapes-Seq: 30-frame snippets whose 20th frame carries the gtFine annotation."""

    dataset = "cityscapes-seq"
    folder = "cityscapes"
    encoding = "cityscapes"
    is_video = True
    frames_dir = "leftImg8bit_sequence"
    prev_labels_optional = False
    authors_crop_bottom = 0
    download = DOWNLOAD

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def split_keys(self, split: str) -> list[str]:
        """Annotated frames of `split`, from gtFine/{split}/<city>/*_gtFine_labelIds.png."""
        d = self.root / "gtFine" / split
        if not d.is_dir():
            raise UdassError(f"missing {d}: the {split} split is listed from gtFine/{split}/<city>/"
                             f"*{LABEL_SUFFIX}; unzip gtFine_trainvaltest.zip into {self.root}")
        keys = sorted(f"{split}/{p.parent.name}/{p.name[:-len(LABEL_SUFFIX)]}"
                      for p in d.glob(f"*/*{LABEL_SUFFIX}"))
        if not keys:
            raise UdassError(f"no *{LABEL_SUFFIX} files in {d}/<city>/; unzip gtFine_trainvaltest.zip "
                             f"into {self.root}")
        return keys

    def name(self, key: str) -> str:
        return key.rsplit("/", 1)[1]

    def frame_rel(self, key: str, offset: int = 0) -> str:
        """Path of frame t-offset relative to the dataset folder."""
        split, city, name = key.split("/")
        return f"{self.frames_dir}/{split}/{city}/{shift_frame(name, offset)}{FRAME_SUFFIX}"

    def label_rel(self, key: str, offset: int = 0) -> str | None:
        """gtFine labelIds of the annotated frame; other frames of a snippet have no label."""
        if offset:
            return None
        split, city, name = key.split("/")
        return f"gtFine/{split}/{city}/{name}{LABEL_SUFFIX}"

    def read_label(self, path: Path, hint: str = "") -> np.ndarray:
        """Raw Cityscapes labelIds, H x W uint8."""
        return read_label_index(path, hint)

    def authors_flow(self, split: str, key: str, offset: int) -> tuple[tuple[str, ...], str]:
        """(candidate folders, file name) of the authors' flow of frame t-offset -> t-offset-1:
        `{city}_{seq}_{frame}_{frame-1:06d}_int16_x10.npy`."""
        name = shift_frame(self.name(key), offset)
        prev = int(name.rsplit("_", 1)[1]) - 1
        return AUTHORS_FLOW_DIRS.get(split, (f"estimated_optical_flow_cityscapes_seq_{split}",)), \
            f"{name}_{prev:06d}_int16_x10.npy"


class CityscapesLayout(CityscapesSeqLayout):
    """Cityscapes images: leftImg8bit + gtFine labelIds (one-frame clips)."""

    dataset = "cityscapes"
    is_video = False
    frames_dir = "leftImg8bit"

    def frame_rel(self, key: str, offset: int = 0) -> str:
        if offset:
            raise ValueError("Cityscapes images have no previous frame")
        return super().frame_rel(key, 0)
