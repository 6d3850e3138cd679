"""Flow warping and flow-aware transforms: invariants on constructed tensors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from udass.data.clip import Clip, ClipBatch, collate_clips, pair_view
from udass.data.flow import (flow_cache_path, read_flo, read_flow, resize_flow, warp,
                             warp_valid_mask, write_flo, write_flow)
from udass.data.transforms import (hflip, on_samples, photometric_jitter, random_crop, random_hflip,
                                  resize_clip, sample_index)
from udass.errors import UdassError


def smooth_image(b: int, h: int, w: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([torch.sin(6 * xs + 2 * ys), torch.cos(5 * ys - 3 * xs), xs * ys])
    return (base.unsqueeze(0).repeat(b, 1, 1, 1) + 1) / 2


def test_warp_by_zero_flow_is_identity():
    x = torch.rand(2, 3, 17, 23)
    assert torch.allclose(warp(x, torch.zeros(2, 2, 17, 23)), x, atol=1e-5)


def test_warp_by_integer_shift_moves_content():
    x = torch.rand(1, 1, 10, 12)
    flow = torch.zeros(1, 2, 10, 12)
    flow[:, 0] = 2.0  # out(p) = x(p + (2, 0))
    out = warp(x, flow)
    assert torch.allclose(out[..., :, :-2], x[..., :, 2:], atol=1e-5)
    # border padding: samples beyond the edge repeat the last column
    assert torch.allclose(out[..., :, -1], x[..., :, -1], atol=1e-5)
    valid = warp_valid_mask(flow)
    assert valid[0, :, :-2].all() and not valid[0, :, -2:].any()


def test_resize_then_warp_agrees_with_warp_then_resize_away_from_borders():
    h, w = 64, 96
    x = smooth_image(1, h, w)
    flow = torch.zeros(1, 2, h, w)
    flow[:, 0], flow[:, 1] = 3.0, -2.0  # a smooth translation
    warped_then_resized = torch.nn.functional.interpolate(warp(x, flow), size=(32, 48),
                                                          mode="bilinear", align_corners=False)
    small = torch.nn.functional.interpolate(x, size=(32, 48), mode="bilinear", align_corners=False)
    resized_then_warped = warp(small, resize_flow(flow, (32, 48)))
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    assert (warped_then_resized[inner] - resized_then_warped[inner]).abs().max() < 0.02
    # the resized flow carries scaled vectors
    assert torch.allclose(resize_flow(flow, (32, 48))[:, 0], torch.full((1, 32, 48), 1.5))


def test_hflip_twice_is_identity_and_negates_flow_x():
    frames, flows = torch.rand(2, 2, 3, 8, 10), torch.randn(2, 1, 2, 8, 10)
    labels = torch.randint(0, 5, (2, 2, 8, 10))
    f1, fl1, l1 = hflip(frames, flows, labels)
    assert torch.equal(fl1[:, :, 0], -flows[:, :, 0].flip(-1))
    assert torch.equal(fl1[:, :, 1], flows[:, :, 1].flip(-1))
    f2, fl2, l2 = hflip(f1, fl1, l1)
    assert torch.equal(f2, frames) and torch.equal(fl2, flows) and torch.equal(l2, labels)


def test_hflip_keeps_flow_consistent_with_frames():
    """A frame pair related by a flow stays related by the flipped flow after flipping."""
    h, w = 32, 48
    prev = smooth_image(1, h, w)
    flow = torch.zeros(1, 2, h, w)
    flow[:, 0] = 2.0
    cur = warp(prev, flow)
    f, fl, _ = hflip(torch.stack([cur, prev], 1), flow.unsqueeze(1))
    rec = warp(f[:, 1], fl[:, 0])
    assert (rec - f[:, 0])[..., 4:-4].abs().max() < 1e-4


def test_random_crop_and_flip_move_flow_with_frames(gen):
    b = ClipBatch(torch.rand(3, 2, 3, 16, 20), torch.randn(3, 1, 2, 16, 20),
                  torch.randint(0, 4, (3, 2, 16, 20)), "source", ["a", "b", "c"])
    c = random_crop(b, (8, 12), gen)
    assert c.frames.shape == (3, 2, 3, 8, 12) and c.flows.shape == (3, 1, 2, 8, 12)
    assert c.labels.shape == (3, 2, 8, 12)
    # each crop is a window of the original at the same offset for frames, flow and labels
    for i in range(3):
        windows = b.frames[i, 0].unfold(1, 8, 1).unfold(2, 12, 1)  # [3, 9, 9, 8, 12]
        hit = (windows - c.frames[i, 0][:, None, None]).abs().sum(dim=(0, 3, 4)) == 0
        y, x = map(int, hit.nonzero()[0])
        assert torch.equal(c.flows[i], b.flows[i, ..., y:y + 8, x:x + 12])
        assert torch.equal(c.labels[i], b.labels[i, ..., y:y + 8, x:x + 12])
    f = random_hflip(b, 1.0, gen)
    assert torch.equal(f.flows[:, :, 0], -b.flows[:, :, 0].flip(-1))
    assert random_hflip(b, 0.0, gen) is b


@pytest.mark.parametrize("with_labels", [True, False])
def test_random_hflip_flips_exactly_the_drawn_samples(with_labels):
    """Against the reference: flip every sample, then select by the same draws (the batch's
    own values, -0.0 included, so equality is bitwise)."""
    b = ClipBatch(torch.rand(5, 2, 3, 6, 10), torch.randn(5, 1, 2, 6, 10),
                  torch.randint(0, 4, (5, 2, 6, 10)) if with_labels else None, "target", list("abcde"))
    b.flows[0, 0, 0, 0, 0] = -0.0
    seen = set()
    for seed in range(12):
        do = torch.rand(5, generator=torch.Generator().manual_seed(seed)) < 0.5
        seen.add(int(do.sum()))
        out = random_hflip(b, 0.5, torch.Generator().manual_seed(seed))
        ff, fl, lb = hflip(b.frames, b.flows, b.labels)
        sel = lambda a, f: torch.where(do.view(-1, *([1] * (a.dim() - 1))), f, a)  # noqa: E731
        assert torch.equal(out.frames, sel(b.frames, ff))
        assert torch.equal(out.flows, sel(b.flows, fl))
        assert torch.equal(out.flows.signbit(), sel(b.flows, fl).signbit())
        assert (out.labels is None) if not with_labels else torch.equal(out.labels, sel(b.labels, lb))
    assert len(seen - {0, 5}) >= 2  # mixed draws were exercised, not only all / none


def test_sample_index_and_on_samples():
    """A contiguous run of drawn samples is a slice (views, no gather), a gapped one an index
    tensor; either way on_samples changes exactly the drawn samples, and with all drawn it
    returns fn's result itself (no copy)."""
    on = lambda *v: torch.tensor(v, dtype=torch.bool)  # noqa: E731
    assert sample_index(on(0, 1, 1, 0)) == slice(1, 3)
    assert sample_index(on(1, 0, 0, 0)) == slice(0, 1)
    assert torch.equal(sample_index(on(1, 0, 1, 1)), torch.tensor([0, 2, 3]))
    x = torch.arange(4.0).view(4, 1).repeat(1, 3)
    seen = []

    def double(i):
        seen.append(i)
        return x[i] * 2

    for mask in (on(0, 1, 1, 0), on(1, 0, 1, 1)):
        out = on_samples(mask, x, double)
        assert torch.equal(out, torch.where(mask.view(4, 1), x * 2, x))
    assert isinstance(seen[0], slice) and isinstance(seen[1], torch.Tensor)
    assert on_samples(on(0, 0, 0, 0), x, double) is x
    everything = x * 2
    assert on_samples(on(1, 1, 1, 1), x, lambda i: everything) is everything
    assert torch.equal(x[:, 0], torch.arange(4.0))  # the input is left alone


