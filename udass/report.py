"""Reports: the paper's tables and comparison tables (Markdown + CSV); their figures are
`udass.figures`.

Paper numbers come from `udass/reference/*.csv` (the result tables of the authors' READMEs, see
/work/shared/reference/README.md) and are only ever shown in rows whose source is "paper"; our
rows come from metrics.json records. Every file is written atomically (`udass.io`).
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from udass.benchmarks import BENCHMARKS, Benchmark, get_benchmark
from udass.data.splits import is_partial
from udass.errors import UdassError, unknown_name
from udass.io import write_text

__all__ = ["PAPER_TABLES", "HEADER_CLASS_NAMES", "MEAN_HEADERS", "KNOWN_TRANSCRIPTION_ISSUES",
           "load_paper_table", "paper_table_issues", "check_paper_table", "TableIssue",
           "comparison_table", "write_table", "mean_std", "COLUMN_LABELS", "paper_benchmarks"]

# ----------------------------------------------------------------------------------- paper tables
PAPER_TABLES: Mapping[str, str] = MappingProxyType({
    "gtav2cityscapes": "gtav_to_cityscapes.csv",
    "synthia2cityscapes": "synthia_to_cityscapes.csv",
    "synthia-seq2cityscapes-seq": "synthia_seq_to_cityscapes_seq.csv",
    "viper2cityscapes-seq": "viper_to_cityscapes_seq.csv",
})

# The READMEs' column abbreviations -> protocol class names (udass.data.protocols), in one place.
HEADER_CLASS_NAMES: Mapping[str, str] = MappingProxyType({
    "road": "road", "side.": "sidewalk", "buil.": "building", "wall": "wall", "fence": "fence",
    "pole": "pole", "light": "light", "sign": "sign", "vege.": "vegetation", "terr.": "terrain",
    "sky": "sky", "per.": "person", "rider": "rider", "car": "car", "truck": "truck", "bus": "bus",
    "train": "train", "moto.": "motorcycle", "motor": "motorcycle", "bike": "bicycle",
})
# Mean columns -> metrics.json keys. On SYNTHIA "miou" is mIoU(16), the benchmark's main mean.
MEAN_HEADERS: Mapping[str, str] = MappingProxyType({
    "mIoU": "miou", "mIoU(16)": "miou_16", "mIoU(13)": "miou_13"})
METHOD_HEADER = "Methods"
NOT_REPORTED = "—"

# Problems of the published tables (reference/README.md). The numbers are kept as published;
# these notes travel with the rows into every table that shows them.
KNOWN_TRANSCRIPTION_ISSUES: Mapping[tuple[str, str], str] = MappingProxyType({
    ("synthia2cityscapes", "Source"):
        "mIoU16 and mIoU13 appear swapped in the README: the per-class values give 29.5 over 16 "
        "classes and 33.7 over 13 (published numbers kept)",
    ("synthia2cityscapes", "Sepico(ViT)"):
        "vegetation 56.8 is inconsistent with the reported means; 86.8 reproduces 64.3 / 71.4 "
        "(published numbers kept)",
    ("gtav2cityscapes", "Freedom(CNN)"):
        "the per-class values give mIoU 60.34, not the reported 61.3 (published numbers kept)",
    ("synthia2cityscapes", "Freedom(CNN)"):
        "the per-class values give 56.24 / 62.51, not the reported 59.1 / 66.0 "
        "(published numbers kept)",
    ("synthia-seq2cityscapes-seq", "QuadMix(CNN)"):
        "the per-class values give mIoU 61.56, reported 61.5 (published numbers kept)",
})


def _as_benchmark(benchmark: Benchmark | str) -> Benchmark:
    return benchmark if isinstance(benchmark, Benchmark) else get_benchmark(benchmark)


def _paper_file(benchmark: Benchmark) -> str:
    if benchmark.name not in PAPER_TABLES:
        raise UdassError(f"the paper has no table for benchmark {benchmark.name!r}; paper tables "
                         f"exist for: {', '.join(PAPER_TABLES)}")
    return PAPER_TABLES[benchmark.name]


def _read_paper_csv(benchmark: Benchmark) -> tuple[list[str], list[list[str]]]:
    """Header and data rows of a benchmark's packaged paper table."""
    name = _paper_file(benchmark)
    text = (resources.files("udass") / "reference" / name).read_text(encoding="utf-8")
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    return rows[0], rows[1:]


def _parse_value(cell: str, where: str) -> float | None:
    cell = cell.strip()
    if cell == NOT_REPORTED:
        return None
    try:
        return float(cell)
    except ValueError:
        raise UdassError(f"{where}: expected a number or {NOT_REPORTED!r}, found {cell!r}; the "
                         f"packaged table is corrupt, reinstall udass") from None


