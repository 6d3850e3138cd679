"""`udass convert`: released checkpoints of QuadMix and of its baselines -> udass checkpoints.

A release is a state dict laid out as its own code names its modules. Each format below is
mapped strictly onto a udass network (`udass.models.build_model`): every tensor the udass
network needs comes from named keys of the file, and every key of the file is consumed or
named as deliberately dropped (an ImageNet copy); anything else is an error naming the keys.
The result is a udass checkpoint (`udass.checkpoint`) that `udass evaluate`, `udass segment`
and `--set train.init_checkpoint=...` read. docs/converting.md lists the layouts and the
public code each one is taken from.

Formats (`--from`):
  tps                TPS / DA-VSN "ACCEL" DeepLabV2-ResNet-101: `conv1`, `layer1..4` (Caffe
                     ResNet), `layer5` (auxiliary ASPP classifier on stage 3), `layer6` (ASPP
                     classifier on stage 4), `sf_layer` (bias-free 1 x 1 fusion of the current and
                     the flow-warped previous logits). One network.
  authors-video-cnn  the authors' video CNN: the TPS trunk, `layer5`, `sf_layer` and `layer7`
                     (ASPP to 256 channels, dropout, bias-free 1 x 1 classifier), folded into a
                     DeepLabV2 ASPP classifier (exact up to float rounding: both are linear).
  authors-video-vit  the authors' video ViT `DAFormer_tps`: `model.*` (MiT-B5), `decoder.*`
                     (DAFormer head with `sf_layer`). One network.
  daformer           mmseg DAFormer (MiT-B5 + DAFormer head, one resolution): `model.` (student),
                     `ema_model.` (EMA teacher), `imnet_model.` (frozen ImageNet copy, dropped),
                     or a plain segmentor (`backbone.`, `decode_head.`).
  mic, authors-image HRDA-based: refused until udass has the HRDA head.
"""
from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from udass.benchmarks import BENCHMARKS, get_benchmark
from udass.checkpoint import save_checkpoint
from udass.config import Config, build_config, recipe
from udass.errors import UdassError, unknown_name
from udass.io import file_sha256
from udass.models import VARIANTS, build_model_from_config
from udass.models.factory import first_items, tensor_state
from udass.models.temporal import InputNormalize


@dataclass(frozen=True)
class Release:
    """What one `--from` format is.

    backbone: the udass family it maps onto; temporal_fusion: it carries the flow-guided fusion
    layer; input_style: the input convention its weights expect (`udass.models.temporal.
    INPUT_STYLES`); method: the closest udass method (the config's train.method); evaluated:
    which network the release's own test script evaluates; code: where the layout is taken
    from; needs: a part udass lacks (the format is refused while it is missing).
    """

    title: str
    backbone: str
    temporal_fusion: bool
    input_style: str
    method: str
    evaluated: str
    code: str
    needs: str = ""


RELEASES: Mapping[str, Release] = {
    "tps": Release(
        "TPS / DA-VSN ACCEL DeepLabV2", "cnn", True, "caffe", "dacs",
        "its one network (the whole state dict, loaded strictly by its test script)",
        "xing0047/TPS tps/model/accel_deeplabv2.py; Dayan-Guan/DA-VSN davsn/model/accel_deeplabv2.py"),
    "authors-video-cnn": Release(
        "the authors' video DeepLabV2", "cnn", True, "caffe", "quadmix",
        "its one network (the student; the EMA class of the training script is unused)",
        "ZHE-SAPI/UDASS video_udass/VIDEO/tps/model/accel_deeplabv2_dsp_cd_DFF_gaijin.py"),
    "authors-video-vit": Release(
        "the authors' video MiT-B5 + DAFormer head", "vit", True, "caffe", "quadmix",
        "its one network (the student; the EMA class of the training script is unused)",
        "ZHE-SAPI/UDASS video_udass/VIDEO/tps/model/mix_transformer2_tps.py (DAFormer_tps)"),
    "daformer": Release(
        "mmseg DAFormer (MiT + DAFormer head)", "vit", False, "imagenet", "dacs",
        "the student `model.` (tools/test.py loads with revise_keys ('model.', ''))",
        "lhoyer/DAFormer mmseg/models/{backbones/mix_transformer.py, decode_heads/daformer_head.py, "
        "uda/dacs.py}"),
    "mic": Release(
        "MIC (HRDA + masked image consistency)", "vit", False, "imagenet", "dacs",
        "the student `model.`", "lhoyer/MIC seg/mmseg/models/decode_heads/hrda_head.py",
        needs="HRDA"),
    "authors-image": Release(
        "the authors' image models (MIC + HRDA based)", "vit", False, "imagenet", "quadmix",
        "the student `model.`", "ZHE-SAPI/UDASS image_udass/seg", needs="HRDA"),
}
FORMATS = tuple(RELEASES)

