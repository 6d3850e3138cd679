"""Fault tolerance and error paths (docs/performance.md, "Reliability").

- A training run killed with SIGKILL (after its first checkpoint, and its resumption again
  mid-way) and resumed with the same command ends with the parameters and metrics of an
  uninterrupted run. No half-written checkpoint is ever visible: every step_*.pt seen while the
  run writes loads completely, and a write killed half-way leaves only a dot-prefixed .tmp file
  that `list_checkpoints` never picks up.
- Every user error (data, names, files, notebook parameters) is one line, a non-zero exit, no
  traceback, and nothing written where the command would have written its results.
Determinism (two runs with one seed give identical metrics.json) is tested by
tests/test_train.py::test_resume_after_stop_is_bit_identical.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from udass import checkpoint as ckpt
from udass.errors import UdassError

REPO = Path(__file__).resolve().parent.parent
STEPS = 10
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
CKPT_NAME = re.compile(r"^step_(\d{7})\.pt$")
TMP_NAME = re.compile(r"^\.step_\d{7}\.pt\..+\.tmp$")


def train_cmd(root: Path, out: Path, *extra: str) -> list[str]:
    """The one command of these tests: QuadMix, ViT, test profile, a checkpoint every step."""
    return [sys.executable, "-m", "udass", "train", "--profile", "test", "--steps", str(STEPS),
            "--set", "train.checkpoint_every=1", "--device", "cpu", "--data-root", str(root),
            "--out", str(out), *extra]


@pytest.fixture(scope="module")
def reference(tiny_video_root, tmp_path_factory) -> Path:
    """An uninterrupted run of the command."""
    out = tmp_path_factory.mktemp("reference") / "run"
    subprocess.run(train_cmd(tiny_video_root, out), check=True, env=ENV, cwd=REPO, capture_output=True)
    return out


def _files(folder: Path) -> dict[tuple[str, int], Path]:
    """step_*.pt files by (name, inode): a rewritten file is a new entry (atomic rename)."""
    found = {}
    for path in folder.glob("step_*.pt"):
        try:
            found[path.name, path.stat().st_ino] = path
        except FileNotFoundError:  # pruned in between
            pass
    return found


def run_and_kill(cmd: list[str], out: Path, kill_at: int, log: Path) -> tuple[int, list[int]]:
    """Start `cmd`; SIGKILL it as soon as it has written a checkpoint of step >= kill_at. Every
    step_*.pt that appears meanwhile is read and must load completely. Returns (exit status,
    steps of the checkpoints this run wrote, as far as seen)."""
    folder = out / "checkpoints"
    before = set(_files(folder))
    written: dict[tuple[str, int], int] = {}
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        try:
            while proc.poll() is None:
                for key, path in sorted(_files(folder).items()):
                    if key in before or key in written:
                        continue
                    try:
                        data = path.read_bytes()
                    except FileNotFoundError:  # pruned in between (keep=2)
                        continue
                    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
                    assert path.name == f"step_{state['step']:07d}.pt"
                    written[key] = int(state["step"])
                    if state["step"] >= kill_at:
                        proc.send_signal(signal.SIGKILL)
                        break
                time.sleep(0.002)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode, sorted(written.values())


def check_checkpoint_folder(out: Path) -> list[int]:
    """Only complete step_*.pt files (they load, their step is their name) and dot-prefixed .tmp
    files, which list_checkpoints ignores. Returns the listed steps."""
    listed = ckpt.list_checkpoints(out)
    for path in (out / "checkpoints").iterdir():
        m = CKPT_NAME.match(path.name)
        if m:
            assert torch.load(path, map_location="cpu", weights_only=False)["step"] == int(m.group(1))
        else:
            assert TMP_NAME.match(path.name), f"unexpected file {path.name} in the checkpoint folder"
            assert path not in [p for _, p in listed]
    return [s for s, _ in listed]


def assert_same_as_reference(out: Path, reference: Path) -> None:
    sa = torch.load(ckpt.last_checkpoint(reference), map_location="cpu", weights_only=False)
    sb = torch.load(ckpt.last_checkpoint(out), map_location="cpu", weights_only=False)
    assert sa["step"] == sb["step"] == STEPS
    for part in ("student", "teacher"):
        assert sa[part].keys() == sb[part].keys()
        for k in sa[part]:
            assert torch.equal(sa[part][k], sb[part][k]), f"{part}.{k} differs from the uninterrupted run"
    assert json.loads((out / "metrics.json").read_text()) == json.loads((reference / "metrics.json").read_text())
    steps = [int(r.split(",")[0]) for r in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, STEPS + 1))  # rows past the resumed checkpoint were dropped


# ----------------------------------------------------------------------------------- kill -9
# The training process SIGKILLs itself right after checkpoint `argv[1]` is complete on disk: a
# kill -9 mid-run at a deterministic point (an outside poller racing a fast run is flaky).
KILL_AFTER_SAVE = r"""
import os, signal, sys
import udass.checkpoint as ck

