"""What a generated root holds: the benchmarks the generator writes, its sizes, the target
snippets and the Cityscapes labelIds the generator draws with.

A generated benchmark is an embedded one (`synthetic-video`, `synthetic-image`) or a paper
benchmark id (`synthia-seq2cityscapes-seq`, ...): the same world model written in that
benchmark's real layouts, for dry runs of the paper profile without a download.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from udass.errors import unknown_name

GENERATOR_VERSION = "4"   # bump whenever the output changes: cached roots then regenerate
MARKER = "udass_synthetic.json"
OWNER_STAMP = ".udass_synthetic"   # written first and kept: this folder is a generated root
DATASET_DIRS = ("cityscapes", "gta", "synthia", "synthia-seq", "viper", "udass_flow")
SYNTHIA_SEQ_DIR = "SYNTHIA-SEQS-04-DAWN"
SNIPPET_LENGTH = 30          # frames per Cityscapes-Seq snippet
ANNOTATED_INDEX = 19         # the annotated frame is the 20th of its snippet
FRAMES_WRITTEN = {"train": 3, "val": 6}   # sequence frames written per snippet, ending at t
VIPER_LABEL_EVERY = 10       # VIPER's public release labels every 10th frame

# Cityscapes labelIds (CITYSCAPES_LABELS): the internal class of a pixel.
UNLABELED, EGO, STATIC = 0, 1, 4
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE = 7, 8, 11, 12, 13, 17
LIGHT, SIGN, VEGETATION, TERRAIN, SKY = 19, 20, 21, 22, 23
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = 24, 25, 26, 27, 28, 31, 32, 33

# (width, height) of each dataset's frames as shipped (docs/datasets.md).
REAL_RESOLUTIONS: Mapping[str, tuple[int, int]] = MappingProxyType({
    "cityscapes": (2048, 1024), "synthia-seq": (1280, 760), "viper": (1920, 1080),
    "gta": (1914, 1052), "synthia": (1280, 760),
})


@dataclass(frozen=True)
class GeneratedBenchmark:
    """How the generator writes a benchmark.

    code: seeds its scenes (with the data seed, the domain and the item); source: the source
    dataset layout (`synthia-seq`, `viper`, `gta`, `synthia`); the target is Cityscapes-Seq for
    video benchmarks, Cityscapes for image ones. rich: the image benchmarks' vocabulary (wall,
    terrain, truck, bus, train, motorcycle, bicycle); without it, the 12 SYNTHIA-Seq classes.
    """

    code: int
    source: str
    video: bool
    rich: bool


BENCHMARK_SPECS: Mapping[str, GeneratedBenchmark] = MappingProxyType({
    "synthetic-video": GeneratedBenchmark(1, "synthia-seq", video=True, rich=False),
    "synthetic-image": GeneratedBenchmark(2, "gta", video=False, rich=True),
    "synthia-seq2cityscapes-seq": GeneratedBenchmark(3, "synthia-seq", video=True, rich=False),
    "viper2cityscapes-seq": GeneratedBenchmark(4, "viper", video=True, rich=True),
    "gtav2cityscapes": GeneratedBenchmark(5, "gta", video=False, rich=True),
    "synthia2cityscapes": GeneratedBenchmark(6, "synthia", video=False, rich=True),
})


@dataclass(frozen=True)
class SizeSpec:
    """How much a benchmark size holds.

    Target (Cityscapes) frames are width x height pixels. Source frames are too, unless
    `real_resolution`: then each source dataset keeps its real frame size (REAL_RESOLUTIONS)
    scaled by width / 2048.
    """

    width: int
    height: int
    source_frames: int                          # SYNTHIA-Seq frames 000000.. (VIPER: N-1 clips)
    source_images: int                          # GTAV images 00001.. / SYNTHIA images 0000000..
    train_cities: tuple[tuple[str, int], ...]   # (city, snippets)
    val_cities: tuple[tuple[str, int], ...]
    supersample: int = 1                        # colour rays per pixel side (anti-aliasing)
    real_resolution: bool = False


SIZES: Mapping[str, SizeSpec] = MappingProxyType({
    # tiny frames average 3 x 3 colour rays per pixel: point sampling aliases badly at 64 x 32
    "tiny": SizeSpec(64, 32, 8, 6, (("aachen", 2), ("bochum", 2)), (("frankfurt", 2),), 3),
    "demo": SizeSpec(256, 128, 360, 400,
                     (("aachen", 25), ("bochum", 25), ("bremen", 25), ("cologne", 25),
                      ("darmstadt", 25), ("dusseldorf", 25)),
                     (("frankfurt", 20), ("lindau", 15), ("munster", 15))),
    # the datasets' real resolutions, a few items of each split: dry runs of the paper profile
    "paper": SizeSpec(2048, 1024, 4, 4, (("aachen", 2), ("bochum", 1)), (("frankfurt", 2),),
                      real_resolution=True),
})
# Cities whose snippets share sequence 000000 with annotated frames 000294, 000594, ...
# (as frankfurt_000000_000294 in the real data): the snippet start is not frame 0.
LONG_SEQUENCE_CITIES = ("bochum", "frankfurt")


@dataclass(frozen=True)
class Snippet:
    """A Cityscapes(-Seq) snippet: 30 frames start..start+29, annotated frame start+19."""

    split: str
    city: str
    seq: int
    annotated: int
    index: int      # position within its split (seeds its scene)

    @property
    def start(self) -> int:
        return self.annotated - ANNOTATED_INDEX

    def stem(self, frame: int) -> str:
        return f"{self.city}_{self.seq:06d}_{frame:06d}"


def snippets(size: str) -> list[Snippet]:
    """All target snippets of a size, train then val, in a fixed order."""
    spec = size_spec(size)
    out: list[Snippet] = []
    for split, cities in (("train", spec.train_cities), ("val", spec.val_cities)):
        index = 0
        for city, n in cities:
            for i in range(n):
                long_seq = city in LONG_SEQUENCE_CITIES
                seq, ann = (0, 294 + 300 * i) if long_seq else (i, ANNOTATED_INDEX)
                out.append(Snippet(split, city, seq, ann, index))
                index += 1
    return out


def size_spec(size: str) -> SizeSpec:
    if size not in SIZES:
        raise unknown_name("synthetic size", size, SIZES)
    return SIZES[size]


def bench_spec(benchmark: str) -> GeneratedBenchmark:
    if benchmark not in BENCHMARK_SPECS:
        raise unknown_name("synthetic benchmark", benchmark, BENCHMARK_SPECS)
    return BENCHMARK_SPECS[benchmark]


def frame_size(dataset: str, size: str) -> tuple[int, int]:
    """(width, height) of the frames of `dataset` (a REAL_RESOLUTIONS key) at `size`."""
    spec = size_spec(size)
    if dataset == "cityscapes" or not spec.real_resolution:
        return spec.width, spec.height
    w, h = REAL_RESOLUTIONS[dataset]
    scale = spec.width / REAL_RESOLUTIONS["cityscapes"][0]
    return max(round(w * scale), 8), max(round(h * scale), 8)


def role_counts(benchmark: str, size: str) -> dict[str, int]:
    """Items of each role as `build_dataset` enumerates them, keyed like `udass check-data`'s
    roles: "source/train" (SYNTHIA-Seq frames 1..N-1, VIPER labelled frames, images),
    "target/train" and "target/val" (annotated frames)."""
    spec, bench = size_spec(size), bench_spec(benchmark)
    source = spec.source_frames - 1 if bench.video else spec.source_images
    return {"source/train": source,
            "target/train": sum(n for _, n in spec.train_cities),
            "target/val": sum(n for _, n in spec.val_cities)}
