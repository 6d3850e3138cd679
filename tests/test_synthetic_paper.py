"""Generated roots of the four paper benchmark ids: written in each benchmark's real layouts and
label encodings, read unchanged by `build_dataset` with the paper profile, with marker counts
equal to what the loaders enumerate. The fast tests use the `tiny` size; the real resolutions
(`--size paper`) are checked by a slow test."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_fixtures import preset_data
from test_synthetic import smooth_flow_mask

from udass.cli import SYNTH_BENCHMARKS, SYNTH_SIZES, main
from udass.config import build_config
from udass.data.check import check_data
from udass.data.datasets import DOMAIN_SPLITS, build_dataset
from udass.data.flow import flow_cache_path, read_flow, warp, warp_valid_mask
from udass.data.imageio import image_size, read_label_synthia, read_rgb
from udass.data.protocols import BENCHMARKS, map_label
from udass.data.protocols import ROLES as ROLE_NAMES
from udass.data.splits import expected_split_sizes
from udass.data.synthetic import (BENCHMARK_SPECS, SIZES, frame_size, generate, layout_statistics,
                                  read_marker, style_figure)
from udass.data.synthetic.spec import EGO
from udass.data.synthetic.writers import SYNTHIA_RAW, SYNTHIA_SEQ_RAW, VIPER_CAR, VIPER_RAW
from udass.data.viper import ViperLayout

PAPER_IDS = ("synthia-seq2cityscapes-seq", "viper2cityscapes-seq", "gtav2cityscapes",
             "synthia2cityscapes")
VIPER_ID = "viper2cityscapes-seq"


@pytest.fixture(scope="module")
def roots(tiny_paper_root) -> dict[str, Path]:
    return {b: tiny_paper_root(b) for b in PAPER_IDS}


def paper_data_config(benchmark: str, root: Path):
    """The paper profile's data config. Its SYNTHIA-Seq crop (120 rows of the real 760) is scaled
    to the generated frame height: at the tiny size (32 rows) 120 rows would leave nothing."""
    cfg = build_config(benchmark, "vit", "quadmix", "paper").data
    if cfg.source_crop_bottom:
        height = read_marker(root)["resolutions"]["synthia-seq"][1]
        cfg = replace(cfg, source_crop_bottom=round(cfg.source_crop_bottom * height / 760))
    return cfg


def load_every_role(benchmark: str, root: Path, cfg) -> dict[str, tuple[int, object]]:
    """role -> (items enumerated by build_dataset, its first clip)."""
    out = {}
    for domain, split in DOMAIN_SPLITS:
        ds = build_dataset(benchmark, split, root, domain, data_cfg=cfg)
        out[f"{domain}/{split}"] = (len(ds), ds[0])
    return out


# ----------------------------------------------------------------------------- loaders
@pytest.mark.parametrize("benchmark", PAPER_IDS)
def test_tiny_paper_root_loads_one_clip_of_every_split_with_the_paper_profile(roots, benchmark):
    root, bench = roots[benchmark], BENCHMARKS[benchmark]
    cfg = paper_data_config(benchmark, root)
    marker = read_marker(root)
    assert marker["benchmark"] == benchmark and marker["size"] == "tiny"
    for role, (n, clip) in load_every_role(benchmark, root, cfg).items():
        assert n == marker["counts"][role], role          # what check-data expects per role
        k = 1 if not bench.is_video else 3 if role == "target/train" else 2
        size = cfg.source_size if role.startswith("source") else cfg.target_size
        assert clip.frames.shape == (k, 3, *size), role
        assert clip.flows.shape == (k - 1, 2, *size), role
        if role == "target/train":
            assert clip.labels is None
            continue
        train_ids = set(clip.labels[0].unique().tolist())
        assert train_ids <= set(range(bench.num_classes)) | {255}
        assert len(train_ids - {255}) >= 4, (role, train_ids)
        if role == "target/val":
            assert clip.labels.shape[-2:] == (32, 64)     # evaluation labels keep their size
    if bench.is_video:
        flow = build_dataset(benchmark, "train", root, "source", data_cfg=cfg)[0].flows
        assert flow.abs().max() > 0.5                     # the drive moves: a real flow, not zeros


@pytest.mark.parametrize("benchmark", PAPER_IDS)
def test_check_data_finds_a_tiny_paper_root_complete(roots, benchmark, capsys):
    assert check_data(benchmark, roots[benchmark], data_cfg=preset_data(benchmark)) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("complete")
    # the expected sizes are the marker's role counts (the real datasets' sizes do not apply)
    counts = read_marker(roots[benchmark])["counts"]
    assert expected_split_sizes(benchmark, roots[benchmark]) == {r: counts[r] for r in ROLE_NAMES}


def test_cli_lists_every_generated_benchmark_and_size(tmp_path, capsys):
    assert SYNTH_BENCHMARKS == tuple(BENCHMARK_SPECS) and SYNTH_SIZES == tuple(SIZES)
    assert set(PAPER_IDS) <= set(BENCHMARK_SPECS)
    out = tmp_path / "g"
    assert main(["synth", "--benchmark", "gtav2cityscapes", "--size", "tiny", "--out", str(out)]) \
        == 0
    assert read_marker(out)["benchmark"] == "gtav2cityscapes"
    with pytest.raises(SystemExit):
        main(["synth", "--benchmark", "gtav", "--out", str(tmp_path / "x")])
    assert "gtav2cityscapes" in capsys.readouterr().err


# ----------------------------------------------------------------------------- encodings
def test_the_writers_label_encodings_decode_to_the_protocols_classes():
    """Every Cityscapes labelId, written in a source dataset's encoding and decoded by the
    benchmark's protocol, is the class the protocol gives that labelId (255 where it has none);
    the ego vehicle is VIPER's car, for the VIPER loader's ego-vehicle rule to remove."""
    label_ids = np.arange(34, dtype=np.uint8)
    for raw_lut, protocol, encoding in ((SYNTHIA_SEQ_RAW, "synthia-seq12", "synthia-seq"),
                                        (SYNTHIA_RAW, "cityscapes19", "synthia"),
                                        (VIPER_RAW, "viper15", "viper")):
        decoded = map_label(raw_lut[label_ids], protocol, encoding)
        expected = map_label(label_ids, protocol, "cityscapes")
        if encoding == "viper":
            assert VIPER_RAW[EGO] == VIPER_CAR
            expected[EGO] = map_label(np.array([26]), protocol, "cityscapes")[0]   # car
        assert decoded.tolist() == expected.tolist(), encoding


def test_viper_layout_labels_every_tenth_frame_and_shows_the_ego_hood(roots):
    root = roots[VIPER_ID] / "viper/train"
    labelled = sorted(p.name for p in (root / "cls/001").glob("*.png"))
    assert labelled == [f"001_{10 * j:05d}.png" for j in range(1, 8)]
    frames = sorted(p.name for p in (root / "img/001").glob("*"))
    assert frames == sorted(f"001_{t - d:05d}.jpg" for t in range(10, 80, 10) for d in (0, 1))
    with Image.open(root / "cls/001/001_00010.png") as img:
        assert img.mode == "P"
        raw = np.asarray(img)
    assert raw[-1, raw.shape[1] // 2] == VIPER_CAR                  # the hood, labelled car
    kept = ViperLayout(roots[VIPER_ID] / "viper").read_label(root / "cls/001/001_00010.png")
    assert kept[-1, raw.shape[1] // 2] == 0 and (kept[-1] != VIPER_CAR).all()   # ego rule
    assert (raw[0] != VIPER_CAR).all() and 2 in raw                 # sky (VIPER id 2) on top


def test_synthia_rand_labels_are_16bit_three_channel_with_the_class_in_red(roots):
    root = roots["synthia2cityscapes"] / "synthia"
    names = sorted(p.name for p in (root / "RGB").glob("*.png"))
    assert names == [f"{i:07d}.png" for i in range(6)]
    raw = read_label_synthia(root / "GT/LABELS/0000000.png")
    assert raw.dtype == np.uint16 and raw.shape == (32, 64)
    assert 1 in raw and 3 in raw                                    # sky, road (SYNTHIA ids)


def test_viper_flow_warps_the_previous_frame_onto_the_labelled_one(roots):
    """The exact flow of a VIPER clip (frame t -> t-1, JPEG frames) reconstructs frame t from
    frame t-1 where the image moved (flow >= 1 px, the pixel changed by 12 or more), away from
    motion boundaries, far better than no warp (3.0x here; the criterion of
    tests/test_synthetic.py for SYNTHIA-Seq and Cityscapes-Seq)."""
    root = roots[VIPER_ID]
    err_warp = err_none = pixels = 0.0
    for t in range(10, 80, 10):
        cur = read_rgb(root / f"viper/train/img/001/001_{t:05d}.jpg").astype(np.float32)
        prev = read_rgb(root / f"viper/train/img/001/001_{t - 1:05d}.jpg").astype(np.float32)
        flow = read_flow(flow_cache_path(root / "udass_flow", "viper",
                                         f"train/img/001/001_{t:05d}.jpg"))
        f = torch.from_numpy(flow).permute(2, 0, 1)[None]
        warped = warp(torch.from_numpy(prev).permute(2, 0, 1)[None], f)[0].permute(1, 2, 0).numpy()
        e_warp, e_none = np.abs(warped - cur).mean(-1), np.abs(prev - cur).mean(-1)
        mask = (warp_valid_mask(f)[0].numpy() & smooth_flow_mask(flow)
                & (np.linalg.norm(flow, axis=-1) >= 1.0) & (e_none >= 12))
        err_warp, err_none = err_warp + e_warp[mask].sum(), err_none + e_none[mask].sum()
        pixels += mask.sum()
    assert pixels >= 50
    assert err_none / err_warp >= 2.0


@pytest.mark.parametrize("benchmark", [VIPER_ID, "synthia2cityscapes"])
def test_statistics_and_style_figure_read_the_paper_id_layouts(roots, benchmark, tmp_path):
    stats = layout_statistics(roots[benchmark], benchmark)
    source = stats["domains"]["source"]
    assert source["dataset"] == BENCHMARK_SPECS[benchmark].source
    assert sum(source["class_share"].values()) + source["ignore_share"] == pytest.approx(1.0)
    if benchmark == VIPER_ID:   # 14 frames, 7 labelled; the ego hood is ignored
        assert (source["frames"], source["labelled_frames"]) == (14, 7)
        assert source["ignore_share"] > 0.05
    png = style_figure(roots[benchmark], benchmark, tmp_path / "styles.png")
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > 500


def test_real_resolutions_of_the_paper_size():
    assert frame_size("cityscapes", "paper") == (2048, 1024)
    assert [frame_size(d, "paper") for d in ("synthia-seq", "viper", "gta", "synthia")] == \
        [(1280, 760), (1920, 1080), (1914, 1052), (1280, 760)]
    assert frame_size("viper", "tiny") == (64, 32)       # tiny and demo: one size for every frame


# ----------------------------------------------------------------------------- paper size
@pytest.mark.slow
@pytest.mark.parametrize("benchmark", PAPER_IDS)
def test_paper_size_root_is_at_the_real_resolutions_and_loads_with_the_paper_profile(
        tmp_path, benchmark):
    root = generate(benchmark, tmp_path / benchmark, size="paper")
    source = BENCHMARK_SPECS[benchmark].source
    cfg = build_config(benchmark, "vit", "quadmix", "paper").data          # unchanged
    roles = load_every_role(benchmark, root, cfg)
    ds = build_dataset(benchmark, "train", root, "source", data_cfg=cfg)
    w, h = frame_size(source, "paper")
    assert image_size(ds.raw_paths(0).frames[0]) == (h, w)
    val = build_dataset(benchmark, "val", root, "target", data_cfg=cfg)
    assert image_size(val.raw_paths(0).frames[0]) == (1024, 2048)
    assert roles["target/val"][1].labels.shape[-2:] == (1024, 2048)
    counts = read_marker(root)["counts"]
    assert {r: n for r, (n, _) in roles.items()} == {r: counts[r] for r in roles}
    assert check_data(benchmark, root, data_cfg=preset_data(benchmark)) == 0
