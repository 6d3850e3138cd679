"""The training loop: seeding, the optimiser, the EMA teacher, checkpoints and exact resume,
logging, DDP and AMP around the step functions of `udass.train.step` (the entry points that run it:
`udass.train.entry`).

Every random draw of step k comes from generators seeded by (seed, k, rank), and batches come
from a step-indexed sampler, so a run stopped after step k and resumed gives bit-identical
parameters to an uninterrupted run on CPU.
"""
from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ContextManager, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.profiler import record_function
from torch.utils.data import Dataset

from udass import checkpoint as ckpt
from udass.benchmarks import Benchmark, get_benchmark
from udass.config import Config
from udass.data.clip import ClipBatch, collate_clips
from udass.data.datasets import build_dataset
from udass.data.splits import check_split, clip_counts
from udass.data.rcs import ClassStats, RareClassSampler, class_statistics
from udass.data.synthetic import ensure_synthetic_root, read_marker
from udass.errors import Interrupted, UdassError
from udass.evaluate import align_corners_of, evaluate_model, metrics_record, temporal_consistency
from udass.io import write_json
from udass.method.feature_distance import ImageNetEncoder, thing_classes
from udass.method.feature_mix import FeatureFusion
from udass.method.masking import neutral_fill
from udass.method.teacher import EMATeacher
from udass.method.templates import Template
from udass.progress import Progress
from udass.models import build_model_from_config
from udass.runtime import (barrier, broadcast_buffers, device_description, git_commit, init_distributed,
                           library_versions, set_determinism, step_seed,
                           tune_cpu_allocator)
from udass.train.command import train_command
from udass.train.learner import Learner
from udass.train.long_tail import compute_long_tail
from udass.train.log import LogWriter
from udass.train.optim import build_optimizer, clip_gradients, lr_factor
from udass.train.sampler import StepBatchSampler, make_loader
from udass.train.stop import StopOnSignal, signal_name
from udass.train.step import (Networks, StepEnv, StepOutput, StepRecord, dacs_step, quadmix_step,
                              supervised_step)

# Config keys that control a run but not what it computes: they may differ on resume.
RUN_CONTROL_KEYS = ("train.checkpoint_every", "train.log_every", "train.eval_every",
                    "data.num_workers", "data.data_root", "data.flow_root", "train.eval_max_clips",
                    "data.allow_partial")


