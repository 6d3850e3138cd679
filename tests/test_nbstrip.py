"""The notebooks' git filter (udass/nbstrip.py, .gitattributes): git stores a notebook's inputs
only, so running and saving it in JupyterLab (outputs, execution counts, kernel metadata, a
jupytext twin rewritten with another jupytext version) leaves `git status` and `git diff` clean,
while a changed input is still a change."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from udass import nbstrip

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_committed_notebooks_and_twins_are_what_the_filter_stores(path):
    text = path.read_text(encoding="utf-8")
    assert nbstrip.strip_notebook(text) == text
    twin = path.with_suffix(".py").read_text(encoding="utf-8")
    assert nbstrip.strip_twin(twin) == twin


def test_the_filter_strips_outputs_counts_and_run_metadata_and_keeps_tags():
    nb = {"cells": [
        {"cell_type": "code", "execution_count": 7, "id": "a1", "metadata": {"tags": ["parameters"],
         "scrolled": True, "ExecuteTime": {"end_time": "x"}}, "outputs": [
            {"output_type": "stream", "name": "stdout", "text": ["step 1\n"]}], "source": "x = 1\ny = 2"},
        {"cell_type": "markdown", "id": "b2", "metadata": {}, "source": ["# Title\n"]}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "language_info": {"name": "python", "version": "3.11.7"},
                     "widgets": {"application/vnd.jupyter.widget-state+json": {}},
                     "jupytext": {"formats": "ipynb,py:percent"}},
        "nbformat": 4, "nbformat_minor": 5}
    out = json.loads(nbstrip.strip_notebook(json.dumps(nb)))
    code, md = out["cells"]
    assert code["outputs"] == [] and code["execution_count"] is None
    assert code["metadata"] == {"tags": ["parameters"]} and code["source"] == ["x = 1\n", "y = 2"]
    assert md == {"cell_type": "markdown", "id": "b2", "metadata": {}, "source": ["# Title\n"]}
    assert sorted(out["metadata"]) == ["jupytext", "kernelspec"]
    assert nbstrip.strip_twin("# ---\n#       jupytext_version: 1.19.6\n# ---\nx = 1\n") == "# ---\n# ---\nx = 1\n"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.mark.skipif(shutil.which("git") is None or shutil.which("python3") is None,
                    reason="needs git and python3 on PATH")
def test_saving_a_run_notebook_leaves_git_status_clean(tmp_path):
    repo = tmp_path / "clone"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "udass").mkdir()
    shutil.copy(REPO / ".gitattributes", repo)
    shutil.copy(REPO / "udass" / "nbstrip.py", repo / "udass")
    name = "02_train_video"
    for ext in (".ipynb", ".py"):
        shutil.copy(REPO / "notebooks" / f"{name}{ext}", repo / "notebooks")
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.org")
    _git(repo, "config", "user.name", "t")
    prefix = tmp_path / "env"
    assert nbstrip.install(repo, prefix=prefix)
    assert "python3 udass/nbstrip.py ipynb" in _git(repo, "config", "--get", "filter.udass-notebook-ipynb.clean")
    hook = json.loads((prefix / "etc/jupyter/jupyter_server_config.json").read_text())
    assert hook == {"FileContentsManager": {"post_save_hook": "udass.nbstrip.post_save"}}
    (prefix / "etc/jupyter/jupyter_server_config.json").write_text('{"ServerApp": {"port": 9999}}')
    nbstrip.install(repo, prefix=prefix)   # a config already there keeps its other settings
    hook = json.loads((prefix / "etc/jupyter/jupyter_server_config.json").read_text())
    assert hook == {"ServerApp": {"port": 9999},
                    "FileContentsManager": {"post_save_hook": "udass.nbstrip.post_save"}}
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "notebooks")

    # what JupyterLab writes after running every cell and saving (with jupytext pairing)
    ipynb = repo / "notebooks" / f"{name}.ipynb"
    nb = json.loads(ipynb.read_text(encoding="utf-8"))
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        cell["execution_count"] = i + 1
        cell["outputs"] = [{"output_type": "stream", "name": "stderr", "text": ["quadmix vit: step 1/10\n"]}]
        cell["metadata"]["execution"] = {"iopub.status.idle": "2026-12-05T00:00:00Z"}
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.7"}
    ipynb.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    twin = repo / "notebooks" / f"{name}.py"
    twin.write_text(twin.read_text().replace("#       format_version: '1.3'\n",
                                             "#       format_version: '1.3'\n#       jupytext_version: 9.9.9\n"))
    assert "outputs\": [\n    {" in ipynb.read_text() and "9.9.9" in twin.read_text()
    assert _git(repo, "diff") == ""
    # git lists a file whose size changed until its index entry is refreshed: JupyterLab's
    # post-save hook (registered by `install`) does that, staging nothing
    nbstrip.post_save(os_path=str(ipynb))
    assert _git(repo, "status", "--porcelain") == ""
    assert _git(repo, "diff", "--cached") == "" and _git(repo, "diff") == ""

    # an edited input is a change, stored without the outputs
    nb["cells"][-1]["source"] = ["print('changed')\n"]
    ipynb.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    nbstrip.post_save(os_path=str(ipynb))   # a real change: left for the user
    assert _git(repo, "status", "--porcelain") == f" M notebooks/{name}.ipynb\n"
    _git(repo, "add", "-A")
    stored = json.loads(_git(repo, "show", f":notebooks/{name}.ipynb"))
    assert stored["cells"][-1]["source"] == ["print('changed')\n"]
    assert all(c.get("outputs", []) == [] for c in stored["cells"]) and "language_info" not in stored["metadata"]
