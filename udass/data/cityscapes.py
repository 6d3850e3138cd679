"""Cityscapes (images) and Cityscapes-Seq (video snippets), as shipped (docs/datasets.md).

    cityscapes/leftImg8bit/{train,val}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png
    cityscapes/gtFine/{train,val}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_labelIds.png
    cityscapes/leftImg8bit_sequence/{train,val}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png

A split is the set of annotated frames (2975 train / 500 val on the real data) found by ANY of
the files that carry one: a gtFine labelIds file, a leftImg8bit image, and (Cityscapes-Seq) a
whole 30-frame snippet in leftImg8bit_sequence (its 20th frame). So a missing label or image
leaves its clip in the split, where it is reported by path (`udass check-data`, the loaders),
instead of shrinking the split. The other gtFine files (`_color.png`, `_instanceIds.png`,
`_polygons.json`) are skipped. In a snippet the annotated frame is the 20th whatever its number
(e.g. frankfurt_000000_000294), so previous frames are found by arithmetic on the annotated
frame's number, never by assuming ...000019.

A key is `{split}/{city}/{city}_{seq}_{frame}` (the annotated frame t).
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from udass.data.imageio import read_label_index
from udass.errors import UdassError

LABEL_SUFFIX = "_gtFine_labelIds.png"
FRAME_SUFFIX = "_leftImg8bit.png"
SNIPPET_LENGTH = 30     # frames per leftImg8bit_sequence snippet
ANNOTATED_INDEX = 19    # the annotated frame is the 20th of its snippet
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


def _listed(split_dir: Path, suffix: str) -> set[tuple[str, str]]:
    """(city, frame stem) of every `<split_dir>/<city>/<stem><suffix>` (one scandir per city)."""
    if not split_dir.is_dir():
        return set()
    out = set()
    for city in os.scandir(split_dir):
        if city.is_dir():
            out |= {(city.name, e.name[:-len(suffix)]) for e in os.scandir(city.path)
                    if e.name.endswith(suffix)}
    return out


def _snippet_frames(split_dir: Path) -> set[tuple[str, str]]:
    """(city, annotated frame stem) of every whole snippet in a leftImg8bit_sequence split folder.

    The frames of one `{city}_{seq}` are cut into runs of consecutive numbers; a run of 30 k frames
    is k snippets whose 20th frames are annotated. Shorter runs (a partial download, or the few
    frames a generated root writes) name no frame: gtFine and leftImg8bit name those clips.
    """
    runs: dict[tuple[str, str], list[int]] = defaultdict(list)
    width: dict[tuple[str, str], int] = {}
    for city, stem in _listed(split_dir, FRAME_SUFFIX):
        head, _, frame = stem.rpartition("_")
        if frame.isdigit():
            runs[(city, head)].append(int(frame))
            width[(city, head)] = len(frame)
    out = set()
    for (city, head), frames in runs.items():
        frames.sort()
        start = 0
        for i in range(1, len(frames) + 1):
            if i == len(frames) or frames[i] != frames[i - 1] + 1:
                length = i - start
                if length % SNIPPET_LENGTH == 0:
                    w = width[(city, head)]
                    out |= {(city, f"{head}_{frames[start] + j + ANNOTATED_INDEX:0{w}d}")
                            for j in range(0, length, SNIPPET_LENGTH)}
                start = i
    return out


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
        """Annotated frames of `split`: every frame named by a gtFine labelIds file, a leftImg8bit
        image or (video) a whole snippet of leftImg8bit_sequence, sorted."""
        stems = _listed(self.root / "gtFine" / split, LABEL_SUFFIX)
        stems |= _listed(self.root / "leftImg8bit" / split, FRAME_SUFFIX)
        if self.is_video:
            stems |= _snippet_frames(self.root / "leftImg8bit_sequence" / split)
        if not stems:
            where = "gtFine, leftImg8bit" + (" or leftImg8bit_sequence" if self.is_video else "")
            raise UdassError(f"no {split} frames of {self.dataset} under {self.root} (looked in {where}"
                             f"/{split}/<city>/); {self.download}")
        return sorted(f"{split}/{city}/{name}" for city, name in stems)

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
