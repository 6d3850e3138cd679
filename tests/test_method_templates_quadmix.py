"""Class-aware templates and the four QuadMix paths (docs/method.md, sections 4 and 5)."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from udass.errors import UdassError
from udass.method.quadmix import MixedClip, classmix, loss_samples, paste, paste_template, quadmix
from udass.method.teacher import PseudoLabels
from udass.method.templates import (Template, choose_classes, class_mask, present_classes,
                                    source_template, target_template)

PATHS = ("ss", "tt", "tss", "stt")


# ------------------------------------------------------------------------------------- classes
def labels_with(classes_per_sample, h=6, w=7, extra_ignore=True):
    out = torch.full((len(classes_per_sample), h, w), 255, dtype=torch.long)
    for i, cls in enumerate(classes_per_sample):
        flat = out[i].view(-1)
        for j, c in enumerate(cls):
            flat[j * 3:(j + 1) * 3] = c
    return out


def test_choose_classes_is_half_of_present_per_sample_never_ignore(gen):
    sets = [[0, 1, 2, 3], [4, 5, 6], [7], [], [8, 9, 10, 11, 12]]
    labels = labels_with(sets)
    for _ in range(20):
        chosen = choose_classes(labels, 19, gen)
        assert chosen.shape == (5, 19) and chosen.dtype == torch.bool
        for i, cls in enumerate(sets):
            picked = set(torch.nonzero(chosen[i]).flatten().tolist())
            assert picked <= set(cls)
            assert len(picked) == math.ceil(len(cls) / 2)


def test_choose_classes_is_random_per_sample_and_reproducible():
    labels = labels_with([[0, 1, 2, 3], [0, 1, 2, 3]])
    draws = [choose_classes(labels, 5, torch.Generator().manual_seed(s)) for s in range(40)]
    counts = torch.stack(draws).sum(0)  # [2, 5]
    assert (counts[:, :4] > 0).all() and (counts[:, 4] == 0).all()
    assert any(not torch.equal(d[0], d[1]) for d in draws)  # the samples draw independently
    a = choose_classes(labels, 5, torch.Generator().manual_seed(3))
    assert torch.equal(a, choose_classes(labels, 5, torch.Generator().manual_seed(3)))


def test_choose_classes_respects_exclude_and_long_tail(gen):
    labels = labels_with([[0, 1, 2, 3, 4, 5], [1, 2, 6]])
    exclude = torch.zeros(2, 8, dtype=torch.bool)
    exclude[0, [0, 1]] = True
    exclude[1, 6] = True
    for _ in range(20):
        chosen = choose_classes(labels, 8, gen, exclude=exclude)
        assert not (chosen & exclude).any()
        assert chosen[0].sum() == 2 and chosen[1].sum() == 1
        lt = choose_classes(labels, 8, gen, long_tail=(3, 6, 7))
        assert lt[0, 3] and lt[1, 6] and not lt[:, 7].any()
        assert lt[0].sum() in (3, 4) and lt[1].sum() in (2, 3)
        both = choose_classes(labels, 8, gen, long_tail=(6,), exclude=exclude)
        assert not both[1, 6]  # an excluded class is never chosen, even a long-tail one


def test_present_classes_ignores_255_and_out_of_range():
    labels = torch.tensor([[[0, 255], [3, 9]]])
    assert present_classes(labels, 4).tolist() == [[True, False, False, True]]
    # negative ids, the first id past the classes and the largest int64 are no class either
    odd = torch.tensor([[[-1, 4], [2 ** 63 - 1, -(2 ** 63)]], [[1, -5], [4, 255]]])
    assert present_classes(odd, 4).tolist() == [[False] * 4, [False, True, False, False]]
    assert class_mask(odd, torch.ones(2, 4, dtype=torch.bool)).tolist() == [
        [[False, False], [False, False]], [[True, False], [False, False]]]


def test_class_mask_matches_a_loop_reference(gen):
    labels = torch.randint(0, 6, (3, 2, 5, 4), generator=gen)
    labels[labels == 5] = 255
    classes = torch.rand(3, 5, generator=gen) > 0.5
    mask = class_mask(labels, classes)
    ref = torch.zeros_like(mask)
    for b, k, y, x in itertools.product(*(range(s) for s in labels.shape)):
        v = int(labels[b, k, y, x])
        ref[b, k, y, x] = v != 255 and bool(classes[b, v])
    assert torch.equal(mask, ref)


# ------------------------------------------------------------------------------------- templates
def test_source_and_target_templates(gen):
    b, h, w = 2, 4, 5
    labels = torch.randint(0, 4, (b, 2, h, w), generator=gen)
    classes = torch.tensor([[True, False, True, False], [False, True, False, False]])
    src = source_template(torch.rand(b, 2, 3, h, w), torch.rand(b, 1, 2, h, w), labels, classes)
    assert torch.equal(src.mask, class_mask(labels, classes)) and (src.weights == 1).all()
    conf = torch.rand(b, 2, h, w, generator=gen)
    pseudo = PseudoLabels(labels, conf, torch.full((b, 2, h, w), 0.7), torch.ones(b, h, w, dtype=torch.bool))
    frames3 = torch.rand(b, 3, 3, h, w)
    tgt = target_template(frames3, torch.rand(b, 2, 2, h, w), pseudo, classes, confidence_threshold=0.5)
    assert tgt.frames.shape == (b, 2, 3, h, w) and tgt.flows.shape == (b, 1, 2, h, w)
    assert torch.equal(tgt.frames, frames3[:, :2])
    assert torch.equal(tgt.mask, class_mask(labels, classes) & (conf >= 0.5))
    assert torch.equal(tgt.weights, pseudo.weights)
    state = tgt.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    back = Template.from_state_dict(state)
    assert torch.equal(back.mask, tgt.mask) and torch.equal(back.to("cpu").detach().frames, tgt.frames)
    with pytest.raises(ValueError):
        Template(tgt.frames, tgt.flows, tgt.labels[:, :1], tgt.weights, tgt.mask, tgt.classes)


# ------------------------------------------------------------------------------------- paste
def test_paste_empty_mask_is_identity_and_full_mask_swaps():
    a, b = torch.rand(2, 2, 3, 4, 5), torch.rand(2, 2, 3, 4, 5)
    la, lb = torch.randint(0, 5, (2, 2, 4, 5)), torch.randint(0, 5, (2, 2, 4, 5))
    none = torch.zeros(2, 2, 4, 5, dtype=torch.bool)
    assert torch.equal(paste(none, a, b), b) and torch.equal(paste(~none, a, b), a)
    out = paste(none, la, lb)
    assert out.dtype == torch.int64 and torch.equal(out, lb)
    fa, fb = torch.rand(2, 1, 2, 4, 5), torch.rand(2, 1, 2, 4, 5)
    assert torch.equal(paste(~none, fa, fb), fa) and torch.equal(paste(none, fa, fb), fb)


def test_paste_moves_each_frame_with_its_own_mask_and_flow_with_frame_t():
    h, w = 3, 4
    mask = torch.zeros(1, 2, h, w, dtype=torch.bool)
    mask[0, 0, 0] = True   # frame t: top row
    mask[0, 1, :, 0] = True  # frame t-1: left column
    fa, fb = torch.ones(1, 2, 3, h, w), torch.zeros(1, 2, 3, h, w)
    out = paste(mask, fa, fb)
    assert torch.equal(out[0, 0, 0], mask[0, 0].float()) and torch.equal(out[0, 1, 2], mask[0, 1].float())
    flow = paste(mask, torch.ones(1, 1, 2, h, w), torch.zeros(1, 1, 2, h, w))
    assert torch.equal(flow[0, 0, 1], mask[0, 0].float())


# ------------------------------------------------------------------------------------- provenance
CODES = {"S": 1, "T": 2, "S'": 3, "T'": 4}


def coded_clip(code: int, b: int, k: int, h: int, w: int) -> MixedClip:
    """A clip whose every tensor says where it came from: frames code*10 + frame index."""
    frames = (code * 10 + torch.arange(k).float()).view(1, k, 1, 1, 1).expand(b, k, 3, h, w).clone()
    flows = torch.full((b, k - 1, 2, h, w), float(code * 100))
    return MixedClip(frames, flows, torch.full((b, k, h, w), code, dtype=torch.long),
                     torch.full((b, k, h, w), code / 10))


def coded_template(code: int, mask: torch.Tensor) -> Template:
    b, k, h, w = mask.shape
    c = coded_clip(code, b, k, h, w)
    return Template(c.frames, c.flows, c.labels, c.weights, mask, torch.zeros(b, 3, dtype=torch.bool))


def reference_provenance(path: str, on: set[str], ms: bool, mt: bool) -> str:
    """Which clip a pixel of a path's sample comes from, by the definitions of docs/method.md, section 5."""
    if path == "ss":
        return "S'" if ms else "S"
    if path == "tt":
        return "T'" if mt else "T"
    if path == "tss":
        if mt:
            return "T'"
        return reference_provenance("ss", on, ms, mt) if "ss" in on else "S"
    if mt and not ms:  # stt
        return reference_provenance("tt", on, ms, mt) if "tt" in on else "T"
    return "S'" if ms else "T"


