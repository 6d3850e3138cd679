"""Shared helpers of the benchmark scripts: machine description, timing statistics, output.

Every figure the scripts report is a ratio (or a share) measured side by side in one process,
its two sides interleaved, so that other jobs on a shared machine slow both sides alike; each
side is the median of several repeats. Absolute times are recorded beside the ratios but depend
on the machine and its load.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "benchmarks"
if str(REPO) not in sys.path:  # `python benchmarks/bench_X.py` from a source checkout
    sys.path.insert(0, str(REPO))

from udass.profiling import time_once  # noqa: E402,F401  (the benchmarks call benchlib.time_once)

SHARED_NOTE = ("measured on a shared machine (other jobs used the CPU at the same time): absolute "
               "times are indicative; ratios compare sides measured interleaved in one process")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str = "cpu") -> dict[str, Any]:
    """Where a measurement ran: CPU model, cores, torch version and threads, load, GPU name."""
    info: dict[str, Any] = {
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "python": platform.python_version(),
        "platform": platform.platform(), "load_average_1min": round(os.getloadavg()[0], 2),
        "cuda_available": torch.cuda.is_available(), "shared": True, "note": SHARED_NOTE,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def stats(values: Sequence[float], scale: float = 1.0, digits: int = 3) -> dict[str, Any]:
    """Median, min, max and count of `values` x scale."""
    v = [x * scale for x in values]
    return {"median": round(statistics.median(v), digits), "min": round(min(v), digits),
            "max": round(max(v), digits), "n": len(v)}


def sig(x: float, digits: int = 3) -> float:
    """`x` to `digits` significant figures: a short time stays non-zero on a fast machine, where
    rounding to fixed decimals would print 0.0."""
    return float(f"{x:.{digits}g}")


def ratio(a: float, b: float, digits: int = 3) -> float | None:
    return round(a / b, digits) if b else None


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
                ) -> dict[str, list[float]]:
    """Seconds of `repeats` calls of each function, called in turn (a, b, a, b, ...; the order
    rotates each round), after `warmup` untimed rounds."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            dt, _ = time_once(fns[n])
            if r >= warmup:
                times[n].append(dt)
    return times


def parser(doc: str, default_out: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (tests): checks that it runs")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: least disturbed on a shared 2-core machine)")
    ap.add_argument("--out", type=Path, default=RESULTS / default_out)
    return ap


def command_line() -> str:
    """The command that ran this script, with the script's path relative to the repository."""
    script = Path(sys.argv[0]).resolve()
    name = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    args = [a.replace(f"{REPO}/", "") for a in sys.argv[1:]]  # paths inside the repository: relative
    return " ".join(["python", str(name), *args])


def save(result: dict[str, Any], out: Path) -> None:
    """Write the JSON atomically and print it."""
    import json

    from udass.io import write_json

    write_json(out, result)
    print(json.dumps(result, indent=2))
