"""The benchmark dataset builder: clips (`udass.data.Clip`) from a data root in the shipped layouts.

    build_dataset(benchmark, split, data_root, domain, profile="demo", with_labels=False,
                  data_cfg=None, flow_root=None) -> ClipDataset
    check_data(benchmark, data_root, flow_root=None, flow_source=None, full=False) -> exit status

A data root is ONE folder holding dataset folders (`cityscapes/`, `gta/`, `synthia/`,
`synthia-seq/`, `viper/`). Each dataset module (`cityscapes.py`, `gta.py`, ...) knows its layout
(a "layout": split keys, relative paths of frame t-k and its label, label decoding); this module
turns a layout + a clip spec into clips:

- K frames, newest first: video source train 2 (both labelled), video target train 3 (labels
  only with `with_labels`: frame t labelled, the others all 255), evaluation (split "val") 2 with
  frame t labelled and t-1 all 255, images 1.
- frames float32 [K, 3, H, W] in [0, 1] at the profile size (SYNTHIA-Seq: the bottom
  `source_crop_bottom` rows are dropped first); flows [K-1, 2, H, W] read from the flow source,
  cropped and resized the same way (vectors scaled); training labels resized (nearest) to the
  frame size; evaluation labels at their native resolution.

Split lists are generated from the files (DA-VSN / TPS protocol) every time; nothing is written
into the data root. A split is listed from every file that names one of its clips (an image or a
label), so a missing file leaves its clip in the split, reported by path; each dataset carries
the size the split should have (`expected_clips`, udass.data.splits), which check-data, training
and evaluation compare against.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol as TypingProtocol

import numpy as np
import torch
from torch.utils.data import Dataset

from udass.config import METHODS, DataConfig, build_config
from udass.data.cityscapes import CityscapesLayout, CityscapesSeqLayout
from udass.data.clip import Clip
from udass.data.flow import flow_cache_path, read_flow, resize_flow_np
from udass.data.gta import GTALayout
from udass.data.imageio import image_size, read_rgb
from udass.data.protocols import IGNORE, RAW_ID_MAX, Benchmark, get_benchmark, map_label, outside_encoding
from udass.data.splits import expected_split_sizes, role_of, size_source
from udass.data.synthia import SynthiaLayout
from udass.data.synthia_seq import SynthiaSeqLayout
from udass.data.transforms import resize_clip, resize_labels
from udass.data.viper import ViperLayout
from udass.errors import UdassError, unknown_name
from udass.progress import Progress

SPLITS = ("train", "val")
DOMAINS = ("source", "target")
FLOW_SOURCES = ("dis", "exact", "authors")
DEFAULT_FLOW_DIR = "udass_flow"


class Layout(TypingProtocol):
    """What a dataset module provides (see cityscapes.py, gta.py, synthia.py, synthia_seq.py, viper.py)."""

    dataset: str                # layout name used by benchmarks (`cityscapes-seq`, `viper`, ...)
    folder: str                 # dataset folder under the data root
    encoding: str               # raw label encoding (protocols.RAW_ID_MAX key)
    is_video: bool
    prev_labels_optional: bool  # previous frames may lack a label file (VIPER)
    authors_crop_bottom: int    # rows the authors dropped before computing their flows
    download: str               # where the files come from (for error messages)
    root: Path

    def split_keys(self, split: str) -> list[str]: ...
    def name(self, key: str) -> str: ...
    def frame_rel(self, key: str, offset: int = 0) -> str: ...
    def label_rel(self, key: str, offset: int = 0) -> str | None: ...
    def read_label(self, path: Path, hint: str = "") -> np.ndarray: ...


LAYOUTS: dict[str, type] = {
    "cityscapes": CityscapesLayout, "cityscapes-seq": CityscapesSeqLayout, "gta": GTALayout,
    "synthia": SynthiaLayout, "synthia-seq": SynthiaSeqLayout, "viper": ViperLayout,
}


# ----------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class ClipSpec:
    """What one clip of a (benchmark, split, domain) holds.

    labelled: per frame (newest first), whether its label is read (others are all 255).
    with_labels: False -> Clip.labels is None. native_labels: evaluation labels keep their size.
    size: (H, W) of the frames; crop_bottom: rows dropped at the stored resolution first.
    """

    num_frames: int
    labelled: tuple[bool, ...]
    with_labels: bool
    native_labels: bool
    size: tuple[int, int]
    crop_bottom: int


def clip_spec(bench: Benchmark, split: str, domain: str, with_labels: bool, cfg: DataConfig) -> ClipSpec:
    """The clip contract (DESIGN.md Contracts, Clip) for one benchmark, split and domain."""
    evaluation = split == "val"
    if not bench.is_video:
        k = 1
    elif evaluation or domain == "source":
        k = 2
    else:
        k = 3
    labels = domain == "source" or evaluation or with_labels
    all_frames = domain == "source" and not evaluation
    labelled = tuple(labels and (i == 0 or all_frames) for i in range(k))
    size = cfg.source_size if domain == "source" else cfg.target_size
    crop = cfg.source_crop_bottom if domain == "source" else 0
    return ClipSpec(k, labelled, labels, evaluation, tuple(size), int(crop))


@dataclass
class ClipPaths:
    """Raw files of one clip: frames (newest first), labels (None: not read), flows (frame i -> i+1)."""

    frames: list[Path]
    labels: list[Path | None]
    flows: list[Path]


# ----------------------------------------------------------------------------------- roots
def _dataset_folders(bench: Benchmark) -> str:
    folders = dict.fromkeys(LAYOUTS[d].folder for d in (bench.source, bench.target))
    return ", ".join(f"{f}/" for f in folders)


def resolve_data_root(benchmark: str, data_root: str | Path | None, cfg: DataConfig) -> Path:
    """The data root of a benchmark: the given folder, or the synthetic cache (made on demand)."""
    bench = get_benchmark(benchmark)
    root = data_root if data_root is not None else cfg.data_root
    if root is None:
        if bench.synthetic:
            from udass.data.synthetic import ensure_synthetic_root

            return Path(ensure_synthetic_root(benchmark, size=cfg.synth_size, seed=cfg.synth_seed))
        raise UdassError(f"benchmark {benchmark} reads real datasets: pass --data-root DIR, a folder holding "
                         f"{_dataset_folders(bench)} (docs/datasets.md; check it with `udass check-data "
                         f"--benchmark {benchmark} --data-root DIR`)")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UdassError(f"data root {root} does not exist; expected a folder holding "
                         f"{_dataset_folders(bench)} (docs/datasets.md)")
    return root


def generated_root(root: Path) -> bool:
    """Whether `udass synth` wrote `root` (its marker or its owner stamp is there): only such a
    root may be regenerated in place; a hint never suggests writing into another folder."""
    from udass.data.synthetic.spec import MARKER, OWNER_STAMP

    return (Path(root) / MARKER).is_file() or (Path(root) / OWNER_STAMP).is_file()


def _not_generated(benchmark: str, root: Path) -> str:
    return (f"{root} was not written by `udass synth`, and the embedded benchmark {benchmark} reads "
            f"only generated roots: leave out --data-root (the synthetic cache) or make one in a new "
            f"folder with `udass synth --benchmark {benchmark} --out NEW_FOLDER`")


def data_hint(benchmark: str, root: Path, dataset: str) -> str:
    """What to do about a missing file of `dataset` (a layout name) under data root `root`."""
    if get_benchmark(benchmark).synthetic:
        if not generated_root(root):
            return _not_generated(benchmark, root)
        return f"regenerate it with `udass synth --benchmark {benchmark} --out {root}`"
    return (f"{LAYOUTS[dataset].download} (layout: docs/datasets.md); check with `udass check-data "
            f"--benchmark {benchmark} --data-root {root}`")


def flow_hint(benchmark: str, root: Path, flow_root: Path, flow_source: str) -> str:
    """The command that makes missing flows of a given source."""
    if flow_source == "exact":
        if not generated_root(root):
            return _not_generated(benchmark, root)
        return f"regenerate them with `udass synth --benchmark {benchmark} --out {root}`"
    if flow_source == "authors":
        return (f"put the authors' flow folders in {flow_root} (docs/datasets.md), or compute DIS flows with "
                f"`udass flow --benchmark {benchmark} --data-root {root}` and --set data.flow_source=dis")
    extra = "" if flow_root == root / DEFAULT_FLOW_DIR else f" --flow-root {flow_root}"
    return f"compute them with `udass flow --benchmark {benchmark} --data-root {root}{extra}`"


def fits_frame(flow_shape: tuple[int, ...], frame_hw: tuple[int, int]) -> bool:
    """Whether a flow array of `flow_shape` (H' x W' x 2) is its frame (H, W) or a scaled copy of it
    (same aspect within 2 %, not larger)."""
    if len(flow_shape) != 3 or flow_shape[2] != 2 or min(flow_shape[:2]) < 1:
        return False
    (fh, fw), (h, w) = flow_shape[:2], frame_hw
    return fw <= w and abs(fw / fh - w / h) <= 0.02 * (w / h)


def make_layout(benchmark: str, dataset: str, root: Path) -> Layout:
    """The layout of dataset `dataset` under data root `root`; its folder must exist."""
    folder = root / LAYOUTS[dataset].folder
    if not folder.is_dir():
        hint = data_hint(benchmark, root, dataset)
        raise UdassError(f"missing dataset folder {folder} ({dataset}); {hint}")
    return LAYOUTS[dataset](folder)


# ----------------------------------------------------------------------------------- dataset
class ClipDataset(Dataset):
    """Clips of one benchmark split and domain; item i is a `Clip` for frame t = `items[i]`.

    items: layout keys of frame t; names: Clip names; `raw_paths(i)` the files behind item i;
    expected_clips: the size the split should have (None: unknown; set by `build_dataset`).
    """

    expected_clips: int | None = None

    def __init__(self, benchmark: str, split: str, domain: str, layout: Layout, spec: ClipSpec,
                 flow_source: str, flow_root: Path, data_root: Path) -> None:
        self.benchmark, self.split, self.domain = benchmark, split, domain
        self.layout, self.spec = layout, spec
        self.flow_source, self.flow_root, self.data_root = flow_source, flow_root, data_root
        self.protocol = get_benchmark(benchmark).protocol.name
        self.items: list[str] = layout.split_keys(split)
        self.names: list[str] = [layout.name(k) for k in self.items]
        self._data_hint = data_hint(benchmark, data_root, layout.dataset)
        self._flow_hint = flow_hint(benchmark, data_root, flow_root, flow_source)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return (f"ClipDataset({self.benchmark}, {self.split}, {self.domain}, {self.layout.dataset}, "
                f"{len(self)} clips of {self.spec.num_frames} frames at {self.spec.size})")

    # ---- paths
    def raw_paths(self, i: int) -> ClipPaths:
        """The frame, label and flow files of item i (labels None where the spec reads none)."""
        key, lay, spec = self.items[i], self.layout, self.spec
        frames = [lay.root / lay.frame_rel(key, k) for k in range(spec.num_frames)]
        labels = []
        for k, wanted in enumerate(spec.labelled):
            rel = lay.label_rel(key, k) if wanted else None
            labels.append(None if rel is None else lay.root / rel)
        flows = [self.flow_path(key, k) for k in range(spec.num_frames - 1)]
        return ClipPaths(frames, labels, flows)

    def needed_files(self, i: int) -> list[tuple[str, Path, bool]]:
        """(kind, path, optional) of every file item i reads; kind in KINDS ("frames t", "prev
        frames", "labels", "flows"); optional: a previous-frame label the layout may lack."""
        p = self.raw_paths(i)
        out = [("frames t", p.frames[0], False)] + [("prev frames", f, False) for f in p.frames[1:]]
        out += [("labels", lab, k > 0 and self.layout.prev_labels_optional)
                for k, lab in enumerate(p.labels) if lab is not None]
        return out + [("flows", f, False) for f in p.flows]

    def subset(self, indices: list[int]) -> "ClipDataset":
        """A copy holding items `indices` only (same spec, same expected size)."""
        out = copy.copy(self)
        out.items = [self.items[i] for i in indices]
        out.names = [self.names[i] for i in indices]
        return out

    def flow_path(self, key: str, offset: int) -> Path:
        """File of the backward flow of frame t-offset -> t-offset-1 in this dataset's flow source."""
        lay = self.layout
        if self.flow_source != "authors":
            return flow_cache_path(self.flow_root, lay.folder, lay.frame_rel(key, offset))
        if not hasattr(lay, "authors_flow"):
            raise UdassError(f"the authors released no flows for {lay.dataset}; "
                             f"use --set data.flow_source=dis")
        dirs, name = lay.authors_flow(self.split, key, offset)
        found = [self.flow_root / d for d in dirs if (self.flow_root / d).is_dir()]
        return (found[0] if found else self.flow_root / dirs[0]) / name

    # ---- loading
    def __getitem__(self, i: int) -> Clip:
        paths = self.raw_paths(i)
        rgb = [read_rgb(p, self._data_hint) for p in paths.frames]
        stored = rgb[0].shape[:2]
        for p, img in zip(paths.frames[1:], rgb[1:]):
            if img.shape[:2] != stored:
                raise UdassError(f"frame {p} is {img.shape[1]} x {img.shape[0]} but frame t "
                                 f"{paths.frames[0]} is {stored[1]} x {stored[0]}; the files do not belong "
                                 f"together")
        frames = self._frames(rgb)
        flows = self._flows(paths.flows, stored)
        labels = self._labels(paths.labels, stored) if self.spec.with_labels else None
        return Clip(frames, flows, labels, self.domain, self.names[i])

    def _frames(self, rgb: list[np.ndarray]) -> torch.Tensor:
        """[K, 3, H, W] float32 in [0, 1]: bottom crop, then resize to the spec size."""
        crop = self.spec.crop_bottom
        if crop >= rgb[0].shape[0]:
            raise UdassError(f"data.source_crop_bottom={crop} leaves nothing of a {rgb[0].shape[0]}-row frame; "
                             f"use a smaller value")
        if crop:
            rgb = [img[: img.shape[0] - crop] for img in rgb]
        t = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float().div_(255.0)
        empty = t.new_zeros(0, 2, *t.shape[-2:])
        return resize_clip(t, empty, None, self.spec.size)[0].contiguous()

    def _flows(self, paths: list[Path], stored: tuple[int, int]) -> torch.Tensor:
        """[K-1, 2, H, W] float32 pixels at the spec size."""
        h, w = self.spec.size
        if not paths:
            return torch.zeros(0, 2, h, w)
        flows = [resize_flow_np(self.read_flow(p, stored), (h, w)) for p in paths]
        return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).contiguous()

    def read_flow(self, path: Path, stored: tuple[int, int]) -> np.ndarray:
        """H' x W' x 2 float32 flow on the cropped frame grid, at the file's own scale.

        stored: (H, W) of the frame as stored. Cache flows are at that resolution (or a scaled
        copy); the authors' flows were computed after dropping `authors_crop_bottom` rows.
        """
        if not path.is_file():
            raise UdassError(f"missing flow file {path}; {self._flow_hint}")
        flow = read_flow(path)
        h, w = stored
        crop = self.spec.crop_bottom
        if self.flow_source == "authors":
            own = self.layout.authors_crop_bottom
            if crop != own:
                raise UdassError(f"the authors' {self.layout.dataset} flows cover the frame without its "
                                 f"bottom {own} rows; use --set data.source_crop_bottom={own} or "
                                 f"data.flow_source=dis")
            h, crop = h - crop, 0
        fh, fw = flow.shape[:2]
        if not fits_frame(flow.shape, (h, w)):
            raise UdassError(f"flow file {path} is {fw} x {fh}, expected {w} x {h} (its frame) or a scaled "
                             f"copy; delete it and {self._flow_hint}")
        if crop:
            flow = flow[: fh - round(crop * fh / h)]
        return flow

    def _labels(self, paths: list[Path | None], stored: tuple[int, int]) -> torch.Tensor:
        """[K, H_l, W_l] int64 train ids (255 ignore): native size for evaluation, else frame size."""
        maps: list[np.ndarray | None] = []
        for k, path in enumerate(paths):
            if path is None or (k > 0 and self.layout.prev_labels_optional and not path.is_file()):
                maps.append(None)
                continue
            raw = self.layout.read_label(path, self._data_hint)
            label = map_label(raw, self.protocol, self.layout.encoding, str(path))
            maps.append(self._crop_label(label, stored))
        ref = maps[0].shape
        if self.spec.native_labels:
            out = [m if m is not None and m.shape == ref else np.full(ref, IGNORE, np.uint8) for m in maps]
            return torch.from_numpy(np.stack(out)).long()
        size = self.spec.size
        out = [torch.full(size, IGNORE, dtype=torch.uint8) if m is None
               else resize_labels(torch.from_numpy(m)[None], size)[0] for m in maps]
        return torch.stack(out).long()

    def _crop_label(self, label: np.ndarray, stored: tuple[int, int]) -> np.ndarray:
        crop = self.spec.crop_bottom
        if not crop:
            return label
        rows = round(crop * label.shape[0] / stored[0])
        return label[: label.shape[0] - rows]