@pytest.mark.parametrize("k", [1, 2])
def test_every_path_contains_exactly_its_template_pixels_for_all_switch_sets(gen, k):
    b, h, w = 2, 5, 6
    ms = torch.rand(b, k, h, w, generator=gen) > 0.5
    mt = torch.rand(b, k, h, w, generator=gen) > 0.5
    s, t = coded_clip(CODES["S"], b, k, h, w), coded_clip(CODES["T"], b, k, h, w)
    s_tpl, t_tpl = coded_template(CODES["S'"], ms), coded_template(CODES["T'"], mt)
    for r in range(5):
        for paths in itertools.combinations(PATHS, r):
            out = quadmix(s, t, s_tpl, t_tpl, paths)
            assert list(out) == [p for p in PATHS if p in paths]
            for name, clip in out.items():
                for bi, ki, y, x in itertools.product(range(b), range(k), range(h), range(w)):
                    src = reference_provenance(name, set(paths), bool(ms[bi, ki, y, x]),
                                               bool(mt[bi, ki, y, x]))
                    code = CODES[src]
                    assert clip.labels[bi, ki, y, x] == code, (paths, name)
                    assert clip.weights[bi, ki, y, x] == pytest.approx(code / 10)
                    assert (clip.frames[bi, ki, :, y, x] == code * 10 + ki).all()
                    if ki < k - 1:
                        assert (clip.flows[bi, ki, :, y, x] == code * 100).all()


