"""`udass train ... --dry-run N`: run N real steps of the configured recipe on the user's data
and device, measure them, and list what the full schedule would stop on later.

    report = dry_run(cfg, steps=2, out=OUT)            # -> DryRunReport
    print(format_report(report))                         # exit status: 1 if report.missing

The steps are the Trainer's own (`Trainer.train_step` on batches from `Trainer.sampler` through
the run's DataLoader with `data.num_workers` workers), so the dry run times whatever the recipe
is. Measured: seconds per step split into data loading (waiting for the DataLoaders), forward-
backward, mixing, the parameter update and the rest (from the step's `udass.*` profiler ranges,
`udass.profiling`); peak memory (`torch.cuda.max_memory_allocated` on a GPU; peak RSS of the
process and of its largest loader worker on the CPU); one val clip's evaluation; the size and
serialisation time of a checkpoint. Projected: the whole schedule's time.

Walked, without decoding anything: every file of every clip the schedule reads (frames, labels,
flows of the train splits and the val split: `udass.data.splits.missing_clips`), the pretrained
file, free disk at OUT for the checkpoints the run keeps, and a run already in OUT.

Nothing is written to OUT: the steps run in a Trainer whose folder is a temporary directory,
deleted at the end, and the checkpoint is serialised in memory only. A later real run on OUT
therefore starts at step 0 (or resumes the real run that was there).
"""
from __future__ import annotations

import argparse
import copy
import io
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.utils.data import Subset

from udass.config import Config
from udass.data.splits import SplitSizeWarning, missing_clips
from udass.errors import UdassError
from udass.evaluate import align_corners_of, evaluate_model, temporal_consistency
from udass.profiling import range_parts, step_split, synchronised_ranges, time_once
from udass.runtime import device_description
from udass.train.entry import config_from_args, prepare_run
from udass.train.loop import Trainer
from udass.train.sampler import make_loader

KEPT_CHECKPOINTS = 2          # Trainer.save prunes to the last two
GIB = 2**30


@dataclass
class StepTiming:
    """Seconds of one dry-run step (step: 1-based). data: waiting for the DataLoaders; the step's
    own wall time step_s = forward_backward + mixing + update + other (see
    `udass.profiling.step_split`); cpu: the process's CPU time during the step, all threads (on a
    machine shared with other jobs, wall time grows with their load, CPU time much less)."""

    step: int
    data: float
    step_s: float
    forward_backward: float
    mixing: float
    update: float
    other: float
    cpu: float = math.nan

    @property
    def total(self) -> float:
        return self.data + self.step_s


@dataclass
class DryRunReport:
    """What a dry run measured and found. Times in seconds, sizes in bytes; `missing`: what the
    full run would stop on (empty: nothing), `notes`: what it would not stop on."""

    run: dict[str, Any]                              # benchmark, backbone, method, device, ...
    schedule_steps: int
    timings: list[StepTiming] = field(default_factory=list)
    excluded: int = 0                                # first steps left out of the medians
    setup_seconds: dict[str, float] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    checkpoint: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def timed(self) -> list[StepTiming]:
        return self.timings[self.excluded:]

    def median(self, name: str) -> float:
        """Median over the timed steps of a StepTiming field ("total" included)."""
        return statistics.median(getattr(t, name) for t in self.timed) if self.timed else math.nan

    def projected(self) -> dict[str, float]:
        """Seconds of the full schedule: median step (data + step) x steps, evaluation,
        checkpoint serialisation, set-up (model build, long-tail classes); a part that was not
        measured is NaN and left out of the total."""
        parts = {"train": self.median("total") * self.schedule_steps,
                 "evaluation": self.evaluation.get("seconds", math.nan),
                 "checkpoints": self.checkpoint.get("seconds", math.nan),
                 "setup": sum(self.setup_seconds.values())}
        parts["total"] = sum(v for v in parts.values() if not math.isnan(v))
        return parts

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["median"] = {k: self.median(k) for k in ("data", "forward_backward", "mixing", "update",
                                                   "other", "step_s", "cpu", "total")}
        d["projected_seconds"] = self.projected()
        return d