def build_dataset(benchmark: str, split: str, data_root: str | Path | None, domain: str,
                  profile: str = "demo", with_labels: bool = False, data_cfg: DataConfig | None = None,
                  flow_root: str | Path | None = None) -> ClipDataset:
    """Clips of `benchmark`'s `domain` dataset, `split` in {"train", "val"} (see module docstring).

    data_root: folder holding the dataset folders; None = the synthetic cache (synthetic
    benchmarks, made on demand) or `data_cfg.data_root`. data_cfg: sizes, crop and flow source
    (default: `build_config(benchmark, profile=profile).data`). flow_root: default
    `data_cfg.flow_root`, else `<data root>/udass_flow` (dis / exact) or the data root itself
    (authors: the authors' flow folders sit beside the dataset folders).
    """
    bench = get_benchmark(benchmark)
    if split not in SPLITS:
        raise unknown_name("split", split, SPLITS)
    if domain not in DOMAINS:
        raise unknown_name("domain", domain, DOMAINS)
    cfg = data_cfg or build_config(benchmark, profile=profile).data
    if cfg.flow_source not in FLOW_SOURCES:
        raise unknown_name("flow source", cfg.flow_source, FLOW_SOURCES)
    explicit_flow_root = flow_root if flow_root is not None else cfg.flow_root
    if cfg.flow_source == "exact" and not bench.synthetic:
        raise UdassError(f"flow_source=exact exists only for the synthetic benchmarks; use "
                         f"--set data.flow_source=dis (after `udass flow`) or authors for {benchmark}")
    if cfg.flow_source == "dis" and bench.synthetic and explicit_flow_root is None:
        raise UdassError(f"{benchmark} keeps its exact flows in <data root>/{DEFAULT_FLOW_DIR}; to train "
                         f"on DIS flows compute them elsewhere (`udass flow --benchmark {benchmark} "
                         f"--data-root DIR --flow-root OTHER`) and pass --flow-root OTHER")
    root = resolve_data_root(benchmark, data_root, cfg)
    layout = make_layout(benchmark, bench.source if domain == "source" else bench.target, root)
    spec = clip_spec(bench, split, domain, with_labels, cfg)
    flows = resolve_flow_root(root, flow_root if flow_root is not None else cfg.flow_root, cfg.flow_source)
    ds = ClipDataset(benchmark, split, domain, layout, spec, cfg.flow_source, flows, root)
    ds.expected_clips = expected_split_sizes(bench, root).get(role_of(domain, split))
    return ds