# Keys whose presence says which layout a file has (a wrong --from is named by them).
_SIGNATURES: Mapping[str, tuple[str, ...]] = {
    "tps": ("conv1.weight", "layer6.conv2d_list.0.weight", "sf_layer.weight"),
    "authors-video-cnn": ("conv1.weight", "layer7.conv2d_list.0.weight", "layer7.head.1.weight",
                          "sf_layer.weight"),
    "authors-video-vit": ("model.patch_embed1.proj.weight", "decoder.conv_seg.weight",
                          "decoder.sf_layer.weight"),
    "daformer": ("backbone.patch_embed1.proj.weight", "decode_head.conv_seg.weight"),
}
_HRDA_PARTS = ("decode_head.scale_attention.", "decode_head.head.")


@dataclass(frozen=True)
class Source:
    """Where one udass tensor comes from: release keys and how they combine (default: the one
    tensor as it is)."""

    keys: tuple[str, ...]
    combine: Callable[[list[Tensor]], Tensor] = lambda ts: ts[0]


@dataclass
class Conversion:
    """A converted release: the udass config, the student and teacher state dicts of the
    network (`SegModel.state_dict()` keys) and the provenance recorded in the checkpoint."""

    config: Config
    student: dict[str, Tensor]
    teacher: dict[str, Tensor]
    info: dict[str, Any] = field(default_factory=dict)

    def checkpoint(self) -> dict[str, Any]:
        """The udass checkpoint dict (docs/architecture.md, Contracts: config, student as `net.<key>`, teacher, step)."""
        return {"config": self.config.to_dict(),
                "student": {f"net.{k}": v for k, v in self.student.items()},
                "teacher": self.teacher, "step": int(self.info.get("step", 0)),
                "converted": self.info}


# ----------------------------------------------------------------------------- key layouts
def _linear_to_conv(ts: list[Tensor]) -> Tensor:
    """An nn.Linear weight [out, in] as the equal 1 x 1 conv weight [out, in, 1, 1]."""
    return ts[0].reshape(*ts[0].shape, 1, 1)


def _fold_weight(ts: list[Tensor]) -> Tensor:
    """ASPP branch weight W_d [K, C_in, 3, 3] followed by a bias-free 1 x 1 classifier H
    [C, K, 1, 1] -> the one conv H W_d [C, C_in, 3, 3] (computed in float64)."""
    w, head = ts
    return torch.einsum("ck,kihw->cihw", head[:, :, 0, 0].double(), w.double()).to(w.dtype)


def _fold_bias(ts: list[Tensor]) -> Tensor:
    """ASPP branch bias b_d [K] and classifier H [C, K, 1, 1] -> H b_d [C]."""
    b, head = ts
    return (head[:, :, 0, 0].double() @ b.double()).to(b.dtype)


def _cnn_source(key: str, fmt: str) -> Source | None:
    """Release key(s) of a udass `cnn` SegModel key for the TPS-family layouts."""
    if key.startswith("encoder."):
        return Source((key[len("encoder."):],))
    if m := re.fullmatch(r"decoder\.aux_classifier\.conv2d_list\.(\d+)\.(weight|bias)", key):
        return Source((f"layer5.conv2d_list.{m[1]}.{m[2]}",))
    if m := re.fullmatch(r"decoder\.classifier\.conv2d_list\.(\d+)\.(weight|bias)", key):
        if fmt == "tps":
            return Source((f"layer6.conv2d_list.{m[1]}.{m[2]}",))
        return Source((f"layer7.conv2d_list.{m[1]}.{m[2]}", "layer7.head.1.weight"),
                      _fold_weight if m[2] == "weight" else _fold_bias)
    if key == "temporal.conv.weight":
        return Source(("sf_layer.weight",))
    return None


