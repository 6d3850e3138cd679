"""The entry points of a run: `train` (a Config into OUT, resuming or reusing a finished run),
`prepare_run` (OUT's checkpoint against the config), `finished_metrics`, and the `udass train`
command line (`config_from_args`, `train_from_args`)."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

from udass import checkpoint as ckpt
from udass.config import Config, build_config, config_diff, config_from_dict, parse_set_args, recipe
from udass.errors import UdassError
from udass.io import write_json
from udass.train.loop import RUN_CONTROL_KEYS, Trainer


def prepare_run(cfg: Config, out: Path) -> Path | None:
    """Check OUT against cfg: returns the checkpoint to resume from (None: a fresh run).
    A different config on an existing OUT is an error naming the differing fields."""
    last = ckpt.last_checkpoint(out)
    if last is None:
        return None
    state = torch.load(last, map_location="cpu", weights_only=False)
    diff = [k for k in config_diff(state["config"], cfg) if k not in RUN_CONTROL_KEYS]
    if diff:
        old = config_from_dict(state["config"]).to_dict()
        new = cfg.to_dict()
        shown = ", ".join(f"{k} ({_get(old, k)!r} there, {_get(new, k)!r} now)" for k in diff[:6])
        raise UdassError(f"{out} holds a run with another config: {shown}; use a new --out or the "
                         f"same flags to resume it")
    return last


def _get(d: dict[str, Any], key: str) -> Any:
    sec, name = key.split(".", 1)
    return d.get(sec, {}).get(name)


def finished_metrics(cfg: Config, out: str | Path) -> dict[str, Any] | None:
    """The metrics.json record of a finished run of `cfg` in OUT (its last checkpoint and its
    metrics at the schedule's last step), else None. OUT's config is not checked here
    (`prepare_run` does)."""
    out = Path(out)
    found = ckpt.list_checkpoints(out)
    if not found or found[-1][0] != cfg.train.steps or not (out / "metrics.json").is_file():
        return None
    try:
        rec = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("step") == cfg.train.steps else None


def train(cfg: Config, out: str | Path, until: int | None = None, device: str = "auto",
          progress: bool = True, reevaluate: bool = False) -> dict[str, Any] | None:
    """Train `cfg` into OUT, resuming from OUT's last checkpoint when there is one. A finished
    OUT (last checkpoint and metrics.json at the schedule's end) returns its metrics.json record
    as it is, unless `reevaluate`; a finished OUT without metrics is evaluated. Returns the
    metrics record when the schedule is complete, None when stopped earlier (`until`).
    Raises `Interrupted` on SIGINT / SIGTERM after checkpointing the last completed step."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UdassError(f"--out {out} is a file, expected a folder for the run; pass a new or "
                         f"existing run folder")
    resume = prepare_run(cfg, out)
    if resume is not None and not reevaluate:
        done = finished_metrics(cfg, out)
        if done is not None:
            return done
    trainer = Trainer(cfg, out, device=device, progress=progress)
    if resume is not None:
        state = ckpt.load_checkpoint(resume, map_location=trainer.device)
        trainer.load_state_dict(state)
    trainer.check_data()
    out.mkdir(parents=True, exist_ok=True)
    if trainer.dist.is_main and resume is None:
        write_json(out / "config.json", cfg.to_dict())
    rec = trainer.run(until=until)
    if rec is None and trainer.dist.is_main:
        trainer.write_run_json()
    return rec


def config_from_args(a: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = dict(parse_set_args(a.overrides))
    if getattr(a, "recipe", None):
        overrides = {**recipe(a.recipe, a.benchmark, a.backbone, a.profile), **overrides}
    if a.steps is not None:
        overrides["train.steps"] = a.steps
    if a.checkpoint_every is not None:
        overrides["train.checkpoint_every"] = a.checkpoint_every
    if a.pretrained is not None:
        overrides["model.pretrained"] = None if a.pretrained.lower() == "none" else a.pretrained
    cfg = build_config(a.benchmark, a.backbone, a.method, a.profile, overrides, seed=a.seed,
                       data_root=str(a.data_root) if a.data_root else None,
                       flow_root=str(a.flow_root) if a.flow_root else None)
    if cfg.train.profile == "paper" and cfg.model.pretrained is None and a.pretrained is None:
        raise UdassError("the paper profile starts from ImageNet weights: pass --pretrained PATH "
                         "(mit_b5.pth for vit, the ResNet-101 ImageNet file for cnn; see "
                         "docs/models.md) or --pretrained none to train from scratch on purpose")
    if cfg.model.pretrained and not Path(cfg.model.pretrained).is_file():
        raise UdassError(f"pretrained file {cfg.model.pretrained} does not exist; download the "
                         f"ImageNet weights once (docs/models.md) and pass their path")
    return cfg


def train_from_args(a: argparse.Namespace) -> None:
    cfg = config_from_args(a)
    reevaluate = bool(getattr(a, "reevaluate", False))
    if not reevaluate and Path(a.out).is_dir() and finished_metrics(cfg, a.out) is not None:
        prepare_run(cfg, Path(a.out))  # the same config, or the error naming the fields
        rec = finished_metrics(cfg, a.out)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"{a.out} is already finished (step {cfg.train.steps} of {cfg.train.steps}; mIoU "
                  f"student {rec['miou']:.2f}: {Path(a.out) / 'metrics.json'}); nothing to do "
                  f"(--reevaluate evaluates it again)")
        return
    rec = train(cfg, a.out, until=a.until, device=a.device, reevaluate=reevaluate)
    if rec is not None and int(os.environ.get("RANK", "0")) == 0:
        teacher = rec.get("teacher") or {}
        print(f"{cfg.train.method} {cfg.model.backbone} on {cfg.data.benchmark}: mIoU student "
              f"{rec['miou']:.2f}, teacher {teacher.get('miou', float('nan')):.2f} "
              f"({Path(a.out) / 'metrics.json'})")
