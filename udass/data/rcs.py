"""Rare-class sampling (RCS, DAFormer: Hoyer et al., CVPR 2022) of labelled source images.

Source images are drawn by class, not uniformly: a class c is drawn with probability

    P(c) = softmax_c((1 - f_c) / T),   f_c = pixels of c / all labelled pixels of the split,

T = 0.01 (`rcs_probabilities`), then an image uniformly among those where c covers more than
`min_pixels` (3000) pixels at the label's stored resolution. The random training crop of that
image is redrawn until c covers more than min_pixels x min_crop_ratio of it (`rcs_crop_offsets`;
at most 10 checks, the 11th crop is taken unchecked, as DAFormer's loop does).

- `class_statistics(dataset)`: per-image class pixel counts of a labelled split, one pass with a
  progress bar, cached as JSON in `<data root>/udass_rcs/` keyed by a fingerprint of the label
  files (relative path, size, modification time) so that a change recomputes them. A read-only
  data root falls back to `$UDASS_CACHE/rcs/` (default `~/.cache/udass/rcs/`) and says so.
- `RareClassSampler`: a batch sampler whose batch of step k (the image indices and their
  sampled classes) is a pure function of (seed, k), like `udass.train.StepBatchSampler`.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler
from tqdm import tqdm

from udass.benchmarks import PROTOCOLS
from udass.data.datasets import ClipDataset, data_hint
from udass.errors import UdassError
from udass.io import write_json
from udass.runtime import step_seed

CACHE_VERSION = 1
CACHE_DIR = "udass_rcs"
RCS_STREAM = 23  # step_seed stream of the class / image draws
MAX_CROP_CHECKS = 10  # DAFormer: up to 10 checked crops, then one more taken as it is


# ----------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class ClassStats:
    """Class pixel counts of a labelled split.

    files: the label file of each dataset item (frame t), relative to the data root, in item order.
    pixels: int64 [N, C], pixels of each train class in each item's label (stored resolution,
    bottom crop applied; ignore not counted). fingerprint: of the label files (`label_fingerprint`).
    """

    files: tuple[str, ...]
    pixels: Tensor
    fingerprint: str

    @property
    def class_pixels(self) -> Tensor:
        """int64 [C]: pixels of each class over the split."""
        return self.pixels.sum(dim=0)


def _label_files(dataset: ClipDataset) -> list[Path]:
    paths = [dataset.raw_paths(i).labels[0] for i in range(len(dataset))]
    if any(p is None for p in paths):
        raise UdassError(f"{dataset!r} carries no labels; rare-class sampling needs a labelled "
                         f"(source) split")
    return paths


def label_fingerprint(dataset: ClipDataset, files: Sequence[Path]) -> str:
    """SHA-256 over the protocol, encoding, bottom crop and each label file's path (relative to
    the data root), size and modification time (ns): any changed, added or removed file changes it."""
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}|{dataset.protocol}|{dataset.layout.encoding}|"
             f"{dataset.spec.crop_bottom}\n".encode())
    for path in files:
        try:
            st = path.stat()
        except OSError:
            hint = data_hint(dataset.benchmark, Path(dataset.data_root), dataset.layout.dataset)
            raise UdassError(f"missing label file {path}; {hint}") from None
        h.update(f"{_relative(path, dataset.data_root)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def cache_paths(dataset: ClipDataset) -> tuple[Path, Path]:
    """(beside the data root, fallback) JSON files of a dataset's class statistics."""
    name = f"{dataset.layout.dataset}-{dataset.protocol}-{dataset.split}.json"
    root = Path(dataset.data_root)
    base = Path(os.environ["UDASS_CACHE"]) if os.environ.get("UDASS_CACHE") else \
        Path.home() / ".cache" / "udass"
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    return root / CACHE_DIR / name, base / "rcs" / key / name


def _read_cache(path: Path, fingerprint: str, num_classes: int) -> ClassStats | None:
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    if d.get("version") != CACHE_VERSION or d.get("fingerprint") != fingerprint:
        return None
    pixels = torch.tensor(d["pixels"], dtype=torch.int64).reshape(-1, num_classes)
    return ClassStats(tuple(d["files"]), pixels, fingerprint)


# (dataset, C) of the counting pass in progress; forked worker processes inherit it
_COUNTING: tuple[ClipDataset, int] | None = None


def _count_item(i: int) -> list[int]:
    dataset, num_classes = _COUNTING
    label = dataset.native_label(i)
    return np.bincount(label.ravel(), minlength=256)[:num_classes].tolist()