# udass DAFormer head key (after `decoder.`) -> mmseg DAFormerHead key (after the head prefix)
_DAFORMER_HEAD = (
    (r"embed\.(\d+)\.(weight|bias)", r"embed_layers.\1.proj.\2"),
    (r"fuse\.branches\.(\d+)\.0\.(.+)", r"fuse_layer.aspp_modules.\1.conv.\2"),
    (r"fuse\.branches\.(\d+)\.1\.(.+)", r"fuse_layer.aspp_modules.\1.bn.\2"),
    (r"fuse\.branches\.(\d+)\.(depthwise|pointwise)\.0\.(.+)", r"fuse_layer.aspp_modules.\1.\2_conv.conv.\3"),
    (r"fuse\.branches\.(\d+)\.(depthwise|pointwise)\.1\.(.+)", r"fuse_layer.aspp_modules.\1.\2_conv.bn.\3"),
    (r"fuse\.bottleneck\.0\.(.+)", r"fuse_layer.bottleneck.conv.\1"),
    (r"fuse\.bottleneck\.1\.(.+)", r"fuse_layer.bottleneck.bn.\1"),
    (r"conv_seg\.(weight|bias)", r"conv_seg.\1"),
)


def _vit_source(key: str, encoder: str, decoder: str) -> Source | None:
    """Release key of a udass `vit` SegModel key; `encoder` / `decoder` are the release's
    prefixes of the MiT and of the DAFormer head (e.g. `model.backbone.`, `model.decode_head.`)."""
    if key.startswith("encoder."):
        return Source((encoder + key[len("encoder."):],))
    if key == "temporal.conv.weight":
        return Source((decoder + "sf_layer.weight",))
    if key.startswith("decoder."):
        rest = key[len("decoder."):]
        for pattern, repl in _DAFORMER_HEAD:
            if re.fullmatch(pattern, rest):
                release = decoder + re.sub(pattern, repl, rest)
                linear = rest.startswith("embed.") and rest.endswith(".weight")
                return Source((release,), _linear_to_conv) if linear else Source((release,))
    return None


# ----------------------------------------------------------------------------- architecture
def _count(state: Mapping[str, Tensor], pattern: str) -> int:
    """Number of distinct indices captured by `pattern` (one group) over the keys."""
    return len({m[1] for k in state if (m := re.fullmatch(pattern, k))})


def _cnn_variant(state: Mapping[str, Tensor]) -> tuple[str, str]:
    """(udass variant, description) of a TPS-family ResNet trunk."""
    block = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    layers = tuple(_count(state, rf"layer{i}\.(\d+)\.conv1\.weight") for i in range(1, 5))
    width = int(state["conv1.weight"].shape[0])
    found = f"{block} ResNet, blocks {layers}, width {width}"
    return _match_variant("cnn", dict(block=block, layers=layers, width=width), {}, found), found


def _vit_variant(state: Mapping[str, Tensor], encoder: str, decoder: str) -> tuple[str, str]:
    """(udass variant, description) of a MiT + DAFormer head."""
    dims = tuple(int(state[f"{encoder}patch_embed{i}.proj.weight"].shape[0]) for i in range(1, 5))
    depths = tuple(_count(state, rf"{re.escape(encoder)}block{i}\.(\d+)\.norm1\.weight")
                   for i in range(1, 5))
    embed_key = f"{decoder}embed_layers.0.proj.weight"
    if embed_key not in state:
        raise UdassError(f"the checkpoint's decode head has no {embed_key}: udass converts the "
                         f"DAFormer head (embed_layers, fuse_layer, conv_seg) only")
    embed = int(state[embed_key].shape[0])
    found = f"MiT with widths {dims}, depths {depths}, DAFormer head width {embed}"
    return _match_variant("vit", dict(embed_dims=dims, depths=depths), dict(embed_dim=embed),
                          found), found


