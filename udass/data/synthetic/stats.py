"""What a generated root holds, read back from its files: class pixel shares per domain
(`layout_statistics`, `format_statistics`) and the figure of the two styles (`style_figure`).

Labels are decoded with the loaders' own readers (`udass.data.imageio`, VIPER's ego-vehicle
rule) and mapped with `protocols.map_label`, so the figures describe what training reads.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from udass.benchmarks import IGNORE_INDEX, get_benchmark
from udass.data.flow import flow_cache_path, flow_to_color
from udass.data.imageio import read_label_index, read_label_synthia
from udass.data.protocols import map_label
from udass.data.synthetic.roots import read_marker
from udass.data.synthetic.spec import SYNTHIA_SEQ_DIR, bench_spec
from udass.data.viper import remove_ego_vehicle
from udass.errors import UdassError
from udass.io import save_figure

# Source dataset -> (label files, frame files) as globs under the data root.
_SOURCE_FILES = {
    "synthia-seq": (f"synthia-seq/{SYNTHIA_SEQ_DIR}/GT/LABELS/Stereo_Left/Omni_F/*.png",
                    f"synthia-seq/{SYNTHIA_SEQ_DIR}/RGB/Stereo_Left/Omni_F/*.png"),
    "viper": ("viper/train/cls/*/*.png", "viper/train/img/*/*.jpg"),
    "gta": ("gta/labels/*.png", "gta/images/*.png"),
    "synthia": ("synthia/GT/LABELS/*.png", "synthia/RGB/*.png"),
}


def _require_root(root: Path, benchmark: str) -> None:
    """A complete generated root of `benchmark`, or a UdassError saying how to make one."""
    bench_spec(benchmark)
    marker = read_marker(root)
    if marker is None or marker.get("benchmark") != benchmark:
        found = "no udass_synthetic.json" if marker is None else f"a {marker.get('benchmark')} root"
        raise UdassError(f"{root} is not a complete {benchmark} root ({found}); make one with "
                         f"`udass synth --benchmark {benchmark} --out {root}`")


def _read_labels(path: Path, encoding: str) -> np.ndarray:
    """Raw label ids [H, W] of a written label file, read as the dataset's loader reads it."""
    hint = "regenerate the root with `udass synth`"
    if encoding in ("synthia", "synthia-seq"):
        return read_label_synthia(path, hint)
    raw = read_label_index(path, hint)
    return remove_ego_vehicle(raw) if encoding == "viper" else raw


def _domain_files(root: Path, benchmark: str) -> dict[str, tuple[str, list[Path], int]]:
    """Per domain: label encoding, label files, frame count."""
    bench = bench_spec(benchmark)
    labels, frames = _SOURCE_FILES[bench.source]
    out = {"source": (bench.source, sorted(root.glob(labels)), len(list(root.glob(frames))))}
    cs = root / "cityscapes"
    frames_dir = "leftImg8bit_sequence" if bench.video else "leftImg8bit"
    for split in ("train", "val"):
        out[f"target_{split}"] = ("cityscapes", sorted((cs / "gtFine" / split).glob("*/*_labelIds.png")),
                                  len(list((cs / frames_dir / split).glob("*/*.png"))))
    return out


def layout_statistics(root: str | os.PathLike, benchmark: str) -> dict[str, Any]:
    """Class pixel shares per domain, decoded from the written label files.

    Returns {"benchmark", "protocol", "classes", "domains": {"source" | "target_train" |
    "target_val": {"dataset", "frames", "labelled_frames", "class_share": {class: fraction},
    "ignore_share"}}}; shares are fractions of all labelled pixels of the domain (train ids of
    the benchmark's protocol via `protocols.map_label`; ignore = 255).
    """
    root = Path(root)
    _require_root(root, benchmark)
    proto = get_benchmark(benchmark).protocol
    video = bench_spec(benchmark).video
    domains: dict[str, Any] = {}
    for name, (encoding, files, frames) in _domain_files(root, benchmark).items():
        hist = np.zeros(256, np.int64)
        for f in files:
            train = map_label(_read_labels(f, encoding), proto.name, encoding, source=str(f))
            hist += np.bincount(train.ravel(), minlength=256)
        total = max(int(hist.sum()), 1)
        domains[name] = {
            "dataset": "cityscapes-seq" if encoding == "cityscapes" and video else encoding,
            "frames": frames, "labelled_frames": len(files),
            "class_share": {c: float(hist[i]) / total for i, c in enumerate(proto.classes)},
            "ignore_share": float(hist[IGNORE_INDEX]) / total}
    return {"benchmark": benchmark, "protocol": proto.name, "classes": list(proto.classes),
            "domains": domains}


