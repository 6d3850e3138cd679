"""What the notebooks call: the comparison tables, the ablation and the figures of trained runs.

Every notebook is thin: a `parameters` cell, one call into this module, display. The calls:

    run_table(notebook, benchmark, backbone, methods, ...)    01_train_image, 02_train_video
    run_ablation(notebook, benchmark, backbone, methods, ...)  03_ablation (methods = ABLATIONS rows)
    qualitative(...), tsne(...)                                04, 05 (defined in udass.explore)
    quadmix_explorer(...), show_explorer(...)                  00 (defined in udass.explorer)

Parameters are checked by `udass.params`, runs come from the run cache (`udass.runs`: trained
only when missing). Results: `results/<notebook>/<benchmark>/<backbone>/` holds table.md /
table.csv, PNG figures, a combined metrics.json and copies of each run's metrics.json and
run.json under `runs/<method>-s<seed>/`; checkpoints stay in runs/ (git-ignored). Numbers are
never typed in. `results_summary` writes docs/results-synthetic.md from those folders (`udass
summary`); running every notebook is `udass.reproduce`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from udass.benchmarks import BENCHMARKS, get_benchmark
from udass.config import ABLATIONS, BACKBONES, PROFILES, ablation_rows
from udass.errors import UdassError
from udass.evaluate import evaluate_from_args
from udass.explore import qualitative, tsne
from udass.explorer import quadmix_explorer, show_explorer
from udass.figures import ablation_figure, per_class_bars, training_curves
from udass.io import file_sha256, read_json, write_bytes, write_json, write_text
from udass.params import (REFERENCE_NETWORK, Params, anchor, check_checkpoints, config_for,
                          param_error, parse_params, results_folder)
from udass.publish import rebase, staged_folder
from udass.report import comparison_table, mean_std, write_table
from udass.runs import ensure_run
from udass.runtime import git_commit

__all__ = ["run_table", "run_ablation", "ablation_setting", "qualitative", "tsne",
           "quadmix_explorer", "show_explorer", "results_summary", "write_summary", "ANALYSIS_MARKER"]

LOG_KEYS = ("loss_total", "loss_src", "loss_trg", "loss_mix", "loss_feat", "loss_agg",
            "pseudo_weight")


# =========================================================================== results helpers
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


def _kept_records(previous: Path, staging: Path, skip: Sequence[str], profile: str
                  ) -> list[dict[str, Any]]:
    """Rows of an earlier call of the same table (in `previous`, the folder being replaced) for
    methods not run now, read from their metrics.json copies (same profile only), with their
    provenance; their copies are carried into `staging`."""
    combined = read_json(previous / "metrics.json")
    if not combined:
        return []
    kept: list[dict[str, Any]] = []
    for label, entry in (combined.get("methods") or {}).items():
        if label in skip:
            continue
        if entry.get("profile") != profile:
            print(f"note: dropping the earlier {label} row of {previous} (profile "
                  f"{entry.get('profile')}, this call {profile})")
            continue
        for rel in entry.get("runs", []):
            rec = read_json(previous / rel / "metrics.json")
            if rec is None:
                continue
            info = read_json(previous / rel / "run.json")
            _copy_run_files(previous / rel, staging / rel)
            kept.append({**rec, "method": label, "label": label, "setting": entry.get("setting", ""),
                         "run_dir": f"{rel} (earlier run, {_short_commit(info)})",
                         "copy": rel, "kept": True, "commit": (info or {}).get("commit")})
    return kept


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
        block["miou"], block["miou_std"] = mean_std([p.get("miou") for p in parts])
        block["miou_per_seed"] = [p.get("miou") for p in parts]
        for sub in ("miou_16", "miou_13"):
            if any(sub in p for p in parts):
                block[sub], block[f"{sub}_std"] = mean_std([p.get(sub) for p in parts])
        pcs = {c: mean_std([(p.get("per_class_iou") or {}).get(c) for p in parts]) for c in classes}
        block["per_class_iou"] = {c: v[0] for c, v in pcs.items()}
        if any(v[1] is not None for v in pcs.values()):
            block["per_class_iou_std"] = {c: v[1] for c, v in pcs.items()}
        if key is None:
            out.update(block)
        else:
            out[net_name] = block
    tc = [r.get("temporal_consistency") for r in records if r.get("temporal_consistency") is not None]
    if tc:
        out["temporal_consistency"], out["temporal_consistency_std"] = mean_std(tc)
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
              progress: bool = True, publish: Any = False, checkpoints: Any = None
              ) -> dict[str, Any]:
    """Train / reuse every method x seed and write the comparison table and its figures.

    Writes `<results_dir>/<notebook>/<benchmark>/<backbone>/` (under results/local/ unless
    `publish`: `udass.publish.output_root`), replacing the folder whole
    (`udass.publish.staged_folder`): table.md, table.csv (ours beside the paper's rows on a paper
    benchmark, beside our own baselines on a synthetic one; mean ± sample std over seeds; the
    `network` column says which network is reported), per_class_iou.png, training_curves.png,
    metrics.json (per method: per-class IoU, mIoU, both networks, steps, seeds, runs) and
    runs/<method>-s<seed>/{metrics.json,run.json}. Rows of methods not run in this call but
    present from an earlier run of the same table (same profile) are kept, read from their
    metrics.json copies, with their commit.

    checkpoints: evaluation only. {row label: udass checkpoint} (or "label=path,label=path"),
    e.g. released networks converted with `udass convert`: each is evaluated on the benchmark's
    target val split (`udass evaluate`, cached in <runs_root>/evaluations/) and becomes a row
    beside the paper's, with its metrics.json under evaluated/<label>/; nothing is trained and
    `methods` / `seeds` are not used. Returns {"out_dir", "table", "markdown", "files",
    "figures", "records"}.
    """
    if network not in ("student", "teacher"):
        raise param_error("network", "student or teacher", network)
    p = parse_params(benchmark, backbone, methods, profile, steps, data_root, seeds, pretrained,
                     device, results_dir, runs_root, publish=publish)
    released = check_checkpoints(checkpoints)
    bm = get_benchmark(p.benchmark)
    final = results_folder(p.results_dir, notebook, bm.name, p.backbone)
    runs: list[dict[str, Any]] = []   # every run first: the folder is replaced only at the end
    if released:
        runs = [evaluate_release(label, path, p, network) for label, path in released.items()]
    else:
        for method in p.methods:
            for seed in p.seeds:
                rec = ensure_run(config_for(p, method, seed), p.runs_root, p.device, progress)
                runs.append({**rec, "seed": seed, "copy": f"runs/{_safe(method)}-s{seed}",
                             "source_run_dir": str(rec["run_dir"])})
    with staged_folder(final) as out_dir:
        records, logs = [], {}
        for rec in runs:
            src = Path(rec["source_run_dir"])
            _copy_run_files(src, out_dir / rec["copy"])
            records.append({**rec, "run_dir": rec["copy"]})
            if (src / "log.csv").is_file():
                logs[f"{rec['method']} s{rec['seed']}"] = src / "log.csv"
        records += _kept_records(final, out_dir, list(released) or p.methods, p.profile)
        table = _method_table(notebook, p, bm, records, network, bool(released))
        md_path, csv_path = write_table(table, out_dir)
        figures = {"per_class_iou": per_class_bars(
            _bar_rows(table, p.backbone), bm.eval_class_names(), out_dir / "per_class_iou.png",
            title=f"{bm.name} ({p.backbone}): per-class IoU")}
        if logs:
            figures["training_curves"] = training_curves(
                logs, out_dir / "training_curves.png", keys=LOG_KEYS,
                title=f"{bm.name} ({p.backbone}): training")
        combined = _combined(notebook, p, bm.name, records, network, bm.eval_class_names())
        if released:
            combined.update(seeds=[], checkpoints={k: str(v) for k, v in released.items()})
        write_json(out_dir / "metrics.json", combined)
    files = {"table_md": md_path, "table_csv": csv_path, "metrics": out_dir / "metrics.json"}
    return _result(final, table, {k: rebase(v, out_dir, final) for k, v in files.items()},
                   {k: rebase(v, out_dir, final) for k, v in figures.items()}, records=records)


def _method_table(notebook: str, p: Params, bm: Any, records: Sequence[Mapping[str, Any]],
                  network: str, released: bool) -> dict[str, Any]:
    """The comparison table of `run_table` with its notes."""
    table = comparison_table(records, bm, networks=(network,))
    table["title"] = (f"{notebook}: {bm.name}, {p.backbone} backbone: per-class IoU and mIoU (%), "
                      f"ours = the {network} network")
    other = "teacher" if network == "student" else "student"
    table["notes"] += [
        f"ours: the {network} network of each run (DAFormer / MIC evaluate the student); the EMA "
        f"{other}'s numbers are in metrics.json." if network == "student" else
        "ours: the EMA teacher of each run; the student's numbers are in metrics.json."]
    if released:
        table["notes"].append(
            "source 'ours: evaluated/<label>': a checkpoint given in `checkpoints` (e.g. a released "
            "network converted with `udass convert`, docs/converting.md), evaluated here with "
            "udass's evaluator; nothing was trained. Its metrics.json (with the checkpoint's path "
            "and SHA-256) is beside this table.")
    else:
        table["notes"] += [
            _profile_note(p.profile, [r.get("steps") for r in records]),
            "source 'ours: runs/<method>-s<seed>': copies of each run's metrics.json and run.json "
            "beside this table."]
    table["notes"] += _kept_note(records)
    if not bm.is_video and not bm.synthetic and not released:
        table["notes"].append(
            "the paper profile trains the authors' image recipe: QuadMix (and the baselines) on "
            "MIC + HRDA with rare-class sampling and the ImageNet feature distance (docs/method.md)."
            if p.profile == "paper" else
            f"the {p.profile} profile trains at a single resolution without the image recipe's "
            f"components; the paper's image numbers come from MIC + HRDA (the paper profile).")
    return table


def _bar_rows(table: Mapping[str, Any], backbone: str) -> list[dict[str, Any]]:
    """Our rows, plus the paper's Source and QuadMix rows of the same backbone."""
    tag = {"cnn": "QuadMix(CNN)", "vit": "QuadMix(ViT)"}[backbone]
    rows = [dict(r) for r in table["rows"] if r.get("source") != "paper"
            or r.get("method") in ("Source", tag)]
    for r in rows:
        if r.get("source") != "paper":
            evaluated = str(r.get("source", "")).startswith("ours: evaluated/")
            r["label"] = f"{r['method']} ({'evaluated here' if evaluated else 'ours'})"
    return rows


