"""Run under `torchrun --nproc-per-node 2` by tests/test_ddp.py (gloo, CPU): every method x
backbone of the test profile trains 3 steps; the same command stopped at step 2 and resumed
gives the same checkpoint; each step synchronises the gradients in one pass; each rank draws its
own random numbers. Rank 0 writes a JSON report.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_matrix.py OUT
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from leave import leave_without_teardown  # tests/leave.py (the script's folder is on sys.path)
from udass import checkpoint as ckpt
from udass.config import build_config
from udass.data.clip import collate_clips
from udass.train import Trainer, train

METHODS = ("source_only", "oracle", "dacs", "quadmix")
BACKBONES = ("cnn", "vit")


def _same_checkpoint(a: Path, b: Path) -> bool:
    sa = torch.load(ckpt.last_checkpoint(a), weights_only=False)
    sb = torch.load(ckpt.last_checkpoint(b), weights_only=False)
    parts = ("student", "teacher", "templates")
    return sa["step"] == sb["step"] and all(_equal(sa[p], sb[p]) for p in parts)


def _equal(x: object, y: object) -> bool:
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and torch.equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_equal(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return isinstance(y, (list, tuple)) and len(x) == len(y) and all(map(_equal, x, y))
    return x == y


def _rank_draws(out: Path) -> bool:
    """Both ranks step a DACS trainer on the SAME batch: their strong augmentations (and the
    rest of their draws) must differ, since the rank is folded into every step seed."""
    cfg = build_config("synthetic-video", "vit", "dacs", "test", {"augment.jitter_p": 1.0})
    trainer = Trainer(cfg, out, device="cpu", progress=False)
    src, tgt = trainer.dataset("source"), trainer.dataset("target")
    source, target = collate_clips([src[0], src[1]]), collate_clips([tgt[0], tgt[1]])
    # the same clips on both ranks
    _, record = trainer.train_step_recorded(source, target)
    mine = record.strong["mix"]
    theirs = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(theirs, mine)
    return not torch.equal(theirs[0], theirs[1])


class _SyncedForwards:
    """Counts, per training step, the student forwards that DDP prepares to synchronise (grad
    enabled and no `no_sync` at the forward: DDP all-reduces the backward that follows)."""

    def __init__(self) -> None:
        self.per_step: list[int] = []
        ddp, step = torch.nn.parallel.DistributedDataParallel, Trainer._step
        forward = ddp.forward

        def counted_forward(module, *args, **kwargs):
            if torch.is_grad_enabled() and module.require_backward_grad_sync and self.per_step:
                self.per_step[-1] += 1
            return forward(module, *args, **kwargs)

        def counted_step(trainer, *args, **kwargs):
            self.per_step.append(0)
            return step(trainer, *args, **kwargs)

        ddp.forward, Trainer._step = counted_forward, counted_step

    def take(self) -> list[int]:
        counts, self.per_step = self.per_step, []
        return counts


def main(out: Path) -> None:
    report: dict[str, object] = {}
    synced = _SyncedForwards()
    for method in METHODS:
        for backbone in BACKBONES:
            cfg = build_config("synthetic-video", backbone, method, "test", {"train.steps": 3})
            a, b = out / f"{method}-{backbone}-a", out / f"{method}-{backbone}-b"
            synced.take()  # drop the counts of the previous combination's resumed run
            train(cfg, a, progress=False)
            per_step = synced.take()
            train(cfg, b, until=2, progress=False)
            train(cfg, b, progress=False)
            if dist.get_rank() == 0:
                report[f"{method}-{backbone}"] = {"resume_identical": _same_checkpoint(a, b),
                                                  "run": str(a), "synced_forwards": per_step}
    report["rank_draws_differ"] = _rank_draws(out / "draws")
    if dist.get_rank() == 0:
        (out / "report.json").write_text(json.dumps(report, indent=1))
    dist.barrier()
    dist.destroy_process_group()  # as `udass` does at the end of a run (runtime.shutdown_distributed)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    # everything is in report.json and the group is destroyed (tests/leave.py says why not to
    # tear the process down: under load, about one run in 30 aborted there)
    leave_without_teardown()
