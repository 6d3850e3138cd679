"""The QuadMix explorer (notebook 00): a few real training steps, each drawn as a figure of its
samples: S, T with its pseudo-labels, the templates S' and T' with their class masks, and the
mixed clips X_ss, X_tt, X_tss, X_stt (`Trainer.train_step_recorded`). The notebook calls it
through `udass.experiments`.

It starts from a trained QuadMix run of the same config: the run of the profile's schedule when
the run cache holds it finished, else a short run (`fallback_steps`) that it says it trains,
with its progress, so that the default notebook shows something in minutes rather than after a
full training run.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from torch import Tensor

from udass.benchmarks import get_benchmark
from udass.config import Config, apply_overrides
from udass.data.flow import flow_to_color
from udass.figures import (benchmark_palette, blank_panel, class_legend, colour_labels, flow_key,
                           frame_image, image_panel)
from udass.io import save_figure, write_json
from udass.params import Params, check_bool, check_int, config_for, parse_params, results_folder
from udass.publish import staged_folder
from udass.runs import ensure_run, finished_record, run_checkpoint, run_dir
from udass.runtime import git_commit
from udass.train import Trainer

__all__ = ["quadmix_explorer", "show_explorer", "explorer_figure", "FALLBACK_STEPS"]

FALLBACK_STEPS = 150   # the short run the explorer trains when no finished run is cached
HEADS = ("frame t", "frame t-1", "label t", "pixel weight t", "flow t→t-1",
         "template mask /\nconfidence / region")


def explorer_figure(capture: Mapping[str, Any], benchmark: str, sample: int = 0) -> Figure:
    """The figure of one recorded training step (`StepRecord.to_dict()` plus its "step" index),
    sample `sample` of the batch, sized for a notebook's width (about 1000 px at 100 dpi).

    Rows: S (ground truth), T (teacher pseudo-labels), the templates S' and T' (with their class
    masks), the mixed clips X_ss, X_tt, X_tss, X_stt (or the first step's ClassMix sample).
    Columns: frame t, frame t-1, label t, pixel weight of frame t (mean in the corner), flow
    t -> t-1 (colour wheel, keyed at the bottom right), and the template mask / the teacher's
    pseudo-label confidence / the feature-mix region. Class colours are keyed at the bottom.
    """
    palette = benchmark_palette(benchmark)
    rows: list[tuple[str, Mapping[str, Tensor], str]] = [
        ("S\nsource", capture["source"], "none"), ("T\ntarget", capture["target"], "confidence")]
    templates = capture.get("templates")
    mixed = capture.get("mixed") or {}
    if templates is not None:
        rows += [("S'\ntemplate", templates[0], "mask"), ("T'\ntemplate", templates[1], "mask")]
    for key in ("ss", "tt", "tss", "stt", "mix"):
        if key in mixed:
            name = "ClassMix\n(no template)" if key == "mix" else f"X_{key}"
            if key in capture.get("loss_samples", []):
                name += "\n[loss]"
            rows.append((name, mixed[key], "region" if key in ("tss", "stt") else "none"))
    n_classes = get_benchmark(benchmark).num_classes
    legend_rows = -(-n_classes // 6)
    bottom = 0.3 + 0.2 * max(legend_rows, 4)   # inches for the class legend and the flow key
    height = 1.0 * len(rows) + 0.75 + bottom
    fig = Figure(figsize=(10.0, height))
    axes = fig.subplots(len(rows), len(HEADS), squeeze=False)
    region = capture.get("feature_mix_region")
    pseudo = capture.get("pseudo") or {}
    for r, (name, clip, extra) in enumerate(rows):
        frames, labels = clip["frames"][sample], clip["labels"][sample]
        flows, weights = clip["flows"][sample], clip["weights"][sample]
        image_panel(axes[r, 0], frame_image(frames[0]))
        axes[r, 0].set_ylabel(name, fontsize=9, rotation=0, ha="right", va="center", labelpad=6)
        image_panel(axes[r, 2], colour_labels(labels[0], palette))
        image_panel(axes[r, 3], weights[0].numpy(), cmap="viridis", vmin=0, vmax=1)
        axes[r, 3].text(0.03, 0.06, f"mean {float(weights[0].mean()):.2f}", color="white",
                        fontsize=8, transform=axes[r, 3].transAxes,
                        bbox={"facecolor": "black", "alpha": 0.55, "pad": 1.5, "linewidth": 0})
        if frames.shape[0] > 1:
            image_panel(axes[r, 1], frame_image(frames[1]))
            image_panel(axes[r, 4], flow_to_color(flows[0].permute(1, 2, 0).numpy()))
        else:
            for c in (1, 4):
                blank_panel(axes[r, c], "one-frame clip")
        if extra == "mask":
            image_panel(axes[r, 5], clip["mask"][sample][0].float().numpy(), cmap="gray", vmin=0, vmax=1)
        elif extra == "confidence" and pseudo.get("confidence") is not None:
            image_panel(axes[r, 5], pseudo["confidence"][sample][0].numpy(), cmap="magma", vmin=0, vmax=1)
        elif extra == "region" and region is not None:
            image_panel(axes[r, 5], region[sample].float().numpy(), cmap="gray", vmin=0, vmax=1)
        else:
            blank_panel(axes[r, 5])
    for c, h in enumerate(HEADS):
        axes[0, c].set_title(h, fontsize=9)
    fig.suptitle(f"QuadMix explorer: training step {int(capture.get('step', 0)) + 1}, sample "
                 f"{sample}; the loss is on {', '.join(capture.get('loss_samples', [])) or 'none'}",
                 fontsize=11)
    fig.tight_layout(rect=(0, bottom / height, 1, 1 - 0.45 / height), h_pad=0.4, w_pad=0.3)
    class_legend(fig, benchmark, ncol=6, fontsize=8, loc="lower left", anchor=(0.01, 0.0))
    key = fig.add_axes((0.76, 0.1 / height, 0.22, (bottom - 0.25) / height))
    flow_key(key)
    return fig


def _start_config(p: Params, seed: int, fallback: int) -> tuple[Config, str]:
    """The run the explorer starts from, and a sentence saying which: the profile's schedule (or
    `steps`) when that run is finished in the run cache or `steps` was given; else a short run of
    `fallback` steps (trained now if it is not cached either)."""
    full = config_for(p, "quadmix", seed)
    where = run_dir(full, p.runs_root)
    if p.steps is not None or finished_record(full, where) is not None:
        return full, f"the finished {full.train.steps}-step quadmix run {where}"
    steps = min(fallback, full.train.steps)
    short = config_for(dataclasses.replace(p, steps=steps), "quadmix", seed)
    if finished_record(short, run_dir(short, p.runs_root)) is None:
        print(f"no finished {full.train.steps}-step quadmix run in {where} (notebook 02 trains it); "
              f"training a {steps}-step run to start from, progress below (steps="
              f"{full.train.steps} starts from the full schedule instead)", flush=True)
    return short, (f"a short {steps}-step quadmix run {run_dir(short, p.runs_root)} (no finished "
                   f"{full.train.steps}-step run in the run cache)")


def quadmix_explorer(notebook: str = "00_quadmix_explorer", benchmark: Any = "synthetic-video",
                     backbone: Any = "vit", methods: Any = "quadmix", profile: Any = "demo",
                     steps: Any = None, data_root: Any = None, seeds: Any = "0",
                     pretrained: Any = None, device: Any = "auto", results_dir: Any = "results",
                     runs_root: Any = "runs", iterations: Any = 3, init_from_run: Any = True,
                     fallback_steps: Any = FALLBACK_STEPS, progress: bool = True,
                     publish: Any = False) -> dict[str, Any]:
    """Step a QuadMix Trainer a few iterations (`Trainer.train_step_recorded`) and render each step.

    init_from_run: start the student (and so the teacher) from a trained quadmix run of this
    config, so that the pseudo-labels and template masks are meaningful: with `steps` None, the
    profile's run when the run cache holds it finished, else a `fallback_steps` run (trained if
    missing, with progress); with `steps`, that run (trained if missing). False: random
    initialisation. The first step has no templates (it trains as ClassMix), so `iterations` >= 2
    shows the four paths. Writes quadmix_explorer_step<k>.png per step and metrics.json (losses,
    template classes and mask shares per step, the run it started from), replacing the folder
    whole, under results/local/ unless `publish` (`udass.publish`). Nothing is trained into the
    explored run. Returns {"out_dir", "figures", "captures", "losses", "markdown"}.
    """
    p = parse_params(benchmark, backbone, methods, profile, steps, data_root, seeds, pretrained,
                     device, results_dir, runs_root, method_names=("quadmix",), publish=publish)
    n_iter = check_int("iterations", iterations)
    fallback = check_int("fallback_steps", fallback_steps)
    from_run = check_bool("init_from_run", init_from_run)
    seed = p.seeds[0]
    cfg = config_for(p, "quadmix", seed)
    init, start = None, "random initialisation"
    if from_run:
        start_cfg, start = _start_config(p, seed, fallback)
        ensure_run(start_cfg, p.runs_root, p.device, progress)
        init = run_checkpoint(start_cfg, p.runs_root)
        cfg = apply_overrides(cfg, {"train.init_checkpoint": str(init)})
    trainer = Trainer(cfg, p.runs_root / "explorer-scratch", device=p.device, progress=False)
    final = results_folder(p.results_dir, notebook, p.benchmark, p.backbone)
    captures, losses, names = [], [], []
    with staged_folder(final) as out_dir:
        for k, (source, target) in enumerate(trainer.batches(n_iter), start=1):
            values, record = trainer.train_step_recorded(source, target)
            losses.append({n: round(v, 5) for n, v in values.items()})
            capture = {**record.to_dict(), "step": k - 1}
            captures.append(capture)
            names.append(f"quadmix_explorer_step{k}.png")
            save_figure(explorer_figure(capture, p.benchmark), out_dir / names[-1], dpi=100)
        write_json(out_dir / "metrics.json", {
            "notebook": notebook, "benchmark": p.benchmark, "backbone": p.backbone,
            "profile": p.profile, "seed": seed, "iterations": n_iter,
            "init": str(init) if init else "random initialisation", "started_from": start,
            "losses": losses, "steps": [_capture_summary(c) for c in captures],
            "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": git_commit()})
    md = (f"QuadMix explorer on {p.benchmark} ({p.backbone}, {p.profile}): {n_iter} training steps "
          f"starting from {start}. Step 1 has no templates yet (ClassMix); later steps show the "
          f"four paths.")
    figures = {f"step{k}": final / name for k, name in enumerate(names, start=1)}
    return {"out_dir": final, "figures": figures, "captures": captures, "losses": losses,
            "markdown": md, "benchmark": p.benchmark, "started_from": start}


def _capture_summary(capture: Mapping[str, Any]) -> dict[str, Any]:
    """Per step: which samples carried the loss, template class counts and mask shares."""
    out: dict[str, Any] = {"step": int(capture.get("step", 0)) + 1,
                           "loss_samples": list(capture.get("loss_samples", [])),
                           "mixed": sorted((capture.get("mixed") or {}).keys())}
    tpl = capture.get("templates")
    if tpl is not None:
        for name, t in zip(("source_template", "target_template"), tpl):
            out[name] = {"classes_per_sample": t["classes"].sum(1).tolist(),
                         "mask_share": round(float(t["mask"][:, 0].float().mean()), 4)}
    region = capture.get("feature_mix_region")
    if region is not None:
        out["feature_mix_region_share"] = round(float(region.float().mean()), 4)
    return out


def show_explorer(result: Mapping[str, Any]) -> Any:
    """Display the explorer: its summary line and one figure, the last step's (it shows the four
    paths). In a live Jupyter session with ipywidgets a step slider above the figure replaces it
    in place (one figure, never a second copy); without ipywidgets the other steps' PNGs are
    listed. Returns the slider (None without ipywidgets or figures)."""
    # IPython is there only inside a notebook kernel, ipywidgets only in an environment with the
    # interactive extra: imported when the explorer is displayed
    from IPython.display import Image, Markdown, display

    figures = [Path(f) for f in result["figures"].values()]
    display(Markdown(result.get("markdown", "")))
    if not figures:
        return None
    try:
        import ipywidgets as widgets
    except ImportError:
        display(Image(filename=str(figures[-1])))
        if len(figures) > 1:
            display(Markdown("Other steps: " + ", ".join(f"`{f}`" for f in figures[:-1])
                             + " (install ipywidgets for a step slider)."))
        return None
    slider = widgets.IntSlider(value=len(figures), min=1, max=len(figures), description="step",
                               continuous_update=False)
    display(slider)
    handle = display(Image(filename=str(figures[-1])), display_id=True)

    def render(change: Mapping[str, Any]) -> None:
        handle.update(Image(filename=str(figures[int(change["new"]) - 1])))

    slider.observe(render, names="value")
    return slider
