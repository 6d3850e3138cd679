"""Loaders of the six datasets, the benchmark dataset builder and `udass check-data`, on fixture
trees built here in each shipped layout and id encoding (test_data_fixtures.py)."""
from __future__ import annotations

import pickle
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from test_data_fixtures import (BLOCK_A, BLOCK_B, CS_VAL, FLOW, H, OUT, W, cache_path, fixture_cfg,
                                fixture_sizes, frame_value, make_cityscapes, make_root, make_synthia_seq,
                                preset_data, write_cache_flows)
from udass.cli import main as cli_main
from udass.data import build_dataset, collate_clips
from udass.data.check import check_data
from udass.data.flow import write_flow
from udass.errors import UdassError

VIDEO = ("synthia-seq2cityscapes-seq", "viper2cityscapes-seq")
IMAGE = ("gtav2cityscapes", "synthia2cityscapes")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A complete data root: every dataset and every cache flow of both video benchmarks."""
    r = make_root(tmp_path_factory.mktemp("data"))
    for b in VIDEO:
        write_cache_flows(r, b)
    return r


def ds_(root, benchmark, split, domain, **kw):
    return build_dataset(benchmark, split, root, domain, data_cfg=fixture_cfg(benchmark), **kw)


def frame_numbers_are(clip, numbers) -> bool:
    """Whether the clip's frames are the fixture frames with these numbers (constant red values)."""
    reds = [float(f[0].mean()) * 255 for f in clip.frames]
    return len(reds) == len(numbers) and all(abs(r - frame_value(n)) <= 2 for r, n in zip(reds, numbers))