class TrainingDiverged(UdassError):
    """A loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


# ----------------------------------------------------------------------------------- trainer
class Trainer:
    """Owns the datasets, the student (Learner), the EMA teacher, the optimiser, the templates
    and the run folder. `run()` trains to the end (or to `until`) and evaluates."""

    def __init__(self, cfg: Config, out: str | Path, device: str = "auto", progress: bool = True,
                 data_root: str | Path | None = None) -> None:
        self.cfg = cfg
        self.out = Path(out)
        self.progress = progress
        self.dist, self.device = init_distributed(device)
        set_determinism(self.device)
        if self.device.type == "cpu":
            tune_cpu_allocator()
        self.benchmark: Benchmark = get_benchmark(cfg.data.benchmark)
        self.data_root = self._resolve_data_root(data_root)
        self.method = cfg.train.method
        self._check_recipe()

        torch.manual_seed(step_seed(cfg.train.seed, 0, stream=99))  # model initialisation
        net = build_model_from_config(cfg.model, self.benchmark.num_classes)
        self.init_note = "random initialisation"
        if cfg.model.pretrained:
            self.init_note = f"ImageNet weights {Path(cfg.model.pretrained).name}"
        # the feature distance's frozen encoder: the network's encoder as initialised (ImageNet
        # weights, or the seeded random initialisation), before any udass checkpoint is loaded
        self.imagenet = (ImageNetEncoder(net).to(self.device)
                         if cfg.fd.enabled and self.method != "oracle" else None)
        self.thing_classes = thing_classes(self.benchmark.protocol.classes)
        if cfg.train.init_checkpoint:
            state = ckpt.load_checkpoint(cfg.train.init_checkpoint)
            net.load_state_dict(_net_state(state["student"]), strict=True)
            self.init_note = f"udass checkpoint {cfg.train.init_checkpoint}"
        fusion = None
        if self.method == "quadmix" and cfg.feature_mix.enabled and {"tss", "stt"} <= set(cfg.quadmix.paths):
            fusion = FeatureFusion(net.feature_dim)
        self.learner = Learner(net, fusion).to(self.device)
        if self.device.type == "cuda":
            self.learner = self.learner.to(memory_format=torch.channels_last)
        self.teacher = EMATeacher(self.learner.net)
        self.student: nn.Module = self.learner
        if self.dist.enabled:
            self.student = nn.parallel.DistributedDataParallel(
                self.learner, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                # the mixing methods' second pass leaves the auxiliary head (and, on a step without
                # templates, the feature fusion) unused, and an HRDA network never runs it: DDP
                # must look for unused parameters
                find_unused_parameters=self.method in ("dacs", "quadmix") or cfg.model.hrda)
        self.optimizer = build_optimizer(self.learner, cfg)
        o = cfg.optim
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.train.steps, o.warmup_steps, o.poly_power))
        self.templates: tuple[Any, Any] | None = None
        self.step = 0
        self.amp_dtype = None
        self.scaler = None
        if cfg.train.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            if self.amp_dtype == torch.float16:
                self.scaler = torch.amp.GradScaler("cuda")
        self._datasets: dict[str, Dataset] = {}
        self._long_tail: tuple[int, ...] | None = None
        self._rcs_stats: ClassStats | None = None
        self._rcs_draws: RareClassSampler | None = None
        self.wall_start = time.time()
        self.train_seconds = 0.0  # time inside train steps, over every call (kept in checkpoints)

    # ------------------------------------------------------------------ set-up
    def _resolve_data_root(self, data_root: str | Path | None) -> Path:
        root = data_root or self.cfg.data.data_root
        if root is None:
            if not self.benchmark.synthetic:
                raise UdassError(f"benchmark {self.benchmark.name} needs --data-root DIR (the folder "
                                 f"holding cityscapes/, gta/, ...); see docs/datasets.md")
            if self.dist.enabled and not self.dist.is_main:
                barrier()
            root = ensure_synthetic_root(self.benchmark.name, size=self.cfg.data.synth_size,
                                         seed=self.cfg.data.synth_seed)
            if self.dist.enabled and self.dist.is_main:
                barrier()
        root = Path(root)
        if not root.is_dir():
            raise UdassError(f"data root {root} does not exist; pass the folder holding the dataset "
                             f"folders (see docs/datasets.md) or run `udass synth`")
        return root

    def check_data(self) -> None:
        """Build the datasets the run reads and load the clips of its next step and the first
        val clip, so that a data problem (a missing split, an unreadable file, label ids outside
        the protocol, a flow of the wrong shape) stops the run with its one-line message before
        anything is written to OUT. A finished run only checks the val split."""
        if self.step < self.cfg.train.steps:
            roles = ["target"] if self.method == "oracle" else ["target", "source"]
            for role in roles:
                ds = self.dataset(role)
                for i in self.sampler(role, self.step, self.step + 1).indices_for_step(self.step):
                    ds[i]
        val = self.dataset("val")
        if len(val):
            val[0]

    def _check_recipe(self) -> None:
        c = self.cfg
        if self.method in ("dacs", "quadmix") and c.data.batch_source != c.data.batch_target:
            raise UdassError(f"{self.method} pastes source and target samples pairwise: "
                             f"data.batch_source ({c.data.batch_source}) must equal "
                             f"data.batch_target ({c.data.batch_target})")

    def dataset(self, role: str) -> Dataset:
        """role: source (train, labelled), target (train, unlabelled; labelled for the oracle),
        val (target val, native-resolution labels)."""
        if role not in self._datasets:
            c = self.cfg
            kw = dict(data_root=self.data_root, data_cfg=c.data, flow_root=c.data.flow_root)
            if role == "source":
                ds = build_dataset(c.data.benchmark, "train", domain="source", **kw)
            elif role == "target":
                ds = build_dataset(c.data.benchmark, "train", domain="target",
                                   with_labels=self.method == "oracle", **kw)
            else:
                ds = build_dataset(c.data.benchmark, "val", domain="target", **kw)
            self._datasets[role] = check_split(ds, allow_partial=c.data.allow_partial)
        return self._datasets[role]

    @property
    def uses_rcs(self) -> bool:
        """Whether source batches come from rare-class sampling (data.rcs; not for the oracle,
        which trains on no source)."""
        return self.cfg.data.rcs and self.method != "oracle"

    def rcs_stats(self) -> ClassStats:
        """The source split's class statistics (`udass.data.rcs.class_statistics`, counted with
        data.num_workers processes and cached beside the data root; under DDP the main process
        counts, the others then read its cache)."""
        if self._rcs_stats is None:
            d = self.dist
            if d.enabled and not d.is_main:
                barrier()
            self._rcs_stats = class_statistics(self.dataset("source"),
                                               progress=self.progress and d.is_main,
                                               workers=self.cfg.data.num_workers)
            if d.enabled and d.is_main:
                barrier()
        return self._rcs_stats

    def rcs_sampler(self, start: int = 0, end: int = 0) -> RareClassSampler:
        """The source's rare-class sampler for steps start..end-1 on this rank (seed + 1, like the
        uniform source sampler): the batch of step k and the class of each of its samples
        (`classes_for_step(k)`) are pure functions of (seed, k)."""
        c = self.cfg
        return RareClassSampler(self.rcs_stats(), c.data.rcs_temperature, c.data.rcs_min_pixels,
                                c.data.batch_source, c.train.seed + 1, start, end,
                                self.dist.rank, self.dist.world_size)

    @property
    def long_tail(self) -> tuple[int, ...]:
        if not self.cfg.quadmix.long_tail:
            return ()
        if self._long_tail is None:
            self._long_tail = self.benchmark.long_tail or compute_long_tail(
                self.dataset("source"), self.benchmark.num_classes)
        return self._long_tail

    # ------------------------------------------------------------------ the step
    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def _student_pass(self, last: bool) -> ContextManager[Any]:
        """One student pass (forward and backward). Under DDP only the step's last pass
        synchronises the gradients: the others run under no_sync, forward included, since DDP
        decides at the forward whether the backward that follows all-reduces."""
        return self.student.no_sync() if (self.dist.enabled and not last) else nullcontext()

    def _backward(self, loss: Tensor) -> None:
        """One backward pass (scaled under AMP)."""
        with record_function("udass.backward"):
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()

    def train_step(self, source: ClipBatch | None, target: ClipBatch) -> dict[str, float]:
        """One optimisation step of the configured method on a source and a target batch (as
        loaded); returns the logged values (losses, pseudo_weight, lr)."""
        return self._step(source, target, record=False)[0]

    def train_step_recorded(self, source: ClipBatch | None, target: ClipBatch
                            ) -> tuple[dict[str, float], StepRecord | None]:
        """train_step that also returns the step's StepRecord (the QuadMix explorer); None for
        `source_only` and `oracle`, which mix nothing."""
        return self._step(source, target, record=True)

    def _step(self, source: ClipBatch | None, target: ClipBatch, record: bool
              ) -> tuple[dict[str, float], StepRecord | None]:
        cfg, k, rank = self.cfg, self.step, self.dist.rank
        g = torch.Generator().manual_seed(step_seed(cfg.train.seed, k, stream=1, rank=rank))
        torch.manual_seed(step_seed(cfg.train.seed, k, stream=0, rank=rank))  # dropout / drop-path
        if self.device.type == "cuda":
            torch.cuda.manual_seed(step_seed(cfg.train.seed, k, stream=2, rank=rank))
        target = target.to(self.device, non_blocking=True)
        if source is not None:
            source = source.to(self.device, non_blocking=True)
            if self.uses_rcs:  # the class each source sample was drawn for: its crop is chosen by it
                if self._rcs_draws is None:
                    self._rcs_draws = self.rcs_sampler()
                classes = torch.tensor(self._rcs_draws.classes_for_step(k), dtype=torch.long)
                source = dataclasses.replace(source, extras={**source.extras, "rcs_class": classes})
        fill = neutral_fill(self.learner.net.normalize) if cfg.mic.enabled else None
        env = StepEnv(cfg, self.benchmark.num_classes, g, self.long_tail, self._backward,
                      self._student_pass, self._autocast, record, self.thing_classes, fill)
        nets = Networks(self.student, self.teacher.model, self.imagenet)
        self.student.train()
        self.optimizer.zero_grad(set_to_none=True)
        if self.method == "source_only":
            out: StepOutput = supervised_step(nets, source, env)
        elif self.method == "oracle":
            out = supervised_step(nets, target, env)
        elif self.method == "dacs":
            out = dacs_step(nets, source, target, env)
        else:
            out = quadmix_step(nets, source, target, self.templates, env,
                               warmup=k < cfg.quadmix.start_step)
        with record_function("udass.finite_check"):
            values = self._check_finite(out.losses)
        values["lr"] = self.scheduler.get_last_lr()[0] / (
            self.cfg.optim.head_lr_mult if self.optimizer.param_groups[0].get("role") == "head" else 1.0)
        with record_function("udass.optimizer_step"):
            clip_gradients(self.optimizer, cfg.optim.grad_clip, self.scaler)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
        self.scheduler.step()
        if self.dist.enabled:  # one model on every rank before the EMA (batch-norm statistics)
            broadcast_buffers(self.learner)
        self.teacher.update(self.learner.net, k, self.cfg.teacher.ema)
        if self.method == "quadmix":
            self.templates = out.templates
        self.step += 1
        return values, out.record

    def _check_finite(self, terms: dict[str, Tensor]) -> dict[str, float]:
        names = list(terms)
        values = torch.stack([terms[n].detach().float() for n in names]).tolist() if names else []
        out = dict(zip(names, values))
        for n, v in out.items():
            if not math.isfinite(v):
                last = ckpt.last_checkpoint(self.out)
                raise TrainingDiverged(
                    f"step {self.step + 1}: loss term {n} is {v}; training stopped, the last good "
                    f"checkpoint is {last or 'none (no checkpoint yet)'}; lower optim.lr or check the inputs")
        out["loss_total"] = sum(v for n, v in out.items() if n.startswith("loss_"))
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        templates = None
        if self.templates is not None:
            local = [_template_state(t) for t in self.templates]
            templates = _gather_objects(local) if self.dist.enabled else [local]
        return {
            "config": self.cfg.to_dict(), "step": self.step, "world_size": self.dist.world_size,
            "student": self.learner.state_dict(), "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "templates": templates, "rng": {"torch": torch.get_rng_state()},
            "long_tail": self._long_tail, "udass_version": library_versions()["udass"],
            "train_seconds": self.train_seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self._long_tail = tuple(state["long_tail"]) if state.get("long_tail") is not None else None
        tpl = state.get("templates")
        if tpl is not None and len(tpl) == self.dist.world_size:
            self.templates = tuple(Template(**{k: v.to(self.device) for k, v in t.items()})
                                   for t in tpl[self.dist.rank])
        torch.set_rng_state(state["rng"]["torch"])

    def save(self) -> Path | None:
        state = self.state_dict()  # collective under DDP: every rank takes part
        path = None
        if self.dist.is_main:
            path = ckpt.checkpoint_path(self.out, self.step)
            ckpt.save_checkpoint(path, state)
            ckpt.prune_checkpoints(self.out, keep=2)
        barrier()
        return path

    # ------------------------------------------------------------------ loop
    def run(self, until: int | None = None) -> dict[str, Any] | None:
        """Train from the current step to `until` (default: the schedule's end), checkpointing
        every train.checkpoint_every steps and at the stop; evaluate at the end of the schedule.
        Returns the metrics dict when the schedule finished, else None."""
        cfg = self.cfg
        end = cfg.train.steps if until is None else min(until, cfg.train.steps)
        if self.step < end:
            self._train_until(end)
        if self.step >= cfg.train.steps:
            return self.finish()
        return None

    def sampler(self, domain: str, start: int, end: int) -> StepBatchSampler | RareClassSampler:
        """The batch sampler of `domain` ("source" or "target") for steps start..end-1 on this
        rank: the source draws with seed + 1 (by rare-class sampling with data.rcs), the target
        with seed."""
        cfg = self.cfg
        batch = cfg.data.batch_source if domain == "source" else cfg.data.batch_target
        seed = cfg.train.seed + (1 if domain == "source" else 0)
        if domain == "source" and self.uses_rcs:
            return self.rcs_sampler(start, end)
        return StepBatchSampler(len(self.dataset(domain)), batch, seed, start, end,
                                self.dist.rank, self.dist.world_size)

    def batches(self, steps: int) -> list[tuple[ClipBatch, ClipBatch]]:
        """The collated (source, target) batches of steps 0..steps-1, as training draws them
        (before crop and flip), loaded in this process: for tools that replay a run's first
        steps (the QuadMix explorer, the step benchmarks)."""
        src, tgt = self.dataset("source"), self.dataset("target")
        return [(collate_clips([src[i] for i in s]), collate_clips([tgt[i] for i in t]))
                for s, t in zip(self.sampler("source", 0, steps), self.sampler("target", 0, steps))]

    def _train_until(self, end: int) -> None:
        cfg, d = self.cfg, self.dist
        pin = self.device.type == "cuda"
        tgt = make_loader(self.dataset("target"), self.sampler("target", self.step, end),
                      cfg.data.num_workers, pin)
        if self.method == "oracle":
            src_iter: Iterator[Any] = iter(lambda: None, 1)
        else:
            src_iter = iter(make_loader(self.dataset("source"), self.sampler("source", self.step, end),
                                    cfg.data.num_workers, pin))
            if self.method == "quadmix":
                _ = self.long_tail  # computed once, before the clock starts
        log = LogWriter(self.out / "log.csv", self.step) if d.is_main else None
        bar = Progress(cfg.train.steps, f"{cfg.train.method} {cfg.model.backbone}", unit="step",
                       initial=self.step, enabled=self.progress and d.is_main)
        every = max(1, cfg.train.checkpoint_every)
        saved = self.step if ckpt.checkpoint_path(self.out, self.step).is_file() else None
        try:
            with StopOnSignal() as stop:
                for target in tgt:
                    t0 = time.perf_counter()
                    values = self.train_step(next(src_iter), target)
                    values["seconds"] = time.perf_counter() - t0
                    self.train_seconds += values["seconds"]
                    if log is not None and (self.step % cfg.train.log_every == 0 or self.step == end):
                        log.write(self.step, values)
                    bar.update(1, **_shown_losses(values))
                    if cfg.train.eval_every and self.step % cfg.train.eval_every == 0 and self.step < cfg.train.steps:
                        self._periodic_eval()
                    if self.step % every == 0 or self.step == end:
                        self.save()
                        saved = self.step
                    if stop.requested(self.device):
                        bar.close(done=False)
                        self._stop(stop.signum or signal.SIGINT, saved)
        except KeyboardInterrupt:  # a second Ctrl-C inside a step: keep what is on disk
            bar.close(done=False)
            last = ckpt.last_checkpoint(self.out)
            raise Interrupted(f"interrupted at once (a second Ctrl-C) after step {self.step}; checkpoint "
                              f"kept: {last or 'none'}; rerun the same command to resume", signal.SIGINT) from None
        finally:
            bar.close()
            if log is not None:
                log.close()

    def _stop(self, signum: int, saved: int | None) -> None:
        """Checkpoint the completed step (unless just written) and raise `Interrupted`."""
        path = self.save() if saved != self.step else ckpt.checkpoint_path(self.out, self.step)
        raise Interrupted(f"interrupted ({signal_name(signum)}) at step {self.step}; checkpoint kept: "
                          f"{path}; rerun the same command to resume", signum)

    def _periodic_eval(self) -> None:
        rec = self.evaluate(networks=("teacher",))
        if self.dist.is_main:
            path = self.out / "eval_log.jsonl"
            with open(path, "a") as f:
                f.write(json.dumps({"step": self.step, "teacher_miou": rec["teacher"]["miou"]}) + "\n")

    def evaluate(self, networks: Sequence[str] = ("student", "teacher"),
                 consistency: bool = True) -> dict[str, Any]:
        """Evaluate on the target val split; returns the metrics.json record."""
        val = self.dataset("val")
        indices = list(range(len(val)))
        if self.cfg.train.eval_max_clips:
            indices = indices[: self.cfg.train.eval_max_clips]
        shard = torch.utils.data.Subset(val, indices[self.dist.rank::self.dist.world_size])
        nets = {"student": self.learner.net, "teacher": self.teacher.model}
        corners = align_corners_of(self.cfg.train.eval_align_corners, self.benchmark)
        shown = self.progress and self.dist.is_main
        mats = {n: evaluate_model(nets[n], shard, self.benchmark, self.device, batch_size=1,
                                  num_workers=0, align_corners=corners, progress=shown,
                                  desc=f"evaluate {n} at step {self.step}") for n in networks}
        student = mats.get("student", mats.get("teacher"))
        extra = self._record_extra()
        extra["clips"] = clip_counts(val, len(indices))
        if consistency and self.benchmark.is_video and "student" in networks:
            extra["temporal_consistency"] = round(temporal_consistency(
                self.learner.net, shard, self.device, progress=shown), 2)
        rec = metrics_record(self.benchmark, student.matrix, mats["teacher"].matrix
                             if "teacher" in mats else None, step=self.step, extra=extra)
        if "student" not in networks:
            rec["network"] = "teacher"
        return rec

    def _record_extra(self) -> dict[str, Any]:
        c = self.cfg
        return {"backbone": c.model.backbone, "variant": c.model.variant, "method": c.train.method,
                "profile": c.train.profile, "seed": c.train.seed, "steps": c.train.steps,
                "init": self.init_note, "flow_source": c.data.flow_source,
                "eval_align_corners": align_corners_of(c.train.eval_align_corners, self.benchmark)}

    def finish(self) -> dict[str, Any]:
        rec = self.evaluate()
        if self.dist.is_main:
            write_json(self.out / "metrics.json", rec)
            self.write_run_json(rec)
        barrier()
        return rec

    def write_run_json(self, rec: dict[str, Any] | None = None) -> None:
        info = {
            "config": self.cfg.to_dict(), "data_root": str(self.data_root),
            "data_sha256": (read_marker(self.data_root) or {}).get("content_sha256"),
            "command": " ".join(sys.argv), "reproduce": train_command(self.cfg, self.out),
            "commit": git_commit(), "versions": library_versions(),
            "device": device_description(self.device), "world_size": self.dist.world_size,
            "init": self.init_note, "long_tail": list(self._long_tail) if self._long_tail else None,
            "wall_seconds_this_call": round(time.time() - self.wall_start, 1),
            "train_seconds": round(self.train_seconds, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "step": self.step, "miou": rec.get("miou") if rec else None,
        }
        write_json(self.out / "run.json", info)


def _shown_losses(values: dict[str, float]) -> dict[str, float]:
    """The losses a progress line shows: the total and the non-zero terms of the main losses."""
    shown = {"loss": values["loss_total"]}
    for name in ("loss_src", "loss_trg", "loss_mix"):
        if values.get(name):
            shown[name[5:]] = values[name]
    return shown


# ----------------------------------------------------------------------------------- state utils
def _template_state(t: Any) -> dict[str, Tensor]:
    return {f.name: getattr(t, f.name).detach().cpu() for f in dataclasses.fields(t)}


def _gather_objects(obj: Any) -> list[Any]:
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _net_state(learner_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The segmentation network's entries of a Learner state dict (`net.` prefix removed)."""
    return {k[4:]: v for k, v in learner_state.items() if k.startswith("net.")}
