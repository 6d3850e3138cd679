"""The `udass` command line. Each subcommand parses its flags and calls one public function.

Errors a user can fix (`UdassError`) print one line and exit with status 2, no traceback.
Each subcommand imports the stack it runs inside its `_run_*` function: building the parser
(`udass --help`, a wrong flag) and a light subcommand do not pay for torch, the models and
matplotlib. Those are the only local imports of the package besides the heavy optional ones.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from udass.config import build_config, parse_set_args
from udass.errors import Interrupted, UdassError

BENCHMARK_HELP = ("benchmark id: synthetic-video | synthetic-image | synthia-seq2cityscapes-seq | "
                  "viper2cityscapes-seq | gtav2cityscapes | synthia2cityscapes")
DATA_ROOT_HELP = ("folder holding the dataset folders (cityscapes/, gta/, ...; default for the "
                  "embedded benchmarks: the synthetic cache)")
FLOW_ROOT_HELP = "flow cache folder (default: <data root>/udass_flow)"
DEVICE_HELP = "auto (CUDA when available, else CPU) | cpu | cuda | cuda:N"
CHECKPOINT_HELP = "a checkpoint file written by udass train or udass convert"
ALLOW_PARTIAL_HELP = ("evaluate an incomplete val split on its complete clips (metrics.json and tables "
                      "mark the result partial) instead of refusing it")


# What `udass synth` generates (udass.data.synthetic BENCHMARK_SPECS and SIZES; a test keeps them
# equal), listed here so that building the parser does not import the data stack.
SYNTH_BENCHMARKS = ("synthetic-video", "synthetic-image", "synthia-seq2cityscapes-seq",
                    "viper2cityscapes-seq", "gtav2cityscapes", "synthia2cityscapes")
SYNTH_SIZES = ("tiny", "demo", "paper")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help when it has a value worth showing (not None,
    not a flag's False, not an empty list) and the help does not already say its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if "default" in text or d is None or d is False or d == [] or d == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def _parser(sub: argparse._SubParsersAction, name: str, text: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=text, description=text, formatter_class=_HelpFormatter)


def check_paths(args: argparse.Namespace) -> None:
    """A path argument that names a file where a folder is expected (`folders` of the
    subcommand), or a folder where a file is expected (`files`), is a one-line UdassError."""
    for dest in getattr(args, "folders", ()):
        path = getattr(args, dest, None)
        if path is not None and Path(path).exists() and not Path(path).is_dir():
            raise UdassError(f"{_flag(dest)} {path} is a file, expected a folder; pass a folder "
                             f"path (a new one is created)")
    for dest in getattr(args, "files", ()):
        path = getattr(args, dest, None)
        if path is not None and Path(path).is_dir():
            raise UdassError(f"{_flag(dest)} {path} is a folder, expected a file; pass the file's "
                             f"path")


def _flag(dest: str) -> str:
    return dest.upper() if dest == "source" else "--" + dest.replace("_", "-")


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "synth", "generate a synthetic data root (an embedded benchmark, or a paper "
                              "benchmark's real layouts for dry runs)")
    p.add_argument("--benchmark", required=True, choices=SYNTH_BENCHMARKS, metavar="BENCHMARK",
                   help="embedded: synthetic-video | synthetic-image; paper benchmark ids, written "
                        "in their datasets' layouts: synthia-seq2cityscapes-seq | "
                        "viper2cityscapes-seq | gtav2cityscapes | synthia2cityscapes")
    p.add_argument("--out", required=True, type=Path,
                   help="folder that becomes the data root (created; a folder udass synth wrote is "
                        "replaced, any other must hold no dataset folders)")
    p.add_argument("--seed", type=int, default=0, help="data seed (same seed: identical files)")
    p.add_argument("--size", default="demo", choices=SYNTH_SIZES,
                   help="tiny (tests) | demo | paper (the datasets' real resolutions, a few items)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: 1 for tiny, else up to 4; same files for any)")
    p.set_defaults(func=_run_synth, folders=("out",))


def _run_synth(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.data.synthetic import generate

    root = generate(a.benchmark, a.out, seed=a.seed, size=a.size, workers=a.workers)
    print(f"wrote {a.benchmark} ({a.size}, seed {a.seed}) to {root}")
    return 0


def _add_check(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "check-data", "report what a data root holds and what is missing")
    p.add_argument("--benchmark", required=True, help=BENCHMARK_HELP)
    p.add_argument("--data-root", type=Path, default=None,
                   help="folder holding cityscapes/, gta/, ... (default: the synthetic cache)")
    p.add_argument("--flow-root", type=Path, default=None, help=FLOW_ROOT_HELP)
    p.add_argument("--flow-source", default=None,
                   help="dis | exact | authors (default: the benchmark's preset: exact for the "
                        "embedded benchmarks, else dis)")
    p.add_argument("--full", action="store_true",
                   help="read every label file once: ids outside the encoding, unreadable files, sizes")
    p.set_defaults(func=_run_check, folders=("data_root", "flow_root"))


def _run_check(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.data.check import check_data

    cfg = build_config(a.benchmark).data
    if a.flow_source is not None:
        cfg = dataclasses.replace(cfg, flow_source=a.flow_source)
    return check_data(a.benchmark, a.data_root, data_cfg=cfg, flow_root=a.flow_root, full=a.full)


def _add_flow(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "flow", "precompute backward optical flow (OpenCV DIS) into the cache")
    p.add_argument("--benchmark", required=True, help=BENCHMARK_HELP)
    p.add_argument("--data-root", type=Path, required=True, help=DATA_ROOT_HELP)
    p.add_argument("--flow-root", type=Path, default=None, help=FLOW_ROOT_HELP)
    p.add_argument("--workers", type=int, default=1, help="worker processes, one core each")
    p.add_argument("--preset", default="medium", help="DIS preset: ultrafast | fast | medium")
    p.add_argument("--max-width", type=int, default=None,
                   help="store flows at most this wide, e.g. 1024 (default: the frame's resolution)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="compute only shard I of N (0 <= I < N; disjoint, resumable: array jobs; "
                        "default: every flow)")
    p.set_defaults(func=_run_flow, folders=("data_root", "flow_root"))


def _run_flow(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.data.flowcache import compute_flows, parse_shard

    compute_flows(a.benchmark, a.data_root, flow_root=a.flow_root, workers=a.workers,
                  preset=a.preset, max_width=a.max_width,
                  shard=parse_shard(a.shard) if a.shard is not None else None,
                  data_cfg=build_config(a.benchmark).data)
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "train", "train a method (resumes from OUT's last checkpoint; Ctrl-C "
                              "checkpoints the current step)")
    p.add_argument("--benchmark", default="synthetic-video", help=BENCHMARK_HELP)
    p.add_argument("--data-root", type=Path, default=None, help=DATA_ROOT_HELP)
    p.add_argument("--flow-root", type=Path, default=None, help=FLOW_ROOT_HELP)
    p.add_argument("--backbone", default="vit", help="cnn | vit")
    p.add_argument("--method", default="quadmix", help="source_only | oracle | dacs | quadmix")
    p.add_argument("--profile", default="demo", help="test | demo | paper")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--steps", type=int, default=None, help="schedule length (default: the profile's)")
    p.add_argument("--until", type=int, default=None,
                   help="stop after this step and checkpoint there, to resume later (default: the "
                        "schedule's end)")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="steps between checkpoints (default: the profile's; a checkpoint is also "
                        "written at the end, at --until and on Ctrl-C)")
    p.add_argument("--pretrained", default=None,
                   help="ImageNet checkpoint path, or 'none' (default: the profile's: none, except "
                        "the paper profile, which asks for one)")
    p.add_argument("--recipe", default=None,
                   help="image benchmarks: a named recipe of udass.config.RECIPES (single_resolution, "
                        "daformer, hrda, authors = the paper profile's), applied before --set "
                        "(default: the profile's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set quadmix.paths=ss,tt (repeatable; "
                        "default: none)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--out", type=Path, required=True,
                   help="run folder (checkpoints/, log.csv, metrics.json; an existing run resumes)")
    p.add_argument("--reevaluate", action="store_true",
                   help="evaluate a finished run again (by default a finished run is left as it is)")
    p.add_argument("--allow-partial", action="store_true", help=ALLOW_PARTIAL_HELP)
    p.add_argument("--dry-run", type=int, default=None, metavar="N",
                   help="run N real steps of this recipe on this data and device, print peak memory, "
                        "seconds per step (data / forward-backward / mixing), the projected time of "
                        "the schedule and anything missing (files, weights, disk); writes nothing to "
                        "OUT; exit status 1 when something is missing (default: train)")
    p.set_defaults(func=_run_train, folders=("out", "data_root", "flow_root"))


def _run_train(a: argparse.Namespace) -> int:
    if a.allow_partial:
        a.overrides = [*a.overrides, "data.allow_partial=true"]
    # the subcommand's stack, imported when it runs (module docstring)
    if a.dry_run is not None:
        from udass.train.dryrun import dry_run_from_args

        return dry_run_from_args(a)
    from udass.train import train_from_args

    train_from_args(a)
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "evaluate", "evaluate a checkpoint on the target val split")
    p.add_argument("--checkpoint", type=Path, required=True, help=CHECKPOINT_HELP)
    p.add_argument("--benchmark", default=None, help="default: the checkpoint's benchmark")
    p.add_argument("--data-root", type=Path, default=None,
                   help="folder holding the dataset folders (default: the checkpoint's, or the "
                        "synthetic cache)")
    p.add_argument("--flow-root", type=Path, default=None, help=FLOW_ROOT_HELP)
    p.add_argument("--network", default="student", help="student | teacher")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--out", type=Path, default=None,
                   help="folder for metrics.json (default: print the result only)")
    p.add_argument("--allow-partial", action="store_true", help=ALLOW_PARTIAL_HELP)
    p.set_defaults(func=_run_evaluate, folders=("out", "data_root", "flow_root"),
                   files=("checkpoint",))


def _run_evaluate(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.evaluate import evaluate_from_args

    evaluate_from_args(a)
    return 0


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "segment", "segment a folder of frames or a video file")
    p.add_argument("input", type=Path, help="a folder of frames (sorted by name) or a video file")
    p.add_argument("--checkpoint", type=Path, required=True, help=CHECKPOINT_HELP)
    p.add_argument("-o", "--out", type=Path, required=True,
                   help="folder for the colour PNGs, legend.png and overlay.mp4 (created)")
    p.add_argument("--network", default="teacher", help="student | teacher")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.set_defaults(func=_run_segment, folders=("out",), files=("checkpoint",))


def _run_segment(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.segment import segment

    segment(a.input, a.checkpoint, a.out, network=a.network, device=a.device)
    return 0


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "convert", "convert a released checkpoint (TPS, DAFormer, the authors') into a "
                                "udass checkpoint")
    p.add_argument("source", type=Path, metavar="SRC.pth", help="the released checkpoint file")
    p.add_argument("--from", dest="fmt", required=True, metavar="FORMAT",
                   help="tps | authors-video-cnn | authors-video-vit | daformer | mic | authors-image")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="DST.pt",
                   help="the udass checkpoint to write (a file)")
    p.add_argument("--benchmark", default=None,
                   help="the benchmark it was trained for (default: the paper benchmark of its class "
                        "count)")
    p.add_argument("--profile", default="paper", help="profile of the written config (data sizes)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="unpickle a file holding more than tensors (runs its code: trusted files only)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a config field of the written checkpoint, e.g. --set data.flow_source=authors "
                        "(repeatable; default: none)")
    p.set_defaults(func=_run_convert, files=("source", "out"))


def _run_convert(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.convert import convert_checkpoint

    convert_checkpoint(a.fmt, a.source, a.out, benchmark=a.benchmark, profile=a.profile,
                       trust_pickle=a.trust_pickle, overrides=parse_set_args(a.overrides))
    return 0


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "reproduce", "run every notebook with papermill, regenerate results/")
    p.add_argument("--profile", default="demo", help="demo | paper")
    p.add_argument("--data-root", type=Path, default=None,
                   help="folder holding the real datasets: the paper benchmarks found there run "
                        "(default: none: the embedded benchmarks run)")
    p.add_argument("--only", default=None,
                   help="comma-separated notebook names to run (default: every notebook)")
    p.set_defaults(func=_run_reproduce, folders=("data_root",))


@contextlib.contextmanager
def _notebook_stop() -> Iterator[None]:
    """Ctrl-C or SIGTERM while papermill runs notebooks: papermill stops the notebook's kernel,
    whose training run checkpoints its last completed step (udass.train.stop), and udass prints
    one line. SIGTERM is turned into the process's own SIGINT, so it takes Ctrl-C's path (the
    asyncio loop under papermill cancels its task on SIGINT); without this the command died at
    once and the kernel, in a session of its own, ended without its checkpoint."""
    received: list[int] = []  # the SIGTERMs seen

    def terminated(signum: int, frame: object) -> None:
        received.append(signum)
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    except KeyboardInterrupt:
        # a kernel stopped mid-cell leaves nbclient a task that failed with DeadKernelError;
        # asyncio logs it with a traceback when the task is collected, after udass's one line
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        signum, what = (signal.SIGTERM, "SIGTERM") if received else (signal.SIGINT, "Ctrl-C")
        raise Interrupted(f"interrupted ({what}); the training runs finished so far, and the one "
                          f"in progress at its last completed step, are kept in runs/; rerun the "
                          f"same command to continue", signum) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_reproduce(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.reproduce import reproduce

    with _notebook_stop():
        reproduce(profile=a.profile, data_root=a.data_root, only=a.only)
    return 0


PARAM_HELP = ("a notebook parameter, as papermill's -p (repeatable): True / False / None, numbers "
              "and text as papermill reads them")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "demo", "the main job: 02_train_video with the ViT on the embedded benchmark "
                             "(seed 0, into results/local/)")
    p.add_argument("-p", "--parameter", dest="params", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help=PARAM_HELP + " (default: none)")
    p.set_defaults(func=_run_demo)


def _run_demo(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.reproduce import demo, parse_value

    with _notebook_stop():
        demo({k: parse_value(v) for k, v in a.params})
    return 0


def _add_nb(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "nb", "run one notebook with papermill, its executed copy in results/executed/ "
                           "(e.g. `udass nb 02 -p backbone cnn`)")
    p.add_argument("notebook", help="its number (02), name (02_train_video) or path")
    p.add_argument("-p", "--parameter", dest="params", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help=PARAM_HELP + " (default: none)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="the executed notebook (default: results/executed/<name>[-<param>-<value>...].ipynb)")
    p.set_defaults(func=_run_nb)


def _run_nb(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.reproduce import notebook, parse_value

    with _notebook_stop():
        notebook(a.notebook, {k: parse_value(v) for k, v in a.params}, a.output)
    return 0


def _add_run_dir(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "run-dir", "print the run-cache folder where the notebooks look for the run of "
                                "these flags (train into it with `udass train --out`)")
    p.add_argument("--benchmark", default="synthetic-video", help=BENCHMARK_HELP)
    p.add_argument("--backbone", default="vit", help="cnn | vit")
    p.add_argument("--method", default="quadmix", help="source_only | oracle | dacs | quadmix")
    p.add_argument("--profile", default="demo", help="test | demo | paper")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--steps", type=int, default=None, help="schedule length (default: the profile's)")
    p.add_argument("--data-root", default=None, help=DATA_ROOT_HELP)
    p.add_argument("--pretrained", default=None,
                   help="ImageNet checkpoint path, or 'none' (default: the profile's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, as `udass train --set` (repeatable; default: none)")
    p.add_argument("--runs-root", default="runs", help="the run cache (default: runs/ of the repository)")
    p.set_defaults(func=_run_run_dir)


def _run_run_dir(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.runs import notebook_run_dir

    print(notebook_run_dir(a.benchmark, a.backbone, a.method, a.profile, a.seed, a.steps,
                           a.data_root, a.pretrained, parse_set_args(a.overrides), a.runs_root))
    return 0


def _add_summary(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "summary", "write docs/results-synthetic.md from the tables in results/ (keeps "
                                "the hand-written analysis below its marker)")
    p.add_argument("--results-dir", default="results", help="the regenerated tables")
    p.add_argument("--out", default="docs/results-synthetic.md", help="the summary written (default: docs/results-synthetic.md)")
    p.set_defaults(func=_run_summary)


def _run_summary(a: argparse.Namespace) -> int:
    # the subcommand's stack, imported when it runs (module docstring)
    from udass.experiments import write_summary

    print(write_summary(a.results_dir, a.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="udass", description=__doc__.splitlines()[0],
                                     formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_synth, _add_check, _add_flow, _add_train, _add_evaluate, _add_segment,
                _add_convert, _add_reproduce, _add_nb, _add_demo, _add_run_dir, _add_summary):
        add(sub)
    return parser


def _end_distributed() -> None:
    """End the process group of a torchrun launch cleanly (`runtime.shutdown_distributed`). Only
    `udass.runtime` starts one, so a command that never imported it (nor torch) has none."""
    runtime = sys.modules.get("udass.runtime")
    if runtime is not None:
        runtime.shutdown_distributed()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stopped = None
    try:
        check_paths(args)
        status = int(args.func(args) or 0)
    except Interrupted as e:  # a signal, after keeping what could be kept: one line (one rank)
        stopped, status = str(e), e.exit_status  # every rank stopped after the same step
    except UdassError as e:
        print(f"udass: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("udass: interrupted (Ctrl-C); udass writes every file atomically, so none is left "
              "half-written", file=sys.stderr)
        return 130
    # out of the except clause: the stopped run's frames (its DDP wrapper among them) are freed
    # before the group is ended (runtime.shutdown_distributed says why)
    _end_distributed()
    if stopped is not None and os.environ.get("RANK", "0") == "0":
        print(f"udass: {stopped}", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
