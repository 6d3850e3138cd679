"""Notebook parameters: what a notebook's `parameters` cell may say, checked and converted.

    parse_params(benchmark, backbone, methods, profile, steps, data_root, seeds, pretrained,
                 device, results_dir, runs_root, publish=False) -> Params
    config_for(params, method, seed, overrides) -> Config          the Config of one run
    results_folder(results_dir, notebook, benchmark, backbone)    where a notebook writes

A wrong type or value is a one-line UdassError naming the parameter, what was expected and what
was given (`param_error`), raised before anything trains. Relative results / runs folders are
taken from the repository root in a source checkout (`anchor`), so a notebook opened from
notebooks/ and papermill run from anywhere write to the same results/ and runs/. Unless `publish`
is true, a results folder inside the committed results/ becomes the same path under
results/local/ (`udass.publish.output_root`).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from udass.benchmarks import BENCHMARKS, get_benchmark
from udass.config import BACKBONES, METHODS, PROFILES, Config, build_config
from udass.errors import UdassError
from udass.publish import output_root
from udass.runtime import REPO_ROOT

NOTEBOOKS = ("00_quadmix_explorer", "01_train_image", "02_train_video", "03_ablation",
             "04_qualitative", "05_tsne")
# The network our tables report. DAFormer / MIC (which QuadMix builds on) and DACS evaluate the
# student; the EMA teacher's numbers are kept in every metrics.json beside it.
REFERENCE_NETWORK = "student"
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Params:
    """Validated notebook parameters (see `parse_params`)."""

    benchmark: str
    backbone: str
    methods: tuple[str, ...]
    profile: str
    steps: int | None
    data_root: str | None
    seeds: tuple[int, ...]
    pretrained: str | None
    device: str
    results_dir: Path    # where this call writes (`udass.publish.output_root`)
    runs_root: Path
    publish: bool = False


def _given(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def param_error(name: str, expected: str, value: Any) -> UdassError:
    return UdassError(f"parameter `{name}`: expected {expected}, got {_given(value)}")


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null"))


def _choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value.strip() not in choices:
        raise param_error(name, f"one of {', '.join(choices)}", value)
    return value.strip()


def _names(name: str, value: Any, choices: Sequence[str]) -> tuple[str, ...]:
    """A comma-separated string (or a list) of names from `choices`; "all" = every choice."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise param_error(name, f"a comma-separated string of {', '.join(choices)}", value)
    if items == ["all"]:
        return tuple(choices)
    bad = [v for v in items if v not in choices]
    if not items or bad:
        raise param_error(name, f"a comma-separated string of {', '.join(choices)} (or 'all')", value)
    return tuple(dict.fromkeys(items))


