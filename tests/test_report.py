"""Reports: paper tables (header mapping, known transcription problems), comparison tables, plots."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch

from udass.data.protocols import BENCHMARKS
from udass.errors import UdassError
from udass.evaluate import ConfusionMatrix, metrics_record
from udass.figures import confusion_figure, per_class_bars, training_curves
from udass.report import (HEADER_CLASS_NAMES, KNOWN_TRANSCRIPTION_ISSUES, MEAN_HEADERS,
                          PAPER_TABLES, _read_paper_csv, check_paper_table, comparison_table,
                          load_paper_table, paper_table_issues, write_table)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------- paper tables
@pytest.mark.parametrize("name", sorted(PAPER_TABLES))
def test_every_header_maps_and_covers_the_eval_classes(name):
    bm = BENCHMARKS[name]
    header, rows = _read_paper_csv(bm)
    class_headers = [h for h in header[1:] if h not in MEAN_HEADERS]
    assert all(h in HEADER_CLASS_NAMES for h in class_headers), class_headers
    mapped = [HEADER_CLASS_NAMES[h] for h in class_headers]
    assert len(set(mapped)) == len(mapped)
    assert set(mapped) == set(bm.eval_class_names())
    assert all(c in bm.protocol.classes for c in HEADER_CLASS_NAMES.values() if c in mapped)
    table = load_paper_table(name)
    assert len(table) == len(rows)
    for row in table:
        assert list(row["per_class_iou"]) == list(bm.eval_class_names())


def test_paper_rows_parse_numbers_and_missing_values():
    seq = {r["method"]: r for r in load_paper_table("synthia-seq2cityscapes-seq")}
    assert seq["QuadMix(ViT)"]["miou"] == 67.2
    assert seq["QuadMix(ViT)"]["per_class_iou"]["sidewalk"] == 61.9
    syn = {r["method"]: r for r in load_paper_table("synthia2cityscapes")}
    bdm = syn["BDM"]
    assert bdm["per_class_iou"]["wall"] is None and bdm["miou_16"] is None and bdm["miou"] is None
    assert bdm["miou_13"] == 66.8
    assert syn["QuadMix(ViT)"]["miou"] == syn["QuadMix(ViT)"]["miou_16"] == 67.5
    assert syn["QuadMix(ViT)"]["miou_13"] == 74.3
    assert syn["QuadMix(ViT)"]["per_class_iou"]["motorcycle"] == 66.8
    gta = {r["method"]: r for r in load_paper_table("gtav2cityscapes")}
    assert gta["QuadMix(ViT)"]["per_class_iou"]["motorcycle"] == 65.1
    assert gta["QuadMix(ViT)"]["per_class_iou"]["bicycle"] == 68.1
    with pytest.raises(UdassError, match="no table"):
        load_paper_table("synthetic-video")


def test_known_transcription_problems_are_kept_and_noted():
    syn = {r["method"]: r for r in load_paper_table("synthia2cityscapes")}
    assert syn["Source"]["miou_16"] == 33.7 and syn["Source"]["miou_13"] == 29.5  # as published
    assert "swapped" in syn["Source"]["note"]
    assert syn["Sepico(ViT)"]["per_class_iou"]["vegetation"] == 56.8 and "86.8" in syn["Sepico(ViT)"]["note"]
    assert "note" in syn["Freedom(CNN)"] and "note" not in syn["QuadMix(ViT)"]
    noted = {(b, r["method"]) for b in PAPER_TABLES for r in load_paper_table(b) if "note" in r}
    assert noted == set(KNOWN_TRANSCRIPTION_ISSUES)


def test_check_paper_table_finds_the_known_problems():
    found = {(i.benchmark, i.method, i.column): i for b in PAPER_TABLES for i in paper_table_issues(b)}
    expected = {("synthia2cityscapes", "Source", "miou_16"), ("synthia2cityscapes", "Source", "miou_13"),
                ("synthia2cityscapes", "Sepico(ViT)", "miou_16"),
                ("synthia2cityscapes", "Sepico(ViT)", "miou_13"),
                ("synthia2cityscapes", "Freedom(CNN)", "miou_16"),
                ("synthia2cityscapes", "Freedom(CNN)", "miou_13"),
                ("gtav2cityscapes", "Freedom(CNN)", "miou")}
    beyond = {k for k, i in found.items() if i.beyond_rounding}
    assert beyond == expected  # exactly these cannot be explained by rounding
    seq = found[("synthia-seq2cityscapes-seq", "QuadMix(CNN)", "miou")]
    assert round(seq.recomputed, 2) == 61.56 and seq.reported == 61.5
    assert not any(b == "viper2cityscapes-seq" for b, _, _ in found)
    msgs = check_paper_table("synthia2cityscapes")
    source = [m for m in msgs if "/ Source:" in m]
    assert len(source) == 2 and all("swapped" in m and "known" in m for m in source)


# ----------------------------------------------------------------------------------- tables
def _record(bm_name: str, miou_offset: int, seed: int | None, method: str = "quadmix") -> dict:
    """A metrics record of a SYNTHIA-Seq-protocol benchmark from a constructed confusion matrix."""
    bm = BENCHMARKS[bm_name]
    c = bm.num_classes
    cm = ConfusionMatrix(c).update(torch.arange(c).repeat(4), torch.arange(c).repeat(4))
    cm.matrix[0, 0] -= miou_offset  # road loses some true positives to sidewalk
    cm.matrix[0, 1] += miou_offset
    rec = metrics_record(bm, cm, cm, step=10, extra={"backbone": "vit", "method": method,
                                                      "seed": seed})
    rec["run_dir"] = f"runs/{method}_s{seed}"
    return rec


def test_comparison_table_paper_rows_and_seed_statistics(tmp_path):
    bm = "synthia-seq2cityscapes-seq"
    ours = [_record(bm, 0, 0), _record(bm, 2, 1), _record(bm, 0, None, method="source_only")]
    t = comparison_table(ours, bm, paper_rows=["Source", "QuadMix(CNN)"])
    assert [r["source"] for r in t["rows"][:2]] == ["paper", "paper"]
    assert "note" in t["columns"] and "fence" not in t["columns"]
    q = next(r for r in t["rows"] if r["method"] == "quadmix")
    assert q["source"] == "ours: runs/quadmix_s0, runs/quadmix_s1" and q["seeds"] == "0, 1"
    # road IoU 100 and 50 (2 of 4 pixels lost) -> mean 75, sample std 35.36
    assert q["road"] == 75.0 and q["std"]["road"] == pytest.approx(35.36)
    assert q["person"] == 100.0 and q["std"]["person"] == 0.0
    s = next(r for r in t["rows"] if r["method"] == "source_only")
    assert "std" not in s and s["seeds"] == ""
    with pytest.raises(UdassError, match="paper row"):
        comparison_table(ours, bm, paper_rows=["NotAMethod"])
    with pytest.raises(UdassError, match="benchmark"):
        comparison_table(ours, "viper2cityscapes-seq")
    both = comparison_table(ours[:1], bm, paper_rows=[], networks=("student", "teacher"))
    assert [r["network"] for r in both["rows"]] == ["student", "teacher"]

    md, csv_path = write_table(t, tmp_path / "out")
    text = md.read_text()
    assert "| paper |" in text and "75.00 ± 35.36" in text and "mIoU" in text
    assert "not measured here" in text
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert len(rows) == 4 and rows[2]["road_std"] == "35.36" and rows[0]["source"] == "paper"


def test_synthetic_benchmark_table_has_only_our_rows(tmp_path):
    ours = [_record("synthetic-video", 0, 0)]
    t = comparison_table(ours, "synthetic-video", paper_rows=["Source"])
    assert [r["source"] for r in t["rows"]] == ["ours: runs/quadmix_s0"]
    md, csv_path = write_table(t, tmp_path, name="t")
    assert md.stat().st_size > 0 and csv_path.stat().st_size > 0 and "paper" not in md.read_text()


# ----------------------------------------------------------------------------------- figures
def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == PNG_MAGIC


def test_plots_are_written(tmp_path):
    bm = BENCHMARKS["synthia-seq2cityscapes-seq"]
    t = comparison_table([_record(bm.name, 0, 0), _record(bm.name, 2, 1)], bm,
                         paper_rows=["QuadMix(ViT)"])
    bars = per_class_bars(t["rows"], bm.eval_class_names(), tmp_path / "bars.png", "test")
    assert _is_png(bars)
    assert _is_png(per_class_bars([_record(bm.name, 1, 0)], bm.eval_class_names(),
                                  tmp_path / "bars2.png"))

    logs = {}
    for name, scale in (("a", 1.0), ("b", 2.0)):
        p = tmp_path / name / "log.csv"
        p.parent.mkdir()
        lines = ["step,loss_total,loss_source,lr"] + [
            f"{s},{scale / (s + 1):.4f},{'' if s % 2 else 0.5},{1e-3}" for s in range(20)]
        p.write_text("\n".join(lines) + "\n")
        logs[name] = p
    assert _is_png(training_curves(logs, tmp_path / "curves.png"))
    assert _is_png(training_curves(logs, tmp_path / "curves2.png", keys=("loss_total", "missing")))
    with pytest.raises(UdassError, match="none of the columns"):
        training_curves(logs, tmp_path / "x.png", keys=("missing",))

    m = np.array([[5, 1, 0], [0, 0, 0], [2, 0, 7]])
    assert _is_png(confusion_figure(m, ["road", "sidewalk", "building"], tmp_path / "cm.png"))
    assert _is_png(confusion_figure(torch.as_tensor(m), ["a", "b", "c"], tmp_path / "cm2.png",
                                    normalize=False))


def _legend_clear_of_the_axes(fig) -> list:
    """Render `fig` and return its figure legends, asserting that none overlaps any visible
    axes (tick labels included)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    assert fig.legends, "no figure legend"
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.get_visible():
                assert not box.overlaps(ax.get_tightbbox(renderer)), ax.get_title()
    return fig.legends