def half(raw_block):  # the block's rows / cols at the clip size (exactly half the stored size)
    return tuple(slice(s.start // 2, s.stop // 2) for s in raw_block)


# ----------------------------------------------------------------------------------- Cityscapes
def test_cityscapes_seq_val_clip_maps_rider_to_person_under_viper(root):
    ds = ds_(root, "viper2cityscapes-seq", "val", "target")
    assert ds.names == list(CS_VAL) and len(ds) == 1
    clip = ds[0]
    assert clip.name == "frankfurt_000000_000294" and clip.domain == "target"
    assert frame_numbers_are(clip, (294, 293))
    assert tuple(clip.labels.shape) == (2, H, W)          # evaluation labels: native resolution
    assert tuple(clip.frames.shape) == (2, 3, *OUT)       # frames: the profile size
    lab = clip.labels[0]
    assert (lab[BLOCK_A] == 9).all()     # labelId 25 (rider) -> person under the VIPER protocol
    assert (lab[BLOCK_B] == 10).all()    # 26 -> car
    assert lab[0, -1] == 255 and lab[H - 1, 0] == 0   # unlabeled -> ignore, road -> 0
    assert (clip.labels[1] == 255).all()
    assert torch.allclose(clip.flows[0, 0], torch.full(OUT, FLOW[0] / 2))
    assert torch.allclose(clip.flows[0, 1], torch.full(OUT, FLOW[1] / 2))


def test_cityscapes_labelid_25_is_rider_under_the_19_class_protocol(root):
    clip = ds_(root, "gtav2cityscapes", "val", "target")[0]
    assert clip.labels.shape == (1, H, W) and clip.flows.shape == (0, 2, *OUT)
    assert (clip.labels[0][BLOCK_A] == 12).all() and (clip.labels[0][BLOCK_B] == 13).all()
    assert frame_numbers_are(clip, (294,))  # leftImg8bit, not the sequence


def test_target_train_clip_derives_previous_frames_from_the_annotated_number(root):
    ds = ds_(root, "synthia-seq2cityscapes-seq", "train", "target")
    assert ds.names == ["aachen_000000_000019", "aachen_000001_000294"]
    clip = ds[1]
    assert clip.labels is None and clip.frames.shape == (3, 3, *OUT) and clip.flows.shape == (2, 2, *OUT)
    assert frame_numbers_are(clip, (294, 293, 292))
    # flows[1] is the flow of frame t-1 -> t-2 (the fixture adds 1 to x for it)
    assert torch.allclose(clip.flows[1, 0], torch.full(OUT, (FLOW[0] + 1) / 2))
    paths = ds.raw_paths(1)
    assert [p.name for p in paths.frames] == [f"aachen_000001_{n:06d}_leftImg8bit.png" for n in (294, 293, 292)]
    assert paths.flows[1].name == "aachen_000001_000293_leftImg8bit_int16_x10.npy"


def test_oracle_target_train_labels_frame_t_only(root):
    clip = ds_(root, "synthia-seq2cityscapes-seq", "train", "target", with_labels=True)[0]
    assert clip.labels.shape == (3, *OUT) and clip.labels.dtype == torch.int64
    assert (clip.labels[0][half(BLOCK_A)] == 10).all()  # rider under the SYNTHIA-Seq protocol
    assert (clip.labels[1:] == 255).all()


# ----------------------------------------------------------------------------------- sources
def test_synthia_seq_source_clip_reads_first_channel_and_crops_the_bottom(root):
    ds = ds_(root, "synthia-seq2cityscapes-seq", "train", "source")
    assert ds.names == ["000001", "000002", "000003"]  # frames 1..N-1: t-1 must exist
    clip = ds[1]
    assert frame_numbers_are(clip, (2, 1))
    assert clip.frames[:, 0].max() < 0.5   # the red bottom rows were cropped before resizing
    assert clip.labels.shape == (2, *OUT)
    for lab in clip.labels:                # both frames labelled
        assert (lab[half(BLOCK_A)] == 11).all()   # raw 8 (R channel) -> car, not B's 3 -> road
        assert (lab[half(BLOCK_B)] == 9).all()    # raw 10 -> person
        assert not (lab == 8).any()               # the cropped sky rows are gone
    assert torch.allclose(clip.flows[0, 0], torch.full(OUT, FLOW[0] / 2))


def test_viper_source_clip_vegetation_and_ego_vehicle(root):
    ds = ds_(root, "viper2cityscapes-seq", "train", "source")
    # labelled frames with a previous frame (00000 has none; 00009, 00019 lack their previous image)
    assert ds.names == ["001_00010", "001_00020", "002_00010"]
    clip = ds[0]
    assert frame_numbers_are(clip, (10, 9))
    lab = clip.labels[0]
    assert (lab[half(BLOCK_A)] == 6).all() and (lab[half(BLOCK_B)] == 6).all()  # raw 7 and 8
    assert (lab[OUT[0] - 2:, OUT[1] // 2 - 2: OUT[1] // 2 + 2] == 255).all()  # ego vehicle ignored
    assert (lab[1, OUT[1] - 3] == 10)                                         # the other car stays
    assert (clip.labels[1][half(BLOCK_A)] == 6).all()  # t-1 labelled when its file exists
    clip2 = ds[2]   # seq 002: png frames, no label for 00009
    assert frame_numbers_are(clip2, (10, 9))
    assert (clip2.labels[1] == 255).all() and (clip2.labels[0][half(BLOCK_A)] == 6).all()


def test_viper_val_split(root):
    ds = build_dataset("viper2cityscapes-seq", "val", root, "source",
                       data_cfg=fixture_cfg("viper2cityscapes-seq"))
    assert ds.names == ["003_00010"] and ds.raw_paths(0).flows[0].name == "003_00010_int16_x10.npy"


def test_gtav_labels_are_palette_indices_not_colours(root):
    ds = ds_(root, "gtav2cityscapes", "train", "source")
    assert ds.names == ["00001", "00002"]
    clip = ds[0]
    assert clip.frames.shape == (1, 3, *OUT) and clip.labels.shape == (1, *OUT)
    lab = clip.labels[0]   # every palette colour is black: only the index tells 24 from 26
    assert (lab[half(BLOCK_A)] == 11).all() and (lab[half(BLOCK_B)] == 13).all() and lab[-1, 0] == 0


def test_synthia_rand_reads_the_16_bit_first_channel(root):
    clip = ds_(root, "synthia2cityscapes", "train", "source")[1]
    assert clip.name == "0000001"
    assert (clip.labels[0][half(BLOCK_A)] == 13).all() and (clip.labels[0][half(BLOCK_B)] == 11).all()


@pytest.mark.parametrize("benchmark,split,domain,k", [
    ("synthia-seq2cityscapes-seq", "train", "source", 2), ("synthia-seq2cityscapes-seq", "train", "target", 3),
    ("viper2cityscapes-seq", "val", "target", 2), ("gtav2cityscapes", "train", "target", 1),
    ("synthia2cityscapes", "val", "target", 1)])
def test_clips_follow_the_contract(root, benchmark, split, domain, k):
    ds = ds_(root, benchmark, split, domain)
    clips = [ds[i] for i in range(len(ds))]
    batch = collate_clips(clips)
    assert batch.frames.shape == (len(ds), k, 3, *OUT) and batch.frames.dtype == torch.float32
    assert 0 <= float(batch.frames.min()) and float(batch.frames.max()) <= 1
    assert batch.flows.shape == (len(ds), k - 1, 2, *OUT) and batch.flows.dtype == torch.float32
    if batch.labels is not None:
        assert batch.labels.dtype == torch.int64 and batch.labels.shape[:2] == (len(ds), k)
        assert set(batch.labels.unique().tolist()) <= set(range(19)) | {255}
    assert (domain == "target" and split == "train") == (batch.labels is None)
    assert len(pickle.loads(pickle.dumps(ds))) == len(ds)   # DataLoader workers receive a copy


# ----------------------------------------------------------------------------------- flow sources
def test_authors_flows_are_read_from_their_flat_folders(root, tmp_path):
    flows = tmp_path / "authors"
    small = np.zeros((H // 4, W // 4, 2), np.float32)
    small[..., 0], small[..., 1] = 0.5, -0.5        # at quarter scale: (2, -2) at the stored size
    write_flow(flows / "Cityscapes_val_optical_flow_scale512" / "frankfurt_000000_000294_000293_int16_x10.npy", small)
    write_flow(flows / "estimated_optical_flow_viper_train" / "001_0001000009_int16_x10.npy", small * 2)
    cfg = fixture_cfg("viper2cityscapes-seq", flow_root=str(flows))
    cfg = replace(cfg, flow_source="authors")
    clip = build_dataset("viper2cityscapes-seq", "val", root, "target", data_cfg=cfg)[0]
    assert torch.allclose(clip.flows[0, 0], torch.full(OUT, 1.0)) and torch.allclose(clip.flows[0, 1], torch.full(OUT, -1.0))
    src = build_dataset("viper2cityscapes-seq", "train", root, "source", data_cfg=cfg)
    assert torch.allclose(src[0].flows[0, 0], torch.full(OUT, 2.0))
    with pytest.raises(UdassError, match="001_0002000019_int16_x10.npy"):
        src[1]


def test_authors_synthia_seq_flows_need_the_authors_crop(root, tmp_path):
    write_flow(tmp_path / "estimated_optical_flow_synthiaseq_train" / "000001_int16_x10.npy",
               np.zeros((H // 2, W // 2, 2), np.float32))
    cfg = replace(fixture_cfg("synthia-seq2cityscapes-seq"), flow_source="authors")
    ds = build_dataset("synthia-seq2cityscapes-seq", "train", root, "source", data_cfg=cfg, flow_root=tmp_path)
    with pytest.raises(UdassError, match="source_crop_bottom=120"):
        ds[0]


def test_wrong_shape_flow_names_file_and_command(root, tmp_path):
    r = make_root(tmp_path)
    write_cache_flows(r, "viper2cityscapes-seq")
    bad = cache_path(r, "cityscapes", "leftImg8bit_sequence/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png")
    write_flow(bad, np.zeros((10, 10, 2), np.float32))
    ds = ds_(r, "viper2cityscapes-seq", "val", "target")
    with pytest.raises(UdassError, match="udass flow --benchmark viper2cityscapes-seq") as e:
        ds[0]
    assert str(bad) in str(e.value)
    b = "viper2cityscapes-seq"
    assert check_data(b, r, data_cfg=preset_data(b), expected=fixture_sizes(b)) == 1


def test_reduced_scale_cache_flow_is_rescaled(root, tmp_path):
    r = make_root(tmp_path)
    write_cache_flows(r, "viper2cityscapes-seq")
    p = cache_path(r, "cityscapes", "leftImg8bit_sequence/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png")
    small = np.zeros((H // 2, W // 2, 2), np.float32)
    small[..., 0] = 3.0                              # 6 px at the stored size, 3 px at the clip size
    write_flow(p, small)
    assert torch.allclose(ds_(r, "viper2cityscapes-seq", "val", "target")[0].flows[0, 0], torch.full(OUT, 3.0))


# ----------------------------------------------------------------------------------- errors
def test_missing_root_dataset_folder_and_split(tmp_path):
    with pytest.raises(UdassError, match="--data-root"):
        build_dataset("gtav2cityscapes", "train", None, "source", data_cfg=preset_data("gtav2cityscapes"))
    missing = tmp_path / "nowhere"
    with pytest.raises(UdassError, match=str(missing)):
        build_dataset("gtav2cityscapes", "train", missing, "source", data_cfg=preset_data("gtav2cityscapes"))
    make_cityscapes(tmp_path)
    with pytest.raises(UdassError, match=str(tmp_path / "viper")):
        build_dataset("viper2cityscapes-seq", "train", tmp_path, "source", data_cfg=preset_data("viper2cityscapes-seq"))
    shutil.rmtree(tmp_path / "cityscapes" / "gtFine" / "val")
    # the image still names the clip
    val = build_dataset("gtav2cityscapes", "val", tmp_path, "target", data_cfg=preset_data("gtav2cityscapes"))
    assert val.names == list(CS_VAL)
    label = val.raw_paths(0).labels[0]
    with pytest.raises(UdassError, match=str(label)):
        val[0]
    for folder in ("leftImg8bit", "leftImg8bit_sequence"):
        shutil.rmtree(tmp_path / "cityscapes" / folder / "val")
    with pytest.raises(UdassError, match="no val frames of cityscapes"):
        build_dataset("gtav2cityscapes", "val", tmp_path, "target", data_cfg=preset_data("gtav2cityscapes"))
    with pytest.raises(UdassError, match="no val split"):
        make_synthia_seq(tmp_path)
        build_dataset("synthia-seq2cityscapes-seq", "val", tmp_path, "source",
                      data_cfg=preset_data("synthia-seq2cityscapes-seq"))
    with pytest.raises(UdassError, match="unknown split"):
        build_dataset("gtav2cityscapes", "test", tmp_path, "target", data_cfg=preset_data("gtav2cityscapes"))


def test_missing_frame_label_and_flow_name_the_path(tmp_path):
    r = make_root(tmp_path)
    write_cache_flows(r, "synthia-seq2cityscapes-seq")
    ds = ds_(r, "synthia-seq2cityscapes-seq", "train", "source")
    label = ds.raw_paths(1).labels[1]
    label.unlink()
    with pytest.raises(UdassError, match=str(label)):
        ds[1]
    flow = ds.raw_paths(2).flows[0]
    flow.unlink()
    with pytest.raises(UdassError, match="udass flow --benchmark synthia-seq2cityscapes-seq") as e:
        ds[2]
    assert str(flow) in str(e.value)
    tgt = ds_(r, "synthia-seq2cityscapes-seq", "train", "target")
    prev = tgt.raw_paths(0).frames[2]
    prev.unlink()
    with pytest.raises(UdassError, match=str(prev)):
        tgt[0]
    prev.write_bytes(b"not a png")
    with pytest.raises(UdassError, match="unreadable image"):
        tgt[0]


def test_label_ids_outside_the_encoding_map_to_ignore_and_are_counted(tmp_path, capsys):
    from test_data_fixtures import make_gta, write_index_png
    from udass.data.protocols import LabelIdWarning, reset_unexpected_label_ids, unexpected_label_ids

    reset_unexpected_label_ids()
    make_cityscapes(tmp_path)
    make_gta(tmp_path)
    lab = tmp_path / "cityscapes/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"
    ids = np.full((H, W), 7)
    ids[0, 0], ids[1, :3] = 40, 200
    write_index_png(lab, ids)
    ds = build_dataset("gtav2cityscapes", "val", tmp_path, "target", data_cfg=fixture_cfg("gtav2cityscapes"))
    with pytest.warns(LabelIdWarning, match=rf"{lab}: label ids \[40, 200\] .* on 4 pixels"):
        label = ds[0].labels[0]
    assert label[0, 0] == 255 and (label[1, :3] == 255).all() and (label[2:] == 0).all()   # road elsewhere
    assert unexpected_label_ids() == {"cityscapes": {str(lab): ((40, 200), 4)}}
    reset_unexpected_label_ids()
    # a sampled label with such ids is a note, not a failure: the fixture tree is complete
    b = "gtav2cityscapes"
    assert check_data(b, tmp_path, data_cfg=preset_data(b), expected=fixture_sizes(b)) == 0
    out = capsys.readouterr().out
    assert f"note: {lab}: label ids [40, 200] outside the cityscapes encoding on 4 pixels" in out


def test_colour_label_is_rejected(tmp_path):
    from PIL import Image

    make_cityscapes(tmp_path)
    lab = tmp_path / "cityscapes/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(lab)
    with pytest.raises(UdassError, match="expected class indices"):
        build_dataset("gtav2cityscapes", "val", tmp_path, "target", data_cfg=preset_data("gtav2cityscapes"))[0]


# ----------------------------------------------------------------------------------- check-data
def test_check_data_complete_and_incomplete(root, tmp_path, capsys):
    for b in VIDEO + IMAGE:
        assert check_data(b, root, data_cfg=preset_data(b), expected=fixture_sizes(b)) == 0, b
        assert "complete: every method trains and evaluates" in capsys.readouterr().out
    r = make_root(tmp_path)
    flows = write_cache_flows(r, "synthia-seq2cityscapes-seq", skip=2)
    (r / "cityscapes/leftImg8bit_sequence/val/frankfurt/frankfurt_000000_000293_leftImg8bit.png").unlink()
    b = "synthia-seq2cityscapes-seq"
    assert check_data(b, r, data_cfg=preset_data(b), expected=fixture_sizes(b)) == 1
    out = capsys.readouterr().out
    assert "INCOMPLETE" in out and str(flows[0]) in out and "frankfurt_000000_000293_leftImg8bit.png" in out
    assert "udass flow --benchmark synthia-seq2cityscapes-seq" in out
    assert cli_main(["check-data", "--benchmark", "synthia-seq2cityscapes-seq", "--data-root", str(r)]) == 1
    assert cli_main(["check-data", "--benchmark", "viper2cityscapes-seq", "--data-root", str(tmp_path / "x")]) == 2


def test_check_data_reports_a_missing_dataset_folder(tmp_path, capsys):
    make_cityscapes(tmp_path)
    assert check_data("gtav2cityscapes", tmp_path, data_cfg=preset_data("gtav2cityscapes")) == 1
    out = capsys.readouterr().out
    assert str(tmp_path / "gta") in out and "target/val" in out


# ----------------------------------------------------------------------------------- synthetic
def test_synthetic_benchmark_without_root_uses_the_synthetic_cache(tiny_video_root):
    """No data root: the root generated for the DataConfig's synth_size / synth_seed in the
    cache ($UDASS_DATA), read with its exact flows."""
    cfg = preset_data("synthetic-video", "test")
    assert (cfg.synth_size, cfg.synth_seed) == ("tiny", 0)
    ds = build_dataset("synthetic-video", "train", None, "source", data_cfg=cfg)
    assert ds.data_root == tiny_video_root and len(ds) == 7
    assert ds.flow_source == "exact" and ds.flow_root == tiny_video_root / "udass_flow"
    clip = ds[0]
    assert clip.frames.shape == (2, 3, *cfg.source_size) and clip.flows.shape == (1, 2, *cfg.source_size)
    with pytest.raises(UdassError, match="the DataConfig given is for 'synthetic-image'"):
        build_dataset("synthetic-video", "train", None, "source", data_cfg=preset_data("synthetic-image", "test"))