def _count(dataset: ClipDataset, num_classes: int, progress: bool, workers: int) -> list[list[int]]:
    """[N][C] class pixels of every item; `workers` > 1 forks worker processes."""
    global _COUNTING
    bar = dict(total=len(dataset), desc="RCS class statistics", unit="label", disable=not progress)
    _COUNTING = (dataset, num_classes)
    try:
        if workers <= 1:
            return [_count_item(i) for i in tqdm(range(len(dataset)), **bar)]
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return list(tqdm(pool.imap(_count_item, range(len(dataset)), chunksize=16), **bar))
    finally:
        _COUNTING = None


def class_statistics(dataset: ClipDataset, progress: bool = True, workers: int = 0,
                     cache_dir: str | os.PathLike | None = None) -> ClassStats:
    """Per-item class pixel counts of a labelled split (`udass.data.build_dataset(..., domain=
    "source")`), from the cache when its fingerprint matches, else counted in one pass (with a
    progress bar; `workers` processes) and cached. cache_dir: a folder to use instead of
    `<data root>/udass_rcs/`; an unwritable one falls back to the user cache, said on stderr."""
    num_classes = PROTOCOLS[dataset.protocol].num_classes
    files = _label_files(dataset)
    fingerprint = label_fingerprint(dataset, files)
    primary, fallback = cache_paths(dataset)
    if cache_dir is not None:
        primary = Path(cache_dir) / primary.name
    for path in (primary, fallback):
        cached = _read_cache(path, fingerprint, num_classes)
        if cached is not None:
            return cached
    pixels = _count(dataset, num_classes, progress, workers)
    rel = tuple(_relative(p, dataset.data_root) for p in files)
    record = {"version": CACHE_VERSION, "fingerprint": fingerprint,
              "dataset": dataset.layout.dataset, "protocol": dataset.protocol,
              "classes": list(PROTOCOLS[dataset.protocol].classes), "files": list(rel),
              "pixels": pixels}
    try:
        write_json(primary, record)
    except OSError as e:
        print(f"udass: cannot write the RCS class statistics beside the data root ({primary}: "
              f"{e.strerror or e}); cached in {fallback} instead", file=sys.stderr)
        write_json(fallback, record)
    return ClassStats(rel, torch.tensor(pixels, dtype=torch.int64).reshape(-1, num_classes), fingerprint)


# ----------------------------------------------------------------------------------- sampling
def rcs_probabilities(class_pixels: Tensor, temperature: float) -> Tensor:
    """DAFormer's class probabilities: softmax over the classes present (pixels > 0) of
    (1 - f_c) / T with f_c their pixel frequency; absent classes get 0. class_pixels: [C]
    (counts or frequencies). Returns float64 [C] summing to 1."""
    counts = class_pixels.double()
    present = counts > 0
    if not bool(present.any()):
        raise UdassError("rare-class sampling: the source labels contain no class pixel; check the "
                         "labels with `udass check-data`")
    if temperature <= 0:
        raise UdassError(f"data.rcs_temperature={temperature}: expected a positive temperature")
    freq = counts[present] / counts[present].sum()
    probs = torch.zeros_like(counts)
    probs[present] = torch.softmax((1 - freq) / temperature, dim=0)
    return probs


