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
# Builds a QuadMix trainer, steps it a few iterations (`Trainer.train_step_recorded`: the step
# returns a record of the samples it built) and shows, for each step, the source clip S and target
# clip T (frames t and t-1, labels / teacher pseudo-labels, pixel weights, optical flow), the
# class-aware templates S' and T' of the previous step with their masks, the four mixed clips
# X_ss, X_tt, X_tss, X_stt, and the region where feature-level mixing fuses X_tss and X_stt. The
# first step has no templates yet (it trains as ClassMix). With `init_from_run` the trainer starts
# from a trained quadmix run of this config, so the pseudo-labels are meaningful: the profile's
# run when `runs/` holds it finished (notebook 02 trains it), else a short `fallback_steps` run,
# which it says it trains, with its progress. Figures go to
# `results/local/00_quadmix_explorer/<benchmark>/<backbone>/` (git-ignored; `publish=True`: the
# committed `results/`); in a live Jupyter session with ipywidgets a slider above the figure steps
# through the iterations. From the repository root: `udass nb 00`, or
# `papermill notebooks/00_quadmix_explorer.ipynb results/executed/00_quadmix_explorer.ipynb -k python3`.

# %% tags=["parameters"]
benchmark: str = "synthetic-video"  # synthetic-video | synthetic-image | a paper benchmark
backbone: str = "vit"  # vit (DAFormer head on MiT) | cnn (DeepLabV2 on ResNet)
methods: str = "quadmix"  # the explorer shows quadmix only
profile: str = "demo"  # test | demo (CPU) | paper (the published recipe, GPU)
steps: "Optional[int]" = None  # schedule of the run it starts from (trained if missing); None: the profile's if cached, else fallback_steps
data_root: "Optional[str]" = None  # folder holding the datasets; None: the synthetic cache
seeds: str = "0"  # training seed (the first one is used)
pretrained: "Optional[str]" = None  # ImageNet checkpoint (paper profile); "none": random init on purpose
device: str = "auto"  # auto | cpu | cuda
results_dir: str = "results"  # where the figures are written
runs_root: str = "runs"  # where training runs and checkpoints are cached
publish: bool = False  # True: write the committed tables in results/ (udass reproduce does); False: results/local/ (git-ignored), same layout
iterations: int = 3  # training steps to capture (2 or more show the four paths)
init_from_run: bool = True  # start from a trained quadmix run (see steps); False: random init
fallback_steps: int = 150  # steps of the short run it trains to start from when the profile's run is not cached

# %%
from udass import experiments

result = experiments.quadmix_explorer(
    "00_quadmix_explorer", benchmark=benchmark, backbone=backbone, methods=methods,
    profile=profile, steps=steps, data_root=data_root, seeds=seeds, pretrained=pretrained,
    device=device, results_dir=results_dir, runs_root=runs_root, iterations=iterations,
    init_from_run=init_from_run, fallback_steps=fallback_steps, publish=publish)

# %%
experiments.show_explorer(result)
