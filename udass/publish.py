"""Where the notebooks write, and how a new table replaces the one before it.

    output_root(results_dir, publish)   the committed results/ on purpose, results/local/ otherwise
    staged_folder(out_dir)              write a folder whole beside it, then swap it in
    recover_folder(out_dir)             finish or undo a swap that a killed process left half done

The tables, figures and run copies under `results/` are committed: a notebook writes there only
when asked to publish (`udass reproduce` does, for the jobs of its plan; or `publish=True`).
Any other run of a notebook whose results folder is the repository's `results/` (or a folder in
it) writes the same layout under `results/local/` (git-ignored), so trying a parameter never
changes what git holds. A results folder outside `results/` is the user's own and is used as
given.

A notebook's output folder (`<root>/<notebook>/<benchmark>/<backbone>/`) is replaced whole:
`staged_folder` yields an empty sibling folder, and only when everything is written there is it
renamed into place (the previous folder is renamed aside first and removed after). An exception
or Ctrl-C before the swap removes the staging folder and leaves the previous folder untouched; a
process killed between the two renames leaves the previous folder aside, and the next
`staged_folder` (or `recover_folder`) of that folder puts it back. Staging and previous folders
are named `.<name>.*.tmp`, which git ignores.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from udass.runtime import REPO_ROOT

__all__ = ["LOCAL_FOLDER", "committed_results", "output_root", "staged_folder", "recover_folder",
           "rebase"]

LOCAL_FOLDER = "local"   # results/local/: notebook runs that do not publish (git-ignored)


def committed_results() -> Path | None:
    """The repository's committed results folder (`<repo>/results`) in a source checkout, else
    None (an installed package has no committed results to protect)."""
    if not (REPO_ROOT / "notebooks").is_dir():
        return None
    return REPO_ROOT / "results"


def output_root(results_dir: str | os.PathLike, publish: bool) -> Path:
    """The folder a notebook writes into, for its `results_dir` and `publish` parameters.

    publish: `results_dir` as given. Otherwise a folder inside the committed results/ (results/
    itself, results/longer-schedule, ...) becomes the same path under results/local/; a folder
    already in results/local/ or outside results/ is used as given.
    """
    path = Path(results_dir)
    committed = committed_results()
    if publish or committed is None:
        return path
    try:
        rel = path.resolve().relative_to(committed.resolve())
    except ValueError:
        return path    # outside results/: the user's own folder
    if rel.parts[:1] == (LOCAL_FOLDER,):
        return path
    return committed / LOCAL_FOLDER / rel


def _previous(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.previous.tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's live process
        return True
    return True


def recover_folder(out_dir: str | os.PathLike) -> None:
    """Undo what a killed `staged_folder` left: a previous folder set aside without its
    replacement comes back to `out_dir`; one whose replacement is in place is removed; staging
    folders of processes that no longer run are removed."""
    out_dir = Path(out_dir)
    prev = _previous(out_dir)
    if prev.is_dir():
        if out_dir.exists():
            shutil.rmtree(prev, ignore_errors=True)
        else:
            os.replace(prev, out_dir)
    if not out_dir.parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(out_dir.name)}\.staging-(\d+)\.tmp$")
    for d in out_dir.parent.iterdir():
        m = pattern.match(d.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside `out_dir` to write the new contents into; on a normal exit it
    replaces `out_dir` (whatever `out_dir` held is gone), on an exception (Ctrl-C included) it is
    removed and `out_dir` keeps its previous contents.

    The caller reads the previous contents from `out_dir` while it writes the staging folder
    (rows it keeps) and, after the block, finds everything at `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.staging-{os.getpid()}.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    prev = _previous(out_dir)
    try:
        if out_dir.exists():
            os.replace(out_dir, prev)
        os.replace(staging, out_dir)
    except BaseException:
        # interrupted between the renames: the previous folder goes back
        if not out_dir.exists() and prev.exists():
            os.replace(prev, out_dir)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(prev, ignore_errors=True)


def rebase(path: Path, staging: Path, out_dir: Path) -> Path:
    """`path` written under the staging folder -> where it is after the swap."""
    try:
        return out_dir / Path(path).relative_to(staging)
    except ValueError:
        return Path(path)