def load_paper_table(benchmark: Benchmark | str) -> list[dict[str, Any]]:
    """The paper's result table of a benchmark, one dict per method, in the published order.

    Row: {"method": str, "per_class_iou": {protocol class name: IoU % or None}, "miou": float or
    None, "miou_16"/"miou_13" (SYNTHIA), "note": str (only rows with a known transcription
    problem)}. "—" (not reported) becomes None. Classes follow the benchmark's evaluation order.
    """
    bm = _as_benchmark(benchmark)
    header, data = _read_paper_csv(bm)
    if header[0] != METHOD_HEADER:
        raise UdassError(f"{_paper_file(bm)}: first column must be {METHOD_HEADER!r}, found "
                         f"{header[0]!r}")
    keys: list[str] = []
    for h in header[1:]:
        if h in HEADER_CLASS_NAMES:
            keys.append(HEADER_CLASS_NAMES[h])
        elif h in MEAN_HEADERS:
            keys.append(MEAN_HEADERS[h])
        else:
            raise UdassError(f"{_paper_file(bm)}: unknown column {h!r}; add its class to "
                             f"udass.report.HEADER_CLASS_NAMES")
    names = bm.eval_class_names()
    out = []
    for cells in data:
        method = cells[0].strip()
        vals = {k: _parse_value(c, f"{_paper_file(bm)} row {method}")
                for k, c in zip(keys, cells[1:])}
        row: dict[str, Any] = {"method": method,
                               "per_class_iou": {c: vals.get(c) for c in names}}
        for sub, ids in bm.subsets.items():
            if tuple(ids) == tuple(bm.eval_classes) and "miou" not in vals:
                row["miou"] = vals.get(sub)
        for k in MEAN_HEADERS.values():
            if k in vals:
                row[k] = vals[k]
        row.setdefault("miou", None)
        note = KNOWN_TRANSCRIPTION_ISSUES.get((bm.name, method))
        if note:
            row["note"] = note
        out.append(row)
    return out


@dataclass(frozen=True)
class TableIssue:
    """A reported mean that the row's per-class values do not reproduce."""

    benchmark: str
    method: str
    column: str          # "miou", "miou_16", "miou_13"
    reported: float
    recomputed: float    # mean of the published per-class values over the column's classes

    @property
    def difference(self) -> float:
        return self.reported - self.recomputed

    @property
    def beyond_rounding(self) -> bool:
        """True when rounding (0.05 on the mean + at most 0.05 on the per-class values) cannot
        explain the difference."""
        return abs(self.difference) > 0.1 + 1e-9

    def __str__(self) -> str:
        kind = "beyond rounding" if self.beyond_rounding else "rounding-level"
        return (f"{self.benchmark} / {self.method}: {self.column} reported {self.reported:.1f}, "
                f"per-class mean {self.recomputed:.2f} ({self.difference:+.2f}, {kind})")


def _mean_columns(bm: Benchmark) -> dict[str, tuple[int, ...]]:
    """Mean columns of the benchmark's paper table -> the class ids they average."""
    header, _ = _read_paper_csv(bm)
    cols = {}
    for h in header[1:]:
        if h in MEAN_HEADERS:
            key = MEAN_HEADERS[h]
            cols[key] = tuple(bm.subsets[key]) if key in bm.subsets else tuple(bm.eval_classes)
    return cols


def paper_table_issues(benchmark: Benchmark | str, tol: float = 0.05) -> list[TableIssue]:
    """Every (row, mean column) whose reported mean differs from the mean of the row's per-class
    values by more than `tol` (0.05: the reported mean, rounded to 0.1, should hold the
    recomputed one to within half a unit). Rows missing a needed class or the mean are skipped."""
    bm = _as_benchmark(benchmark)
    issues = []
    for row in load_paper_table(bm):
        for col, mean in _recomputed_means(bm, row).items():
            reported = row.get(col)
            if reported is not None and mean is not None and abs(reported - mean) > tol + 1e-9:
                issues.append(TableIssue(bm.name, row["method"], col, reported, mean))
    return issues


def _recomputed_means(bm: Benchmark, row: Mapping[str, Any]) -> dict[str, float | None]:
    """Mean column -> mean of the row's per-class values over its classes (None if one is missing)."""
    out: dict[str, float | None] = {}
    for col, ids in _mean_columns(bm).items():
        vals = [row["per_class_iou"].get(bm.protocol.classes[i]) for i in ids]
        out[col] = None if any(v is None for v in vals) else float(np.mean(vals))
    return out


