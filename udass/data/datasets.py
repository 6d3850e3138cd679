"""The benchmark dataset builder: clips (`udass.data.Clip`) from a data root in the shipped layouts.

    build_dataset(benchmark, split, data_root, domain, data_cfg=..., with_labels=False,
                  flow_root=None) -> ClipDataset

(`udass check-data`, which reports on a whole data root, is `udass.data.check`.)

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
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol as TypingProtocol

import numpy as np
import torch
from torch.utils.data import Dataset

from udass.benchmarks import IGNORE_INDEX, ROLES, Benchmark, get_benchmark
from udass.config import DataConfig, build_config
from udass.data.cityscapes import CityscapesLayout, CityscapesSeqLayout
from udass.data.clip import Clip
from udass.data.flow import flow_cache_path, read_flow, resize_flow_np
from udass.data.gta import GTALayout
from udass.data.imageio import image_size, read_rgb
from udass.data.protocols import map_label
from udass.data.splits import expected_split_sizes, role_of
from udass.data.synthetic import ensure_synthetic_root
from udass.data.synthetic.spec import MARKER, OWNER_STAMP
from udass.data.synthia import SynthiaLayout
from udass.data.synthia_seq import SynthiaSeqLayout
from udass.data.transforms import resize_clip, resize_labels
from udass.data.viper import ViperLayout
from udass.errors import UdassError, unknown_name

SPLITS = ("train", "val")
DOMAINS = ("source", "target")
FLOW_SOURCES = ("dis", "exact", "authors")
DEFAULT_FLOW_DIR = "udass_flow"
# (domain, split) of each role of udass.benchmarks.ROLES: source/train, target/train, target/val
DOMAIN_SPLITS: tuple[tuple[str, str], ...] = tuple((r.split("/")[0], r.split("/")[1]) for r in ROLES)


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
    """The clip contract (docs/architecture.md, Contracts: Clip) for one benchmark, split and domain."""
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
            out = [m if m is not None and m.shape == ref else np.full(ref, IGNORE_INDEX, np.uint8) for m in maps]
            return torch.from_numpy(np.stack(out)).long()
        size = self.spec.size
        out = [torch.full(size, IGNORE_INDEX, dtype=torch.uint8) if m is None
               else resize_labels(torch.from_numpy(m)[None], size)[0] for m in maps]
        return torch.stack(out).long()

    def native_label(self, i: int) -> np.ndarray:
        """Frame t's train-id label of item i (uint8 [H, W], 255 ignore) at its stored resolution,
        the bottom crop applied (what rare-class sampling counts; `udass.data.rcs`)."""
        paths = self.raw_paths(i)
        path = paths.labels[0]
        if path is None:
            raise UdassError(f"{self.benchmark} {self.domain} {self.split} clips carry no labels; "
                             f"class statistics need a labelled split")
        raw = self.layout.read_label(path, self._data_hint)
        label = map_label(raw, self.protocol, self.layout.encoding, str(path))
        if not self.spec.crop_bottom:
            return label
        return self._crop_label(label, image_size(paths.frames[0], self._data_hint))

    def _crop_label(self, label: np.ndarray, stored: tuple[int, int]) -> np.ndarray:
        crop = self.spec.crop_bottom
        if not crop:
            return label
        rows = round(crop * label.shape[0] / stored[0])
        return label[: label.shape[0] - rows]


def build_dataset(benchmark: str, split: str, data_root: str | Path | None, domain: str,
                  profile: str = "demo", *, data_cfg: DataConfig | None = None,
                  with_labels: bool = False, flow_root: str | Path | None = None) -> ClipDataset:
    """Clips of `benchmark`'s `domain` dataset, `split` in {"train", "val"} (see module docstring).

    data_cfg: the run's DataConfig (sizes, crop, flow source, synthetic root size), built by the
    caller (`build_config(...).data`) for this benchmark: the trainer, evaluation and the flow
    cache pass theirs. Without it (scripts, notebooks: the contract's
    `build_dataset(benchmark, split, data_root, domain, profile="demo")`), the preset DataConfig
    of `benchmark` at `profile` is used. data_root: folder holding the dataset
    folders; None = `data_cfg.data_root`, else the synthetic cache (synthetic benchmarks, made on
    demand). flow_root: default `data_cfg.flow_root`, else `<data root>/udass_flow` (dis /
    exact) or the data root itself (authors: the authors' flow folders sit beside the dataset
    folders).
    """
    if data_cfg is None:
        data_cfg = build_config(benchmark, profile=profile).data
    if data_cfg.benchmark != benchmark:
        raise UdassError(f"build_dataset({benchmark!r}): the DataConfig given is for "
                         f"{data_cfg.benchmark!r}; build it for {benchmark!r} "
                         f"(build_config({benchmark!r}, ...).data)")
    bench = get_benchmark(benchmark)
    if split not in SPLITS:
        raise unknown_name("split", split, SPLITS)
    if domain not in DOMAINS:
        raise unknown_name("domain", domain, DOMAINS)
    cfg = data_cfg
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
