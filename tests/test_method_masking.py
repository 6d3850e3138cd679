"""MIC masked image consistency (udass.method.masking): the block grid, the mask ratio, the
fill that normalises to zero, and the loss."""
from __future__ import annotations

import torch

from udass.method.losses import weighted_cross_entropy
from udass.method.masking import block_mask, mask_frames, masked_consistency_loss, neutral_fill
from udass.models.temporal import InputNormalize


def test_mask_is_constant_on_the_block_grid():
    m = block_mask(3, (128, 192), 64, 0.7, torch.Generator().manual_seed(0))
    assert m.shape == (3, 1, 128, 192) and set(m.unique().tolist()) <= {0.0, 1.0}
    cells = m.view(3, 1, 2, 64, 3, 64)
    assert torch.equal(cells.amax(dim=(3, 5)), cells.amin(dim=(3, 5)))
    # a size the block does not divide: round(H / b) x round(W / b) cells (MIC)
    odd = block_mask(1, (100, 150), 64, 0.5, torch.Generator().manual_seed(0))
    assert odd.shape == (1, 1, 100, 150)
    assert odd[0, 0].unique(dim=0).shape[0] <= 2 and odd[0, 0].unique(dim=1).shape[1] <= 2


def test_removed_share_is_the_ratio_and_draws_are_per_sample():
    g = torch.Generator().manual_seed(1)
    m = block_mask(8, (64 * 32, 64 * 32), 64, 0.7, g)  # 8 x 1024 blocks
    assert abs(float(1 - m.mean()) - 0.7) < 0.01
    assert not torch.equal(m[0], m[1])
    again = block_mask(8, (64 * 32, 64 * 32), 64, 0.7, torch.Generator().manual_seed(1))
    assert torch.equal(m, again)
    assert block_mask(2, (64, 64), 8, 0.0, g).min() == 1 and block_mask(2, (64, 64), 8, 1.0, g).max() == 0


def test_masked_frames_keep_pixels_and_fill_with_the_normalised_zero():
    g = torch.Generator().manual_seed(2)
    frames = torch.rand(2, 2, 3, 32, 32, generator=g)
    m = block_mask(2, (32, 32), 8, 0.5, g)
    for style in ("imagenet", "caffe"):
        norm = InputNormalize(style)
        fill = neutral_fill(norm)
        out = mask_frames(frames, m, fill)
        keep = m.bool().expand(2, 3, 32, 32)
        for k in range(2):  # every frame of a clip gets its sample's mask
            assert torch.equal(out[:, k][keep], frames[:, k][keep])
            gone = norm(out[:, k]).permute(0, 2, 3, 1)[~m[:, 0].bool()]
            assert torch.allclose(gone, torch.zeros_like(gone), atol=1e-6)
    assert torch.equal(mask_frames(frames, torch.ones(2, 1, 32, 32)), frames)


def test_loss_is_the_weighted_cross_entropy_of_the_pseudo_labels():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 5, 8, 8, generator=g)
    pl = torch.randint(0, 5, (2, 32, 32), generator=g)
    w = torch.full((2, 32, 32), 0.6)
    assert torch.allclose(masked_consistency_loss(logits, pl, w, weight=1.0),
                          weighted_cross_entropy(logits, pl, w))
    assert torch.allclose(masked_consistency_loss(logits, pl, w, weight=0.5),
                          0.5 * weighted_cross_entropy(logits, pl, w))
