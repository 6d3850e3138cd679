"""`udass reproduce`, `udass nb` and `udass demo`: the notebooks run by papermill, and the
results index.

    reproduce(profile, data_root, only)   every notebook in order (`reproduce_plan`), publishing
                                          into results/: wall times in results/reproduce.json,
                                          then results/README.md
    notebook(name, parameters)            one notebook, its executed copy in results/executed/
                                          (`udass nb 02 -p backbone cnn`), then the index of
                                          where it wrote
    demo(parameters)                      the main job: 02_train_video with the ViT, seed 0,
                                          into results/local/ (the committed table has 5 seeds)
    write_results_index(results_dir)      <results>/README.md: a link to every table and figure

Only `reproduce` publishes (it runs the committed plan); `notebook` and `demo` write into
results/local/ (git-ignored) unless given `publish=True` (`udass.publish`).

Each notebook runs in a fresh `python3` kernel of this interpreter with the repository root as
its working directory, so its runs land in the shared run cache (`udass.runs`) and finished runs
are reused: an interrupted reproduce continues where it stopped.
"""
from __future__ import annotations

import ast
import datetime as dt
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import papermill as pm
from papermill.exceptions import PapermillExecutionError

from udass.benchmarks import get_benchmark
from udass.config import BACKBONES, PROFILES
from udass.data.datasets import LAYOUTS
from udass.errors import UdassError
from udass.io import read_json, write_json, write_text
from udass.params import NOTEBOOKS, anchor, check_bool, checkpoint_items, param_error, results_folder
from udass.publish import output_root
from udass.runtime import REPO_ROOT, device_description, git_commit, resolve_device

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PAPER_BENCHMARKS = {"image": ("gtav2cityscapes", "synthia2cityscapes"),
                    "video": ("synthia-seq2cityscapes-seq", "viper2cityscapes-seq")}
PRETRAINED_ENV = {"cnn": "UDASS_PRETRAINED_CNN", "vit": "UDASS_PRETRAINED_VIT"}


# =========================================================================== papermill
KERNEL_QUIET = "--IPKernelApp.log_level=CRITICAL"


def _kernel_env() -> None:
    """Put this interpreter's bin folder first on PATH, so the `python3` kernel (whose spec
    runs `python`) is this environment's Python."""
    bin_dir = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if not parts or parts[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir] + [p for p in parts if p != bin_dir])


def run_notebook(name: str, parameters: Mapping[str, Any], output: str | os.PathLike,
                 log_output: bool = True) -> Path:
    """Execute notebooks/<name>.ipynb with papermill (kernel python3, cwd = the repository
    root) into `output`. A failing cell raises a one-line UdassError naming the executed copy."""
    src = NOTEBOOK_DIR / f"{name}.ipynb"
    if not src.is_file():
        raise UdassError(f"notebook {src} not found; run from a source checkout of udass "
                         f"(notebooks/ beside the package)")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    _kernel_env()
    # the kernel's own log (its start-up warning about TCP, and on Ctrl-C a traceback of the reply
    # it can no longer send) is noise to a user: cell output and cell errors still come through
    kwargs: dict[str, Any] = {"extra_arguments": [KERNEL_QUIET]}
    if log_output:
        kwargs.update(log_output=True, stdout_file=sys.stdout, stderr_file=sys.stderr)
    try:
        pm.execute_notebook(str(src), str(output), parameters=dict(parameters), kernel_name="python3",
                            cwd=str(REPO_ROOT), progress_bar=False, **kwargs)
    except PapermillExecutionError as e:
        raise UdassError(f"notebook {name} failed: {e.ename}: {e.evalue} (executed copy: "
                         f"{output})") from None
    return output


@dataclass(frozen=True)
class Job:
    """One papermill execution of `reproduce`."""

    notebook: str
    parameters: Mapping[str, Any]
    output: str     # file name under <results>/executed/


def _available(benchmark: str, data_root: Path) -> bool:
    bm = get_benchmark(benchmark)
    return all((data_root / LAYOUTS[d].folder).is_dir() for d in (bm.source, bm.target))


def _pretrained(backbone: str, profile: str) -> str | None:
    if profile != "paper":
        return None
    env = PRETRAINED_ENV[backbone]
    value = os.environ.get(env)
    if not value:
        raise UdassError(f"the paper profile starts from ImageNet weights: set {env}=PATH (the "
                         f"{'mit_b5.pth' if backbone == 'vit' else 'ResNet-101'} file, docs/models.md) "
                         f"or {env}=none to train from scratch on purpose")
    return value


