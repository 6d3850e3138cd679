"""Run the benchmarks and write results/benchmarks/README.md, a summary table generated from their JSON.

    python benchmarks/run_all.py [--threads 1] [--with-flow] [--summary-only] [--quick]
                                 [--results results/benchmarks]

Runs, each in its own fresh process, one after the other: bench_step.py (step time ratios and
where a QuadMix step's time goes, plus a larger model per backbone for the trend),
bench_kernels.py (mixing and prototype kernels vs loops), bench_eval.py (confusion matrix vs
numpy) and bench_memory.py (peak RSS; GPU memory where CUDA is available). The DIS flow figures
are read from flow.json as bench_flow.py last wrote it (`--with-flow` runs it again: several
minutes); step_gpu.json (bench_step.py --device cuda --profile paper) is summarised when
present. `--summary-only` regenerates README.md from the JSON files present. `--quick` (tests):
tiny sizes, into `--results`.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

HERE = Path(__file__).resolve().parent
SCRIPTS = {  # JSON name -> (script, extra arguments of the full run)
    "step": ("bench_step.py", ["--variant", "vit=mit_b0", "--variant", "cnn=resnet18"]),
    "kernels": ("bench_kernels.py", []),
    "eval": ("bench_eval.py", []),
    "memory": ("bench_memory.py", []),
}


def run_scripts(results: Path, threads: int, quick: bool, with_flow: bool) -> dict[str, float]:
    """Each benchmark in a fresh process; returns the wall seconds of each."""
    wall = {}
    jobs = [(name, script, extra) for name, (script, extra) in SCRIPTS.items()]
    if with_flow and not quick:
        jobs.append(("flow", "bench_flow.py", []))
    for name, script, extra in jobs:
        cmd = [sys.executable, str(HERE / script), "--out", str(results / f"{name}.json")]
        if script != "bench_flow.py":
            cmd += ["--threads", str(threads)] + (["--quick"] if quick else extra)
        print("$", " ".join(cmd), flush=True)
        t0 = time.time()
        subprocess.run(cmd, check=True, cwd=benchlib.REPO, stdout=subprocess.DEVNULL if quick else None)
        wall[name] = round(time.time() - t0, 1)
    return wall


# ----------------------------------------------------------------------------------- summary
def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _yes(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "**no**")


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def step_rows(d: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key, r in d["backbones"].items():
        ms = r["step_ms"]
        rat, share = r["ratios"], r["breakdown"]["quadmix"]["outside_network_share"]
        name = f"{key} ({r['variant']}, crop {r['input']['crop_hw'][1]}x{r['input']['crop_hw'][0]})"
        times = ", ".join(f"{m} {ms[m]['median']} ms" for m in ("quadmix", "dacs", "source_only"))
        rows.append([f"step time quadmix / dacs, {name}", f"{rat['quadmix/dacs']}x ({times})", "<= 2.2x",
                     _yes(rat["quadmix/dacs"] <= 2.2)])
        rows.append([f"step time quadmix / source_only, {name}", f"{rat['quadmix/source_only']}x", "", ""])
        outside = {k: v for k, v in r["breakdown"]["quadmix"]["share"].items()
                   if k not in ("student_forward", "backward", "teacher_forward")}
        top = ", ".join(f"{k} {_pct(v)}" for k, v in sorted(outside.items(), key=lambda kv: -kv[1])[:4])
        rows.append([f"share of a quadmix step outside the network passes, {name}",
                     f"{_pct(share)} (largest: {top})", "< 15 %", _yes(share < 0.15)])
    return rows


def kernel_rows(d: dict[str, Any]) -> list[list[str]]:
    s = d["size"]
    size = f"B={s['batch']}, K={s['frames']}, {s['width']}x{s['height']}, C={s['classes']}"
    rows = []
    for key, label, ref in (("quadmix", "four-path paste (template masks + quadmix)", "per-sample/per-class loop"),
                            ("class_mask", "class_mask", "per-sample/per-class loop"),
                            ("class_prototypes", "class_prototypes", "per-sample/per-class loop"),
                            ("strong_augment", "strong_augment (drawn samples only)",
                             "augmenting every sample, then selecting")):
        if key not in d:  # a kernels.json written before the entry existed
            continue
        r = d[key]
        same = "identical" if r["identical_outputs"] else "**DIFFERENT**"
        rows.append([f"{label} vs {ref}, {size}",
                     f"{r['speedup_loop_over_vectorised']}x faster ({r['vectorised_ms']['median']} vs "
                     f"{r['loop_ms']['median']} ms; outputs {same})", "", ""])
    return rows


def eval_rows(d: dict[str, Any]) -> list[list[str]]:
    i, mpx = d["input"], d["mpixels_per_s"]
    same = "identical" if d["identical_matrices"] else "**DIFFERENT**"
    return [[f"ConfusionMatrix.update vs numpy bincount, {i['images']} x {i['width']}x{i['height']}",
             f"{d['throughput_ratio_udass_over_numpy']}x the numpy throughput ({mpx['udass']} vs "
             f"{mpx['numpy']} Mpx/s; matrices {same})", "", ""]]


def flow_rows(d: dict[str, Any]) -> list[list[str]]:
    rows = []
    for size, r in d["sizes"].items():
        one, two = r["dis_1proc_1thread"]["best_fps"], r["dis_2workers"]["best_fps"]
        rows.append([f"DIS flow (preset medium) at {size}",
                     f"{one} pairs/s per 1-thread worker, {two} pairs/s with 2 workers "
                     f"({two / one:.2f}x)", "", ""])
    return rows


def memory_rows(d: dict[str, Any]) -> list[list[str]]:
    rows = []
    cpu = d["cpu"]
    for r in cpu["runs"]:
        rows.append([f"peak RSS of {cpu['profile']} training steps, {r['backbone']} ({r['variant']}) "
                     f"{r['method']}", f"{r['peak_rss_mib']} MiB (steps add {r['step_rss_rise_mib']} MiB)",
                     "", ""])
    for b, rat in cpu.get("ratios", {}).items():
        if "quadmix/dacs" in rat:
            rows.append([f"RSS added by a step, quadmix / dacs, {b}", f"{rat['quadmix/dacs']}x", "", ""])
    gpu = d["gpu"]
    if gpu.get("status") == "measured":
        for r in gpu["runs"]:
            rows.append([f"GPU memory, paper profile, {r['variant']} {r['method']} ({gpu['device']})",
                         f"{r['max_memory_allocated_mib']} MiB allocated, "
                         f"{r['max_memory_reserved_mib']} MiB reserved", "", ""])
    else:
        for b, lb in gpu["static_lower_bound"].items():
            rows.append([f"GPU memory, paper profile (crop 1024x512, batch 1+1), {lb['variant']}",
                         f"{gpu['status']} (weights, gradients and optimiser state alone: "
                         f"{lb['mib']} MiB, counted)", "", ""])
    return rows


SECTIONS: list[tuple[str, str, str, Callable[[dict[str, Any]], list[list[str]]]]] = [
    ("step", "Training step: time ratios and where a QuadMix step goes",
     "python benchmarks/bench_step.py --variant vit=mit_b0 --variant cnn=resnet18", step_rows),
    ("step_gpu", "Training step on a GPU, paper profile",
     "python benchmarks/bench_step.py --device cuda --profile paper --out results/benchmarks/step_gpu.json",
     step_rows),
    ("kernels", "Mixing and aggregation kernels vs loop references", "python benchmarks/bench_kernels.py",
     kernel_rows),
    ("eval", "Evaluation: confusion-matrix accumulation", "python benchmarks/bench_eval.py", eval_rows),
    ("flow", "Optical flow (OpenCV DIS)", "python benchmarks/bench_flow.py", flow_rows),
    ("memory", "Memory", "python benchmarks/bench_memory.py", memory_rows),
]


def summary(results: Path) -> str:
    """The README.md text: a table per benchmark, generated from the JSON files present."""
    lines = ["# Benchmarks", "",
             "Generated by `python benchmarks/run_all.py` from the JSON files in this folder; do not "
             "edit by hand. Method, machine and notes: `docs/performance.md`.", ""]
    machine = None
    body: list[str] = []
    for name, title, command, rows in SECTIONS:
        d = _load(results, name)
        body += [f"## {title}", ""]
        if d is None:
            body += [f"Not run here: `{command}` writes `{name}.json`.", ""]
            continue
        machine = machine or d.get("machine")
        body += [f"`{name}.json`, written by `{d.get('command', command)}`.", "",
                 "| figure | value | target | met |", "|---|---|---|---|"]
        body += [f"| {fig} | {value} | {target} | {met} |" for fig, value, target, met in rows(d)]
        body.append("")
    if machine:
        lines += [f"Machine: {machine.get('cpu')}, {machine.get('cpu_count') or machine.get('cpus')} cores, "
                  f"torch {machine.get('torch', '?')}, {machine.get('torch_threads', '?')} torch thread(s); "
                  f"{benchlib.SHARED_NOTE}.", ""]
    return "\n".join(lines + body).rstrip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--with-flow", action="store_true")
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--results", type=Path, default=benchlib.RESULTS)
    a = ap.parse_args()
    if not a.summary_only:
        wall = run_scripts(a.results, a.threads, a.quick, a.with_flow)
        print("wall seconds:", wall)
    from udass.io import write_text

    text = summary(a.results)
    write_text(a.results / "README.md", text)
    print(text)


if __name__ == "__main__":
    main()
