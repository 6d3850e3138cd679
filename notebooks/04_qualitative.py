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
# # 04 · Qualitative results
#
# Target validation frames, their ground truth and the predictions of source-only, DACS and
# QuadMix (coloured with the protocol's palette, per-image pixel accuracy in the titles), and on a
# video benchmark a temporal strip: consecutive frames of one validation snippet, predicted as
# `udass segment` does (clip (t, t-1), DIS flow on the fly), with the share of pixels that agree
# with the flow-warped previous prediction. The runs are those of the same config (the first
# seed), trained if missing. Figures go to `results/local/04_qualitative/<benchmark>/<backbone>/`
# (git-ignored; `publish=True`: the committed `results/`). From the repository root:
# `udass nb 04`, or `papermill notebooks/04_qualitative.ipynb results/executed/04_qualitative.ipynb -k python3`.

# %% tags=["parameters"]
benchmark: str = "synthetic-video"  # synthetic-video | synthetic-image | a paper benchmark
backbone: str = "vit"  # vit (DAFormer head on MiT) | cnn (DeepLabV2 on ResNet)
methods: str = "source_only,dacs,quadmix"  # comma-separated: source_only, oracle, dacs, quadmix
profile: str = "demo"  # test | demo (CPU) | paper (the published recipe, GPU)
steps: "Optional[int]" = None  # training steps; None: the profile's default
data_root: "Optional[str]" = None  # folder holding the datasets; None: the synthetic cache
seeds: str = "0"  # comma-separated training seeds; the first one is shown
pretrained: "Optional[str]" = None  # ImageNet checkpoint (paper profile); "none": random init on purpose
device: str = "auto"  # auto | cpu | cuda
results_dir: str = "results"  # where figures are written
runs_root: str = "runs"  # where training runs and checkpoints are cached
publish: bool = False  # True: write the committed tables in results/ (udass reproduce does); False: results/local/ (git-ignored), same layout
num_images: int = 4  # validation frames in the grid (evenly spaced over the split)
num_frames: int = 5  # consecutive frames in the temporal strip (video benchmarks)

# %%
from udass import experiments

result = experiments.qualitative(
    "04_qualitative", benchmark=benchmark, backbone=backbone, methods=methods, profile=profile,
    steps=steps, data_root=data_root, seeds=seeds, pretrained=pretrained, device=device,
    results_dir=results_dir, runs_root=runs_root, num_images=num_images, num_frames=num_frames,
    publish=publish)

# %%
from IPython.display import Image, Markdown, display

display(Markdown(result["markdown"]))
for png in result["figures"].values():
    display(Image(filename=str(png)))
