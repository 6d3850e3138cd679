"""`udass flow`: precompute the backward optical flow (OpenCV DIS) of every frame pair a benchmark
needs into the flow cache (docs/architecture.md, Contracts: Flow).

Pairs: source train t -> t-1; target train t -> t-1 AND t-1 -> t-2 (the teacher's pseudo-label of
t-1 needs it); target val t -> t-1. Image benchmarks need none. Each flow is one file
`<flow root>/<dataset>/<frame path without extension>_int16_x10.npy` (int16(flow * 10),
H x W x 2), written atomically; files already present are skipped, so an interrupted run resumes.

Sharding (`--shard i/n`, cluster array jobs): the jobs, sorted by output path, are dealt out
round-robin; shard i takes jobs i, i + n, i + 2n, ... The shards are disjoint and together cover
every job, each is resumable on its own, and since a flow depends only on its frame pair, n
shards fill the same cache, byte for byte, as one unsharded run.

Resolution: by default a flow is stored at its frame's stored resolution (the contract; 8 MB per
2048 x 1024 Cityscapes frame). `max_width` stores it at a reduced scale instead (frames are
downscaled with INTER_AREA before DIS, which is also faster); readers resize and rescale any
scaled copy to the frame size, so `max_width=1024` (the paper's input width) loses nothing the
model sees and quarters the disk and time cost on Cityscapes.
"""
from __future__ import annotations

import multiprocessing
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from udass.benchmarks import get_benchmark
from udass.config import DataConfig
from udass.data.datasets import DOMAIN_SPLITS, build_dataset, resolve_data_root, resolve_flow_root
from udass.data.flow import estimate_flow_dis, write_flow
from udass.data.imageio import read_rgb
from udass.errors import Interrupted, UdassError, unknown_name
from udass.progress import Progress

PRESETS = ("ultrafast", "fast", "medium")


@dataclass(frozen=True)
class FlowJob:
    """One backward flow: frame (t, its grid) -> prev (t-1), written to out."""

    frame: Path
    prev: Path
    out: Path


def flow_jobs(benchmark: str, data_root: Path, flow_root: Path, data_cfg: DataConfig) -> list[FlowJob]:
    """Every flow the benchmark's clips read (train source / target and val target), deduplicated.
    data_cfg: the DataConfig whose clips need the flows (read with flow source dis)."""
    cfg = replace(data_cfg, flow_source="dis")
    jobs: dict[Path, FlowJob] = {}
    for domain, split in DOMAIN_SPLITS:
        ds = build_dataset(benchmark, split, data_root, domain, data_cfg=cfg, flow_root=flow_root)
        for i in range(len(ds)):
            p = ds.raw_paths(i)
            for k, out in enumerate(p.flows):
                jobs.setdefault(out, FlowJob(p.frames[k], p.frames[k + 1], out))
    return list(jobs.values())


def shard_jobs(jobs: list[FlowJob], index: int, count: int) -> list[FlowJob]:
    """Shard `index` of `count` (0 <= index < count): every count-th job of the list sorted by
    output path, starting at `index`."""
    if count < 1 or not 0 <= index < count:
        raise UdassError(f"--shard {index}/{count}: expected i/n with 0 <= i < n, e.g. --shard 0/4 "
                         f"... --shard 3/4 for four array jobs")
    return sorted(jobs, key=lambda j: str(j.out))[index::count]


