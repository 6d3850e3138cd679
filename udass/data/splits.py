"""Split sizes: how many clips each role of a benchmark should hold, and the check that a split
found on disk holds them.

    expected_split_sizes(benchmark, data_root) -> {"source/train": n | None, "target/train": ..,
                                                   "target/val": ..}
    check_split(dataset, allow_partial=False) -> the dataset to use (val: complete or refused)
    clip_counts(dataset, evaluated) -> {"evaluated": n, "expected": m | None}  (metrics.json)

Expected sizes come from a generated root's marker (`udass_synthetic.json`, its "counts") when
the root has one, else from the benchmark's real datasets (`Benchmark.split_sizes`, the DA-VSN /
TPS split lists). A split of a different size, or a val clip whose frame, label or flow is
missing, is never used silently: the val split is refused (training, `udass evaluate`) unless
`allow_partial`, which then evaluates the complete clips only and says so; a train split of
another size gives a `SplitSizeWarning`. `udass check-data` reports the same counts per file.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from udass.benchmarks import ROLES, Benchmark, get_benchmark
from udass.data.synthetic import MARKER, read_marker
from udass.errors import UdassError

SHOW = 3                          # missing paths named in a message


class SplitSizeWarning(UserWarning):
    """A split holds another number of clips than expected, or is used partially."""


def role_of(domain: str, split: str) -> str:
    """"source/train", "target/train" or "target/val"."""
    return f"{domain}/{split}"


def marker_split_sizes(bench: Benchmark, counts: Mapping[str, Any]) -> dict[str, int]:
    """Expected clips per role from a marker's "counts".

    A count under the role's own name ("source/train", "target/train", "target/val": what the
    generator writes) or `<domain>_<split>_clips` gives a role directly; else the generator's
    item counts: "target_train_snippets", "target_val_snippets", "source_images"
    (image source), "source_frames" - 1 (a SYNTHIA-Seq source: frame 0 has no previous frame).
    Roles without a count are left out (their size is unknown).
    """
    out: dict[str, int] = {}
    for role in ROLES:
        for key in (role, role.replace("/", "_") + "_clips"):
            if role not in out and isinstance(counts.get(key), int):
                out[role] = counts[key]
    fallback = {"target/train": counts.get("target_train_snippets"),
                "target/val": counts.get("target_val_snippets")}
    if not bench.is_video:
        fallback["source/train"] = counts.get("source_images")
    elif bench.source == "synthia-seq" and isinstance(counts.get("source_frames"), int):
        fallback["source/train"] = counts["source_frames"] - 1
    for role, n in fallback.items():
        if role not in out and isinstance(n, int):
            out[role] = n
    return out


def read_root_marker(data_root: str | Path) -> dict[str, Any] | None:
    """The marker of a generated root, or None (a real data root, or an unreadable marker)."""
    marker = read_marker(data_root)
    return marker if isinstance(marker, dict) else None


def expected_split_sizes(benchmark: str | Benchmark, data_root: str | Path) -> dict[str, int | None]:
    """Expected clips of each role ("source/train", "target/train", "target/val") under a data
    root: the marker's counts for a generated root, else the real datasets' split sizes; None
    where neither says."""
    bench = benchmark if isinstance(benchmark, Benchmark) else get_benchmark(benchmark)
    marker = read_root_marker(data_root)
    if marker is not None and isinstance(marker.get("counts"), Mapping):
        sizes: Mapping[str, int] = marker_split_sizes(bench, marker["counts"])
    else:
        sizes = bench.split_sizes
    return {role: sizes.get(role) for role in ROLES}


def size_source(benchmark: str | Benchmark, data_root: str | Path) -> str:
    """Where `expected_split_sizes` took its numbers from, for messages."""
    bench = benchmark if isinstance(benchmark, Benchmark) else get_benchmark(benchmark)
    if read_root_marker(data_root) is not None:
        return f"the counts in {Path(data_root) / MARKER}"
    if bench.split_sizes:
        return "the real datasets' split lists (docs/datasets.md)"
    return "nothing (no marker, a synthetic benchmark)"


def missing_clips(ds: Any) -> tuple[list[int], dict[str, list[Path]], dict[str, int]]:
    """(indices of the clips of `ds` with a needed file missing, the first SHOW missing paths per
    kind, the number of missing files per kind: a file that several clips read counts once).
    Kinds: "frames t", "prev frames", "labels", "flows"; labels the layout marks optional
    (VIPER's previous frames) are not needed."""
    bad: list[int] = []
    first: dict[str, list[Path]] = {}
    count: dict[str, int] = {}
    seen: set[Path] = set()
    for i in range(len(ds)):
        gone = False
        for kind, path, optional in ds.needed_files(i):
            if optional or path.is_file():
                continue
            gone = True
            if path in seen:
                continue
            seen.add(path)
            count[kind] = count.get(kind, 0) + 1
            if len(first.setdefault(kind, [])) < SHOW:
                first[kind].append(path)
        if gone:
            bad.append(i)
    return bad, first, count


def _describe(ds: Any, bad: list[int], first: Mapping[str, list[Path]], count: Mapping[str, int]) -> str:
    role = role_of(ds.domain, ds.split)
    expected = ds.expected_clips
    head = f"{role} of {ds.benchmark} ({ds.layout.dataset} at {ds.data_root}) holds {len(ds)} clips"
    parts = [head + (f", expected {expected}" if expected is not None else "")]
    if bad:
        files = "; ".join(f"{count[k]} {k} missing (first: {', '.join(str(p) for p in first[k])})"
                          for k in count)
        parts.append(f"{len(bad)} of them incomplete: {files}")
    return ", ".join(parts)


def check_split(ds: Any, allow_partial: bool = False) -> Any:
    """The dataset to train or evaluate on, after checking its size and (val) its files.

    ds: a `ClipDataset` (with `expected_clips`). A train split of another size than expected
    gives a `SplitSizeWarning` and is used as it is (check-data names what is missing). A val
    split of another size, or with a clip missing a frame, label or flow, raises a one-line
    UdassError unless `allow_partial`; with it, a `SplitSizeWarning` says so and the complete
    clips are returned (`ds.subset`), to be recorded in metrics.json by `clip_counts`.
    """
    expected = ds.expected_clips
    hint = f"`udass check-data --benchmark {ds.benchmark} --data-root {ds.data_root}` names every missing file"
    if ds.split != "val":
        if expected is not None and len(ds) != expected:
            warnings.warn(f"{_describe(ds, [], {}, {})}; training on a split of another size than the "
                          f"benchmark's; {hint}", SplitSizeWarning, stacklevel=2)
        return ds
    bad, first, count = missing_clips(ds)
    if not bad and (expected is None or len(ds) == expected):
        return ds
    what = _describe(ds, bad, first, count)
    gone = set(bad)
    keep = [i for i in range(len(ds)) if i not in gone]
    if not keep:
        raise UdassError(f"{what}; no complete val clip is left to evaluate: complete the data ({hint})")
    if not allow_partial:
        raise UdassError(f"{what}; an mIoU over a partial val split is not comparable with the paper's: "
                         f"complete the data ({hint}) or pass --allow-partial to evaluate the "
                         f"{len(keep)} complete clips")
    warnings.warn(f"{what}; --allow-partial: evaluating the {len(keep)} complete clips "
                  f"(metrics.json records clips evaluated and expected)", SplitSizeWarning, stacklevel=2)
    return ds.subset(keep) if bad else ds


def clip_counts(ds: Any, evaluated: int) -> dict[str, int | None]:
    """The "clips" entry of metrics.json: clips evaluated and the val split's expected size
    (None when unknown). A table marks a row whose evaluated count differs from the expected."""
    return {"evaluated": int(evaluated), "expected": ds.expected_clips}


def is_partial(record: Mapping[str, Any]) -> bool:
    """Whether a metrics.json record evaluated another number of clips than expected (records
    without "clips", written before it existed, are not)."""
    clips = record.get("clips")
    if not isinstance(clips, Mapping):
        return False
    expected = clips.get("expected")
    return expected is not None and clips.get("evaluated") != expected
