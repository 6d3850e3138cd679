"""Atomic file writes: a file on disk is either complete or absent, never half-written; and the
two readers / writers every layer shares (`read_json`, `save_figure`).

Everything udass writes that another process may read (checkpoints, metrics, tables, flow
files, generated datasets) goes through `atomic_write`: write a temporary file in the same
folder, flush and fsync it, then rename it over the target. `durable=False` skips the fsync: the
file is still complete or absent for every reader, but a crash of the whole machine may lose it;
for regenerable caches whose completeness a marker records (generated data roots), where the
fsync costs about ten times the write.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Iterator

from udass.errors import UdassError


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
        set_default_permissions(tmp)  # mkstemp creates 0600; a normal write would not
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def current_umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux:
    /proc/self/status), else by setting and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def set_default_permissions(path: str | os.PathLike, directory: bool = False) -> None:
    """Give `path` the permissions a plain `open(path, "w")` (or `mkdir`) would have given it:
    0666 (0777 for a folder) less the umask. For files made private by `tempfile.mkstemp` /
    `mkdtemp` before they are renamed into place."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    with atomic_write(path, "wb", durable) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str, durable: bool = True) -> None:
    with atomic_write(path, "w", durable) as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any, durable: bool = True) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", durable)


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document at `path`, or None when there is no such file; an unreadable or corrupt
    file is a one-line UdassError saying to delete it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as e:
        raise UdassError(f"{path} is unreadable ({e}); delete it and run again") from None


def save_figure(fig: Any, path: str | os.PathLike, dpi: float | None = 120, tight: bool = True,
                metadata: Mapping[str, Any] | None = None) -> Path:
    """Render a matplotlib Figure as PNG and write it atomically; returns the path.

    dpi None: the figure's own; tight: crop to the drawn area (`bbox_inches="tight"`); metadata:
    PNG text chunks (e.g. {"Software": None} for bytes that do not depend on the matplotlib
    version).
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi="figure" if dpi is None else dpi,
                bbox_inches="tight" if tight else None, metadata=None if metadata is None else dict(metadata))
    write_bytes(path, buf.getvalue())
    return Path(path)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