def evaluate_release(label: str, checkpoint: str | os.PathLike, p: Params,
                     network: str = REFERENCE_NETWORK) -> dict[str, Any]:
    """The metrics record of a udass checkpoint (e.g. a converted release) on `p`'s benchmark,
    as a table row named `label`: `udass evaluate` on the target val split of `p.data_root`,
    cached by the file's SHA-256, benchmark and data root in
    `<runs_root>/evaluations/<benchmark>/<file stem>-<key>/metrics.json` (never re-evaluated)."""
    checkpoint = Path(checkpoint)
    digest = file_sha256(checkpoint)
    key = hashlib.sha256(f"{digest}|{p.benchmark}|{p.data_root}|{network}".encode()).hexdigest()[:12]
    folder = p.runs_root / "evaluations" / p.benchmark / f"{_safe(checkpoint.stem)}-{key}"
    rec = read_json(folder / "metrics.json")
    reused = rec is not None
    if rec is None:
        print(f"evaluating {label}: {checkpoint} on {p.benchmark} val -> {folder}", flush=True)
        args = argparse.Namespace(checkpoint=str(checkpoint), benchmark=p.benchmark,
                                  data_root=p.data_root, network=network, out=None,
                                  device=p.device, flow_root=None, allow_partial=False)
        rec = {**evaluate_from_args(args), "checkpoint": str(checkpoint.resolve()), "sha256": digest}
        write_json(folder / "metrics.json", rec)
    if rec.get("backbone") != p.backbone:
        raise UdassError(f"checkpoint {checkpoint} ({label}) is a {rec.get('backbone')} network; "
                         f"this table is for backbone {p.backbone}: pass backbone="
                         f"{rec.get('backbone')}")
    return {**rec, "method": label, "seed": None, "copy": f"evaluated/{_safe(label)}",
            "source_run_dir": str(folder), "reused": reused}


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
                 progress: bool = True, publish: Any = False) -> dict[str, Any]:
    """The ablation table: each row of `udass.config.ablation_rows(benchmark, profile)` (a method +
    overrides) over seeds: ABLATIONS on a video benchmark, the image recipe's IMAGE_ABLATIONS
    (quadmix, +rcs, +fd, +hrda, +mic) on an image benchmark.

    methods: comma-separated row names or "all" (video: source_only, classmix, self_training,
    intra_only, intra+tss, intra+stt, quadmix_paths, +feature_mix, +aggregation,
    no_temporal_weighting, ...). Writes table.md / table.csv (mean ± sample std over seeds, a
    `setting` column with the overrides; our rows only: the paper's ablation table was not
    available), ablation.png (mIoU bars with std error bars and one dot per seed), metrics.json
    and runs/<row>-s<seed>/ copies, replacing the folder whole (under results/local/ unless
    `publish`, as `run_table`). Runs are shared with the other notebooks (same config, same run).
    """
    prof = profile if profile in PROFILES else "demo"  # parse_params reports a bad profile
    bench = benchmark if benchmark in BENCHMARKS else "synthetic-video"  # and a bad benchmark
    rows = ablation_rows(bench, prof)
    p = parse_params(benchmark, backbone, methods, profile, steps, data_root, seeds, pretrained,
                     device, results_dir, runs_root, method_names=list(rows), publish=publish)
    bm = get_benchmark(p.benchmark)
    final = results_folder(p.results_dir, notebook, bm.name, p.backbone)
    runs: list[dict[str, Any]] = []   # every run first: the folder is replaced only at the end
    for row in p.methods:
        method, overrides = rows[row]
        for seed in p.seeds:
            rec = ensure_run(config_for(p, method, seed, overrides), p.runs_root, p.device, progress)
            copy = f"runs/{_safe(row)}-s{seed}"
            runs.append({**rec, "method": row, "seed": seed, "run_dir": copy, "copy": copy,
                         "setting": ablation_setting(row, rows), "source_run_dir": rec["run_dir"]})
    with staged_folder(final) as out_dir:
        for rec in runs:
            _copy_run_files(Path(rec["source_run_dir"]), out_dir / rec["copy"])
        records = runs + _kept_records(final, out_dir, p.methods, p.profile)
        table = _write_ablation(notebook, p, bm, rows, records, network, out_dir)
    return _result(final, table, {"table_md": final / "table.md", "table_csv": final / "table.csv",
                                 "metrics": final / "metrics.json"},
                   {"ablation": final / "ablation.png"}, records=records)


