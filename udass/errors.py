"""User-facing errors.

A `UdassError` is raised for every problem a user can fix (a missing dataset folder, an unreadable
image, label ids outside the protocol, a flow of the wrong size, an unknown name, a missing
checkpoint). Its message is one line: what was expected, what was found, and what to do.
The command line prints it without a traceback and exits with status 2.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# torch re-raises an exception from a DataLoader worker as `type(e)(text)`, the text being
# "Caught <Type> in DataLoader worker process N.\nOriginal Traceback ...<Type>: <message>".
_WORKER_WRAPPED = re.compile(r"Caught \w+ in .+?\.\nOriginal Traceback")


class UdassError(Exception):
    """An error caused by input the user controls; the message says how to fix it.

    One raised in a DataLoader worker (data.num_workers > 0) keeps its own one-line message when
    torch re-raises it in the main process, not the worker's traceback.
    """

    def __init__(self, message: str = "") -> None:
        if isinstance(message, str) and _WORKER_WRAPPED.match(message):
            last = message.rstrip().splitlines()[-1]
            message = last.split(": ", 1)[1] if ": " in last else last
        super().__init__(message)


def unknown_name(kind: str, name: str, known: Iterable[str]) -> UdassError:
    """Error for an unknown benchmark / backbone / method / ... name, with the valid choices."""
    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UdassError(f"unknown {kind} {name!r}{hint}; expected one of: {', '.join(known)}")


class Interrupted(UdassError):
    """A run stopped by a signal (Ctrl-C: SIGINT, or SIGTERM) after keeping what it could.

    The message says where it stopped and what was kept; the command line prints it as one line
    and exits with `exit_status` (128 + the signal number: 130 for Ctrl-C, 143 for SIGTERM).
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = int(signum)

    @property
    def exit_status(self) -> int:
        return 128 + self.signum
