"""The paper profile's dry run (`udass train ... --dry-run N`) on the four paper benchmarks x two
backbones, at the datasets' real resolutions.

    python benchmarks/bench_dryrun.py [--roots DIR] [--steps 2] [--threads 2]
                                      [--benchmarks B,B] [--backbones vit,cnn]
                                      [--out results/benchmarks/dryrun.json] [--quick]

For each benchmark, a `udass synth --size paper` root (under `--roots`, generated there when
absent: `benchmarks/bench_loader.py`'s `paper_root`); for each backbone, a FRESH process runs
what

    udass train --benchmark B --backbone X --profile paper --pretrained none \\
        --data-root ROOT --dry-run STEPS --out OUT

runs (quadmix, the paper recipe, random weights: the cost does not depend on them; 4 loader
workers per loader as the profile sets) and returns its report. Recorded per combination: each
step's seconds split into data / forward-backward / mixing / update / other, the medians over
the steps after the first, peak RSS of the process and of its largest loader worker, one val
clip's evaluation, the checkpoint's size, and the projected time of the 40000-step schedule.
`--quick`: the test profile on tiny roots (checks that it runs).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from bench_loader import PAPER_IDS, paper_root  # noqa: E402

BACKBONES = ("vit", "cnn")


def cli_args(benchmark: str, backbone: str, root: Path, steps: int, out: Path, quick: bool) -> list[str]:
    """The `udass train` arguments of one dry run."""
    args = ["train", "--benchmark", benchmark, "--backbone", backbone, "--method", "quadmix",
            "--profile", "test" if quick else "paper", "--pretrained", "none", "--data-root", str(root),
            "--dry-run", str(steps), "--out", str(out)]
    if quick and benchmark.startswith("synthia-seq"):
        args += ["--set", "data.source_crop_bottom=5"]  # a tiny SYNTHIA-Seq frame has 32 rows
    return args


def one(argv: list[str], threads: int) -> dict[str, Any]:
    """In THIS process (call it in a fresh one): the dry run of `udass train argv`, as a dict."""
    import torch

    from udass.cli import build_parser
    from udass.train.dryrun import dry_run, format_report
    from udass.train.entry import config_from_args

    torch.set_num_threads(threads)
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    a = build_parser().parse_args(argv)
    report = dry_run(config_from_args(a), a.dry_run, a.out, device=a.device)
    print(format_report(report), file=sys.stderr, flush=True)
    return report.to_dict()


def summary(d: dict[str, Any]) -> dict[str, Any]:
    """The figures of one dry run that docs/performance.md tabulates."""
    med, mem, ev = d["median"], d["memory"], d["evaluation"]
    return {"step_seconds": benchlib.sig(med["total"], 4), "step_cpu_seconds": benchlib.sig(med["cpu"], 4),
            "data": round(med["data"], 2),
            "forward_backward": round(med["forward_backward"], 2), "mixing": round(med["mixing"], 2),
            "update": round(med["update"], 2), "other": round(med["other"], 2),
            "peak_rss_gib": round(mem["peak_rss"] / 2**30, 2),
            "peak_rss_before_steps_gib": round(mem["peak_rss_before_steps"] / 2**30, 2),
            "worker_peak_rss_gib": round((mem.get("worker_peak_rss") or 0) / 2**30, 2),
            "eval_seconds_per_clip": round(ev.get("seconds_per_clip", float("nan")), 2),
            "checkpoint_gib": round(d["checkpoint"]["bytes"] / 2**30, 3),
            "projected_hours": round(d["projected_seconds"]["total"] / 3600, 1),
            "missing": d["missing"]}


def run(roots: Path, steps: int, threads: int, benchmarks: tuple[str, ...], backbones: tuple[str, ...],
        quick: bool = False) -> dict[str, Any]:
    size = "tiny" if quick else "paper"
    result: dict[str, Any] = {
        "what": "udass train --profile paper --dry-run on udass synth --size paper roots: seconds per "
                "step (data / forward-backward / mixing / update / other), peak RSS, projected schedule",
        "command": benchlib.command_line(), "machine": benchlib.machine("cpu"), "size": size,
        "steps": steps, "excluded_steps": 1 if steps > 1 else 0, "threads": threads, "runs": {},
    }
    for b in benchmarks:
        root = paper_root(b, roots, size)
        for backbone in backbones:
            with tempfile.TemporaryDirectory() as tmp:
                argv = cli_args(b, backbone, root, steps, Path(tmp) / "out", quick)
                load = round(os.getloadavg()[0], 2)
                proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(argv),
                                       "--threads", str(threads)], check=True, cwd=benchlib.REPO,
                                      stdout=subprocess.PIPE, text=True)
            report = json.loads(proc.stdout.strip().splitlines()[-1])
            key = f"{b}/{backbone}"
            result["runs"][key] = {"command": "udass " + " ".join(argv), "load_average_1min_at_start": load,
                                   "summary": summary(report), "report": report}
            print(key, result["runs"][key]["summary"], flush=True)
    return result


def main() -> None:
    ap = benchlib.parser(__doc__, "dryrun.json")
    ap.set_defaults(threads=2)
    ap.add_argument("--roots", type=Path, default=Path(tempfile.gettempdir()) / "udass-paper-roots",
                    help="folder of the paper-size roots (<benchmark>; generated when absent)")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--benchmarks", default=",".join(PAPER_IDS))
    ap.add_argument("--backbones", default=",".join(BACKBONES))
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # the child process's argv (JSON)
    a = ap.parse_args()
    if a.one is not None:
        print(json.dumps(one(json.loads(a.one), a.threads)))
        return
    benchlib.save(run(a.roots, a.steps, a.threads, tuple(a.benchmarks.split(",")),
                      tuple(a.backbones.split(",")), a.quick), a.out)


if __name__ == "__main__":
    main()
