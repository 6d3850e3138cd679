"""JupyterLab in a real browser (slow; needs the `browser` extra, i.e. the Python playwright
package, and a system Chromium at /usr/bin/chromium or $UDASS_CHROMIUM; skipped without them).

JupyterLab is started as `make lab` starts it (the virtual environment's jupyter, bound to
127.0.0.1, --allow-root as root) on a copy of the QuadMix explorer notebook whose parameters ask
for a tiny run (test profile, random initialisation, CPU). Headless Chromium opens it, runs every
cell, waits for the step slider, moves it and checks that the figure shown changes. Saving the
executed notebook in a clone of the repository leaves `git status` clean (the notebook filter
and JupyterLab's post-save hook, udass/nbstrip.py).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("UDASS_CHROMIUM", "/usr/bin/chromium")
# the flags a closed network and a root user need (no sandbox, no background connections)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "udass-browser-test"


def _need_browser() -> None:
    pytest.importorskip("playwright.sync_api", reason="the browser extra (playwright) is not installed")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set UDASS_CHROMIUM)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _explorer_copy(folder: Path, work: Path) -> Path:
    """notebooks/00_quadmix_explorer.ipynb with parameters for a tiny run writing under `work`."""
    nb = json.loads((REPO / "notebooks" / "00_quadmix_explorer.ipynb").read_text(encoding="utf-8"))
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    # the notebook's own parameter cell, then the overrides (a parameter added to the notebook
    # keeps its default here instead of being lost)
    source = "".join(params["source"]).rstrip("\n") + "\n"
    params["source"] = [source, "# overrides for the browser test\n",
        'methods = "quadmix"\n', 'profile = "test"\n', 'seeds = "0"\n', "pretrained = None\n",
        'device = "cpu"\n', f'results_dir = "{work / "results"}"\n',
        f'runs_root = "{work / "runs"}"\n', "iterations = 3\n", "init_from_run = False\n"]
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "explorer.ipynb"
    nb["metadata"].pop("jupytext", None)   # a standalone copy, not paired with a twin
    out.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return out


class _Lab:
    """JupyterLab on `root` as `make lab` runs it, with a fixed token; stopped on exit."""

    def __init__(self, root: Path, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        bin_dir = Path(sys.executable).parent
        cmd = [str(bin_dir / "jupyter"), "lab", "--ip", "127.0.0.1", "--port", str(self.port),
               "--no-browser", "--notebook-dir", str(root), f"--IdentityProvider.token={TOKEN}"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               "OMP_NUM_THREADS": "1", "UDASS_PROGRESS": "lines"}
        self.log = open(log, "w")
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait(self, seconds: float = 120) -> None:
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"jupyter lab exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={TOKEN}", timeout=5):
                    return
            except OSError:
                time.sleep(0.5)
        raise AssertionError("jupyter lab did not answer in time")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _figure_src(page) -> str:
    return page.locator(".widget-output img, .jp-OutputArea-output img").last.get_attribute("src") or ""


@pytest.mark.timeout(900)
def test_explorer_runs_in_jupyterlab_and_its_slider_changes_the_figure(tmp_path):
    _need_browser()
    from playwright.sync_api import sync_playwright

    nb = _explorer_copy(tmp_path / "lab", tmp_path / "work")
    lab = _Lab(nb.parent, tmp_path / "lab.log")
    try:
        lab.wait()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{lab.url}/lab/tree/{nb.name}?token={TOKEN}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            page.wait_for_function(   # the kernel is up: the status bar says Idle
                "() => (document.querySelector('#jp-main-statusbar') || {innerText: ''})"
                ".innerText.includes('Idle')", timeout=120_000)
            page.locator("li.lm-MenuBar-item", has_text="Run").first.click()
            page.locator("li.lm-Menu-item", has_text="Run All Cells").first.click()
            slider = page.locator(".widget-slider, .jupyter-widgets.widget-hslider").first
            slider.wait_for(timeout=600_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.widget-output img, .jp-OutputArea-output img')]"
                ".some(i => (i.getAttribute('src') || '').startsWith('data:image/png'))", timeout=120_000)
            before = _figure_src(page)
            readout = page.locator(".widget-readout").first
            assert readout.inner_text().strip() == "3"
            page.screenshot(path=str(tmp_path / "explorer_step3.png"))
            handle = page.locator(".noUi-handle, .slider-handle").first
            handle.focus()
            handle.press("Home")       # to step 1
            page.wait_for_function(
                "src => { const imgs = [...document.querySelectorAll('.widget-output img, "
                ".jp-OutputArea-output img')]; const last = imgs[imgs.length - 1]; "
                "return last && last.getAttribute('src') !== src; }", arg=before, timeout=60_000)
            assert readout.inner_text().strip() == "1"
            after = _figure_src(page)
            assert after.startswith("data:image/png") and after != before
            page.screenshot(path=str(tmp_path / "explorer_step1.png"))
            shots = os.environ.get("UDASS_BROWSER_SHOTS")
            if shots:   # keep the screenshots for a person to look at
                for name in ("explorer_step3.png", "explorer_step1.png"):
                    shutil.copy(tmp_path / name, Path(shots) / name)
            browser.close()
    finally:
        lab.close()
    figures = sorted((tmp_path / "work" / "results").rglob("*.png"))
    assert len(figures) >= 3, (tmp_path / "lab.log").read_text()[-3000:]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.mark.timeout(600)
def test_saving_an_executed_notebook_through_jupyterlab_leaves_git_status_clean(tmp_path):
    """A clone of the repository with the filter installed as `make install` does; JupyterLab's
    own contents API saves notebooks/02_train_video.ipynb with outputs (jupytext writes the
    twin too); git status stays clean. No browser needed: the save is the request the browser
    sends."""
    repo = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(repo)], check=True)
    for path in (".gitattributes", "udass/nbstrip.py", "notebooks"):   # this work tree's state
        src, dst = REPO / path, repo / path
        if src.is_dir():
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        else:
            shutil.copy(src, dst)
    _git(repo, "-c", "user.email=t@example.org", "-c", "user.name=t", "add", "-A")
    _git(repo, "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qm", "state", "--allow-empty")
    from udass import nbstrip

    prefix = Path(sys.prefix)
    assert nbstrip.install(repo, prefix=prefix)
    lab = _Lab(repo, tmp_path / "lab.log")
    try:
        lab.wait()
        path = "notebooks/02_train_video.ipynb"
        with urllib.request.urlopen(f"{lab.url}/api/contents/{path}?token={TOKEN}", timeout=30) as r:
            model = json.load(r)
        for i, cell in enumerate(c for c in model["content"]["cells"] if c["cell_type"] == "code"):
            cell["execution_count"] = i + 1
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "trained\n"}]
        model["content"]["metadata"]["language_info"] = {"name": "python", "version": "3.11"}
        body = json.dumps({"type": "notebook", "format": "json", "content": model["content"]}).encode()
        req = urllib.request.Request(f"{lab.url}/api/contents/{path}?token={TOKEN}", data=body,
                                     method="PUT", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200
    finally:
        lab.close()
    saved = json.loads((repo / path).read_text(encoding="utf-8"))
    assert any(c.get("outputs") for c in saved["cells"])          # the work tree has the outputs
    assert _git(repo, "status", "--porcelain") == ""
    assert _git(repo, "diff") == ""
