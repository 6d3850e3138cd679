"""Mixing and aggregation kernels against straightforward loop implementations (same outputs).

    python benchmarks/bench_kernels.py [--repeats 7] [--threads 1] [--out results/benchmarks/kernels.json]
                                       [--quick]

At the paper's crop (1024 x 512), batch B = 2, clips of K = 2 frames, C = 19 classes, labels made
of blocks (segments, not salt-and-pepper noise):

- quadmix: the four paths (ss, tt, tss, stt) as the trainer builds them: the templates' class
  masks (`source_template`, `target_template`: class set and, for the target, confidence >= 0.9)
  then `udass.method.quadmix.quadmix` over frames, flows, labels and weights; against a per-sample,
  per-frame, per-class loop (mask |= label == c for each chosen class, then boolean-index
  assignment sample by sample). Both outputs are compared for exact equality.
- class_mask: `udass.method.templates.class_mask` of [B, K, H, W] labels against the same loop.
- class_prototypes: `udass.method.aggregation.class_prototypes` of [B, 256, 128, 256] decoder
  features (1/4 of the crop, DAFormer's embedding) against a per-class loop (mean of the
  features where label == c, classes with >= 5 pixels); compared to float rounding (max |diff|).
- strong_augment: `udass.method.augment.strong_augment` of [B, K, 3, H, W] clips, which runs the
  colour jitter and the blur on the samples whose draw is on only, against the same functions
  run on every sample and the drawn samples kept by torch.where (the straightforward form); both
  sides get the same sequence of generator seeds, so the same draws, and are compared exactly.

The vectorised and loop versions are called in turn (`--repeats` times each, after a warm-up);
the figure is loop time / vectorised time (the speed-up), from the medians.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

from udass.benchmarks import IGNORE_INDEX  # noqa: E402
from udass.method.aggregation import class_prototypes  # noqa: E402
from udass.method.augment import color_jitter, gaussian_blur, strong_augment  # noqa: E402
from udass.method.quadmix import MixedClip, quadmix  # noqa: E402
from udass.method.teacher import PseudoLabels  # noqa: E402
from udass.method.templates import class_mask, source_template, target_template  # noqa: E402

PAPER = {"b": 2, "k": 2, "h": 512, "w": 1024, "c": 19, "d": 256, "block": 32}
QUICK = {"b": 2, "k": 2, "h": 32, "w": 64, "c": 19, "d": 16, "block": 4}
CONFIDENCE = 0.9


# ----------------------------------------------------------------------------------- inputs
def block_labels(shape: tuple[int, ...], c: int, g: torch.Generator, block: int = 32,
                 ignore_share: float = 0.05) -> Tensor:
    """int64 labels of `shape` [..., H, W]: random classes on blocks of block x block pixels,
    about `ignore_share` of the blocks 255."""
    *lead, h, w = shape
    small = torch.randint(0, c, (*lead, -(-h // block), -(-w // block)), generator=g)
    small[torch.rand(small.shape, generator=g) < ignore_share] = IGNORE_INDEX
    big = small.repeat_interleave(block, -2).repeat_interleave(block, -1)
    return big[..., :h, :w].contiguous()


def half_of_present(labels: Tensor, c: int, g: torch.Generator) -> Tensor:
    """[B, C] bool: about half of the classes present in each sample."""
    b = labels.shape[0]
    present = torch.zeros(b, c, dtype=torch.bool)
    for i in range(b):
        ids = labels[i].unique()
        present[i, ids[ids < c]] = True
    return present & (torch.rand(b, c, generator=g) < 0.5)


def mixing_inputs(b: int, k: int, h: int, w: int, c: int, seed: int = 0, block: int = 32
                  ) -> dict[str, Any]:
    """Current clips S, T and the previous step's raw templates (clip, classes, confidence)."""
    g = torch.Generator().manual_seed(seed)

    def clip(weights: Tensor | None = None) -> MixedClip:
        labels = block_labels((b, k, h, w), c, g, block)
        return MixedClip(frames=torch.rand(b, k, 3, h, w, generator=g),
                         flows=torch.randn(b, k - 1, 2, h, w, generator=g), labels=labels,
                         weights=torch.ones(b, k, h, w) if weights is None else weights)

    S = clip()
    T = clip(torch.rand(b, k, 1, 1, generator=g).expand(b, k, h, w).contiguous())
    s_prev = clip()
    t_prev = clip(torch.rand(b, k, 1, 1, generator=g).expand(b, k, h, w).contiguous())
    conf = torch.rand(b, k, h, w, generator=g) * 0.2 + 0.8
    return {"S": S, "T": T, "s_prev": s_prev, "t_prev": t_prev,
            "s_classes": half_of_present(s_prev.labels[:, 0], c, g),
            "t_classes": half_of_present(t_prev.labels[:, 0], c, g), "t_confidence": conf, "c": c}


