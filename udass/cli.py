"""The `udass` command line. Each subcommand parses its flags and calls one public function.

Errors a user can fix (`UdassError`) print one line and exit with status 2, no traceback.
Each subcommand imports the stack it runs inside its `_run_*` function: building the parser
(`udass --help`, a wrong flag) and a light subcommand do not pay for torch, the models and
matplotlib. Those are the only local imports of the package besides the heavy optional ones.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from udass.config import build_config, parse_set_args
from udass.errors import UdassError

ALLOW_PARTIAL_HELP = ("evaluate an incomplete val split on its complete clips (metrics.json and tables "
                      "mark the result partial) instead of refusing it")


# What `udass synth` generates (udass.data.synthetic BENCHMARK_SPECS and SIZES; a test keeps them
# equal), listed here so that building the parser does not import the data stack.
SYNTH_BENCHMARKS = ("synthetic-video", "synthetic-image", "synthia-seq2cityscapes-seq",
                    "viper2cityscapes-seq", "gtav2cityscapes", "synthia2cityscapes")
SYNTH_SIZES = ("tiny", "demo", "paper")


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="generate a synthetic data root (an embedded benchmark, or "
                                     "a paper benchmark's real layouts for dry runs)")
    p.add_argument("--benchmark", required=True, choices=SYNTH_BENCHMARKS, metavar="BENCHMARK",
                   help="embedded: synthetic-video | synthetic-image; paper benchmark ids, written "
                        "in their datasets' layouts: synthia-seq2cityscapes-seq | "
                        "viper2cityscapes-seq | gtav2cityscapes | synthia2cityscapes")
    p.add_argument("--out", required=True, type=Path, help="folder that becomes the data root")
    p.add_argument("--seed", type=int, default=0, help="data seed (same seed: identical files)")
    p.add_argument("--size", default="demo", choices=SYNTH_SIZES,
                   help="tiny (tests) | demo | paper (the datasets' real resolutions, a few items)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: 1 for tiny, else up to 4; same files for any)")
    p.set_defaults(func=_run_synth)


def _run_synth(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.data.synthetic import generate

    root = generate(a.benchmark, a.out, seed=a.seed, size=a.size, workers=a.workers)
    print(f"wrote {a.benchmark} ({a.size}, seed {a.seed}) to {root}")
    return 0


def _add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-data", help="report what a data root holds and what is missing")
    p.add_argument("--benchmark", required=True)
    p.add_argument("--data-root", type=Path, default=None,
                   help="folder holding cityscapes/, gta/, ... (default: the synthetic cache)")
    p.add_argument("--flow-root", type=Path, default=None, help="default: <data root>/udass_flow")
    p.add_argument("--flow-source", default=None, help="dis | exact | authors (default: preset)")
    p.add_argument("--full", action="store_true",
                   help="read every label file once: ids outside the encoding, unreadable files, sizes")
    p.set_defaults(func=_run_check)


def _run_check(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.data.check import check_data

    cfg = build_config(a.benchmark).data
    if a.flow_source is not None:
        cfg = dataclasses.replace(cfg, flow_source=a.flow_source)
    return check_data(a.benchmark, a.data_root, data_cfg=cfg, flow_root=a.flow_root, full=a.full)


def _add_flow(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flow", help="precompute backward optical flow (OpenCV DIS) into the cache")
    p.add_argument("--benchmark", required=True)
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--flow-root", type=Path, default=None, help="default: <data root>/udass_flow")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--preset", default="medium", help="DIS preset: ultrafast | fast | medium")
    p.add_argument("--max-width", type=int, default=None,
                   help="store flows at most this wide, e.g. 1024 (default: the frame's resolution)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="compute only shard I of N (0 <= I < N; disjoint, resumable: array jobs)")
    p.set_defaults(func=_run_flow)


def _run_flow(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.data.flowcache import compute_flows, parse_shard

    compute_flows(a.benchmark, a.data_root, flow_root=a.flow_root, workers=a.workers,
                  preset=a.preset, max_width=a.max_width,
                  shard=parse_shard(a.shard) if a.shard is not None else None,
                  data_cfg=build_config(a.benchmark).data)
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a method (resumes from OUT's last checkpoint)")
    p.add_argument("--benchmark", default="synthetic-video")
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--flow-root", type=Path, default=None)
    p.add_argument("--backbone", default="vit", help="cnn | vit")
    p.add_argument("--method", default="quadmix", help="source_only | oracle | dacs | quadmix")
    p.add_argument("--profile", default="demo", help="test | demo | paper")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="schedule length (default: profile)")
    p.add_argument("--until", type=int, default=None,
                   help="stop after this step and checkpoint there (resume later)")
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--pretrained", default=None, help="ImageNet checkpoint path, or 'none'")
    p.add_argument("--recipe", default=None,
                   help="image benchmarks: a named recipe of udass.config.RECIPES (single_resolution, "
                        "daformer, hrda, authors = the paper profile's), applied before --set")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set quadmix.paths=ss,tt (repeatable)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--allow-partial", action="store_true", help=ALLOW_PARTIAL_HELP)
    p.set_defaults(func=_run_train)


def _run_train(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.train import train_from_args

    if a.allow_partial:
        a.overrides = [*a.overrides, "data.allow_partial=true"]
    train_from_args(a)
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a checkpoint on the target val split")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--benchmark", default=None, help="default: the checkpoint's benchmark")
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--flow-root", type=Path, default=None)
    p.add_argument("--network", default="student", help="student | teacher")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=None, help="folder for metrics.json")
    p.add_argument("--allow-partial", action="store_true", help=ALLOW_PARTIAL_HELP)
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.evaluate import evaluate_from_args

    evaluate_from_args(a)
    return 0


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment a folder of frames or a video file")
    p.add_argument("input", type=Path)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--network", default="teacher", help="student | teacher")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_run_segment)


def _run_segment(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.segment import segment

    segment(a.input, a.checkpoint, a.out, network=a.network, device=a.device)
    return 0


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a released checkpoint (TPS, DAFormer, the authors') "
                                       "into a udass checkpoint")
    p.add_argument("source", type=Path, metavar="SRC.pth", help="the released checkpoint file")
    p.add_argument("--from", dest="fmt", required=True, metavar="FORMAT",
                   help="tps | authors-video-cnn | authors-video-vit | daformer | mic | authors-image")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="DST.pt")
    p.add_argument("--benchmark", default=None, help="default: the paper benchmark of its class count")
    p.add_argument("--profile", default="paper", help="profile of the written config (data sizes)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="unpickle a file holding more than tensors (runs its code: trusted files only)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a config field of the written checkpoint, e.g. --set data.flow_source=authors")
    p.set_defaults(func=_run_convert)


def _run_convert(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.convert import convert_checkpoint

    convert_checkpoint(a.fmt, a.source, a.out, benchmark=a.benchmark, profile=a.profile,
                       trust_pickle=a.trust_pickle, overrides=parse_set_args(a.overrides))
    return 0


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="run every notebook with papermill, regenerate results/")
    p.add_argument("--profile", default="demo", help="demo | paper")
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--only", default=None, help="comma-separated notebook names to run")
    p.set_defaults(func=_run_reproduce)


def _run_reproduce(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.reproduce import reproduce

    reproduce(profile=a.profile, data_root=a.data_root, only=a.only)
    return 0


PARAM_HELP = ("a notebook parameter, as papermill's -p (repeatable): True / False / None, numbers "
              "and text as papermill reads them")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job: 02_train_video with the ViT on the embedded "
                                    "benchmark (seed 0, into results/local/)")
    p.add_argument("-p", "--parameter", dest="params", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help=PARAM_HELP)
    p.set_defaults(func=_run_demo)


def _run_demo(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.reproduce import demo, parse_value

    demo({k: parse_value(v) for k, v in a.params})
    return 0


def _add_nb(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nb", help="run one notebook with papermill, its executed copy in "
                                  "results/executed/ (e.g. `udass nb 02 -p backbone cnn`)")
    p.add_argument("notebook", help="its number (02), name (02_train_video) or path")
    p.add_argument("-p", "--parameter", dest="params", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help=PARAM_HELP)
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="the executed notebook (default: results/executed/<name>[-<param>-<value>...].ipynb)")
    p.set_defaults(func=_run_nb)


def _run_nb(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.reproduce import notebook, parse_value

    notebook(a.notebook, {k: parse_value(v) for k, v in a.params}, a.output)
    return 0


def _add_run_dir(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run-dir", help="print the run-cache folder where the notebooks look for the "
                                       "run of these flags (train into it with `udass train --out`)")
    p.add_argument("--benchmark", default="synthetic-video")
    p.add_argument("--backbone", default="vit", help="cnn | vit")
    p.add_argument("--method", default="quadmix", help="source_only | oracle | dacs | quadmix")
    p.add_argument("--profile", default="demo", help="test | demo | paper")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="schedule length (default: profile)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--pretrained", default=None, help="ImageNet checkpoint path, or 'none'")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, as `udass train --set` (repeatable)")
    p.add_argument("--runs-root", default="runs", help="the run cache (default: runs/ of the repository)")
    p.set_defaults(func=_run_run_dir)


def _run_run_dir(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.runs import notebook_run_dir

    print(notebook_run_dir(a.benchmark, a.backbone, a.method, a.profile, a.seed, a.steps,
                           a.data_root, a.pretrained, parse_set_args(a.overrides), a.runs_root))
    return 0


def _add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="write docs/results-synthetic.md from the tables in results/ "
                                       "(keeps the hand-written analysis below its marker)")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--out", default="docs/results-synthetic.md")
    p.set_defaults(func=_run_summary)


def _run_summary(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.experiments import write_summary

    print(write_summary(a.results_dir, a.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="udass", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_synth, _add_check, _add_flow, _add_train, _add_evaluate, _add_segment,
                _add_convert, _add_reproduce, _add_nb, _add_demo, _add_run_dir, _add_summary):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UdassError as e:
        print(f"udass: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("udass: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