def test_figure_legends_cover_no_data(tmp_path):
    """The training curves of 4 methods x 5 seeds: one legend entry (one colour) per method, in a
    band under the panels; the per-class bars of the 12 paper rows: the legend under the class
    names."""
    from udass.figures import per_class_bars_figure, training_curves_figure

    logs = {}
    for m, method in enumerate(("source_only", "dacs", "quadmix", "oracle")):
        for seed in range(5):
            p = tmp_path / f"{method}-{seed}" / "log.csv"
            p.parent.mkdir()
            p.write_text("step,loss_total,loss_src,pseudo_weight\n" + "".join(
                f"{s},{(m + 1) / (s + 1):.4f},{0.5 + seed / 10},{s / 20}\n" for s in range(20)))
            logs[f"{method} s{seed}"] = p
    logs["single"] = p
    fig = training_curves_figure(logs, keys=("loss_total", "loss_src", "pseudo_weight", "x"),
                                 title="t")
    (legend,) = _legend_clear_of_the_axes(fig)
    assert [t.get_text() for t in legend.get_texts()] == [
        "source_only (5 runs)", "dacs (5 runs)", "quadmix (5 runs)", "oracle (5 runs)", "single"]
    colours = {ln.get_color() for ln in fig.axes[0].get_lines()}
    assert len(fig.axes[0].get_lines()) == 21 and len(colours) == 5

    bm = BENCHMARKS["synthia2cityscapes"]
    t = comparison_table([], bm)
    assert len(t["rows"]) == 12
    (legend,) = _legend_clear_of_the_axes(per_class_bars_figure(t["rows"], bm.eval_class_names()))
    assert len(legend.get_texts()) == 12