# ----------------------------------------------------------------------------------- vectorised
def quadmix_vectorised(x: dict[str, Any]) -> dict[str, MixedClip]:
    """What the trainer runs: template masks, then the four paths."""
    s, t = x["s_prev"], x["t_prev"]
    s_tpl = source_template(s.frames, s.flows, s.labels, x["s_classes"])
    pseudo = PseudoLabels(t.labels, x["t_confidence"], t.weights, torch.zeros(0))
    t_tpl = target_template(t.frames, t.flows, pseudo, x["t_classes"], CONFIDENCE)
    return quadmix(x["S"], x["T"], s_tpl, t_tpl)


# ----------------------------------------------------------------------------------- loops
def loop_mask(labels: Tensor, classes: Tensor) -> Tensor:
    """[B, K, H, W] bool: sample by sample, frame by frame, class by class: mask |= label == c."""
    out = torch.zeros(labels.shape, dtype=torch.bool)
    for i in range(labels.shape[0]):
        for f in range(labels.shape[1]):
            m = torch.zeros(labels.shape[-2:], dtype=torch.bool)
            for cls in range(classes.shape[1]):
                if bool(classes[i, cls]):
                    m |= labels[i, f] == cls
            out[i, f] = m
    return out


def loop_paste(mask: Tensor, src: MixedClip, dst: MixedClip) -> MixedClip:
    """A copy of dst with src's pixels where mask, sample by sample and frame by frame; a flow
    moves with its frame's mask."""
    out = MixedClip(dst.frames.clone(), dst.flows.clone(), dst.labels.clone(), dst.weights.clone())
    for i in range(mask.shape[0]):
        for f in range(mask.shape[1]):
            m = mask[i, f]
            out.frames[i, f][:, m] = src.frames[i, f][:, m]
            if f < out.flows.shape[1]:
                out.flows[i, f][:, m] = src.flows[i, f][:, m]
            out.labels[i, f][m] = src.labels[i, f][m]
            out.weights[i, f][m] = src.weights[i, f][m]
    return out


def quadmix_loop(x: dict[str, Any]) -> dict[str, MixedClip]:
    s, t = x["s_prev"], x["t_prev"]
    m_s = loop_mask(s.labels, x["s_classes"])
    m_t = loop_mask(t.labels, x["t_classes"])
    for i in range(m_t.shape[0]):
        for f in range(m_t.shape[1]):
            m_t[i, f] &= x["t_confidence"][i, f] >= CONFIDENCE
    ss = loop_paste(m_s, s, x["S"])
    tt = loop_paste(m_t, t, x["T"])
    return {"ss": ss, "tt": tt, "tss": loop_paste(m_t, t, ss), "stt": loop_paste(m_s, s, tt)}


def prototypes_loop(features: Tensor, labels: Tensor, c: int, min_pixels: int = 5
                    ) -> tuple[Tensor, Tensor]:
    d = features.shape[1]
    flat = features.permute(0, 2, 3, 1).reshape(-1, d)
    lab = labels.reshape(-1)
    protos, valid = torch.zeros(c, d), torch.zeros(c, dtype=torch.bool)
    for cls in range(c):
        m = lab == cls
        if int(m.sum()) >= min_pixels:
            protos[cls] = flat[m].mean(0)
            valid[cls] = True
    return protos, valid


# ----------------------------------------------------------------------------------- checks
def augment_all_then_select(frames: Tensor, g: torch.Generator, jitter_p: float = 0.8,
                            blur_p: float = 0.5) -> Tensor:
    """strong_augment's result computed the straightforward way: jitter and blur every sample,
    keep the drawn ones (torch.where). The draws are strong_augment's (default jitter 0.2 and
    blur sigma range), in its documented order."""
    n = frames.shape[0]
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=g)  # noqa: E731
    jitter_on = u(0, 1) < jitter_p
    factors = [u(0.8, 1.2) for _ in range(3)]
    hue = u(-0.2, 0.2)
    blur_on = u(0, 1) < blur_p
    sigma = u(0.15, 1.15)
    on = lambda m: m.view(-1, 1, 1, 1, 1)  # noqa: E731
    x = torch.where(on(jitter_on), color_jitter(frames, *factors, hue), frames)
    return torch.where(on(blur_on), gaussian_blur(x, sigma), x)