def resolve_flow_root(data_root: Path, flow_root: str | Path | None, flow_source: str) -> Path:
    """The given flow root, else `<data root>/udass_flow` (dis, exact) or `<data root>` (authors)."""
    if flow_root is not None:
        return Path(flow_root).expanduser()
    return data_root if flow_source == "authors" else data_root / DEFAULT_FLOW_DIR


# ----------------------------------------------------------------------------------- check-data
ROLES = (("source", "train"), ("target", "train"), ("target", "val"))
KINDS = ("frames t", "prev frames", "labels", "flows")
LABEL_SAMPLES = 8
SHOW_MISSING = 3
SHOW_FULL = 100
ADAPTATION = tuple(m for m in METHODS if m != "oracle")   # the methods that read the source split


@dataclass
class RoleReport:
    """What check-data found for one role (domain/split): clips found and expected, found /
    needed files per kind with the first missing paths, problems (unreadable or wrong files) per
    kind, and notes that do not block (label ids mapped to ignore, label / frame size mismatches).

    labels_oracle_only: the role's labels are read by the `oracle` method only (target/train).
    """

    role: str
    dataset: str
    items: int = 0
    expected: int | None = None
    labels_oracle_only: bool = False
    found: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    needed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    missing: dict[str, list[Path]] = field(default_factory=lambda: {k: [] for k in KINDS})
    optional_missing: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)   # (kind or "split", message)
    notes: list[str] = field(default_factory=list)

    def count(self, kind: str, path: Path, optional: bool = False) -> bool:
        ok = path.is_file()
        if optional and not ok:
            self.optional_missing += 1
            return False
        self.needed[kind] += 1
        self.found[kind] += ok
        if not ok and len(self.missing[kind]) < SHOW_MISSING:
            self.missing[kind].append(path)
        return ok

    @property
    def size_ok(self) -> bool:
        return self.expected is None or self.items == self.expected

    def incomplete(self, kinds: tuple[str, ...] = KINDS) -> bool:
        """Whether a file of these kinds is missing or has a problem."""
        return (any(self.found[k] < self.needed[k] for k in kinds)
                or any(kind in kinds or kind == "split" for kind, _ in self.problems))

    @property
    def complete(self) -> bool:
        return self.size_ok and not self.incomplete()

    def blocked(self) -> set[str]:
        """The methods this role stops: the source split stops every method but `oracle`, the
        target train frames and flows stop every method, its labels `oracle` only; val is
        evaluation (every method), reported apart."""
        if self.role == "target/val":
            return set() if self.complete else set(METHODS)
        if self.role == "source/train":
            return set() if self.complete else set(ADAPTATION)
        frames = ("frames t", "prev frames", "flows")
        if not self.size_ok or self.incomplete(frames):
            return set(METHODS)
        return {"oracle"} if self.incomplete(("labels",)) else set()


