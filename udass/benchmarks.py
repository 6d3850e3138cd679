"""The benchmark registry (docs/datasets.md, "Benchmarks and protocols"): the four paper
benchmarks and the two embedded ones, their class protocols (class lists, raw-id -> train-id
maps, palettes), evaluation subsets, long-tail classes and the real datasets' split sizes.

Everything the configuration, a loader, the trainer or an evaluator needs to know about a
benchmark's classes lives here, once, below the configuration (udass.config builds presets from
it). Train ids index `Protocol.classes`; `IGNORE_INDEX` (255) is the label no loss and no
metric counts. Reading the raw label files (their encodings, ids outside them) is
`udass.data.protocols`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from udass.errors import unknown_name

IGNORE_INDEX = 255  # the label of pixels that no loss and no metric counts

CITYSCAPES_19 = ("road", "sidewalk", "building", "wall", "fence", "pole", "light", "sign",
                 "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                 "motorcycle", "bicycle")
SYNTHIA_SEQ_12 = ("road", "sidewalk", "building", "fence", "pole", "light", "sign", "vegetation",
                  "sky", "person", "rider", "car")
VIPER_15 = ("road", "sidewalk", "building", "fence", "light", "sign", "vegetation", "terrain", "sky",
            "person", "car", "truck", "bus", "motorcycle", "bicycle")

# Colour of each train class, by name (the Cityscapes colours).
CLASS_COLORS: Mapping[str, tuple[int, int, int]] = MappingProxyType({
    "road": (128, 64, 128), "sidewalk": (244, 35, 232), "building": (70, 70, 70),
    "wall": (102, 102, 156), "fence": (190, 153, 153), "pole": (153, 153, 153),
    "light": (250, 170, 30), "sign": (220, 220, 0), "vegetation": (107, 142, 35),
    "terrain": (152, 251, 152), "sky": (70, 130, 180), "person": (220, 20, 60),
    "rider": (255, 0, 0), "car": (0, 0, 142), "truck": (0, 0, 70), "bus": (0, 60, 100),
    "train": (0, 80, 100), "motorcycle": (0, 0, 230), "bicycle": (119, 11, 32),
})

_CS19 = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
         26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


@dataclass(frozen=True)
class Protocol:
    """A class protocol: train classes and how each raw encoding maps onto them."""

    name: str
    classes: tuple[str, ...]
    id_maps: Mapping[str, Mapping[int, int]]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def index(self, name: str) -> int:
        return self.classes.index(name)

    def palette(self) -> np.ndarray:
        """uint8 [256, 3]: colour of each train id (ignore and unused ids black)."""
        pal = np.zeros((256, 3), np.uint8)
        for i, c in enumerate(self.classes):
            pal[i] = CLASS_COLORS[c]
        return pal


PROTOCOLS: Mapping[str, Protocol] = MappingProxyType({
    "cityscapes19": Protocol("cityscapes19", CITYSCAPES_19, MappingProxyType({
        "cityscapes": _CS19,
        "gta": _CS19,
        "synthia": {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10, 10: 11,
                    17: 12, 8: 13, 18: 14, 19: 15, 20: 16, 12: 17, 11: 18},
    })),
    "synthia-seq12": Protocol("synthia-seq12", SYNTHIA_SEQ_12, MappingProxyType({
        "cityscapes": {7: 0, 8: 1, 11: 2, 13: 3, 17: 4, 19: 5, 20: 6, 21: 7, 23: 8, 24: 9, 25: 10,
                       26: 11},
        "synthia-seq": {3: 0, 4: 1, 2: 2, 5: 3, 7: 4, 15: 5, 9: 6, 6: 7, 1: 8, 10: 9, 11: 10, 8: 11},
    })),
    "viper15": Protocol("viper15", VIPER_15, MappingProxyType({
        "cityscapes": {7: 0, 8: 1, 11: 2, 13: 3, 19: 4, 20: 5, 21: 6, 22: 7, 23: 8, 24: 9, 25: 9,
                       26: 10, 27: 11, 28: 12, 32: 13, 33: 14},
        "viper": {3: 0, 4: 1, 9: 2, 11: 3, 13: 4, 14: 5, 7: 6, 8: 6, 6: 7, 2: 8, 20: 9, 24: 10,
                  27: 11, 26: 12, 23: 13, 22: 14},
    })),
})


# Split sizes of the real datasets, in clips (DA-VSN / TPS split lists: CityscapesSeq_list
# train.txt 2975 / val.txt 500, SynthiaSeq_list/train.txt 849 = frames 000001..000849,
# Viper_list/train.txt 13367 = every 10th frame from 10 of the 77 train sequences; GTAV and
# SYNTHIA-RAND-CITYSCAPES: every frame of the release). docs/datasets.md cites the sources.
SPLIT_SIZES: Mapping[tuple[str, str], int] = MappingProxyType({
    ("cityscapes", "train"): 2975, ("cityscapes", "val"): 500,
    ("cityscapes-seq", "train"): 2975, ("cityscapes-seq", "val"): 500,
    ("gta", "train"): 24966,
    ("synthia", "train"): 9400,
    ("synthia-seq", "train"): 849,
    ("viper", "train"): 13367,
})
ROLES = ("source/train", "target/train", "target/val")


def _split_sizes(source: str, target: str) -> Mapping[str, int]:
    """Expected clips per role of a benchmark on the real datasets."""
    return MappingProxyType({"source/train": SPLIT_SIZES[(source, "train")],
                             "target/train": SPLIT_SIZES[(target, "train")],
                             "target/val": SPLIT_SIZES[(target, "val")]})


@dataclass(frozen=True)
class Benchmark:
    """A source -> target benchmark: datasets, protocol, evaluation subsets, long-tail classes.

    `source` / `target` name dataset layouts (`synthia-seq`, `viper`, `gta`, `synthia`,
    `cityscapes-seq`, `cityscapes`); `eval_classes` are the train ids of the main mIoU;
    `subsets` extra named means written to metrics.json (e.g. `miou_13`); `long_tail` the class
    ids the templates always take when present (None: the rarest source classes, computed);
    `split_sizes` the clips of each role ("source/train", "target/train", "target/val") on the
    real datasets (empty for the synthetic benchmarks: a generated root records its own counts
    in its marker, see `udass.data.splits.expected_split_sizes`).
    """

    name: str
    kind: str  # "video" | "image"
    source: str
    target: str
    protocol: Protocol
    eval_classes: tuple[int, ...]
    subsets: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    long_tail: tuple[int, ...] | None = None
    synthetic: bool = False
    split_sizes: Mapping[str, int] = field(default_factory=dict)

    @property
    def is_video(self) -> bool:
        return self.kind == "video"

    @property
    def num_classes(self) -> int:
        return self.protocol.num_classes

    @property
    def eval_align_corners(self) -> bool:
        """How the field's reference evaluation of this benchmark upsamples logits to the label
        size: the video benchmarks as TPS / DA-VSN (`nn.Upsample(..., align_corners=True)`), the
        image benchmarks as mmseg (DAFormer / HRDA / MIC: `resize(..., align_corners=False)`)."""
        return self.is_video

    def eval_class_names(self) -> tuple[str, ...]:
        return tuple(self.protocol.classes[i] for i in self.eval_classes)


def _all_but(protocol: Protocol, *names: str) -> tuple[int, ...]:
    return tuple(i for i, c in enumerate(protocol.classes) if c not in names)


_SEQ = PROTOCOLS["synthia-seq12"]
_VIP = PROTOCOLS["viper15"]
_C19 = PROTOCOLS["cityscapes19"]
_SYN16 = _all_but(_C19, "terrain", "truck", "train")
_SYN13 = _all_but(_C19, "terrain", "truck", "train", "wall", "fence", "pole")

BENCHMARKS: Mapping[str, Benchmark] = MappingProxyType({
    "synthia-seq2cityscapes-seq": Benchmark(
        "synthia-seq2cityscapes-seq", "video", "synthia-seq", "cityscapes-seq", _SEQ,
        _all_but(_SEQ, "fence"),
        long_tail=tuple(_SEQ.index(c) for c in ("fence", "pole", "light", "sign", "rider")),
        split_sizes=_split_sizes("synthia-seq", "cityscapes-seq")),
    "viper2cityscapes-seq": Benchmark(
        "viper2cityscapes-seq", "video", "viper", "cityscapes-seq", _VIP, tuple(range(15)),
        long_tail=tuple(_VIP.index(c) for c in ("fence", "light", "sign", "terrain", "motorcycle",
                                                "bicycle")),
        split_sizes=_split_sizes("viper", "cityscapes-seq")),
    "gtav2cityscapes": Benchmark(
        "gtav2cityscapes", "image", "gta", "cityscapes", _C19, tuple(range(19)),
        long_tail=(3, 4, 5, 6, 12, 15, 16, 17, 18), split_sizes=_split_sizes("gta", "cityscapes")),
    "synthia2cityscapes": Benchmark(
        "synthia2cityscapes", "image", "synthia", "cityscapes", _C19, _SYN16,
        subsets=MappingProxyType({"miou_16": _SYN16, "miou_13": _SYN13}),
        long_tail=(3, 4, 5, 6, 7, 12, 13, 18), split_sizes=_split_sizes("synthia", "cityscapes")),
    # Embedded benchmarks: the same layouts and protocols as their real counterparts.
    "synthetic-video": Benchmark(
        "synthetic-video", "video", "synthia-seq", "cityscapes-seq", _SEQ, _all_but(_SEQ, "fence"),
        synthetic=True),
    "synthetic-image": Benchmark(
        "synthetic-image", "image", "gta", "cityscapes", _C19, tuple(range(19)), synthetic=True),
})


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise unknown_name("benchmark", name, BENCHMARKS)
    return BENCHMARKS[name]