def format_statistics(stats: dict[str, Any]) -> str:
    """A Markdown table of `layout_statistics`: class shares in percent per domain."""
    doms = list(stats["domains"])
    lines = ["| class | " + " | ".join(doms) + " |", "|---|" + "---:|" * len(doms)]
    for c in stats["classes"]:
        lines.append(f"| {c} | " + " | ".join(f"{100 * stats['domains'][d]['class_share'][c]:.2f}"
                                              for d in doms) + " |")
    lines.append("| (ignored) | " + " | ".join(f"{100 * stats['domains'][d]['ignore_share']:.2f}"
                                               for d in doms) + " |")
    lines.append("| frames (labelled) | " + " | ".join(
        f"{stats['domains'][d]['frames']} ({stats['domains'][d]['labelled_frames']})" for d in doms)
        + " |")
    return "\n".join(lines) + "\n"


def _source_frame(root: Path, dataset: str, label: Path) -> Path:
    """The frame of a source label file."""
    if dataset == "gta":
        return root / "gta/images" / label.name
    if dataset == "viper":
        return Path(str(label).replace("/train/cls/", "/train/img/")).with_suffix(".jpg")
    return Path(str(label).replace("GT/LABELS", "RGB"))


def _example_paths(root: Path, benchmark: str) -> dict[str, Any]:
    """Frame, label file and flow (or None) of a middle source frame and the first val frame."""
    bench = bench_spec(benchmark)
    doms = _domain_files(root, benchmark)
    enc, files, _ = doms["source"]
    src_label = files[len(files) // 2]
    src_img = _source_frame(root, bench.source, src_label)
    src_flow = flow_cache_path(root / "udass_flow", bench.source,
                               src_img.relative_to(root / bench.source)) if bench.video else None
    tgt_label = doms["target_val"][1][0]
    tgt_img = Path(str(tgt_label).replace("gtFine", "leftImg8bit", 1).replace("_gtFine_labelIds",
                                                                               "_leftImg8bit"))
    tgt_flow = None
    if bench.video:
        rel = tgt_img.relative_to(root / "cityscapes")
        rel = Path("leftImg8bit_sequence", *rel.parts[1:])
        tgt_flow = flow_cache_path(root / "udass_flow", "cityscapes", rel)
    return {"source": (src_img, src_label, enc, src_flow),
            "target": (tgt_img, tgt_label, "cityscapes", tgt_flow)}


def _flow_wheel(n: int = 101) -> np.ndarray:
    """uint8 [n, n, 3]: the colour wheel of `flow_to_color` (direction = hue)."""
    y, x = np.mgrid[-1:1:n * 1j, -1:1:n * 1j].astype(np.float32)
    wheel = flow_to_color(np.stack([x, y], -1), max_norm=1.0)
    wheel[x**2 + y**2 > 1] = 255
    return wheel


def style_figure(root: str | os.PathLike, benchmark: str, out_png: str | os.PathLike) -> Path:
    """Side-by-side figure of the two styles: frame, label (train-id colours) and, for video,
    the exact flow t -> t-1 with its colour wheel, for a source frame and a target val frame."""
    # matplotlib is imported here, not at the top: it is heavy, and only this figure needs it
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    root, out_png = Path(root), Path(out_png)
    _require_root(root, benchmark)
    proto = get_benchmark(benchmark).protocol
    examples = _example_paths(root, benchmark)
    video = bench_spec(benchmark).video
    cols = 4 if video else 3
    fig = Figure(figsize=(3.2 * cols, 4.4), dpi=120)
    axes = fig.subplots(2, cols, gridspec_kw={"width_ratios": [2] * (cols - 1) + [1]})
    for r, (dom, (img, lab, enc, flow)) in enumerate(examples.items()):
        rgb = cv2.imread(str(img), cv2.IMREAD_COLOR)[..., ::-1]
        train = map_label(_read_labels(lab, enc), proto.name, enc)
        axes[r, 0].imshow(rgb)
        axes[r, 0].set_title(f"{dom}: {img.name}", fontsize=8)
        axes[r, 1].imshow(proto.palette()[train])
        axes[r, 1].set_title("label (train ids; black = ignore)", fontsize=8)
        if video:
            fl = np.load(flow).astype(np.float32) / 10.0
            scale = max(float(np.percentile(np.linalg.norm(fl, axis=-1), 95)), 0.5)
            axes[r, 2].imshow(flow_to_color(fl, max_norm=scale))
            axes[r, 2].set_title(f"exact flow t->t-1 (full colour at {scale:.1f} px)", fontsize=8)
    if video:
        axes[0, -1].imshow(_flow_wheel())
        axes[0, -1].set_title("flow colour wheel", fontsize=8)
    handles = [Patch(color=np.asarray(proto.palette()[i]) / 255, label=c)
               for i, c in enumerate(proto.classes)]
    axes[1, -1].legend(handles=handles, loc="center", fontsize=6, ncol=1 if video else 2,
                       frameon=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(f"{benchmark}: source style (top) vs target style (bottom)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=None, tight=False, metadata={"Software": None})
