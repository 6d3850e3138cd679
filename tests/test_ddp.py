"""Distributed training (torchrun, gloo on CPU, 2 processes): every method x backbone trains,
resumes exactly and evaluates like one process; the ranks draw their own random numbers; the
gradients DDP synchronises include those of a parameter used only in an unsynchronised pass."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from leave import leave_without_teardown
from udass import checkpoint as ckpt
from udass.cli import main
from udass.runtime import step_seed

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _torchrun(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", *args], env=ENV, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ddp")
    proc = _torchrun(str(REPO / "tests" / "ddp_matrix.py"), str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("method", ["source_only", "oracle", "dacs", "quadmix"])
@pytest.mark.parametrize("backbone", ["cnn", "vit"])
def test_every_method_and_backbone_trains_resumes_and_evaluates_like_one_process(
        matrix, method, backbone, tmp_path):
    r = matrix[f"{method}-{backbone}"]
    assert r["resume_identical"], "stopped at step 2 and resumed differs from 3 straight steps"
    run = Path(r["run"])
    ddp = json.loads((run / "metrics.json").read_text())
    assert ddp["step"] == 3
    # the DDP evaluation shards the val split over the ranks and all-reduces the confusion
    # matrices: a single process evaluating the final checkpoint gets the same numbers
    assert main(["evaluate", "--checkpoint", str(ckpt.last_checkpoint(run)), "--device", "cpu",
                 "--out", str(tmp_path)]) == 0
    single = json.loads((tmp_path / "metrics.json").read_text())
    for net in (single, single["teacher"]):
        ref = ddp if net is single else ddp["teacher"]
        assert net["confusion_matrix"] == ref["confusion_matrix"]
        assert net["miou"] == ref["miou"] and net["per_class_iou"] == ref["per_class_iou"]


@pytest.mark.parametrize("method", ["source_only", "oracle", "dacs", "quadmix"])
@pytest.mark.parametrize("backbone", ["cnn", "vit"])
def test_each_step_synchronises_the_gradients_once(matrix, method, backbone):
    """The mixing methods run two student passes per step: the first, forward included, under
    no_sync (DDP decides at the forward whether the next backward all-reduces), so only the
    step's last pass communicates."""
    assert matrix[f"{method}-{backbone}"]["synced_forwards"] == [1, 1, 1]


def test_ranks_draw_their_own_random_numbers(matrix):
    assert matrix["rank_draws_differ"]
    assert step_seed(3, 5, stream=1, rank=0) == step_seed(3, 5, stream=1)  # rank 0: one process
    assert len({step_seed(3, 5, stream=1, rank=r) for r in range(8)}) == 8


def test_the_cli_command_of_the_docs_runs_dacs_with_the_cnn(tmp_path):
    """The auxiliary head of the CNN is used in the first (unsynchronised) pass only."""
    out = tmp_path / "run"
    proc = _torchrun("-m", "udass", "train", "--profile", "test", "--method", "dacs", "--backbone",
                     "cnn", "--steps", "3", "--device", "cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads((out / "metrics.json").read_text())["step"] == 3


def test_ddp_trains_the_image_recipe_with_the_cnn(tmp_path):
    """RCS (the main process counts the class statistics, the other reads its cache), FD, HRDA
    (the CNN's auxiliary head never runs) and MIC under two processes."""
    out = tmp_path / "run"
    proc = _torchrun("-m", "udass", "train", "--benchmark", "synthetic-image", "--profile", "test",
                     "--method", "quadmix", "--backbone", "cnn", "--recipe", "authors", "--steps", "2",
                     "--device", "cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads((out / "metrics.json").read_text())["step"] == 2
    assert json.loads((out / "run.json").read_text())["config"]["model"]["hrda"]
    header, *rows = (out / "log.csv").read_text().splitlines()
    assert "loss_mic" in header and len(rows) == 2


class _TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body, self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 1), nn.Linear(3, 1)

    def forward(self, x: torch.Tensor, with_b: bool) -> torch.Tensor:
        h = self.body(x)
        return self.a(h) + (self.b(h) if with_b else 0)


def _grad_worker(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(_TwoHeads(), find_unused_parameters=True)
    x = torch.full((4, 3), float(rank + 1))
    with model.no_sync():  # pass 1: both heads, gradients kept locally
        model(x, True).square().mean().backward()
    model(x * 2, False).square().mean().backward()  # pass 2 (synchronised): head b unused
    grads = {n: p.grad.clone() for n, p in model.module.named_parameters()}
    torch.save(grads, f"{out}.{rank}")
    # Without a last collective, a rank that finishes first tears its gloo connections down
    # while the other's reducer is still finishing its all-reduce: that rank then aborts
    # ("terminate called without an active exception"), about one run in eight here.
    dist.barrier()
    dist.destroy_process_group()
    leave_without_teardown()  # the DDP reducer is not torn down (tests/leave.py)


def test_ddp_averages_the_gradient_of_a_parameter_used_only_in_the_unsynchronised_pass(tmp_path):
    """What the two-pass steps rely on: a parameter used in pass 1 (under no_sync) and not in
    pass 2 still has its accumulated gradient averaged over the ranks."""
    mp.spawn(_grad_worker, args=(str(tmp_path / "pg"), str(tmp_path / "g")), nprocs=2)
    g = [torch.load(tmp_path / f"g.{r}") for r in range(2)]
    local = []
    for rank in range(2):
        torch.manual_seed(0)
        m = _TwoHeads()
        x = torch.full((4, 3), float(rank + 1))
        m(x, True).square().mean().backward()
        m(x * 2, False).square().mean().backward()
        local.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for name in g[0]:
        assert torch.allclose(g[0][name], g[1][name]), name
        assert torch.allclose(g[0][name], (local[0][name] + local[1][name]) / 2, atol=1e-6), name


def _stop_worker(rank: int, init: str, out: str) -> None:
    import signal

    from udass.train.stop import StopOnSignal

    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=2)
    stop = StopOnSignal()
    seen = []
    for step in range(1, 5):
        if rank == 1 and step == 3:   # only rank 1 is signalled, after its step 3
            stop.signum = signal.SIGTERM
        seen.append(stop.requested())
    torch.save({"seen": seen, "signum": int(stop.signum)}, f"{out}.{rank}")
    dist.barrier()  # as in _grad_worker: no rank leaves while the other still communicates
    dist.destroy_process_group()


def test_a_signal_on_one_rank_stops_every_rank_after_the_same_step(tmp_path):
    """StopOnSignal.requested() takes the maximum of the ranks' flags: rank 0, never signalled,
    stops after step 3 with rank 1 and learns which signal it was."""
    import signal

    mp.spawn(_stop_worker, args=(str(tmp_path / "pg"), str(tmp_path / "s")), nprocs=2)
    for r in range(2):
        got = torch.load(tmp_path / f"s.{r}")
        assert got == {"seen": [False, False, True, True], "signum": int(signal.SIGTERM)}, r


def _shutdown_worker(rank: int, port: int, out: str) -> None:
    from udass.runtime import init_distributed, shutdown_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                      RANK=str(rank), LOCAL_RANK=str(rank))
    info, _ = init_distributed("cpu")
    t = torch.tensor([rank + 1.0])
    dist.all_reduce(t)
    shutdown_distributed()
    ended = not dist.is_initialized()
    # a caller that ends the group itself (tests/ddp_matrix.py does) frees it at once: udass
    # keeps no reference that would carry it to interpreter finalization
    init_distributed("cpu")
    group = weakref.ref(dist.group.WORLD)
    dist.barrier()
    dist.destroy_process_group()
    torch.save({"world": info.world_size, "sum": float(t), "ended": ended,
                "freed": group() is None}, f"{out}.{rank}")


