"""Speed of `udass flow` (OpenCV DIS optical flow) on this machine, and what the real datasets cost.

    .venv/bin/python benchmarks/bench_flow.py [--repeats 3] [--out results/benchmarks/flow.json]

Measured at 1024 x 512 and 2048 x 1024 (Cityscapes' stored size), DIS preset `medium` (the
default of `udass flow`), on a textured synthetic frame pair (a blurred random texture and a copy
moved by a smooth warp; DIS time depends on resolution far more than on content):

- `dis_1proc_1thread`: one process, OpenCV limited to one thread (what each pool worker runs);
- `dis_1proc_default_threads`: one process, OpenCV's default thread count (`--workers 1`);
- `dis_2workers`: two worker processes of one thread each (`--workers 2`), pairs per second of
  the pool together (pool start-up excluded);
- `flow_command_on_2048x1024_frames`: the whole per-flow work of `udass flow` on 2048 x 1024 PNG
  frames (decode two PNGs, [downscale,] DIS, write the int16 .npy atomically; `compute_one`),
  stored at full resolution or with `--max-width 1280` / `1024`, with 1 and 2 workers.

The machine is shared (other processes use the CPU too): each figure is the BEST of `--repeats`
runs (all runs are recorded). Derived: the time and disk cost of the Cityscapes-Seq train split
(2975 annotated frames x 2 flows: t -> t-1 and t-1 -> t-2) at the stored resolution and at
`--max-width 1280` / `1024`. Writes JSON (atomically) and prints it.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from udass.io import write_json

SIZES = {"1024x512": (512, 1024), "2048x1024": (1024, 2048)}
PAIRS = {"1024x512": 16, "2048x1024": 4}   # frame pairs per timed run
CITYSCAPES_SEQ_TRAIN_FLOWS = 2975 * 2
SCENARIOS = (("stored_2048x1024", None), ("max_width_1280", 1280), ("max_width_1024", 1024))
_FRAMES: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def frame_pair(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured uint8 RGB frame and its copy moved by a smooth displacement (cached)."""
    import cv2

    if (h, w) not in _FRAMES:
        rng = np.random.default_rng(0)
        tex = sum(cv2.resize(rng.random((h // s, w // s, 3)).astype(np.float32), (w, h)) for s in (2, 8, 32))
        prev = (tex / 3 * 255).clip(0, 255).astype(np.uint8)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        mx = (xs - 4 * np.sin(ys / h * 3)).astype(np.float32)
        my = (ys - 2 * np.cos(xs / w * 5)).astype(np.float32)
        _FRAMES[h, w] = (cv2.remap(prev, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), prev)
    return _FRAMES[h, w]


def _dis(size: tuple[int, int]) -> float:
    from udass.data.flow import estimate_flow_dis

    cur, prev = frame_pair(*size)
    start = time.perf_counter()
    estimate_flow_dis(cur, prev, "medium")
    return time.perf_counter() - start


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def time_in_process(size: tuple[int, int], pairs: int, threads: int | None) -> float:
    """Pairs per second of DIS in this process (threads None: OpenCV's default)."""
    import cv2

    default = cv2.getNumThreads()
    cv2.setNumThreads(threads if threads else default)
    _dis(size)  # warm-up (and frame generation)
    start = time.perf_counter()
    for _ in range(pairs):
        _dis(size)
    seconds = time.perf_counter() - start
    cv2.setNumThreads(default)
    return pairs / seconds


def time_pool(size: tuple[int, int], pairs: int, workers: int) -> float:
    """Pairs per second of a pool of single-threaded worker processes (start-up excluded)."""
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        pool.map(_dis, [size] * workers, chunksize=1)  # warm-up: import, frame generation
        start = time.perf_counter()
        pool.map(_dis, [size] * (pairs * workers), chunksize=1)
        return pairs * workers / (time.perf_counter() - start)


def _compute(args: tuple) -> None:
    from udass.data.flowcache import FlowJob, compute_one

    t, p, out, max_width = args
    compute_one(FlowJob(Path(t), Path(p), Path(out)), max_width=max_width)


def time_flow_command(size: tuple[int, int], pairs: int, workers: int, max_width: int | None) -> float:
    """Flows per second of what `udass flow` runs per flow (decode two PNGs, DIS, atomic .npy
    write), in this process (workers 1, OpenCV default threads) or a pool of 1-thread workers."""
    import cv2

    cur, prev = frame_pair(*size)
    with tempfile.TemporaryDirectory() as tmp:
        t, p = Path(tmp) / "t.png", Path(tmp) / "p.png"
        cv2.imwrite(str(t), cv2.cvtColor(cur, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(p), cv2.cvtColor(prev, cv2.COLOR_RGB2BGR))
        jobs = [(str(t), str(p), str(Path(tmp) / f"f{i}.npy"), max_width) for i in range(pairs * workers)]
        if workers == 1:
            _compute((str(t), str(p), str(Path(tmp) / "warm.npy"), max_width))
            start = time.perf_counter()
            for job in jobs:
                _compute(job)
            return len(jobs) / (time.perf_counter() - start)
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
            pool.map(_compute, [(str(t), str(p), str(Path(tmp) / f"w{i}.npy"), max_width)
                                for i in range(workers)], chunksize=1)
            start = time.perf_counter()
            pool.map(_compute, jobs, chunksize=1)
            return len(jobs) / (time.perf_counter() - start)


def best_of(fn, repeats: int, *args) -> dict:
    runs = [round(fn(*args), 3) for _ in range(repeats)]
    return {"best_fps": max(runs), "runs_fps": runs}


def cityscapes_cost(command: dict) -> dict:
    """Time (hours) and disk (GB) of the Cityscapes-Seq train flows, stored 2048, 1280 or 1024 wide."""
    n = CITYSCAPES_SEQ_TRAIN_FLOWS
    out = {"flows": n, "note": "2975 annotated frames x (t -> t-1, t-1 -> t-2); hours from the best "
                               "flows/s of the `udass flow` per-flow work on 2048 x 1024 PNG frames"}
    for key, width in SCENARIOS:
        nbytes = (width or 2048) * (width or 2048) // 2 * 2 * 2 + 128
        fps = {w: command[f"{key}_{w}"]["best_fps"] for w in ("workers1", "workers2")}
        out[key] = {"flow_mb": round(nbytes / 1e6, 2), "disk_gb": round(n * nbytes / 1e9, 1),
                    "hours_workers1": round(n / fps["workers1"] / 3600, 2),
                    "hours_workers2": round(n / fps["workers2"] / 3600, 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("results/benchmarks/flow.json"))
    a = ap.parse_args()
    import cv2

    result: dict = {"what": "OpenCV DIS optical flow (preset medium) frame pairs per second; best of "
                            f"{a.repeats} runs on a shared machine", "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "opencv": cv2.__version__, "opencv_default_threads": cv2.getNumThreads()}, "sizes": {}}
    for name, size in SIZES.items():
        n = PAIRS[name]
        result["sizes"][name] = {
            "dis_1proc_1thread": best_of(time_in_process, a.repeats, size, n, 1),
            "dis_1proc_default_threads": best_of(time_in_process, a.repeats, size, n, None),
            "dis_2workers": best_of(time_pool, a.repeats, size, n, 2),
        }
        print(name, json.dumps(result["sizes"][name]), flush=True)
    command = {}
    for key, max_width in SCENARIOS:
        for workers in (1, 2):
            command[f"{key}_workers{workers}"] = best_of(time_flow_command, a.repeats, SIZES["2048x1024"],
                                                         PAIRS["2048x1024"], workers, max_width)
            print(key, workers, json.dumps(command[f"{key}_workers{workers}"]), flush=True)
    result["flow_command_on_2048x1024_frames"] = command
    result["cityscapes_seq_train"] = cityscapes_cost(command)
    write_json(a.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
