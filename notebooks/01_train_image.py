# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Image UDA: QuadMix against its baselines
#
# Trains (or reuses) every method on an **image** benchmark (an image is a one-frame clip: the
# same trainer, model and mixing as for video) and writes the comparison table: per-class IoU and
# mIoU of our runs beside the paper's numbers (paper benchmarks) or beside our own baselines (the
# embedded `synthetic-image` benchmark), with figures, under
# `results/local/01_train_image/<benchmark>/<backbone>/` (git-ignored; `publish=True` writes the
# committed `results/` instead, as `udass reproduce` does). Finished runs in `runs/` are reused,
# never retrained. The demo profile trains at a single resolution; the paper profile trains the
# authors' image recipe (MIC + HRDA, rare-class sampling, ImageNet feature distance). With
# `checkpoints` (e.g. released networks converted with `udass convert`) it evaluates them instead
# of training and fills the table beside the paper's rows (docs/reproducing.md). From the
# repository root: `udass nb 01 -p backbone cnn`, or
# `papermill notebooks/01_train_image.ipynb results/executed/01_train_image.ipynb -k python3 -p backbone cnn`.

# %% tags=["parameters"]
benchmark: str = "synthetic-image"  # synthetic-image (embedded) | gtav2cityscapes | synthia2cityscapes
backbone: str = "vit"  # vit (DAFormer head on MiT) | cnn (DeepLabV2 on ResNet)
methods: str = "source_only,dacs,quadmix,oracle"  # comma-separated: source_only, oracle (target labels: the upper bound), dacs, quadmix
profile: str = "demo"  # test | demo (CPU) | paper (the published recipe, GPU)
steps: "Optional[int]" = None  # training steps; None: the profile's default
data_root: "Optional[str]" = None  # folder holding the datasets; None: the synthetic cache
seeds: str = "0"  # comma-separated training seeds, e.g. "0,1,2" (mean ± std over seeds)
pretrained: "Optional[str]" = None  # ImageNet checkpoint (paper profile); "none": random init on purpose
device: str = "auto"  # auto | cpu | cuda
results_dir: str = "results"  # where tables and figures are written
runs_root: str = "runs"  # where training runs and checkpoints are cached
publish: bool = False  # True: write the committed tables in results/ (udass reproduce does); False: results/local/ (git-ignored), same layout
checkpoints: "Optional[str]" = None  # evaluation only, nothing trained: comma-separated label:path pairs of udass checkpoints (udass convert outputs), e.g. "QuadMix:qm.pt"

# %%
from udass import experiments

result = experiments.run_table(
    "01_train_image", benchmark=benchmark, backbone=backbone, methods=methods, profile=profile,
    steps=steps, data_root=data_root, seeds=seeds, pretrained=pretrained, device=device,
    results_dir=results_dir, runs_root=runs_root, publish=publish, checkpoints=checkpoints)

# %%
from IPython.display import Image, Markdown, display

display(Markdown(result["markdown"]))
for png in result["figures"].values():
    display(Image(filename=str(png)))