def check_paper_table(benchmark: Benchmark | str, tol: float = 0.05) -> list[str]:
    """Human-readable inconsistencies of a paper table (see `paper_table_issues`), one per line;
    each says whether rounding can explain it and whether the row carries a known-issue note."""
    bm = _as_benchmark(benchmark)
    rows = {r["method"]: r for r in load_paper_table(bm)}
    out = []
    for issue in paper_table_issues(bm, tol):
        msg = str(issue)
        means = _recomputed_means(bm, rows[issue.method])
        for other, mean in means.items():
            if other != issue.column and mean is not None and abs(issue.reported - mean) <= tol:
                msg += f"; equals the per-class mean of {other} ({mean:.2f}): columns swapped?"
        if (bm.name, issue.method) in KNOWN_TRANSCRIPTION_ISSUES:
            msg += "; known, noted in the row"
        out.append(msg)
    return out


# ----------------------------------------------------------------------------------- tables
COLUMN_LABELS = {"method": "method", "backbone": "backbone", "network": "network", "source": "source",
           "seeds": "seeds", "miou": "mIoU", "miou_16": "mIoU16", "miou_13": "mIoU13",
           "note": "note"}


_TEXT_COLUMNS = ("method", "backbone", "network", "source", "seeds", "note")


def _paper_backbone(method: str) -> str:
    for tag, name in (("(CNN)", "cnn"), ("(ViT)", "vit")):
        if method.endswith(tag):
            return name
    return ""


def _network_part(metrics: Mapping[str, Any], network: str) -> Mapping[str, Any] | None:
    if network == "student":
        return metrics
    part = metrics.get(network)
    return part if isinstance(part, Mapping) else None


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1; None for one value) of the values that are not None or NaN,
    rounded to 2 decimals; (None, None) when there are none. How every table aggregates seeds."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return round(mean, 2), None
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    return round(mean, 2), round(math.sqrt(var), 2)