real_save = ck.save_checkpoint

def save_checkpoint(path, state):
    real_save(path, state)
    print("saved", path.name, flush=True)
    if path.name == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)

ck.save_checkpoint = save_checkpoint
from udass.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def _run_killed_after(cmd: list[str], checkpoint_name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", KILL_AFTER_SAVE, checkpoint_name, *cmd[3:]],
                          env=ENV, cwd=REPO, capture_output=True, text=True)


def test_sigkill_twice_then_resume_gives_the_uninterrupted_parameters(tiny_video_root, reference, tmp_path):
    out = tmp_path / "run"
    cmd = train_cmd(tiny_video_root, out)
    killed = _run_killed_after(cmd, "step_0000001.pt")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert check_checkpoint_folder(out) == [1] and not (out / "metrics.json").exists()

    killed = _run_killed_after(cmd, f"step_{STEPS // 2:07d}.pt")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    saved = [line.split()[1] for line in killed.stdout.splitlines() if line.startswith("saved ")]
    assert saved[0] == "step_0000002.pt"  # it resumed from step 1, it did not start over
    listed = check_checkpoint_folder(out)  # killed before pruning: older ones may remain
    assert listed[-2:] == [STEPS // 2 - 1, STEPS // 2]
    steps = [int(r.split(",")[0]) for r in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, STEPS // 2 + 1))

    done = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    check_checkpoint_folder(out)
    assert_same_as_reference(out, reference)


def test_every_checkpoint_seen_while_a_run_is_killed_is_complete(tiny_video_root, tmp_path):
    """Poll the checkpoint folder of a live run and kill it: every step_*.pt ever seen loads."""
    out = tmp_path / "run"
    rc, seen = run_and_kill(train_cmd(tiny_video_root, out), out, kill_at=2, log=tmp_path / "log")
    assert seen, "no checkpoint was observed"
    check_checkpoint_folder(out)


KILL_INSIDE_WRITE = r"""
import os, signal, sys
import udass.checkpoint as ck
from udass.io import atomic_write

real_write = ck.write_bytes

def write_bytes(path, data):
    if path.name == sys.argv[1]:  # this checkpoint: die with half of it written
        with atomic_write(path, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    real_write(path, data)

ck.write_bytes = write_bytes
from udass.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def test_a_kill_inside_a_checkpoint_write_leaves_only_an_ignored_tmp_file(tiny_video_root, reference, tmp_path):
    out = tmp_path / "run"
    cmd = train_cmd(tiny_video_root, out)
    killed = subprocess.run([sys.executable, "-c", KILL_INSIDE_WRITE, "step_0000003.pt", *cmd[3:]],
                            env=ENV, cwd=REPO, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    files = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert files[-2:] == ["step_0000001.pt", "step_0000002.pt"] and len(files) == 3
    tmp = out / "checkpoints" / files[0]
    assert TMP_NAME.match(tmp.name) and tmp.name.startswith(".step_0000003.pt.")
    with pytest.raises(Exception):  # really half-written
        torch.load(tmp, map_location="cpu", weights_only=False)
    assert check_checkpoint_folder(out) == [1, 2]
    assert ckpt.last_checkpoint(out).name == "step_0000002.pt"

    done = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert check_checkpoint_folder(out) == [STEPS - 1, STEPS]
    assert_same_as_reference(out, reference)


# ----------------------------------------------------------------------------------- Ctrl-C
# The training process signals itself right after step argv[1] completes (a deterministic point);
# argv[2] names the signal.
SIGNAL_AFTER_STEP = r"""
import os, signal, sys
from udass.train import Trainer

real_step = Trainer.train_step

def train_step(self, source, target):
    values = real_step(self, source, target)
    if self.step == int(sys.argv[1]):
        os.kill(os.getpid(), getattr(signal, sys.argv[2]))
    return values

Trainer.train_step = train_step
from udass.cli import main
raise SystemExit(main(sys.argv[3:]))
"""
QUIET = {**ENV, "UDASS_PROGRESS": "off"}
NO_PERIODIC = ("--set", "train.checkpoint_every=1000")   # only the end (and a signal) checkpoint


def test_ctrl_c_checkpoints_the_current_step_and_the_same_command_resumes_exactly(
        tiny_video_root, reference, tmp_path):
    out = tmp_path / "run"
    cmd = train_cmd(tiny_video_root, out, *NO_PERIODIC)
    stopped = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_STEP, "3", "SIGINT", *cmd[3:]],
                             env=QUIET, cwd=REPO, capture_output=True, text=True)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    kept = out / "checkpoints" / "step_0000003.pt"
    assert stopped.stderr == (f"udass: interrupted (SIGINT) at step 3; checkpoint kept: {kept}; "
                              f"rerun the same command to resume\n")
    assert check_checkpoint_folder(out) == [3] and not (out / "metrics.json").exists()
    steps = [int(r.split(",")[0]) for r in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3]

    done = subprocess.run(cmd, env=QUIET, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_as_reference(out, reference)

    # a finished run says so at once and leaves everything as it is
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = subprocess.run(cmd, env=QUIET, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0 and again.stderr == ""
    assert again.stdout.startswith(f"{out} is already finished (step {STEPS} of {STEPS}; mIoU student ")
    assert "--reevaluate" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_sigterm_from_outside_checkpoints_the_step_it_stopped_at(tiny_video_root, reference, tmp_path):
    """A real SIGTERM from another process at whatever step the run is in: the checkpoint is
    of the step named in the message, and the same command finishes the run exactly."""
    out = tmp_path / "run"
    cmd = train_cmd(tiny_video_root, out, *NO_PERIODIC, "--set", "train.log_every=1")
    proc = subprocess.Popen(cmd, env=QUIET, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    log = out / "log.csv"
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:   # header + 2 steps
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    m = re.fullmatch(r"udass: interrupted \(SIGTERM\) at step (\d+); checkpoint kept: (\S+); "
                     r"rerun the same command to resume\n", err)
    assert m, err
    step = int(m.group(1))
    assert 2 <= step < STEPS and Path(m.group(2)) == ckpt.checkpoint_path(out, step)
    assert check_checkpoint_folder(out) == [step]
    done = subprocess.run(train_cmd(tiny_video_root, out, *NO_PERIODIC), env=QUIET, cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_as_reference(out, reference)


# ----------------------------------------------------------------------------------- error paths
def _copy(root: Path, tmp: Path) -> Path:
    d = tmp / "data"
    shutil.copytree(root, d)
    return d


def _truncate_pngs(folder: Path) -> None:
    for f in folder.rglob("*.png"):
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 3])


def _wrong_shape_flows(folder: Path) -> None:
    for f in folder.rglob("*.npy"):
        np.save(f, np.zeros((5, 7, 2), np.int16))


def _data_case(edit: Callable[[Path], None], sub: str) -> Callable[[Path, Path], list[str]]:
    def setup(root: Path, tmp: Path) -> list[str]:
        d = _copy(root, tmp)
        edit(d / sub)
        return ["--data-root", str(d)]
    return setup


def _a_file(tmp: Path) -> Path:
    f = tmp / "a_file.txt"
    f.write_text("not a folder")
    return f


def _remove(sub: str) -> Callable[[Path, Path], list[str]]:
    return _data_case(lambda p: shutil.rmtree(p), sub)


ERROR_CASES = {  # name: (setup(tiny root, tmp) -> extra arguments, expected part of the message)
    "missing_dataset_root": (lambda r, t: ["--data-root", str(t / "no_such_root")],
                             "no_such_root does not exist"),
    "data_root_is_a_file": (lambda r, t: ["--data-root", str(_a_file(t))], "a_file.txt is a file, expected a folder"),
    "flow_root_is_a_file": (lambda r, t: ["--flow-root", str(_a_file(t))], "a_file.txt is a file, expected a folder"),
    "missing_dataset_folder": (_remove("synthia-seq"), "missing dataset folder"),
    "missing_val_labels": (_remove("cityscapes/gtFine/val"), "2 of them incomplete: 2 labels missing (first: "),
    "corrupt_image": (_data_case(_truncate_pngs, "cityscapes/leftImg8bit_sequence/train"),
                      "unreadable image"),
    "flow_of_the_wrong_shape": (_data_case(_wrong_shape_flows, "udass_flow/cityscapes"),
                                "is 7 x 5, expected 64 x 32"),
    "unknown_benchmark": (lambda r, t: ["--benchmark", "gta2city"], "unknown benchmark 'gta2city'"),
    "unknown_backbone": (lambda r, t: ["--backbone", "swin"], "unknown backbone 'swin'"),
    "unknown_method": (lambda r, t: ["--method", "mixup"], "unknown method 'mixup'"),
    "missing_pretrained_file": (lambda r, t: ["--pretrained", str(t / "mit_b5.pth")],
                                "mit_b5.pth does not exist"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_every_error_path_is_one_line_non_zero_and_writes_nothing(case, tiny_video_root, tmp_path):
    setup, expected = ERROR_CASES[case]
    results = tmp_path / "results"
    results.mkdir()
    cmd = [sys.executable, "-m", "udass", "train", "--profile", "test", "--device", "cpu",
           "--data-root", str(tiny_video_root), *setup(tiny_video_root, tmp_path),
           "--out", str(results / "run")]
    proc = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True)
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "\n" not in err, err
    assert err.startswith("udass: error: ") and expected in err, err
    assert list(results.iterdir()) == []


def test_an_error_in_a_data_loader_worker_mid_run_is_one_line(tiny_video_root, tmp_path):
    """Clips of step 2 unreadable, read by a DataLoader worker (data.num_workers=1): torch
    re-raises the worker's error with its traceback as the message; the user sees one line."""
    from udass.config import build_config
    from udass.data import build_dataset
    from udass.train import StepBatchSampler

    d = _copy(tiny_video_root, tmp_path)
    ds = build_dataset("synthetic-video", "train", d, "target",
                       data_cfg=build_config("synthetic-video", profile="test").data)
    sampler = StepBatchSampler(len(ds), 2, seed=0, start=0, end=2)
    frames = lambda step: {p for i in sampler.indices_for_step(step) for p in ds.raw_paths(i).frames}  # noqa: E731
    bad = frames(1) - frames(0)
    assert bad
    for f in bad:
        f.write_bytes(f.read_bytes()[:100])
    out = tmp_path / "run"
    proc = subprocess.run([*train_cmd(d, out, "--set", "data.num_workers=1")], env=ENV, cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr and "DataLoader worker" not in proc.stderr
    assert lines[-1].startswith("udass: error: unreadable image ")
    assert any(str(f) in lines[-1] for f in bad)
    assert all(ln.startswith("quadmix vit:") for ln in lines[:-1])  # progress bar only
    assert not (out / "metrics.json").exists()


def test_worker_wrapped_udass_error_keeps_its_own_message():
    from torch._utils import ExceptionWrapper

    try:
        raise UdassError("unreadable image a.png; regenerate it with `udass synth`")
    except UdassError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 3")
    with pytest.raises(UdassError) as e:
        wrapped.reraise()
    assert str(e.value) == "unreadable image a.png; regenerate it with `udass synth`"
    assert str(UdassError("Caught nothing: a plain message")) == "Caught nothing: a plain message"


@pytest.mark.notebook
def test_papermill_parameter_of_the_wrong_type_is_one_clear_line(tmp_path):
    import nbformat

    from udass.params import parse_params

    with pytest.raises(UdassError) as e:
        parse_params(steps="ten")
    message = str(e.value)
    assert message == "parameter `steps`: expected an integer >= 1 or None, got 'ten' (str)"
    results, runs = tmp_path / "results", tmp_path / "runs"
    results.mkdir()
    env = {**ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    executed = tmp_path / "executed.ipynb"
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(REPO / "notebooks" / "02_train_video.ipynb"),
         str(executed), "-k", "python3", "-p", "steps", "ten", "-p", "profile", "test",
         "-p", "device", "cpu", "-p", "results_dir", str(results), "-p", "runs_root", str(runs)],
        env=env, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0
    assert f"UdassError: {message}" in (proc.stdout + proc.stderr).splitlines()
    errors = [o for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"
              for o in c.outputs if o.get("output_type") == "error"]
    assert [(o["ename"], o["evalue"]) for o in errors] == [("UdassError", message)]
    assert list(results.iterdir()) == [] and not runs.exists()
