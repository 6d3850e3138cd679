"""Progress that fits where udass runs: one updating bar in a terminal, log lines elsewhere.

    with Progress(total=1000, desc="quadmix vit", unit="step") as bar:
        for ...:
            bar.update(1, loss=1.234)

The mode comes from `progress_mode()`: `UDASS_PROGRESS` = bar | lines | off | auto (default).
`auto` draws a tqdm bar when standard error is a terminal, and otherwise (papermill, a Jupyter
kernel, a pipe, a log file, a batch job) writes one line at the first update, then every `every`
updates (default: a tenth of the total) or every `seconds` (default 30 s), whichever comes first,
never within 2 s of the previous line, and one closing line (so a job of a second or two writes
only that); each line says where the work is, its values (losses), its speed and the time left:

    quadmix vit: step 200/1000 (20%), loss 1.234, 2.31 step/s, 1 min 27 s elapsed, ETA 5 min 46 s

In a Jupyter kernel the lines go to standard output (standard error renders as a warning there),
elsewhere to standard error, so that a command's results on standard output stay clean.
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import IO, Any

from tqdm import tqdm

from udass.errors import UdassError

ENV = "UDASS_PROGRESS"
MODES = ("bar", "lines", "off")
LINE_SECONDS = 30.0        # the longest silence between two progress lines
LINE_FRACTION = 10         # a line at least every total / LINE_FRACTION updates ...
LINE_MIN_SECONDS = 2.0     # ... but not within 2 s of the last one (a quick job: its closing line)


def progress_mode(stream: IO[str] | None = None) -> str:
    """"bar", "lines" or "off": `UDASS_PROGRESS` when set, else "bar" when `stream` (default:
    standard error) is a terminal and "lines" when it is not."""
    value = os.environ.get(ENV, "auto").strip().lower()
    if value in MODES:
        return value
    if value not in ("", "auto"):
        raise UdassError(f"{ENV}={value!r}: expected auto, bar, lines or off; unset it or set one "
                         f"of those")
    stream = sys.stderr if stream is None else stream
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError):  # a closed or unusual stream
        return "lines"


def in_jupyter_kernel() -> bool:
    """Whether this process is a Jupyter kernel (its standard output is a kernel stream)."""
    return "ipykernel" in sys.modules and type(sys.stdout).__name__ == "OutStream"


def duration(seconds: float) -> str:
    """'12 s', '3 min 05 s', '2 h 07 min' (rounded down to the unit shown)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def rate_text(count: float, seconds: float, unit: str) -> str:
    """Speed as '2.31 step/s', or '4.2 s/step' below one unit per second."""
    if count <= 0 or seconds <= 0:
        return f"- {unit}/s"
    per_second = count / seconds
    if per_second >= 1:
        return f"{per_second:.2f} {unit}/s"
    return f"{seconds / count:.1f} s/{unit}"


def _value_text(values: dict[str, Any]) -> str:
    parts = []
    for name, v in values.items():
        if isinstance(v, float):
            v = f"{v:.4g}" if math.isfinite(v) else str(v)
        parts.append(f"{name} {v}")
    return ", ".join(parts)


class Progress:
    """Progress of `total` units of work (None: unknown), as a bar or as log lines.

    desc: what is running ("quadmix vit", "evaluate teacher"); unit: one update's unit ("step",
    "clip", "frame", "flow"); initial: units already done (a resumed run). enabled=False (a
    non-main DDP rank, a caller's progress=False) shows nothing. mode: "bar", "lines" or "off";
    None asks `progress_mode()`. Values passed to `update` (losses) are shown with the count.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "it", initial: int = 0,
                 enabled: bool = True, mode: str | None = None, every: int | None = None,
                 seconds: float = LINE_SECONDS, stream: IO[str] | None = None) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.initial = self.n = int(initial)
        self.mode = (mode or progress_mode()) if enabled else "off"
        if self.mode not in MODES:
            raise UdassError(f"progress mode {self.mode!r}: expected one of {', '.join(MODES)}")
        self.every = every or (max(1, math.ceil(total / LINE_FRACTION)) if total else 0)
        self.seconds = seconds
        self.stream = stream
        self.values: dict[str, Any] = {}
        self.start = self.last_time = time.monotonic()
        self.last_n = self.n
        self.first: tuple[float, int] | None = None   # (time, count) of the first update
        self.lines = 0
        self.closed = False
        self.bar = None
        if self.mode == "bar":
            self.bar = tqdm(total=total, initial=self.n, desc=desc, unit=unit, dynamic_ncols=True,
                            file=stream or sys.stderr, leave=True)

    # ------------------------------------------------------------------ updates
    def update(self, n: int = 1, **values: Any) -> None:
        """n more units done; `values` (e.g. loss=1.23) replace the shown values."""
        self.n += n
        if self.first is None:
            self.first = (time.monotonic(), self.n)
        if values:
            self.values = values
        if self.bar is not None:
            if values:
                self.bar.set_postfix({k: _short(v) for k, v in values.items()}, refresh=False)
            self.bar.update(n)
        elif self.mode == "lines":
            now = time.monotonic()
            since = now - self.last_time
            due = since >= self.seconds or (since >= LINE_MIN_SECONDS and (
                self.lines == 0 or bool(self.every and self.n - self.last_n >= self.every)))
            if due and not (self.total and self.n >= self.total):  # the closing line says the end
                self._line(now)

    def write(self, message: str, always: bool = False) -> None:
        """A message that does not break the bar (printed above it); `always`: also when the
        progress is off (a warning rather than progress)."""
        if self.bar is not None:
            self.bar.write(message, file=self.stream or sys.stderr)
        elif self.mode != "off" or always:
            print(message, file=self._out(), flush=True)

    def close(self, done: bool = True) -> None:
        """End the bar; in line mode write the closing line ("done" when `done`)."""
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "lines" and (self.n > self.initial or self.lines):
            self._line(time.monotonic(), final=done)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind: type | None, *_: Any) -> None:
        self.close(done=kind is None)

    # ------------------------------------------------------------------ lines
    def line_text(self, now: float | None = None, final: bool = False) -> str:
        """The text of a progress line at time `now` (monotonic seconds). Speed and time left
        are measured from the first update on (the first unit carries the start-up: data
        loaders, the first batch, lazy initialisation), the closing line's speed over all."""
        now = time.monotonic() if now is None else now
        elapsed = now - self.start
        done = self.n - self.initial
        count, seconds = done, elapsed
        if not final and self.first is not None and self.n > self.first[1] and now > self.first[0]:
            count, seconds = self.n - self.first[1], now - self.first[0]
        where = f"{self.unit} {self.n}/{self.total}" if self.total else f"{self.n} {self.unit}s"
        if self.total:
            where += f" ({100.0 * self.n / self.total:.0f}%)"
        parts = [where]
        if self.values:
            parts.append(_value_text(self.values))
        parts.append(rate_text(count, seconds, self.unit))
        parts.append(f"{duration(elapsed)} elapsed")
        if final:
            parts.append("done")
        elif self.total and count > 0:
            parts.append(f"ETA {duration((self.total - self.n) * seconds / count)}")
        return f"{self.desc}: " + ", ".join(parts)

    def _line(self, now: float, final: bool = False) -> None:
        print(self.line_text(now, final), file=self._out(), flush=True)
        self.lines += 1
        self.last_time, self.last_n = now, self.n

    def _out(self) -> IO[str]:
        if self.stream is not None:
            return self.stream
        return sys.stdout if in_jupyter_kernel() else sys.stderr


def _short(v: Any) -> Any:
    return f"{v:.3f}" if isinstance(v, float) else v
