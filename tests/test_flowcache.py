"""`udass flow` (compute_flows): exactly the missing flows are computed, existing ones are kept,
the sign and frame order of DIS flows are right, and the authors' format round-trips."""
from __future__ import annotations

import numpy as np
import pytest

from test_data_fixtures import (CROP, H, OUT, W, fixture_cfg, fixture_sizes, make_cityscapes, make_root,
                                make_synthia_seq, preset_data, write_cache_flows)
from udass.cli import main as cli_main
from udass.data import build_dataset
from udass.data.check import check_data
from udass.data.flow import read_flo, read_flow, write_flo, write_flow
from udass.data.flowcache import FlowJob, compute_flows, compute_one, flow_jobs, shard_jobs
from udass.errors import UdassError

BENCH = "synthia-seq2cityscapes-seq"


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random texture, uint8 RGB (DIS needs gradients)."""
    import cv2

    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    return (cv2.GaussianBlur(noise, (0, 0), 2.0) * 255).clip(0, 255).astype(np.uint8)


def test_compute_flows_fills_exactly_the_missing_flows(tmp_path):
    root = make_root(tmp_path)
    every = write_cache_flows(root, BENCH, skip=4)
    kept = {p: p.read_bytes() for p in every[4:]}
    assert not any(p.exists() for p in every[:4])
    # source t->t-1 (3), target train t->t-1 and t-1->t-2 (2 x 2), target val t->t-1 (1)
    assert len(every) == 3 + 4 + 1
    summary = compute_flows(BENCH, root, data_cfg=preset_data(BENCH))
    assert (summary["needed"], summary["existing"], summary["computed"]) == (8, 4, 4)
    assert all(p.read_bytes() == b for p, b in kept.items())          # existing files untouched
    for p in every[:4]:
        flow = read_flow(p)
        h = H + CROP if "synthia-seq" in str(p) else H
        assert flow.shape == (h, W, 2)                                # the frame's stored resolution
    assert compute_flows(BENCH, root, data_cfg=preset_data(BENCH))["computed"] == 0   # resumable: nothing left
    assert check_data(BENCH, root, data_cfg=preset_data(BENCH), expected=fixture_sizes(BENCH)) == 0
    assert not list(root.rglob("*.tmp"))                              # atomic writes left no debris


def test_target_train_needs_the_t_minus_1_flow(tmp_path):
    make_cityscapes(tmp_path)
    make_synthia_seq(tmp_path)
    jobs = flow_jobs(BENCH, tmp_path, tmp_path / "udass_flow", preset_data(BENCH))
    names = {(j.frame.name, j.prev.name) for j in jobs}
    assert ("aachen_000001_000293_leftImg8bit.png", "aachen_000001_000292_leftImg8bit.png") in names
    assert ("000001.png", "000000.png") in names and len(jobs) == 8


def test_dis_flow_is_backward_from_t_to_t_minus_1(tmp_path):
    import cv2

    prev = textured(64, 96)
    cur = np.roll(prev, 3, axis=1)            # content moved 3 px right: cur(x) = prev(x - 3)
    cv2.imwrite(str(tmp_path / "t.png"), cv2.cvtColor(cur, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "p.png"), cv2.cvtColor(prev, cv2.COLOR_RGB2BGR))
    compute_one(FlowJob(tmp_path / "t.png", tmp_path / "p.png", tmp_path / "f.npy"))
    flow = read_flow(tmp_path / "f.npy")[8:-8, 8:-8]
    assert abs(float(np.median(flow[..., 0])) + 3) < 0.3 and abs(float(np.median(flow[..., 1]))) < 0.3
    compute_one(FlowJob(tmp_path / "t.png", tmp_path / "p.png", tmp_path / "g.npy"), max_width=48)
    assert read_flow(tmp_path / "g.npy").shape == (32, 48, 2)
    assert abs(float(np.median(read_flow(tmp_path / "g.npy", size=(64, 96))[8:-8, 8:-8, 0])) + 3) < 0.4


def test_two_workers_and_max_width(tmp_path):
    root = tmp_path / "data"
    make_synthia_seq(root, n=3)
    make_cityscapes(root)
    summary = compute_flows(BENCH, root, data_cfg=preset_data(BENCH), flow_root=tmp_path / "flows",
                            workers=2, max_width=W // 2)
    assert summary["computed"] == 7 and summary["workers"] == 2
    stored = sorted((tmp_path / "flows").rglob("*_int16_x10.npy"))
    assert len(stored) == 7 and all(read_flow(p).shape[1] == W // 2 for p in stored)
    cfg = fixture_cfg(BENCH, flow_root=str(tmp_path / "flows"))
    clip = build_dataset(BENCH, "train", root, "source", data_cfg=cfg)[0]
    assert clip.flows.shape == (1, 2, *OUT)   # the reduced-scale cache is read at the clip size


def test_image_benchmarks_need_no_flow(tmp_path, capsys):
    assert compute_flows("gtav2cityscapes", tmp_path, data_cfg=preset_data("gtav2cityscapes"))["needed"] == 0
    assert "need no optical flow" in capsys.readouterr().out


def test_compute_flows_errors(tmp_path):
    with pytest.raises(UdassError, match="DIS preset"):
        compute_flows(BENCH, tmp_path, data_cfg=preset_data(BENCH), preset="slow")
    make_cityscapes(tmp_path)
    make_synthia_seq(tmp_path)
    (tmp_path / "cityscapes/leftImg8bit_sequence/val/frankfurt/frankfurt_000000_000293_leftImg8bit.png").unlink()
    with pytest.raises(UdassError, match="frankfurt_000000_000293_leftImg8bit.png"):
        compute_flows(BENCH, tmp_path, data_cfg=preset_data(BENCH))
    assert cli_main(["flow", "--benchmark", BENCH, "--data-root", str(tmp_path / "none")]) == 2


def test_authors_format_round_trips(tmp_path):
    flow = np.zeros((8, 16, 2), np.float32)
    flow[..., 0] = np.linspace(-3, 3, 16)
    flow[..., 1] = 1.5
    write_flow(tmp_path / "frankfurt_000000_000294_000293_int16_x10.npy", flow)
    raw = np.load(tmp_path / "frankfurt_000000_000294_000293_int16_x10.npy")
    assert raw.dtype == np.int16 and raw.shape == (8, 16, 2) and raw[0, 0, 1] == 15
    assert np.abs(read_flow(tmp_path / "frankfurt_000000_000294_000293_int16_x10.npy") - flow).max() <= 0.05
    up = read_flow(tmp_path / "frankfurt_000000_000294_000293_int16_x10.npy", size=(16, 32))
    assert up.shape == (16, 32, 2) and np.allclose(up[..., 1], 3.0, atol=0.01)   # vectors x2
    write_flo(tmp_path / "f.flo", flow)
    assert np.array_equal(read_flo(tmp_path / "f.flo"), flow)


def test_flow_command_line(tmp_path, capsys):
    make_synthia_seq(tmp_path, n=2)
    make_cityscapes(tmp_path)
    args = ["flow", "--benchmark", BENCH, "--data-root", str(tmp_path), "--max-width", str(W // 2)]
    assert cli_main(args) == 0
    assert "6 flows needed, 0 already" in capsys.readouterr().out
    assert all(read_flow(p).shape[1] == W // 2 for p in (tmp_path / "udass_flow").rglob("*.npy"))
    assert cli_main(args) == 0 and "6 already" in capsys.readouterr().out


def test_shards_are_disjoint_cover_every_flow_and_fill_the_same_cache(tmp_path, capsys):
    """Three array-job shards (run in any order, one of them from the command line) write the
    same files, byte for byte, as one unsharded run; a rerun of a shard finds nothing to do."""
    root = make_root(tmp_path / "data")
    jobs = flow_jobs(BENCH, root, tmp_path / "flows", preset_data(BENCH))
    shards = [shard_jobs(jobs, i, 3) for i in range(3)]
    outs = [j.out for s in shards for j in s]
    assert len(outs) == len(set(outs)) == len(jobs) == 8 and set(outs) == {j.out for j in jobs}
    assert [len(s) for s in shards] == [3, 3, 2]
    assert shard_jobs(list(reversed(jobs)), 1, 3) == shards[1]          # order of discovery is irrelevant
    whole = compute_flows(BENCH, root, data_cfg=preset_data(BENCH), flow_root=tmp_path / "whole")
    assert whole["computed"] == 8
    for i in (2, 1):
        rec = compute_flows(BENCH, root, data_cfg=preset_data(BENCH), flow_root=tmp_path / "sharded", shard=(i, 3))
        assert rec["computed"] == len(shards[i]) and rec["shard"] == [i, 3]
    assert cli_main(["flow", "--benchmark", BENCH, "--data-root", str(root),
                     "--flow-root", str(tmp_path / "sharded"), "--shard", "0/3"]) == 0
    assert "3 flows needed in shard 0/3 (of 8 in all), 0 already" in capsys.readouterr().out
    files = {p.relative_to(tmp_path / "whole"): p.read_bytes() for p in (tmp_path / "whole").rglob("*.npy")}
    sharded = {p.relative_to(tmp_path / "sharded"): p.read_bytes() for p in (tmp_path / "sharded").rglob("*.npy")}
    assert len(files) == 8 and sharded == files
    again = compute_flows(BENCH, root, data_cfg=preset_data(BENCH), flow_root=tmp_path / "sharded", shard=(1, 3))
    assert again["computed"] == 0


@pytest.mark.parametrize("text, message", [("3/3", "expected i/n with 0 <= i < n"),
                                           ("1-3", "expected i/n, e.g. --shard 0/4"),
                                           ("0/0", "expected i/n with 0 <= i < n")])
def test_bad_shards_are_refused(tmp_path, capsys, text, message):
    assert cli_main(["flow", "--benchmark", BENCH, "--data-root", str(tmp_path), "--shard", text]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    with pytest.raises(UdassError, match="0 <= i < n"):
        compute_flows(BENCH, tmp_path, data_cfg=preset_data(BENCH), shard=(0, 0))
