"""ImageNet feature distance (udass.method.feature_distance): DAFormer's label downscaling, the
thing-class mask, zero for identical encoders, the frozen copy."""
from __future__ import annotations

import torch

from udass.benchmarks import CITYSCAPES_19, IGNORE_INDEX, SYNTHIA_SEQ_12
from udass.method.feature_distance import (ImageNetEncoder, downscale_label_ratio,
                                           feature_distance, thing_classes)
from udass.models import build_model


def test_thing_classes_are_daformers_list():
    assert thing_classes(CITYSCAPES_19) == (6, 7, 11, 12, 13, 14, 15, 16, 17, 18)
    assert thing_classes(SYNTHIA_SEQ_12) == (5, 6, 9, 10, 11)  # light, sign, person, rider, car


def test_downscaling_takes_the_majority_and_ignores_mixed_cells():
    lab = torch.tensor([[[13, 13, 0, 0],
                         [13, 0, 0, 0],
                         [13, 13, 5, IGNORE_INDEX],
                         [IGNORE_INDEX, IGNORE_INDEX, 5, IGNORE_INDEX]]])
    out = downscale_label_ratio(lab, 2, 0.75, 19)
    # 3/4 car: kept (not below 0.75); all road; 2/4 car + 2/4 ignore: below 0.75; ignore majority
    assert out.tolist() == [[[13, 0], [IGNORE_INDEX, IGNORE_INDEX]]]
    # a 5 x 5 map in 2 x 2 cells: border cells are judged on their pixels inside the image
    five = torch.full((1, 5, 5), 11)
    assert downscale_label_ratio(five, 2, 0.75, 19).tolist() == [[[11] * 3] * 3]


def test_distance_counts_thing_cells_only():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(2, 8, 2, 3, generator=g)
    imagenet = torch.randn(2, 8, 2, 3, generator=g)
    labels = torch.zeros(2, 64, 96, dtype=torch.long)  # factor 32: one cell per 32 x 32 block
    labels[0, :32, :32] = 13     # car: a thing
    labels[1, 32:, 64:] = 11     # person
    labels[1, :32, 32:64] = 5    # pole: not a thing (DAFormer's list has no pole)
    things = thing_classes(CITYSCAPES_19)
    fd = feature_distance(student, imagenet, labels, things, 19)
    d = (student - imagenet).norm(dim=1)
    assert torch.allclose(fd, (d[0, 0, 0] + d[1, 1, 2]) / 2)
    moved = student.clone()
    moved[:, :, 0, 1] += 5.0  # cells without a thing label
    moved[0, :, 1, 1] += 5.0
    assert torch.allclose(feature_distance(moved, imagenet, labels, things, 19), fd)
    moved[1, :, 1, 2] += 5.0  # a person cell
    assert not torch.allclose(feature_distance(moved, imagenet, labels, things, 19), fd)


def test_no_thing_pixel_gives_zero_with_a_graph():
    student = torch.randn(1, 4, 2, 2, requires_grad=True)
    fd = feature_distance(student, torch.randn(1, 4, 2, 2), torch.zeros(1, 64, 64, dtype=torch.long),
                          (13,), 19)
    assert fd.item() == 0.0 and fd.requires_grad
    fd.backward()
    assert student.grad.abs().sum() == 0


def test_identical_encoders_give_zero_and_the_copy_stays_frozen():
    torch.manual_seed(0)
    net = build_model("vit", 19, "mit_tiny", drop_path=0.0)
    imagenet = ImageNetEncoder(net)
    frames = torch.rand(2, 1, 3, 64, 64)
    labels = torch.full((2, 64, 64), 13)
    net.train()
    out = net(frames, torch.zeros(2, 0, 2, 64, 64))
    fd = feature_distance(out["bottleneck"], imagenet(frames[:, 0]), labels,
                          thing_classes(CITYSCAPES_19), 19)
    assert fd.item() == 0.0
    # one optimiser step on the student moves it away; the copy keeps the ImageNet weights
    before = [p.clone() for p in imagenet.encoder.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    (out["logits"].mean() + out["bottleneck"].pow(2).mean()).backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, imagenet.encoder.parameters()))
    assert all(not p.requires_grad for p in imagenet.encoder.parameters())
    out2 = net(frames, torch.zeros(2, 0, 2, 64, 64))
    assert feature_distance(out2["bottleneck"], imagenet(frames[:, 0]), labels,
                            thing_classes(CITYSCAPES_19), 19).item() > 0
