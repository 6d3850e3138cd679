"""`udass train --profile paper` on an image benchmark runs the authors' image recipe (QuadMix on
MIC + HRDA with rare-class sampling and the ImageNet feature distance) end to end, on the real
GTAV / Cityscapes layouts of a tiny generated root at test sizes; `udass evaluate` rebuilds the
HRDA network and slides its windows as training's evaluation did; DDP trains the recipe."""
from __future__ import annotations

import csv
import json

import pytest

from udass import checkpoint as ckpt
from udass.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# the paper profile's recipe at test size: frames 64 x 128, HRDA crop 64, detail 32, windows
# 64 / stride 32 (the paper's 1024 / 512 / 1024 / 512 over 2048 x 1024, scaled by 1/16), MIC
# blocks of 4, RCS min pixels 3 (a 60 x 33 GTAV label); QuadMix from step 1 (the authors' resume)
TEST_SIZE = ("data.source_size=64,128", "data.target_size=64,128", "data.crop_size=64,64",
             "model.hrda_detail_size=32,32", "model.hrda_eval_window=64,64",
             "model.hrda_eval_stride=32,32", "model.variant=mit_tiny", "data.rcs_min_pixels=3",
             "mic.block_size=4", "data.num_workers=0", "quadmix.start_step=1",
             "optim.warmup_steps=0", "train.log_every=1")


def test_udass_train_runs_the_authors_image_recipe_on_the_gtav_layouts(tmp_path, tiny_paper_root):
    root = tiny_paper_root("gtav2cityscapes")
    out = tmp_path / "run"
    argv = ["train", "--benchmark", "gtav2cityscapes", "--backbone", "vit", "--profile", "paper",
            "--pretrained", "none", "--data-root", str(root), "--steps", "2", "--device", "cpu",
            "--out", str(out)]
    for item in TEST_SIZE:
        argv += ["--set", item]
    assert main(argv) == 0
    run = json.loads((out / "run.json").read_text())
    cfg = run["config"]
    assert cfg["data"]["rcs"] and cfg["fd"]["enabled"] and cfg["model"]["hrda"] and cfg["mic"]["enabled"]
    assert (cfg["data"]["rcs_min_crop_ratio"], cfg["fd"]["weight"], cfg["mic"]["ratio"],
            cfg["model"]["hrda_detail_loss"], cfg["optim"]["lr"]) == (2.0, 0.005, 0.7, 0.1, 6e-5)
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["1", "2"]
    for r in rows:                                     # every component's loss term, every step
        assert r["loss_src"] and r["loss_fd"] and r["loss_mix"] and r["loss_mic"], r
    assert not rows[0]["loss_trg"] and rows[1]["loss_trg"]   # step 1 DACS (+ MIC), then QuadMix
    assert (root / "udass_rcs" / "gta-cityscapes19-train.json").is_file()   # RCS statistics, cached
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == 2 and len(metrics["per_class_iou"]) == 19
    # `udass evaluate` rebuilds the HRDA network from the checkpoint and slides the same windows
    assert main(["evaluate", "--checkpoint", str(ckpt.last_checkpoint(out)), "--data-root", str(root),
                 "--device", "cpu", "--out", str(tmp_path / "eval")]) == 0
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["confusion_matrix"] == metrics["confusion_matrix"]
    assert again["teacher"]["miou"] == metrics["teacher"]["miou"]


def test_the_full_recipe_resumes_bit_identically(tmp_path):
    """RCS batches and crops, HRDA detail crops, MIC masks and the frozen ImageNet encoder are all
    functions of (seed, step) and the initialisation: a run stopped after step 2 and resumed
    equals an uninterrupted one (QuadMix from step 1, so the resume crosses the warm-up)."""
    import torch

    from udass.config import build_config, image_recipe
    from udass.train import train

    cfg = build_config("synthetic-image", "cnn", "quadmix", "test",
                       {**image_recipe("synthetic-image", "test"), "quadmix.start_step": 1,
                        "teacher.pseudo_threshold": 0.5, "train.steps": 3})
    a, b = tmp_path / "a", tmp_path / "b"
    train(cfg, a, progress=False)
    assert train(cfg, b, until=2, progress=False) is None
    train(cfg, b, progress=False)
    sa = torch.load(ckpt.last_checkpoint(a), weights_only=False)
    sb = torch.load(ckpt.last_checkpoint(b), weights_only=False)
    for part in ("student", "teacher"):
        for k in sa[part]:
            assert torch.equal(sa[part][k], sb[part][k]), f"{part}.{k} differs after resume"
    rows_a = [r.split(",")[:-1] for r in (a / "log.csv").read_text().splitlines()]
    rows_b = [r.split(",")[:-1] for r in (b / "log.csv").read_text().splitlines()]
    assert rows_a == rows_b and len(rows_a) == 4          # every logged loss, seconds aside