def check_int(name: str, value: Any, minimum: int = 1, allow_none: bool = False) -> int | None:
    """An integer >= minimum (a string of digits is converted); None where allowed.

    Raises a one-line UdassError naming the parameter, what was expected and what was given.
    """
    if allow_none and _is_none(value):
        return None
    expected = f"an integer >= {minimum}" + (" or None" if allow_none else "")
    if isinstance(value, bool):
        raise param_error(name, expected, value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < minimum:
        raise param_error(name, expected, value)
    return value


def check_bool(name: str, value: Any) -> bool:
    """True / False, or their spelling on a command line ("true", "False", "yes", "0", ...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise param_error(name, "True or False", value)


def _seeds(value: Any) -> tuple[int, ...]:
    expected = "comma-separated non-negative integers, e.g. '0,1,2'"
    if isinstance(value, bool):
        raise param_error("seeds", expected, value)
    if isinstance(value, int):
        items: list[Any] = [value]
    elif isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise param_error("seeds", expected, value)
    out = []
    for v in items:
        if isinstance(v, str) and re.fullmatch(r"\d+", v):
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise param_error("seeds", expected, value)
        out.append(v)
    if not out:
        raise param_error("seeds", expected, value)
    return tuple(dict.fromkeys(out))


def checkpoint_items(text: str) -> list[tuple[str, str]] | None:
    """The command-line spelling of `checkpoints`, "label:path,label=path", as (label, path)
    pairs (stripped, empty parts skipped); None when a part has no separator."""
    items = []
    for part in (v.strip() for v in text.split(",")):
        if not part:
            continue
        sep = "=" if "=" in part else ":"
        if sep not in part:
            return None
        label, path = part.split(sep, 1)
        items.append((label.strip(), path.strip()))
    return items


def check_checkpoints(value: Any) -> dict[str, Path]:
    """The `checkpoints` parameter: None or "" (train as usual) -> {}; a mapping {row label:
    checkpoint file} or its command-line spelling "label:path,label:path" (or "label=path") ->
    {label: Path}. Labels are table row names (letters, digits, `_.()+-`); every file must exist."""
    expected = 'a mapping {row label: checkpoint file} or "label:path,label:path"'
    if _is_none(value):
        return {}
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, str):
        items = checkpoint_items(value)
        if items is None:
            raise param_error("checkpoints", expected, value)
    else:
        raise param_error("checkpoints", expected, value)
    out: dict[str, Path] = {}
    for label, path in items:
        if (not isinstance(label, str) or not re.fullmatch(r"[A-Za-z0-9_.()+-]+", label)
                or not isinstance(path, (str, os.PathLike)) or not str(path).strip()):
            raise param_error("checkpoints", expected, value)
        file = Path(path).expanduser()
        if not file.is_file():
            raise UdassError(f"parameter `checkpoints`: {label}: expected an existing udass "
                             f"checkpoint file, got {str(path)!r} (not found); a released network "
                             f"becomes one with `udass convert` (docs/converting.md)")
        out[label] = file
    return out


def _path_or_none(name: str, value: Any, kind: str) -> str | None:
    if _is_none(value):
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise param_error(name, "a path or None", value)
    path = Path(value).expanduser()
    ok = path.is_dir() if kind == "dir" else path.is_file()
    if not ok:
        what = "an existing folder" if kind == "dir" else "an existing file"
        raise UdassError(f"parameter `{name}`: expected {what} or None, got {str(value)!r} "
                         f"(not found)")
    return str(path)


def anchor(path: str | os.PathLike) -> Path:
    """A results / runs folder: absolute paths as given; relative ones are taken from the
    repository root in a source checkout (so a notebook opened from notebooks/ and papermill
    run from anywhere write to the same results/ and runs/), else from the working directory."""
    path = Path(path).expanduser()
    if path.is_absolute() or not (REPO_ROOT / "notebooks").is_dir():
        return path
    return REPO_ROOT / path


def parse_params(benchmark: Any = "synthetic-video", backbone: Any = "vit", methods: Any = "quadmix",
                 profile: Any = "demo", steps: Any = None, data_root: Any = None, seeds: Any = "0",
                 pretrained: Any = None, device: Any = "auto", results_dir: Any = "results",
                 runs_root: Any = "runs", method_names: Sequence[str] = METHODS,
                 publish: Any = False) -> Params:
    """Validate notebook parameters and convert their types.

    methods "a,b" -> ("a", "b") checked against `method_names` ("all" = every name); seeds
    "0,1,2" (or an int) -> (0, 1, 2); steps None (the profile's default) or a positive integer;
    data_root None (the synthetic cache; an error for a real benchmark) or an existing folder;
    pretrained None, "none" (random initialisation on purpose) or an existing file (the paper
    profile needs one of the last two); results_dir and runs_root relative to the repository root
    (`anchor`); unless `publish`, one inside the committed results/ is redirected to
    results/local/ (`udass.publish.output_root`). A wrong type or value raises a one-line
    UdassError naming the parameter, what was expected and what was given.
    """
    bm = _choice("benchmark", benchmark, list(BENCHMARKS))
    prof = _choice("profile", profile, PROFILES)
    root = _path_or_none("data_root", data_root, "dir")
    if root is None and not get_benchmark(bm).synthetic:
        raise UdassError(f"parameter `data_root`: benchmark {bm} reads the real datasets: expected the "
                         f"folder holding them (docs/datasets.md), got None")
    explicit_none = isinstance(pretrained, str) and pretrained.strip().lower() == "none"
    weights = None if explicit_none else _path_or_none("pretrained", pretrained, "file")
    if prof == "paper" and weights is None and not explicit_none:
        raise UdassError("parameter `pretrained`: the paper profile starts from ImageNet weights: "
                         "expected a checkpoint file (docs/models.md) or 'none' to train from "
                         "scratch on purpose, got None")
    dev = device.strip() if isinstance(device, str) else device
    if not isinstance(dev, str) or not (dev in DEVICES or re.fullmatch(r"cuda:\d+", dev)):
        raise param_error("device", "auto, cpu, cuda or cuda:N", device)
    for name, value in (("results_dir", results_dir), ("runs_root", runs_root)):
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise param_error(name, "a folder path", value)
    pub = check_bool("publish", publish)
    return Params(benchmark=bm, backbone=_choice("backbone", backbone, BACKBONES),
                  methods=_names("methods", methods, method_names), profile=prof,
                  steps=check_int("steps", steps, allow_none=True), data_root=root,
                  seeds=_seeds(seeds), pretrained=weights, device=dev,
                  results_dir=output_root(anchor(results_dir), pub), runs_root=anchor(runs_root),
                  publish=pub)


def config_for(p: Params, method: str, seed: int, overrides: Mapping[str, Any] | None = None) -> Config:
    """The Config of one run of the notebook parameters `p`."""
    return build_config(p.benchmark, p.backbone, method, p.profile, overrides, seed=seed,
                        steps=p.steps, data_root=p.data_root, pretrained=p.pretrained)


def results_folder(results_dir: str | os.PathLike, notebook: str, benchmark: str, backbone: str) -> Path:
    """`<results_dir>/<notebook>/<benchmark>/<backbone>`: where a notebook's tables and figures go."""
    return Path(results_dir) / notebook / benchmark / backbone
