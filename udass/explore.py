"""Figures that look inside trained runs: qualitative predictions and the t-SNE of decoder
features (notebooks 04 and 05; the notebooks call them through `udass.experiments`).

Every function validates its parameters with `udass.params.parse_params`, gets its runs from the
run cache (`udass.runs.ensure_run`: trained only when missing) and writes PNG figures plus a
metrics.json (and, for t-SNE, a companion table) under `<results_dir>/<notebook>/<benchmark>/<backbone>/`.
Figures use `matplotlib.figure.Figure` (no pyplot, no backend switch).
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from udass.benchmarks import IGNORE_INDEX, get_benchmark
from udass.data.clip import collate_clips
from udass.data.datasets import build_dataset
from udass.data.flow import warp, warp_valid_mask
from udass.data.imageio import read_rgb
from udass.data.transforms import random_crop
from udass.errors import UdassError
from udass.evaluate import load_network
from udass.io import save_figure, write_json, write_text
from udass.method.aggregation import downsample_labels
from udass.method.quadmix import MixedClip, classmix, quadmix
from udass.method.templates import choose_classes, source_template
from udass.params import (REFERENCE_NETWORK, Params, check_int, config_for, param_error, parse_params,
                          results_folder)
from udass.publish import rebase, staged_folder
from udass.figures import benchmark_palette, class_legend, colour_labels, frame_image, image_panel
from udass.runs import ensure_run, run_checkpoint
from udass.runtime import git_commit, resolve_device
from udass.segment import dis_flow, predict_sequence

__all__ = ["qualitative", "tsne", "feature_samples", "embedding_metrics"]

DOMAIN_COLOURS = {"S": "#1f77b4", "T": "#d62728", "X_tss": "#2ca02c", "X_stt": "#9467bd",
                  "ClassMix": "#ff7f0e"}


# =========================================================================== shared helpers
def _device(p: Params) -> torch.device:
    return resolve_device(p.device)


def _load_models(p: Params, methods: Sequence[str], seed: int, network: str, device: torch.device,
                 progress: bool) -> dict[str, tuple[torch.nn.Module, Any, dict[str, Any]]]:
    """{method: (network in eval mode, Config, metrics record)} of the runs of one seed."""
    if network not in ("student", "teacher"):
        raise param_error("network", "student or teacher", network)
    out = {}
    for m in methods:
        cfg = config_for(p, m, seed)
        rec = ensure_run(cfg, p.runs_root, p.device, progress)
        net, cfg, _ = load_network(run_checkpoint(cfg, p.runs_root), network, device)
        out[m] = (net, cfg, rec)
    return out


# =========================================================================== 04 qualitative
@torch.no_grad()
def _predict(net: torch.nn.Module, frames: Tensor, flows: Tensor, size: tuple[int, int],
             device: torch.device) -> Tensor:
    """Arg-max train ids [H, W] of one clip (frames [K, 3, h, w]) at `size`."""
    logits = net(frames[None].to(device), flows[None].to(device))["logits"].float()
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1)[0].cpu()


def _strip_paths(val: Any, index: int, num_frames: int) -> list[Path]:
    """Up to `num_frames` consecutive frames ending at val item `index`'s frame t, oldest first
    (frames that do not exist on disk end the strip)."""
    lay, key = val.layout, val.items[index]
    paths = []
    for k in range(num_frames):
        path = lay.root / lay.frame_rel(key, k)
        if not path.is_file():
            break
        paths.append(path)
    return paths[::-1]


def _strip_consistency(preds: Sequence[np.ndarray], frames: Sequence[np.ndarray]) -> float | None:
    """Percent of pixels whose prediction equals the previous frame's prediction warped by the DIS
    flow (pixels whose flow leaves the frame are skipped), pooled over the strip."""
    agree = total = 0
    for t in range(1, len(preds)):
        h, w = preds[t].shape
        cur = cv2.resize(frames[t], (w, h), interpolation=cv2.INTER_AREA)
        prev = cv2.resize(frames[t - 1], (w, h), interpolation=cv2.INTER_AREA)
        flow = torch.from_numpy(dis_flow(cur, prev)).permute(2, 0, 1)[None].float()
        warped = warp(torch.from_numpy(preds[t - 1])[None, None].float(), flow, mode="nearest")
        valid = warp_valid_mask(flow)[0]
        same = (warped[0, 0].round().long() == torch.from_numpy(preds[t])) & valid
        agree += int(same.sum())
        total += int(valid.sum())
    return None if total == 0 else round(100.0 * agree / total, 2)


def _prediction_grid(models: Mapping[str, Any], val: Any, picks: Sequence[int], benchmark: str,
                     device: torch.device, title: str, out_png: Path
                     ) -> tuple[Path, list[str], dict[str, list[float | None]]]:
    """Rows: val items `picks`; columns: frame t, ground truth, each model's prediction (with its
    pixel accuracy on that frame). Returns (PNG, clip names, {model: accuracies})."""
    palette = benchmark_palette(benchmark)
    cols = 2 + len(models)
    fig = Figure(figsize=(2.6 * cols, 1.45 * len(picks) + 1.2))
    axes = fig.subplots(len(picks), cols, squeeze=False)
    accuracy: dict[str, list[float | None]] = {m: [] for m in models}
    names = []
    for r, i in enumerate(picks):
        clip = val[i]
        names.append(clip.name)
        gt = clip.labels[0]
        image_panel(axes[r, 0], frame_image(clip.frames[0]), "target frame" if r == 0 else "")
        axes[r, 0].set_ylabel(clip.name, fontsize=7)
        image_panel(axes[r, 1], colour_labels(gt, palette), "ground truth" if r == 0 else "")
        labelled = gt != IGNORE_INDEX
        for c, (m, (net, _, _)) in enumerate(models.items(), start=2):
            pred = _predict(net, clip.frames, clip.flows, tuple(gt.shape), device)
            acc = (None if not bool(labelled.any()) else
                   round(100.0 * float((pred[labelled] == gt[labelled]).float().mean()), 1))
            accuracy[m].append(acc)
            lines = ([m] if r == 0 else []) + ([] if acc is None else [f"acc {acc:.1f}%"])
            image_panel(axes[r, c], colour_labels(pred, palette), "\n".join(lines))
    fig.suptitle(title, fontsize=10)
    class_legend(fig, benchmark)
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    return save_figure(fig, out_png), names, accuracy


def _temporal_strip(models: Mapping[str, Any], paths: Sequence[Path], size: tuple[int, int],
                    benchmark: str, device: torch.device, out_png: Path
                    ) -> tuple[Path, dict[str, float | None]]:
    """Consecutive frames (oldest first) and each model's predictions, as `udass segment` makes
    them; each row labelled with its flow-warped consistency. Returns (PNG, {model: %})."""
    palette = benchmark_palette(benchmark)
    frames = [read_rgb(path) for path in paths]
    preds = {m: predict_sequence(net, frames, size, device, out_size="input")
             for m, (net, _, _) in models.items()}
    consistency = {m: _strip_consistency(preds[m], frames) for m in models}
    n = len(frames)
    fig = Figure(figsize=(2.3 * n, 1.3 * (1 + len(models)) + 1.4))
    axes = fig.subplots(1 + len(models), n, squeeze=False)
    for j, rgb in enumerate(frames):
        image_panel(axes[0, j], rgb, f"t-{n - 1 - j}" if j < n - 1 else "t (annotated)")
        for r, m in enumerate(models, start=1):
            image_panel(axes[r, j], colour_labels(preds[m][j], palette))
    axes[0, 0].set_ylabel("frames", fontsize=8)
    for r, m in enumerate(models, start=1):
        cons = consistency[m]
        axes[r, 0].set_ylabel(m + ("" if cons is None else f"\n{cons:.1f}% consistent"), fontsize=8)
    fig.suptitle(f"temporal strip: {n} consecutive frames ending at {paths[-1].name} (DIS flow on the "
                 f"fly; consistency = agreement with the flow-warped previous prediction)", fontsize=9)
    height = fig.get_figheight()
    class_legend(fig, benchmark)   # the predictions' colours, in a band under the panels
    fig.tight_layout(rect=(0, 0.55 / height, 1, 1 - 0.35 / height))
    return save_figure(fig, out_png), consistency


def qualitative(notebook: str = "04_qualitative", benchmark: Any = "synthetic-video",
                backbone: Any = "vit", methods: Any = "source_only,dacs,quadmix",
                profile: Any = "demo", steps: Any = None, data_root: Any = None, seeds: Any = "0",
                pretrained: Any = None, device: Any = "auto", results_dir: Any = "results",
                runs_root: Any = "runs", num_images: Any = 4, num_frames: Any = 5,
                network: str = REFERENCE_NETWORK, progress: bool = True, publish: Any = False
                ) -> dict[str, Any]:
    """Target val frames, ground truth and each method's prediction (protocol palette), and for
    video benchmarks a temporal strip over `num_frames` consecutive frames of one val snippet.

    Uses the runs of the first seed (trained if missing). Writes qualitative.png,
    temporal_strip.png (video) and metrics.json (per-image pixel accuracy of each method, the
    strip's flow-warped prediction consistency, the runs used). The strip runs every frame as
    the clip (t, t-1) with DIS flow computed on the fly, as `udass segment` does. The folder is
    replaced whole, under results/local/ unless `publish` (`udass.publish`).
    """
    p = parse_params(benchmark, backbone, methods, profile, steps, data_root, seeds, pretrained,
                     device, results_dir, runs_root, publish=publish)
    n_images = check_int("num_images", num_images)
    n_frames = check_int("num_frames", num_frames, minimum=2)
    bm = get_benchmark(p.benchmark)
    dev = _device(p)
    seed = p.seeds[0]
    models = _load_models(p, p.methods, seed, network, dev, progress)
    cfg = next(iter(models.values()))[1]
    val = build_dataset(bm.name, "val", p.data_root, "target", data_cfg=cfg.data)
    final = results_folder(p.results_dir, notebook, bm.name, p.backbone)
    with staged_folder(final) as out_dir:
        figures, record = _qualitative_files(notebook, p, bm, models, val, n_images, n_frames,
                                             network, seed, out_dir)
    md = (f"Predictions of {', '.join(p.methods)} on {len(record['images'])} target val frames of "
          f"{bm.name} ({p.backbone}, {p.profile} profile, {network}, seed {seed}); per-image pixel "
          f"accuracy in the titles.")
    return {"out_dir": final, "figures": {k: rebase(v, out_dir, final) for k, v in figures.items()},
            "files": {"metrics": final / "metrics.json"}, "markdown": md, "record": record}


def _qualitative_files(notebook: str, p: Params, bm: Any, models: Mapping[str, Any], val: Any,
                       n_images: int, n_frames: int, network: str, seed: int, out_dir: Path
                       ) -> tuple[dict[str, Path], dict[str, Any]]:
    """The figures and metrics.json of `qualitative`, written into `out_dir`."""
    dev = _device(p)
    cfg = next(iter(models.values()))[1]
    picks = sorted(set(np.linspace(0, len(val) - 1, min(n_images, len(val))).round().astype(int).tolist()))
    title = f"{bm.name} ({p.backbone}, {p.profile}): target val predictions ({network}, seed {seed})"
    grid, names, accuracy = _prediction_grid(models, val, picks, bm.name, dev, title,
                                             out_dir / "qualitative.png")
    figures = {"qualitative": grid}
    strip: dict[str, Any] = {}
    if bm.is_video:
        paths = _strip_paths(val, picks[0], n_frames)
        figures["temporal_strip"], consistency = _temporal_strip(
            models, paths, tuple(cfg.data.target_size), bm.name, dev, out_dir / "temporal_strip.png")
        strip = {"frames": [path.name for path in paths], "consistency": consistency}
    record = {"notebook": notebook, "benchmark": bm.name, "backbone": p.backbone,
              "profile": p.profile, "network": network, "seed": seed, "images": names,
              "pixel_accuracy": accuracy, "strip": strip,
              "miou": {m: (rec if network == "student" else rec.get("teacher") or {}).get("miou")
                       for m, (_, _, rec) in models.items()},
              "runs": {m: rec["run_dir"] for m, (_, _, rec) in models.items()},
              "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": git_commit()}
    write_json(out_dir / "metrics.json", record)
    return figures, record


# =========================================================================== 05 t-SNE
def _batch(ds: Any, indices: Sequence[int]) -> Any:
    return collate_clips([ds[i] for i in indices])


def _mixed_inputs(cfg: Any, method: str, data_root: str | None, num_clips: int, seed: int
                  ) -> dict[str, Any]:
    """S, T and the mixed domains of `method` (as MixedClips with true class labels).

    S: labelled source train clips; T: target train clips with their ground truth (used for the
    class colours and the target template's class mask: an analysis, not training); templates
    S', T' from a second, disjoint draw (the "previous step"). quadmix -> X_tss, X_stt; dacs ->
    the ClassMix sample (plain ClassMix of S onto T). Every clip is cropped to the profile's crop.
    """
    bm = get_benchmark(cfg.data.benchmark)
    g = torch.Generator().manual_seed(seed)
    src = build_dataset(bm.name, "train", data_root, "source", data_cfg=cfg.data)
    tgt = build_dataset(bm.name, "train", data_root, "target", with_labels=True, data_cfg=cfg.data)
    n = min(num_clips, len(src) // 2, len(tgt) // 2)
    if n < 1:
        raise UdassError(f"{bm.name}: t-SNE needs at least 2 source and 2 target train clips")
    si = torch.randperm(len(src), generator=g)[: 2 * n].tolist()
    ti = torch.randperm(len(tgt), generator=g)[: 2 * n].tolist()

    def clip(ds: Any, idx: Sequence[int]) -> MixedClip:
        b = random_crop(_batch(ds, idx), cfg.data.crop_size, g)
        k = min(2, b.num_frames)
        return MixedClip.from_source(b.frames[:, :k], b.flows[:, :k - 1], b.labels[:, :k])

    S, T = clip(src, si[:n]), clip(tgt, ti[:n])
    out: dict[str, Any] = {"S": S, "T": T}
    C = bm.num_classes
    if method == "quadmix":
        Sp, Tp = clip(src, si[n:]), clip(tgt, ti[n:])
        long_tail = bm.long_tail or ()
        c_s = choose_classes(Sp.labels[:, 0], C, g, long_tail=long_tail)
        c_t = choose_classes(Tp.labels[:, 0], C, g, exclude=c_s)
        s_tpl = source_template(Sp.frames, Sp.flows, Sp.labels, c_s)
        t_tpl = source_template(Tp.frames, Tp.flows, Tp.labels, c_t)  # true labels, weights 1
        mixed = quadmix(S, T, s_tpl, t_tpl)
        out.update(X_tss=mixed["tss"], X_stt=mixed["stt"])
    else:
        out["ClassMix"] = classmix(S, T, choose_classes(S.labels[:, 0], C, g))
    return out


@torch.no_grad()
def feature_samples(net: torch.nn.Module, domains: Mapping[str, Any], num_classes: int,
                    per_class: int, seed: int, device: torch.device
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoder features of frame t, sampled per (domain, class) with a fixed budget.

    domains: {name: MixedClip}; features = net(frames, flows)["features"] [B, D, h, w], labels of
    frame t downsampled (nearest) to (h, w); at most `per_class` pixels per (domain, class), drawn
    with a generator seeded by `seed`. Returns (X [N, D] float32, class ids [N], domain index [N]
    into the order of `domains`).
    """
    g = torch.Generator().manual_seed(seed)
    xs, cs, ds = [], [], []
    net.eval()
    for d, (name, clip) in enumerate(domains.items()):
        feats = net(clip.frames.to(device), clip.flows.to(device))["features"].float().cpu()
        labels = downsample_labels(clip.labels[:, 0], tuple(feats.shape[-2:]))
        flat = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
        lab = labels.reshape(-1)
        for c in range(num_classes):
            idx = (lab == c).nonzero().flatten()
            if idx.numel() == 0:
                continue
            idx = idx[torch.randperm(idx.numel(), generator=g)[:per_class]]
            xs.append(flat[idx])
            cs.append(torch.full((idx.numel(),), c))
            ds.append(torch.full((idx.numel(),), d))
    if not xs:
        raise UdassError("no labelled pixel to sample features from; check the data root")
    return torch.cat(xs).numpy(), torch.cat(cs).numpy(), torch.cat(ds).numpy()


def embedding_metrics(x: np.ndarray, classes: np.ndarray, domains: np.ndarray, source: int = 0,
                      target: int = 1, min_points: int = 3) -> dict[str, Any]:
    """Numbers behind a t-SNE figure, computed on the features themselves (not the 2-D map).

    class_silhouette: silhouette score of the class labels over all points (higher: classes
    better separated); domain_silhouette: silhouette of source vs target labels over the S and T
    points (near 0 or below: the domains are mixed, i.e. aligned); prototype_distance: mean over
    classes with >= min_points in both S and T of the cosine distance between the source and the
    target class means (lower: class-wise aligned). None where undefined.
    """
    # scikit-learn takes seconds to import: only the t-SNE notebook needs it
    from sklearn.metrics import silhouette_score

    def sil(xx: np.ndarray, yy: np.ndarray) -> float | None:
        k = len(np.unique(yy))
        if k < 2 or k >= len(yy):
            return None
        return round(float(silhouette_score(xx, yy, metric="euclidean")), 4)

    st = np.isin(domains, (source, target))
    dists = []
    for c in np.unique(classes):
        a = x[(classes == c) & (domains == source)]
        b = x[(classes == c) & (domains == target)]
        if len(a) >= min_points and len(b) >= min_points:
            pa, pb = a.mean(0), b.mean(0)
            denom = float(np.linalg.norm(pa) * np.linalg.norm(pb))
            if denom > 0:
                dists.append(1.0 - float(pa @ pb) / denom)
    return {"points": int(len(x)), "class_silhouette": sil(x, classes),
            "domain_silhouette": sil(x[st], domains[st]),
            "prototype_distance": round(float(np.mean(dists)), 4) if dists else None,
            "classes_compared": len(dists)}


def tsne(notebook: str = "05_tsne", benchmark: Any = "synthetic-video", backbone: Any = "vit",
         methods: Any = "dacs,quadmix", profile: Any = "demo", steps: Any = None,
         data_root: Any = None, seeds: Any = "0", pretrained: Any = None, device: Any = "auto",
         results_dir: Any = "results", runs_root: Any = "runs", per_class: Any = 40,
         num_clips: Any = 8, network: str = REFERENCE_NETWORK, progress: bool = True,
         publish: Any = False) -> dict[str, Any]:
    """t-SNE of decoder features of S, T and the mixed domains, QuadMix against plain ClassMix.

    For each method (dacs: S, T, ClassMix; quadmix: S, T, X_tss, X_stt), features of frame t are
    sampled per (domain, class) with a fixed budget (`per_class`) from `num_clips` clips, and
    embedded by sklearn's TSNE (random_state=0, PCA init). tsne.png: one row per method, coloured
    by class and by domain. The quantitative companion (`embedding_metrics`: class silhouette,
    S-vs-T domain silhouette, class-wise S-T prototype cosine distance, on the features) goes to
    tsne_metrics.md / .csv and metrics.json, so the figure is not the only evidence. The folder
    is replaced whole, under results/local/ unless `publish` (`udass.publish`).
    """
    p = parse_params(benchmark, backbone, methods, profile, steps, data_root, seeds, pretrained,
                     device, results_dir, runs_root, method_names=("dacs", "quadmix"),
                     publish=publish)
    budget = check_int("per_class", per_class)
    clips = check_int("num_clips", num_clips)
    bm = get_benchmark(p.benchmark)
    dev = _device(p)
    seed = p.seeds[0]
    models = _load_models(p, p.methods, seed, network, dev, progress)
    final = results_folder(p.results_dir, notebook, bm.name, p.backbone)
    with staged_folder(final) as out_dir:
        md, record = _tsne_files(notebook, p, bm, models, budget, clips, network, seed, out_dir)
    return {"out_dir": final, "figures": {"tsne": final / "tsne.png"}, "markdown": md,
            "record": record,
            "files": {"table_md": final / "tsne_metrics.md", "table_csv": final / "tsne_metrics.csv",
                      "metrics": final / "metrics.json"}}


def _tsne_files(notebook: str, p: Params, bm: Any, models: Mapping[str, Any], budget: int,
                clips: int, network: str, seed: int, out_dir: Path) -> tuple[str, dict[str, Any]]:
    """The figure, companion table and metrics.json of `tsne`, written into `out_dir`."""
    # scikit-learn takes seconds to import: only the t-SNE notebook needs it
    from sklearn.manifold import TSNE

    dev = _device(p)
    palette = benchmark_palette(bm.name) / 255.0

    fig = Figure(figsize=(10, 4.3 * len(p.methods) + 0.8))
    axes = fig.subplots(len(p.methods), 2, squeeze=False)
    metrics: dict[str, Any] = {}
    for r, m in enumerate(p.methods):
        net, cfg, _ = models[m]
        domains = _mixed_inputs(cfg, m, p.data_root, clips, seed)
        x, c, d = feature_samples(net, domains, bm.num_classes, budget, seed, dev)
        names = list(domains)
        metrics[m] = {**embedding_metrics(x, c, d), "domains": names,
                      "points_per_domain": {n: int((d == i).sum()) for i, n in enumerate(names)}}
        perplexity = float(max(2, min(30, (len(x) - 1) // 3)))
        emb = TSNE(n_components=2, random_state=0, init="pca", perplexity=perplexity).fit_transform(x)
        _tsne_panels(axes[r], emb, c, d, names, palette, m, metrics[m])
    fig.suptitle(f"{bm.name} ({p.backbone}, {p.profile}): t-SNE of decoder features ({network}, "
                 f"seed {seed}, <= {budget} pixels per domain and class)", fontsize=10)
    class_legend(fig, bm.name)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    save_figure(fig, out_dir / "tsne.png")

    md, csv_text = _tsne_table(bm.name, p, metrics, network, budget, seed)
    write_text(out_dir / "tsne_metrics.md", md)
    write_text(out_dir / "tsne_metrics.csv", csv_text)
    record = {"notebook": notebook, "benchmark": bm.name, "backbone": p.backbone, "profile": p.profile,
              "network": network, "seed": seed, "per_class": budget, "num_clips": clips,
              "tsne": {"random_state": 0, "init": "pca"}, "methods": metrics,
              "runs": {m: models[m][2]["run_dir"] for m in p.methods},
              "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": git_commit()}
    write_json(out_dir / "metrics.json", record)
    return md, record


def _tsne_panels(axes: Sequence[Any], emb: np.ndarray, classes: np.ndarray, domains: np.ndarray,
                 names: Sequence[str], palette: np.ndarray, method: str,
                 metrics: Mapping[str, Any]) -> None:
    """One model's row of the t-SNE figure: points coloured by class, then by domain."""
    label = "QuadMix" if method == "quadmix" else "plain ClassMix (dacs)"
    axes[0].scatter(emb[:, 0], emb[:, 1], c=palette[classes], s=6, linewidths=0)
    axes[0].set_title(f"{label}: coloured by class", fontsize=9)
    for i, n in enumerate(names):
        sel = domains == i
        axes[1].scatter(emb[sel, 0], emb[sel, 1], c=DOMAIN_COLOURS.get(n, "#333333"), s=6,
                        linewidths=0, label=n, alpha=0.8)
    # beside the panel, never over its points
    axes[1].legend(fontsize=7, markerscale=2, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                   frameon=False, title="domain", title_fontsize=7)
    axes[1].set_title(f"{label}: coloured by domain (class silhouette "
                      f"{_num(metrics['class_silhouette'])}, S-T prototype distance "
                      f"{_num(metrics['prototype_distance'])})", fontsize=8)
    for a in axes:
        a.set_xticks([])
        a.set_yticks([])


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _tsne_table(benchmark: str, p: Params, metrics: Mapping[str, Any], network: str, budget: int,
                seed: int) -> tuple[str, str]:
    cols = ("points", "class_silhouette", "domain_silhouette", "prototype_distance", "classes_compared")
    heads = ("points", "class silhouette ↑", "S-vs-T domain silhouette ↓",
             "S-T prototype cosine distance ↓", "classes compared")
    lines = [f"# {benchmark} ({p.backbone}, {p.profile}): feature-space companion of the t-SNE figure",
             "", "| model | domains | " + " | ".join(heads) + " |", "|---|---|" + "---:|" * len(cols)]
    csv_lines = ["model,domains," + ",".join(cols)]
    for m, mm in metrics.items():
        vals = [str(mm[k]) if isinstance(mm[k], int) else _num(mm[k]) for k in cols]
        lines.append(f"| {m} | {' '.join(mm['domains'])} | " + " | ".join(vals) + " |")
        csv_lines.append(f"{m},{' '.join(mm['domains'])}," + ",".join(
            "" if mm[k] is None else str(mm[k]) for k in cols))
    lines += ["", f"- Computed on the {network} network's decoder features of frame t (not on the 2-D "
              f"map), <= {budget} pixels per (domain, class), seed {seed}.",
              "- class silhouette: separation of the classes over all domains; domain silhouette: "
              "source vs target points (near 0: the domains are mixed); prototype distance: mean over "
              "classes of 1 - cos(source class mean, target class mean).",
              "- Target class labels and the target template's mask use the target ground truth (an "
              "analysis of the feature space, not how training saw the target)."]
    return "\n".join(lines) + "\n", "\n".join(csv_lines) + "\n"
