"""Configuration as data: frozen dataclasses, presets as tables of dotted overrides, ablation rows.

This module is over 600 lines on purpose: the Config dataclasses, the preset tables that fill
them (the paper image recipe among them), their validation and the ablation rows are one
concept that every layer reads, and the tables need the dataclasses while `build_config` needs
both; split across modules they would import each other.

A run is fully described by one `Config`: the Config defaults, then the preset of benchmark x
backbone x method x profile (the tables PROFILE_PRESETS, BACKBONE_PRESETS, KIND_PRESETS and
BENCHMARK_PRESETS, applied in that order), then `--set key=value` overrides (dotted field
names, e.g. `quadmix.paths=ss,tt`). Nothing is selected by editing source. Ablation rows are
named override sets (`ABLATIONS` for video, `IMAGE_ABLATIONS` for
images), and so are the image recipes (`RECIPES`). This module imports nothing of udass but the benchmark
registry and the errors: every layer may read a Config.

Profiles:
- `test`:  tiny model, tiny frames, a few steps: what the test suite trains.
- `demo`:  a small model at reduced resolution, a CPU-sized schedule (the embedded benchmark by
           default; on a real benchmark id it is a smoke test of real data on a laptop).
- `paper`: the published recipe, line by line from docs/datasets.md ("Training recipes"); for
           GTAV / SYNTHIA -> Cityscapes the authors' image recipe (`PAPER_IMAGE_RECIPES`).
The values and the reasons for them: docs/method.md, "Profiles and recipe choices".
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from udass.benchmarks import BENCHMARKS, get_benchmark
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
# A preset is dotted overrides of the Config defaults, read from the tables below in this order
# (a later table's value wins): PROFILE_PRESETS[profile], BACKBONE_PRESETS[backbone, profile],
# KIND_PRESETS[benchmark kind, profile], BENCHMARK_PRESETS[benchmark, backbone, profile]. A key
# element ANY matches every value; within a table, the matching entries apply in their written
# order (general before specific). The reasons and the measured runs behind each value are in
# docs/method.md ("Profiles and recipe choices"); the paper's values in docs/datasets.md ("Training recipes").
Overrides = Mapping[str, Any]
ANY = "*"

PROFILE_PRESETS: Mapping[str, Overrides] = {
    "test": {"data.source_size": (32, 64), "data.target_size": (32, 64), "data.crop_size": (32, 64),
             "data.synth_size": "tiny", "teacher.ema": 0.99, "train.lambda_t": 1.0,
             "train.steps": 4, "train.checkpoint_every": 2, "train.eval_every": 0,
             "train.log_every": 1},
    "demo": {"data.source_size": (128, 256), "data.target_size": (128, 256),
             "data.crop_size": (96, 192), "data.synth_size": "demo", "teacher.ema": 0.99,
             "train.lambda_t": 0.0, "train.steps": 1000, "train.checkpoint_every": 250,
             "train.eval_every": 0, "train.log_every": 10},
    "paper": {"data.num_workers": 4, "teacher.ema": 0.999, "train.lambda_t": 1.0,
              "train.steps": 40000, "train.checkpoint_every": 2000, "train.eval_every": 4000,
              "train.log_every": 50},
}

_SGD: Overrides = {"optim.name": "sgd", "optim.momentum": 0.9, "optim.weight_decay": 5e-4,
                   "optim.head_lr_mult": 10.0, "optim.warmup_steps": 0, "optim.poly_power": 0.9}
_ADAMW: Overrides = {"optim.name": "adamw", "optim.weight_decay": 0.01, "optim.head_lr_mult": 10.0,
                     "optim.warmup_steps": 0, "optim.poly_power": 1.0}
_CNN: Overrides = {"model.drop_path": 0.0}
_VIT: Overrides = {"model.drop_path": 0.1}

BACKBONE_PRESETS: Mapping[tuple[str, str], Overrides] = {
    ("cnn", "test"): {**_CNN, "model.variant": "resnet_tiny", **_SGD, "optim.lr": 1e-3},
    ("cnn", "demo"): {**_CNN, "model.variant": "resnet_mini", "model.bn": "frozen", **_ADAMW,
                      "optim.lr": 6e-4},
    ("cnn", "paper"): {**_CNN, "model.variant": "resnet101", **_SGD, "optim.lr": 2.5e-4},
    ("vit", "test"): {**_VIT, "model.variant": "mit_tiny", **_ADAMW, "optim.lr": 6e-4},
    ("vit", "demo"): {**_VIT, "model.variant": "mit_mini", **_ADAMW, "optim.lr": 6e-4},
    ("vit", "paper"): {**_VIT, "model.variant": "mit_b5", **_ADAMW, "optim.lr": 6e-5,
                       "optim.warmup_steps": 1500},
}

KIND_PRESETS: Mapping[tuple[str, str], Overrides] = {
    ("video", ANY): {"data.hist_match": True, "model.temporal_fusion": True},
    ("image", ANY): {"data.hist_match": False, "model.temporal_fusion": False},
    ("video", "paper"): {"data.crop_size": (512, 1024), "data.batch_source": 1,
                         "data.batch_target": 1},
    ("image", "paper"): {"data.crop_size": (512, 512), "data.batch_source": 2,
                         "data.batch_target": 2},
}

# The paper profile's frame sizes are those of each dataset layout (docs/datasets.md, "Resolutions");
# an embedded benchmark takes those of the layouts it is written in.
_CITYSCAPES_PAPER: Overrides = {"data.target_size": (512, 1024)}
BENCHMARK_PRESETS: Mapping[tuple[str, str, str], Overrides] = {
    ("synthia-seq2cityscapes-seq", ANY, "paper"): {
        **_CITYSCAPES_PAPER, "data.source_size": (640, 1280), "data.source_crop_bottom": 120},
    ("viper2cityscapes-seq", ANY, "test"): {"train.lambda_t": 0.2},
    ("viper2cityscapes-seq", ANY, "paper"): {
        **_CITYSCAPES_PAPER, "data.source_size": (720, 1280), "train.lambda_t": 0.2},
    ("viper2cityscapes-seq", "cnn", "paper"): {"optim.lr": 1e-4},
    ("gtav2cityscapes", ANY, "paper"): {**_CITYSCAPES_PAPER, "data.source_size": (720, 1280)},
    ("synthia2cityscapes", ANY, "paper"): {**_CITYSCAPES_PAPER, "data.source_size": (760, 1280)},
    ("synthetic-video", ANY, ANY): {"data.flow_source": "exact"},
    ("synthetic-video", ANY, "paper"): {**_CITYSCAPES_PAPER, "data.source_size": (640, 1280)},
    ("synthetic-image", ANY, ANY): {"data.flow_source": "exact"},
    ("synthetic-image", ANY, "paper"): {**_CITYSCAPES_PAPER, "data.source_size": (720, 1280)},
}

# build_config keyword shortcuts -> dotted keys
SHORTCUTS: Mapping[str, str] = {"seed": "train.seed", "steps": "train.steps",
                                "data_root": "data.data_root", "flow_root": "data.flow_root",
                                "pretrained": "model.pretrained"}


def _matching(table: Mapping[Any, Overrides], key: tuple[str, ...]) -> list[Overrides]:
    """The entries of `table` whose key equals `key` element by element (ANY matches anything),
    in the table's order."""
    out = []
    for k, overrides in table.items():
        parts = k if isinstance(k, tuple) else (k,)
        if all(p in (ANY, v) for p, v in zip(parts, key, strict=True)):
            out.append(overrides)
    return out


