"""The embedded synthetic benchmarks: determinism, the real on-disk layouts and label encodings,
exact flow, the cached-root logic. Everything runs on the `tiny` size."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from udass.data import synthetic as S
from udass.data.flow import flow_cache_path, read_flow, warp, warp_valid_mask
from udass.data.protocols import CITYSCAPES_LABELS, PROTOCOLS, map_label
from udass.errors import UdassError

VIDEO, IMAGE = "synthetic-video", "synthetic-image"
W, H = S.SIZES["tiny"].width, S.SIZES["tiny"].height
SEQ = "synthia-seq/SYNTHIA-SEQS-04-DAWN"


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("synthetic")
    return {b: S.generate(b, base / b, seed=0, size="tiny") for b in (VIDEO, IMAGE)}


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_rgb(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]


# ----------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("benchmark", [VIDEO, IMAGE])
def test_same_seed_gives_byte_identical_tree(roots, tmp_path, benchmark):
    again = tree(S.generate(benchmark, tmp_path / "again", seed=0, size="tiny"))
    first = tree(roots[benchmark])
    assert sorted(again) == sorted(first)
    assert [k for k in first if first[k] != again[k]] == []


def test_process_pool_output_is_byte_identical_to_serial(roots, tmp_path):
    parallel = tree(S.generate(VIDEO, tmp_path / "pool", seed=0, size="tiny", workers=2))
    assert parallel == tree(roots[VIDEO])


def test_another_seed_gives_other_content(roots, tmp_path):
    other = tree(S.generate(VIDEO, tmp_path / "s1", seed=1, size="tiny"))
    first = tree(roots[VIDEO])
    assert sorted(other) == sorted(first)                 # same layout ...
    frames = [k for k in first if k.endswith(".png")]
    assert sum(first[k] != other[k] for k in frames) == len(frames)   # ... other scenes


# ----------------------------------------------------------------------------- layouts
def test_video_layout_is_the_real_one(roots):
    root = roots[VIDEO]
    for i in range(8):
        assert (root / f"{SEQ}/RGB/Stereo_Left/Omni_F/{i:06d}.png").is_file()
        assert (root / f"{SEQ}/GT/LABELS/Stereo_Left/Omni_F/{i:06d}.png").is_file()
    cs = root / "cityscapes"
    # snippet frames t-2..t for train, t-5..t for val; annotated frame = 20th of its snippet
    snippets = {("train", "aachen", 0, 19), ("train", "aachen", 1, 19), ("train", "bochum", 0, 294),
                ("train", "bochum", 0, 594), ("val", "frankfurt", 0, 294), ("val", "frankfurt", 0, 594)}
    for split, city, seq, ann in snippets:
        n = 3 if split == "train" else 6
        stem = f"{city}_{seq:06d}_{ann:06d}"
        frames = cs / "leftImg8bit_sequence" / split / city
        for f in range(ann - n + 1, ann + 1):
            assert (frames / f"{city}_{seq:06d}_{f:06d}_leftImg8bit.png").is_file()
        assert not (frames / f"{city}_{seq:06d}_{ann - n:06d}_leftImg8bit.png").exists()
        seq_frame = cs / f"leftImg8bit_sequence/{split}/{city}/{stem}_leftImg8bit.png"
        still = cs / f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png"
        assert still.read_bytes() == seq_frame.read_bytes()
        assert (cs / f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png").is_file()
    assert len(list(cs.glob("gtFine/*/*/*.png"))) == len(snippets)
    assert len(list(cs.glob("leftImg8bit/*/*/*.png"))) == len(snippets)


def test_image_layout_is_the_real_one(roots):
    root = roots[IMAGE]
    for i in range(1, 7):
        assert (root / f"gta/images/{i:05d}.png").is_file() and (root / f"gta/labels/{i:05d}.png").is_file()
    assert not (root / "gta/images/00000.png").exists()
    assert (root / "cityscapes/leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png").is_file()
    assert (root / "cityscapes/gtFine/train/aachen/aachen_000001_000019_gtFine_labelIds.png").is_file()
    assert not (root / "cityscapes/leftImg8bit_sequence").exists() and not (root / "udass_flow").exists()
    img = read_rgb(root / "gta/images/00001.png")
    assert img.shape == (H, W, 3) and img.dtype == np.uint8


def test_marker_is_written_and_records_counts(roots):
    marker = S.read_marker(roots[VIDEO])
    assert marker["benchmark"] == VIDEO and marker["size"] == "tiny" and marker["seed"] == 0
    assert marker["version"] == S.GENERATOR_VERSION
    assert marker["counts"]["source_frames"] == 8
    assert marker["counts"]["target_train_snippets"] == 4 and marker["counts"]["target_val_snippets"] == 2
    assert (roots[VIDEO] / S.OWNER_STAMP).is_file()


def test_marker_records_a_hash_of_the_generated_bytes(roots, tmp_path):
    root = roots[VIDEO]
    digest = S.read_marker(root)["content_sha256"]
    assert digest == S.content_hash(root) and len(digest) == 64
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    assert S.content_hash(copy) == digest  # paths relative to the root, not absolute
    frame = sorted((copy / "cityscapes").rglob("*.png"))[0]
    data = bytearray(frame.read_bytes())
    data[-20] ^= 1
    frame.write_bytes(bytes(data))
    assert S.content_hash(copy) != digest


# ----------------------------------------------------------------------------- label encodings
def test_synthia_labels_are_16bit_three_channel_with_the_class_in_red(roots):
    raw_ids = set(PROTOCOLS["synthia-seq12"].id_maps["synthia-seq"]) | {0}
    paths = sorted((roots[VIDEO] / SEQ / "GT/LABELS/Stereo_Left/Omni_F").glob("*.png"))
    assert len(paths) == 8
    for path in paths:
        lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert lab.dtype == np.uint16 and lab.shape == (H, W, 3)
        assert set(np.unique(lab[..., 2]).tolist()) <= raw_ids
        assert (lab[..., 0] == 0).all()
        # the top row sees sky, building, vegetation, pole, light or sign, never road or car
        assert set(lab[0, :, 2].tolist()) <= {1, 2, 6, 7, 15, 9}
        assert 1 in lab[..., 2]                                # sky: SYNTHIA id 1


def test_gta_labels_are_palette_pngs_indexed_by_cityscapes_label_id(roots):
    for path in sorted((roots[IMAGE] / "gta/labels").glob("*.png")):
        with Image.open(path) as img:
            assert img.mode == "P"
            pal = np.asarray(img.getpalette()[: 3 * 34]).reshape(34, 3)
            idx = np.asarray(img)
        assert [tuple(c) for c in pal] == [rgb for _, _, rgb in CITYSCAPES_LABELS]
        assert idx.shape == (H, W) and int(idx.max()) <= 33


def written_labels(root: Path, benchmark: str) -> list[tuple[str, np.ndarray]]:
    """(encoding, raw label ids [H, W]) of every label file, read as a loader must read it."""
    out = []
    if benchmark == VIDEO:
        for p in sorted((root / SEQ / "GT/LABELS/Stereo_Left/Omni_F").glob("*.png")):
            out.append(("synthia-seq", cv2.imread(str(p), cv2.IMREAD_UNCHANGED)[..., 2]))
    else:
        for p in sorted((root / "gta/labels").glob("*.png")):
            with Image.open(p) as img:
                out.append(("gta", np.asarray(img)))
    for p in sorted((root / "cityscapes/gtFine").glob("*/*/*_gtFine_labelIds.png")):
        out.append(("cityscapes", cv2.imread(str(p), cv2.IMREAD_UNCHANGED)))
    return out


@pytest.mark.parametrize("benchmark,protocol,min_classes", [(VIDEO, "synthia-seq12", 12),
                                                            (IMAGE, "cityscapes19", 17)])
def test_labels_decode_to_protocol_train_ids_and_cover_the_classes(roots, benchmark, protocol,
                                                                   min_classes):
    proto = PROTOCOLS[protocol]
    seen: set[int] = set()
    for encoding, raw in written_labels(roots[benchmark], benchmark):
        values = set(np.unique(map_label(raw, protocol, encoding)).tolist())
        assert values <= set(range(proto.num_classes)) | {255}
        seen |= values - {255}
    assert len(seen) >= min_classes
    stats = S.layout_statistics(roots[benchmark], benchmark)
    assert stats["protocol"] == protocol
    for dom in stats["domains"].values():
        total = sum(dom["class_share"].values()) + dom["ignore_share"]
        assert total == pytest.approx(1.0)


def test_target_labels_ignore_the_ego_hood_and_keep_true_label_ids(roots):
    gt = roots[VIDEO] / "cityscapes/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"
    lab = cv2.imread(str(gt), cv2.IMREAD_UNCHANGED)
    assert lab.dtype == np.uint8 and lab.shape == (H, W)
    assert (lab[-1] == 1).all()             # ego vehicle: labelId 1, ignored by every protocol
    assert {7, 11, 23} <= set(np.unique(lab).tolist())   # road, building, sky as labelIds


# ----------------------------------------------------------------------------- flow
def video_frames_with_previous(root: Path) -> list[tuple[str, Path, Path]]:
    """(dataset, frame t, frame t-1) for every written frame whose previous frame is written."""
    out = []
    for p in sorted((root / SEQ / "RGB/Stereo_Left/Omni_F").glob("*.png")):
        prev = p.with_name(f"{int(p.stem) - 1:06d}.png")
        if prev.exists():
            out.append(("synthia-seq", p, prev))
    for p in sorted((root / "cityscapes/leftImg8bit_sequence").glob("*/*/*.png")):
        city, seq, frame, _ = p.name.split("_")
        prev = p.with_name(f"{city}_{seq}_{int(frame) - 1:06d}_leftImg8bit.png")
        if prev.exists():
            out.append(("cityscapes", p, prev))
    return out


def stored_flow(root: Path, dataset: str, frame: Path) -> np.ndarray:
    """float32 [H, W, 2]: the cached flow t -> t-1 of a written frame."""
    return read_flow(flow_cache_path(root / "udass_flow", dataset, frame.relative_to(root / dataset)))


def synthia_label(frame: Path) -> np.ndarray:
    """Raw SYNTHIA class ids [H, W] of a written SYNTHIA-Seq RGB frame."""
    return cv2.imread(str(frame).replace("RGB", "GT/LABELS"), cv2.IMREAD_UNCHANGED)[..., 2]


def as_tensor(x: np.ndarray) -> torch.Tensor:
    """[H, W, C] or [H, W] array -> [1, C, H, W] float tensor."""
    x = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    return (x[..., None] if x.dim() == 2 else x).permute(2, 0, 1)[None]


def test_flows_exist_for_every_frame_with_a_previous_frame(roots):
    root = roots[VIDEO]
    pairs = video_frames_with_previous(root)
    assert len(pairs) == 7 + 4 * 2 + 2 * 5
    for dataset, frame, _ in pairs:
        path = flow_cache_path(root / "udass_flow", dataset, frame.relative_to(root / dataset))
        raw = np.load(path)
        assert raw.dtype == np.int16 and raw.shape == (H, W, 2)
        assert np.abs(raw).max() < 3000
    assert len(list((root / "udass_flow").rglob("*.npy"))) == len(pairs)
    first = flow_cache_path(root / "udass_flow", "synthia-seq",
                            "SYNTHIA-SEQS-04-DAWN/RGB/Stereo_Left/Omni_F/000000.png")
    assert not first.exists()


def smooth_flow_mask(flow: np.ndarray, radius: int = 3) -> np.ndarray:
    """bool [H, W]: the flow varies by < 0.3 px within `radius` pixels: no motion boundary,
    hence no occlusion or disocclusion, nearby."""
    jump = np.zeros(flow.shape[:2], np.float32)
    jump[:, 1:] = np.maximum(jump[:, 1:], np.abs(np.diff(flow, axis=1)).max(-1))
    jump[1:, :] = np.maximum(jump[1:, :], np.abs(np.diff(flow, axis=0)).max(-1))
    return cv2.dilate(jump, np.ones((2 * radius + 1,) * 2, np.uint8)) < 0.3


def test_stored_flow_warps_the_previous_frame_onto_the_current_one(roots):
    """Where the image moved (flow >= 1 px and the pixel changed by more than 3 sigma of the
    sensor-noise difference), away from motion boundaries (no occlusion), warping frame t-1 by
    the stored flow reconstructs frame t at least 3x better than no warp, on the flat source
    style and the noisy textured target style alike. At this 64 x 32 size aliasing of textures
    limits the ratio (about 2.8x on the target, where a shuffled flow of the same drive reaches
    2.5x); tests/test_flow_quality.py makes the discriminating check at the demo size."""
    root = roots[VIDEO]
    errors = {"synthia-seq": np.zeros(3), "cityscapes": np.zeros(3)}
    for dataset, frame, prev in video_frames_with_previous(root):
        flow = stored_flow(root, dataset, frame)
        f = as_tensor(flow)
        cur, before = read_rgb(frame).astype(np.float32), read_rgb(prev).astype(np.float32)
        warped = warp(as_tensor(before), f)[0].permute(1, 2, 0).numpy()
        e_warp, e_none = np.abs(warped - cur).mean(-1), np.abs(before - cur).mean(-1)
        mask = (warp_valid_mask(f)[0].numpy() & smooth_flow_mask(flow)
                & (np.linalg.norm(flow, axis=-1) >= 1.0) & (e_none >= 12))
        errors[dataset] += [e_warp[mask].sum(), e_none[mask].sum(), mask.sum()]
    for dataset, (ew, en, n) in errors.items():
        assert n > 100, dataset
        assert en / ew >= 2.6, f"{dataset}: warp error {ew / n:.2f} vs no warp {en / n:.2f}"


def test_source_flow_keeps_labels_consistent(roots):
    """Nearest-warping the labels of t-1 by the exact flow gives the labels of t almost everywhere
    the flow stays inside the frame (disocclusions and edges are the rest)."""
    root = roots[VIDEO]
    agree = []
    for dataset, frame, prev in video_frames_with_previous(root):
        if dataset != "synthia-seq":
            continue
        f = as_tensor(stored_flow(root, dataset, frame))
        warped = warp(as_tensor(synthia_label(prev)), f, "nearest")[0, 0].numpy()
        valid = warp_valid_mask(f)[0].numpy()
        agree.append((warped == synthia_label(frame))[valid].mean())
    assert np.mean(agree) > 0.93


# ----------------------------------------------------------------------------- cached roots
def test_ensure_synthetic_root_reuses_and_regenerates(tmp_path):
    root = tmp_path / "cache" / "image"
    assert S.ensure_synthetic_root(IMAGE, "tiny", 0, root=root) == root
    sentinel = root / "sentinel.txt"
    sentinel.write_text("reuse me")
    S.ensure_synthetic_root(IMAGE, "tiny", 0, root=root)
    assert sentinel.exists()                       # complete and matching: reused
    (root / S.MARKER).unlink()
    S.ensure_synthetic_root(IMAGE, "tiny", 0, root=root)
    assert not sentinel.exists() and S.read_marker(root)["seed"] == 0   # regenerated
    S.ensure_synthetic_root(IMAGE, "tiny", 1, root=root)
    assert S.read_marker(root)["seed"] == 1        # another seed does not match: regenerated
    assert [p.name for p in root.parent.iterdir()] == ["image"]   # no temporary leftovers


def test_ensure_synthetic_root_is_safe_for_concurrent_callers(tmp_path):
    root = tmp_path / "shared"
    results, errors = [], []

    def call() -> None:
        try:
            results.append(S.ensure_synthetic_root(IMAGE, "tiny", 0, root=root))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [root, root]
    assert S.read_marker(root)["benchmark"] == IMAGE
    assert [p.name for p in tmp_path.iterdir()] == ["shared"]


def test_generate_and_ensure_refuse_folders_they_did_not_write(tmp_path):
    (tmp_path / "cityscapes").mkdir()
    with pytest.raises(UdassError, match="not written by"):
        S.generate(VIDEO, tmp_path, size="tiny")
    with pytest.raises(UdassError, match="not written by"):
        S.ensure_synthetic_root(IMAGE, "tiny", root=tmp_path)
    assert (tmp_path / "cityscapes").is_dir()


def test_generate_over_its_own_output_removes_stale_files(roots, tmp_path):
    out = tmp_path / "root"
    S.generate(IMAGE, out, size="tiny")
    stale = out / "cityscapes/leftImg8bit/train/aachen/stale_leftImg8bit.png"
    stale.write_bytes(b"x")
    S.generate(IMAGE, out, size="tiny")
    assert not stale.exists() and tree(out) == tree(roots[IMAGE])


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("UDASS_DATA", str(tmp_path))
    assert S.default_root(VIDEO) == tmp_path / VIDEO
    assert S.default_root(IMAGE, "tiny", 3) == tmp_path / f"{IMAGE}-tiny-s3"
    monkeypatch.delenv("UDASS_DATA")
    assert S.default_root(VIDEO) == Path(S.__file__).resolve().parents[3] / "data" / VIDEO


@pytest.mark.parametrize("call", [
    lambda p: S.generate("synthetic-videos", p, size="tiny"),
    lambda p: S.generate(VIDEO, p, size="huge"),
    lambda p: S.default_root("gtav2cityscapes"),
    lambda p: S.ensure_synthetic_root(VIDEO, "large", root=p),
])
def test_bad_names_raise_udass_error_listing_the_choices(tmp_path, call):
    with pytest.raises(UdassError, match="expected one of") as e:
        call(tmp_path / "x")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- docs helpers
def test_layout_statistics_counts_frames(roots):
    stats = S.layout_statistics(roots[VIDEO], VIDEO)
    doms = stats["domains"]
    assert (doms["source"]["frames"], doms["source"]["labelled_frames"]) == (8, 8)
    assert (doms["target_train"]["frames"], doms["target_train"]["labelled_frames"]) == (12, 4)
    assert (doms["target_val"]["frames"], doms["target_val"]["labelled_frames"]) == (12, 2)
    assert "| road |" in S.format_statistics(stats)


@pytest.mark.parametrize("benchmark", [VIDEO, IMAGE])
def test_style_figure_writes_a_png(roots, tmp_path, benchmark):
    out = S.style_figure(roots[benchmark], benchmark, tmp_path / "fig.png")
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 400


def test_statistics_and_figure_need_a_complete_root_of_the_benchmark(roots, tmp_path):
    with pytest.raises(UdassError, match="udass synth --benchmark synthetic-video"):
        S.layout_statistics(tmp_path, VIDEO)
    with pytest.raises(UdassError, match="a synthetic-image root"):
        S.style_figure(roots[IMAGE], VIDEO, tmp_path / "fig.png")
