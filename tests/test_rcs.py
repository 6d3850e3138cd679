"""Rare-class sampling (udass.data.rcs): DAFormer's class probabilities, the step-indexed draw,
the crop retry and the cached class statistics of a labelled split."""
from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
import torch

from udass.data import rcs
from udass.data.datasets import build_dataset
from udass.data.rcs import (ClassStats, RareClassSampler, class_pixels_in_windows,
                            class_statistics, rcs_crop_offsets, rcs_probabilities)
from udass.errors import UdassError


# ----------------------------------------------------------------------------------- probabilities
def test_probabilities_are_daformer_softmax_of_one_minus_frequency():
    pixels = torch.tensor([60, 30, 10, 0])  # frequencies 0.6, 0.3, 0.1; class 3 absent
    p = rcs_probabilities(pixels, temperature=0.1)
    z = math.exp(4) + math.exp(7) + math.exp(9)  # (1 - f) / T = 4, 7, 9
    assert torch.allclose(p, torch.tensor([math.exp(4) / z, math.exp(7) / z, math.exp(9) / z, 0.0],
                                          dtype=torch.float64), atol=1e-12)
    # at T = 0.01 the odds of two classes are exp((f_j - f_i) / T): rare classes dominate
    q = rcs_probabilities(pixels, temperature=0.01)
    assert math.isclose(float(q[2] / q[1]), math.exp(20), rel_tol=1e-9)
    assert float(q.sum()) == pytest.approx(1.0) and q[3] == 0


def test_probabilities_reject_bad_input():
    with pytest.raises(UdassError, match="no class pixel"):
        rcs_probabilities(torch.zeros(4), 0.01)
    with pytest.raises(UdassError, match="rcs_temperature"):
        rcs_probabilities(torch.ones(4), 0.0)


# ----------------------------------------------------------------------------------- the draw
def _stats() -> ClassStats:
    # 6 images x 4 classes; class 3 never has more than 100 pixels in one image
    pixels = torch.tensor([[900, 100, 0, 50], [800, 0, 300, 0], [700, 200, 0, 0],
                           [950, 0, 0, 100], [600, 150, 250, 0], [990, 0, 0, 10]])
    return ClassStats(tuple(f"{i}.png" for i in range(6)), pixels, "x")


def test_draw_is_a_pure_function_of_seed_and_step():
    stats = _stats()
    a = RareClassSampler(stats, 0.01, 100, batch_size=2, seed=3, start=0, end=5)
    b = RareClassSampler(stats, 0.01, 100, batch_size=2, seed=3, start=3, end=5)
    assert list(a)[3:] == list(b)  # a resumed sampler gives the same batches
    assert [a.indices_for_step(k) for k in (4, 1, 4)] == [list(a)[4], list(a)[1], list(a)[4]]
    other = RareClassSampler(stats, 0.01, 100, batch_size=2, seed=4, start=0, end=5)
    assert list(other) != list(a)
    # DDP: the ranks take disjoint slices of one global draw
    world = [RareClassSampler(stats, 0.01, 100, 2, 3, rank=r, world=2) for r in range(2)]
    single = RareClassSampler(stats, 0.01, 100, 4, 3)
    for k in range(6):
        assert world[0].indices_for_step(k) + world[1].indices_for_step(k) == single.indices_for_step(k)
        assert world[0].classes_for_step(k) + world[1].classes_for_step(k) == single.classes_for_step(k)


def test_drawn_images_hold_their_class_and_classes_follow_the_probabilities():
    stats = _stats()
    s = RareClassSampler(stats, 0.5, 100, batch_size=50, seed=0)
    # class 3 has no image with more than 100 pixels: never drawn; the others renormalised
    p = rcs_probabilities(stats.class_pixels, 0.5)
    want = p * torch.tensor([1.0, 1.0, 1.0, 0.0])
    want = want / want.sum()
    assert torch.allclose(s.class_probs, want)
    counts = torch.zeros(4)
    for k in range(200):
        idx, cls = s.indices_for_step(k), s.classes_for_step(k)
        for i, c in zip(idx, cls):
            assert stats.pixels[i, c] > 100  # DAFormer: strictly more than min_pixels
        counts += torch.bincount(torch.tensor(cls), minlength=4).float()
    assert torch.allclose(counts / counts.sum(), want.float(), atol=0.02)
    with pytest.raises(UdassError, match="rcs_min_pixels"):
        RareClassSampler(stats, 0.01, 10_000, 2, 0)


# ----------------------------------------------------------------------------------- crop retry
def test_window_counts_match_a_direct_count(gen):
    labels = torch.randint(0, 3, (2, 13, 17), generator=gen)
    ys = torch.randint(0, 13 - 5 + 1, (2, 7), generator=gen)
    xs = torch.randint(0, 17 - 6 + 1, (2, 7), generator=gen)
    got = class_pixels_in_windows(labels, torch.tensor([1, 2]), ys, xs, (5, 6))
    for b, c in ((0, 1), (1, 2)):
        for t in range(7):
            y, x = int(ys[b, t]), int(xs[b, t])
            assert got[b, t] == int((labels[b, y:y + 5, x:x + 6] == c).sum())


