"""Atomic file writes: a file on disk is either complete or absent, never half-written.

Everything udass writes that another process may read (checkpoints, metrics, tables, flow
files, generated datasets) goes through `atomic_write`: write a temporary file in the same
folder, flush and fsync it, then rename it over the target. `durable=False` skips the fsync: the
file is still complete or absent for every reader, but a crash of the whole machine may lose it;
for regenerable caches whose completeness a marker records (generated data roots), where the
fsync costs about ten times the write.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", durable: bool = True) -> Iterator[IO]:
    """Open a temporary file beside `path`; on success fsync it (if durable), rename to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    with atomic_write(path, "wb", durable) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str, durable: bool = True) -> None:
    with atomic_write(path, "w", durable) as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any, durable: bool = True) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", durable)