def test_shutdown_ends_the_process_group_that_udass_started(tmp_path):
    """`udass` ends a torchrun launch with a barrier and destroy_process_group (a rank exiting
    with a live gloo group can be aborted while its threads are torn down)."""
    import socket

    from udass.runtime import shutdown_distributed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_shutdown_worker, args=(port, str(tmp_path / "d")), nprocs=2)
    for r in range(2):
        assert torch.load(tmp_path / f"d.{r}") == {"world": 2, "sum": 3.0, "ended": True,
                                                    "freed": True}
    # a group that udass did not start (here a test's) is left alone
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'own'}", rank=0, world_size=1)
    try:
        shutdown_distributed()
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()


def test_a_stopped_run_is_freed_before_its_group_is_ended(monkeypatch, capsys):
    """`udass` ends the group after the run's frames are gone: a DDP wrapper that outlives
    destroy_process_group ends the group later from its reducer's destructor, holding the GIL
    while the group's threads may wait for it (tests/leave.py). On a stop by a signal the run
    lives on in the exception's traceback until the except clause is left."""
    import argparse
    import signal

    import udass.cli as cli
    import udass.runtime as runtime
    from udass.errors import Interrupted

    class Run:  # stands for the trainer and its DDP wrapper
        pass

    runs: list[weakref.ref] = []
    freed_at_shutdown: list[bool] = []

    def command(args: argparse.Namespace) -> int:
        run = Run()
        runs.append(weakref.ref(run))
        if args.stop:
            raise Interrupted("interrupted at step 2; checkpoint kept: X", signal.SIGINT)
        return 0

    def parser() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser()
        p.add_argument("--stop", action="store_true")
        p.set_defaults(func=command)
        return p

    monkeypatch.setattr(cli, "build_parser", parser)
    monkeypatch.setattr(runtime, "shutdown_distributed",
                        lambda: freed_at_shutdown.append(runs[-1]() is None))
    assert cli.main([]) == 0
    assert cli.main(["--stop"]) == 130
    assert freed_at_shutdown == [True, True]
    assert capsys.readouterr().err.strip() == "udass: interrupted at step 2; checkpoint kept: X"


SIGNAL_RANK_1 = r"""
import os, signal, sys
from udass.train import Trainer

real_step = Trainer.train_step

def train_step(self, source, target):
    values = real_step(self, source, target)
    if self.step == 3 and os.environ["RANK"] == "1":
        os.kill(os.getpid(), signal.SIGTERM)
    return values

Trainer.train_step = train_step
from udass.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_torchrun_interrupted_on_one_rank_checkpoints_once_and_resumes_exactly(tmp_path):
    """SIGTERM to rank 1 after step 3: both ranks stop after step 3, rank 0 writes its
    checkpoint, and the same command finishes bit-identical to an uninterrupted run."""
    script = tmp_path / "signal_rank_1.py"
    script.write_text(SIGNAL_RANK_1)
    args = ["train", "--profile", "test", "--steps", "6", "--set", "train.checkpoint_every=100",
            "--device", "cpu"]
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert _torchrun("-m", "udass", *args, "--out", str(ref)).returncode == 0
    stopped = _torchrun(str(script), *args, "--out", str(out))
    assert stopped.returncode != 0
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [3]
    assert stopped.stderr.count("udass: interrupted (SIGTERM) at step 3; checkpoint kept: ") == 1
    assert _torchrun("-m", "udass", *args, "--out", str(out)).returncode == 0
    a = torch.load(ckpt.last_checkpoint(ref), weights_only=False)
    b = torch.load(ckpt.last_checkpoint(out), weights_only=False)
    for part in ("student", "teacher"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
