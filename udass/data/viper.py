"""VIPER (Playing for Benchmarks), as shipped.

    viper/{train,val}/img/{seq:03d}/{seq:03d}_{frame:05d}.jpg   (or .png)
    viper/{train,val}/cls/{seq:03d}/{seq:03d}_{frame:05d}.png   class-index PNG

Images exist for every frame; class labels for the labelled frames (every 10th frame in the
public release). The train split is the labelled frames with a previous frame (DA-VSN / TPS
`Viper_list/train.txt`: frames 10, 20, ... of each sequence, 13,367 clips). A frame is in the
split when its label file exists and so does its previous image, or when its number is a
multiple of 10 (from 10) within the sequence's labelled range and its image or label exists: so a
missing label, image or previous image inside a sequence is reported by path, never a clip that
silently leaves the split. The ego vehicle (the car component touching the bottom centre of the
frame) is set to "unlabeled" (0), hence ignored. A previous frame without a label file gets an
all-ignore label (the public release labels only every 10th frame).

A key is `{split}/{seq}/{seq}_{frame}` (frame t).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from udass.data.imageio import read_label_index
from udass.errors import UdassError

CAR = 24        # VIPER class id of "car"
UNLABELED = 0   # VIPER class id of "unlabeled" (ignored by the protocol)
IMAGE_EXTS = (".jpg", ".png")
LABEL_PERIOD = 10   # the public release labels every 10th frame
DOWNLOAD = ("download the train/val img (jpg) and cls archives from "
            "https://playing-for-benchmarks.org/download/ into viper/{train,val}/img and "
            "viper/{train,val}/cls")
# The authors' released VIPER flows (QuadMix / TPS READMEs): train only, 0.533 scale, one flat
# folder of `{seq}_{frame:05d}{frame-1:05d}_int16_x10.npy` (no separator between the numbers).
AUTHORS_FLOW_DIRS = {"train": ("estimated_optical_flow_viper_train", "Estimated_optical_flow_Viper_train")}


def shift_frame(name: str, offset: int) -> str:
    """`001_00010`, 1 -> `001_00009`."""
    seq, frame = name.rsplit("_", 1)
    return f"{seq}_{int(frame) - offset:0{len(frame)}d}"


def remove_ego_vehicle(raw: np.ndarray) -> np.ndarray:
    """Set the car component touching the bottom centre pixel to UNLABELED (vectorised).

    raw: H x W VIPER class ids. Returns a new array (or `raw` itself when there is no ego car).
    """
    _, comp = cv2.connectedComponents((raw == CAR).astype(np.uint8), connectivity=8)
    ego = comp[-1, comp.shape[1] // 2]
    if ego == 0:
        return raw
    out = raw.copy()
    out[comp == ego] = UNLABELED
    return out


def _stems(d: Path) -> dict[str, str]:
    """stem -> file name of the images in folder d (one os.scandir)."""
    if not d.is_dir():
        return {}
    return {os.path.splitext(e.name)[0]: e.name for e in os.scandir(d)
            if e.name.endswith(IMAGE_EXTS)}


def _frame(name: str) -> int | None:
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _clip_frames(labels: set[str], images: set[str]) -> set[str]:
    """Frame names of one sequence that are clips: labelled with a previous image, or a multiple
    of LABEL_PERIOD inside the labelled range with an image or a label."""
    numbered = {n: f for n in labels | images if (f := _frame(n)) is not None}
    out = {n for n in labels if numbered.get(n, 0) >= 1 and shift_frame(n, 1) in images}
    labelled = [numbered[n] for n in labels if n in numbered]
    if not labelled:
        return out
    lo, hi = min(labelled), max(labelled)
    return out | {n for n, f in numbered.items()
                  if f >= LABEL_PERIOD and f % LABEL_PERIOD == 0 and lo <= f <= hi}


class ViperLayout:
    """VIPER frames (1920 x 1080) with class-index labels."""

    dataset = "viper"
    folder = "viper"
    encoding = "viper"
    is_video = True
    prev_labels_optional = True
    authors_crop_bottom = 0
    download = DOWNLOAD

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def split_keys(self, split: str) -> list[str]:
        """Labelled frames of `split` (see the module docstring), sorted."""
        cls = self.root / split / "cls"
        if not cls.is_dir():
            raise UdassError(f"missing {cls}: the VIPER {split} split is listed from "
                             f"{split}/cls/<seq>/*.png; {DOWNLOAD}")
        keys = []
        for seq in sorted(e.name for e in os.scandir(cls) if e.is_dir()):
            images = _stems(self.root / split / "img" / seq)
            labels = {e.name[:-4] for e in os.scandir(cls / seq) if e.name.endswith(".png")}
            keys += [f"{split}/{seq}/{name}" for name in sorted(_clip_frames(labels, set(images)))]
        if not keys:
            raise UdassError(f"no labelled VIPER frames with a previous frame under {self.root / split} "
                             f"(expected cls/<seq>/<seq>_<frame>.png and img/<seq>/<seq>_<frame-1>.jpg); "
                             f"{DOWNLOAD}")
        return keys

    def name(self, key: str) -> str:
        return key.rsplit("/", 1)[1]

    def frame_rel(self, key: str, offset: int = 0) -> str:
        """Relative path of frame t-offset: the .jpg if present, else the .png, else the .jpg."""
        split, seq, name = key.split("/")
        stem = f"{split}/img/{seq}/{shift_frame(name, offset)}"
        for ext in IMAGE_EXTS:
            if (self.root / (stem + ext)).is_file():
                return stem + ext
        return stem + IMAGE_EXTS[0]

    def label_rel(self, key: str, offset: int = 0) -> str | None:
        split, seq, name = key.split("/")
        return f"{split}/cls/{seq}/{shift_frame(name, offset)}.png"

    def read_label(self, path: Path, hint: str = "") -> np.ndarray:
        """Raw VIPER class ids with the ego vehicle set to UNLABELED, H x W."""
        return remove_ego_vehicle(read_label_index(path, hint))

    def authors_flow(self, split: str, key: str, offset: int) -> tuple[tuple[str, ...], str]:
        """(candidate folders, file name) of the authors' flow of frame t-offset -> t-offset-1."""
        name = shift_frame(self.name(key), offset)
        prev = int(name.rsplit("_", 1)[1]) - 1
        dirs = AUTHORS_FLOW_DIRS.get(split, (f"estimated_optical_flow_viper_{split}",))
        return dirs, f"{name}{prev:05d}_int16_x10.npy"
