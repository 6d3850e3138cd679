"""DACS strong augmentation on tensors (docs/method.md, section 3).

Colour jitter (brightness, contrast, saturation, hue) with probability `jitter_p` and Gaussian
blur with probability `blur_p`, ONE draw per sample applied identically to every frame of the
clip (the colour operations use clip-level statistics, so each is the same pointwise function
on all frames). Fully batched: per-sample factors broadcast, blur is a grouped separable conv.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from udass.data.transforms import on_samples

_GRAY = (0.299, 0.587, 0.114)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=generator.device)


def grayscale(frames: Tensor) -> Tensor:
    """ITU-R 601 luma of [..., 3, H, W] -> [..., 1, H, W]."""
    r, g, b = frames.unbind(-3)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(-3)


def _wrap_unit(x: Tensor) -> Tensor:
    """x mod 1 as x - floor(x), in place (two vectorised kernels, where torch.remainder and
    compare-and-select are hot spots here). For x in [-1, 2) it is x + 1, x or x - 1 computed
    as one IEEE subtraction, the same bits as those sums; a tiny negative x gives 1.0 (x + 1
    rounds up), which _rgb_from_planes maps exactly as it maps 0."""
    return x.sub_(x.floor())


def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """[..., 3, H, W] RGB in [0, 1] -> HSV, hue in [0, 1) (torchvision's convention)."""
    return torch.stack(_hsv_planes(rgb), dim=-3)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """[..., 3, H, W] HSV (hue in [0, 1)) -> RGB in [0, 1]: c_n = V - V S clamp(min(k, 4-k), 0, 1),
    k = (n + 6 H) mod 6, n = 5, 3, 1 for R, G, B."""
    return _rgb_from_planes(*hsv.unbind(-3))


# The two conversions work on separate H, S, V planes, so that the colour jitter does not stack
# and re-split them, and update their temporaries in place: each rewrite keeps every floating
# operation and its operand order (a - b as -b + a, s * f as f * s: exact in IEEE arithmetic),
# so the values are the same bits as the plain expressions, with fewer passes over memory.
def _hsv_planes(rgb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(hue, saturation, value) planes [..., H, W] of RGB [..., 3, H, W].

    Channel max / min are elementwise (torch.maximum), not reductions with indices: the same
    values, several times faster on CPU.

    Gray pixels (max = min) need no mask (a compare-and-select is a scalar loop on the CPU):
    the denominators are clamped to the dtype's smallest normal number `tiny`, so a gray
    pixel's differences, all 0, divide to 0, and hue = (0 - 0) / 6 = 0 and saturation = 0, the
    values of the torchvision formula's gray branch. The clamp changes nothing else where the
    channels are 0 or at least tiny / eps (2^-103 in float32; an image in [0, 1] from 8-bit
    data never comes near), so those pixels get the same bits as the branching formula. Not
    the smallest subnormal: with denormals flushed (`torch.set_flush_denormal(True)`) it
    would read as 0 and gray pixels would give 0 / 0."""
    r, g, b = rgb.unbind(-3)
    maxc = torch.maximum(torch.maximum(r, g), b)
    delta = torch.minimum(torch.minimum(r, g), b).neg_().add_(maxc)  # maxc - minc
    tiny = torch.finfo(rgb.dtype).tiny
    sat = delta / maxc.clamp_min(tiny)
    d = delta.clamp_min(tiny)
    rc, gc, bc = (maxc - r).div_(d), (maxc - g).div_(d), (maxc - b).div_(d)
    hue = torch.where(maxc == r, bc - gc,
                      torch.where(maxc == g, rc.add(2.0).sub_(bc), gc.add_(4.0).sub_(rc)))
    return _wrap_unit(hue.div_(6.0)), sat, maxc  # hue / 6 in [-1/6, 5/6)


def _rgb_from_planes(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """RGB [..., 3, H, W] from hue, saturation, value planes [..., H, W] (see hsv_to_rgb);
    hue in [0, 1]."""
    n = torch.tensor([5.0, 3.0, 1.0], dtype=h.dtype, device=h.device).view(3, 1, 1)
    k = n + 6.0 * h.unsqueeze(-3)  # in [1, 11]: mod 6 subtracts 6 * floor(k / 6), 0 or 6, exactly
    k = k.sub_(k.div(6.0).floor_().mul_(6.0))  # (k < 6 never rounds to k / 6 = 1 in float32)
    f = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return f.mul_(s.unsqueeze(-3)).neg_().add_(1.0).mul_(v.unsqueeze(-3))  # v * (1 - s * f)


def color_jitter(frames: Tensor, brightness: Tensor, contrast: Tensor, saturation: Tensor,
                 hue: Tensor) -> Tensor:
    """torchvision-style colour jitter with per-sample factors, in a fixed order.

    frames: [B, K, 3, H, W] in [0, 1]; brightness, contrast, saturation: [B] factors >= 0
    (1 = unchanged); hue: [B] shift in [-0.5, 0.5] of the hue circle (0 = unchanged).
    Order: brightness, contrast (blend with the clip's mean gray level), saturation (blend with
    the pixel's gray level), hue. Clamped to [0, 1] after each step.
    """
    x, mean = _brightness(frames, brightness)
    return _after_brightness(x, mean, contrast, saturation, hue)


_PER_CLIP = (-1, 1, 1, 1, 1)


def _brightness(frames: Tensor, brightness: Tensor) -> tuple[Tensor, Tensor]:
    """The brightness step of color_jitter and each clip's mean gray level after it:
    (x [B, K, 3, H, W], mean [B, 1, 1, 1, 1])."""
    x = frames.mul(brightness.view(_PER_CLIP)).clamp_(0, 1)
    return x, grayscale(x).mean(dim=(1, 2, 3, 4), keepdim=True)  # one statistic per clip


def _after_brightness(x: Tensor, mean: Tensor, contrast: Tensor, saturation: Tensor,
                      hue: Tensor) -> Tensor:
    """The contrast, saturation and hue steps of color_jitter on its brightness step's output,
    which they overwrite (a temporary: x * c is c * x, bit for bit)."""
    c = contrast.view(_PER_CLIP)
    x = x.mul_(c).add_((1 - c) * mean).clamp_(0, 1)
    s = saturation.view(_PER_CLIP)
    gray = grayscale(x)
    x = x.mul_(s).add_((1 - s) * gray).clamp_(0, 1)
    h, sat, val = _hsv_planes(x)
    h = _wrap_unit(h.add_(hue.view(-1, 1, 1, 1)))  # shift in [-0.5, 0.5]
    return _rgb_from_planes(h, sat, val).clamp_(0, 1)


def dacs_kernel_size(n: int) -> int:
    """DACS Gaussian kernel size for an image side of n pixels: the odd number at or below ceil(0.1 n)."""
    k = math.ceil(0.1 * n)
    return int(math.floor(k - 0.5 + k % 2))


def gaussian_kernels(sigma: Tensor, size: int) -> Tensor:
    """Normalised 1-D Gaussian kernels [B, size] for per-sample sigma [B]."""
    x = torch.arange(size, dtype=sigma.dtype, device=sigma.device) - (size - 1) / 2
    g = torch.exp(-(x.unsqueeze(0) ** 2) / (2 * sigma.unsqueeze(1) ** 2))
    return g / g.sum(dim=1, keepdim=True)


def gaussian_blur(frames: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with a per-sample sigma [B], reflect border (kornia's default).

    frames: [B, K, 3, H, W]. Kernel sizes follow DACS: dacs_kernel_size(H) x dacs_kernel_size(W).
    One grouped conv per direction over all samples, frames and channels.
    """
    b, k, c, h, w = frames.shape
    x = frames.reshape(1, b * k * c, h, w)
    with torch.autocast(device_type=frames.device.type, enabled=False):  # exact, whatever the caller
        x = _separable_blur(x.float(), sigma.float(), b, k * c, h, w)
    return x.to(frames.dtype).view(b, k, c, h, w)


def _separable_blur(x: Tensor, sigma: Tensor, b: int, per_sample: int, h: int, w: int) -> Tensor:
    """x: [1, b * per_sample, h, w] float32; sigma: [b]. Vertical then horizontal grouped conv."""
    n_maps = b * per_sample
    for vertical, n in ((True, h), (False, w)):
        size = dacs_kernel_size(n)
        if size <= 1:
            continue
        ker = gaussian_kernels(sigma, size).repeat_interleave(per_sample, dim=0)
        ker = ker.view(n_maps, 1, size, 1) if vertical else ker.view(n_maps, 1, 1, size)
        pad = (0, 0, size // 2, size // 2) if vertical else (size // 2, size // 2, 0, 0)
        x = F.conv2d(F.pad(x, pad, mode="reflect"), ker, groups=n_maps)
    return x


def strong_augment(frames: Tensor, generator: torch.Generator, jitter: float = 0.2,
                   jitter_p: float = 0.8, blur_p: float = 0.5,
                   blur_sigma: tuple[float, float] = (0.15, 1.15)) -> Tensor:
    """DACS strong augmentation of a batch of clips.

    frames: [B, K, 3, H, W] float in [0, 1]. Per sample (one draw shared by all K frames):
    with probability jitter_p, colour jitter with brightness / contrast / saturation factors
    ~ U[1 - jitter, 1 + jitter] and hue shift ~ U[-jitter, jitter]; then with probability blur_p,
    Gaussian blur with sigma ~ U(blur_sigma). Draw order from `generator` (fixed): jitter on,
    brightness, contrast, saturation, hue, blur on, sigma (B values each). Returns a new
    tensor [B, K, 3, H, W] in [0, 1] of frames' dtype.
    """
    if frames.dim() != 5 or frames.shape[2] != 3:
        raise ValueError(f"strong_augment: expected frames [B, K, 3, H, W], got {tuple(frames.shape)}")
    b = frames.shape[0]
    dev, dtype = frames.device, frames.dtype
    jitter_on = _uniform(b, 0, 1, generator) < jitter_p
    factors = [_uniform(b, max(0.0, 1 - jitter), 1 + jitter, generator) for _ in range(3)]
    hue = _uniform(b, -min(jitter, 0.5), min(jitter, 0.5), generator)
    blur_on = _uniform(b, 0, 1, generator) < blur_p
    sigma = _uniform(b, blur_sigma[0], blur_sigma[1], generator)
    bright, contrast, saturation = (f.to(dev) for f in factors)
    hue, sigma = hue.to(dev), sigma.to(dev)
    x = frames.float()
    if bool(jitter_on.any()):
        # The brightness step and the clip means run on the whole batch, as color_jitter would:
        # a mean's rounding depends on how many clips it runs over (with several threads, the
        # sum of a single clip is split between them), so the drawn subset must not recompute it.
        xb, mean = _brightness(x, bright)
        x = on_samples(jitter_on, x, lambda i: _after_brightness(
            xb[i], mean[i], contrast[i], saturation[i], hue[i]))
    x = on_samples(blur_on, x, lambda i: gaussian_blur(x[i], sigma[i]))
    return x.to(dtype)
