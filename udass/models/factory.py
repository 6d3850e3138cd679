"""Model variants, `build_model` and the strict checkpoint loader (docs/architecture.md, Contracts: Models).

Every network udass can build is one row of `VARIANTS` (timm style): the paper's ResNet-101 and
MiT-B5, their published siblings, and small members for CPU runs (`*_mini`, demo profile) and
tests (`*_tiny`). `load_pretrained` loads a local ImageNet file into the encoder and refuses any
partial load.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from udass.errors import UdassError, unknown_name
from udass.models.daformer_head import DAFormerHead, SegFormerHead
from udass.models.deeplabv2 import DeepLabV2Head
from udass.models.hrda import HRDAModel
from udass.models.mit import MixVisionTransformer
from udass.models.resnet import BN_MODES, ResNet
from udass.models.temporal import SegModel

BACKBONES = ("cnn", "vit")
HEADS = ("daformer", "segformer")

# The SegFormer release's MiT hyper-parameters shared by B0...B5 (B1...B5 share the widths).
_MIT_WIDE = dict(embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8))
_PAPER_ASPP = (6, 12, 18, 24)   # DeepLabV2 classifier dilations
_SMALL_ASPP = (2, 3, 4, 5)      # the same divided by ~5: demo frames are ~1/5 of the paper's width
_DAFORMER_ASPP = (1, 6, 12, 18)
_SMALL_DAFORMER_ASPP = (1, 2, 3, 4)
_TORCHVISION = "the torchvision ImageNet file"
_SEGFORMER = "the SegFormer ImageNet file"


@dataclass(frozen=True)
class Variant:
    """One buildable network.

    backbone: "cnn" | "vit". encoder: arguments of `ResNet` or `MixVisionTransformer`.
    decoder: "dilations" of the ASPP (both families); ViT also "embed_dim" (DAFormer head) and
    "segformer_dim" (SegFormer head). weights: which published ImageNet file fits the encoder
    ("" = none is published). note: what the variant is for.
    """

    backbone: str
    encoder: Mapping[str, Any]
    decoder: Mapping[str, Any] = field(default_factory=dict)
    weights: str = ""
    note: str = ""


def _resnet(block: str, layers: tuple[int, ...], width: int, dil: tuple[int, ...], weights: str,
            note: str) -> Variant:
    return Variant("cnn", dict(block=block, layers=layers, width=width), dict(dilations=dil),
                   weights, note)


def _mit(depths: tuple[int, ...], weights: str, note: str, embed: int = 256, segformer: int = 768,
         dil: tuple[int, ...] = _DAFORMER_ASPP, **enc: Any) -> Variant:
    encoder = {**_MIT_WIDE, **enc, "depths": depths}
    return Variant("vit", encoder, dict(embed_dim=embed, segformer_dim=segformer, dilations=dil),
                   weights, note)


VARIANTS: Mapping[str, Variant] = {
    # ---------------------------------------------------------------- cnn: DeepLabV2 + ResNet
    "resnet_tiny": _resnet("basic", (1, 1, 1, 1), 8, _SMALL_ASPP, "", "tests (profile test)"),
    "resnet_mini": _resnet("basic", (2, 2, 2, 2), 16, _SMALL_ASPP, "", "CPU demo (profile demo)"),
    "resnet18": _resnet("basic", (2, 2, 2, 2), 64, _PAPER_ASPP,
                        f"{_TORCHVISION} resnet18-f37072fd.pth", "ResNet-18"),
    "resnet50": _resnet("bottleneck", (3, 4, 6, 3), 64, _PAPER_ASPP,
                        f"{_TORCHVISION} resnet50-0676ba61.pth", "ResNet-50"),
    "resnet101": _resnet("bottleneck", (3, 4, 23, 3), 64, _PAPER_ASPP,
                         "DeepLab_resnet_pretrained_imagenet.pth (AdvEnt / DA-VSN / TPS release) "
                         f"or {_TORCHVISION} resnet101-63fe2227.pth", "the paper's CNN"),
    # ---------------------------------------------------------------- vit: DAFormer + MiT
    "mit_tiny": _mit((1, 1, 1, 1), "", "tests (profile test)", embed=16, segformer=16,
                     dil=_SMALL_DAFORMER_ASPP, embed_dims=(8, 16, 32, 64), num_heads=(1, 1, 1, 2)),
    "mit_mini": _mit((1, 1, 1, 1), "", "CPU demo (profile demo)", embed=32, segformer=32,
                     dil=_SMALL_DAFORMER_ASPP, embed_dims=(16, 32, 64, 128), num_heads=(1, 1, 2, 4)),
    "mit_b0": _mit((2, 2, 2, 2), f"{_SEGFORMER} mit_b0.pth", "MiT-B0", segformer=256,
                   embed_dims=(32, 64, 160, 256)),
    "mit_b1": _mit((2, 2, 2, 2), f"{_SEGFORMER} mit_b1.pth", "MiT-B1", segformer=256),
    "mit_b2": _mit((3, 4, 6, 3), f"{_SEGFORMER} mit_b2.pth", "MiT-B2"),
    "mit_b3": _mit((3, 4, 18, 3), f"{_SEGFORMER} mit_b3.pth", "MiT-B3"),
    "mit_b4": _mit((3, 8, 27, 3), f"{_SEGFORMER} mit_b4.pth", "MiT-B4"),
    "mit_b5": _mit((3, 6, 40, 3), f"{_SEGFORMER} mit_b5.pth", "the paper's ViT"),
}

# Keys an ImageNet file may carry beyond the encoder: its ImageNet classifier.
ALLOWED_EXTRA_KEYS: Mapping[str, tuple[str, ...]] = {
    "cnn": ("fc.", "layer5."),   # torchvision classifier; DeepLab file's classifier (layer5)
    "vit": ("head.",),           # SegFormer ImageNet classifier
}
# Buffers an ImageNet file may lack (written only by PyTorch >= 0.4.1; unused by frozen BN).
ALLOWED_MISSING_SUFFIXES = (".num_batches_tracked",)

_OPTIONS: Mapping[str, Any] = {"bn": "batch", "head": "daformer", "temporal_fusion": True,
                               "drop_path": 0.1}


# ------------------------------------------------------------------------------------ building
def variants(backbone: str | None = None) -> list[str]:
    """Variant names, all or those of one backbone family."""
    return [n for n, v in VARIANTS.items() if backbone is None or v.backbone == backbone]


def build_model(backbone: str, num_classes: int, size: str, **opts: Any) -> SegModel:
    """The clip segmentation network `size` of family `backbone`.

    backbone: "cnn" (DeepLabV2 on ResNet) | "vit" (DAFormer head on MiT); size: a variant name
    of that family (`VARIANTS`); num_classes: C. opts (all optional):
      bn ("batch"): the CNN encoder's batch norms, affine parameters frozen in both modes:
          "batch" normalises with batch statistics in training and updates the running ones
          (ADVENT / TPS / the authors' recipe), "frozen" always uses the stored statistics;
      head ("daformer"): the ViT decoder, "daformer" | "segformer" (the CNN decoder is always
          DeepLabV2; the value is still checked);
      temporal_fusion (True): flow-guided 1 x 1 fusion of the previous frame's logits;
      drop_path (0.1): ViT stochastic-depth rate of the last block (ignored by the CNN).
    Weights are randomly initialised; `load_pretrained` loads an ImageNet encoder.
    """
    if backbone not in BACKBONES:
        raise unknown_name("backbone", backbone, BACKBONES)
    if size not in VARIANTS:
        raise unknown_name(f"{backbone} model variant", size, variants(backbone))
    spec = VARIANTS[size]
    if spec.backbone != backbone:
        raise UdassError(f"model variant {size!r} belongs to backbone {spec.backbone!r}, not "
                         f"{backbone!r}; use one of: {', '.join(variants(backbone))}")
    o = _check_options(opts)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UdassError(f"num_classes must be a positive integer, got {num_classes!r}")
    if backbone == "cnn":
        encoder: nn.Module = ResNet(**spec.encoder, bn=o["bn"])
        decoder: nn.Module = DeepLabV2Head(encoder.out_channels, num_classes,
                                           spec.decoder["dilations"])
    else:
        encoder = MixVisionTransformer(**spec.encoder, drop_path=o["drop_path"])
        if o["head"] == "daformer":
            decoder = DAFormerHead(encoder.out_channels, num_classes, spec.decoder["embed_dim"],
                                   spec.decoder["dilations"])
        else:
            decoder = SegFormerHead(encoder.out_channels, num_classes, spec.decoder["segformer_dim"])
    return SegModel(encoder, decoder, num_classes, backbone_name=backbone, variant=size,
                    temporal_fusion=o["temporal_fusion"])


def _check_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    for name in opts:
        if name not in _OPTIONS:
            raise unknown_name("model option", name, _OPTIONS)
    o = {**_OPTIONS, **opts}
    if not isinstance(o["temporal_fusion"], bool):
        raise UdassError(f"model option temporal_fusion must be true or false, got {o['temporal_fusion']!r}")
    if o["bn"] not in BN_MODES:
        raise unknown_name("CNN batch-norm mode (model.bn)", o["bn"], BN_MODES)
    if o["head"] not in HEADS:
        raise unknown_name("ViT decoder head", o["head"], HEADS)
    dp = o["drop_path"]
    if isinstance(dp, bool) or not isinstance(dp, (int, float)) or not 0.0 <= dp < 1.0:
        raise UdassError(f"model option drop_path must be a number in [0, 1), got {dp!r}")
    o["drop_path"] = float(dp)
    return o


def build_model_from_config(cfg: Any, num_classes: int, pretrained: bool = True) -> nn.Module:
    """`build_model` from a `udass.config.ModelConfig`, then (with `pretrained`) `load_pretrained`
    when `cfg.pretrained` names a file (None or "none": random initialisation). With `cfg.hrda`
    the network is wrapped in `udass.models.hrda.HRDAModel` (its scale attention head from
    random initialisation) after the ImageNet weights are loaded into it."""
    model = build_model(cfg.backbone, num_classes, cfg.variant, bn=cfg.bn,
                        head=cfg.head, temporal_fusion=cfg.temporal_fusion, drop_path=cfg.drop_path)
    if pretrained and cfg.pretrained not in (None, "", "none"):
        load_pretrained(model, cfg.pretrained)
    if getattr(cfg, "hrda", False):
        return HRDAModel(model, cfg.hrda_context_scale, cfg.hrda_detail_size,
                         cfg.hrda_eval_window, cfg.hrda_eval_stride)
    return model


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements (also on the meta device)."""
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------ loading
def load_pretrained(model: SegModel, path: str | os.PathLike) -> None:
    """Load a local ImageNet checkpoint into `model.encoder`, strictly.

    Accepted layouts: SegFormer `mit_b*.pth` (ViT); torchvision ResNet (`conv1`, `bn1`,
    `layer1.0.conv1`, ...) and the DeepLab ImageNet ResNet-101 file (`Scale.`-prefixed keys) for
    the CNN; wrapped in {"state_dict": ...} or {"model": ...} and/or with `module.` prefixes.
    Allowed beyond the encoder: the ImageNet classifiers (`ALLOWED_EXTRA_KEYS`); allowed to be
    absent: `num_batches_tracked` buffers. Anything else missing, unexpected or of another shape
    is a UdassError naming the keys. The DeepLab (Caffe) file also switches the model's input
    convention to BGR 0-255 minus the Caffe mean, which its weights expect.
    """
    path = Path(path)
    spec = VARIANTS[model.variant]
    if not path.is_file():
        want = spec.weights or f"an ImageNet checkpoint of {model.variant} (none is published)"
        raise UdassError(f"pretrained weights {path} not found: expected {want}; udass downloads "
                         f"nothing at run time: put the file there, or pass --pretrained none")
    state = _read_state_dict(path)
    style = "imagenet"
    if model.backbone_name == "cnn" and any(k.startswith("Scale.") for k in state):
        state = {k[len("Scale."):] if k.startswith("Scale.") else k: v for k, v in state.items()}
        style = "caffe"
    load_encoder_state(model.encoder, state, ALLOWED_EXTRA_KEYS[model.backbone_name],
                       source=f"{path} ({model.variant} encoder)")
    model.normalize.set_style(style)


def load_encoder_state(encoder: nn.Module, state: Mapping[str, Tensor],
                       allowed_extra: tuple[str, ...] = (), source: str = "checkpoint") -> None:
    """Copy `state` into `encoder` after checking keys and shapes (see `load_pretrained`)."""
    own = encoder.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(ALLOWED_MISSING_SUFFIXES)]
    unexpected = [k for k in state if k not in own and not k.startswith(allowed_extra)]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                  if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = [f"{len(items)} {what} ({first_items(items)})" for what, items in
                (("missing", missing), ("unexpected", unexpected),
                 ("shape mismatches, file vs model", mismatched)) if items]
    if problems:
        raise UdassError(f"{source} does not load strictly: {'; '.join(problems)}; pass a "
                         f"checkpoint of the same architecture (see docs/models.md)")
    encoder.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def first_items(items: list[str], n: int = 5) -> str:
    """The first n items, comma-separated, with a count of the rest."""
    more = f", ... (+{len(items) - n})" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors of a checkpoint file, unwrapped from {"state_dict"| "model": ...} and
    stripped of `module.` prefixes."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UdassError(f"cannot read {path} as a PyTorch state dict ({first}); expected a file "
                         f"written by torch.save holding tensors only (re-save its state_dict)") from None
    for _ in range(3):
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    return tensor_state(obj, path)


def tensor_state(obj: Any, path: Path) -> dict[str, Tensor]:
    """The flat state dict `obj` (read from `path`) with `module.` prefixes stripped; a
    one-line UdassError when it is not a non-empty mapping of names to tensors."""
    if not isinstance(obj, Mapping) or not obj:
        raise UdassError(f"{path} holds {type(obj).__name__}, expected a state dict of tensors")
    state = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            raise UdassError(f"{path}: entry {key!r} is {type(value).__name__}, expected a tensor "
                             f"(a state dict)")
        state[key[len("module."):] if key.startswith("module.") else key] = value
    return state


__all__ = ["ALLOWED_EXTRA_KEYS", "VARIANTS", "Variant", "build_model", "build_model_from_config",
           "count_parameters", "load_encoder_state", "load_pretrained", "variants"]
