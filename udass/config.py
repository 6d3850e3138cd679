"""Configuration as data: frozen dataclasses and named presets.

A run is fully described by one `Config` = benchmark x backbone x method x profile presets plus
`--set key=value` overrides (dotted field names, e.g. `quadmix.paths=ss,tt`). Nothing is
selected by editing source. Ablation rows are named override sets (`ABLATIONS` for video,
`IMAGE_ABLATIONS` for images), and so are the image recipes (`RECIPES`).

Profiles:
- `test`:  tiny model, tiny frames, a few steps: what the test suite trains.
- `demo`:  a small model at reduced resolution, a CPU-sized schedule (the embedded benchmark by
           default; on a real benchmark id it is a smoke test of real data on a laptop).
- `paper`: the published recipe, line by line (for GTAV / SYNTHIA -> Cityscapes: the
           authors' image recipe, `PAPER_IMAGE_RECIPES`; docs/method.md).
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import shlex
import types
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from udass.data.protocols import BENCHMARKS, get_benchmark
from udass.errors import UdassError, unknown_name

PROFILES = ("test", "demo", "paper")
BACKBONES = ("cnn", "vit")
METHODS = ("source_only", "oracle", "dacs", "quadmix")
QUADMIX_PATHS = ("ss", "tt", "tss", "stt")

Size = tuple[int, int]  # (H, W)


@dataclass(frozen=True)
class DataConfig:
    benchmark: str = "synthetic-video"
    data_root: str | None = None        # None: the synthetic cache ($UDASS_DATA/B or data/B)
    flow_root: str | None = None        # None: <data root>/udass_flow
    flow_source: str = "dis"            # dis (udass cache) | exact (synthetic) | authors
    source_size: Size = (128, 256)      # frames are resized to these (H, W) on load
    target_size: Size = (128, 256)
    crop_size: Size = (128, 256)        # random crop of training clips
    source_crop_bottom: int = 0         # rows dropped at the stored resolution (SYNTHIA-Seq: 120)
    batch_source: int = 2
    batch_target: int = 2
    num_workers: int = 0
    hist_match: bool = False            # match each source clip's colours to its target clip's frame t
    synth_size: str = "demo"            # size of an auto-generated synthetic root
    synth_seed: int = 0                 # data seed of an auto-generated synthetic root
    allow_partial: bool = False         # evaluate an incomplete val split's complete clips (run control)
    # rare-class sampling of source images (DAFormer; udass.data.rcs); off unless `rcs`
    rcs: bool = False
    rcs_temperature: float = 0.01       # softmax temperature over (1 - class frequency)
    rcs_min_pixels: int = 3000          # an image counts for a class with more pixels than this
    rcs_min_crop_ratio: float = 2.0     # crop redrawn until class pixels > min_pixels x this


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "vit"               # cnn | vit
    variant: str = "mit_mini"           # resnet101 | mit_b5 | small variants
    pretrained: str | None = None       # local ImageNet checkpoint; None = random init
    bn: str = "batch"                   # CNN encoder batch norm: batch | frozen (affine frozen in both)
    head: str = "daformer"              # ViT decoder: daformer | segformer
    temporal_fusion: bool = True        # flow-guided 1x1 logit fusion
    drop_path: float = 0.1
    # HRDA multi-resolution training and inference (udass.models.hrda); off unless `hrda`
    hrda: bool = False
    hrda_context_scale: float = 0.5     # context crop = the training crop at this scale
    hrda_detail_size: Size = (512, 512)  # full-resolution detail crop inside the context crop
    hrda_detail_loss: float = 0.1       # weight of the detail prediction's loss
    hrda_eval_window: Size = (1024, 1024)  # sliding-window inference: window and stride
    hrda_eval_stride: Size = (512, 512)


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"                 # sgd | adamw
    lr: float = 6e-5
    momentum: float = 0.9
    weight_decay: float = 0.01
    head_lr_mult: float = 10.0          # decoder / classifier heads
    fusion_lr_mult: float = 10.0        # temporal and feature fusion layers (docs/method.md)
    warmup_steps: int = 0
    poly_power: float = 1.0
    grad_clip: float | None = None      # max global gradient L2 norm; None: no clipping


@dataclass(frozen=True)
class TeacherConfig:
    ema: float = 0.999                  # alpha_k = min(1 - 1/(k+1), ema)
    pseudo_threshold: float = 0.968     # DACS pixel weight: share of pixels above it
    flow_propagation: bool = True       # average with the teacher's t-1 prediction warped to t


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5                   # horizontal flip probability (flow x negated)
    jitter: float = 0.2                 # strong aug colour-jitter strength
    jitter_p: float = 0.8
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.15, 1.15)


@dataclass(frozen=True)
class QuadMixConfig:
    paths: tuple[str, ...] = QUADMIX_PATHS
    template_confidence: float = 0.9    # target template pixels need max prob >= this
    long_tail: bool = True              # always take the benchmark's long-tail classes
    start_step: int = 0                 # steps before this train as dacs
    first_step: str = "classmix"        # what the template-less first step does: classmix | store


@dataclass(frozen=True)
class FeatureMixConfig:
    enabled: bool = True
    weight: float = 1.0


@dataclass(frozen=True)
class AggregationConfig:
    enabled: bool = True
    loss: str = "mmd"                   # mmd | contrastive
    weight: float = 0.01
    temporal_weighting: bool = True     # entropy weights (certain view weighs more); off = mean
    min_pixels: int = 5
    confidence: float = 0.968           # target pixels used for prototypes
    temperature: float = 0.1            # contrastive option
    mmd_kernels: int = 5


@dataclass(frozen=True)
class MICConfig:
    """Masked image consistency (MIC; udass.method.masking)."""

    enabled: bool = False
    block_size: int = 64                # mask block, pixels of the training crop
    ratio: float = 0.7                  # share of blocks removed (each with this probability)
    weight: float = 1.0


@dataclass(frozen=True)
class FDConfig:
    """ImageNet feature distance on thing-class source pixels (DAFormer;
    udass.method.feature_distance)."""

    enabled: bool = False
    weight: float = 0.005
    min_ratio: float = 0.75             # a bottleneck cell is labelled when its class covers this


@dataclass(frozen=True)
class TrainConfig:
    method: str = "quadmix"
    profile: str = "demo"
    steps: int = 600
    seed: int = 0
    lambda_t: float = 1.0               # weight of the target pseudo-label loss
    aux_weight: float = 0.1             # CNN auxiliary head
    eval_every: int = 0                 # 0: evaluate at the end only
    checkpoint_every: int = 200
    log_every: int = 10
    amp: bool = True                    # mixed precision (CUDA only)
    init_checkpoint: str | None = None  # start from a udass checkpoint's student weights
    eval_max_clips: int | None = None   # None: the whole val split
    eval_align_corners: bool | None = None  # logit upsampling in evaluation; None: the benchmark's


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    quadmix: QuadMixConfig = field(default_factory=QuadMixConfig)
    feature_mix: FeatureMixConfig = field(default_factory=FeatureMixConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    mic: MICConfig = field(default_factory=MICConfig)
    fd: FDConfig = field(default_factory=FDConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------- presets
MODEL_VARIANTS: Mapping[tuple[str, str], str] = {
    ("cnn", "test"): "resnet_tiny", ("cnn", "demo"): "resnet_mini", ("cnn", "paper"): "resnet101",
    ("vit", "test"): "mit_tiny", ("vit", "demo"): "mit_mini", ("vit", "paper"): "mit_b5",
}

# Paper input sizes (H, W) of each dataset layout, PROTOCOLS.md "Resolutions".
_PAPER_SIZE: Mapping[str, Size] = {
    "cityscapes-seq": (512, 1024), "cityscapes": (512, 1024), "synthia-seq": (640, 1280),
    "viper": (720, 1280), "gta": (720, 1280), "synthia": (760, 1280),
}


def _data_preset(benchmark: str, profile: str) -> dict[str, Any]:
    b = get_benchmark(benchmark)
    if profile == "test":
        return dict(source_size=(32, 64), target_size=(32, 64), crop_size=(32, 64),
                    batch_source=2, batch_target=2, synth_size="tiny",
                    flow_source="exact" if b.synthetic else "dis", hist_match=b.is_video)
    if profile == "demo":
        return dict(source_size=(128, 256), target_size=(128, 256), crop_size=(96, 192),
                    batch_source=2, batch_target=2, synth_size="demo",
                    flow_source="exact" if b.synthetic else "dis", hist_match=b.is_video)
    # paper
    video = b.is_video
    return dict(
        source_size=_PAPER_SIZE[b.source], target_size=_PAPER_SIZE[b.target],
        crop_size=(512, 1024) if video else (512, 512),
        source_crop_bottom=120 if b.source == "synthia-seq" and not b.synthetic else 0,
        batch_source=1 if video else 2, batch_target=1 if video else 2,
        num_workers=4, flow_source="exact" if b.synthetic else "dis", hist_match=video)


def _optim_preset(benchmark: str, backbone: str, profile: str) -> dict[str, Any]:
    viper = benchmark == "viper2cityscapes-seq"
    if backbone == "cnn" and profile != "demo":
        return dict(name="sgd", lr=(1e-4 if viper else 2.5e-4) if profile == "paper" else 1e-3,
                    momentum=0.9, weight_decay=5e-4, head_lr_mult=10.0, warmup_steps=0,
                    poly_power=0.9)
    # vit, and the demo CNN: trained from random initialisation, ResNet-mini learns more with
    # the ViT's AdamW than with SGD (synthetic-video, seed 0: oracle 50.5 against 42.4;
    # docs/results-synthetic.md, "The CNN")
    return dict(name="adamw", lr=6e-5 if profile == "paper" else 6e-4, weight_decay=0.01,
                head_lr_mult=10.0, warmup_steps=1500 if profile == "paper" else 0, poly_power=1.0)


def _train_preset(benchmark: str, profile: str, method: str) -> dict[str, Any]:
    viper = benchmark == "viper2cityscapes-seq"
    steps = {"test": 4, "demo": 1000, "paper": 40000}[profile]
    # The demo trains small models from random initialisation for 1000 steps: there the
    # unmixed target self-training term L_trg drives confirmation bias (selected on
    # synthetic-video, vit, seed 0: quadmix 35.6 mIoU with lambda_T = 1, 46.3 with 0.2,
    # 57.2 with 0; dacs 57.2; docs/method.md), so the demo recipe turns it off; the ablation
    # row "with_L_trg" turns it back on (43.8 +- 7.6 against 60.3 +- 3.4 over three seeds,
    # docs/results-synthetic.md). test and paper keep the paper's value.
    lambda_t = 0.0 if profile == "demo" else (0.2 if viper else 1.0)
    return dict(method=method, profile=profile, steps=steps, lambda_t=lambda_t,
                checkpoint_every={"test": 2, "demo": 250, "paper": 2000}[profile],
                eval_every={"test": 0, "demo": 0, "paper": 4000}[profile],
                log_every={"test": 1, "demo": 10, "paper": 50}[profile])


# --------------------------------------------------------------------------------- the image recipe
# The authors' image recipe (docs/method.md, "The image recipe's components"): QuadMix on
# MIC + HRDA, which build on DAFormer's rare-class sampling and ImageNet feature distance. Each
# component is a switch; `image_recipe` gives the dotted overrides that turn a set of them on
# (and the others off) at a profile's sizes.
IMAGE_COMPONENTS = ("rcs", "fd", "hrda", "mic")

# HRDA per profile: the factor of the frame sizes over the single-resolution ones, then (H, W) of
# the training crop (full resolution), the detail crop, the inference window and its stride.
# paper: the HRDA / MIC configs (frames at twice DAFormer's resolution). demo: the paper's sizes
# divided by 8, the ratio of the Cityscapes width (2048) to the demo frames' (256), which are
# the generated data's own resolution (nothing finer to load). test: the frames at twice the
# test size (64 x 128), the paper's sizes divided by 16; the MiT's first stage needs 32 pixels.
_HRDA_SIZES: Mapping[str, tuple[int, Size, Size, Size, Size]] = {
    "paper": (2, (1024, 1024), (512, 512), (1024, 1024), (512, 512)),
    "demo": (1, (128, 128), (64, 64), (128, 128), (64, 64)),
    "test": (2, (64, 64), (32, 32), (64, 64), (32, 32)),
}
# RCS: an image counts for a class with more than this many pixels. paper: DAFormer's 3000 of a
# GTAV label (1914 x 1052); demo and test: 3000 scaled by the pixel count of their labels
# (256 x 128: 49; 64 x 32: 3).
_RCS_MIN_PIXELS: Mapping[str, int] = {"paper": 3000, "demo": 49, "test": 3}
# MIC mask block (pixels of the training crop): MIC's 64 scaled like the HRDA sizes.
_MIC_BLOCK: Mapping[str, int] = {"paper": 64, "demo": 8, "test": 4}
# The authors resumed image training from a MIC checkpoint: QuadMix starts at
# this step, DACS (+ the recipe's components, i.e. MIC) trains before it.
_PAPER_QUADMIX_START: Mapping[tuple[str, str], int] = {
    ("gtav2cityscapes", "vit"): 4000, ("synthia2cityscapes", "vit"): 3000,
    ("gtav2cityscapes", "cnn"): 6000, ("synthia2cityscapes", "cnn"): 6000,
}


def image_recipe(benchmark: str, profile: str, components: tuple[str, ...] = IMAGE_COMPONENTS
                 ) -> dict[str, Any]:
    """Dotted overrides that switch the image-recipe components in `components` (of rcs, fd,
    hrda, mic) on and the others off, at `profile`'s sizes, for an image benchmark.

    Every switch is set either way and so are the crop and frame sizes, so the result overrides
    any preset. HRDA on: the profile's HRDA crop and windows, and at the paper (and test)
    profile the frames at twice the single-resolution size (paper: GTAV 2560 x 1440, SYNTHIA
    2560 x 1520, Cityscapes 2048 x 1024, as HRDA loads them). HRDA off: the profile's
    single-resolution sizes.
    """
    bad = [c for c in components if c not in IMAGE_COMPONENTS]
    if bad:
        raise unknown_name("image-recipe component", bad[0], IMAGE_COMPONENTS)
    if profile not in PROFILES:
        raise unknown_name("profile", profile, PROFILES)
    b = get_benchmark(benchmark)
    if b.is_video:
        raise UdassError(f"image_recipe: {benchmark} is a video benchmark; the image recipe "
                         f"(HRDA, MIC, RCS, FD) is for gtav2cityscapes, synthia2cityscapes and "
                         f"synthetic-image")
    single = _data_preset(benchmark, profile)
    factor, crop, detail, window, stride = _HRDA_SIZES[profile]
    hrda = "hrda" in components
    scale = factor if hrda else 1
    out: dict[str, Any] = {
        "data.rcs": "rcs" in components, "fd.enabled": "fd" in components,
        "model.hrda": hrda, "mic.enabled": "mic" in components,
        "data.crop_size": crop if hrda else single["crop_size"],
        "data.source_size": tuple(scale * v for v in single["source_size"]),
        "data.target_size": tuple(scale * v for v in single["target_size"]),
    }
    if "rcs" in components:
        out.update({"data.rcs_temperature": 0.01, "data.rcs_min_pixels": _RCS_MIN_PIXELS[profile],
                    "data.rcs_min_crop_ratio": 2.0})
    if "fd" in components:
        out.update({"fd.weight": 0.005, "fd.min_ratio": 0.75})
    if hrda:
        out.update({"model.hrda_context_scale": 0.5, "model.hrda_detail_size": detail,
                    "model.hrda_detail_loss": 0.1, "model.hrda_eval_window": window,
                    "model.hrda_eval_stride": stride})
    if "mic" in components:
        out.update({"mic.block_size": _MIC_BLOCK[profile], "mic.ratio": 0.7, "mic.weight": 1.0})
    return out


def _paper_image_recipe(benchmark: str, backbone: str) -> dict[str, Any]:
    # the authors' image configs train both backbones with AdamW 6e-5 (heads x10), 1500
    # warm-up steps and poly 1.0 (the ViT preset already; the CNN's video recipe is SGD)
    optim = {"optim.name": "adamw", "optim.lr": 6e-5, "optim.weight_decay": 0.01,
             "optim.head_lr_mult": 10.0, "optim.warmup_steps": 1500, "optim.poly_power": 1.0}
    return {**image_recipe(benchmark, "paper"), **optim,
            "quadmix.start_step": _PAPER_QUADMIX_START[benchmark, backbone]}


# The paper profile of the image benchmarks, as dotted overrides of their single-resolution
# preset, per (benchmark, backbone): every component on at the HRDA / MIC configs' values, the
# frames at HRDA's resolutions, the configs' AdamW schedule for both backbones, QuadMix from the
# authors' resume step. Methods without a source
# batch or a teacher leave the parts they do not have unread (oracle: RCS and FD; source_only
# and oracle: MIC), as they leave quadmix.* and aggregation.* unread.
PAPER_IMAGE_RECIPES: Mapping[tuple[str, str], Mapping[str, Any]] = {
    (b, bb): _paper_image_recipe(b, bb) for b in ("gtav2cityscapes", "synthia2cityscapes")
    for bb in BACKBONES}

# Named override sets of the image benchmarks (`recipe`, `udass train --recipe NAME`): which
# components they switch on. "daformer": DAFormer's single-resolution recipe (RCS with its
# configs' min crop ratio 0.5, FD); "hrda": DAFormer + HRDA; "authors": the paper profile's
# recipe (+ MIC); "single_resolution": no component (DACS-style training at the profile's
# single-resolution crop).
RECIPES: Mapping[str, tuple[str, ...]] = {
    "single_resolution": (), "daformer": ("rcs", "fd"), "hrda": ("rcs", "fd", "hrda"),
    "authors": IMAGE_COMPONENTS,
}


def recipe(name: str, benchmark: str, backbone: str, profile: str) -> dict[str, Any]:
    """The dotted overrides of the named recipe (RECIPES) for an image benchmark at a profile;
    they apply over the preset like `--set` (the paper profile's start step is the authors'
    only in "authors", 0 in the others)."""
    if name not in RECIPES:
        raise unknown_name("recipe", name, RECIPES)
    out = image_recipe(benchmark, profile, RECIPES[name])
    if name == "daformer":
        out["data.rcs_min_crop_ratio"] = 0.5
    if profile == "paper":
        out["quadmix.start_step"] = (_PAPER_QUADMIX_START.get((benchmark, backbone), 0)
                                     if name == "authors" else 0)
    return out


def build_config(benchmark: str = "synthetic-video", backbone: str = "vit", method: str = "quadmix",
                 profile: str = "demo", overrides: Mapping[str, Any] | None = None,
                 **fields_: Any) -> Config:
    """The preset for benchmark x backbone x method x profile, then `overrides` (dotted keys).

    `fields_` are shortcuts for common dotted keys given as keyword arguments (e.g.
    `seed=1` -> train.seed, `steps=50` -> train.steps, `data_root=...` -> data.data_root).
    """
    if benchmark not in BENCHMARKS:
        raise unknown_name("benchmark", benchmark, BENCHMARKS)
    if backbone not in BACKBONES:
        raise unknown_name("backbone", backbone, BACKBONES)
    if method not in METHODS:
        raise unknown_name("method", method, METHODS)
    if profile not in PROFILES:
        raise unknown_name("profile", profile, PROFILES)
    cfg = Config(
        data=DataConfig(benchmark=benchmark, **_data_preset(benchmark, profile)),
        # The CNN encoder's batch norm (docs/method.md, "Batch norm"): batch statistics with frozen
        # affine parameters is the paper's recipe; the demo CNN, from random initialisation,
        # uses stored statistics (an identity), the setting its measured results chose.
        # Image benchmarks have no temporal fusion: a one-frame clip has nothing to fuse.
        model=ModelConfig(backbone=backbone, variant=MODEL_VARIANTS[backbone, profile],
                          bn="frozen" if (profile == "demo" and backbone == "cnn") else "batch",
                          head="daformer", temporal_fusion=get_benchmark(benchmark).is_video,
                          drop_path=0.1 if backbone == "vit" else 0.0),
        optim=OptimConfig(**_optim_preset(benchmark, backbone, profile)),
        # EMA 0.999 averages over ~1000 steps: the whole demo schedule. Short schedules use a
        # teacher time constant of ~100 steps.
        teacher=TeacherConfig(ema=0.999 if profile == "paper" else 0.99),
        train=TrainConfig(**_train_preset(benchmark, profile, method)),
    )
    short = {"seed": "train.seed", "steps": "train.steps", "data_root": "data.data_root",
             "flow_root": "data.flow_root", "pretrained": "model.pretrained"}
    merged: dict[str, Any] = dict(PAPER_IMAGE_RECIPES.get((benchmark, backbone), {})
                                  if profile == "paper" else {})
    for k, v in fields_.items():
        if k not in short:
            raise unknown_name("config shortcut", k, short)
        if v is not None:
            merged[short[k]] = v
    merged.update(overrides or {})
    return apply_overrides(cfg, merged)


# --------------------------------------------------------------------------------- overrides
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def all_keys(cfg: Config | None = None) -> list[str]:
    """Every dotted key of a Config (`data.benchmark`, ..., `train.steps`)."""
    cfg = cfg or Config()
    return [f"{sec.name}.{f.name}" for sec in fields(cfg) for f in fields(getattr(cfg, sec.name))]


def parse_value(text: str, typ: Any, key: str) -> Any:
    """Parse the string `text` as a value of annotated type `typ` (for `--set key=value`)."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null", ""):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return parse_value(text, inner[0], key)
    if typ is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UdassError(f"--set {key}={text}: expected a boolean (true/false)")
    if origin is tuple:
        parts = [p for p in text.replace(" ", "").split(",") if p] if isinstance(text, str) else list(text)
        elem = args[0] if args else str
        if len(args) == 2 and args[1] is not Ellipsis:  # fixed pair like Size
            if len(parts) != 2:
                raise UdassError(f"--set {key}={text}: expected two comma-separated values")
            return tuple(parse_value(p, a, key) for p, a in zip(parts, args))
        return tuple(parse_value(p, elem, key) for p in parts)
    try:
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
    except ValueError:
        raise UdassError(f"--set {key}={text}: expected a number ({typ.__name__})") from None
    return str(text)