def _check_role(ds: ClipDataset, report: RoleReport, progress: bool = True) -> None:
    """Count every needed frame, label and flow of `ds`; check flow shapes and a label sample."""
    report.items = len(ds)
    report.expected = ds.expected_clips
    sample = set(np.linspace(0, len(ds) - 1, min(LABEL_SAMPLES, len(ds))).astype(int).tolist())
    with Progress(len(ds), f"check {report.role}", unit="clip", enabled=progress) as bar:
        for i in range(len(ds)):
            _check_clip(ds, i, i in sample, report)
            bar.update(1)


def _check_clip(ds: ClipDataset, i: int, sampled: bool, report: RoleReport) -> None:
    """Count clip i's frames, labels and flows; read its label when `sampled`."""
    p = ds.raw_paths(i)
    report.count("frames t", p.frames[0])
    for f in p.frames[1:]:
        report.count("prev frames", f)
    for k, lab in enumerate(p.labels):
        optional = k > 0 and ds.layout.prev_labels_optional
        if lab is not None and report.count("labels", lab, optional) and k == 0 and sampled:
            _check_label(ds, lab, report)
    for k, fl in enumerate(p.flows):
        if report.count("flows", fl) and p.frames[k].is_file():
            _check_flow(ds, fl, p.frames[k], report)


