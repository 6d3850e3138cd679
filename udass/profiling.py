"""Where a training step's time goes, read from its profiler ranges.

Every part of a step runs inside a `torch.profiler.record_function("udass.<part>")` range (the
student and teacher forwards, each backward pass, the pastes, the strong augmentation, the
losses, the optimiser step, ...). Run a step under `torch.profiler.profile` and

    range_parts(prof.events())  -> {"student_forward": s, "backward": s, "paste": s, ...}
    step_split(parts, step_s)   -> {"forward_backward": s, "mixing": s, "update": s, "other": s}

give seconds per part (each range minus the ranges nested in it) and the step's coarse split.
`time_once(fn, sync)` times one call (the dry run and the benchmarks).
On a GPU the kernels of a range run after the CPU has left it; `synchronised_ranges` makes every
`udass.*` range wait for the device before it opens and closes, so that its time is its kernels'.
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

from torch.profiler import record_function

PREFIX = "udass."
# the network passes of a step; every other range is mixing (pastes, templates, pseudo-label
# post-processing, strong augmentation, crop / flip, histogram matching, losses, aggregation)
# or the parameter update
FORWARD_BACKWARD = ("student_forward", "teacher_forward", "backward")
UPDATE = ("optimizer_step", "ema_update", "finite_check")


def range_parts(events: Any, prefix: str = PREFIX, rename: Mapping[str, str] | None = None
                ) -> dict[str, float]:
    """Seconds per part from a profiler's events: each `prefix*` range's duration minus the
    durations of the `prefix*` ranges directly nested in it (same thread), summed by name (the
    prefix removed; `rename` maps a name to another key)."""
    rename = rename or {}
    spans = sorted(((e.time_range.start, e.time_range.end, e.name[len(prefix):], e.thread)
                    for e in events if e.name.startswith(prefix)), key=lambda t: (t[3], t[0], -t[1]))
    out: dict[str, float] = defaultdict(float)
    stack: list[tuple[float, float, str, int]] = []
    for span in spans:
        while stack and (stack[-1][3] != span[3] or stack[-1][1] <= span[0]):
            stack.pop()
        dur = (span[1] - span[0]) * 1e-6
        out[rename.get(span[2], span[2])] += dur
        if stack:
            parent = stack[-1][2]
            out[rename.get(parent, parent)] -= dur
        stack.append(span)
    return dict(out)


def step_split(parts: Mapping[str, float], step_s: float) -> dict[str, float]:
    """The coarse split of one step of `step_s` seconds with `parts` from `range_parts`:
    forward_backward (student and teacher forwards, backward passes), update (optimiser step,
    EMA update, finite check of the losses), mixing (every other range) and other (the step
    time no range covers: Python bookkeeping, zero_grad, the scheduler)."""
    fb = sum(v for k, v in parts.items() if k in FORWARD_BACKWARD)
    update = sum(v for k, v in parts.items() if k in UPDATE)
    mixing = sum(v for k, v in parts.items() if k not in FORWARD_BACKWARD and k not in UPDATE)
    return {"forward_backward": fb, "mixing": mixing, "update": update,
            "other": step_s - fb - mixing - update}


@contextmanager
def synchronised_ranges(sync: Callable[[], None], prefix: str = PREFIX) -> Iterator[None]:
    """Within the block, every `prefix*` profiler range calls `sync` (`torch.cuda.synchronize`)
    before it opens and before it closes, so that on a GPU a range's duration is the time of the
    kernels it launched rather than of their launch. Applies to ranges opened by `with` and by a
    `@record_function` decorator alike (record_function's own entry and exit, restored on leaving
    the block); other ranges are left alone. Costs one drained launch queue per range boundary;
    computed values are unaffected."""
    enter, leave = record_function.__enter__, record_function.__exit__

    def _enter(self: record_function) -> Any:
        if self.name.startswith(prefix):
            sync()
        return enter(self)

    def _leave(self: record_function, *exc: Any) -> Any:
        if self.name.startswith(prefix):
            sync()
        return leave(self, *exc)

    record_function.__enter__, record_function.__exit__ = _enter, _leave  # type: ignore[method-assign]
    try:
        yield
    finally:
        record_function.__enter__, record_function.__exit__ = enter, leave  # type: ignore[method-assign]


def time_once(fn: Callable[[], Any], sync: Callable[[], None] | None = None) -> tuple[float, Any]:
    """Seconds of one call of fn (after `sync` on both sides: CUDA), and its result."""
    if sync:
        sync()
    t0 = time.perf_counter()
    out = fn()
    if sync:
        sync()
    return time.perf_counter() - t0, out
