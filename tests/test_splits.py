"""Splits that cannot shrink silently: enumeration from every file that names a clip, expected
sizes (real datasets, a generated root's marker), `udass check-data` verdicts per role and
`--full`, the val refusal of training and `udass evaluate` (`--allow-partial`), the "clips"
record in metrics.json and its mark in tables, and label ids outside an encoding."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from test_data_fixtures import (CS_TRAIN, CS_VAL, H, W, fixture_cfg, fixture_sizes, make_cityscapes, make_gta,
                                make_root, make_synthia_seq, make_viper, write_cache_flows, write_frame,
                                preset_data, write_index_png)
from udass.cli import main as cli_main
from udass.config import build_config
from udass.data import build_dataset
from udass.data.check import check_data
from udass.data.protocols import (BENCHMARKS, SPLIT_SIZES, LabelIdWarning, map_label, reset_unexpected_label_ids,
                                  unexpected_label_ids)
from udass.data.splits import (SplitSizeWarning, check_split, expected_split_sizes, is_partial,
                               marker_split_sizes)
from udass.errors import UdassError

SEQ = "synthia-seq2cityscapes-seq"
CS = "cityscapes"
VAL_LABEL = f"{CS}/gtFine/val/frankfurt/{CS_VAL[0]}_gtFine_labelIds.png"
TRAIN_LABEL = f"{CS}/gtFine/train/aachen/{CS_TRAIN[0]}_gtFine_labelIds.png"
SOURCE_FRAME = "synthia-seq/SYNTHIA-SEQS-04-DAWN/RGB/Stereo_Left/Omni_F/000002.png"


def sizes(root: Path, benchmark: str) -> dict[str, int]:
    """Clips per role as build_dataset lists them."""
    out = {}
    for role in ("source/train", "target/train", "target/val"):
        domain, split = role.split("/")
        out[role] = len(build_dataset(benchmark, split, root, domain, data_cfg=fixture_cfg(benchmark)))
    return out


# ----------------------------------------------------------------------------------- expected sizes
def test_the_paper_benchmarks_record_the_real_split_sizes():
    assert dict(BENCHMARKS[SEQ].split_sizes) == {"source/train": 849, "target/train": 2975, "target/val": 500}
    assert BENCHMARKS["viper2cityscapes-seq"].split_sizes["source/train"] == 13367
    assert BENCHMARKS["gtav2cityscapes"].split_sizes["source/train"] == 24966
    assert BENCHMARKS["synthia2cityscapes"].split_sizes["source/train"] == 9400
    assert SPLIT_SIZES[("cityscapes", "val")] == 500 and not BENCHMARKS["synthetic-video"].split_sizes


def test_marker_counts_give_a_generated_roots_sizes(tiny_video_root, tiny_image_root):
    assert expected_split_sizes("synthetic-video", tiny_video_root) == {
        "source/train": 7, "target/train": 4, "target/val": 2}   # 8 SYNTHIA-Seq frames: 1..7
    assert expected_split_sizes("synthetic-image", tiny_image_root) == {
        "source/train": 6, "target/train": 4, "target/val": 2}
    # a root of a paper benchmark id with a marker: the marker wins; explicit per-role keys first
    counts = {"source_train_clips": 5, "target_val_clips": 3, "target_val_snippets": 9,
              "target_train_snippets": 4, "source_frames": 99}
    assert marker_split_sizes(BENCHMARKS["viper2cityscapes-seq"], counts) == {
        "source/train": 5, "target/train": 4, "target/val": 3}
    assert marker_split_sizes(BENCHMARKS["viper2cityscapes-seq"], {"target_val_snippets": 2}) == {
        "target/val": 2}   # a VIPER source without a count: unknown, never guessed from SYNTHIA's rule


def test_a_fixture_tree_is_partial_against_the_real_sizes(tmp_path, capsys):
    r = make_root(tmp_path)
    write_cache_flows(r, SEQ)
    assert check_data(SEQ, r, data_cfg=preset_data(SEQ)) == 1
    out = capsys.readouterr().out
    assert "expected clips per role from the real datasets' split lists" in out
    assert "target/val: 1 clips found, 500 expected" in out and "source/train: 3 clips found, 849 expected" in out
    assert "methods whose training data is complete: none" in out


# ----------------------------------------------------------------------------------- enumeration
def test_cityscapes_seq_lists_whole_snippets_of_the_sequence_folder(tmp_path):
    seq = tmp_path / CS / "leftImg8bit_sequence" / "train"
    # one snippet of frankfurt_000000 (annotated 000294: frames 275..304), two adjacent snippets of
    # aachen_000003 (frames 0..59), and four frames of bochum_000001 (a partial snippet)
    runs = (("frankfurt", 0, range(275, 305)), ("aachen", 3, range(0, 60)), ("bochum", 1, range(16, 20)))
    for city, sid, frames in runs:
        for n in frames:
            write_frame(seq / city / f"{city}_{sid:06d}_{n:06d}_leftImg8bit.png", n, h=2, w=2)
    names = build_dataset(SEQ, "train", tmp_path, "target", data_cfg=preset_data(SEQ)).names
    assert names == ["aachen_000003_000019", "aachen_000003_000049", "frankfurt_000000_000294"]
    with pytest.raises(UdassError, match="no train frames of cityscapes under"):
        # images: the sequence does not count
        build_dataset("gtav2cityscapes", "train", tmp_path, "target", data_cfg=preset_data("gtav2cityscapes"))


def test_a_file_missing_inside_a_numbered_source_keeps_its_clip(tmp_path):
    make_synthia_seq(tmp_path, n=5)
    make_gta(tmp_path, n=3)
    seq = tmp_path / "synthia-seq/SYNTHIA-SEQS-04-DAWN"
    for folder in ("RGB", "GT/LABELS"):   # frame 2 entirely gone: still a clip (and frame 3's t-1)
        (seq / folder / "Stereo_Left/Omni_F/000002.png").unlink()
    assert build_dataset(SEQ, "train", tmp_path, "source", data_cfg=fixture_cfg(SEQ)).names == \
        ["000001", "000002", "000003", "000004"]
    (tmp_path / "gta/images/00002.png").unlink()
    (tmp_path / "gta/labels/00002.png").unlink()
    ds = build_dataset("gtav2cityscapes", "train", tmp_path, "source", data_cfg=preset_data("gtav2cityscapes"))
    assert ds.names == ["00001", "00002", "00003"]


def test_viper_keeps_a_labelled_frame_whose_label_or_previous_image_is_missing(tmp_path):
    make_viper(tmp_path)
    (tmp_path / "viper/train/cls/001/001_00010.png").unlink()      # a multiple of 10 inside 0..20
    (tmp_path / "viper/train/img/001/001_00019.jpg").unlink()      # 00020's previous image
    ds = build_dataset("viper2cityscapes-seq", "train", tmp_path, "source",
                       data_cfg=fixture_cfg("viper2cityscapes-seq"))
    assert ds.names == ["001_00010", "001_00020", "002_00010"]
    missing = [p for i in range(len(ds)) for kind, p, opt in ds.needed_files(i)
               if kind != "flows" and not opt and not p.is_file()]   # (no flows in this tree)
    assert {p.name for p in missing} == {"001_00010.png", "001_00019.jpg"}


# ----------------------------------------------------------------------------------- check-data verdicts
def _remove(root: Path, rel: str) -> Path:
    path = root / rel
    path.unlink()
    return path


def _flow(root: Path, benchmark: str, role: str) -> str:
    domain, split = role.split("/")
    ds = build_dataset(benchmark, split, root, domain, data_cfg=fixture_cfg(benchmark))
    return str(ds.raw_paths(0).flows[0].relative_to(root))


CASES = {
    # case: (relative path to remove (callable for flows), exit status, verdict line, role row status)
    "val label": (VAL_LABEL, 1, "methods whose training data is complete: source_only, oracle, dacs, quadmix",
                  "target/val"),
    "target-train label": (TRAIN_LABEL, 0, "complete for every method but oracle", "target/train"),
    "source image": (SOURCE_FRAME, 1, "methods whose training data is complete: oracle", "source/train"),
    "target-train flow": (lambda r: _flow(r, SEQ, "target/train"), 1,
                          "methods whose training data is complete: none", "target/train"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_data_names_the_removed_file_with_its_verdict_on_a_fixture_tree(tmp_path, capsys, case):
    rel, status, verdict, role = CASES[case]
    r = make_root(tmp_path)
    write_cache_flows(r, SEQ)
    before = sizes(r, SEQ)
    path = _remove(r, rel(r) if callable(rel) else rel)
    assert check_data(SEQ, r, data_cfg=preset_data(SEQ), expected=fixture_sizes(SEQ)) == status
    out = capsys.readouterr().out
    assert f"    {path}\n" in out and verdict in out
    row = next(line for line in out.splitlines() if line.startswith(role))
    assert row.endswith("ok but oracle" if status == 0 else "INCOMPLETE")
    assert sizes(r, SEQ) == before   # no split changed its size


SYNTH_CASES = {
    "val label": (lambda ds: ds["target/val"].raw_paths(1).labels[0], 1, "target/val"),
    "target-train label": (lambda ds: ds["target/train"].raw_paths(2).labels[0], 0, "target/train"),
    "source image": (lambda ds: ds["source/train"].raw_paths(3).frames[0], 1, "source/train"),
    "val flow": (lambda ds: ds["target/val"].raw_paths(0).flows[0], 1, "target/val"),
}


@pytest.mark.parametrize("case", list(SYNTH_CASES))
def test_check_data_on_a_synthetic_root_uses_its_marker_counts(tiny_video_root, tmp_path, capsys, case):
    pick, status, role = SYNTH_CASES[case]
    root = tmp_path / "root"
    shutil.copytree(tiny_video_root, root)

    def datasets():
        cfg = preset_data("synthetic-video", "test")
        return {f"{d}/{s}": build_dataset("synthetic-video", s, root, d, with_labels=True, data_cfg=cfg)
                for d, s in (("source", "train"), ("target", "train"), ("target", "val"))}

    before = {k: len(v) for k, v in datasets().items()}
    assert before == {"source/train": 7, "target/train": 4, "target/val": 2}
    path = pick(datasets())
    path.unlink()
    assert check_data("synthetic-video", root, data_cfg=preset_data("synthetic-video")) == status
    out = capsys.readouterr().out
    assert "expected clips per role from the counts in" in out and f"    {path}\n" in out
    assert next(line for line in out.splitlines() if line.startswith(role)).split()[2:4] == \
        [str(before[role])] * 2   # clips found == expected: the split kept its size
    assert {k: len(v) for k, v in datasets().items()} == before


def test_check_data_full_reads_every_label_once(tmp_path, capsys):
    make_cityscapes(tmp_path)
    make_gta(tmp_path, n=3)
    odd = np.full((H, W), 7)
    odd[0, :2] = 99
    write_index_png(tmp_path / "gta/labels/00001.png", odd, palette=True)            # ids outside
    write_index_png(tmp_path / "gta/labels/00002.png", np.full((H + 2, W), 7), palette=True)  # size
    (tmp_path / "gta/labels/00003.png").write_bytes(b"not a png")                    # unreadable
    assert cli_main(["check-data", "--benchmark", "gtav2cityscapes", "--data-root", str(tmp_path),
                     "--full"]) == 1
    out = capsys.readouterr().out
    assert f"full label scan: {3 + len(CS_TRAIN) + len(CS_VAL)} label files read" in out
    lab = tmp_path / "gta/labels"
    assert f"{lab / '00001.png'}: ids [99] outside the gta encoding (0..34) on 2 pixels" in out
    assert f"{lab / '00002.png'}: {W} x {H + 2}, its frame 00002.png {W} x {H}" in out
    assert f"unreadable label {lab / '00003.png'}" in out and "  unreadable: 1 files" in out
    assert next(line for line in out.splitlines() if line.startswith("source/train")).endswith("INCOMPLETE")


# ----------------------------------------------------------------------------------- val refusal
def test_check_split_refuses_a_partial_val_split_unless_allowed(tmp_path):
    make_cityscapes(tmp_path)
    make_gta(tmp_path)
    ds = build_dataset("gtav2cityscapes", "val", tmp_path, "target", data_cfg=preset_data("gtav2cityscapes"))
    assert ds.expected_clips == 500
    with pytest.raises(UdassError, match=r"target/val of gtav2cityscapes .* holds 1 clips, expected 500; .*"
                                         r"--allow-partial to evaluate the 1 complete clips"):
        check_split(ds)
    with pytest.warns(SplitSizeWarning, match="--allow-partial: evaluating the 1 complete clips"):
        assert check_split(ds, allow_partial=True) is ds
    ds.expected_clips = 1
    assert check_split(ds) is ds                                      # complete: used as it is
    label = _remove(tmp_path, VAL_LABEL)
    with pytest.raises(UdassError, match=f"1 labels missing \\(first: {label}\\)"):
        check_split(ds)
    train = build_dataset("gtav2cityscapes", "train", tmp_path, "source", data_cfg=preset_data("gtav2cityscapes"))
    with pytest.warns(SplitSizeWarning, match="source/train .* holds 2 clips, expected 24966"):
        assert check_split(train) is train                            # train: warned, not refused


def test_training_and_evaluate_refuse_an_incomplete_val_split(tiny_video_root, tmp_path, capsys):
    from udass import checkpoint as ckpt
    from udass.train import train

    root = tmp_path / "root"
    shutil.copytree(tiny_video_root, root)
    val = build_dataset("synthetic-video", "val", root, "target", data_cfg=preset_data("synthetic-video", "test"))
    label = val.raw_paths(1).labels[0]
    label.unlink()
    over = {"train.steps": 1, "train.checkpoint_every": 1}
    cfg = build_config("synthetic-video", "cnn", "source_only", "test", over, data_root=str(root))
    with pytest.raises(UdassError, match=f"target/val of synthetic-video .* 1 labels missing \\(first: {label}\\)"):
        train(cfg, tmp_path / "refused", progress=False)
    assert not (tmp_path / "refused").exists()                        # refused before OUT is made
    out = tmp_path / "partial"
    with pytest.warns(SplitSizeWarning, match="--allow-partial: evaluating the 1 complete clips"):
        assert cli_main(["train", "--benchmark", "synthetic-video", "--backbone", "cnn", "--method",
                         "source_only", "--profile", "test", "--steps", "1", "--data-root", str(root),
                         "--out", str(out), "--allow-partial"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clips"] == {"evaluated": 1, "expected": 2} and is_partial(metrics)
    ck = str(ckpt.last_checkpoint(out))
    assert cli_main(["evaluate", "--checkpoint", ck, "--data-root", str(root), "--device", "cpu"]) == 2
    assert "--allow-partial" in capsys.readouterr().err
    with pytest.warns(SplitSizeWarning, match="1 of them incomplete"):
        assert cli_main(["evaluate", "--checkpoint", ck, "--data-root", str(root), "--device", "cpu",
                         "--allow-partial", "--out", str(tmp_path / "ev")]) == 0
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert ev["clips"] == {"evaluated": 1, "expected": 2} and ev["miou"] == metrics["miou"]


def test_tables_mark_a_partial_evaluation():
    from udass.report import comparison_table

    base = {"benchmark": "synthetic-video", "method": "dacs", "backbone": "vit", "miou": 50.0,
            "per_class_iou": {}}
    full = {**base, "clips": {"evaluated": 50, "expected": 50}}
    partial = {**base, "method": "quadmix", "clips": {"evaluated": 49, "expected": 50}}
    old = {**base, "method": "oracle"}   # written before metrics.json had "clips"
    table = comparison_table([full, partial, old], "synthetic-video")
    notes = {r["method"]: r.get("note") for r in table["rows"]}
    assert notes == {"dacs": None, "quadmix": "partial evaluation: 49 of 50 val clips", "oracle": None}
    assert "note" in table["columns"] and any(n.startswith("partial evaluation") for n in table["notes"])
    assert not any(n.startswith("partial") for n in comparison_table([full], "synthetic-video")["notes"])


# ----------------------------------------------------------------------------------- label ids
def test_ids_outside_the_encoding_map_to_ignore_and_warn_at_1_10_100_files():
    reset_unexpected_label_ids()
    raw = np.array([[7, 34, 70000, -3]], np.int64)   # road, gta 34 (outside the 19 classes), 2 outside
    with pytest.warns(LabelIdWarning, match=r"f0: label ids \[-3, 70000\] outside the gta encoding .* on 2 pixels"):
        assert map_label(raw, "cityscapes19", "gta", source="f0").tolist() == [[0, 255, 255, 255]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(1, 12):
            map_label(np.array([40]), "cityscapes19", "cityscapes", source=f"c{i}")
        map_label(np.array([40]), "cityscapes19", "cityscapes", source="c1")   # a file counts once
    messages = [str(w.message) for w in caught if issubclass(w.category, LabelIdWarning)]
    assert len(messages) == 2 and "1 cityscapes label file(s)" in messages[0]
    assert "10 cityscapes label file(s) with such ids so far in this process, the first: c1, c2, c3" in messages[1]
    counted = unexpected_label_ids()
    assert len(counted["cityscapes"]) == 11 and counted["gta"] == {"f0": ((-3, 70000), 2)}
    reset_unexpected_label_ids()
    assert unexpected_label_ids() == {}
