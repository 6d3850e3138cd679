"""Process-level set-up shared by training, evaluation and notebooks: devices, torch.distributed,
seeding and determinism, and the provenance recorded in run.json (commit, versions, device)."""
from __future__ import annotations

import ctypes
import functools
import gc
import os
import platform
import subprocess
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from udass import __version__
from udass.errors import UdassError

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto`: CUDA when available, else CPU. `cuda` without a GPU is a clear error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UdassError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu "
                             "or install a CUDA build of torch (see README)")
        return torch.device("cuda", local_rank if name == "cuda" else int(name.split(":")[1]))
    if name != "cpu":
        raise UdassError(f"unknown device {name!r}; expected auto, cpu or cuda")
    return torch.device("cpu")


def init_distributed(device_name: str = "auto") -> tuple[DistInfo, torch.device]:
    """Initialise torch.distributed when launched by torchrun (WORLD_SIZE > 1): NCCL on GPUs,
    gloo on CPU. Returns the process's rank information and device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        _STARTED.append(weakref.ref(dist.group.WORLD))
    return DistInfo(rank, world, local), device


# The process group init_distributed started, if any, held weakly: a strong reference would keep
# the group alive after a caller's own destroy_process_group, until interpreter finalization,
# where destroying a gloo group's pending work aborts the process.
_STARTED: list[weakref.ref] = []


def shutdown_distributed() -> None:
    """End the process group that `init_distributed` started (a no-op otherwise), once every
    rank has finished the same work: a barrier, so that no rank leaves while another still
    communicates, then `destroy_process_group`. A gloo group still alive at interpreter
    finalization can abort the process ("terminate called without an active exception"): its
    pending work is destroyed while the interpreter is torn down; NCCL warns of leaked
    resources. Not for error paths: a barrier there would wait for ranks that never come.

    Call it once the run's DDP wrapper is gone; garbage (reference cycles) is collected first.
    A wrapper freed after the group is destroyed ends the group from its reducer's destructor,
    which holds the GIL while it joins the group's worker threads, and a worker still releasing a
    finished collective waits for that GIL: the process hangs (pytorch/pytorch#56297)."""
    started = _STARTED.pop()() if _STARTED else None
    if started is not None and dist.is_available() and dist.is_initialized() \
            and dist.group.WORLD is started:  # not one started (and ended) elsewhere since
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s buffers (BatchNorm running statistics) to every rank, one collective per
    dtype. Each rank updates its statistics from its own batch in a forward pass; after a step
    the ranks must hold one model again, or their EMA teachers and evaluations drift apart."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    groups: dict[torch.dtype, list[torch.Tensor]] = {}
    for b in module.buffers():
        groups.setdefault(b.dtype, []).append(b)
    for tensors in groups.values():
        flat = torch.cat([t.detach().reshape(-1) for t in tensors])
        dist.broadcast(flat, src)
        for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
            t.copy_(part.view_as(t))


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def set_determinism(device: torch.device, threads: int | None = None) -> None:
    """Deterministic kernels on CPU (bit-exact resume); cudnn benchmark off for CUDA reproducibility
    only when asked through UDASS_DETERMINISTIC=1 (it costs speed on GPUs)."""
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cpu" or os.environ.get("UDASS_DETERMINISTIC") == "1":
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic mode also fills every torch.empty / resize_ with NaN, so that a kernel
        # reading memory it never wrote would give the same (NaN) result on every run. None of
        # the kernels a step uses does (benchmarks/fingerprint.py gives the same hashes with and
        # without the fill), and the fill is an extra pass over each new buffer: off.
        torch.utils.deterministic.fill_uninitialized_memory = False
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 64 << 20   # buffers below this come from the heap, not from a fresh mmap
TRIM_THRESHOLD = 512 << 20  # free memory the heap keeps instead of handing back to the OS


@functools.cache
def tune_cpu_allocator() -> bool:
    """Keep a CPU training step's buffers in the process heap (glibc only; once per process).

    A step allocates and frees the same large buffers every time (upsampled logits, augmented
    clips, activations). By default glibc serves a buffer above 128 KiB (a threshold it raises
    only up to the sizes freed so far) with a fresh mmap and returns freed memory at the top of
    the heap to the OS, so the next step page-faults the same memory in again
    (docs/performance.md, "The CPU allocator").
    Raising the mmap threshold to 64 MiB and the trim threshold to 512 MiB keeps that memory in
    the heap for reuse. Values are unaffected (this is where the bytes live, not what is computed);
    the price is that the process keeps up to its peak heap instead of shrinking after it.
    `UDASS_MALLOC_TUNING=0` leaves the allocator alone. Returns whether the thresholds are set."""
    if os.environ.get("UDASS_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


def step_seed(seed: int, step: int, stream: int = 0, rank: int = 0) -> int:
    """The seed of one training step's random stream: a pure function of (seed, step, stream,
    rank), so a resumed run draws exactly what the uninterrupted run drew, and the processes of a
    distributed run draw their own crops, flips, augmentations, class choices and drop-path
    (rank 0 draws what a single process draws)."""
    return (seed * 1_000_003 + step * 7_919 + stream * 104_729 + rank * 15_485_863) % (2**63 - 1)


def git_commit() -> str | None:
    """HEAD, with "-dirty" when a tracked file outside results/ differs from it."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5)
        if out.returncode != 0:
            return None
        # results/ holds what the code wrote (notebooks rewrite it as a plan runs), not code
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # the SIMD level torch dispatches its CPU kernels to (AVX2, AVX512, ...): with the thread
    # count, what decides whether two machines compute the same bits
    cap = torch.backends.cpu.get_cpu_capability()
    return f"CPU {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, kernels {cap}"


def library_versions() -> dict[str, str]:
    """Versions of python, torch, numpy, OpenCV and udass, for run.json."""
    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__}
    try:
        # OpenCV belongs to the data layer: read only for its version here, so that this base
        # module imports without it
        import cv2

        versions["opencv"] = cv2.__version__
    except ImportError:  # pragma: no cover
        pass
    versions["udass"] = __version__
    return versions