def _write_ablation(notebook: str, p: Params, bm: Any, rows: Mapping[str, Any],
                    records: list[dict[str, Any]], network: str, out_dir: Path) -> dict[str, Any]:
    """The ablation's table, metrics.json and figure, written into `out_dir`; returns the table."""
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
        ("rows: udass.config.ABLATIONS (docs/method.md, section 5)" if bm.is_video else
         "rows: udass.config.IMAGE_ABLATIONS, each adding one image-recipe component to the row "
         "above (sizes at this profile: docs/method.md, \"The components at the demo and test "
         "sizes\")")
        + "; the paper's ablation table was not available, so only our rows are shown.",
    ]
    table["notes"] += _kept_note(records)
    write_table(table, out_dir)
    combined = _combined(notebook, p, bm.name, records, network, bm.eval_class_names())
    write_json(out_dir / "metrics.json", combined)
    ablation_figure(combined, out_dir / "ablation.png",
                    title=f"{bm.name} ({p.backbone}): ablation ({network}, {p.profile})")
    return table


# =========================================================================== summary document
_SUMMARY_HEAD = """# Results on the embedded synthetic benchmarks

Generated by `udass summary` from the tables in `results/` (themselves
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
        mean, sd = mean_std(diffs)
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


def write_summary(results_dir: str | os.PathLike = "results",
                  out: str | os.PathLike = "docs/results-synthetic.md") -> Path:
    """Write `results_summary(results_dir)` to `out` (`udass summary`), keeping what follows
    ANALYSIS_MARKER in an existing `out` (the hand-written analysis). Relative paths are taken
    from the repository root in a source checkout (`udass.params.anchor`)."""
    out = anchor(out)
    text = results_summary(anchor(results_dir))
    kept = out.read_text(encoding="utf-8").split(ANALYSIS_MARKER, 1) if out.is_file() else []
    text += "\n" + ANALYSIS_MARKER + (kept[1] if len(kept) == 2 else "\n")
    write_text(out, text)
    return out