def _check_label(ds: ClipDataset, path: Path, report: RoleReport) -> None:
    try:
        ids, pixels = outside_encoding(ds.layout.read_label(path), ds.layout.encoding)
    except UdassError as e:
        report.problems.append(("labels", str(e)))
        return
    if pixels:
        report.notes.append(f"{path}: label ids {list(ids)} outside the {ds.layout.encoding} encoding "
                            f"on {pixels} pixels (mapped to ignore); --full reads every label")


def _check_flow(ds: ClipDataset, path: Path, frame: Path, report: RoleReport) -> None:
    """The flow file's shape against its frame (header reads only)."""
    try:
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        h, w = image_size(frame)
        if ds.flow_source == "authors":
            h -= ds.layout.authors_crop_bottom
        if not fits_frame(shape, (h, w)):
            raise UdassError(f"flow file {path} has shape {tuple(shape)}, expected {h} x {w} x 2 (its frame) "
                             f"or a scaled copy; delete it and {ds._flow_hint}")
    except (ValueError, OSError, EOFError) as e:
        report.problems.append(("flows", f"unreadable flow file {path} ({e}); delete it and {ds._flow_hint}"))
    except UdassError as e:
        report.problems.append(("flows", str(e)))


# ---- --full: every label file once
@dataclass
class LabelScan:
    """What reading every label file found, per file (check-data --full)."""

    files: int = 0
    seconds: float = 0.0
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def _scan_labels(datasets: list[tuple[ClipDataset, RoleReport]], progress: bool = True) -> LabelScan:
    """Read every existing label file of every role once: ids outside the encoding and label /
    frame size mismatches become notes, an unreadable file a problem of each role that needs it."""
    import time

    todo: dict[Path, tuple[Path, ClipDataset, list[RoleReport]]] = {}
    for ds, report in datasets:
        for i in range(len(ds)):
            p = ds.raw_paths(i)
            for frame, lab in zip(p.frames, p.labels):
                if lab is not None and lab.is_file():
                    todo.setdefault(lab, (frame, ds, []))[2].append(report)
    scan = LabelScan(files=len(todo))
    start = time.perf_counter()
    bar = Progress(len(todo), "read every label", unit="file", enabled=progress)
    for lab, (frame, ds, reports) in todo.items():
        bar.update(1)
        try:
            raw = ds.layout.read_label(lab)
            ids, pixels = outside_encoding(raw, ds.layout.encoding)
            if pixels:
                scan.unexpected.append(f"{lab}: ids {list(ids)} outside the {ds.layout.encoding} encoding "
                                       f"(0..{RAW_ID_MAX[ds.layout.encoding]}) on {pixels} pixels")
            if frame.is_file():
                h, w = image_size(frame)
                if raw.shape[:2] != (h, w):
                    scan.mismatched.append(f"{lab}: {raw.shape[1]} x {raw.shape[0]}, its frame {frame.name} "
                                           f"{w} x {h}")
        except UdassError as e:
            scan.unreadable.append(str(e))
            for report in {id(r): r for r in reports}.values():
                report.problems.append(("labels", str(e)))
    bar.close()
    scan.seconds = time.perf_counter() - start
    return scan