def test_crop_is_redrawn_until_the_class_covers_enough():
    labels = torch.zeros(3, 40, 40, dtype=torch.long)
    labels[0, 30:, 30:] = 5           # 100 pixels of class 5 in a corner
    labels[1] = 5                     # everywhere: the first candidate passes
    # sample 2: class 5 absent, no candidate passes -> the 11th candidate, unchecked
    g = torch.Generator().manual_seed(1)
    ys, xs = rcs_crop_offsets(labels, [5, 5, 5], (16, 16), min_pixels=20, min_crop_ratio=2.0,
                              generator=g)
    assert int((labels[0, ys[0]:ys[0] + 16, xs[0]:xs[0] + 16] == 5).sum()) > 40
    g2 = torch.Generator().manual_seed(1)  # the candidates, drawn as rcs_crop_offsets draws them
    cy = torch.randint(0, 25, (3, 11), generator=g2)
    cx = torch.randint(0, 25, (3, 11), generator=g2)
    assert (ys[1], xs[1]) == (int(cy[1, 0]), int(cx[1, 0]))
    assert (ys[2], xs[2]) == (int(cy[2, 10]), int(cx[2, 10]))
    first = next(t for t in range(10)
                 if (labels[0, cy[0, t]:cy[0, t] + 16, cx[0, t]:cx[0, t] + 16] == 5).sum() > 40)
    assert (ys[0], xs[0]) == (int(cy[0, first]), int(cx[0, first]))
    # min_crop_ratio 0: no check, the first candidate (DAFormer skips the loop)
    ys0, xs0 = rcs_crop_offsets(labels, [5, 5, 5], (16, 16), 20, 0.0, torch.Generator().manual_seed(1))
    assert ys0 == cy[:, 0].tolist() and xs0 == cx[:, 0].tolist()


# ----------------------------------------------------------------------------------- statistics
@pytest.fixture
def image_root(tiny_image_root, tmp_path):
    """A private copy of the tiny synthetic-image root (the tests write caches into it)."""
    root = tmp_path / "root"
    shutil.copytree(tiny_image_root, root, ignore=shutil.ignore_patterns("udass_rcs"))
    return root


def _source(root):
    return build_dataset("synthetic-image", "train", root, "source", profile="test")


def test_statistics_count_every_label_and_are_cached_beside_the_root(image_root, monkeypatch):
    ds = _source(image_root)
    stats = class_statistics(ds, progress=False)
    for i in range(len(ds)):
        want = np.bincount(ds.native_label(i).ravel(), minlength=256)[:19]
        assert stats.pixels[i].tolist() == want.tolist()
    cache = image_root / "udass_rcs" / "gta-cityscapes19-train.json"
    record = json.loads(cache.read_text())
    assert record["fingerprint"] == stats.fingerprint and len(record["files"]) == len(ds)
    assert record["files"][0].startswith("gta/labels/")

    def no_count(*args, **kwargs):
        raise AssertionError("recounted although the cache matches")

    monkeypatch.setattr(rcs, "_count", no_count)
    again = class_statistics(ds, progress=False)
    assert torch.equal(again.pixels, stats.pixels) and again.files == stats.files


def test_a_changed_label_file_recomputes(image_root):
    ds = _source(image_root)
    stats = class_statistics(ds, progress=False)
    label = ds.raw_paths(0).labels[0]
    from PIL import Image

    with Image.open(label) as img:
        pal, arr = img.getpalette(), np.array(img)
    arr[:] = 26  # Cityscapes labelId of car -> train id 13
    out = Image.fromarray(arr, mode="P")
    out.putpalette(pal)
    out.save(label)
    os.utime(label, ns=(10**18, 10**18))  # a different modification time whatever the clock
    changed = class_statistics(ds, progress=False)
    assert changed.fingerprint != stats.fingerprint
    assert changed.pixels[0, 13] == arr.size and changed.pixels[0].sum() == arr.size
    assert torch.equal(changed.pixels[1:], stats.pixels[1:])


def test_a_read_only_root_falls_back_to_the_user_cache(image_root, tmp_path, monkeypatch, capsys):
    (image_root / "udass_rcs").write_text("not a folder")  # the cache folder cannot be made
    monkeypatch.setenv("UDASS_CACHE", str(tmp_path / "cache"))
    ds = _source(image_root)
    stats = class_statistics(ds, progress=False)
    err = capsys.readouterr().err
    assert "cannot write the RCS class statistics" in err and str(tmp_path / "cache") in err
    cached = list((tmp_path / "cache" / "rcs").rglob("*.json"))
    assert len(cached) == 1
    monkeypatch.setattr(rcs, "_count", lambda *a, **k: pytest.fail("recounted"))
    assert torch.equal(class_statistics(ds, progress=False).pixels, stats.pixels)


def test_worker_processes_count_the_same(image_root, tmp_path):
    ds = _source(image_root)
    one = class_statistics(ds, progress=False, cache_dir=tmp_path / "a")
    two = class_statistics(ds, progress=False, workers=2, cache_dir=tmp_path / "b")
    assert torch.equal(one.pixels, two.pixels)


def test_unlabelled_split_is_a_clear_error(image_root):
    ds = build_dataset("synthetic-image", "train", image_root, "target", profile="test")
    with pytest.raises(UdassError, match="labelled"):
        class_statistics(ds, progress=False)


def test_native_labels_drop_the_bottom_crop_like_the_clips(tiny_video_root, tmp_path):
    from dataclasses import replace

    from udass.config import build_config

    cfg = build_config("synthetic-video", profile="test").data
    full = build_dataset("synthetic-video", "train", tiny_video_root, "source", data_cfg=cfg)
    cut = build_dataset("synthetic-video", "train", tiny_video_root, "source",
                        data_cfg=replace(cfg, source_crop_bottom=8))
    a, b = full.native_label(0), cut.native_label(0)
    assert b.shape == (a.shape[0] - 8, a.shape[1]) and np.array_equal(a[:-8], b)
    stats = class_statistics(cut, progress=False, cache_dir=tmp_path)
    assert int(stats.pixels[0].sum()) == int((b != 255).sum())