# ----------------------------------------------------------------------------------- the walk
def walk_data(trainer: Trainer) -> tuple[list[str], list[str], dict[str, int]]:
    """(missing, notes, clips per role) over every clip of the splits the schedule reads: the
    train splits the method samples (existence of every frame, label and flow file) and the val
    split (refused by the run when incomplete). A split of another size than expected is a note."""
    missing: list[str] = []
    notes: list[str] = []
    clips: dict[str, int] = {}
    roles = ["target"] + ([] if trainer.method == "oracle" else ["source"])
    for role in roles + ["val"]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SplitSizeWarning)
            try:
                ds = trainer.dataset(role)
            except UdassError as e:
                missing.append(str(e))
                continue
        notes += [str(w.message) for w in caught if issubclass(w.category, SplitSizeWarning)]
        clips[role] = len(ds)
        if role == "val":
            continue  # Trainer.dataset has checked every val file (check_split)
        bad, first, count = missing_clips(ds)
        for kind, n in count.items():
            missing.append(f"{ds.domain}/{ds.split} ({ds.layout.dataset}), {kind}: {n} missing in "
                           f"{len(bad)} of {len(ds)} clips, first {', '.join(map(str, first[kind]))}; "
                           f"`udass check-data --benchmark {ds.benchmark} --data-root {ds.data_root}` "
                           f"lists them")
    return missing, notes, clips


def check_out(cfg: Config, out: Path, checkpoint_bytes: int, count: int) -> tuple[list[str], list[str], int]:
    """(missing, notes, free bytes) for OUT: a run of another config there (the real run would
    refuse OUT), a run to resume, and free disk against the checkpoints the run keeps on disk
    at once (the last KEPT_CHECKPOINTS and the one being written)."""
    missing: list[str] = []
    notes: list[str] = []
    try:
        resume = prepare_run(cfg, out)
        if resume is not None:
            notes.append(f"{out} holds a run of this config: the real run resumes it from {resume.name}")
    except UdassError as e:
        missing.append(str(e))
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    need = checkpoint_bytes * min(count, KEPT_CHECKPOINTS + 1)
    if need > free:
        missing.append(f"disk: the run keeps up to {min(count, KEPT_CHECKPOINTS + 1)} checkpoints of "
                       f"{checkpoint_bytes / GIB:.2f} GiB at once in {out}, {need / GIB:.1f} GiB, and "
                       f"{probe} has {free / GIB:.1f} GiB free; free space or choose another --out")
    return missing, notes, free


# ----------------------------------------------------------------------------------- measuring
def peak_rss_bytes() -> int:
    """Peak resident memory of this process (getrusage; kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def children_peak_rss_bytes() -> int | None:
    """The largest peak RSS (VmHWM) among this process's live child processes (the DataLoader
    workers while they run); None where /proc does not tell (not Linux)."""
    pids: list[str] = []
    try:
        for task in Path(f"/proc/{os.getpid()}/task").iterdir():
            pids += (task / "children").read_text().split()
    except OSError:
        return None
    peaks = []
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) * 1024)
        except OSError:
            continue
    return max(peaks) if peaks else None


def run_steps(trainer: Trainer, steps: int) -> Iterator[StepTiming]:
    """Steps 1..steps of the run on `trainer` (from its current state) through the run's own
    DataLoaders, each profiled; yields each step's timing. A data error stops with UdassError."""
    cfg, device = trainer.cfg, trainer.device
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    pin = device.type == "cuda"
    workers = cfg.data.num_workers
    start = trainer.step
    tgt = iter(make_loader(trainer.dataset("target"), trainer.sampler("target", start, start + steps),
                           workers, pin))
    src = None
    if trainer.method != "oracle":
        src = iter(make_loader(trainer.dataset("source"), trainer.sampler("source", start, start + steps),
                               workers, pin))
    with synchronised_ranges(sync) if sync else nullcontext():
        for k in range(steps):
            t0 = time.perf_counter()
            target = next(tgt)
            source = next(src) if src is not None else None
            data = time.perf_counter() - t0
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                cpu = time.process_time()
                step_s, _ = time_once(lambda: trainer.train_step(source, target), sync)
                cpu = time.process_time() - cpu
            split = step_split(range_parts(prof.events()), step_s)
            yield StepTiming(start + k + 1, data, step_s, **split, cpu=cpu)


