"""The trainer end to end on the tiny embedded benchmarks (test profile): every method runs and
writes its outputs; resume is bit-exact; config conflicts, divergence and bad flags are clear."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from udass import checkpoint as ckpt
from udass.cli import main
from udass.config import build_config
from udass.data.synthetic import read_marker
from udass.errors import UdassError
from udass.train import StepBatchSampler, TrainingDiverged, lr_factor, train

REPO = Path(__file__).resolve().parent.parent


def _cfg(method: str = "quadmix", backbone: str = "vit", benchmark: str = "synthetic-video", **over):
    return build_config(benchmark, backbone, method, "test", over)


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("method,backbone,benchmark", [
    ("source_only", "vit", "synthetic-video"),
    ("oracle", "cnn", "synthetic-video"),
    ("dacs", "vit", "synthetic-video"),
    ("quadmix", "vit", "synthetic-video"),
    ("quadmix", "cnn", "synthetic-image"),
])
def test_every_method_trains_and_writes_its_outputs(tmp_path, method, backbone, benchmark):
    out = tmp_path / "run"
    rec = train(_cfg(method, backbone, benchmark), out, progress=False)
    m = _metrics(out)
    assert m == json.loads(json.dumps(rec))
    assert (m["benchmark"], m["method"], m["backbone"], m["step"]) == (benchmark, method, backbone, 4)
    assert m["network"] == "student" and "teacher" in m and "miou" in m["teacher"]
    assert m["eval_align_corners"] is (benchmark == "synthetic-video")  # TPS video, mmseg image
    assert set(m["classes_without_ground_truth"]) <= set(m["per_class_iou"])
    assert m["clips"] == {"evaluated": 2, "expected": 2}   # the tiny roots' val split, all of it
    n_eval = 11 if benchmark == "synthetic-video" else 19
    assert len(m["per_class_iou"]) == n_eval
    values = [v for v in m["per_class_iou"].values() if v is not None]
    assert values and all(0.0 <= v <= 100.0 for v in values)
    assert abs(m["miou"] - sum(values) / len(values)) < 0.02
    # a class without ground truth is 0 when predicted (it counts), null only when never predicted
    for name in m["classes_without_ground_truth"]:
        assert m["per_class_iou"][name] in (0.0, None)
    if benchmark == "synthetic-video":
        assert 0.0 <= m["temporal_consistency"] <= 100.0
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["train"]["method"] == method and run["versions"]["torch"]
    assert run["reproduce"].startswith(f"udass train --benchmark {benchmark} --backbone {backbone} --method {method}")
    assert run["data_sha256"] == read_marker(run["data_root"])["content_sha256"] and run["data_sha256"]
    log = (out / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,lr,loss_total") and len(log) == 5
    assert [s for s, _ in ckpt.list_checkpoints(out)][-1] == 4
    if method == "quadmix":
        header = log[0].split(",")
        last = dict(zip(header, log[-1].split(",")))
        assert last["loss_mix"] != "" and float(last["loss_mix"]) > 0  # mixed samples were trained on


def test_resume_after_stop_is_bit_identical(tmp_path):
    cfg = _cfg("quadmix", "vit", **{"train.steps": 4})
    a, b = tmp_path / "a", tmp_path / "b"
    train(cfg, a, progress=False)
    assert train(cfg, b, until=2, progress=False) is None  # stopped: no metrics yet
    assert not (b / "metrics.json").exists()
    assert [s for s, _ in ckpt.list_checkpoints(b)] == [2]
    train(cfg, b, progress=False)  # the same command resumes
    sa = torch.load(ckpt.last_checkpoint(a), weights_only=False)
    sb = torch.load(ckpt.last_checkpoint(b), weights_only=False)
    for part in ("student", "teacher"):
        assert sa[part].keys() == sb[part].keys()
        for k in sa[part]:
            assert torch.equal(sa[part][k], sb[part][k]), f"{part}.{k} differs after resume"
    # two runs with one seed give identical metrics (determinism)
    assert _metrics(a) == _metrics(b)
    # log rows are continuous, none duplicated across the stop
    rows = (b / "log.csv").read_text().splitlines()
    steps = [int(r.split(",")[0]) for r in rows[1:]]
    assert steps == [1, 2, 3, 4]
    # run.json's training time covers the steps of both calls (every step is logged here)
    col = rows[0].split(",").index("seconds")
    logged = sum(float(r.split(",")[col]) for r in rows[1:])
    spent = json.loads((b / "run.json").read_text())["train_seconds"]
    assert logged > 0 and abs(spent - logged) <= 0.06 + 0.01 * logged


class _ComputedZero(float):
    """A 0.0 that is truthy: the trainer computes L_trg and scales it by 0 instead of skipping it."""

    def __bool__(self) -> bool:
        return True


def test_zero_target_weight_skips_the_term_with_the_same_bits_as_scaling_it_by_zero(tmp_path):
    import dataclasses

    from udass.train import Trainer

    confident = {"teacher.pseudo_threshold": 0.0}  # every pixel weighs 1: L_trg > 0 from step 0
    cfg = _cfg("quadmix", "vit", **{"train.lambda_t": 0.0, **confident})
    computed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lambda_t=_ComputedZero(0.0)))
    one = _cfg("quadmix", "vit", **{"train.lambda_t": 1.0, **confident})
    runs = {name: Trainer(c, tmp_path / name, device="cpu", progress=False)
            for name, c in (("skipped", cfg), ("computed", computed), ("one", one))}
    for source, target in runs["skipped"].batches(3):
        logged = {name: t.train_step(source, target) for name, t in runs.items()}
        assert logged["skipped"]["loss_trg"] == 0.0 and logged["one"]["loss_trg"] > 0
        assert logged["skipped"] == logged["computed"]
    for name in ("learner", "teacher"):
        get = (lambda t: t.learner.state_dict()) if name == "learner" else (lambda t: t.teacher.state_dict())
        a, b, c = (get(runs[n]) for n in ("skipped", "computed", "one"))
        assert all(torch.equal(a[k], b[k]) for k in a), name
        assert not all(torch.equal(a[k], c[k]) for k in a), name  # the term does act when weighted


def test_other_config_on_existing_out_is_an_error_and_finished_out_reevaluates(tmp_path):
    out = tmp_path / "run"
    cfg = _cfg("dacs", "vit")
    train(cfg, out, progress=False)
    with pytest.raises(UdassError, match=r"quadmix.paths|train.method"):
        train(_cfg("quadmix", "vit"), out, progress=False)
    with pytest.raises(UdassError, match="train.steps"):
        train(_cfg("dacs", "vit", **{"train.steps": 6}), out, progress=False)
    log_before = (out / "log.csv").read_text()
    (out / "metrics.json").unlink()
    rec = train(cfg, out, progress=False)  # finished: evaluation only
    assert rec["step"] == 4 and (out / "metrics.json").exists()
    assert (out / "log.csv").read_text() == log_before


def test_nan_loss_stops_with_step_and_term_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    import udass.train.step as step

    real = step.wce
    calls = {"n": 0}

    def poisoned(logits, labels, weights=None):
        calls["n"] += 1
        loss = real(logits, labels, weights)
        return loss * float("nan") if calls["n"] > 1 else loss

    monkeypatch.setattr(step, "wce", poisoned)
    out = tmp_path / "run"
    cfg = _cfg("source_only", "vit", **{"train.checkpoint_every": 1})
    with pytest.raises(TrainingDiverged, match=r"step 2: loss term loss_src is nan.*step_0000001\.pt"):
        train(cfg, out, progress=False)
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [1]
    assert not (out / "metrics.json").exists()


def test_step_sampler_is_a_function_of_the_step_and_splits_ranks():
    full = StepBatchSampler(10, 4, seed=3, start=0, end=6)
    resumed = StepBatchSampler(10, 4, seed=3, start=2, end=6)
    assert list(full)[2:] == list(resumed)
    r0 = StepBatchSampler(10, 2, seed=3, start=0, end=6, rank=0, world=2)
    r1 = StepBatchSampler(10, 2, seed=3, start=0, end=6, rank=1, world=2)
    assert [a + b for a, b in zip(r0, r1)] == list(full)
    # every epoch visits every sample once
    seen = [i for batch in StepBatchSampler(8, 4, seed=0, start=0, end=2) for i in batch]
    assert sorted(seen) == list(range(8))


def test_lr_schedule_warmup_then_poly():
    assert lr_factor(0, 100, 10, 1.0) == pytest.approx(1e-6)
    assert lr_factor(5, 100, 10, 1.0) == pytest.approx(0.5, abs=1e-5)
    assert lr_factor(10, 100, 10, 1.0) == pytest.approx(0.9)
    assert lr_factor(50, 100, 0, 0.9) == pytest.approx(0.5 ** 0.9)
    assert lr_factor(100, 100, 0, 0.9) == 0.0


@pytest.mark.parametrize("argv,message", [
    (["train", "--method", "mixup", "--out", "X"], "unknown method 'mixup'"),
    (["train", "--backbone", "swin", "--out", "X"], "unknown backbone 'swin'"),
    (["train", "--benchmark", "gta2city", "--out", "X"], "unknown benchmark 'gta2city'"),
    (["train", "--profile", "paper", "--out", "X"], "paper profile starts from ImageNet weights"),
    (["train", "--profile", "test", "--pretrained", "/nonexistent/mit_b5.pth", "--out", "X"],
     "pretrained file /nonexistent/mit_b5.pth does not exist"),
    (["train", "--benchmark", "gtav2cityscapes", "--profile", "test", "--out", "X"], "needs --data-root"),
    (["train", "--profile", "test", "--set", "quadmix.paths=ss,zz", "--out", "X"], "unknown path"),
    (["evaluate", "--checkpoint", "/nonexistent.pt"], "does not exist"),
])
def test_cli_errors_are_one_line_with_exit_status_2(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / a) if a == "X" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("udass: error:") and message in err and "\n" not in err
    assert not (tmp_path / "X").exists()


def test_evaluate_cli_reproduces_the_training_metrics(tmp_path):
    out = tmp_path / "run"
    rec = train(_cfg("dacs", "vit"), out, progress=False)
    ev = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(ckpt.last_checkpoint(out)), "--out", str(ev)]) == 0
    m = _metrics(ev)
    assert m["miou"] == rec["miou"] and m["teacher"]["miou"] == rec["teacher"]["miou"]


def test_ddp_two_processes_match_one_process_on_the_concatenated_batch(tmp_path):
    """torchrun with 2 gloo processes x batch 1 == 1 process x batch 2 (frozen BN, no random
    crop or flip, so both see the same pixels): same parameters after training, same metrics."""
    common = ["--profile", "test", "--method", "source_only", "--backbone", "cnn", "--steps", "2",
              "--set", "model.bn=frozen", "--set", "augment.flip=0",
              "--set", "data.crop_size=32,64", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = tmp_path / "single"
    subprocess.run([sys.executable, "-m", "udass", "train", *common, "--set", "data.batch_source=2",
                    "--out", str(single)], check=True, env=env, cwd=REPO, capture_output=True)
    ddp = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "-m", "udass", "train", *common,
                           "--set", "data.batch_source=1", "--out", str(ddp)],
                          env=env, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sa = torch.load(ckpt.last_checkpoint(single), weights_only=False)["student"]
    sb = torch.load(ckpt.last_checkpoint(ddp), weights_only=False)["student"]
    for k, v in sa.items():
        assert torch.allclose(v.float(), sb[k].float(), atol=1e-5, rtol=1e-4), k
    assert torch.load(ckpt.last_checkpoint(ddp), weights_only=False)["step"] == 2
    # evaluation is sharded over the two ranks and all-reduced: the same split-level metrics
    assert abs(_metrics(single)["miou"] - _metrics(ddp)["miou"]) < 0.05


_FAULTS_SCRIPT = """
import resource, torch
from udass.runtime import tune_cpu_allocator
tuned = tune_cpu_allocator()
assert tune_cpu_allocator() == tuned  # once per process, same answer
def faults():  # minor page faults of filling a fresh 32 MiB tensor, after one was freed
    torch.ones(8 << 20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(8 << 20)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(tuned, min(faults() for _ in range(8)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_cpu_allocator_tuning_reuses_freed_step_buffers_and_can_be_switched_off():
    """With the thresholds raised, a 32 MiB buffer freed and allocated again comes back from the
    heap without page faults (at least once in 8 tries: the aligned allocations of torch do not
    always fit the chunk just freed); UDASS_MALLOC_TUNING=0 leaves glibc's default, a fresh mmap
    that faults in every page (8192 pages of 4 KiB) every time."""
    runs = {}
    for flag in ("1", "0"):
        env = {**os.environ, "UDASS_MALLOC_TUNING": flag}
        out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], env=env, capture_output=True,
                             text=True, timeout=120, cwd=str(Path(__file__).resolve().parents[1]))
        assert out.returncode == 0, out.stderr[-2000:]
        tuned, faults = out.stdout.split()
        runs[flag] = (tuned == "True", int(faults))
    assert runs["1"][0] and not runs["0"][0]
    assert runs["1"][1] < 500 < 4000 < runs["0"][1], runs


def test_grad_clip_bounds_the_gradient_norm_the_optimiser_steps_with(tmp_path):
    from udass.train import Trainer

    def grad_norm(t: Trainer) -> float:
        grads = [p.grad for g in t.optimizer.param_groups for p in g["params"] if p.grad is not None]
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))

    norms = {}
    for clip in (None, 1e-3):
        t = Trainer(_cfg("dacs", "cnn", **{"optim.grad_clip": clip}), tmp_path / str(clip),
                    device="cpu", progress=False)
        (source, target), = t.batches(1)
        before = {n: p.detach().clone() for n, p in t.learner.named_parameters()}
        t.train_step(source, target)  # the gradients stay after the step until the next one
        norms[clip] = grad_norm(t)
        moved = {n: (p.detach() - before[n]).norm() for n, p in t.learner.named_parameters()}
        norms[f"moved {clip}"] = float(sum(moved.values()))
    assert norms[None] > 1e-2 and norms[1e-3] == pytest.approx(1e-3, rel=1e-4)
    assert norms["moved 0.001"] < norms["moved None"]  # SGD: the clipped step is smaller


