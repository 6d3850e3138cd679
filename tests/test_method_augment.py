"""DACS strong augmentation on clip tensors (docs/method.md, section 3)."""
from __future__ import annotations

import torch

from udass.method.augment import (color_jitter, dacs_kernel_size, gaussian_blur, hsv_to_rgb,
                                  rgb_to_hsv, strong_augment)


def smooth_clip(b: int, h: int = 32, w: int = 40) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([0.5 + 0.4 * torch.sin(7 * xs), 0.5 + 0.4 * torch.cos(5 * ys), xs * ys])
    f0 = img.unsqueeze(0).repeat(b, 1, 1, 1)
    return torch.stack([f0, f0.flip(-1)], dim=1)  # frame t-1 = frame t mirrored


def test_same_draw_on_every_frame_of_a_clip():
    clip = smooth_clip(3)
    for jp, bp in ((1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.8, 0.5)):
        out = strong_augment(clip, torch.Generator().manual_seed(1), jitter_p=jp, blur_p=bp)
        # pointwise colour ops with clip statistics and a symmetric blur commute with the mirror
        assert torch.allclose(out[:, 1], out[:, 0].flip(-1), atol=1e-5)
    same = strong_augment(clip[:, :1].repeat(1, 2, 1, 1, 1), torch.Generator().manual_seed(2),
                          jitter_p=1.0, blur_p=1.0)
    assert torch.equal(same[:, 0], same[:, 1])


def test_draws_differ_across_samples_and_are_reproducible():
    clip = smooth_clip(1).repeat(4, 1, 1, 1, 1)
    out = strong_augment(clip, torch.Generator().manual_seed(0), jitter_p=1.0, blur_p=1.0)
    assert all(not torch.allclose(out[0], out[i]) for i in range(1, 4))
    again = strong_augment(clip, torch.Generator().manual_seed(0), jitter_p=1.0, blur_p=1.0)
    assert torch.equal(out, again)
    assert out.min() >= 0 and out.max() <= 1 and out.shape == clip.shape and out.dtype == clip.dtype


def test_probability_zero_is_identity_and_image_clips_work():
    clip = smooth_clip(2)
    assert torch.equal(strong_augment(clip, torch.Generator().manual_seed(0), jitter_p=0, blur_p=0), clip)
    one = strong_augment(clip[:, :1], torch.Generator().manual_seed(0))
    assert one.shape == (2, 1, 3, 32, 40)