def test_quadmix_rejects_unknown_paths_and_mismatched_batches():
    s = coded_clip(1, 2, 2, 3, 3)
    tpl = coded_template(3, torch.zeros(2, 2, 3, 3, dtype=torch.bool))
    with pytest.raises(UdassError):
        quadmix(s, s, tpl, tpl, ("ss", "st"))
    with pytest.raises(ValueError):
        paste_template(tpl, coded_clip(1, 3, 2, 3, 3))


def test_loss_samples_for_every_switch_set():
    expected = {
        (): [], ("ss",): ["ss"], ("tt",): ["tt"], ("tss",): ["tss"], ("stt",): ["stt"],
        ("ss", "tt"): ["ss", "tt"], ("ss", "tss"): ["tss"], ("ss", "stt"): ["ss", "stt"],
        ("tt", "tss"): ["tt", "tss"], ("tt", "stt"): ["stt"], ("tss", "stt"): ["tss", "stt"],
        ("ss", "tt", "tss"): ["tt", "tss"], ("ss", "tt", "stt"): ["ss", "stt"],
        ("ss", "tss", "stt"): ["tss", "stt"], ("tt", "tss", "stt"): ["tss", "stt"],
        ("ss", "tt", "tss", "stt"): ["tss", "stt"],
    }
    assert len(expected) == 16
    for paths, samples in expected.items():
        assert loss_samples(paths) == samples, paths
        assert loss_samples(tuple(reversed(paths))) == samples


def test_classmix_pastes_the_current_source_classes_on_the_target(gen):
    b, k, h, w = 2, 2, 4, 5
    src = coded_clip(1, b, k, h, w)
    src.labels = torch.randint(0, 4, (b, k, h, w), generator=gen)
    tgt = coded_clip(2, b, k, h, w)
    classes = torch.tensor([[True, True, False, False], [False, False, False, True]])
    mixed = classmix(src, tgt, classes)
    m = class_mask(src.labels, classes)
    assert torch.equal(mixed.labels, torch.where(m, src.labels, tgt.labels))
    assert torch.equal(mixed.weights, torch.where(m, src.weights, tgt.weights))
    assert torch.equal(mixed.frames, torch.where(m.unsqueeze(2), src.frames, tgt.frames))
    assert torch.equal(mixed.flows[:, 0], torch.where(m[:, :1], src.flows[:, 0], tgt.flows[:, 0]))


def test_mixed_clip_constructors():
    b, h, w = 2, 3, 4
    s = MixedClip.from_source(torch.rand(b, 2, 3, h, w), torch.rand(b, 1, 2, h, w),
                              torch.zeros(b, 2, h, w, dtype=torch.long))
    assert (s.weights == 1).all() and s.weights.dtype == torch.float32
    pseudo = PseudoLabels(torch.ones(b, 2, h, w, dtype=torch.long), torch.ones(b, 2, h, w),
                          torch.full((b, 2, h, w), 0.3), torch.ones(b, h, w, dtype=torch.bool))
    t = MixedClip.from_target(torch.rand(b, 3, 3, h, w), torch.rand(b, 2, 2, h, w), pseudo)
    assert t.num_frames == 2 and t.flows.shape == (b, 1, 2, h, w)
    assert torch.equal(t.weights, pseudo.weights)
