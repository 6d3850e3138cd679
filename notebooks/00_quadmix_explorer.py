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
# # 00 · QuadMix explorer: what one training step mixes
#
# Builds a QuadMix trainer, steps it a few iterations with `trainer.capture = {}` and shows, for
# each step, the source clip S and target clip T (frames t and t-1, labels / teacher
# pseudo-labels, pixel weights, optical flow), the class-aware templates S' and T' of the previous
# step with their masks, the four mixed clips X_ss, X_tt, X_tss, X_stt, and the region where
# feature-level mixing fuses X_tss and X_stt. The first step has no templates yet (it trains as
# ClassMix). With `init_from_run` the trainer starts from the finished quadmix run of this config,
# so the pseudo-labels are meaningful. Figures go to `results/00_quadmix_explorer/<benchmark>/<backbone>/`;
# in a live Jupyter session with ipywidgets a slider steps through the iterations.

# %% tags=["parameters"]
benchmark: str = "synthetic-video"  # synthetic-video | synthetic-image | a paper benchmark
backbone: str = "vit"  # vit (DAFormer head on MiT) | cnn (DeepLabV2 on ResNet)
methods: str = "quadmix"  # the explorer shows quadmix only
profile: str = "demo"  # test | demo (CPU) | paper (the published recipe, GPU)
steps: "Optional[int]" = None  # schedule of the run it starts from; None: the profile's default
data_root: "Optional[str]" = None  # folder holding the datasets; None: the synthetic cache
seeds: str = "0"  # training seed (the first one is used)
pretrained: "Optional[str]" = None  # ImageNet checkpoint (paper profile); "none": random init on purpose
device: str = "auto"  # auto | cpu | cuda
results_dir: str = "results"  # where the figures are written
runs_root: str = "runs"  # where training runs and checkpoints are cached
iterations: int = 3  # training steps to capture (2 or more show the four paths)
init_from_run: bool = True  # start from the trained quadmix run (trained if missing); False: random init

# %%
from udass import experiments

result = experiments.quadmix_explorer(
    "00_quadmix_explorer", benchmark=benchmark, backbone=backbone, methods=methods,
    profile=profile, steps=steps, data_root=data_root, seeds=seeds, pretrained=pretrained,
    device=device, results_dir=results_dir, runs_root=runs_root, iterations=iterations,
    init_from_run=init_from_run)

# %%
experiments.show_explorer(result)
