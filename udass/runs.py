"""The run cache: one folder per Config, trained once and reused by every notebook.

A training run of a Config lives in `<runs_root>/<benchmark>/<backbone>/<method>/<profile>-s<seed>-<hash>`
(`run_dir`), the hash covering the config minus the run-control keys
(`udass.train.RUN_CONTROL_KEYS`). `ensure_run` reuses a finished run of the same config (never
retrains), resumes an unfinished one, else trains, holding a lock on the folder so that two
notebooks (or processes) asking for one run train it once. Notebooks therefore share runs: the
ablation's `classmix` row is the table's `dacs` run. `udass run-dir` prints the folder of a
config, for training it outside the notebooks (e.g. with torchrun) where they will find it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from udass.checkpoint import last_checkpoint
from udass.config import Config, config_diff
from udass.errors import UdassError
from udass.io import read_json
from udass.params import config_for, parse_params
from udass.train import RUN_CONTROL_KEYS, train


def _identity(cfg: Config | Mapping[str, Any]) -> dict[str, Any]:
    """The config dict without the run-control keys (what a run computes depends on this only)."""
    d = json.loads(json.dumps(cfg.to_dict() if isinstance(cfg, Config) else dict(cfg)))
    for key in RUN_CONTROL_KEYS:
        sec, name = key.split(".", 1)
        d.get(sec, {}).pop(name, None)
    return d


def config_hash(cfg: Config) -> str:
    """8 hex digits of the SHA-256 of the config minus the run-control keys."""
    text = json.dumps(_identity(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def run_dir(cfg: Config, runs_root: str | os.PathLike = "runs") -> Path:
    """`<runs_root>/<benchmark>/<backbone>/<method>/<profile>-s<seed>-<config hash>`."""
    return (Path(runs_root) / cfg.data.benchmark / cfg.model.backbone / cfg.train.method
            / f"{cfg.train.profile}-s{cfg.train.seed}-{config_hash(cfg)}")


def finished_record(cfg: Config, out: str | os.PathLike) -> dict[str, Any] | None:
    """The metrics record of a finished run of `cfg` in `out`, or None when it is not finished.

    Finished: metrics.json at the schedule's last step and run.json whose config equals `cfg`
    up to the run-control keys. A finished run of another config is an error naming the fields.
    """
    out = Path(out)
    rec, info = read_json(out / "metrics.json"), read_json(out / "run.json")
    if rec is None or info is None or "config" not in info:
        return None
    diff = config_diff(_identity(info["config"]), _identity(cfg))
    if diff:
        raise UdassError(f"{out} holds a run of another config (fields {', '.join(diff[:6])}); "
                         f"move it away or use another runs_root")
    if int(rec.get("step") or 0) < cfg.train.steps:
        return None
    return rec


def ensure_run(cfg: Config, runs_root: str | os.PathLike = "runs", device: str = "auto",
               progress: bool = True) -> dict[str, Any]:
    """The metrics record of `cfg`'s run, training only what is missing.

    A finished run with the same config is reused as it is (never retrained, not re-evaluated);
    an unfinished one resumes from its last checkpoint; else the run is trained
    (`udass.train.train`). Returns the metrics.json record plus "run_dir" and "reused".
    """
    out = run_dir(cfg, runs_root)
    with _run_lock(out):  # two notebooks (or processes) asking for one run: one trains, one waits
        return _ensure_run_locked(cfg, out, device, progress)


@contextlib.contextmanager
def _run_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on a run folder (`fcntl.flock` on `<run>.lock` beside it), held while
    the run is checked and trained."""
    # fcntl exists on POSIX only: imported where the lock is taken, so that the rest of the
    # module (and the notebooks' imports) work on any OS
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _ensure_run_locked(cfg: Config, out: Path, device: str, progress: bool) -> dict[str, Any]:
    rec = finished_record(cfg, out)
    reused = rec is not None
    if rec is None:
        started = time.time()
        print(f"training {cfg.train.method} ({cfg.model.backbone}, {cfg.data.benchmark}, "
              f"{cfg.train.profile}, seed {cfg.train.seed}, {cfg.train.steps} steps) -> {out}",
              flush=True)
        rec = train(cfg, out, device=device, progress=progress)
        if rec is None:  # pragma: no cover - train() without `until` always finishes
            raise UdassError(f"training of {out} stopped before the end of its schedule; run again")
        print(f"  done in {time.time() - started:.0f} s: mIoU {rec['miou']}", flush=True)
    return {**rec, "run_dir": str(out), "reused": reused}


def run_checkpoint(cfg: Config, runs_root: str | os.PathLike) -> Path:
    """The last checkpoint of `cfg`'s (finished) run."""
    out = run_dir(cfg, runs_root)
    path = last_checkpoint(out)
    if path is None:
        raise UdassError(f"run {out} has no checkpoint (checkpoints/ was removed?); delete the run "
                         f"folder and run again to retrain it")
    return path


def notebook_run_dir(benchmark: str = "synthetic-video", backbone: str = "vit", method: str = "quadmix",
                     profile: str = "demo", seed: int = 0, steps: int | None = None,
                     data_root: str | None = None, pretrained: str | None = None,
                     overrides: Mapping[str, Any] | None = None,
                     runs_root: str | os.PathLike = "runs") -> Path:
    """The run-cache folder of the run a notebook with these parameters uses (`udass run-dir`):
    train into it outside the notebooks (e.g. `torchrun ... -m udass train --out DIR` on several
    GPUs) and the notebooks reuse the run. Parameters are checked as the notebooks check them."""
    p = parse_params(benchmark, backbone, method, profile, steps, data_root, seed, pretrained,
                     "auto", "results", runs_root)
    return run_dir(config_for(p, method, seed, overrides), p.runs_root)
