"""Stopping a training run on a signal without losing its steps.

`StopOnSignal` turns the first SIGINT (Ctrl-C, a Jupyter "interrupt kernel") or SIGTERM (a batch
scheduler, `kill`, torchrun passing on a Ctrl-C) into a request that the loop reads after each
completed step: the loop then checkpoints that step and stops. A step is never cut in half, so
the checkpoint is exactly the one an uninterrupted run would have written at that step, and
resuming from it is bit-identical. A second Ctrl-C while the step finishes stops at once
(KeyboardInterrupt), keeping only the checkpoints already written.

Under DDP each rank receives the signal at its own moment; `requested()` takes the maximum of
the ranks' flags (one all-reduce of one number per step), so every rank stops after the same
step and takes part in the same checkpoint.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """A context manager: while inside it, SIGINT / SIGTERM set `signum` instead of stopping.

    Handlers are installed only in the main thread (Python delivers signals there); elsewhere
    the context changes nothing and `requested()` is False unless set by hand.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *_: Any) -> None:
        self.restore()

    def restore(self) -> None:
        """Put the handlers back that were there before."""
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:  # a second Ctrl-C: stop now
            self.restore()
            raise KeyboardInterrupt
        self.signum = signum

    def requested(self, device: torch.device | None = None) -> bool:
        """Whether a stop was asked for, on any rank when torch.distributed is initialised
        (a collective then: every rank must call it after the same step)."""
        flag = 0 if self.signum is None else int(self.signum)
        if dist.is_available() and dist.is_initialized():
            t = torch.tensor([flag], dtype=torch.int64, device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = int(t.item())
            if flag and self.signum is None:
                self.signum = flag
        return flag != 0


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