class RareClassSampler(Sampler[list[int]]):
    """Source batches by rare-class sampling; the batch of step k is a pure function of (seed, k).

    stats: the split's `ClassStats`; temperature, min_pixels: DAFormer's T and per-image threshold
    (an image counts for class c when c covers more than min_pixels pixels). Classes with no such
    image are not drawn (DAFormer stops on them); the others keep DAFormer's softmax over all
    classes present, renormalised. Step k draws batch_size x world (class, image) pairs from a
    generator seeded by (seed, k); rank r takes its slice. `indices_for_step` / `classes_for_step`
    give them; iterating yields the batches of steps start..end-1 (a DataLoader batch_sampler).
    """

    def __init__(self, stats: ClassStats, temperature: float, min_pixels: int, batch_size: int,
                 seed: int, start: int = 0, end: int = 0, rank: int = 0, world: int = 1) -> None:
        self.batch_size, self.seed = batch_size, seed
        self.start, self.end, self.rank, self.world = start, end, rank, world
        probs = rcs_probabilities(stats.class_pixels, temperature)
        having = stats.pixels > min_pixels  # [N, C]
        self.images_of_class = [having[:, c].nonzero().squeeze(1) for c in range(having.shape[1])]
        drawable = torch.tensor([len(i) > 0 for i in self.images_of_class]) & (probs > 0)
        if not bool(drawable.any()):
            raise UdassError(f"rare-class sampling: no source image has more than {min_pixels} "
                             f"pixels of any class; lower data.rcs_min_pixels")
        self.class_probs = probs * drawable / (probs * drawable).sum()

    def _draw(self, step: int) -> tuple[Tensor, Tensor]:
        n = self.batch_size * self.world
        g = torch.Generator().manual_seed(step_seed(self.seed, step, stream=RCS_STREAM))
        classes = torch.multinomial(self.class_probs, n, replacement=True, generator=g)
        u = torch.rand(n, generator=g, dtype=torch.float64)
        idx = [int(self.images_of_class[c][int(v * len(self.images_of_class[c]))])
               for c, v in zip(classes.tolist(), u.tolist())]
        lo = self.rank * self.batch_size
        return torch.tensor(idx[lo:lo + self.batch_size]), classes[lo:lo + self.batch_size]

    def indices_for_step(self, step: int) -> list[int]:
        """Dataset indices of this rank's batch of step `step`."""
        return self._draw(step)[0].tolist()

    def classes_for_step(self, step: int) -> list[int]:
        """The class each image of `indices_for_step(step)` was drawn for (for `rcs_crop_offsets`)."""
        return self._draw(step)[1].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.end):
            yield self.indices_for_step(step)

    def __len__(self) -> int:
        return max(0, self.end - self.start)


# ----------------------------------------------------------------------------------- cropping
def class_pixels_in_windows(labels: Tensor, classes: Tensor, ys: Tensor, xs: Tensor,
                            size: Sequence[int]) -> Tensor:
    """Pixels of class classes[b] inside the windows (ys[b, t], xs[b, t]) + size of labels[b].

    labels: [B, H, W] int; classes: [B]; ys, xs: [B, T] top-left corners. Returns int64 [B, T],
    from one summed-area table per sample (no loop over windows)."""
    b, h, w = labels.shape
    hit = (labels == classes.view(b, 1, 1).to(labels.device)).long()
    sat = torch.zeros(b, h + 1, w + 1, dtype=torch.long, device=labels.device)
    sat[:, 1:, 1:] = hit.cumsum(1).cumsum(2)
    ch, cw = size
    ys, xs = ys.to(labels.device), xs.to(labels.device)
    rows = torch.arange(b, device=labels.device).view(b, 1)

    def at(y: Tensor, x: Tensor) -> Tensor:
        return sat[rows, y, x]

    return at(ys + ch, xs + cw) - at(ys, xs + cw) - at(ys + ch, xs) + at(ys, xs)


def rcs_crop_offsets(labels: Tensor, classes: Sequence[int] | Tensor, size: Sequence[int],
                     min_pixels: int, min_crop_ratio: float, generator: torch.Generator,
                     max_checks: int = MAX_CROP_CHECKS) -> tuple[list[int], list[int]]:
    """Top-left corners of each sample's random crop, redrawn until its class covers enough.

    labels: [B, H, W] train ids (frame t, at the training resolution); classes: [B] the class
    each sample was drawn for; size: (h, w) of the crop. For every sample max_checks + 1
    candidate corners are drawn at once from `generator` (so the generator advances by the same
    amount whatever the labels); the first candidate with more than min_pixels x min_crop_ratio
    pixels of its class is taken, else the last one, unchecked (DAFormer). min_crop_ratio <= 0:
    the first candidate (DAFormer skips the check). Returns (ys, xs) lists of length B.
    """
    b, h, w = labels.shape
    ch, cw = min(size[0], h), min(size[1], w)
    n = max_checks + 1
    ys = torch.randint(0, h - ch + 1, (b, n), generator=generator)
    xs = torch.randint(0, w - cw + 1, (b, n), generator=generator)
    if min_crop_ratio <= 0:
        pick = torch.zeros(b, dtype=torch.long)
    else:
        cls = torch.as_tensor(list(classes) if not isinstance(classes, Tensor) else classes)
        counts = class_pixels_in_windows(labels, cls, ys, xs, (ch, cw)).cpu()
        ok = counts[:, :max_checks] > min_pixels * min_crop_ratio
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((b,), n - 1))
        pick = first.long()
    rows = torch.arange(b)
    return ys[rows, pick].tolist(), xs[rows, pick].tolist()


__all__ = ["CACHE_DIR", "ClassStats", "RareClassSampler", "cache_paths", "class_pixels_in_windows",
           "class_statistics", "label_fingerprint", "rcs_crop_offsets", "rcs_probabilities"]
