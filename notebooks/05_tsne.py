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
# # 05 · Feature space: t-SNE of QuadMix against plain ClassMix
#
# Decoder features of the source (S), the target (T) and the mixed domains (QuadMix: X_tss and
# X_stt; DACS: its ClassMix sample), sampled per domain and class with a fixed budget, embedded
# with t-SNE (fixed random state) and coloured by class and by domain. Because a 2-D map can
# mislead, a companion table measures the feature space itself: class silhouette, source-vs-target
# domain silhouette and the class-wise source-target prototype distance, per model. Outputs go to
# `results/local/05_tsne/<benchmark>/<backbone>/` (git-ignored; `publish=True`: the committed
# `results/`). From the repository root: `udass nb 05`, or
# `papermill notebooks/05_tsne.ipynb results/executed/05_tsne.ipynb -k python3`.

# %% tags=["parameters"]
benchmark: str = "synthetic-video"  # synthetic-video | synthetic-image | a paper benchmark
backbone: str = "vit"  # vit (DAFormer head on MiT) | cnn (DeepLabV2 on ResNet)
methods: str = "dacs,quadmix"  # comma-separated: dacs (plain ClassMix), quadmix
profile: str = "demo"  # test | demo (CPU) | paper (the published recipe, GPU)
steps: "Optional[int]" = None  # training steps; None: the profile's default
data_root: "Optional[str]" = None  # folder holding the datasets; None: the synthetic cache
seeds: str = "0"  # comma-separated training seeds; the first one is shown
pretrained: "Optional[str]" = None  # ImageNet checkpoint (paper profile); "none": random init on purpose
device: str = "auto"  # auto | cpu | cuda
results_dir: str = "results"  # where the figure and the companion table are written
runs_root: str = "runs"  # where training runs and checkpoints are cached
publish: bool = False  # True: write the committed tables in results/ (udass reproduce does); False: results/local/ (git-ignored), same layout
per_class: int = 40  # feature pixels sampled per (domain, class)
num_clips: int = 8  # source and target clips the features come from

# %%
from udass import experiments

result = experiments.tsne(
    "05_tsne", benchmark=benchmark, backbone=backbone, methods=methods, profile=profile,
    steps=steps, data_root=data_root, seeds=seeds, pretrained=pretrained, device=device,
    results_dir=results_dir, runs_root=runs_root, per_class=per_class, num_clips=num_clips,
    publish=publish)

# %%
from IPython.display import Image, Markdown, display

display(Markdown(result["markdown"]))
for png in result["figures"].values():
    display(Image(filename=str(png)))