def _coerce(value: Any, typ: Any, key: str) -> Any:
    if isinstance(value, str):
        return parse_value(value, typ, key)
    if isinstance(value, list):
        value = tuple(value)
    origin = typing.get_origin(typ)
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ in (int, float, bool, str) and not isinstance(value, typ):
        raise UdassError(f"config {key}: expected {typ.__name__}, got {value!r}")
    if origin is tuple and isinstance(value, tuple):
        return value
    return value


def apply_overrides(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """Return `cfg` with dotted-key overrides applied (values may be strings, parsed by type)."""
    keys = all_keys(cfg)
    sections: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if key not in keys:
            raise unknown_name("config key", key, keys)
        sec, name = key.split(".", 1)
        typ = _field_types(type(getattr(cfg, sec)))[name]
        sections.setdefault(sec, {})[name] = _coerce(value, typ, key)
    cfg = replace(cfg, **{sec: replace(getattr(cfg, sec), **vals) for sec, vals in sections.items()})
    validate(cfg)
    return cfg


def parse_set_args(items: list[str] | None) -> dict[str, str]:
    """`["a.b=1", "c.d=x,y"]` -> {"a.b": "1", "c.d": "x,y"} (CLI `--set`)."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise UdassError(f"--set {item!r}: expected key=value, e.g. --set quadmix.paths=ss,tt")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def validate(cfg: Config) -> None:
    """Check choices that a type cannot express; raise UdassError naming the field."""
    if cfg.model.backbone not in BACKBONES:
        raise unknown_name("backbone", cfg.model.backbone, BACKBONES)
    if cfg.train.method not in METHODS:
        raise unknown_name("method", cfg.train.method, METHODS)
    if cfg.train.profile not in PROFILES:
        raise unknown_name("profile", cfg.train.profile, PROFILES)
    if cfg.data.benchmark not in BENCHMARKS:
        raise unknown_name("benchmark", cfg.data.benchmark, BENCHMARKS)
    bad = [p for p in cfg.quadmix.paths if p not in QUADMIX_PATHS]
    if bad:
        raise UdassError(f"quadmix.paths: unknown path(s) {bad}; expected a subset of "
                         f"{','.join(QUADMIX_PATHS)}")
    for key, value, choices in (("optim.name", cfg.optim.name, ("sgd", "adamw")),
                                ("data.flow_source", cfg.data.flow_source, ("dis", "exact", "authors")),
                                ("model.head", cfg.model.head, ("daformer", "segformer")),
                                ("aggregation.loss", cfg.aggregation.loss, ("mmd", "contrastive")),
                                ("quadmix.first_step", cfg.quadmix.first_step, ("classmix", "store")),
                                ("model.bn", cfg.model.bn, ("batch", "frozen"))):
        if value not in choices:
            raise UdassError(f"{key}={value!r}: expected one of {', '.join(choices)}")
    if cfg.model.temporal_fusion and not get_benchmark(cfg.data.benchmark).is_video:
        raise UdassError(f"model.temporal_fusion=true on the image benchmark {cfg.data.benchmark}: "
                         f"a one-frame clip has no previous frame to fuse; leave it false")
    if cfg.train.steps < 1:
        raise UdassError(f"train.steps={cfg.train.steps}: expected a positive number of steps")
    _validate_image_recipe(cfg)


def _validate_image_recipe(cfg: Config) -> None:
    """Ranges of the image-recipe components (RCS, HRDA, MIC, FD)."""
    checks = (
        ("data.rcs_temperature", cfg.data.rcs_temperature, cfg.data.rcs_temperature > 0, "a positive number"),
        ("data.rcs_min_pixels", cfg.data.rcs_min_pixels, cfg.data.rcs_min_pixels >= 0, "a number >= 0"),
        ("model.hrda_context_scale", cfg.model.hrda_context_scale,
         0 < cfg.model.hrda_context_scale < 1, "a scale in (0, 1)"),
        ("model.hrda_detail_size", cfg.model.hrda_detail_size, min(cfg.model.hrda_detail_size) > 0,
         "positive sizes"),
        ("mic.block_size", cfg.mic.block_size, cfg.mic.block_size >= 1, "a positive number of pixels"),
        ("mic.ratio", cfg.mic.ratio, 0 <= cfg.mic.ratio <= 1, "a share in [0, 1]"),
    )
    for key, value, ok, expected in checks:
        if not ok:
            raise UdassError(f"{key}={value}: expected {expected}")
    if cfg.model.hrda:
        if get_benchmark(cfg.data.benchmark).is_video:
            raise UdassError(f"model.hrda=true on the video benchmark {cfg.data.benchmark}: HRDA "
                             f"takes one-frame clips (image benchmarks); leave it false")
        crop, detail = cfg.data.crop_size, cfg.model.hrda_detail_size
        if detail[0] > crop[0] or detail[1] > crop[1]:
            raise UdassError(f"model.hrda_detail_size={detail} is larger than data.crop_size={crop}: "
                             f"the detail crop lies inside the training crop; use a smaller detail "
                             f"size or a larger crop")


def config_diff(a: Config | Mapping, b: Config | Mapping) -> list[str]:
    """Dotted keys whose values differ between two configs (or their dicts)."""
    da = a.to_dict() if isinstance(a, Config) else a
    db = b.to_dict() if isinstance(b, Config) else b
    out = []
    for sec in sorted(set(da) | set(db)):
        sa, sb = da.get(sec, {}), db.get(sec, {})
        for k in sorted(set(sa) | set(sb)):
            va, vb = sa.get(k), sb.get(k)
            if isinstance(va, list):
                va = tuple(va)
            if isinstance(vb, list):
                vb = tuple(vb)
            if va != vb:
                out.append(f"{sec}.{k}")
    return out


def config_from_dict(d: Mapping[str, Any]) -> Config:
    """Rebuild a Config from `Config.to_dict()` output (e.g. read from a checkpoint or run.json)."""
    kwargs = {}
    for sec in fields(Config):
        cls = sec.default_factory  # type: ignore[misc]
        vals = dict(d.get(sec.name, {}))
        types_ = _field_types(cls)
        known = {k: _coerce(v, types_[k], f"{sec.name}.{k}") for k, v in vals.items() if k in types_}
        kwargs[sec.name] = cls(**known)
    return Config(**kwargs)


# --------------------------------------------------------------------------------- ablations
# Each ablation row of 03_ablation is a method plus an override set (METHOD.md section 5).
_ALL_OFF = {"feature_mix.enabled": False, "aggregation.enabled": False}
ABLATIONS: Mapping[str, tuple[str, Mapping[str, Any]]] = {
    "source_only": ("source_only", {}),
    "classmix": ("dacs", {}),
    "self_training": ("quadmix", {"quadmix.paths": (), "train.lambda_t": 1.0, **_ALL_OFF}),
    "intra_only": ("quadmix", {"quadmix.paths": ("ss", "tt"), **_ALL_OFF}),
    "intra+tss": ("quadmix", {"quadmix.paths": ("ss", "tt", "tss"), **_ALL_OFF}),
    "intra+stt": ("quadmix", {"quadmix.paths": ("ss", "tt", "stt"), **_ALL_OFF}),
    "quadmix_paths": ("quadmix", {"quadmix.paths": QUADMIX_PATHS, **_ALL_OFF}),
    "+feature_mix": ("quadmix", {"feature_mix.enabled": True, "aggregation.enabled": False}),
    "+aggregation": ("quadmix", {"feature_mix.enabled": True, "aggregation.enabled": True}),
    "no_temporal_weighting": ("quadmix", {"aggregation.temporal_weighting": False}),
    "with_L_trg": ("quadmix", {"train.lambda_t": 1.0}),
    # the video recipe's source histogram matching switched off (docs/method.md)
    "no_hist_match": ("quadmix", {"data.hist_match": False}),
    # diagnostic: only source templates are pasted (S -> S, S -> (T -> T) with T -> T off, so
    # S' lands on T itself); no target template T' and its pseudo-labels enter any sample
    "source_templates_only": ("quadmix", {"quadmix.paths": ("ss", "stt")}),
}


# The image benchmarks' ablation rows: QuadMix with the image-recipe components added one by one
# in the order the field built them (DAFormer's RCS and FD, HRDA, MIC); each row keeps the
# components of the row above. `ablation_rows` resolves them at a profile's sizes.
IMAGE_ABLATIONS: Mapping[str, tuple[str, ...]] = {
    "quadmix": (), "+rcs": ("rcs",), "+fd": ("rcs", "fd"), "+hrda": ("rcs", "fd", "hrda"),
    "+mic": ("rcs", "fd", "hrda", "mic"),
}


def ablation_rows(benchmark: str, profile: str) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """The ablation rows of a benchmark, each (method, overrides): ABLATIONS for the video
    benchmarks, IMAGE_ABLATIONS at `profile`'s sizes (`image_recipe`) for the image ones."""
    if get_benchmark(benchmark).is_video:
        return dict(ABLATIONS)
    return {name: ("quadmix", image_recipe(benchmark, profile, parts))
            for name, parts in IMAGE_ABLATIONS.items()}


def ablation(name: str) -> tuple[str, Mapping[str, Any]]:
    if name not in ABLATIONS:
        raise unknown_name("ablation row", name, ABLATIONS)
    return ABLATIONS[name]


def closest(name: str, choices: list[str]) -> str | None:
    m = difflib.get_close_matches(name, choices, n=1)
    return m[0] if m else None


# ------------------------------------------------------------------------- the command line
_CLI_FLAGS = {"train.steps": "--steps", "train.checkpoint_every": "--checkpoint-every",
              "data.data_root": "--data-root", "data.flow_root": "--flow-root",
              "model.pretrained": "--pretrained"}


def _cli_value(value: Any) -> str:
    """A config value as `--set` / parse_value reads it back."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(_cli_value(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def train_command(cfg: Config, out: str | os.PathLike) -> str:
    """The `udass train` command line that builds `cfg` and writes to `out`.

    The preset's choices as flags, then every field that differs from the preset of that
    benchmark x backbone x method x profile as a flag (--steps, --data-root, ...) or
    `--set key=value`; parsing it back gives `cfg` again (tested). run.json records it, so a run
    trained from a notebook or from Python says how to train it again from a shell.
    """
    base = build_config(cfg.data.benchmark, cfg.model.backbone, cfg.train.method, cfg.train.profile)
    args = ["udass", "train", "--benchmark", cfg.data.benchmark, "--backbone", cfg.model.backbone,
            "--method", cfg.train.method, "--profile", cfg.train.profile, "--seed", str(cfg.train.seed)]
    keys = [k for k in config_diff(cfg, base) if k != "train.seed"]
    if cfg.train.profile == "paper" and cfg.model.pretrained is None:
        keys.append("model.pretrained")  # the paper profile wants `--pretrained none` said
    for key in keys:
        sec, name = key.split(".", 1)
        value = getattr(getattr(cfg, sec), name)
        flag = _CLI_FLAGS.get(key)
        args += [flag, _cli_value(value)] if flag else ["--set", f"{key}={_cli_value(value)}"]
    return shlex.join([*args, "--out", os.fspath(out)])