def reproduce_plan(profile: str = "demo", data_root: str | os.PathLike | None = None,
                   only: str | Sequence[str] | None = None) -> list[Job]:
    """The papermill jobs of `reproduce`, in order.

    Without a data root: the embedded benchmarks (01: synthetic-image, 02: synthetic-video, each
    for both backbones; 00, 03, 04, 05 on synthetic-video with the ViT). With one: the paper
    benchmarks whose dataset folders are present (01: GTAV / SYNTHIA -> Cityscapes, 02:
    SYNTHIA-Seq / VIPER -> Cityscapes-Seq, both backbones; 00, 03, 04, 05 on the first video
    benchmark, ViT). Outside the paper profile, 03 also runs on the first image benchmark (ViT):
    the image recipe's rows (`udass.config.IMAGE_ABLATIONS`). The paper profile reads the
    ImageNet weights from $UDASS_PRETRAINED_VIT / $UDASS_PRETRAINED_CNN. `only`: notebook names
    or their number prefixes ("02,03").
    """
    if profile not in PROFILES:
        raise param_error("profile", f"one of {', '.join(PROFILES)}", profile)
    selected = _select(only)
    if data_root is None:
        image, video = ["synthetic-image"], ["synthetic-video"]
    else:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise UdassError(f"--data-root {root} does not exist; expected the folder holding "
                             f"cityscapes/, gta/, ... (docs/datasets.md)")
        image = [b for b in PAPER_BENCHMARKS["image"] if _available(b, root)]
        video = [b for b in PAPER_BENCHMARKS["video"] if _available(b, root)]
        if not image and not video:
            raise UdassError(f"--data-root {root} holds none of the paper benchmarks' dataset "
                             f"folders; check it with `udass check-data --benchmark B --data-root "
                             f"{root}`")
    root_param = None if data_root is None else str(Path(data_root).expanduser())
    jobs: list[Job] = []
    main_video = video[0] if video else None

    def add(nb: str, bm: str, bb: str) -> None:
        if nb in selected:
            params = {"benchmark": bm, "backbone": bb, "profile": profile, "data_root": root_param,
                      "pretrained": _pretrained(bb, profile)}
            if nb == "02_train_video" and bm == main_video and profile != "paper":
                # the headline table: mean and spread over 5 seeds (3 left QuadMix - DACS, +2.4
                # paired, below significance: docs/results-synthetic.md); the CNN over 3
                params["seeds"] = "0,1,2,3,4" if bb == "vit" else "0,1,2"
            if nb == "03_ablation" and bb == "cnn":
                params["seeds"] = "0"  # the CNN's ablation: one seed, for the direction only
            jobs.append(Job(nb, params, f"{nb}-{bm}-{bb}.ipynb"))

    if main_video:
        add("00_quadmix_explorer", main_video, "vit")
    for bm in image:
        for bb in BACKBONES:
            add("01_train_image", bm, bb)
    for bm in video:
        for bb in BACKBONES:
            add("02_train_video", bm, bb)
    if main_video:
        add("03_ablation", main_video, "vit")
        if profile != "paper":  # 30 more 40k-step runs at the paper profile: run it on purpose
            add("03_ablation", main_video, "cnn")
    if image and profile != "paper":  # the image recipe's components, one by one (ViT)
        add("03_ablation", image[0], "vit")
    if main_video:
        for nb in ("04_qualitative", "05_tsne"):
            add(nb, main_video, "vit")
    return jobs


def _select(only: str | Sequence[str] | None) -> list[str]:
    if only is None:
        return list(NOTEBOOKS)
    items = [s.strip() for s in (only.split(",") if isinstance(only, str) else only) if s.strip()]
    out = []
    for item in items:
        match = [nb for nb in NOTEBOOKS if nb == item or nb.split("_", 1)[0] == item]
        if not match:
            raise UdassError(f"--only {item!r}: expected notebook names or numbers among "
                             f"{', '.join(NOTEBOOKS)}")
        out += match
    return out


Execute = Callable[[str, Mapping[str, Any], Path], Path]   # (notebook, parameters, output) -> output