def measure_evaluation(trainer: Trainer) -> dict[str, Any]:
    """Seconds of evaluating one val clip (loading included, as `Trainer.evaluate` loads) with
    one network, and of its temporal-consistency pass (video); the schedule's evaluation time
    from them: periodic teacher evaluations every train.eval_every steps, then the final one
    (student, teacher and, on video, temporal consistency) over the val clips evaluated."""
    cfg, device = trainer.cfg, trainer.device
    val = trainer.dataset("val")
    n = min(len(val), cfg.train.eval_max_clips or len(val))
    if n == 0:
        return {"note": "empty val split"}
    one = Subset(val, [0])
    corners = align_corners_of(cfg.train.eval_align_corners, trainer.benchmark)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    per_clip, _ = time_once(lambda: evaluate_model(trainer.teacher.model, one, trainer.benchmark, device,
                                                align_corners=corners), sync)
    consistency = 0.0
    if trainer.benchmark.is_video:
        consistency, _ = time_once(lambda: temporal_consistency(trainer.learner.net, one, device), sync)
    every = cfg.train.eval_every
    periodic = (cfg.train.steps - 1) // every if every else 0
    seconds = n * ((periodic + 2) * per_clip + consistency)
    return {"seconds_per_clip": per_clip, "consistency_seconds_per_clip": consistency,
            "val_clips": n, "periodic_evaluations": periodic, "seconds": seconds}


def measure_checkpoint(trainer: Trainer) -> dict[str, Any]:
    """Bytes and serialisation seconds of one checkpoint of the trainer's state (serialised in
    memory, as `checkpoint.save_checkpoint` does before writing), and how many the run writes."""
    t0 = time.perf_counter()
    buf = io.BytesIO()
    torch.save(trainer.state_dict(), buf)
    seconds = time.perf_counter() - t0
    size = buf.getbuffer().nbytes
    del buf
    c = trainer.cfg.train
    every = max(1, c.checkpoint_every)
    count = c.steps // every + (1 if c.steps % every else 0)
    return {"bytes": size, "serialise_seconds": seconds, "count": count, "kept": KEPT_CHECKPOINTS,
            "seconds": count * seconds}


# ----------------------------------------------------------------------------------- the dry run
def dry_run(cfg: Config, steps: int, out: str | Path, device: str = "auto",
            missing: list[str] | None = None, notes: list[str] | None = None) -> DryRunReport:
    """Run `steps` real steps of `cfg` on its data and `device` and measure them (module
    docstring). `missing` / `notes`: found by the caller (the pretrained file), carried into the
    report. Nothing is written to `out`. A data error in the walk or the steps is reported in
    `missing`, not raised; an error building the run (unknown names, no data root) is raised."""
    if steps < 1:
        raise UdassError(f"--dry-run {steps}: expected a number of steps >= 1, e.g. --dry-run 3")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UdassError("--dry-run measures one process: run it without torchrun (one GPU or the CPU)")
    out = Path(out)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="udass-dry-run-") as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run", device=device, progress=False)
        build = time.perf_counter() - t0
        walked, walk_notes, clips = walk_data(trainer)
        report = DryRunReport(run=_describe(trainer, out, clips), schedule_steps=cfg.train.steps,
                              missing=list(missing or []) + walked, notes=list(notes or []) + walk_notes)
        report.setup_seconds["build"] = build
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.device)
        _measure(trainer, steps, report)
    return report