def seeded(fn, frames: Tensor):
    """fn(frames, generator) with generator seeds 0, 1, 2, ... on successive calls."""
    calls = iter(range(10 ** 9))
    return lambda: fn(frames, torch.Generator().manual_seed(next(calls)))


def same_mixes(a: dict[str, MixedClip], b: dict[str, MixedClip]) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(getattr(a[p], f.name), getattr(b[p], f.name))
        for p in a for f in dataclasses.fields(MixedClip))


def _entry(times: dict[str, list[float]], identical: bool | None = None, **extra: Any) -> dict[str, Any]:
    v, lp = (benchlib.stats(times[n], 1000, 3) for n in ("vectorised", "loop"))
    out = {"vectorised_ms": v, "loop_ms": lp, "speedup_loop_over_vectorised": benchlib.ratio(
        lp["median"], v["median"], 1)}
    if identical is not None:
        out["identical_outputs"] = identical
    return {**out, **extra}


def run(quick: bool = False, repeats: int = 7) -> dict[str, Any]:
    size = QUICK if quick else PAPER
    repeats = 2 if quick else repeats
    b, k, h, w, c, d = (size[n] for n in "bkhwcd")
    x = mixing_inputs(b, k, h, w, c, block=size["block"])
    result: dict[str, Any] = {
        "what": "vectorised kernels vs per-sample / per-class loop references (identical outputs); "
                "speed-up = loop median / vectorised median, the two called in turn",
        "command": benchlib.command_line(), "machine": benchlib.machine(),
        "size": {"batch": b, "frames": k, "height": h, "width": w, "classes": c}, "repeats": repeats,
    }
    mixed, ref = quadmix_vectorised(x), quadmix_loop(x)
    pasted = {p: float(m.labels.ne(x["S" if p in ("ss", "tss") else "T"].labels).float().mean())
              for p, m in mixed.items()}
    result["quadmix"] = _entry(benchlib.interleaved(
        {"vectorised": lambda: quadmix_vectorised(x), "loop": lambda: quadmix_loop(x)}, repeats),
        same_mixes(mixed, ref), what="template class masks + the four paths, frames, flows, labels, "
        "weights", changed_label_share=pasted)

    labels, classes = x["s_prev"].labels, x["s_classes"]
    result["class_mask"] = _entry(benchlib.interleaved(
        {"vectorised": lambda: class_mask(labels, classes), "loop": lambda: loop_mask(labels, classes)},
        repeats), torch.equal(class_mask(labels, classes), loop_mask(labels, classes)),
        what=f"labels [{b}, {k}, {h}, {w}], class sets [{b}, {c}]")

    g = torch.Generator().manual_seed(1)
    fh, fw = h // 4, w // 4
    feats = torch.randn(b, d, fh, fw, generator=g)
    flab = F.interpolate(labels[:, 0, None].float(), size=(fh, fw), mode="nearest")[:, 0].long()
    (pv, vv), (pl, vl) = class_prototypes(feats, flab, c), prototypes_loop(feats, flab, c)
    result["class_prototypes"] = _entry(benchlib.interleaved(
        {"vectorised": lambda: class_prototypes(feats, flab, c), "loop": lambda: prototypes_loop(feats, flab, c)},
        repeats), bool(torch.equal(vv, vl)) and bool(torch.allclose(pv, pl, atol=1e-5, rtol=1e-5)),
        what=f"features [{b}, {d}, {fh}, {fw}], labels [{b}, {fh}, {fw}]",
        max_abs_difference=float((pv - pl).abs().max()), valid_classes=int(vv.sum()))

    clips = torch.rand(b, k, 3, h, w, generator=g)
    same = all(torch.equal(strong_augment(clips, torch.Generator().manual_seed(i)),
                           augment_all_then_select(clips, torch.Generator().manual_seed(i)))
               for i in range(8))
    result["strong_augment"] = _entry(benchlib.interleaved(
        {"vectorised": seeded(strong_augment, clips), "loop": seeded(augment_all_then_select, clips)},
        max(repeats, 16)), same, what=f"clips [{b}, {k}, 3, {h}, {w}], the same draws on both sides "
        "(seeds 0, 1, ...); 'loop' = every sample augmented, then torch.where by the draws")
    return result


def main() -> None:
    ap = benchlib.parser(__doc__, "kernels.json")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    benchlib.save(run(a.quick, a.repeats), a.out)


if __name__ == "__main__":
    main()