def reproduce(profile: str = "demo", data_root: str | os.PathLike | None = None,
              only: str | Sequence[str] | None = None, results_dir: str | os.PathLike | None = None,
              runs_root: str | os.PathLike | None = None, execute: Execute = run_notebook,
              publish: bool | None = None) -> dict[str, Any]:
    """Run every notebook in order with papermill and regenerate results/README.md.

    The jobs are the committed plan (`reproduce_plan`), so they publish: each notebook gets
    `publish=True` and writes its tables into results/ (what git holds). publish None: every
    profile but `test` publishes (a test-profile reproduce is a smoke run and writes into
    results/local/). Executed copies go to results/executed/ (git-ignored). Finished runs are
    reused, so an interrupted reproduce continues where it stopped; each table folder is
    replaced whole when its notebook finishes (`udass.publish.staged_folder`). A failing notebook
    does not stop the others; the failures are raised together at the end. The wall time of each
    notebook and of the whole call is recorded in <results>/reproduce.json and shown in
    <results>/README.md. results_dir / runs_root: other folders than the repository's results/
    and runs/. execute: what runs one notebook (default `run_notebook`, papermill).
    """
    publish = profile != "test" if publish is None else bool(publish)
    given = Path(results_dir) if results_dir is not None else REPO_ROOT / "results"
    results = output_root(given, publish)
    executed_dir = given / "executed"
    jobs = reproduce_plan(profile, data_root, only)
    commit = git_commit()   # the code the plan runs, before its notebooks write into results/
    started = time.time()
    log: list[dict[str, Any]] = []
    failures: list[str] = []
    for i, job in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {job.notebook} ({job.parameters['benchmark']}, "
              f"{job.parameters['backbone']})", flush=True)
        t0 = time.time()
        params = {**job.parameters, "publish": publish}
        if results_dir is not None:
            params["results_dir"] = str(given)
        if runs_root is not None:
            params["runs_root"] = str(runs_root)
        try:
            execute(job.notebook, params, executed_dir / job.output)
            status = "ok"
        except UdassError as e:
            status = "failed"
            failures.append(str(e))
            print(f"  {e}", file=sys.stderr, flush=True)
        log.append({"notebook": job.notebook, "benchmark": job.parameters["benchmark"],
                    "backbone": job.parameters["backbone"], "status": status,
                    "seconds": round(time.time() - t0, 1),
                    "executed": f"executed/{job.output}"})
    record = {"profile": profile, "publish": publish,
              "data_root": None if data_root is None else str(data_root),
              "only": only if isinstance(only, (str, type(None))) else ",".join(only),
              "wall_seconds": round(time.time() - started, 1),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": commit,
              "device": _device_text(), "notebooks": log}
    write_json(results / "reproduce.json", record)
    index = write_results_index(results)
    print(f"reproduce: {len(jobs) - len(failures)}/{len(jobs)} notebooks in "
          f"{_duration(record['wall_seconds'])}; index: {index}")
    if failures:
        raise UdassError(f"{len(failures)} notebook(s) failed: " + " | ".join(failures))
    return record


def _device_text() -> str:
    try:
        return device_description(resolve_device("auto"))
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def notebook_name(name: str) -> str:
    """A notebook given as its name, its number ("02") or its path -> its name in NOTEBOOKS."""
    stem = Path(str(name)).name.removesuffix(".ipynb").removesuffix(".py")
    match = [nb for nb in NOTEBOOKS if stem in (nb, nb.split("_", 1)[0])]
    if len(match) != 1:
        raise UdassError(f"notebook {name!r}: expected one of {', '.join(NOTEBOOKS)} (or its "
                         f"number, e.g. 02)")
    return match[0]


def parse_value(text: str) -> Any:
    """A `-p NAME VALUE` value as papermill reads it: True / False / None, an int, a float, else
    the string itself."""
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def notebook_defaults(name: str) -> dict[str, Any]:
    """The values of a notebook's parameters cell (papermill's reading of it)."""
    src = NOTEBOOK_DIR / f"{name}.ipynb"
    return {k: ast.literal_eval(v["default"]) for k, v in pm.inspect_notebook(str(src)).items()}


def executed_path(name: str, parameters: Mapping[str, Any],
                  results_dir: str | os.PathLike | None = None) -> Path:
    """Where `notebook` keeps the executed copy: results/executed/<name>[-<param>-<value>...].ipynb."""
    parts = [name] + [f"{k}-{v}" for k, v in parameters.items()]
    stem = re.sub(r"[^A-Za-z0-9_.,=+-]+", "_", "-".join(parts))[:150]
    base = Path(results_dir) if results_dir is not None else REPO_ROOT / "results"
    return base / "executed" / f"{stem}.ipynb"