def test_fusion_layers_have_their_own_learning_rate_multiplier(tmp_path):
    from udass.train import Trainer

    t = Trainer(_cfg("quadmix", "vit", **{"optim.fusion_lr_mult": 3.0}), tmp_path / "r",
                device="cpu", progress=False)
    lr = t.cfg.optim.lr
    fusion = {id(p) for p in t.learner.fusion.parameters()} | {id(t.learner.net.temporal.conv.weight)}
    for group in t.optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        expected = {"backbone": 1.0, "head": t.cfg.optim.head_lr_mult, "fusion": 3.0}[group["role"]]
        assert group["initial_lr"] == pytest.approx(lr * expected)
        assert (ids <= fusion) == (group["role"] == "fusion")


def test_image_benchmarks_have_no_temporal_fusion_in_any_profile():
    for profile in ("test", "demo", "paper"):
        for backbone in ("cnn", "vit"):
            assert not _cfg("quadmix", backbone, "synthetic-image").model.temporal_fusion
            assert not build_config("gtav2cityscapes", backbone, "quadmix", profile).model.temporal_fusion
            assert build_config("viper2cityscapes-seq", backbone, "quadmix", profile).model.temporal_fusion
    with pytest.raises(UdassError, match="image benchmark .*nothing to fuse|no previous frame"):
        _cfg("quadmix", "vit", "synthetic-image", **{"model.temporal_fusion": True})