def _measure(trainer: Trainer, steps: int, report: DryRunReport) -> None:
    """Fill `report` with the steps, the evaluation, the checkpoint, OUT's checks and the peak
    memory; a data error stops the steps (named in `report.missing`), the rest is still measured."""
    cfg = trainer.cfg
    workers_peak = None
    rss_before = peak_rss_bytes()
    try:
        if cfg.train.method == "quadmix" and cfg.quadmix.long_tail:
            t0 = time.perf_counter()
            _ = trainer.long_tail  # computed once before the run's clock starts
            report.setup_seconds["long_tail"] = time.perf_counter() - t0
        for timing in run_steps(trainer, steps):
            report.timings.append(timing)
            workers_peak = max(workers_peak or 0, children_peak_rss_bytes() or 0) or None
    except UdassError as e:
        report.missing.append(f"step {len(report.timings) + 1} stopped: {e}")
    report.excluded = 1 if len(report.timings) > 1 else 0
    try:
        report.evaluation = measure_evaluation(trainer)
    except UdassError as e:
        report.evaluation = {"note": f"not measured: {e}"}
    report.checkpoint = measure_checkpoint(trainer)
    m, n, free = check_out(cfg, Path(report.run["out"]), report.checkpoint["bytes"],
                           report.checkpoint["count"])
    report.missing += m
    report.notes += n
    report.checkpoint["free_bytes"] = free
    if trainer.device.type == "cuda":
        report.memory = {"kind": "GPU", "max_allocated": torch.cuda.max_memory_allocated(trainer.device),
                         "max_reserved": torch.cuda.max_memory_reserved(trainer.device),
                         "device_total": torch.cuda.get_device_properties(trainer.device).total_memory}
    else:
        report.memory = {"kind": "CPU", "peak_rss": peak_rss_bytes(), "peak_rss_before_steps": rss_before,
                         "worker_peak_rss": workers_peak, "ram_total": ram_total_bytes()}


def ram_total_bytes() -> int | None:
    """The machine's RAM (MemTotal of /proc/meminfo), None where that cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _describe(trainer: Trainer, out: Path, clips: dict[str, int]) -> dict[str, Any]:
    c = trainer.cfg
    return {"benchmark": c.data.benchmark, "backbone": c.model.backbone, "variant": c.model.variant,
            "method": c.train.method, "profile": c.train.profile, "out": str(out),
            "device": device_description(trainer.device), "threads": torch.get_num_threads(),
            "data_root": str(trainer.data_root), "clips": clips,
            "batch": [c.data.batch_source, c.data.batch_target], "crop": list(c.data.crop_size),
            "workers": c.data.num_workers, "init": trainer.init_note}


# ----------------------------------------------------------------------------------- the report
def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "not measured"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    days = f" ({seconds / 86400:.1f} days)" if seconds >= 86400 else ""
    return f"{seconds / 3600:.1f} h{days}"


def _gib(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / 2**20:.1f} MiB"


def format_report(r: DryRunReport) -> str:
    """The dry run's report as printed by `udass train --dry-run`."""
    run = r.run
    clips = ", ".join(f"{role} {n} clips" for role, n in run["clips"].items())
    lines = [f"dry run of {run['method']} {run['backbone']} ({run['variant']}) on {run['benchmark']}, "
             f"{run['profile']} profile ({r.schedule_steps} steps), on {run['device']}",
             f"data: {run['data_root']}: {clips}; batch {run['batch'][0]} + {run['batch'][1]}, crop "
             f"{run['crop'][0]} x {run['crop'][1]}, {run['workers']} loader workers; {run['init']}"]
    if r.timings:
        lines.append(f"{'step':>5}{'data s':>9}{'step s':>9}{'fwd-bwd':>9}{'mixing':>9}{'update':>9}"
                     f"{'other':>9}{'CPU s':>9}")
        for i, t in enumerate(r.timings):
            mark = "   (first step: excluded)" if i < r.excluded else ""
            lines.append(f"{t.step:>5}{t.data:>9.2f}{t.step_s:>9.2f}{t.forward_backward:>9.2f}"
                         f"{t.mixing:>9.2f}{t.update:>9.2f}{t.other:>9.2f}{t.cpu:>9.2f}{mark}")
        first = r.timed[0].step
        steps = f"step {first}" if len(r.timed) == 1 else f"steps {first}-{r.timed[-1].step}"
        lines.append(f"median over {steps}: {r.median('total'):.2f} s per step = data {r.median('data'):.2f}"
                     f" + forward-backward {r.median('forward_backward'):.2f} + mixing "
                     f"{r.median('mixing'):.2f} + update {r.median('update'):.2f} + other "
                     f"{r.median('other'):.2f}")
    m = r.memory
    if m.get("kind") == "GPU":
        lines.append(f"peak memory: GPU {_gib(m['max_allocated'])} allocated, {_gib(m['max_reserved'])} "
                     f"reserved, of {_gib(m['device_total'])}")
    elif m:
        workers = (f", largest loader worker {_gib(m['worker_peak_rss'])}" if run["workers"] else "")
        lines.append(f"peak memory: RSS {_gib(m['peak_rss'])} (of {_gib(m['ram_total'])} RAM; "
                     f"{_gib(m['peak_rss_before_steps'])} before the steps){workers}")
    e = r.evaluation
    if "seconds" in e:
        tc = (f", temporal consistency {e['consistency_seconds_per_clip']:.1f} s"
              if e["consistency_seconds_per_clip"] else "")
        lines.append(f"evaluation: {e['seconds_per_clip']:.1f} s per val clip and network{tc}; "
                     f"{e['periodic_evaluations']} periodic (teacher) and the final evaluation over "
                     f"{e['val_clips']} val clips: {_duration(e['seconds'])}")
    elif e:
        lines.append(f"evaluation: {e['note']}")
    c = r.checkpoint
    if c:
        lines.append(f"checkpoint: {_gib(c['bytes'])}, serialised in {c['serialise_seconds']:.1f} s; "
                     f"{c['count']} written, {c['kept']} kept; {_gib(c['free_bytes'])} free at "
                     f"{run['out']}")
    if r.timings:
        p = r.projected()
        lines.append(f"projected full schedule: {r.schedule_steps} steps x {r.median('total'):.2f} s = "
                     f"{_duration(p['train'])}, + evaluation {_duration(p['evaluation'])}, checkpoints "
                     f"{_duration(p['checkpoints'])}, set-up {_duration(p['setup'])}: "
                     f"{'at least ' if any(math.isnan(v) for v in p.values()) else ''}"
                     f"{_duration(p['total'])}")
    lines += [f"note: {n}" for n in r.notes]
    if r.missing:
        lines.append(f"MISSING: {len(r.missing)} problem(s) the full run would stop on:")
        lines += [f"  - {x}" for x in r.missing]
    else:
        lines.append("nothing missing: every file the schedule reads exists, and OUT has room")
    lines.append(f"nothing was written to {run['out']} (the steps ran in a temporary folder)")
    return "\n".join(lines)