def parse_shard(text: str) -> tuple[int, int]:
    """"i/n" -> (i, n), checked (the `--shard` flag)."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise UdassError(f"--shard {text}: expected i/n, e.g. --shard 0/4 (shards 0 ... n-1; with "
                         f"SLURM: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
    index, count = int(parts[0]), int(parts[1])
    shard_jobs([], index, count)
    return index, count


def _check_frames(jobs: list[FlowJob], benchmark: str, root: Path) -> None:
    missing = sorted({f for j in jobs for f in (j.frame, j.prev) if not f.is_file()})
    if missing:
        raise UdassError(f"{len(missing)} frames needed for flow are missing, e.g. {missing[0]}; see "
                         f"`udass check-data --benchmark {benchmark} --data-root {root}`")


def downscale(img: np.ndarray, max_width: int | None) -> np.ndarray:
    """Shrink uint8 H x W x C to width `max_width` (aspect kept, INTER_AREA); unchanged if narrower."""
    h, w = img.shape[:2]
    if not max_width or w <= max_width:
        return img
    return cv2.resize(img, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA)


def compute_one(job: FlowJob, preset: str = "medium", max_width: int | None = None) -> float:
    """Compute and write one flow; returns the seconds it took."""
    start = time.perf_counter()
    cur, prev = read_rgb(job.frame), read_rgb(job.prev)
    if cur.shape != prev.shape:
        raise UdassError(f"frames {job.frame} and {job.prev} differ in size; they do not belong together")
    flow = estimate_flow_dis(downscale(cur, max_width), downscale(prev, max_width), preset)
    write_flow(job.out, flow)
    return time.perf_counter() - start


def _work(args: tuple[FlowJob, str, int | None]) -> float:
    return compute_one(*args)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one core per worker process
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle


def _run(todo: list[FlowJob], workers: int, preset: str, max_width: int | None) -> int:
    """Compute the flows of `todo`; returns how many were written. Ctrl-C stops the
    pool and raises `Interrupted` naming how many flows are kept (each written atomically)."""
    args = [(job, preset, max_width) for job in todo]
    done = 0
    with Progress(len(todo), "DIS flow", unit="flow") as bar:
        try:
            if workers == 1:
                for a in args:
                    _work(a)
                    done += 1
                    bar.update()
                return done
            with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
                for _ in pool.imap_unordered(_work, args, chunksize=1):
                    done += 1
                    bar.update()
        except KeyboardInterrupt:
            bar.close(done=False)
            raise Interrupted(f"interrupted after {done} of {len(todo)} flows; the {done} written are "
                              f"kept; rerun the same command to compute the rest", signal.SIGINT) from None
    return done


def compute_flows(benchmark: str, data_root: str | Path | None, flow_root: str | Path | None = None,
                  workers: int = 1, preset: str = "medium", max_width: int | None = None,
                  shard: tuple[int, int] | None = None, *, data_cfg: DataConfig) -> dict:
    """Fill the flow cache of `benchmark` with DIS flows; existing files are kept (resumable).

    data_cfg: the DataConfig of the runs that will read the flows, built by the caller
    (`build_config(benchmark).data`). data_root: folder holding the dataset folders (None:
    `data_cfg.data_root`, else the synthetic cache of a synthetic benchmark). flow_root: default `<data root>/udass_flow`. workers > 1: a process pool.
    preset: DIS preset (ultrafast | fast | medium). max_width: store flows at most this wide
    (None: the frame's stored resolution). shard: (i, n) computes only shard i of n
    (`shard_jobs`); None: every flow. Returns counts and timing (of the shard).
    """
    bench = get_benchmark(benchmark)
    if preset not in PRESETS:
        raise unknown_name("DIS preset", preset, PRESETS)
    if workers < 1:
        raise UdassError(f"--workers {workers}: expected a positive number of processes")
    if max_width is not None and max_width < 16:
        raise UdassError(f"--max-width {max_width}: expected a width of at least 16 pixels")
    if shard is not None:
        shard_jobs([], *shard)
    summary = {"benchmark": benchmark, "needed": 0, "existing": 0, "computed": 0, "seconds": 0.0}
    if not bench.is_video:
        print(f"{benchmark} is an image benchmark: its clips are single frames and need no optical flow")
        return summary
    root = resolve_data_root(benchmark, data_root, data_cfg)
    froot = resolve_flow_root(root, flow_root, "dis")
    jobs = flow_jobs(benchmark, root, froot, data_cfg)
    part = ""
    if shard is not None:
        part = f" in shard {shard[0]}/{shard[1]} (of {len(jobs)} in all)"
        jobs = shard_jobs(jobs, *shard)
    todo = [j for j in jobs if not j.out.is_file()]
    _check_frames(todo, benchmark, root)
    print(f"{benchmark}: {len(jobs)} flows needed{part}, {len(jobs) - len(todo)} already in {froot}, "
          f"computing {len(todo)} with {workers} worker(s), DIS preset {preset}"
          + (f", max width {max_width}" if max_width else ""))
    start = time.perf_counter()
    _run(todo, workers, preset, max_width)
    seconds = time.perf_counter() - start
    fps = round(len(todo) / seconds, 3) if todo and seconds else None
    summary.update(data_root=str(root), flow_root=str(froot), needed=len(jobs),
                   existing=len(jobs) - len(todo), computed=len(todo), seconds=round(seconds, 3),
                   workers=workers, preset=preset, max_width=max_width, flows_per_second=fps,
                   shard=list(shard) if shard is not None else None)
    print(f"done: {len(todo)} flows computed in {seconds:.1f} s; the "
          + (f"shard {shard[0]}/{shard[1]} is complete" if shard is not None else "cache is complete"))
    return summary