def _match_variant(backbone: str, encoder: dict[str, Any], decoder: dict[str, Any], found: str) -> str:
    for name, v in VARIANTS.items():
        if v.backbone != backbone:
            continue
        if all(tuple(v.encoder[k]) == tuple(e) if isinstance(e, tuple) else v.encoder[k] == e
               for k, e in encoder.items()) and all(v.decoder.get(k) == d for k, d in decoder.items()):
            return name
    known = ", ".join(n for n, v in VARIANTS.items() if v.backbone == backbone)
    raise UdassError(f"the checkpoint's network ({found}) is no udass {backbone} variant; udass "
                     f"builds {known} (docs/models.md)")


def _benchmark(num_classes: int, video: bool, name: str | None, fmt: str) -> str:
    """The benchmark the converted checkpoint is for: `name` when given (its class count must
    match), else the one paper benchmark of the release's kind with that many classes."""
    if name is not None:
        bench = get_benchmark(name)
        if bench.num_classes != num_classes:
            raise UdassError(f"--benchmark {name} has {bench.num_classes} classes, the {fmt} "
                             f"checkpoint predicts {num_classes}; pass a benchmark with "
                             f"{num_classes} classes")
        return bench.name
    fits = [b for b in BENCHMARKS if not get_benchmark(b).synthetic
            and get_benchmark(b).is_video == video and get_benchmark(b).num_classes == num_classes]
    if len(fits) == 1:
        return fits[0]
    kind = "video" if video else "image"
    if not fits:
        raise UdassError(f"no {kind} paper benchmark has {num_classes} classes (the {fmt} "
                         f"checkpoint's); pass --benchmark with a benchmark of {num_classes} classes")
    raise UdassError(f"{num_classes} classes fit {' and '.join(fits)}; pass --benchmark to say "
                     f"which one the checkpoint was trained for")