def test_ablation_bars_write_the_mean_right_of_the_seed_dots():
    from udass.figures import ablation_bars

    fig = ablation_bars({"methods": {
        "a": {"miou": 40.0, "miou_std": 2.0, "miou_per_seed": [35.0, 40.0, 45.0],
              "provenance": "this call"},
        "b": {"miou": 50.0, "miou_std": None, "miou_per_seed": [50.0]}}})
    ax = fig.axes[0]
    texts = {t.get_text(): t.get_position()[0] for t in ax.texts}
    assert texts == {"40.0": 45.5, "50.0": 50.5}
    assert [round(p.get_width(), 1) for p in ax.patches] == [40.0, 50.0]


def test_synthia_table_shows_mIoU16_once_and_mIoU13():
    t = comparison_table([], "synthia2cityscapes", paper_rows=["QuadMix(ViT)"])
    assert "miou_16" not in t["columns"] and t["labels"]["miou"] == "mIoU16"
    row = t["rows"][0]
    assert row["miou"] == 67.5 and row["miou_13"] == 74.3 and len(t["columns"]) == 5 + 16 + 2


def test_modules_do_not_import_matplotlib():
    import subprocess
    import sys

    code = ("import sys, udass.report, udass.evaluate; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported at module import'")
    subprocess.run([sys.executable, "-c", code], check=True)
