"""What the notebooks call: parameters, the run cache, tables, ablations, figures, `reproduce`.

Every notebook is thin: a `parameters` cell, one call into this module, display. The calls:

    run_table(notebook, benchmark, backbone, methods, ...)    01_train_image, 02_train_video
    run_ablation(notebook, benchmark, backbone, methods, ...)  03_ablation (methods = ABLATIONS rows)
    qualitative(...), tsne(...), quadmix_explorer(...)         04, 05, 00 (udass.explore)
    reproduce(profile, data_root, only)                        `udass reproduce`: every notebook
    demo()                                                     `udass demo`: the main job

Run cache. A training run of a Config lives in
`<runs_root>/<benchmark>/<backbone>/<method>/<profile>-s<seed>-<hash>` (`run_dir`), the hash
covering the config minus the run-control keys (`udass.train.RUN_CONTROL_KEYS`). `ensure_run`
reuses a finished run of the same config (never retrains), resumes an unfinished one, else
trains. Notebooks therefore share runs: the ablation's `classmix` row is the table's `dacs` run.

Results. `results/<notebook>/<benchmark>/<backbone>/` holds table.md / table.csv, PNG figures,
a combined metrics.json and copies of each run's metrics.json and run.json under
`runs/<method>-s<seed>/`; checkpoints stay in runs/ (git-ignored). Numbers are never typed in.
"""
from __future__ import annotations

import contextlib

import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from udass.config import (ABLATIONS, BACKBONES, METHODS, PROFILES, Config, ablation_rows, build_config,
                          config_diff)
from udass.data.protocols import BENCHMARKS, get_benchmark
from udass.errors import UdassError
from udass.io import write_bytes, write_json, write_text
from udass.runtime import REPO_ROOT, git_commit

__all__ = ["NOTEBOOKS", "Params", "anchor", "parse_params", "check_int", "config_for", "config_hash",
           "run_dir", "run_checkpoint", "results_folder", "save_figure", "param_error",
           "finished_record", "ensure_run", "run_table", "run_ablation", "qualitative", "tsne",
           "quadmix_explorer", "show_explorer", "reproduce", "reproduce_plan", "demo",
           "run_notebook", "write_results_index", "REFERENCE_NETWORK"]

NOTEBOOKS = ("00_quadmix_explorer", "01_train_image", "02_train_video", "03_ablation",
             "04_qualitative", "05_tsne")
# The network our tables report. DAFormer / MIC (which QuadMix builds on) and DACS evaluate the
# student; the EMA teacher's numbers are kept in every metrics.json beside it.
REFERENCE_NETWORK = "student"
DEVICES = ("auto", "cpu", "cuda")
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
LOG_KEYS = ("loss_total", "loss_src", "loss_trg", "loss_mix", "loss_feat", "loss_agg",
            "pseudo_weight")
PAPER_BENCHMARKS = {"image": ("gtav2cityscapes", "synthia2cityscapes"),
                    "video": ("synthia-seq2cityscapes-seq", "viper2cityscapes-seq")}
PRETRAINED_ENV = {"cnn": "UDASS_PRETRAINED_CNN", "vit": "UDASS_PRETRAINED_VIT"}


# =========================================================================== parameters
@dataclass(frozen=True)
class Params:
    """Validated notebook parameters (see `parse_params`)."""

    benchmark: str
    backbone: str
    methods: tuple[str, ...]
    profile: str
    steps: int | None
    data_root: str | None
    seeds: tuple[int, ...]
    pretrained: str | None
    device: str
    results_dir: Path
    runs_root: Path


