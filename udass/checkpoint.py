"""Checkpoints: atomic, self-describing (they carry their config), pruned to the last few.

Layout: `OUT/checkpoints/step_{k:07d}.pt`. A checkpoint is written to a temporary file in the
same folder, fsynced and renamed, so a killed process never leaves a half-written one.
"""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import torch

from udass.errors import UdassError
from udass.io import write_bytes

_NAME = re.compile(r"^step_(\d{7})\.pt$")


def checkpoint_dir(out: Path) -> Path:
    return Path(out) / "checkpoints"


def checkpoint_path(out: Path, step: int) -> Path:
    return checkpoint_dir(out) / f"step_{step:07d}.pt"


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    d = checkpoint_dir(out)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def last_checkpoint(out: Path) -> Path | None:
    found = list_checkpoints(out)
    return found[-1][1] if found else None


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UdassError(f"checkpoint {path} does not exist; pass a file written by `udass train` "
                         f"(OUT/checkpoints/step_*.pt)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise UdassError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e}); "
                         f"it may be truncated or not a udass checkpoint") from None
    if not isinstance(state, dict) or "config" not in state or "student" not in state:
        raise UdassError(f"{path} is not a udass checkpoint (no config/student entries); "
                         f"for ImageNet weights use --pretrained instead")
    return state


def prune_checkpoints(out: Path, keep: int = 2) -> None:
    for _, p in list_checkpoints(out)[:-keep]:
        p.unlink(missing_ok=True)