def test_resize_clip_scales_flow_vectors_and_keeps_label_ids():
    frames = torch.rand(2, 3, 40, 80)
    flows = torch.full((1, 2, 40, 80), 4.0)
    labels = torch.randint(0, 3, (2, 40, 80))
    f, fl, lb = resize_clip(frames, flows, labels, (20, 40))
    assert f.shape == (2, 3, 20, 40) and fl.shape == (1, 2, 20, 40) and lb.shape == (2, 20, 40)
    assert torch.allclose(fl, torch.full_like(fl, 2.0))
    assert set(lb.unique().tolist()) <= {0, 1, 2}
    # a one-frame clip has an empty flow tensor and stays consistent
    f1, fl1, _ = resize_clip(frames[:1], flows[:0], None, (20, 40))
    assert fl1.shape == (0, 2, 20, 40)


def test_photometric_jitter_same_draw_for_all_frames(gen):
    frames = torch.rand(4, 1, 3, 8, 8).repeat(1, 2, 1, 1, 1)
    out = photometric_jitter(frames, gen, p=1.0)
    assert torch.allclose(out[:, 0], out[:, 1])
    assert not torch.allclose(out, frames)
    assert out.min() >= 0 and out.max() <= 1


def test_clip_contract_and_collate():
    clip = Clip(torch.rand(2, 3, 8, 16), torch.zeros(1, 2, 8, 16), torch.zeros(2, 8, 16, dtype=torch.long),
                "source", "000001")
    batch = collate_clips([clip, clip])
    assert batch.frames.shape == (2, 2, 3, 8, 16) and batch.flows.shape == (2, 1, 2, 8, 16)
    with pytest.raises(ValueError, match="flows"):
        Clip(torch.rand(2, 3, 8, 16), torch.zeros(1, 2, 4, 16), None, "source", "x")
    image = Clip(torch.rand(1, 3, 8, 16), torch.zeros(0, 2, 8, 16), None, "target", "img")
    b = collate_clips([image])
    cur, prev, flow, static = pair_view(b.frames, b.flows)
    assert static and prev is cur and torch.count_nonzero(flow) == 0


