"""The generation jobs: which scenes a root holds, rendered and written one job at a time,
serially or on a process pool.

A job is a range of source frames (one drive: SYNTHIA-Seq, VIPER), a range of source images
(one scene each: GTAV, SYNTHIA-RAND-CITYSCAPES) or one target snippet. Randomness comes from
numpy Generators seeded by (seed, benchmark, domain, item), and every file comes from exactly
one job, so the output does not depend on the number of workers or the chunking.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from udass.data.synthetic.camera import Trajectory, random_trajectory
from udass.data.synthetic.render import FAR, render_frame
from udass.data.synthetic.spec import (ANNOTATED_INDEX, FRAMES_WRITTEN, SNIPPET_LENGTH,
                                       VIPER_LABEL_EVERY, Snippet, bench_spec, frame_size,
                                       size_spec, snippets)
from udass.data.synthetic.world import World, build_world
from udass.data.synthetic.writers import (SYNTHIA_RAW, city_rel, gta_label_png, png, rgb_jpeg,
                                          rgb_png, seq_rel, synthia_label_png, viper_label_png,
                                          viper_rel, write_file, write_flow)

_DOMAIN_CODES = {"source": 1, "train": 2, "val": 3}
VIPER_SEQUENCE = 1            # the drive is VIPER sequence 001
SOURCE_SKY_PERIOD = 240.0     # frames: a source drive's sky drifts between clear and overcast


def _rng(seed: int, benchmark: str, domain: str, item: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([seed, bench_spec(benchmark).code, _DOMAIN_CODES[domain],
                                  item, *extra])


@dataclass(frozen=True)
class Job:
    """One unit of work: a range of source frames / clips / images, or one snippet."""

    kind: str          # "synthia-seq" | "viper" | "source-image" | "snippet"
    benchmark: str
    seed: int
    size: str
    start: int = 0
    stop: int = 0
    snippet: Snippet | None = None


def _source_drive(job: Job, domain: str, frames: int) -> tuple[World, Trajectory]:
    """The one long drive of a video source (never stops), `frames` frames long."""
    rng = _rng(job.seed, job.benchmark, "source", 0)
    traj = random_trajectory(rng, long=True)
    travel = traj.pose(frames)[0][2]
    world = build_world(rng, domain, bench_spec(job.benchmark).rich, -20.0, travel + FAR, frames)
    world.sky_period = SOURCE_SKY_PERIOD
    return world, traj


def _run_synthia_seq(root: Path, job: Job) -> dict[str, int]:
    """SYNTHIA-Seq frames start..stop-1 of the drive, each labelled, flow for frames >= 1."""
    spec = size_spec(job.size)
    width, height = frame_size("synthia-seq", job.size)
    world, traj = _source_drive(job, "source", spec.source_frames)
    flows = 0
    for i in range(job.start, job.stop):
        fr = render_frame(world, "source", traj, width, height, i,
                          _rng(job.seed, job.benchmark, "source", 0, i), i > 0, spec.supersample)
        write_file(root / "synthia-seq" / seq_rel(i, "rgb"), rgb_png(fr.rgb))
        write_file(root / "synthia-seq" / seq_rel(i, "label"), synthia_label_png(fr.labels, fr.inst))
        if fr.flow is not None:
            write_flow(root, "synthia-seq", seq_rel(i, "rgb"), fr.flow)
            flows += 1
    return {"source_frames": job.stop - job.start, "flows": flows}


def _run_viper(root: Path, job: Job) -> dict[str, int]:
    """VIPER clips start..stop-1: clip j is labelled frame t = 10 (j + 1) with its flow and its
    previous frame t - 1 (unlabelled, as in the public release, which labels every 10th frame)."""
    spec = size_spec(job.size)
    width, height = frame_size("viper", job.size)
    world, traj = _source_drive(job, "source-ego", VIPER_LABEL_EVERY * (spec.source_frames - 1))
    for j in range(job.start, job.stop):
        t = VIPER_LABEL_EVERY * (j + 1)
        for k in (t - 1, t):
            fr = render_frame(world, "source-ego", traj, width, height, k,
                              _rng(job.seed, job.benchmark, "source", 0, k), k == t,
                              spec.supersample)
            rel = viper_rel("img", VIPER_SEQUENCE, k)
            write_file(root / "viper" / rel, rgb_jpeg(fr.rgb))
            if k == t:
                write_file(root / "viper" / viper_rel("cls", VIPER_SEQUENCE, k),
                           viper_label_png(fr.labels))
                write_flow(root, "viper", rel, fr.flow)
    n = job.stop - job.start
    return {"source_frames": 2 * n, "source_labels": n, "flows": n}


def _scene(seed: int, benchmark: str, domain_code: str, item: int, domain: str, rich: bool,
           frames: int) -> tuple[World, Trajectory]:
    rng = _rng(seed, benchmark, domain_code, item)
    traj = random_trajectory(rng, long=False)
    travel = traj.pose(frames)[0][2]
    return build_world(rng, domain, rich, -20.0, travel + FAR, frames), traj


def _run_snippet(root: Path, job: Job) -> dict[str, int]:
    """One Cityscapes(-Seq) snippet: the annotated frame (and its predecessors for video)."""
    spec, sn, bench = size_spec(job.size), job.snippet, bench_spec(job.benchmark)
    assert sn is not None
    video = bench.video
    world, traj = _scene(job.seed, job.benchmark, sn.split, sn.index, "target", bench.rich,
                         SNIPPET_LENGTH)
    ks = range(ANNOTATED_INDEX - FRAMES_WRITTEN[sn.split] + 1, ANNOTATED_INDEX + 1) if video \
        else range(ANNOTATED_INDEX, ANNOTATED_INDEX + 1)
    frames = flows = 0
    for k in ks:
        frame = sn.start + k
        fr = render_frame(world, "target", traj, spec.width, spec.height, k,
                          _rng(job.seed, job.benchmark, sn.split, sn.index, k),
                          video and k > ks[0], spec.supersample)
        data = rgb_png(fr.rgb)
        if video:
            rel = city_rel("leftImg8bit_sequence", sn, frame, "leftImg8bit")
            write_file(root / "cityscapes" / rel, data)
            frames += 1
            if fr.flow is not None:
                write_flow(root, "cityscapes", rel, fr.flow)
                flows += 1
        if k == ANNOTATED_INDEX:
            write_file(root / "cityscapes" / city_rel("leftImg8bit", sn, frame, "leftImg8bit"), data)
            write_file(root / "cityscapes" / city_rel("gtFine", sn, frame, "gtFine_labelIds"),
                       png(fr.labels))
    counts = {f"target_{sn.split}_snippets": 1}
    return {**counts, "target_sequence_frames": frames, "flows": flows} if video else counts


def _run_source_image(root: Path, job: Job) -> dict[str, int]:
    """Source images start..stop-1, one independent scene each: GTAV or SYNTHIA-RAND-CITYSCAPES."""
    spec, dataset = size_spec(job.size), bench_spec(job.benchmark).source
    width, height = frame_size(dataset, job.size)
    for i in range(job.start, job.stop):
        world, traj = _scene(job.seed, job.benchmark, "source", i, "source", True, 1)
        fr = render_frame(world, "source", traj, width, height, 0,
                          _rng(job.seed, job.benchmark, "source", i, 0), False, spec.supersample)
        if dataset == "gta":
            write_file(root / "gta" / "images" / f"{i + 1:05d}.png", rgb_png(fr.rgb))
            write_file(root / "gta" / "labels" / f"{i + 1:05d}.png", gta_label_png(fr.labels))
        else:
            write_file(root / "synthia" / "RGB" / f"{i:07d}.png", rgb_png(fr.rgb))
            write_file(root / "synthia" / "GT" / "LABELS" / f"{i:07d}.png",
                       synthia_label_png(fr.labels, fr.inst, SYNTHIA_RAW))
    return {"source_images": job.stop - job.start}


_RUNNERS: dict[str, Callable[[Path, Job], dict[str, int]]] = {
    "synthia-seq": _run_synthia_seq, "viper": _run_viper, "source-image": _run_source_image,
    "snippet": _run_snippet}


def jobs(benchmark: str, seed: int, size: str) -> list[Job]:
    """Every job of a root: the source in chunks, then one job per snippet."""
    spec, source = size_spec(size), bench_spec(benchmark).source
    n, kind, chunk = {"synthia-seq": (spec.source_frames, "synthia-seq", 30),
                      "viper": (spec.source_frames - 1, "viper", 15)
                      }.get(source, (spec.source_images, "source-image", 20))
    out = [Job(kind, benchmark, seed, size, a, min(a + chunk, n)) for a in range(0, n, chunk)]
    out += [Job("snippet", benchmark, seed, size, snippet=sn) for sn in snippets(size)]
    return out


def _run_job(args: tuple[str, Job]) -> dict[str, int]:
    root, job = args
    return _RUNNERS[job.kind](Path(root), job)


def _worker_init() -> None:
    """Pool workers (our own short-lived processes): one OpenCV thread each, and glibc keeps
    freed buffers in the heap instead of unmapping them: every frame allocates ~1 MB numpy
    temporaries, whose page faults otherwise cost a fifth of the generation time."""
    cv2.setNumThreads(1)
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)    # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)   # M_TRIM_THRESHOLD
    except (OSError, AttributeError):   # not glibc: only slower
        pass


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_all(root: Path, job_list: list[Job], workers: int) -> dict[str, int]:
    """Run jobs serially or on a process pool; returns the summed counts of their files."""
    args = [(str(root), j) for j in job_list]
    if workers <= 1 or mp.current_process().daemon:   # daemons (loader workers) cannot fork pools
        results = [_run_job(a) for a in args]
    else:
        # spawn, not fork: a forked child inherits the parent's OpenCV / OpenMP thread pools in
        # whatever state they were (e.g. after DIS ran in this process) and can deadlock.
        with mp.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
            results = pool.map(_run_job, args, chunksize=1)
    counts: dict[str, int] = {}
    for r in results:
        for key, v in r.items():
            counts[key] = counts.get(key, 0) + v
    return dict(sorted(counts.items()))