def _ours_rows(ours: Sequence[Mapping[str, Any]], bm: Benchmark, value_keys: list[str],
               networks: Sequence[str]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for m in ours:
        if m.get("benchmark") != bm.name:
            raise UdassError(f"a metrics record of benchmark {m.get('benchmark')!r} was given for a "
                             f"{bm.name} table; pass the runs of one benchmark")
        for net in networks:
            if _network_part(m, net) is not None:
                key = (str(m.get("method", "?")), str(m.get("backbone", "")), net)
                groups.setdefault(key, []).append(m)
    rows = []
    for (method, backbone, net), records in groups.items():
        parts = [_network_part(m, net) for m in records]
        row: dict[str, Any] = {"method": method, "backbone": backbone, "network": net}
        dirs = [str(m["run_dir"]) for m in records if m.get("run_dir")]
        row["source"] = "ours: " + ", ".join(dirs) if dirs else "ours"
        seeds = [m.get("seed") for m in records]
        row["seeds"] = (", ".join(str(s) for s in seeds) if all(s is not None for s in seeds)
                        else ("" if len(records) == 1 else f"{len(records)} runs"))
        std: dict[str, float] = {}
        for k in value_keys:
            vals = [(p.get("per_class_iou") or {}).get(k) if k in bm.eval_class_names() else p.get(k)
                    for p in parts]
            row[k], s = mean_std(vals)
            if s is not None:
                std[k] = s
        if std:
            row["std"] = std
        partial = [m["clips"] for m in records if is_partial(m)]
        if partial:
            row["note"] = "partial evaluation: " + ", ".join(
                f"{c.get('evaluated')} of {c.get('expected')} val clips" for c in partial)
        rows.append(row)
    return rows


def comparison_table(ours: Sequence[Mapping[str, Any]], benchmark: Benchmark | str,
                     paper_rows: Sequence[str] | None = None,
                     networks: Sequence[str] = ("student",)) -> dict[str, Any]:
    """A table of our runs beside the paper's published rows (paper benchmarks only).

    ours: metrics.json records of one benchmark (optionally with "run_dir" and "seed" keys added
          by the caller); records sharing (method, backbone, network) become one row with the
          mean and sample standard deviation (ddof=1) over them ("std": {column: std}).
    paper_rows: paper methods to include, e.g. ["Source", "QuadMix(ViT)"]; None = all of them;
          ignored for benchmarks without a paper table (the synthetic ones).
    networks: which networks of each record to show ("student", "teacher").
    Returns {"benchmark", "title", "columns": [keys], "labels": {key: header}, "rows": [{key:
    value}], "notes": [str]}; columns are method, backbone, network, source ("paper" or
    "ours: <run dirs>"), seeds, the eval classes, miou, the subsets other than the one equal to
    the evaluation set (on SYNTHIA "miou" is mIoU16, labelled so), and note when a row has one.
    IoU in percent; None where not reported / no ground truth.
    """
    bm = _as_benchmark(benchmark)
    classes = list(bm.eval_class_names())
    # A subset equal to the evaluation set (SYNTHIA's miou_16) is the "miou" column itself.
    same = [k for k, ids in bm.subsets.items() if tuple(ids) == tuple(bm.eval_classes)]
    subsets = [k for k in bm.subsets if k not in same]
    value_keys = classes + ["miou", *subsets]
    rows: list[dict[str, Any]] = []
    notes = ["IoU in percent; '—': not reported, or no ground-truth pixel in the split."]
    if bm.name in PAPER_TABLES:
        paper = load_paper_table(bm)
        if paper_rows is not None:
            known = [r["method"] for r in paper]
            for name in paper_rows:
                if name not in known:
                    raise unknown_name(f"paper row of {bm.name}", name, known)
            paper = [r for r in paper if r["method"] in paper_rows]
        for p in paper:
            row = {"method": p["method"], "backbone": _paper_backbone(p["method"]),
                   "network": "", "source": "paper", "seeds": "",
                   **{c: p["per_class_iou"].get(c) for c in classes},
                   **{k: p.get(k) for k in ["miou", *subsets]}}
            if p.get("note"):
                row["note"] = p["note"]
            rows.append(row)
        if paper:
            notes.append(f"source 'paper': numbers as published in the authors' READMEs "
                         f"(udass/reference/{PAPER_TABLES[bm.name]}), not measured here.")
    rows.extend(_ours_rows(ours, bm, value_keys, networks))
    if any(r.get("std") for r in rows):
        notes.append("ours over several runs: mean ± sample standard deviation.")
    if any(str(r.get("note", "")).startswith("partial evaluation") for r in rows):
        notes.append("partial evaluation: the run evaluated another number of val clips than the "
                     "benchmark's split holds (`--allow-partial` or `train.eval_max_clips`); not "
                     "comparable with full-split numbers.")
    columns = ["method", "backbone", "network", "source", "seeds", *value_keys]
    if any(r.get("note") for r in rows):
        columns.append("note")
    labels = {c: COLUMN_LABELS.get(c, c) for c in columns}
    if same:
        labels["miou"] = COLUMN_LABELS.get(same[0], same[0])
    return {"benchmark": bm.name, "title": f"{bm.name}: per-class IoU and mIoU (%)",
            "columns": columns, "labels": labels, "rows": rows, "notes": notes}


def _fmt(value: Any, std: float | None, paper: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        s = f"{value:.1f}" if paper else f"{value:.2f}"
        return f"{s} ± {std:.2f}" if std is not None else s
    return str(value)


def _markdown(table: Mapping[str, Any]) -> str:
    cols = table["columns"]
    lines = [f"# {table.get('title', table['benchmark'])}", "",
             "| " + " | ".join(table["labels"].get(c, c) for c in cols) + " |",
             "|" + "|".join("---" if c in _TEXT_COLUMNS else "---:"
                            for c in cols) + "|"]
    for r in table["rows"]:
        paper = r.get("source") == "paper"
        cells = [_fmt(r.get(c), (r.get("std") or {}).get(c), paper).replace("|", "\\|")
                 for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(f"- {n}" for n in table.get("notes", []))
    return "\n".join(lines) + "\n"


def _csv(table: Mapping[str, Any]) -> str:
    cols = list(table["columns"])
    std_cols = [c for c in cols if any(c in (r.get("std") or {}) for r in table["rows"])]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols + [f"{c}_std" for c in std_cols])
    for r in table["rows"]:
        std = r.get("std") or {}
        w.writerow(["" if r.get(c) is None else r.get(c) for c in cols]
                   + ["" if std.get(c) is None else std[c] for c in std_cols])
    return buf.getvalue()


def write_table(table: Mapping[str, Any], out_dir: str | os.PathLike,
                name: str = "table") -> tuple[Path, Path]:
    """Write a `comparison_table` as `<out_dir>/<name>.md` and `<name>.csv` (atomically).

    The CSV holds the raw column keys, empty cells for None, and `<column>_std` columns where
    some row is a mean over runs. Returns (md_path, csv_path).
    """
    out = Path(out_dir)
    md_path, csv_path = out / f"{name}.md", out / f"{name}.csv"
    write_text(md_path, _markdown(table))
    write_text(csv_path, _csv(table))
    return md_path, csv_path


def paper_benchmarks() -> list[str]:
    """Benchmark ids that have a paper table."""
    return [b for b in BENCHMARKS if b in PAPER_TABLES]
