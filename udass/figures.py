"""Figures: the per-class bars and training curves of the comparison tables, the ablation bars,
confusion matrices, and the drawing helpers of the figures of trained runs (udass.explore,
udass.explorer: label maps in the protocol's colours, frames as images, the class legend).

Figures are `matplotlib.figure.Figure` objects (no pyplot, no backend switch), written as PNG by
`udass.io.save_figure`. The tables themselves are `udass.report`, which imports no matplotlib.
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

from udass.benchmarks import get_benchmark
from udass.data.flow import flow_to_color
from udass.errors import UdassError
from udass.evaluate import as_numpy_matrix
from udass.io import save_figure
from udass.report import COLUMN_LABELS
from udass.segment import colorize

__all__ = ["per_class_bars", "per_class_bars_figure", "training_curves", "training_curves_figure",
           "legend_below", "ablation_figure", "ablation_bars", "confusion_figure",
           "benchmark_palette", "colour_labels", "frame_image", "blank_panel", "image_panel",
           "class_legend", "flow_key"]


# =========================================================================== tables' figures
def _row_label(row: Mapping[str, Any]) -> str:
    if row.get("label"):
        return str(row["label"])
    parts = [str(row.get("method", "?"))]
    if row.get("backbone") and f"({row['backbone']}".lower() not in parts[0].lower():
        parts.append(str(row["backbone"]))
    if row.get("network") == "teacher":
        parts.append("teacher")
    if row.get("source") == "paper":
        parts.append("[paper]")
    return " ".join(parts)


def _row_value(row: Mapping[str, Any], key: str) -> float:
    if key in (row.get("per_class_iou") or {}):
        v = row["per_class_iou"][key]
    else:
        v = row.get(key)
    return float("nan") if v is None else float(v)


def per_class_bars(rows: Sequence[Mapping[str, Any]], class_names: Sequence[str],
                   out_png: str | os.PathLike, title: str = "") -> Path:
    """Grouped bars: one group per class (plus mIoU when the rows have it), one colour per row.

    rows: `comparison_table` rows or metrics.json records (values under "per_class_iou" or as
    top-level keys, IoU in percent; "std" adds error bars); a row's legend label is its "label"
    key, else built from method / backbone / network / source. None values draw no bar. The
    legend sits below the class names, outside the plot (`per_class_bars_figure`).
    Returns the PNG path.
    """
    return save_figure(per_class_bars_figure(rows, class_names, title), out_png)


def per_class_bars_figure(rows: Sequence[Mapping[str, Any]], class_names: Sequence[str],
                          title: str = "") -> Figure:
    """The figure of `per_class_bars`."""
    if not rows:
        raise ValueError("per_class_bars needs at least one row")
    groups = list(class_names) + (["miou"] if any("miou" in r for r in rows) else [])
    n, g = len(rows), len(groups)
    width = 0.8 / n
    fig = Figure(figsize=(min(18.0, max(8.0, 0.22 * g * max(3, n))), 4.5))
    ax = fig.add_subplot()
    colors = [_color(i, n) for i in range(n)]
    x = np.arange(g)
    for i, r in enumerate(rows):
        vals = [_row_value(r, k) for k in groups]
        std = r.get("std") or {}
        err = [std.get(k, 0.0) for k in groups] if std else None
        ax.bar(x - 0.4 + width * (i + 0.5), vals, width, yerr=err, capsize=2 if err else 0,
               color=colors[i], label=_row_label(r))
    ax.set_xticks(x)
    ax.set_xticklabels([COLUMN_LABELS.get(k, k) for k in groups], rotation=45, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(-0.6, g - 0.4)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    legend_below(fig, handles, labels, ncol=4)
    return fig


def legend_below(fig: Figure, handles: Sequence[Any], labels: Sequence[str], ncol: int = 4,
                 fontsize: float = 8, top: float = 1.0) -> None:
    """A figure legend in a band of its own under the axes (and their tick labels): the axes are
    laid out (`tight_layout`) above the band, so the legend covers no data whatever the number
    of entries. top: the figure fraction left above the axes (e.g. for a suptitle)."""
    ncol = max(1, min(ncol, len(labels)))
    rows = math.ceil(len(labels) / ncol)
    band = (0.25 * rows + 0.2) / fig.get_figheight()
    fig.tight_layout(rect=(0, band, 1, top))
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=ncol,
               fontsize=fontsize, frameon=False)


def _color(i: int, n: int) -> tuple[float, ...]:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return tuple(cmap(i % cmap.N))


def _read_log(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise UdassError(f"training log {path} not found; a run writes OUT/log.csv as it trains")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        fields = list(reader.fieldnames or [])
    if "step" not in fields:
        raise UdassError(f"training log {path} has no 'step' column (columns: {', '.join(fields)})")
    return fields, rows


def _series(rows: list[dict[str, str]], key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for r in rows:
        try:
            x, y = float(r["step"]), float(r.get(key) or "nan")
        except (TypeError, ValueError):
            continue
        if math.isfinite(x) and math.isfinite(y):
            xs.append(x)
            ys.append(y)
    return np.asarray(xs), np.asarray(ys)


def training_curves(log_csvs: Mapping[str, str | os.PathLike], out_png: str | os.PathLike,
                    keys: Sequence[str] | None = None, title: str = "") -> Path:
    """Training curves from runs' log.csv files: one panel per key, one line per run.

    log_csvs: {run label: path of a log.csv with a 'step' column}; labels "<method> s<seed>"
          (what `run_table` passes) share one colour and one legend entry per method.
    keys: the columns to plot (e.g. ("loss_total", "loss_source", "lr")); None = every column
          whose name starts with "loss". Keys no log has are skipped; empty or non-numeric cells
          are skipped. The legend sits under the panels (`training_curves_figure`). Returns the
          PNG path.
    """
    return save_figure(training_curves_figure(log_csvs, keys, title), out_png)


def _run_group(label: str) -> str:
    """"dacs s3" -> "dacs"; any other label is its own group."""
    head, sep, tail = label.rpartition(" s")
    return head if sep and tail.isdigit() else label


def training_curves_figure(log_csvs: Mapping[str, str | os.PathLike],
                           keys: Sequence[str] | None = None, title: str = "") -> Figure:
    """The figure of `training_curves`."""
    if not log_csvs:
        raise ValueError("training_curves needs at least one log")
    logs = {name: _read_log(Path(p)) for name, p in log_csvs.items()}
    found: list[str] = []
    for fields, _ in logs.values():
        found += [f for f in fields if f not in found]
    wanted = [k for k in found if k.startswith("loss")] if keys is None else list(keys)
    present = [k for k in wanted if k in found]
    if not present:
        raise UdassError(f"none of the columns {wanted or ['loss*']} is in the logs "
                         f"(columns found: {', '.join(found)})")
    groups = list(dict.fromkeys(_run_group(name) for name in logs))
    runs_of = {g: sum(_run_group(name) == g for name in logs) for g in groups}
    ncols = min(3, len(present))
    nrows = math.ceil(len(present) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 2.6 * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    lines: dict[str, Any] = {}
    for ax, key in zip(axes.flat, present):
        for name, (_, rows) in logs.items():
            group = _run_group(name)
            x, y = _series(rows, key)
            if x.size:
                (line,) = ax.plot(x, y, color=_color(groups.index(group), len(groups)), lw=0.9,
                                  alpha=0.85 if runs_of[group] > 1 else 1.0)
                lines.setdefault(group, line)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(present):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    shown = [g for g in groups if g in lines]
    legend_below(fig, [lines[g] for g in shown],
                 [g + (f" ({runs_of[g]} runs)" if runs_of[g] > 1 else "") for g in shown],
                 ncol=5, top=1.0 - (0.35 / fig.get_figheight() if title else 0.0))
    return fig


def confusion_figure(matrix: Any, class_names: Sequence[str], out_png: str | os.PathLike,
                     normalize: bool = True, title: str = "") -> Path:
    """Heat map of a [C, C] confusion matrix (rows ground truth, columns prediction).

    matrix: a udass.evaluate.ConfusionMatrix, tensor or array; class_names: C names.
    normalize: show each row as percent of its ground-truth pixels (rows without ground truth
    grey); else raw counts. Cells >= 1 % are annotated when C <= 25. Returns the PNG path.
    """
    m = as_numpy_matrix(matrix)
    c = m.shape[0]
    if len(class_names) != c:
        raise ValueError(f"{len(class_names)} class names for a {c}-class confusion matrix")
    if normalize:
        with np.errstate(divide="ignore", invalid="ignore"):
            shown = 100.0 * m / m.sum(axis=1, keepdims=True)
    else:
        shown = m
    fig = Figure(figsize=(1.0 + 0.42 * c, 0.8 + 0.4 * c))
    ax = fig.add_subplot()
    cmap = colormaps["Blues"].with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, vmin=0,
                   vmax=100 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04,
                 label="% of ground-truth pixels" if normalize else "pixels")
    ax.set_xticks(range(c))
    ax.set_yticks(range(c))
    ax.set_xticklabels(class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticklabels(class_names, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    if normalize and c <= 25:
        for i in range(c):
            for j in range(c):
                v = shown[i, j]
                if math.isfinite(v) and v >= 1.0:
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if v > 55 else "black")
    if title:
        ax.set_title(title)
    return save_figure(fig, out_png)


def ablation_figure(combined: Mapping[str, Any], out_png: Path, title: str = "") -> Path:
    """Horizontal mIoU bars of the ablation rows: mean, sample-std error bars, a dot per seed,
    the mean written right of all three (`ablation_bars`). Returns the PNG path."""
    return save_figure(ablation_bars(combined, title), out_png)


def ablation_bars(combined: Mapping[str, Any], title: str = "") -> Figure:
    """The figure of `ablation_figure` (combined: the ablation's metrics.json)."""
    rows = list(combined["methods"].items())
    fig = Figure(figsize=(7.5, 0.45 * len(rows) + 1.4))
    ax = fig.add_subplot()
    for i, (name, entry) in enumerate(rows):
        mean, std = entry.get("miou"), entry.get("miou_std")
        ax.barh(i, mean or 0.0, xerr=std or 0.0, capsize=3, color="#4c72b0" if
                entry.get("provenance") == "this call" else "#999999")
        seeds_miou = [float(v) for v in entry.get("miou_per_seed", []) if v is not None]
        ax.plot(seeds_miou, [i] * len(seeds_miou), "k.", ms=4)
        right = max([(mean or 0.0) + (std or 0.0), *seeds_miou])   # right of the bar, bars and dots
        ax.text(right + 0.5, i, "—" if mean is None else f"{mean:.1f}", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([name for name, _ in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel(f"mIoU (%), {combined.get('network', 'student')}")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# =========================================================================== panels of trained runs
def benchmark_palette(benchmark: str) -> np.ndarray:
    """uint8 [256, 3]: the colour of each train id of the benchmark's protocol (ignore black)."""
    return get_benchmark(benchmark).protocol.palette()


def colour_labels(labels: Tensor | np.ndarray, pal: np.ndarray) -> np.ndarray:
    """Train ids [H, W] (255 ignore) -> uint8 RGB [H, W, 3] in the palette `pal`."""
    return colorize(labels.numpy() if isinstance(labels, Tensor) else np.asarray(labels), pal)


def frame_image(frame: Tensor) -> np.ndarray:
    """A frame [3, H, W] float in [0, 1] -> H x W x 3 float for imshow."""
    return frame.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def blank_panel(ax: Any, text: str = "") -> None:
    """An empty panel, with an optional grey note in its middle."""
    ax.set_axis_off()
    if text:
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=7, color="#666666",
                transform=ax.transAxes, wrap=True)


def image_panel(ax: Any, img: np.ndarray, title: str = "", **kw: Any) -> None:
    """An image panel without ticks (nearest-neighbour, so label maps stay crisp)."""
    ax.imshow(img, interpolation="nearest", **kw)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def class_legend(fig: Any, benchmark: str, ncol: int = 8, fontsize: float = 7,
                 loc: str = "lower center", anchor: tuple[float, float] | None = None) -> None:
    """The benchmark's classes and colours as a legend along the bottom of `fig`."""
    bm = get_benchmark(benchmark)
    pal = bm.protocol.palette()
    handles = [Patch(color=pal[i] / 255.0, label=bm.protocol.classes[i])
               for i in range(bm.num_classes)]
    fig.legend(handles=handles, loc=loc, ncol=min(ncol, len(handles)), fontsize=fontsize,
               frameon=False, **({} if anchor is None else {"bbox_to_anchor": anchor}))


def flow_key_image(size: int = 81) -> np.ndarray:
    """uint8 [size, size, 3]: the colour `flow_to_color` gives the displacement (x, y) at each
    point of the unit disc around the centre (x right, y down, as in the images; the disc's edge
    is the largest displacement of a panel), white outside the disc."""
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j].astype(np.float32)
    img = flow_to_color(np.stack([x, y], axis=-1), max_norm=1.0)
    img[x ** 2 + y ** 2 > 1.0] = 255
    return img


def flow_key(ax: Any, fontsize: float = 8) -> None:
    """The flow colour key in `ax`: hue = the direction a pixel moved (its displacement from
    frame t to frame t-1), saturation = its length relative to the panel's largest (white: no
    motion)."""
    ax.imshow(flow_key_image(), interpolation="bilinear", extent=(-1, 1, 1, -1))
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    for x, y, text in ((1.12, 0, "right"), (-1.12, 0, "left"), (0, -1.12, "up"), (0, 1.12, "down")):
        ax.text(x, y, text, fontsize=fontsize - 1, ha="left" if x > 0 else "right" if x < 0 else "center",
                va="bottom" if y < 0 else "top" if y > 0 else "center")
    ax.set_xlim(-1.9, 1.9)
    ax.set_ylim(1.5, -1.5)
    ax.set_title("flow key: hue = direction t→t-1,\nsaturation = length (panel max)",
                 fontsize=fontsize)
