"""Generated roots as a whole: `generate` writes one, its marker records what it holds, and
`ensure_synthetic_root` keeps the cache of the embedded benchmarks up to date.

`udass_synthetic.json` (benchmark, size, seed, generator version, frame sizes, counts,
`content_sha256`) is written last, so a root without it is incomplete; the hidden stamp
`.udass_synthetic`, written first, marks a folder as generated, so that a folder holding dataset
folders without it is never overwritten. Markers are written with an fsync (`udass.io`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from udass.benchmarks import BENCHMARKS
from udass.data.synthetic.jobs import jobs, run_all, usable_cpus
from udass.data.synthetic.spec import (DATASET_DIRS, GENERATOR_VERSION, MARKER, OWNER_STAMP,
                                       bench_spec, frame_size, role_counts, size_spec)
from udass.errors import UdassError, unknown_name
from udass.io import set_default_permissions, write_json

REPO = Path(__file__).resolve().parents[3]
# The embedded benchmarks: the ones a data root is generated for on demand (`default_root`).
EMBEDDED = tuple(name for name, b in BENCHMARKS.items() if b.synthetic)


def _marker_content(benchmark: str, size: str, seed: int) -> dict[str, Any]:
    """What identifies a generated root: a root whose marker holds these values is up to date."""
    spec = size_spec(size)
    return {"benchmark": benchmark, "size": size, "seed": seed, "version": GENERATOR_VERSION,
            "width": spec.width, "height": spec.height}


def read_marker(root: str | os.PathLike) -> dict[str, Any] | None:
    """The completion marker of a generated root, or None when absent or unreadable."""
    try:
        return json.loads((Path(root) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _marker_matches(root: Path, benchmark: str, size: str, seed: int) -> bool:
    marker = read_marker(root)
    want = _marker_content(benchmark, size, seed)
    return marker is not None and all(marker.get(k) == v for k, v in want.items())


def _is_ours(root: Path) -> bool:
    """Whether `udass synth` wrote this folder (complete or not), so it may be replaced."""
    return (root / MARKER).is_file() or (root / OWNER_STAMP).is_file()


def _prepare_out(out: Path) -> None:
    """Make `out` ready: create it, or clear what an earlier generation wrote there."""
    if out.exists() and not out.is_dir():
        raise UdassError(f"--out {out} is a file, expected a folder; pass a folder path")
    out.mkdir(parents=True, exist_ok=True)
    present = [n for n in DATASET_DIRS if (out / n).exists()]
    if present and not _is_ours(out):
        raise UdassError(f"{out} already holds {', '.join(present)} not written by `udass synth`; "
                         f"pass an empty or new folder as --out")
    (out / MARKER).unlink(missing_ok=True)
    for name in present:
        shutil.rmtree(out / name)


def generate(benchmark: str, out: str | os.PathLike, seed: int = 0, size: str = "demo", *,
             workers: int | None = None) -> Path:
    """Write the data root `out` of a generated benchmark and return it.

    benchmark: an embedded benchmark ("synthetic-video" | "synthetic-image") or a paper benchmark
    id (`BENCHMARK_SPECS`: the same world model in that benchmark's real layouts); size: "tiny"
    (tests) | "demo" | "paper" (the datasets' real resolutions, a few items per split). The same
    (benchmark, seed, size) gives byte-identical files whatever `workers` is (default: serial
    for tiny, up to 4 processes otherwise). `udass_synthetic.json` is written last: a root
    without it is incomplete.
    """
    bench = bench_spec(benchmark)
    spec = size_spec(size)
    out = Path(out)
    _prepare_out(out)
    write_json(out / OWNER_STAMP, {"written_by": "udass synth", **_marker_content(benchmark, size, seed)})
    if workers is None:
        workers = 1 if spec.width * spec.height < 10000 else min(4, usable_cpus())
    counts = run_all(out, jobs(benchmark, seed, size), workers)
    resolutions = {d: list(frame_size(d, size)) for d in (bench.source, "cityscapes")}
    write_json(out / MARKER, {**_marker_content(benchmark, size, seed), "resolutions": resolutions,
                              "counts": {**counts, **role_counts(benchmark, size)},
                              "content_sha256": content_hash(out)})
    return out


def content_hash(root: str | os.PathLike) -> str:
    """SHA-256 over the relative path and bytes of every file a generation wrote under `root`
    (the marker files excluded), in sorted path order. Recorded in the marker, and from there in
    each run's run.json, so that two machines can tell whether they trained on the same bytes
    (numpy and OpenCV pick SIMD code paths by CPU)."""
    root = Path(root)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in (MARKER, OWNER_STAMP)):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def default_root(benchmark: str, size: str = "demo", seed: int = 0) -> Path:
    """Where an embedded benchmark is cached: `$UDASS_DATA/<benchmark>` when UDASS_DATA is set,
    else `<repo>/data/<benchmark>`; `-<size>-s<seed>` is appended unless demo / 0. (Generated
    roots of the paper benchmark ids are written where `udass synth --out` says, never cached.)"""
    if benchmark not in EMBEDDED:
        raise unknown_name("synthetic benchmark", benchmark, EMBEDDED)
    size_spec(size)
    base = Path(os.environ["UDASS_DATA"]) if os.environ.get("UDASS_DATA") else REPO / "data"
    name = benchmark if (size, seed) == ("demo", 0) else f"{benchmark}-{size}-s{seed}"
    return base / name


def ensure_synthetic_root(benchmark: str, size: str = "demo", seed: int = 0,
                          root: str | os.PathLike | None = None) -> Path:
    """A complete generated root, generated if its marker is missing or does not match: at
    `root`, else at the cache path `default_root` gives (embedded benchmarks only).

    Safe under concurrent callers: each generates into a temporary sibling folder and renames it
    into place; a caller that loses the race uses the winner's root.
    """
    root = Path(root) if root is not None else default_root(benchmark, size, seed)
    if _marker_matches(root, benchmark, size, seed):
        return root
    if root.is_dir() and any(root.iterdir()) and not _is_ours(root):
        raise UdassError(f"{root} exists and was not written by `udass synth`; move it away or "
                         f"pass another data root")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        generate(benchmark, tmp, seed=seed, size=size)
        set_default_permissions(tmp, directory=True)   # mkdtemp makes it private
        _install(tmp, root, benchmark, size, seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _install(tmp: Path, root: Path, benchmark: str, size: str, seed: int) -> None:
    """Rename a freshly generated `tmp` to `root`, replacing a stale root that is ours."""
    for _ in range(5):
        try:
            os.rename(tmp, root)
            return
        except OSError:
            if _marker_matches(root, benchmark, size, seed):
                return       # another caller won the race
        if root.exists():
            if any(root.iterdir()) and not _is_ours(root):
                raise UdassError(f"{root} exists and was not written by `udass synth`; move it "
                                 f"away or pass another data root")
            stale = Path(tempfile.mkdtemp(prefix=f".{root.name}.stale-", dir=root.parent))
            try:
                os.rename(root, stale / "old")
            except OSError:
                pass         # someone else moved or replaced it: try again
            shutil.rmtree(stale, ignore_errors=True)
    raise UdassError(f"could not install the generated data at {root}; remove it and run "
                     f"`udass synth --benchmark {benchmark} --out {root}`")