def _print_scan(scan: LabelScan) -> None:
    print(f"full label scan: {scan.files} label files read in {scan.seconds:.1f} s")
    for title, rows, effect in (
            ("ids outside the encoding", scan.unexpected, "mapped to ignore (255) when read"),
            ("label size differs from its frame", scan.mismatched,
             "training labels are resized to the frame; evaluation keeps the label's size"),
            ("unreadable", scan.unreadable, "re-extract these files")):
        print(f"  {title}: {len(rows)} files" + (f" ({effect})" if rows else ""))
        for row in rows[:SHOW_FULL]:
            print(f"    {row}")
        if len(rows) > SHOW_FULL:
            print(f"    ... {len(rows) - SHOW_FULL} more")


# ---- the report
def _status(r: RoleReport) -> str:
    if r.complete:
        return "ok"
    if r.role == "target/train" and r.blocked() == {"oracle"}:
        return "ok but oracle"
    return "INCOMPLETE"


def _print_report(benchmark: str, root: Path, flow_root: Path, flow_source: str,
                  reports: list[RoleReport], hints: dict[str, dict[str, str]], sizes_from: str) -> None:
    flows = (f"flow source {flow_source}, flow root {flow_root}" if get_benchmark(benchmark).is_video
             else "image benchmark: no flow needed")
    print(f"udass check-data: {benchmark} at {root} ({flows})")
    print(f"expected clips per role from {sizes_from}")
    head = (f"{'role':<14}{'dataset':<16}{'clips':>7}{'expected':>10}" + "".join(f"{k:>16}" for k in KINDS)
            + "  status")
    print(head)
    for r in reports:
        cells = "".join(f"{(f'{r.found[k]}/{r.needed[k]}' if r.needed[k] else '-'):>16}" for k in KINDS)
        expected = "?" if r.expected is None else str(r.expected)
        print(f"{r.role:<14}{r.dataset:<16}{r.items:>7}{expected:>10}{cells}  {_status(r)}")
    for r in reports:
        if not r.size_ok:
            print(f"  {r.role}: {r.items} clips found, {r.expected} expected "
                  f"({'fewer' if r.items < r.expected else 'more'}: a clip no image or label names is "
                  f"invisible; the split is not the benchmark's)")
        for _, problem in r.problems[:SHOW_MISSING]:
            print(f"  {r.role}: {problem}")
        if len(r.problems) > SHOW_MISSING:
            print(f"  {r.role}: ... {len(r.problems) - SHOW_MISSING} more problems")
        for k in KINDS:
            gone = r.needed[k] - r.found[k]
            if gone:
                extra = " (read by oracle only)" if k == "labels" and r.labels_oracle_only else ""
                print(f"  {r.role}: {gone} {k} missing{extra}, the first expected at:")
                for path in r.missing[k]:
                    print(f"    {path}")
                print(f"    -> {hints[r.role]['flows' if k == 'flows' else 'data']}")
        if r.optional_missing:
            print(f"  {r.role}: {r.optional_missing} previous-frame labels absent "
                  f"(optional: those frames get all-ignore labels)")
        for note in r.notes[:SHOW_MISSING]:
            print(f"  {r.role}: note: {note}")
        if len(r.notes) > SHOW_MISSING:
            print(f"  {r.role}: note: ... {len(r.notes) - SHOW_MISSING} more")


