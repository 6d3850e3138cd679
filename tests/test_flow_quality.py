"""Flow quality on the demo-size synthetic-video root (generated once, ~15 s): the stored exact
flow reconstructs frame t from frame t-1 far better than no warp or a wrong flow of the same
drive, and OpenCV DIS recovers it to under a pixel on the textured target domain."""
from __future__ import annotations

import numpy as np
import pytest

from test_synthetic import (as_tensor, read_rgb, smooth_flow_mask, stored_flow,
                            video_frames_with_previous)
from udass.data.flow import estimate_flow_dis, warp, warp_valid_mask
from udass.data.synthetic import ensure_synthetic_root


@pytest.fixture(scope="module")
def demo_pairs() -> dict[str, list]:
    root = ensure_synthetic_root("synthetic-video", size="demo", seed=0)
    pairs: dict[str, list] = {"synthia-seq": [], "cityscapes": []}
    for dataset, frame, prev in video_frames_with_previous(root):
        pairs[dataset].append((read_rgb(frame), read_rgb(prev), stored_flow(root, dataset, frame)))
    return pairs


def _reconstruction_ratio(pairs: list, flows: list[np.ndarray]) -> float:
    """sum |frame t - frame t-1| / sum |frame t - warp(frame t-1, flow)| on moving, smooth,
    in-frame pixels (the mask comes from the exact flow, the same for every flow compared)."""
    err_warp = err_none = 0.0
    for (cur, prev, exact), flow in zip(pairs, flows):
        cur, prev = cur.astype(np.float32), prev.astype(np.float32)
        warped = warp(as_tensor(prev), as_tensor(flow))[0].permute(1, 2, 0).numpy()
        e_warp, e_none = np.abs(warped - cur).mean(-1), np.abs(prev - cur).mean(-1)
        mask = (warp_valid_mask(as_tensor(exact))[0].numpy() & smooth_flow_mask(exact)
                & (np.linalg.norm(exact, axis=-1) >= 1.0) & (e_none >= 12))
        err_warp += float(e_warp[mask].sum())
        err_none += float(e_none[mask].sum())
    return err_none / err_warp


@pytest.mark.parametrize("dataset", ["synthia-seq", "cityscapes"])
def test_exact_flow_reconstructs_frame_t_far_better_than_no_warp_or_a_wrong_flow(demo_pairs, dataset):
    pairs = demo_pairs[dataset][::4]
    exact = _reconstruction_ratio(pairs, [p[2] for p in pairs])
    half = _reconstruction_ratio(pairs, [p[2] * 0.5 for p in pairs])  # right direction, half the motion
    assert exact >= 3.5, exact          # measured 5.8 (source) and 4.1 (target)
    assert exact >= 1.5 * half, (exact, half)


def test_dis_recovers_the_exact_flow_on_the_textured_target(demo_pairs):
    """Mean end-point error of DIS (preset medium) against the exact flow, away from motion
    boundaries: under 1 px on the target (measured 0.92 px at 256 x 128; the flat source, where
    flow is barely observable, is about 2 px)."""
    epe = []
    for cur, prev, exact in demo_pairs["cityscapes"][::3]:
        est = estimate_flow_dis(cur, prev, "medium")
        mask = smooth_flow_mask(exact)
        epe.append(float(np.linalg.norm(est - exact, axis=-1)[mask].mean()))
    assert float(np.mean(epe)) < 1.0, np.mean(epe)