def test_color_jitter_neutral_factors_are_identity_and_hsv_round_trips():
    x = torch.rand(2, 2, 3, 6, 7)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    ones, zeros = torch.ones(2), torch.zeros(2)
    assert torch.allclose(color_jitter(x, ones, ones, ones, zeros), x, atol=1e-5)
    gray = color_jitter(x, ones, ones, zeros, zeros)
    assert torch.allclose(gray[:, :, 0], gray[:, :, 1], atol=1e-5)  # saturation 0: gray
    # a hue shift of 1/3 turns pure red into pure green
    red = torch.zeros(1, 1, 3, 1, 1)
    red[:, :, 0] = 1
    green = color_jitter(red, torch.ones(1), torch.ones(1), torch.ones(1), torch.full((1,), 1 / 3))
    assert torch.allclose(green.flatten(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-5)


def test_blur_kernel_rule_and_constant_images():
    assert [dacs_kernel_size(n) for n in (8, 32, 64, 512, 1024)] == [1, 3, 7, 51, 103]
    const = torch.full((2, 2, 3, 20, 30), 0.3)
    assert torch.allclose(gaussian_blur(const, torch.tensor([0.2, 1.1])), const, atol=1e-6)
    x = torch.zeros(1, 1, 3, 21, 21)
    x[..., 10, 10] = 1.0
    small, large = gaussian_blur(x, torch.tensor([0.3])), gaussian_blur(x, torch.tensor([1.1]))
    assert large[..., 10, 10].max() < small[..., 10, 10].min()
    assert torch.allclose(large.sum(dim=(-2, -1)), torch.ones(1, 1, 3), atol=1e-5)


def test_hue_wrap_matches_the_remainder_formula_at_the_extremes():
    """The hue wraps are conditional adds, not torch.remainder: the same bits, hue shifts of
    +-0.5 included (the ends of the documented range), flat (gray) pixels too."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 2, 3, 16, 24, generator=g)
    x[:, :, :, :4, :4] = 0.5  # flat pixels: hue 0
    hsv = rgb_to_hsv(x)
    assert float(hsv[:, :, 0].min()) >= 0 and float(hsv[:, :, 0].max()) < 1
    ones = torch.ones(4)
    for shift in (0.5, -0.5, 0.3, -0.3):
        hue = torch.full((4,), shift)
        h = torch.remainder(hsv[:, :, :1] + shift, 1.0)
        expected = hsv_to_rgb(torch.cat([h, hsv[:, :, 1:]], dim=2)).clamp(0, 1)
        assert torch.equal(color_jitter(x, ones, ones, ones, hue), expected)


def test_gray_and_black_pixels_and_the_wrapped_hue_end():
    """Gray (max = min) and black pixels take the formula's gray branch without a mask: hue 0,
    saturation 0, exactly; a hue of 1.0 (a tiny negative hue + 1 rounds to it) converts back
    exactly as hue 0 does."""
    x = torch.rand(1, 1, 3, 4, 5, generator=torch.Generator().manual_seed(3))
    x[..., 0, :] = 0.25  # gray
    x[..., 1, :] = 0.0  # black
    hsv = rgb_to_hsv(x)
    for row, value in ((0, 0.25), (1, 0.0)):
        assert torch.equal(hsv[:, :, 0, row], torch.zeros(1, 1, 5))
        assert torch.equal(hsv[:, :, 1, row], torch.zeros(1, 1, 5))
        assert torch.equal(hsv[:, :, 2, row], torch.full((1, 1, 5), value))
    assert not torch.isnan(hsv).any()
    at_one = torch.cat([torch.ones_like(hsv[:, :, :1]), hsv[:, :, 1:]], dim=2)
    at_zero = torch.cat([torch.zeros_like(hsv[:, :, :1]), hsv[:, :, 1:]], dim=2)
    assert torch.equal(hsv_to_rgb(at_one), hsv_to_rgb(at_zero))
    # a shift that lands a hue a hair below 0 gives the colour of hue 0
    red = torch.tensor([1.0, 0.2, 0.2]).view(1, 1, 3, 1, 1)  # hue exactly 0
    ones = torch.ones(1)
    tiny = color_jitter(red, ones, ones, ones, torch.full((1,), -1e-9))
    assert torch.equal(tiny, color_jitter(red, ones, ones, ones, torch.zeros(1)))


def test_gray_pixels_stay_finite_in_half_precision_and_with_denormals_flushed():
    """The gray branch is a clamped denominator: it must not become 0 / 0 in float16 or when
    denormals are flushed to zero (the smallest subnormal would read as 0 there)."""
    x = torch.full((1, 1, 3, 2, 2), 0.5)
    x[..., 0, 0] = 0.0
    x[..., 1, 1] = torch.tensor([0.9, 0.2, 0.4])
    ref = rgb_to_hsv(x)
    assert torch.allclose(rgb_to_hsv(x.half()).float(), ref, atol=1e-3)
    flushed = torch.set_flush_denormal(True)
    try:
        assert torch.equal(rgb_to_hsv(x), ref) or not flushed
        ones = torch.ones(1)
        out = color_jitter(x, ones, ones, ones, torch.full((1,), 0.1))
        assert not torch.isnan(out).any()
    finally:
        torch.set_flush_denormal(False)
    assert not torch.isnan(ref).any() and float(ref[0, 0, 0, 0, 0]) == 0.0