def test_flow_file_roundtrip_and_rescale(tmp_path):
    flow = np.random.default_rng(0).normal(0, 5, (20, 40, 2)).astype(np.float32)
    p = flow_cache_path(tmp_path, "cityscapes", "leftImg8bit_sequence/train/aachen/a_000000_000019_leftImg8bit.png")
    assert p.name == "a_000000_000019_leftImg8bit_int16_x10.npy"
    write_flow(p, flow)
    back = read_flow(p)
    assert np.abs(back - flow).max() <= 0.05 + 1e-6
    # the authors' reduced scale: a half-size file is resized and its vectors doubled
    write_flow(tmp_path / "half.npy", flow[::2, ::2] / 2)
    up = read_flow(tmp_path / "half.npy", size=(20, 40))
    assert up.shape == (20, 40, 2) and abs(float(up.mean()) - float(flow[::2, ::2].mean())) < 0.1
    write_flo(tmp_path / "f.flo", flow)
    assert np.array_equal(read_flo(tmp_path / "f.flo"), flow)
    with pytest.raises(UdassError, match="missing flow file"):
        read_flow(tmp_path / "nope.npy")
    np.save(tmp_path / "bad.npy", np.zeros((20, 40, 3), np.int16))
    with pytest.raises(UdassError, match="expected H x W x 2"):
        read_flow(tmp_path / "bad.npy")


def _skimage_match(source: np.ndarray, template: np.ndarray) -> np.ndarray:
    """skimage.exposure.match_histograms on one channel (its _match_cumulative_cdf): unique
    values, cumulative shares, np.interp."""
    _, src_idx, src_counts = np.unique(source.ravel(), return_inverse=True, return_counts=True)
    tmpl_values, tmpl_counts = np.unique(template.ravel(), return_counts=True)
    src_q = np.cumsum(src_counts) / source.size
    tmpl_q = np.cumsum(tmpl_counts) / template.size
    return np.interp(src_q, tmpl_q, tmpl_values)[src_idx].reshape(source.shape)


def test_match_histograms_is_skimages_mapping_from_frame_t_applied_to_the_whole_clip():
    from udass.data.transforms import match_histograms

    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 40, (3, 2, 3, 9, 11), generator=g).float() / 40  # ties, 8-bit-like
    reference = torch.rand(3, 3, 7, 5, generator=g) ** 2
    reference[0, 0, :3] = 0.5                                                 # repeated values
    out = match_histograms(frames, reference)
    assert out.shape == frames.shape and out.dtype == frames.dtype
    for b in range(3):
        for c in range(3):
            src, ref = frames[b, :, c].double().numpy(), reference[b, c].double().numpy()
            expected_t = _skimage_match(src[0], ref).astype(np.float32)
            assert np.array_equal(out[b, 0, c].numpy(), expected_t)
            # frame t-1 goes through frame t's mapping: equal values map to equal values
            for v in np.intersect1d(src[0], src[1])[:5]:
                assert np.unique(out[b, 1, c].numpy()[src[1] == v]) == np.unique(expected_t[src[0] == v])
            # the matched frame t has the reference's value range
            assert out[b, 0, c].min() >= reference[b, c].min() and out[b, 0, c].max() <= reference[b, c].max()
    # a clip matched to itself is unchanged
    same = match_histograms(frames[:, :1], frames[:, 0])
    assert torch.allclose(same, frames[:, :1], atol=1e-6)
    with pytest.raises(ValueError, match="same B and C"):
        match_histograms(frames, reference[:2])