def dry_run_from_args(a: argparse.Namespace) -> int:
    """`udass train ... --dry-run N`: print the report; 0 when nothing is missing, else 1. A
    pretrained file that is missing (or not given, with the paper profile) is reported, and the
    steps start from random weights (the same cost)."""
    if a.until is not None:
        raise UdassError("--until and --dry-run do not combine: --dry-run N runs N steps and keeps nothing")
    missing: list[str] = []
    notes: list[str] = []
    args = copy.copy(a)
    given = a.pretrained
    paper = a.profile == "paper"
    if given is not None and given.lower() != "none" and not Path(given).is_file():
        missing.append(f"pretrained file {given} does not exist; download the ImageNet weights once "
                       f"(docs/models.md) and pass their path (the dry run used random weights: same cost)")
        args.pretrained = "none"
    elif given is None and paper:
        missing.append("pretrained weights: none given; the paper profile starts from ImageNet weights: "
                       "pass --pretrained PATH (mit_b5.pth for vit, the ResNet-101 file for cnn; "
                       "docs/models.md) or --pretrained none on purpose (the dry run used random "
                       "weights: same cost)")
        args.pretrained = "none"
    elif given is not None and given.lower() == "none" and paper:
        notes.append("--pretrained none: random initialisation, as asked; the paper's numbers start "
                     "from ImageNet weights (docs/models.md)")
    cfg = config_from_args(args)
    # kineto prints two lines per profiled step at its default log level; the report is the output
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    report = dry_run(cfg, a.dry_run, a.out, device=a.device, missing=missing, notes=notes)
    print(format_report(report), flush=True)
    return 1 if report.missing else 0