# ----------------------------------------------------------------------------- conversion
def convert_state(fmt: str, state: Mapping[str, Tensor], benchmark: str | None = None,
                  profile: str = "paper", meta: Mapping[str, Any] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Conversion:
    """Map a release's flat state dict (`module.` prefixes already stripped) onto udass.

    fmt: one of FORMATS; benchmark: the udass benchmark (default: inferred from the class count);
    profile: the udass profile of the written config (its data sizes and model options);
    overrides: dotted config keys for the written config (e.g. data.flow_source); the model
    keys are the release's and cannot be overridden.
    Raises UdassError for a refused format, a file in another layout, a network udass cannot
    build, and any missing, unexpected or mis-shaped key. Works on meta tensors too (no model
    is allocated: the udass network is built on the meta device to read its keys and shapes).
    """
    rel = _release(fmt)
    _check_signature(fmt, state)
    if fmt == "daformer":
        hrda = next((k for k in state if any(p in k for p in _HRDA_PARTS)), None)
        if hrda is not None:
            raise _hrda_error(fmt, f"its decode head is an HRDA head ({hrda})")
    nets, dropped = _networks(fmt, state)
    if rel.backbone == "cnn":
        variant, found = _cnn_variant(state)
        num_classes = int(state["sf_layer.weight"].shape[0])
    else:
        enc, dec = nets["student"]
        variant, found = _vit_variant(state, enc, dec)
        num_classes = int(state[f"{dec}conv_seg.weight"].shape[0])
    bench = _benchmark(num_classes, rel.temporal_fusion, benchmark, fmt)
    model = {"model.variant": variant, "model.head": "daformer",
             "model.temporal_fusion": rel.temporal_fusion}
    fixed = sorted(k for k in (overrides or {}) if k.startswith("model."))
    if fixed:
        raise UdassError(f"--set {fixed[0]}: the model of a converted checkpoint is the release's "
                         f"({variant}); set data.*, train.* or other keys only")
    # the image benchmarks' paper profile is the authors' HRDA recipe; the releases udass converts
    # are single-resolution networks, trained with DAFormer's recipe
    base = (recipe("daformer", bench, rel.backbone, profile)
            if profile == "paper" and not get_benchmark(bench).is_video else {})
    cfg = build_config(bench, rel.backbone, rel.method, profile, {**base, **(overrides or {}), **model})
    target = _udass_state(cfg, num_classes, rel.input_style)
    consumed: set[str] = set()
    weights = {}
    for role, prefixes in nets.items():
        weights[role] = _map_network(fmt, state, target, prefixes, consumed)
    unexpected = [k for k in state if k not in consumed and not k.startswith(tuple(dropped))]
    if unexpected:
        raise UdassError(f"{len(unexpected)} keys of the {fmt} checkpoint map to nothing in udass "
                         f"({first_items(unexpected)}); it is not the layout of {rel.code}")
    teacher = weights.get("teacher", weights["student"])
    info = {
        "format": fmt, "release": rel.title, "layout_from": rel.code, "variant": variant,
        "architecture": found, "benchmark": bench, "num_classes": num_classes,
        "input_style": rel.input_style, "evaluated_by_release": rel.evaluated,
        "student_from": _prefix_note(nets["student"]),
        "teacher_from": _prefix_note(nets["teacher"]) if "teacher" in nets
        else "the student's weights (the file holds one network)",
        "dropped": {p: f"{sum(k.startswith(p) for k in state)} keys: {why}"
                    for p, why in dropped.items() if any(k.startswith(p) for k in state)},
        "keys_consumed": len(consumed),
        "step": int(meta["iter"]) if meta and isinstance(meta.get("iter"), int) else 0,
    }
    if fmt == "authors-video-cnn":
        info["folded"] = ("layer7 (ASPP to 256 channels, dropout, bias-free 1 x 1 classifier) folded "
                          "into the DeepLabV2 classifier: W_d <- H W_d, b_d <- H b_d")
    return Conversion(cfg, weights["student"], teacher, info)


def _release(fmt: str) -> Release:
    if fmt not in RELEASES:
        raise unknown_name("checkpoint format (--from)", fmt, FORMATS)
    rel = RELEASES[fmt]
    if rel.needs == "HRDA":
        raise _hrda_error(fmt, f"{rel.title} is built on HRDA")
    return rel


def _hrda_error(fmt: str, why: str) -> UdassError:
    return UdassError(f"--from {fmt}: {why}, and converting it needs the HRDA head (multi-resolution "
                      f"fusion with a learned scale attention; issue: image recipe), which udass "
                      f"does not have yet; not available yet")


def _check_signature(fmt: str, state: Mapping[str, Tensor]) -> None:
    """A file in another layout: name the keys it lacks, what it holds and the format it fits."""
    def fits(f: str) -> bool:
        sig = _SIGNATURES[f]
        if f == "daformer":   # the UDA wrapper's student `model.` or a plain segmentor
            return any(all(p + k in state for k in sig) for p in ("model.", ""))
        return all(k in state for k in sig)

    if fits(fmt):
        return
    sig = _SIGNATURES[fmt]
    missing = [k for k in sig if k not in state] if fmt != "daformer" else [f"model.{k}" for k in sig]
    guess = [f for f in _SIGNATURES if f != fmt and fits(f)]
    hint = f"; it looks like --from {guess[-1]}" if guess else ""
    raise UdassError(f"the file is not in the {fmt} layout: missing {first_items(missing)}; it holds "
                     f"{first_items(list(state), 3)}{hint}")


def _networks(fmt: str, state: Mapping[str, Tensor]) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """{"student": (encoder prefix, decoder prefix), ["teacher": ...]} and the dropped prefixes."""
    if fmt in ("tps", "authors-video-cnn"):
        return {"student": ("", "")}, {}
    if fmt == "authors-video-vit":
        return {"student": ("model.", "decoder.")}, {}
    wrapped = any(k.startswith("model.backbone.") for k in state)
    if not wrapped:
        return {"student": ("backbone.", "decode_head.")}, {}
    nets = {"student": ("model.backbone.", "model.decode_head.")}
    if any(k.startswith("ema_model.") for k in state):
        nets["teacher"] = ("ema_model.backbone.", "ema_model.decode_head.")
    return nets, {"imnet_model.": "the frozen ImageNet copy DAFormer keeps for its feature distance"}


def _prefix_note(prefixes: tuple[str, str]) -> str:
    enc, dec = prefixes
    if not enc and not dec:
        return "the whole state dict"
    return f"{enc}* and {dec}*"


def _udass_state(cfg: Config, num_classes: int, input_style: str) -> dict[str, Tensor]:
    """Keys and shapes (meta tensors) of the udass network, and the input-convention buffers
    (real tensors) the release's weights expect."""
    with torch.device("meta"):
        net = build_model_from_config(cfg.model, num_classes, pretrained=False)
    state = dict(net.state_dict())
    for k, v in InputNormalize(input_style).state_dict().items():
        state[f"normalize.{k}"] = v
    return state


def _map_network(fmt: str, state: Mapping[str, Tensor], target: Mapping[str, Tensor],
                 prefixes: tuple[str, str], consumed: set[str]) -> dict[str, Tensor]:
    """The udass state dict of one network of the release; adds the keys it read to `consumed`."""
    out: dict[str, Tensor] = {}
    missing, shapes = [], []
    for key, own in target.items():
        if key.startswith("normalize."):
            out[key] = own.clone()
            continue
        src = _cnn_source(key, fmt) if RELEASES[fmt].backbone == "cnn" else _vit_source(key, *prefixes)
        if src is None:
            raise AssertionError(f"udass key {key} has no rule for --from {fmt}")
        absent = [k for k in src.keys if k not in state]
        if absent:
            if key.endswith(".num_batches_tracked"):   # older files lack them; unused by eval BN
                out[key] = torch.zeros((), dtype=torch.long)
            else:
                missing += absent
            continue
        value = src.combine([state[k] for k in src.keys])
        if value.is_floating_point():
            value = value.float()
        if tuple(value.shape) != tuple(own.shape):
            shapes.append(f"{src.keys[0]} {tuple(value.shape)} vs {key} {tuple(own.shape)}")
            continue
        out[key] = value
        consumed.update(src.keys)
    problems = [f"{len(v)} {what} ({first_items(v)})" for what, v in
                (("missing", sorted(set(missing))), ("shape mismatches, file vs udass", shapes)) if v]
    if problems:
        raise UdassError(f"the {fmt} checkpoint does not map strictly onto udass: "
                         f"{'; '.join(problems)}; pass a complete checkpoint of {RELEASES[fmt].code}")
    return out


# ----------------------------------------------------------------------------- files
def read_release(path: str | Path, trust_pickle: bool = False) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(flat state dict, mmcv meta or {}) of a release file: `{"state_dict": ..., "meta": ...}`
    is unwrapped, `module.` prefixes are stripped. Read with `weights_only=True` unless
    `trust_pickle` (which runs the file's pickled code: only for files from a trusted source)."""
    path = Path(path)
    if not path.is_file():
        raise UdassError(f"checkpoint {path} does not exist; pass the released .pth file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UdassError(f"{path} holds Python objects beyond tensors ({first[:160]}); if it comes "
                         f"from a source you trust, pass --trust-pickle") from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UdassError(f"cannot read {path} as a PyTorch checkpoint ({first[:160]}); it may be "
                         f"truncated") from None
    meta: dict[str, Any] = {}
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        meta = dict(obj["meta"]) if isinstance(obj.get("meta"), Mapping) else {}
        obj = obj["state_dict"]
    return tensor_state(obj, path), meta


def convert_checkpoint(fmt: str, src: str | Path, dst: str | Path, benchmark: str | None = None,
                       profile: str = "paper", trust_pickle: bool = False,
                       overrides: Mapping[str, Any] | None = None) -> Conversion:
    """`udass convert --from FMT SRC -o DST`: read a release file, map it (`convert_state`) and
    write the udass checkpoint DST atomically. Returns the conversion."""
    _release(fmt)   # an unknown or refused format is named before the file is read
    src, dst = Path(src), Path(dst)
    state, meta = read_release(src, trust_pickle)
    conv = convert_state(fmt, state, benchmark=benchmark, profile=profile, meta=meta,
                         overrides=overrides)
    conv.info.update(source=str(src.resolve()), sha256=file_sha256(src))
    save_checkpoint(dst, conv.checkpoint())
    c = conv.info
    print(f"converted {fmt} ({c['architecture']}) -> {dst}: udass {c['variant']} on "
          f"{c['benchmark']} ({c['num_classes']} classes), {c['keys_consumed']} keys consumed"
          + "".join(f", {p}* dropped ({v.split(':')[0]})" for p, v in c["dropped"].items())
          + f"; teacher = {c['teacher_from']}")
    return conv


__all__ = ["Conversion", "FORMATS", "RELEASES", "Release", "convert_checkpoint", "convert_state",
           "read_release"]
