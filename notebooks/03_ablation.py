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
# # 03 · Ablation: what each part of QuadMix contributes
#
# Each row of `udass.config.ABLATIONS` is a method plus a set of config overrides (docs/method.md
# section 5): source only; + ClassMix (DACS); self-training; the intra-domain paths only; + each
# cross-domain path; all four paths; + feature-level mixing; + spatio-temporal aggregation; and the
# temporal weighting switched off; the target loss at full weight; and, as a diagnostic, the
# source templates only (no target template T' pasted anywhere). Every row is trained (or
# reused: runs are shared with the other notebooks) for each seed; the table reports the mean ±
# sample standard deviation over seeds and the figure shows the spread, under
# `results/local/03_ablation/<benchmark>/<backbone>/` (git-ignored; `publish=True` writes the
# committed `results/`, as `udass reproduce` does). The paper's ablation table was not available,
# so only our rows are shown. From the repository root: `udass nb 03 -p seeds 0`, or
# `papermill notebooks/03_ablation.ipynb results/executed/03_ablation.ipynb -k python3 -p seeds 0`.
#
# On an image benchmark (`benchmark="synthetic-image"`, or GTAV / SYNTHIA -> Cityscapes) the rows
# are the image recipe's components instead (`udass.config.IMAGE_ABLATIONS`): QuadMix at a single
# resolution, then + rare-class sampling, + ImageNet feature distance, + HRDA multi-resolution
# training, + MIC masked image consistency, each row keeping the components of the row above, at
# the profile's sizes (docs/method.md, "The components at the demo and test sizes").

# %% tags=["parameters"]
benchmark: str = "synthetic-video"  # synthetic-video | synthetic-image (embedded) | a paper benchmark
backbone: str = "vit"  # vit (DAFormer head on MiT) | cnn (DeepLabV2 on ResNet)
methods: str = "all"  # ablation rows: "all" or names of udass.config.ABLATIONS (video) / IMAGE_ABLATIONS (image)
profile: str = "demo"  # test | demo (CPU) | paper (the published recipe, GPU)
steps: "Optional[int]" = None  # training steps; None: the profile's default
data_root: "Optional[str]" = None  # folder holding the datasets; None: the synthetic cache
seeds: str = "0,1,2"  # comma-separated training seeds: the spread of each row
pretrained: "Optional[str]" = None  # ImageNet checkpoint (paper profile); "none": random init on purpose
device: str = "auto"  # auto | cpu | cuda
results_dir: str = "results"  # where tables and figures are written
runs_root: str = "runs"  # where training runs and checkpoints are cached
publish: bool = False  # True: write the committed tables in results/ (udass reproduce does); False: results/local/ (git-ignored), same layout

# %%
from udass import experiments

result = experiments.run_ablation(
    "03_ablation", benchmark=benchmark, backbone=backbone, methods=methods, profile=profile,
    steps=steps, data_root=data_root, seeds=seeds, pretrained=pretrained, device=device,
    results_dir=results_dir, runs_root=runs_root, publish=publish)

# %%
from IPython.display import Image, Markdown, display

display(Markdown(result["markdown"]))
for png in result["figures"].values():
    display(Image(filename=str(png)))