def _verdict(reports: list[RoleReport]) -> int:
    """Print which methods run on this root; 0 unless the source, the target train frames or
    the val split is incomplete."""
    by_role = {r.role: r for r in reports}
    blocked_train = set().union(*(r.blocked() for r in reports if r.role != "target/val"))
    val = by_role["target/val"]
    runs = [m for m in METHODS if m not in blocked_train]
    if all(r.complete for r in reports):
        print("complete: every method trains and evaluates on this root")
        return 0
    if runs == [m for m in METHODS if m != "oracle"] and val.complete:
        print("complete for every method but oracle (oracle trains on the target-train labels); "
              f"methods that run: {', '.join(runs)}")
        return 0
    print("incomplete: see the missing items above")
    print(f"methods whose training data is complete: {', '.join(runs) if runs else 'none'}")
    if not val.complete:
        print(f"the val split is incomplete: `udass train` and `udass evaluate` refuse it (--allow-partial "
              f"evaluates the complete clips only and marks the result partial)")
    return 1


def check_data(benchmark: str, data_root: str | Path | None, flow_root: str | Path | None = None,
               flow_source: str | None = None, full: bool = False,
               expected: dict[str, int] | None = None) -> int:
    """Walk a data root for `benchmark`; print found / expected clips and found / missing files
    per role, and which methods run; 0 when every method can train and evaluate (missing
    target-train labels stop `oracle` only), 1 otherwise.

    Checks every frame t, previous frame, needed label (target train: the oracle's) and flow
    (shape against its frame), and a sample of labels (every label with `full`, with a progress
    bar: ids outside the encoding, unreadable files, label / frame size mismatches, per file).
    flow_source: default the profile's. expected: clips per role ("source/train", ...) replacing
    the marker's / the real datasets' (a subset made on purpose, the tests' fixture trees).
    """
    bench = get_benchmark(benchmark)
    cfg = build_config(benchmark).data
    if flow_source is not None:
        cfg = replace(cfg, flow_source=flow_source)
    if cfg.flow_source not in FLOW_SOURCES:
        raise unknown_name("flow source", cfg.flow_source, FLOW_SOURCES)
    root = resolve_data_root(benchmark, data_root, cfg)
    froot = resolve_flow_root(root, flow_root, cfg.flow_source)
    sizes = expected_split_sizes(bench, root)
    sizes_from = size_source(bench, root)
    if expected is not None:
        sizes.update(expected)
        sizes_from = "the caller"
    reports, hints, built = [], {}, []
    for domain, split in ROLES:
        dataset = bench.source if domain == "source" else bench.target
        report = RoleReport(role_of(domain, split), dataset, expected=sizes[role_of(domain, split)],
                            labels_oracle_only=(domain, split) == ("target", "train"))
        hints[report.role] = {"data": data_hint(benchmark, root, dataset),
                              "flows": flow_hint(benchmark, root, froot, cfg.flow_source)}
        try:
            ds = build_dataset(benchmark, split, root, domain, data_cfg=cfg, flow_root=froot,
                               with_labels=True)
            ds.expected_clips = report.expected
            _check_role(ds, report)
            built.append((ds, report))
        except UdassError as e:
            report.problems.append(("split", str(e)))
        reports.append(report)
    scan = _scan_labels(built) if full else None
    _print_report(benchmark, root, froot, cfg.flow_source, reports, hints, sizes_from)
    if scan is not None:
        _print_scan(scan)
    return _verdict(reports)