def preset_overrides(benchmark: str, backbone: str, method: str, profile: str,
                     recipes: bool = True) -> dict[str, Any]:
    """The dotted overrides of the preset benchmark x backbone x method x profile, in the order
    the tables apply (see above), then (with `recipes`) RECIPE_PRESETS[benchmark, backbone,
    profile], the image recipe of the paper profile; `build_config` applies them to the Config
    defaults."""
    kind = get_benchmark(benchmark).kind
    out: dict[str, Any] = {"data.benchmark": benchmark, "model.backbone": backbone,
                           "train.method": method, "train.profile": profile}
    for table, key in ((PROFILE_PRESETS, (profile,)), (BACKBONE_PRESETS, (backbone, profile)),
                       (KIND_PRESETS, (kind, profile)),
                       (BENCHMARK_PRESETS, (benchmark, backbone, profile))):
        for overrides in _matching(table, key):
            out.update(overrides)
    if recipes:
        for overrides in _matching(RECIPE_PRESETS, (benchmark, backbone, profile)):
            out.update(overrides)
    return out


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


def _single_resolution_sizes(benchmark: str, profile: str) -> dict[str, Size]:
    """crop_size, source_size and target_size of the preset without any recipe table."""
    p = preset_overrides(benchmark, BACKBONES[0], METHODS[0], profile, recipes=False)
    d = DataConfig()
    return {k: p.get(f"data.{k}", getattr(d, k)) for k in ("crop_size", "source_size", "target_size")}


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
    single = _single_resolution_sizes(benchmark, profile)
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
# the last preset table (see preset_overrides): the paper image recipe by (benchmark, backbone)
RECIPE_PRESETS: Mapping[tuple[str, str, str], Overrides] = {
    (b, bb, "paper"): r for (b, bb), r in PAPER_IMAGE_RECIPES.items()}

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

    `fields_` are shortcuts for common dotted keys given as keyword arguments (`SHORTCUTS`: e.g.
    `seed=1` -> train.seed, `steps=50` -> train.steps, `data_root=...` -> data.data_root);
    None leaves the preset's value.
    """
    if benchmark not in BENCHMARKS:
        raise unknown_name("benchmark", benchmark, BENCHMARKS)
    if backbone not in BACKBONES:
        raise unknown_name("backbone", backbone, BACKBONES)
    if method not in METHODS:
        raise unknown_name("method", method, METHODS)
    if profile not in PROFILES:
        raise unknown_name("profile", profile, PROFILES)
    merged = preset_overrides(benchmark, backbone, method, profile)
    for k, v in fields_.items():
        if k not in SHORTCUTS:
            raise unknown_name("config shortcut", k, SHORTCUTS)
        if v is not None:
            merged[SHORTCUTS[k]] = v
    merged.update(overrides or {})
    return apply_overrides(Config(), merged)


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
# Each ablation row of 03_ablation is a method plus an override set (docs/method.md, section 5).
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