def _from_cwd(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Relative `data_root` / `pretrained` paths, and the files of `checkpoints`
    ("label:path,..."; rewritten in that spelling), as the user typed them, from the current
    folder (the kernel runs in the repository root)."""
    out = dict(parameters)
    for key in ("data_root", "pretrained"):
        value = out.get(key)
        if isinstance(value, str) and value.lower() != "none" and Path(value).expanduser().exists():
            out[key] = str(Path(value).expanduser().resolve())
    value = out.get("checkpoints")
    items = checkpoint_items(value) if isinstance(value, str) else None
    if items:   # a malformed value goes through as typed, for the notebook's own message
        out["checkpoints"] = ",".join(
            f"{label}:{Path(path).expanduser().resolve() if Path(path).expanduser().is_file() else path}"
            for label, path in items)
    return out


def notebook(name: str, parameters: Mapping[str, Any] | None = None,
             output: str | os.PathLike | None = None, execute: Execute = run_notebook,
             results_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run one notebook as papermill does, choosing the executed copy's path (`udass nb`).

    name: "02", "02_train_video" or a path to it; parameters: the notebook's parameters (as
    `-p NAME VALUE`); output: the executed copy (default `executed_path`). Then regenerates the
    index of the folder it wrote into and prints the table and figures. Writes into results/local/
    unless `publish` is among the parameters and true (`udass.publish`). results_dir: another
    folder for the executed copy and the default `results_dir` parameter (tests)."""
    name = notebook_name(name)
    params = _from_cwd(parameters or {})
    if results_dir is not None:
        params.setdefault("results_dir", str(results_dir))
    unknown = sorted(set(params) - set(notebook_defaults(name)))
    if unknown:
        raise UdassError(f"notebook {name} has no parameter {', '.join(unknown)}; its parameters: "
                         f"{', '.join(notebook_defaults(name))} (`papermill --help-notebook "
                         f"notebooks/{name}.ipynb`)")
    values = {**notebook_defaults(name), **params}
    root = output_root(anchor(values["results_dir"]), check_bool("publish", values.get("publish", False)))
    out = Path(output) if output is not None else executed_path(name, parameters or {}, results_dir)
    started = time.time()
    executed = execute(name, params, out)
    out_dir = results_folder(root, name, str(values["benchmark"]), str(values["backbone"]))
    index = write_results_index(root)
    table = out_dir / "table.md"
    print("")
    if table.is_file():
        print(table.read_text(encoding="utf-8"))
    print(f"{name} finished in {_duration(time.time() - started)}; it wrote {out_dir}")
    if table.is_file():
        print(f"  table:    {table} (and table.csv)")
    for png in sorted(out_dir.glob("*.png")):
        print(f"  figure:   {png}")
    if (out_dir / "metrics.json").is_file():
        print(f"  metrics:  {out_dir / 'metrics.json'}")
    print(f"  notebook: {executed}")
    print(f"  index:    {index}")
    return {"out_dir": out_dir, "executed": executed, "index": index, "root": root}


def demo(parameters: Mapping[str, Any] | None = None, results_dir: str | os.PathLike | None = None,
         execute: Execute = run_notebook) -> dict[str, Any]:
    """The main job: notebooks/02_train_video.ipynb with the ViT on the embedded benchmark (demo
    profile, seed 0) -> results/executed/02_train_video.ipynb; prints where the table and
    figures are.

    It is one seed of the committed plan's five, so it does not publish: the table goes to
    results/local/02_train_video/synthetic-video/vit/ and the committed five-seed table in
    results/ stays as it is. Equivalent to `udass nb 02 -p backbone vit` and to `papermill
    notebooks/02_train_video.ipynb results/executed/02_train_video.ipynb -k python3 -p backbone
    vit` run from the repository root. parameters: more notebook parameters (e.g. {"profile":
    "test"}); results_dir: another folder for the results and the executed copy (tests)."""
    base = Path(results_dir) if results_dir is not None else REPO_ROOT / "results"
    return notebook("02_train_video", {"backbone": "vit", **(parameters or {})},
                    base / "executed" / "02_train_video.ipynb", execute, results_dir)


# =========================================================================== results/README.md
def _rel(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()


def _miou_line(metrics: Mapping[str, Any]) -> str:
    parts = []
    for name, entry in (metrics.get("methods") or {}).items():
        miou, std = entry.get("miou"), entry.get("miou_std")
        if miou is None:
            continue
        parts.append(f"{name} {miou:.2f}" + (f" ± {std:.2f}" if std is not None else ""))
    net = metrics.get("network", "student")
    return f"mIoU ({net}): " + ", ".join(parts) if parts else ""


def _runs_behind(results: Path, rep: Mapping[str, Any]) -> str | None:
    """One line on the training runs behind the tables: how many the last reproduce trained
    (their run.json finished after it started) and how many it reused from runs/, and the sum of
    their recorded wall times (what the tables cost from scratch)."""
    runs: dict[str, dict[str, Any]] = {}
    for path in sorted(results.glob("*/*/*/runs/*/run.json")):
        rec = read_json(path) or {}
        if "config" in rec:
            runs[json.dumps(rec["config"], sort_keys=True)] = rec
    if not runs:
        return None
    fmt = "%Y-%m-%dT%H:%M:%S%z"
    try:
        start = dt.datetime.strptime(rep["finished"], fmt).timestamp() - float(rep["wall_seconds"])
    except (KeyError, TypeError, ValueError):
        start = None

    def after(r: Mapping[str, Any]) -> bool:
        try:
            return start is not None and dt.datetime.strptime(r["finished"], fmt).timestamp() >= start
        except (KeyError, TypeError, ValueError):
            return False

    trained = sum(after(r) for r in runs.values())
    total = sum(float(r.get("wall_seconds_this_call") or 0) for r in runs.values())
    return (f"Runs behind these tables: {len(runs)}; that call trained {trained} and reused "
            f"{len(runs) - trained} from runs/. Their recorded wall times add up to "
            f"{_duration(total)} (each run's last call; what the tables cost from scratch).")


def write_results_index(results_dir: str | os.PathLike = "results") -> Path:
    """Regenerate <results_dir>/README.md: a link to every table and figure, generated by code.

    Walks `<notebook>/<benchmark>/<backbone>/` folders of the known notebooks, lists their
    table, metrics.json, PNG figures and a one-line mIoU summary read from metrics.json, other
    JSON files (e.g. benchmarks/), and the last `reproduce` (profile, wall time, device, commit).
    """
    results = Path(results_dir)
    lines = ["# Results", "",
             "Generated by `udass reproduce` (`udass.reproduce.write_results_index`) from the files "
             "below; do not edit by hand. Every number comes from a run's metrics.json: tables and "
             "figures are regenerated by the notebooks (docs/notebooks.md, docs/reproducing.md).", ""]
    rep = read_json(results / "reproduce.json")
    if rep:
        lines += [f"Last `udass reproduce --profile {rep.get('profile')}`"
                  + (f" (--only {rep['only']})" if rep.get("only") else "")
                  + f": wall time {_duration(rep.get('wall_seconds') or 0)} on {rep.get('device')}, "
                  f"commit {rep.get('commit') or 'unknown'}, finished {rep.get('finished')}.", ""]
        runs_line = _runs_behind(results, rep)
        if runs_line:
            lines += [runs_line, ""]
        rows = ["| notebook | benchmark | backbone | status | wall time |", "|---|---|---|---|---:|"]
        rows += [f"| {n['notebook']} | {n['benchmark']} | {n['backbone']} | {n['status']} | "
                 f"{_duration(n['seconds'])} |" for n in rep.get("notebooks", [])]
        lines += rows + [""]
    for nb in NOTEBOOKS:
        folders = sorted(d for d in (results / nb).glob("*/*") if d.is_dir()) if (results / nb).is_dir() else []
        if not folders:
            continue
        lines += [f"## {nb}", ""]
        for d in folders:
            lines += [f"### {d.parent.name} / {d.name}", ""]
            links = []
            for name, label in (("table.md", "table"), ("table.csv", "csv"), ("metrics.json", "metrics"),
                                ("tsne_metrics.md", "t-SNE companion table")):
                if (d / name).is_file():
                    links.append(f"[{label}]({_rel(d / name, results)})")
            if links:
                lines.append("- " + ", ".join(links))
            metrics = read_json(d / "metrics.json") or {}
            summary = _miou_line(metrics)
            if summary:
                lines.append(f"- {summary} ({metrics.get('profile', '?')} profile)")
            lines.append("")
            for png in sorted(d.glob("*.png")):
                lines += [f"![{png.stem}]({_rel(png, results)})", ""]
    others = sorted(p for p in results.glob("*/*.json")
                    if p.parent.name not in NOTEBOOKS and p.parent.name != "executed")
    if others:
        lines += ["## Other measurements", ""] + [f"- [{_rel(p, results)}]({_rel(p, results)})"
                                                  for p in others] + [""]
    path = results / "README.md"
    write_text(path, "\n".join(lines).rstrip() + "\n")
    return path
