"""The git "clean" filter of the notebooks: what git stores of a notebook is its inputs only.

    python3 udass/nbstrip.py ipynb < notebook.ipynb > stripped.ipynb
    python3 udass/nbstrip.py twin  < notebook.py    > stripped.py

`.gitattributes` routes notebooks/*.ipynb and their jupytext twins notebooks/*.py through this
filter and `make install` / `make lab` register it in the clone's git config (`install`), so that
running and saving a notebook in JupyterLab leaves `git status` and `git diff` clean:

- `ipynb`: code cells lose their outputs and execution counts; cell metadata keeps only `tags`
  (the papermill `parameters` tag); notebook metadata keeps only `kernelspec` and `jupytext`;
  the JSON is written as nbformat writes it (sorted keys, indent 1, a final newline), so a
  stripped notebook passes through unchanged.
- `twin`: the header line `jupytext_version: X` that jupytext rewrites with its own version on
  every save is dropped.

Git lists a file whose size changed as modified without running the filter (`git diff` is empty,
`git status` is not) until its index entry is refreshed. `post_save`, a Jupyter server post-save
hook that `install` registers in the environment's Jupyter config, does that refresh after each
save: when the stored form of the saved notebook (and of its twin) equals what git has, it
re-adds the file, which stages nothing and leaves `git status` clean; an edited input is left as
a change for the user.

Standard library only and no import of udass: git runs it as a plain script with `python3` from
the top of the work tree, before or without any virtual environment.
"""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

FILTER = "udass-notebook"
KEEP_NOTEBOOK_METADATA = ("kernelspec", "jupytext")
KEEP_CELL_METADATA = ("tags",)
_JUPYTEXT_VERSION = re.compile(r"^#\s+jupytext_version: .*\n", re.MULTILINE)


def _lines(source: Any) -> list[str]:
    text = "".join(source) if isinstance(source, list) else str(source)
    return text.splitlines(keepends=True)


def strip_notebook(text: str) -> str:
    """The stored form of a notebook's JSON text (see the module docstring)."""
    nb = json.loads(text)
    for cell in nb.get("cells", []):
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in KEEP_CELL_METADATA}
        cell["source"] = _lines(cell.get("source", ""))
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
    nb["metadata"] = {k: v for k, v in nb.get("metadata", {}).items() if k in KEEP_NOTEBOOK_METADATA}
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def strip_twin(text: str) -> str:
    """The stored form of a jupytext twin: without its `jupytext_version` header line."""
    return _JUPYTEXT_VERSION.sub("", text, count=1)


def _git(repo: str | Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)


def install(repo: str | Path = ".", prefix: str | Path | None = None) -> bool:
    """Register the filter in the git config of the repository at `repo` (local config, so a
    fresh clone needs only `make install`) and `post_save` in the Jupyter server config of the
    environment at `prefix` (default: this interpreter's virtual environment, when it is one
    and udass is installed in it; never a system-wide Python). False when `repo` is not a git
    work tree."""
    if prefix is None and sys.prefix != sys.base_prefix and importlib.util.find_spec("udass"):
        prefix = sys.prefix
    if prefix is not None:
        register_hook(Path(prefix) / "etc" / "jupyter" / "jupyter_server_config.json")
    if _git(repo, "rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        return False
    for kind in ("ipynb", "twin"):
        _git(repo, "config", f"filter.{FILTER}-{kind}.clean", f"python3 udass/nbstrip.py {kind}")
    return True


def register_hook(config: Path) -> None:
    """Set `FileContentsManager.post_save_hook` to `post_save` in a Jupyter server JSON config
    file, keeping what else it holds. (Only a `jupyter_server_config.json` itself is read for
    this setting; the `.d` folder beside it is read for extensions only.)"""
    settings: dict[str, Any] = {}
    if config.is_file():
        try:
            settings = json.loads(config.read_text(encoding="utf-8"))
        except ValueError:
            settings = {}
    settings.setdefault("FileContentsManager", {})["post_save_hook"] = "udass.nbstrip.post_save"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def refresh(path: str | Path) -> bool:
    """Re-add `path` to git's index when its stored form (through its clean filter) is the blob
    the index holds: only the index's file information changes. True when it did; False for a
    file outside a git work tree, without the notebook filter, or with a real change."""
    path = Path(path).resolve()
    top = _git(path.parent, "rev-parse", "--show-toplevel").stdout.strip()
    if not top or not path.is_file():
        return False
    rel = path.relative_to(Path(top).resolve()).as_posix()
    attr = _git(top, "check-attr", "filter", "--", rel).stdout.strip()
    if not attr.endswith(tuple(f"{FILTER}-{k}" for k in ("ipynb", "twin"))):
        return False
    stored = _git(top, "rev-parse", "-q", "--verify", f":{rel}").stdout.strip()
    now = _git(top, "hash-object", f"--path={rel}", "--", rel).stdout.strip()
    if not stored or stored != now:
        return False
    return _git(top, "add", "--", rel).returncode == 0


def post_save(model: Any = None, os_path: str | None = None, contents_manager: Any = None,
              **_: Any) -> None:
    """Jupyter server post-save hook: `refresh` the saved notebook and its twin (jupytext
    writes both). Never fails a save."""
    if not os_path or Path(os_path).suffix not in (".ipynb", ".py"):
        return
    for twin in (Path(os_path).with_suffix(".ipynb"), Path(os_path).with_suffix(".py")):
        try:
            refresh(twin)
        except (OSError, ValueError, subprocess.SubprocessError):
            pass


def main(argv: list[str]) -> int:
    if argv == ["install"]:
        install()   # outside a git clone there is nothing to register
        return 0
    if len(argv) != 1 or argv[0] not in ("ipynb", "twin"):
        print("usage: python3 udass/nbstrip.py ipynb|twin < in > out  (or: install)", file=sys.stderr)
        return 2
    text = sys.stdin.buffer.read().decode("utf-8")
    try:
        out = strip_notebook(text) if argv[0] == "ipynb" else strip_twin(text)
    except ValueError:   # not JSON (a conflict, a half-written file): store it as it is
        out = text
    sys.stdout.buffer.write(out.encode("utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