def _given(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def param_error(name: str, expected: str, value: Any) -> UdassError:
    return UdassError(f"parameter `{name}`: expected {expected}, got {_given(value)}")


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null"))


def _choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value.strip() not in choices:
        raise param_error(name, f"one of {', '.join(choices)}", value)
    return value.strip()


def _names(name: str, value: Any, choices: Sequence[str]) -> tuple[str, ...]:
    """A comma-separated string (or a list) of names from `choices`; "all" = every choice."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise param_error(name, f"a comma-separated string of {', '.join(choices)}", value)
    if items == ["all"]:
        return tuple(choices)
    bad = [v for v in items if v not in choices]
    if not items or bad:
        raise param_error(name, f"a comma-separated string of {', '.join(choices)} (or 'all')", value)
    return tuple(dict.fromkeys(items))


def check_int(name: str, value: Any, minimum: int = 1, allow_none: bool = False) -> int | None:
    """An integer >= minimum (a string of digits is converted); None where allowed.

    Raises a one-line UdassError naming the parameter, what was expected and what was given.
    """
    if allow_none and _is_none(value):
        return None
    expected = f"an integer >= {minimum}" + (" or None" if allow_none else "")
    if isinstance(value, bool):
        raise param_error(name, expected, value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < minimum:
        raise param_error(name, expected, value)
    return value


def _seeds(value: Any) -> tuple[int, ...]:
    expected = "comma-separated non-negative integers, e.g. '0,1,2'"
    if isinstance(value, bool):
        raise param_error("seeds", expected, value)
    if isinstance(value, int):
        items: list[Any] = [value]
    elif isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise param_error("seeds", expected, value)
    out = []
    for v in items:
        if isinstance(v, str) and re.fullmatch(r"\d+", v):
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise param_error("seeds", expected, value)
        out.append(v)
    if not out:
        raise param_error("seeds", expected, value)
    return tuple(dict.fromkeys(out))


def _path_or_none(name: str, value: Any, kind: str) -> str | None:
    if _is_none(value):
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise param_error(name, "a path or None", value)
    path = Path(value).expanduser()
    ok = path.is_dir() if kind == "dir" else path.is_file()
    if not ok:
        what = "an existing folder" if kind == "dir" else "an existing file"
        raise UdassError(f"parameter `{name}`: expected {what} or None, got {str(value)!r} "
                         f"(not found)")
    return str(path)


def anchor(path: str | os.PathLike) -> Path:
    """A results / runs folder: absolute paths as given; relative ones are taken from the
    repository root in a source checkout (so a notebook opened from notebooks/ and papermill
    run from anywhere write to the same results/ and runs/), else from the working directory."""
    path = Path(path).expanduser()
    if path.is_absolute() or not (REPO_ROOT / "notebooks").is_dir():
        return path
    return REPO_ROOT / path


def parse_params(benchmark: Any = "synthetic-video", backbone: Any = "vit", methods: Any = "quadmix",
                 profile: Any = "demo", steps: Any = None, data_root: Any = None, seeds: Any = "0",
                 pretrained: Any = None, device: Any = "auto", results_dir: Any = "results",
                 runs_root: Any = "runs", method_names: Sequence[str] = METHODS) -> Params:
    """Validate notebook parameters and convert their types.

    methods "a,b" -> ("a", "b") checked against `method_names` ("all" = every name); seeds
    "0,1,2" (or an int) -> (0, 1, 2); steps None (the profile's default) or a positive integer;
    data_root None (the synthetic cache; an error for a real benchmark) or an existing folder;
    pretrained None, "none" (random initialisation on purpose) or an existing file (the paper
    profile needs one of the last two); results_dir and runs_root relative to the repository root
    (`anchor`). A wrong type or value raises a one-line UdassError naming the parameter, what was
    expected and what was given.
    """
    bm = _choice("benchmark", benchmark, list(BENCHMARKS))
    prof = _choice("profile", profile, PROFILES)
    root = _path_or_none("data_root", data_root, "dir")
    if root is None and not get_benchmark(bm).synthetic:
        raise UdassError(f"parameter `data_root`: benchmark {bm} reads the real datasets: expected the "
                         f"folder holding them (docs/datasets.md), got None")
    explicit_none = isinstance(pretrained, str) and pretrained.strip().lower() == "none"
    weights = None if explicit_none else _path_or_none("pretrained", pretrained, "file")
    if prof == "paper" and weights is None and not explicit_none:
        raise UdassError("parameter `pretrained`: the paper profile starts from ImageNet weights: "
                         "expected a checkpoint file (docs/models.md) or 'none' to train from "
                         "scratch on purpose, got None")
    dev = device.strip() if isinstance(device, str) else device
    if not isinstance(dev, str) or not (dev in DEVICES or re.fullmatch(r"cuda:\d+", dev)):
        raise param_error("device", "auto, cpu, cuda or cuda:N", device)
    for name, value in (("results_dir", results_dir), ("runs_root", runs_root)):
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise param_error(name, "a folder path", value)
    return Params(benchmark=bm, backbone=_choice("backbone", backbone, BACKBONES),
                  methods=_names("methods", methods, method_names), profile=prof,
                  steps=check_int("steps", steps, allow_none=True), data_root=root,
                  seeds=_seeds(seeds), pretrained=weights, device=dev,
                  results_dir=anchor(results_dir), runs_root=anchor(runs_root))


# =========================================================================== the run cache
def config_for(p: Params, method: str, seed: int, overrides: Mapping[str, Any] | None = None) -> Config:
    """The Config of one run of the notebook parameters `p`."""
    return build_config(p.benchmark, p.backbone, method, p.profile, overrides, seed=seed,
                        steps=p.steps, data_root=p.data_root, pretrained=p.pretrained)


def _identity(cfg: Config | Mapping[str, Any]) -> dict[str, Any]:
    """The config dict without the run-control keys (what a run computes depends on this only)."""
    from udass.train import RUN_CONTROL_KEYS

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


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as e:
        raise UdassError(f"{path} is unreadable ({e}); delete it and run again") from None


def finished_record(cfg: Config, out: str | os.PathLike) -> dict[str, Any] | None:
    """The metrics record of a finished run of `cfg` in `out`, or None when it is not finished.

    Finished: metrics.json at the schedule's last step and run.json whose config equals `cfg`
    up to the run-control keys. A finished run of another config is an error naming the fields.
    """
    out = Path(out)
    rec, info = _read_json(out / "metrics.json"), _read_json(out / "run.json")
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
def _run_lock(out: Path):
    """An exclusive lock on a run folder (`fcntl.flock` on `<run>.lock` beside it), held while
    the run is checked and trained."""
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{out.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _ensure_run_locked(cfg: Config, out: Path, device: str, progress: bool) -> dict[str, Any]:
    from udass.train import train

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
    from udass.checkpoint import last_checkpoint as last

    out = run_dir(cfg, runs_root)
    path = last(out)
    if path is None:
        raise UdassError(f"run {out} has no checkpoint (checkpoints/ was removed?); delete the run "
                         f"folder and run again to retrain it")
    return path


# =========================================================================== results helpers
def results_folder(results_dir: Path, notebook: str, benchmark: str, backbone: str) -> Path:
    return Path(results_dir) / notebook / benchmark / backbone


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "row"


def _copy_run_files(src: Path, dst: Path) -> None:
    """Copy a run's metrics.json and run.json (atomically) into the results folder."""
    for name in ("metrics.json", "run.json"):
        if (src / name).is_file():
            write_bytes(dst / name, (src / name).read_bytes())


def _short_commit(info: Mapping[str, Any] | None) -> str:
    commit = (info or {}).get("commit")
    if not commit:
        return "unknown commit"
    return commit[:10] + ("-dirty" if str(commit).endswith("-dirty") else "")


def _prune_copies(runs_dir: Path, label: str, keep: Sequence[str]) -> None:
    """Remove copies `runs/<label>-s<seed>` of seeds not run this time (stale rows)."""
    if not runs_dir.is_dir():
        return
    pattern = re.compile(rf"^{re.escape(label)}-s\d+$")
    for d in runs_dir.iterdir():
        if d.is_dir() and pattern.match(d.name) and d.name not in keep:
            shutil.rmtree(d)


def _kept_records(out_dir: Path, skip: Sequence[str], profile: str) -> list[dict[str, Any]]:
    """Rows of an earlier call of the same table for methods not run now, read from their
    committed metrics.json copies (same profile only), with their provenance."""
    combined = _read_json(out_dir / "metrics.json")
    if not combined:
        return []
    kept: list[dict[str, Any]] = []
    for label, entry in (combined.get("methods") or {}).items():
        if label in skip:
            continue
        if entry.get("profile") != profile:
            print(f"note: dropping the earlier {label} row of {out_dir} (profile "
                  f"{entry.get('profile')}, this call {profile})")
            continue
        for rel in entry.get("runs", []):
            rec = _read_json(out_dir / rel / "metrics.json")
            if rec is None:
                continue
            info = _read_json(out_dir / rel / "run.json")
            kept.append({**rec, "method": label, "label": label, "setting": entry.get("setting", ""),
                         "run_dir": f"{rel} (earlier run, {_short_commit(info)})",
                         "copy": rel, "kept": True, "commit": (info or {}).get("commit")})
    return kept


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return round(mean, 2), None
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return round(mean, 2), round(math.sqrt(var), 2)


def _network(rec: Mapping[str, Any], network: str) -> Mapping[str, Any]:
    return rec if network == "student" else (rec.get(network) or {})


def _summary(records: Sequence[Mapping[str, Any]], network: str, classes: Sequence[str]
             ) -> dict[str, Any]:
    """Mean (and sample std) over seeds of one method's runs, for the combined metrics.json."""
    first = records[0]
    out: dict[str, Any] = {"network": network}
    for net_name, key in ((network, None), ("teacher" if network == "student" else "student", "other")):
        parts = [_network(r, net_name) for r in records]
        block: dict[str, Any] = {}
        block["miou"], block["miou_std"] = _mean_std([p.get("miou") for p in parts])
        block["miou_per_seed"] = [p.get("miou") for p in parts]
        for sub in ("miou_16", "miou_13"):
            if any(sub in p for p in parts):
                block[sub], block[f"{sub}_std"] = _mean_std([p.get(sub) for p in parts])
        pcs = {c: _mean_std([(p.get("per_class_iou") or {}).get(c) for p in parts]) for c in classes}
        block["per_class_iou"] = {c: v[0] for c, v in pcs.items()}
        if any(v[1] is not None for v in pcs.values()):
            block["per_class_iou_std"] = {c: v[1] for c, v in pcs.items()}
        if key is None:
            out.update(block)
        else:
            out[net_name] = block
    tc = [r.get("temporal_consistency") for r in records if r.get("temporal_consistency") is not None]
    if tc:
        out["temporal_consistency"], out["temporal_consistency_std"] = _mean_std(tc)
    out.update(method=first.get("method"), profile=first.get("profile"),
               steps=sorted({r.get("steps") or r.get("step") for r in records}, key=str),
               seeds=[r.get("seed") for r in records],
               runs=[r["copy"] for r in records],
               run_dirs=[r.get("source_run_dir") for r in records if r.get("source_run_dir")],
               provenance=("earlier run, commit " + ", ".join(sorted({_short_commit(r) for r in records}))
                           if all(r.get("kept") for r in records) else "this call"))
    if first.get("setting"):
        out["setting"] = first["setting"]
    if len(out["steps"]) == 1:
        out["steps"] = out["steps"][0]
    return out


def _group(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(str(r["method"]), []).append(r)
    return groups


def _kept_note(records: Sequence[Mapping[str, Any]]) -> list[str]:
    if not any(r.get("kept") for r in records):
        return []
    return ["rows marked 'earlier run' were not re-run by the call that wrote this table: read "
            "from their committed metrics.json (commit shown)."]


def _profile_note(profile: str, steps: Sequence[Any]) -> str:
    if profile == "paper":
        return "ours: the paper profile (docs/reproducing.md)."
    steps_txt = ", ".join(str(s) for s in sorted(set(steps), key=str))
    return (f"ours: the {profile} profile ({steps_txt} steps, small models from random "
            f"initialisation); its numbers are not comparable in absolute terms with the paper's.")


def _result(out_dir: Path, table: Mapping[str, Any] | None, files: Mapping[str, Path],
            figures: Mapping[str, Path], **extra: Any) -> dict[str, Any]:
    md = (out_dir / "table.md").read_text(encoding="utf-8") if (out_dir / "table.md").is_file() else ""
    return {"out_dir": out_dir, "table": table, "markdown": md, "files": dict(files),
            "figures": dict(figures), **extra}


# =========================================================================== tables
def run_table(notebook: str = "02_train_video", benchmark: Any = "synthetic-video",
              backbone: Any = "vit", methods: Any = "source_only,dacs,quadmix",
              profile: Any = "demo", steps: Any = None, data_root: Any = None, seeds: Any = "0",
              pretrained: Any = None, device: Any = "auto", results_dir: Any = "results",
              runs_root: Any = "runs", network: str = REFERENCE_NETWORK,
              progress: bool = True) -> dict[str, Any]:
    """Train / reuse every method x seed and write the comparison table and its figures.

    Writes `<results_dir>/<notebook>/<benchmark>/<backbone>/`: table.md, table.csv (ours beside
    the paper's rows on a paper benchmark, beside our own baselines on a synthetic one; mean ±
    sample std over seeds; the `network` column says which network is reported), per_class_iou.png,
    training_curves.png, metrics.json (per method: per-class IoU, mIoU, both networks, steps,
    seeds, runs) and runs/<method>-s<seed>/{metrics.json,run.json}. Rows of methods not run in
    this call but present from an earlier run of the same table (same profile) are kept, read
    from their metrics.json copies, with their commit. Returns {"out_dir", "table", "markdown",
    "files", "figures", "records"}.
    """
    from udass.report import comparison_table, per_class_bars, training_curves, write_table

    if network not in ("student", "teacher"):
        raise param_error("network", "student or teacher", network)
    p = parse_params(benchmark, backbone, methods, profile, steps, data_root, seeds, pretrained,
                     device, results_dir, runs_root)
    bm = get_benchmark(p.benchmark)
    out_dir = results_folder(p.results_dir, notebook, bm.name, p.backbone)
    records: list[dict[str, Any]] = []
    logs: dict[str, Path] = {}
    for method in p.methods:
        copies = []
        for seed in p.seeds:
            rec = ensure_run(config_for(p, method, seed), p.runs_root, p.device, progress)
            src = Path(rec["run_dir"])
            copy = f"runs/{_safe(method)}-s{seed}"
            _copy_run_files(src, out_dir / copy)
            copies.append(Path(copy).name)
            records.append({**rec, "seed": seed, "run_dir": copy, "copy": copy,
                            "source_run_dir": str(src)})
            if (src / "log.csv").is_file():
                logs[f"{method} s{seed}"] = src / "log.csv"
        _prune_copies(out_dir / "runs", _safe(method), copies)
    records += _kept_records(out_dir, p.methods, p.profile)
    table = comparison_table(records, bm, networks=(network,))
    table["title"] = (f"{notebook}: {bm.name}, {p.backbone} backbone: per-class IoU and mIoU (%), "
                      f"ours = the {network} network")
    other = "teacher" if network == "student" else "student"
    table["notes"] += [
        f"ours: the {network} network of each run (DAFormer / MIC evaluate the student); the EMA "
        f"{other}'s numbers are in metrics.json." if network == "student" else
        "ours: the EMA teacher of each run; the student's numbers are in metrics.json.",
        _profile_note(p.profile, [r.get("steps") for r in records]),
        "source 'ours: runs/<method>-s<seed>': copies of each run's metrics.json and run.json "
        "beside this table.",
    ]
    table["notes"] += _kept_note(records)
    if not bm.is_video and not bm.synthetic:
        table["notes"].append(
            "the paper profile trains the authors' image recipe: QuadMix (and the baselines) on "
            "MIC + HRDA with rare-class sampling and the ImageNet feature distance (docs/method.md)."
            if p.profile == "paper" else
            f"the {p.profile} profile trains at a single resolution without the image recipe's "
            f"components; the paper's image numbers come from MIC + HRDA (the paper profile).")
    md_path, csv_path = write_table(table, out_dir)
    figures = {"per_class_iou": per_class_bars(_bar_rows(table, p.backbone), bm.eval_class_names(),
                                               out_dir / "per_class_iou.png",
                                               title=f"{bm.name} ({p.backbone}): per-class IoU")}
    if logs:
        figures["training_curves"] = training_curves(logs, out_dir / "training_curves.png",
                                                     keys=LOG_KEYS,
                                                     title=f"{bm.name} ({p.backbone}): training")
    combined = _combined(notebook, p, bm.name, records, network, bm.eval_class_names())
    write_json(out_dir / "metrics.json", combined)
    return _result(out_dir, table, {"table_md": md_path, "table_csv": csv_path,
                                    "metrics": out_dir / "metrics.json"}, figures, records=records)


def _bar_rows(table: Mapping[str, Any], backbone: str) -> list[dict[str, Any]]:
    """Our rows, plus the paper's Source and QuadMix rows of the same backbone."""
    tag = {"cnn": "QuadMix(CNN)", "vit": "QuadMix(ViT)"}[backbone]
    rows = [dict(r) for r in table["rows"] if r.get("source") != "paper"
            or r.get("method") in ("Source", tag)]
    for r in rows:
        if r.get("source") != "paper":
            r["label"] = f"{r['method']} (ours)"
    return rows


def _combined(notebook: str, p: Params, benchmark: str, records: Sequence[Mapping[str, Any]],
              network: str, classes: Sequence[str]) -> dict[str, Any]:
    return {"notebook": notebook, "benchmark": benchmark, "backbone": p.backbone,
            "profile": p.profile, "network": network, "seeds": list(p.seeds),
            "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": git_commit(),
            "methods": {m: _summary(rs, network, classes) for m, rs in _group(records).items()}}


# =========================================================================== ablation
def ablation_setting(row: str, rows: Mapping[str, tuple[str, Mapping[str, Any]]] = ABLATIONS) -> str:
    """A row of `rows` (default ABLATIONS) as text: `quadmix: quadmix.paths=ss,tt,
    feature_mix.enabled=false`. An image row (`udass.config.ablation_rows`) names the recipe
    switches that are on, e.g. `quadmix: data.rcs, fd.enabled` (sizes: docs/method.md)."""
    method, overrides = rows[row]
    if "model.hrda" in overrides:  # an image-recipe row: every switch and size is set
        on = [k for k in ("data.rcs", "fd.enabled", "model.hrda", "mic.enabled") if overrides[k]]
        return method + ": " + (", ".join(on) if on else "no image-recipe component")
    parts = []
    for k, v in overrides.items():
        v = ",".join(v) if isinstance(v, tuple) else v
        parts.append(f"{k}={'false' if v is False else 'true' if v is True else (v or '(none)')}")
    return method + (": " + ", ".join(parts) if parts else "")


def run_ablation(notebook: str = "03_ablation", benchmark: Any = "synthetic-video",
                 backbone: Any = "vit", methods: Any = "all", profile: Any = "demo",
                 steps: Any = None, data_root: Any = None, seeds: Any = "0,1,2",
                 pretrained: Any = None, device: Any = "auto", results_dir: Any = "results",
                 runs_root: Any = "runs", network: str = REFERENCE_NETWORK,
                 progress: bool = True) -> dict[str, Any]:
    """The ablation table: each row of `udass.config.ablation_rows(benchmark, profile)` (a method +
    overrides) over seeds: ABLATIONS on a video benchmark, the image recipe's IMAGE_ABLATIONS
    (quadmix, +rcs, +fd, +hrda, +mic) on an image benchmark.

    methods: comma-separated row names or "all" (video: source_only, classmix, self_training,
    intra_only, intra+tss, intra+stt, quadmix_paths, +feature_mix, +aggregation,
    no_temporal_weighting, ...). Writes table.md / table.csv (mean ± sample std over seeds, a
    `setting` column with the overrides; our rows only: the paper's ablation table was not
    available), ablation.png (mIoU bars with std error bars and one dot per seed), metrics.json
    and runs/<row>-s<seed>/ copies. Runs are shared with the other notebooks (same config, same run).
    """
    from udass.report import comparison_table, write_table

    prof = profile if profile in PROFILES else "demo"  # parse_params reports a bad profile
    bench = benchmark if benchmark in BENCHMARKS else "synthetic-video"  # and a bad benchmark
    rows = ablation_rows(bench, prof)
    p = parse_params(benchmark, backbone, methods, profile, steps, data_root, seeds, pretrained,
                     device, results_dir, runs_root, method_names=list(rows))
    bm = get_benchmark(p.benchmark)
    out_dir = results_folder(p.results_dir, notebook, bm.name, p.backbone)
    records: list[dict[str, Any]] = []
    for row in p.methods:
        method, overrides = rows[row]
        copies = []
        for seed in p.seeds:
            rec = ensure_run(config_for(p, method, seed, overrides), p.runs_root, p.device, progress)
            copy = f"runs/{_safe(row)}-s{seed}"
            _copy_run_files(Path(rec["run_dir"]), out_dir / copy)
            copies.append(Path(copy).name)
            records.append({**rec, "method": row, "seed": seed, "run_dir": copy, "copy": copy,
                            "setting": ablation_setting(row, rows), "source_run_dir": rec["run_dir"]})
        _prune_copies(out_dir / "runs", _safe(row), copies)
    records += _kept_records(out_dir, p.methods, p.profile)
    order = {name: i for i, name in enumerate(rows)}
    records.sort(key=lambda r: order.get(str(r["method"]), len(order)))
    table = comparison_table(records, bm, paper_rows=[], networks=(network,))
    settings = {str(r["method"]): r.get("setting") or ablation_setting(str(r["method"]), rows)
                for r in records if str(r["method"]) in rows}
    for r in table["rows"]:
        r["setting"] = settings.get(r["method"], "")
    # mIoU columns only (per-class IoU is in metrics.json): one readable row per setting
    classes = set(bm.eval_class_names())
    table["columns"] = ["method", "setting", "network", "source", "seeds",
                        *[c for c in table["columns"] if c not in classes and c not in
                          ("method", "backbone", "network", "source", "seeds")]]
    table["labels"]["setting"] = "setting"
    table["title"] = (f"{notebook}: {bm.name}, {p.backbone} backbone: ablation, mIoU (%) of the "
                      f"{network} network, mean ± std over seeds")
    table["notes"] += [
        _profile_note(p.profile, [r.get("steps") for r in records]),
        ("rows: udass.config.ABLATIONS (docs/method.md, QuadMix)" if bm.is_video else
         "rows: udass.config.IMAGE_ABLATIONS, each adding one image-recipe component to the row "
         "above (sizes at this profile: docs/method.md, \"The components at the demo and test "
         "sizes\")")
        + "; the paper's ablation table was not available, so only our rows are shown.",
    ]
    table["notes"] += _kept_note(records)
    md_path, csv_path = write_table(table, out_dir)
    combined = _combined(notebook, p, bm.name, records, network, bm.eval_class_names())
    write_json(out_dir / "metrics.json", combined)
    fig = ablation_figure(combined, out_dir / "ablation.png",
                          title=f"{bm.name} ({p.backbone}): ablation ({network}, {p.profile})")
    return _result(out_dir, table, {"table_md": md_path, "table_csv": csv_path,
                                    "metrics": out_dir / "metrics.json"}, {"ablation": fig},
                   records=records)


def ablation_figure(combined: Mapping[str, Any], out_png: Path, title: str = "") -> Path:
    """Horizontal mIoU bars of the ablation rows: mean, sample-std error bars, a dot per seed."""
    from matplotlib.figure import Figure

    rows = list(combined["methods"].items())
    fig = Figure(figsize=(7.5, 0.45 * len(rows) + 1.4))
    ax = fig.add_subplot()
    for i, (name, entry) in enumerate(rows):
        mean, std = entry.get("miou"), entry.get("miou_std")
        ax.barh(i, mean or 0.0, xerr=std or 0.0, capsize=3, color="#4c72b0" if
                entry.get("provenance") == "this call" else "#999999")
        seeds_miou = [float(v) for v in entry.get("miou_per_seed", []) if v is not None]
        ax.plot(seeds_miou, [i] * len(seeds_miou), "k.", ms=4)
        ax.text((mean or 0.0) + (std or 0.0) + 0.5, i, "—" if mean is None else f"{mean:.1f}",
                va="center", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([name for name, _ in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel(f"mIoU (%), {combined.get('network', 'student')}")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_png)


def save_figure(fig: Any, out_png: Path, dpi: int = 120) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    write_bytes(out_png, buf.getvalue())
    return Path(out_png)


# =========================================================================== explorations
def qualitative(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See `udass.explore.qualitative`."""
    from udass.explore import qualitative as run

    return run(*args, **kwargs)


def tsne(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See `udass.explore.tsne`."""
    from udass.explore import tsne as run

    return run(*args, **kwargs)


def quadmix_explorer(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See `udass.explore.quadmix_explorer`."""
    from udass.explore import quadmix_explorer as run

    return run(*args, **kwargs)


def show_explorer(result: Mapping[str, Any]) -> None:
    """See `udass.explore.show_explorer`."""
    from udass.explore import show_explorer as show

    show(result)


# =========================================================================== papermill
def _kernel_env() -> None:
    """Put this interpreter's bin folder first on PATH, so the `python3` kernel (whose spec
    runs `python`) is this environment's Python."""
    bin_dir = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if not parts or parts[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir] + [p for p in parts if p != bin_dir])


def run_notebook(name: str, parameters: Mapping[str, Any], output: str | os.PathLike,
                 log_output: bool = True) -> Path:
    """Execute notebooks/<name>.ipynb with papermill (kernel python3, cwd = the repository
    root) into `output`. A failing cell raises a one-line UdassError naming the executed copy."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    src = NOTEBOOK_DIR / f"{name}.ipynb"
    if not src.is_file():
        raise UdassError(f"notebook {src} not found; run from a source checkout of udass "
                         f"(notebooks/ beside the package)")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    _kernel_env()
    kwargs: dict[str, Any] = {}
    if log_output:
        kwargs.update(log_output=True, stdout_file=sys.stdout, stderr_file=sys.stderr)
    try:
        pm.execute_notebook(str(src), str(output), parameters=dict(parameters), kernel_name="python3",
                            cwd=str(REPO_ROOT), progress_bar=False, **kwargs)
    except PapermillExecutionError as e:
        raise UdassError(f"notebook {name} failed: {e.ename}: {e.evalue} (executed copy: "
                         f"{output})") from None
    return output


@dataclass(frozen=True)
class Job:
    """One papermill execution of `reproduce`."""

    notebook: str
    parameters: Mapping[str, Any]
    output: str     # file name under <results>/executed/


def _available(benchmark: str, data_root: Path) -> bool:
    from udass.data.datasets import LAYOUTS

    bm = get_benchmark(benchmark)
    return all((data_root / LAYOUTS[d].folder).is_dir() for d in (bm.source, bm.target))


def _pretrained(backbone: str, profile: str) -> str | None:
    if profile != "paper":
        return None
    env = PRETRAINED_ENV[backbone]
    value = os.environ.get(env)
    if not value:
        raise UdassError(f"the paper profile starts from ImageNet weights: set {env}=PATH (the "
                         f"{'mit_b5.pth' if backbone == 'vit' else 'ResNet-101'} file, docs/models.md) "
                         f"or {env}=none to train from scratch on purpose")
    return value


def reproduce_plan(profile: str = "demo", data_root: str | os.PathLike | None = None,
                   only: str | Sequence[str] | None = None) -> list[Job]:
    """The papermill jobs of `reproduce`, in order.

    Without a data root: the embedded benchmarks (01: synthetic-image, 02: synthetic-video, each
    for both backbones; 00, 03, 04, 05 on synthetic-video with the ViT). With one: the paper
    benchmarks whose dataset folders are present (01: GTAV / SYNTHIA -> Cityscapes, 02:
    SYNTHIA-Seq / VIPER -> Cityscapes-Seq, both backbones; 00, 03, 04, 05 on the first video
    benchmark, ViT). Outside the paper profile, 03 also runs on the first image benchmark (ViT):
    the image recipe's rows (`udass.config.IMAGE_ABLATIONS`). The paper profile reads the
    ImageNet weights from $UDASS_PRETRAINED_VIT / $UDASS_PRETRAINED_CNN. `only`: notebook names
    or their number prefixes ("02,03").
    """
    if profile not in PROFILES:
        raise param_error("profile", f"one of {', '.join(PROFILES)}", profile)
    selected = _select(only)
    if data_root is None:
        image, video = ["synthetic-image"], ["synthetic-video"]
    else:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise UdassError(f"--data-root {root} does not exist; expected the folder holding "
                             f"cityscapes/, gta/, ... (docs/datasets.md)")
        image = [b for b in PAPER_BENCHMARKS["image"] if _available(b, root)]
        video = [b for b in PAPER_BENCHMARKS["video"] if _available(b, root)]
        if not image and not video:
            raise UdassError(f"--data-root {root} holds none of the paper benchmarks' dataset "
                             f"folders; check it with `udass check-data --benchmark B --data-root "
                             f"{root}`")
    root_param = None if data_root is None else str(Path(data_root).expanduser())
    jobs: list[Job] = []
    main_video = video[0] if video else None

    def add(nb: str, bm: str, bb: str) -> None:
        if nb in selected:
            params = {"benchmark": bm, "backbone": bb, "profile": profile, "data_root": root_param,
                      "pretrained": _pretrained(bb, profile)}
            if nb == "02_train_video" and bm == main_video and profile != "paper":
                # the headline table: mean and spread over 5 seeds (3 left QuadMix - DACS, +2.4
                # paired, below significance: docs/results-synthetic.md); the CNN over 3
                params["seeds"] = "0,1,2,3,4" if bb == "vit" else "0,1,2"
            if nb == "03_ablation" and bb == "cnn":
                params["seeds"] = "0"  # the CNN's ablation: one seed, for the direction only
            jobs.append(Job(nb, params, f"{nb}-{bm}-{bb}.ipynb"))

    if main_video:
        add("00_quadmix_explorer", main_video, "vit")
    for bm in image:
        for bb in BACKBONES:
            add("01_train_image", bm, bb)
    for bm in video:
        for bb in BACKBONES:
            add("02_train_video", bm, bb)
    if main_video:
        add("03_ablation", main_video, "vit")
        if profile != "paper":  # 30 more 40k-step runs at the paper profile: run it on purpose
            add("03_ablation", main_video, "cnn")
    if image and profile != "paper":  # the image recipe's components, one by one (ViT)
        add("03_ablation", image[0], "vit")
    if main_video:
        for nb in ("04_qualitative", "05_tsne"):
            add(nb, main_video, "vit")
    return jobs


def _select(only: str | Sequence[str] | None) -> list[str]:
    if only is None:
        return list(NOTEBOOKS)
    items = [s.strip() for s in (only.split(",") if isinstance(only, str) else only) if s.strip()]
    out = []
    for item in items:
        match = [nb for nb in NOTEBOOKS if nb == item or nb.split("_", 1)[0] == item]
        if not match:
            raise UdassError(f"--only {item!r}: expected notebook names or numbers among "
                             f"{', '.join(NOTEBOOKS)}")
        out += match
    return out


def reproduce(profile: str = "demo", data_root: str | os.PathLike | None = None,
              only: str | Sequence[str] | None = None, results_dir: str | os.PathLike | None = None,
              runs_root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run every notebook in order with papermill and regenerate results/README.md.

    Executed copies go to <results>/executed/ (git-ignored). Finished runs are reused, so an
    interrupted reproduce continues where it stopped. A failing notebook does not stop the
    others; the failures are raised together at the end. The wall time of each notebook and of
    the whole call is recorded in <results>/reproduce.json and shown in results/README.md.
    results_dir / runs_root: other folders than the repository's results/ and runs/.
    """
    results = Path(results_dir) if results_dir is not None else REPO_ROOT / "results"
    jobs = reproduce_plan(profile, data_root, only)
    started = time.time()
    log: list[dict[str, Any]] = []
    failures: list[str] = []
    for i, job in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {job.notebook} ({job.parameters['benchmark']}, "
              f"{job.parameters['backbone']})", flush=True)
        t0 = time.time()
        params = dict(job.parameters)
        if results_dir is not None:
            params["results_dir"] = str(results)
        if runs_root is not None:
            params["runs_root"] = str(runs_root)
        try:
            run_notebook(job.notebook, params, results / "executed" / job.output)
            status = "ok"
        except UdassError as e:
            status = "failed"
            failures.append(str(e))
            print(f"  {e}", file=sys.stderr, flush=True)
        log.append({"notebook": job.notebook, "benchmark": job.parameters["benchmark"],
                    "backbone": job.parameters["backbone"], "status": status,
                    "seconds": round(time.time() - t0, 1),
                    "executed": f"executed/{job.output}"})
    record = {"profile": profile, "data_root": None if data_root is None else str(data_root),
              "only": only if isinstance(only, (str, type(None))) else ",".join(only),
              "wall_seconds": round(time.time() - started, 1),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": git_commit(),
              "device": _device_text(), "notebooks": log}
    write_json(results / "reproduce.json", record)
    index = write_results_index(results)
    print(f"reproduce: {len(jobs) - len(failures)}/{len(jobs)} notebooks in "
          f"{_duration(record['wall_seconds'])}; index: {index}")
    if failures:
        raise UdassError(f"{len(failures)} notebook(s) failed: " + " | ".join(failures))
    return record


def _device_text() -> str:
    from udass.runtime import device_description, resolve_device

    try:
        return device_description(resolve_device("auto"))
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def demo(results_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The main job: notebooks/02_train_video.ipynb with the ViT on the embedded benchmark (demo
    profile) -> results/executed/02_train_video.ipynb; prints where the table and figures are.

    Equivalent to `papermill notebooks/02_train_video.ipynb results/executed/02_train_video.ipynb
    -k python3 -p backbone vit` run from the repository root, then the results index."""
    results = Path(results_dir) if results_dir is not None else REPO_ROOT / "results"
    params: dict[str, Any] = {"backbone": "vit"}
    if results_dir is not None:
        params["results_dir"] = str(results)
    started = time.time()
    executed = run_notebook("02_train_video", params, results / "executed" / "02_train_video.ipynb")
    out_dir = results_folder(results, "02_train_video", "synthetic-video", "vit")
    index = write_results_index(results)
    table = out_dir / "table.md"
    print("")
    if table.is_file():
        print(table.read_text(encoding="utf-8"))
    print(f"demo finished in {_duration(time.time() - started)}")
    print(f"  table:    {table} (and table.csv)")
    for png in sorted(out_dir.glob("*.png")):
        print(f"  figure:   {png}")
    print(f"  metrics:  {out_dir / 'metrics.json'}")
    print(f"  notebook: {executed}")
    print(f"  index:    {index}")
    return {"out_dir": out_dir, "executed": executed, "index": index}


# =========================================================================== results/README.md
def _rel(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()


def _miou_line(metrics: Mapping[str, Any]) -> str:
    parts = []
    for name, entry in (metrics.get("methods") or {}).items():
        miou, std = entry.get("miou"), entry.get("miou_std")
        if miou is None:
            continue
        parts.append(f"{name} {miou:.2f}" + (f" ± {std:.2f}" if std is not None else ""))
    net = metrics.get("network", "student")
    return f"mIoU ({net}): " + ", ".join(parts) if parts else ""


def _runs_behind(results: Path, rep: Mapping[str, Any]) -> str | None:
    """One line on the training runs behind the tables: how many the last reproduce trained
    (their run.json finished after it started) and how many it reused from runs/, and the sum of
    their recorded wall times (what the tables cost from scratch)."""
    import datetime as dt

    runs: dict[str, dict[str, Any]] = {}
    for path in sorted(results.glob("*/*/*/runs/*/run.json")):
        rec = _read_json(path) or {}
        if "config" in rec:
            runs[json.dumps(rec["config"], sort_keys=True)] = rec
    if not runs:
        return None
    fmt = "%Y-%m-%dT%H:%M:%S%z"
    try:
        start = dt.datetime.strptime(rep["finished"], fmt).timestamp() - float(rep["wall_seconds"])
    except (KeyError, TypeError, ValueError):
        start = None

    def after(r: Mapping[str, Any]) -> bool:
        try:
            return start is not None and dt.datetime.strptime(r["finished"], fmt).timestamp() >= start
        except (KeyError, TypeError, ValueError):
            return False

    trained = sum(after(r) for r in runs.values())
    total = sum(float(r.get("wall_seconds_this_call") or 0) for r in runs.values())
    return (f"Runs behind these tables: {len(runs)}; that call trained {trained} and reused "
            f"{len(runs) - trained} from runs/. Their recorded wall times add up to "
            f"{_duration(total)} (each run's last call; what the tables cost from scratch).")


def write_results_index(results_dir: str | os.PathLike = "results") -> Path:
    """Regenerate <results_dir>/README.md: a link to every table and figure, generated by code.

    Walks `<notebook>/<benchmark>/<backbone>/` folders of the known notebooks, lists their
    table, metrics.json, PNG figures and a one-line mIoU summary read from metrics.json, other
    JSON files (e.g. benchmarks/), and the last `reproduce` (profile, wall time, device, commit).
    """
    results = Path(results_dir)
    lines = ["# Results", "",
             "Generated by `udass reproduce` (`udass.experiments.write_results_index`) from the files "
             "below; do not edit by hand. Every number comes from a run's metrics.json: tables and "
             "figures are regenerated by the notebooks (docs/notebooks.md, docs/reproducing.md).", ""]
    rep = _read_json(results / "reproduce.json")
    if rep:
        lines += [f"Last `udass reproduce --profile {rep.get('profile')}`"
                  + (f" (--only {rep['only']})" if rep.get("only") else "")
                  + f": wall time {_duration(rep.get('wall_seconds') or 0)} on {rep.get('device')}, "
                  f"commit {rep.get('commit') or 'unknown'}, finished {rep.get('finished')}.", ""]
        runs_line = _runs_behind(results, rep)
        if runs_line:
            lines += [runs_line, ""]
        rows = ["| notebook | benchmark | backbone | status | wall time |", "|---|---|---|---|---:|"]
        rows += [f"| {n['notebook']} | {n['benchmark']} | {n['backbone']} | {n['status']} | "
                 f"{_duration(n['seconds'])} |" for n in rep.get("notebooks", [])]
        lines += rows + [""]
    for nb in NOTEBOOKS:
        folders = sorted(d for d in (results / nb).glob("*/*") if d.is_dir()) if (results / nb).is_dir() else []
        if not folders:
            continue
        lines += [f"## {nb}", ""]
        for d in folders:
            lines += [f"### {d.parent.name} / {d.name}", ""]
            links = []
            for name, label in (("table.md", "table"), ("table.csv", "csv"), ("metrics.json", "metrics"),
                                ("tsne_metrics.md", "t-SNE companion table")):
                if (d / name).is_file():
                    links.append(f"[{label}]({_rel(d / name, results)})")
            if links:
                lines.append("- " + ", ".join(links))
            metrics = _read_json(d / "metrics.json") or {}
            summary = _miou_line(metrics)
            if summary:
                lines.append(f"- {summary} ({metrics.get('profile', '?')} profile)")
            lines.append("")
            for png in sorted(d.glob("*.png")):
                lines += [f"![{png.stem}]({_rel(png, results)})", ""]
    others = sorted(p for p in results.glob("*/*.json")
                    if p.parent.name not in NOTEBOOKS and p.parent.name != "executed")
    if others:
        lines += ["## Other measurements", ""] + [f"- [{_rel(p, results)}]({_rel(p, results)})"
                                                  for p in others] + [""]
    path = results / "README.md"
    write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


# =========================================================================== command line
def main(argv: Sequence[str] | None = None) -> int:
    """`python -m udass.experiments run-dir ...`: print the run-cache folder of a config.

    For training a run outside the notebooks (e.g. `torchrun ... -m udass train --out DIR` on
    several GPUs) into the folder where the notebooks look for it, so they reuse it. Flags as
    `udass train` (--benchmark, --backbone, --method, --profile, --seed, --steps, --data-root,
    --pretrained, --set) plus --runs-root (default runs/ of the repository).
    """
    import argparse

    from udass.config import parse_set_args

    parser = argparse.ArgumentParser(prog="python -m udass.experiments")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run-dir", help="print the run-cache folder of a config")
    p.add_argument("--benchmark", default="synthetic-video")
    p.add_argument("--backbone", default="vit")
    p.add_argument("--method", default="quadmix")
    p.add_argument("--profile", default="demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--pretrained", default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--runs-root", default="runs")
    q = sub.add_parser("summary", help="write docs/results-synthetic.md from results/")
    q.add_argument("--results-dir", default="results")
    q.add_argument("--out", default="docs/results-synthetic.md")
    a = parser.parse_args(argv)
    if a.command == "summary":
        from udass.io import write_text

        out = anchor(a.out)
        text = results_summary(anchor(a.results_dir))
        kept = out.read_text().split(ANALYSIS_MARKER, 1) if out.is_file() else []
        text += "\n" + ANALYSIS_MARKER + (kept[1] if len(kept) == 2 else "\n")
        write_text(out, text)
        print(out)
        return 0
    try:
        params = parse_params(a.benchmark, a.backbone, a.method, a.profile, a.steps, a.data_root,
                              a.seed, a.pretrained, "auto", "results", a.runs_root)
        cfg = config_for(params, a.method, a.seed, parse_set_args(a.overrides))
    except UdassError as e:
        print(f"udass: error: {e}", file=sys.stderr)
        return 2
    print(run_dir(cfg, params.runs_root))
    return 0


# =========================================================================== summary document
_SUMMARY_HEAD = """# Results on the embedded synthetic benchmarks

Generated by `python -m udass.experiments summary` from the tables in `results/` (themselves
written by `make reproduce`, i.e. `python -m udass reproduce --profile demo`); every number below
comes from a run whose metrics.json and run.json are copied beside its table. Demo profile: small
models (MiT-mini / ResNet-mini) from random initialisation, 1000 steps, batch 2 + 2, 96 x 192 crops,
on a 2-core CPU (docs/method.md, "Profiles"). mIoU in percent over the benchmark's evaluation
classes (synthetic-video: the SYNTHIA-Seq protocol's 11; synthetic-image: 19), of the student
network (the EMA teacher's numbers are in each metrics.json), mean ± sample std over seeds.
"Gap closed" = (method - source_only) / (oracle - source_only).
"""


def _fmt_miou(rec: Mapping[str, Any]) -> str:
    m, sd = rec.get("miou"), rec.get("miou_std")
    if m is None:
        return "—"
    return f"{m:.1f} ± {sd:.1f}" if sd is not None else f"{m:.1f}"


ANALYSIS_MARKER = "<!-- written by hand below this line; `summary` keeps it -->"


def _paired_lines(methods: Mapping[str, Any], seeds: Sequence[Any]) -> list[str]:
    """Per-seed differences of consecutive methods of the ordering (runs of one seed share the
    data order and initialisation, so a paired difference is less noisy than two spreads)."""
    if len(seeds) < 2:
        return []
    out = []
    for a, b in (("dacs", "source_only"), ("quadmix", "dacs")):
        ra, rb = methods.get(a) or {}, methods.get(b) or {}
        va, vb = ra.get("miou_per_seed") or [], rb.get("miou_per_seed") or []
        if len(va) != len(seeds) or len(vb) != len(seeds) or None in va or None in vb:
            continue
        diffs = [x - y for x, y in zip(va, vb)]
        mean, sd = _mean_std(diffs)
        out.append(f"- {a} − {b}, paired by seed: {', '.join(f'{d:+.1f}' for d in diffs)} "
                   f"(mean {mean:+.1f}, std {sd:.1f})")
    return ([""] + out) if out else []


def results_summary(results_dir: Path) -> str:
    """The Markdown of docs/results-synthetic.md: the method tables of 01/02 and the ablation of
    03 on the synthetic benchmarks, read from results/*/metrics.json."""
    parts = [_SUMMARY_HEAD]
    parts.append("## Methods\n")
    for nb in ("02_train_video", "01_train_image"):
        for bm in ("synthetic-video", "synthetic-image"):
            for bb in BACKBONES:
                path = results_folder(results_dir, nb, bm, bb) / "metrics.json"
                if not path.exists():
                    continue
                d = json.loads(path.read_text())
                methods = d.get("methods", {})
                so = (methods.get("source_only") or {}).get("miou")
                orc = (methods.get("oracle") or {}).get("miou")
                parts.append(f"### {bm}, {bb} ({nb}, seeds {', '.join(map(str, d.get('seeds', [])))})\n")
                parts.append("| method | student mIoU per seed | mIoU student | mIoU teacher | gap closed |")
                parts.append("|---|---|---:|---:|---:|")
                for name in ("source_only", "dacs", "quadmix", "oracle"):
                    r = methods.get(name)
                    if not r:
                        continue
                    gap = "—"
                    if so is not None and orc is not None and orc != so and r.get("miou") is not None:
                        gap = f"{100 * (r['miou'] - so) / (orc - so):.0f}%"
                    per_seed = ", ".join(f"{v:.1f}" for v in r.get("miou_per_seed", []))
                    parts.append(f"| {name} | {per_seed} | {_fmt_miou(r)} | "
                                 f"{_fmt_miou(r.get('teacher') or {})} | {gap} |")
                parts.extend(_paired_lines(methods, d.get("seeds", [])))
                table = path.parent / "table.md"
                parts.append(f"\nPer-class IoU: `{table.relative_to(results_dir.parent)}`; "
                             f"reproduce with `papermill notebooks/{nb}.ipynb out.ipynb -k python3 "
                             f"-p benchmark {bm} -p backbone {bb} -p seeds "
                             f"{','.join(map(str, d.get('seeds', [0])))}`.\n")
    for bm, bb in (("synthetic-video", "vit"), ("synthetic-video", "cnn"), ("synthetic-image", "vit")):
        abl = results_folder(results_dir, "03_ablation", bm, bb) / "metrics.json"
        if not abl.exists():
            continue
        d = json.loads(abl.read_text())
        seeds = d.get("seeds", [])
        rows = ablation_rows(bm, d.get("profile") or "demo")
        parts.append(f"## Ablation ({bm}, {bb}, seeds {', '.join(map(str, seeds))})\n")
        parts.append("| row | setting | mIoU student (per seed) | mean ± std |")
        parts.append("|---|---|---|---:|")
        for name, r in d.get("methods", {}).items():
            per_seed = ", ".join(f"{v:.1f}" for v in r.get("miou_per_seed", []))
            parts.append(f"| {name} | {ablation_setting(name, rows) if name in rows else ''} | "
                         f"{per_seed} | {_fmt_miou(r)} |")
        parts.append(f"\nReproduce with `papermill notebooks/03_ablation.ipynb out.ipynb -k python3 "
                     f"{'' if bm == 'synthetic-video' else '-p benchmark ' + bm + ' '}-p backbone {bb} -p seeds "
                     f"{','.join(map(str, seeds or [0, 1, 2]))}`.\n")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
