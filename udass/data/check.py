"""`udass check-data`: what a data root holds for a benchmark, what is missing, which methods run.

    check_data(benchmark, data_root, data_cfg=..., flow_root=None, full=False, expected=None)
        -> exit status (0: every method trains and evaluates)

For each role (source/train, target/train, target/val) it counts the clips found against the
split's expected size and every file a clip reads (frame t, previous frames, labels, flows),
lists the first missing paths with the command that makes them, and checks a sample of labels
(ids outside the encoding) and every flow's shape; `full` reads every label file once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from udass.benchmarks import get_benchmark
from udass.config import METHODS, DataConfig
from udass.data.datasets import (DOMAIN_SPLITS, FLOW_SOURCES, ClipDataset, build_dataset, data_hint,
                                 fits_frame, flow_hint, resolve_data_root, resolve_flow_root)
from udass.data.imageio import image_size
from udass.data.protocols import RAW_ID_MAX, outside_encoding
from udass.data.splits import expected_split_sizes, role_of, size_source
from udass.errors import UdassError, unknown_name
from udass.progress import Progress

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
        print("the val split is incomplete: `udass train` and `udass evaluate` refuse it (--allow-partial "
              "evaluates the complete clips only and marks the result partial)")
    return 1


def check_data(benchmark: str, data_root: str | Path | None, *, data_cfg: DataConfig,
               flow_root: str | Path | None = None, full: bool = False,
               expected: dict[str, int] | None = None) -> int:
    """Walk a data root for `benchmark`; print found / expected clips and found / missing files
    per role, and which methods run; 0 when every method can train and evaluate (missing
    target-train labels stop `oracle` only), 1 otherwise.

    Checks every frame t, previous frame, needed label (target train: the oracle's) and flow
    (shape against its frame), and a sample of labels (every label with `full`, with a progress
    bar: ids outside the encoding, unreadable files, label / frame size mismatches, per file).
    data_cfg: the DataConfig the clips are read with (its flow source says which flows to look
    for; the caller builds it, e.g. `build_config(benchmark).data`). expected: clips per role
    ("source/train", ...) replacing the marker's / the real datasets' (a subset made on purpose,
    the tests' fixture trees).
    """
    bench = get_benchmark(benchmark)
    cfg = data_cfg
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
    for domain, split in DOMAIN_SPLITS:
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
