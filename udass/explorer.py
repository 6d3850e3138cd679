"""The QuadMix explorer (notebook 00): a few real training steps, each drawn as a figure of its
samples: S, T with its pseudo-labels, the templates S' and T' with their class masks, and the
mixed clips X_ss, X_tt, X_tss, X_stt (`Trainer.train_step_recorded`). The notebook calls it
through `udass.experiments`.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure
from torch import Tensor

from udass.config import apply_overrides
from udass.data.flow import flow_to_color
from udass.io import save_figure, write_json
from udass.params import check_int, config_for, param_error, parse_params, results_folder
from udass.figures import (benchmark_palette, blank_panel, class_legend, colour_labels, frame_image,
                         image_panel)
from udass.runs import ensure_run, run_checkpoint
from udass.runtime import git_commit
from udass.train import Trainer

__all__ = ["quadmix_explorer", "show_explorer", "explorer_figure"]


def _first(x: Tensor | None) -> Tensor | None:
    return None if x is None else x[0]


def explorer_figure(capture: Mapping[str, Any], benchmark: str, sample: int = 0) -> Any:
    """The figure of one recorded training step (`StepRecord.to_dict()` plus its "step" index),
    sample `sample` of the batch.

    Rows: S (ground truth), T (teacher pseudo-labels), the templates S' and T' (with their class
    masks), the mixed clips X_ss, X_tt, X_tss, X_stt (or the first step's ClassMix sample).
    Columns: frame t, frame t-1, label t, label t-1, pixel weight of frame t, flow t -> t-1
    (colour wheel), and the template mask / pseudo-label confidence / feature-mix region.
    """
    palette = benchmark_palette(benchmark)
    rows: list[tuple[str, Mapping[str, Tensor] | None, str]] = [
        ("S (source, labels)", capture["source"], "none"),
        ("T (target, pseudo-labels)", capture["target"], "confidence")]
    templates = capture.get("templates")
    mixed = capture.get("mixed") or {}
    if templates is not None:
        rows += [("S' template", templates[0], "mask"), ("T' template", templates[1], "mask")]
    for key in ("ss", "tt", "tss", "stt", "mix"):
        if key in mixed:
            name = "ClassMix (first step: no template yet)" if key == "mix" else f"X_{key}"
            if key in capture.get("loss_samples", []):
                name += " [loss]"
            rows.append((name, mixed[key], "region" if key in ("tss", "stt") else "none"))
    heads = ("frame t", "frame t-1", "label t", "label t-1", "weight t", "flow t→t-1", "mask / extra")
    fig = Figure(figsize=(2.1 * len(heads), 1.25 * len(rows) + 1.0))
    axes = fig.subplots(len(rows), len(heads), squeeze=False)
    region = capture.get("feature_mix_region")
    pseudo = capture.get("pseudo") or {}
    for r, (name, clip, extra) in enumerate(rows):
        frames, labels = clip["frames"][sample], clip["labels"][sample]
        flows, weights = clip["flows"][sample], clip["weights"][sample]
        k = frames.shape[0]
        image_panel(axes[r, 0], frame_image(frames[0]))
        axes[r, 0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
        image_panel(axes[r, 2], colour_labels(labels[0], palette))
        image_panel(axes[r, 4], weights[0].numpy(), cmap="viridis", vmin=0, vmax=1)
        axes[r, 4].text(0.02, 0.05, f"{float(weights[0].mean()):.2f}", color="white", fontsize=6,
                        transform=axes[r, 4].transAxes)
        if k > 1:
            image_panel(axes[r, 1], frame_image(frames[1]))
            image_panel(axes[r, 3], colour_labels(labels[1], palette))
            image_panel(axes[r, 5], flow_to_color(flows[0].permute(1, 2, 0).numpy()))
        else:
            for c in (1, 3, 5):
                blank_panel(axes[r, c], "one-frame clip")
        if extra == "mask":
            image_panel(axes[r, 6], clip["mask"][sample][0].float().numpy(), cmap="gray", vmin=0, vmax=1)
        elif extra == "confidence" and pseudo.get("confidence") is not None:
            image_panel(axes[r, 6], pseudo["confidence"][sample][0].numpy(), cmap="magma", vmin=0, vmax=1)
        elif extra == "region" and region is not None:
            image_panel(axes[r, 6], region[sample].float().numpy(), cmap="gray", vmin=0, vmax=1)
        else:
            blank_panel(axes[r, 6])
    for c, h in enumerate(heads):
        axes[0, c].set_title(h, fontsize=8)
    axes[0, 6].set_title("mask / confidence /\nfeature-mix region", fontsize=7)
    fig.suptitle(f"QuadMix explorer: training step {int(capture.get('step', 0)) + 1}, sample {sample}; "
                 f"loss on {', '.join(capture.get('loss_samples', [])) or 'none'}", fontsize=10)
    class_legend(fig, benchmark)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    return fig


def quadmix_explorer(notebook: str = "00_quadmix_explorer", benchmark: Any = "synthetic-video",
                     backbone: Any = "vit", methods: Any = "quadmix", profile: Any = "demo",
                     steps: Any = None, data_root: Any = None, seeds: Any = "0",
                     pretrained: Any = None, device: Any = "auto", results_dir: Any = "results",
                     runs_root: Any = "runs", iterations: Any = 3, init_from_run: bool = True,
                     progress: bool = True) -> dict[str, Any]:
    """Step a QuadMix Trainer a few iterations (`Trainer.train_step_recorded`) and render each step.

    init_from_run: start the student (and so the teacher) from the finished quadmix run of this
    config (trained if missing), so that the pseudo-labels and template masks are meaningful;
    False: random initialisation. The first step has no templates (it trains as ClassMix), so
    `iterations` >= 2 shows the four paths. Writes quadmix_explorer_step<k>.png per step and
    metrics.json (losses, template classes and mask shares per step). Nothing is trained into
    the run cache. Returns {"out_dir", "figures", "captures", "losses", "markdown"}.
    """
    p = parse_params(benchmark, backbone, methods, profile, steps, data_root, seeds, pretrained,
                     device, results_dir, runs_root, method_names=("quadmix",))
    n_iter = check_int("iterations", iterations)
    if not isinstance(init_from_run, bool):
        raise param_error("init_from_run", "True or False", init_from_run)
    seed = p.seeds[0]
    cfg = config_for(p, "quadmix", seed)
    init = None
    if init_from_run:
        ensure_run(cfg, p.runs_root, p.device, progress)
        init = run_checkpoint(cfg, p.runs_root)
        cfg = apply_overrides(cfg, {"train.init_checkpoint": str(init)})
    out_dir = results_folder(p.results_dir, notebook, p.benchmark, p.backbone)
    trainer = Trainer(cfg, p.runs_root / "explorer-scratch", device=p.device, progress=False)
    captures, losses, figures = [], [], {}
    for k, (source, target) in enumerate(trainer.batches(n_iter), start=1):
        values, record = trainer.train_step_recorded(source, target)
        losses.append({n: round(v, 5) for n, v in values.items()})
        capture = {**record.to_dict(), "step": k - 1}
        captures.append(capture)
        fig = explorer_figure(capture, p.benchmark)
        path = out_dir / f"quadmix_explorer_step{k}.png"
        figures[f"step{k}"] = save_figure(fig, path, dpi=100)
    summary = [_capture_summary(c) for c in captures]
    write_json(out_dir / "metrics.json", {
        "notebook": notebook, "benchmark": p.benchmark, "backbone": p.backbone, "profile": p.profile,
        "seed": seed, "iterations": n_iter, "init": str(init) if init else "random initialisation",
        "losses": losses, "steps": summary,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": git_commit()})
    md = (f"QuadMix explorer on {p.benchmark} ({p.backbone}, {p.profile}): {n_iter} training steps "
          f"from {'the trained quadmix run' if init else 'random initialisation'}; step 1 has no "
          f"templates yet (ClassMix), later steps show the four paths.")
    return {"out_dir": out_dir, "figures": figures, "captures": captures, "losses": losses,
            "markdown": md, "benchmark": p.benchmark}


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


def show_explorer(result: Mapping[str, Any]) -> None:
    """Display the explorer's figures: the last step's PNG (it shows the four paths), and in a
    live Jupyter session with ipywidgets installed a slider to step through the iterations."""
    # IPython is there only inside a notebook kernel, ipywidgets only with the `interactive`
    # extra: imported when the explorer is displayed
    from IPython.display import Image, Markdown, display

    figures = list(result["figures"].values())
    display(Markdown(result.get("markdown", "")))
    if not figures:
        return
    display(Image(filename=str(figures[-1])))
    try:
        import ipywidgets as widgets
    except ImportError:
        display(Markdown("Other steps: " + ", ".join(f"`{f}`" for f in figures[:-1])
                         + " (install the `interactive` extra for a step slider)."))
        return
    out = widgets.Output()
    slider = widgets.IntSlider(value=len(figures), min=1, max=len(figures), description="step")

    def render(change: Mapping[str, Any]) -> None:
        out.clear_output(wait=True)
        with out:
            display(Image(filename=str(figures[int(change["new"]) - 1])))

    slider.observe(render, names="value")
    display(widgets.VBox([slider, out]))
    render({"new": slider.value})
