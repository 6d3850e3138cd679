"""A hash of what a few training steps compute, to show that a change leaves the numbers alone.

    python benchmarks/fingerprint.py [--steps 12] [--profile demo] [--threads 1,2]
                                     [--case BENCHMARK:BACKBONE:METHOD[:KEY=VALUE ...] ...]

For each case (default: five demo configurations: QuadMix vit and cnn on synthetic-video, DACS
vit, QuadMix vit on synthetic-image, QuadMix vit with the contrastive aggregation loss), a
Trainer is built with its seed, trained `--steps` steps on its step-indexed batches with
deterministic algorithms, and the SHA-256 of every logged value of every step (losses,
pseudo-label weight, lr; `repr`, so all float digits) and of the student's and the teacher's
final tensors is printed, one line per case and torch thread count. Run it at two commits (same
machine, same torch) and compare the lines: equal hashes mean the change computed the same bits;
a performance change that claims "same values" must leave them equal. Both thread counts
matter: with several threads a reduction over few rows is split between the threads, so code
that reduces over a different number of rows can agree on one thread and differ on two (the
first version of the strong-augmentation subset did). Not a timing.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/fingerprint.py` from a source checkout
    sys.path.insert(0, str(REPO))

DEFAULT_CASES = ("synthetic-video:vit:quadmix", "synthetic-video:cnn:quadmix", "synthetic-video:vit:dacs",
                 "synthetic-image:vit:quadmix", "synthetic-video:vit:quadmix:aggregation.loss=contrastive")


def parse_case(text: str) -> tuple[str, str, str, dict[str, str]]:
    """"benchmark:backbone:method[:key=value[:key=value ...]]" -> (benchmark, backbone, method,
    overrides); values as `--set` takes them (quadmix.paths=ss,tt)."""
    parts = text.split(":")
    if len(parts) < 3 or any("=" not in kv for kv in parts[3:]):
        raise SystemExit(f"--case {text!r}: expected BENCHMARK:BACKBONE:METHOD[:KEY=VALUE ...]")
    return parts[0], parts[1], parts[2], dict(kv.split("=", 1) for kv in parts[3:])


def fingerprint(case: str, steps: int, profile: str = "demo") -> str:
    """The hex SHA-256 of `steps` training steps of `case` (see the module docstring)."""
    from udass.config import build_config
    from udass.train import Trainer

    bench, backbone, method, over = parse_case(case)
    cfg = build_config(bench, backbone, method, profile, over)
    h = hashlib.sha256()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run", device="cpu", progress=False)
        for source, target in trainer.batches(steps):
            values = trainer.train_step(source, target)
            h.update(repr(sorted(values.items())).encode())
        for module in (trainer.learner, trainer.teacher.model):
            for name, tensor in sorted(module.state_dict().items()):
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--case", action="append", default=[])
    a = ap.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    for threads in (int(t) for t in a.threads.split(",")):
        torch.set_num_threads(threads)
        for case in a.case or DEFAULT_CASES:
            print(f"{fingerprint(case, a.steps, a.profile)[:16]}  {case}  ({a.profile}, {a.steps} steps, "
                  f"{threads} thread{'s' if threads > 1 else ''}, "
                  f"{torch.backends.cpu.get_cpu_capability()} kernels)", flush=True)


if __name__ == "__main__":
    main()
