"""Committed results are written only on purpose (udass.publish): where a notebook writes for its
`results_dir` / `publish` parameters, a table folder replaced whole (an exception or Ctrl-C
leaves the previous one byte for byte, a process killed between the two renames is recovered),
`run_table` through both, evaluation-only tables from checkpoints, `udass nb` / `udass demo` /
`udass reproduce` and what they pass, a demo (and an interrupted one) on a clone of the
repository leaving `git status` clean, and the explorer's starting run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from udass import experiments as ux
from udass import publish, reproduce
from udass.config import build_config
from udass.errors import UdassError
from udass.runs import ensure_run, run_checkpoint, run_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parent.parent
TABLE = ("02_train_video", "synthetic-video", "vit")


@pytest.fixture
def committed(tmp_path, monkeypatch) -> Path:
    """A stand-in for the repository's committed results/ folder."""
    folder = tmp_path / "results"
    folder.mkdir()
    monkeypatch.setattr(publish, "committed_results", lambda: folder)
    return folder


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _fill(folder: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)


# ----------------------------------------------------------------------------------- output_root
def test_output_root_maps_the_committed_folder_to_local(committed, tmp_path):
    local = committed / "local"
    assert publish.output_root(committed, False) == local
    assert publish.output_root(committed / "longer-schedule", False) == local / "longer-schedule"
    assert publish.output_root(local, False) == local                   # already local
    assert publish.output_root(local / "x", False) == local / "x"
    assert publish.output_root(tmp_path / "mine", False) == tmp_path / "mine"   # the user's own
    for path in (committed, committed / "longer-schedule", tmp_path / "mine"):
        assert publish.output_root(path, True) == path                 # publish: as given


def test_output_root_without_a_source_checkout(monkeypatch, tmp_path):
    """An installed package (no committed results) writes where it is told."""
    monkeypatch.setattr(publish, "committed_results", lambda: None)
    assert publish.output_root(tmp_path / "results", False) == tmp_path / "results"


def test_parse_params_redirects_unless_publish(committed):
    from udass.params import parse_params

    assert parse_params(results_dir=committed).results_dir == committed / "local"
    assert parse_params(results_dir=committed, publish="true").results_dir == committed
    assert parse_params(results_dir=committed, publish=True).publish is True


# ----------------------------------------------------------------------------------- staged_folder
OLD = {"table.md": "old table\n", "runs/a-s0/metrics.json": "{}", "figure.png": "old png"}


def test_staged_folder_replaces_the_folder_whole(tmp_path):
    out = tmp_path / "table"
    _fill(out, OLD)
    with publish.staged_folder(out) as staging:
        assert staging.parent == out.parent and staging != out and not any(staging.iterdir())
        assert (out / "table.md").read_text() == "old table\n"   # the previous contents readable
        _fill(staging, {"table.md": "new table\n", "runs/b-s0/metrics.json": "{}"})
    assert _tree(out) == {"table.md": b"new table\n", "runs/b-s0/metrics.json": b"{}"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table"]   # no staging or previous left


def test_staged_folder_creates_a_missing_folder(tmp_path):
    out = tmp_path / "a" / "b"
    with publish.staged_folder(out) as staging:
        _fill(staging, {"x.txt": "x"})
    assert _tree(out) == {"x.txt": b"x"}


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_exception_inside_leaves_the_previous_folder_byte_identical(tmp_path, error):
    out = tmp_path / "table"
    _fill(out, OLD)
    before = _tree(out)
    with pytest.raises(type(error)):
        with publish.staged_folder(out) as staging:
            _fill(staging, {"table.md": "half written"})
            (out / "table.md").read_text()
            raise error
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table"]


def test_an_interrupt_between_the_renames_puts_the_previous_folder_back(tmp_path, monkeypatch):
    out = tmp_path / "table"
    _fill(out, OLD)
    before = _tree(out)
    real = os.replace
    calls = []

    def second_rename_interrupted(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(publish.os, "replace", second_rename_interrupted)
    with pytest.raises(KeyboardInterrupt):
        with publish.staged_folder(out) as staging:
            _fill(staging, {"table.md": "new"})
    monkeypatch.setattr(publish.os, "replace", real)
    assert calls[0] == ("table", ".table.previous.tmp")
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table"]


def test_a_process_killed_between_the_renames_is_recovered(tmp_path):
    """Killed after `out` was renamed aside and before the staging folder took its place: the
    previous folder sits at .<name>.previous.tmp, `out` is missing, a dead process's staging
    folder is left. recover_folder (and so the next staged_folder) puts the previous one back."""
    out = tmp_path / "table"
    _fill(tmp_path / ".table.previous.tmp", OLD)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    _fill(tmp_path / f".table.staging-{dead}.tmp", {"table.md": "new, never swapped in"})
    publish.recover_folder(out)
    assert _tree(out) == {k: v.encode() for k, v in OLD.items()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table"]
    # the same state met by the next staged_folder: the previous folder is what it reads
    (tmp_path / "table").rename(tmp_path / ".table.previous.tmp")
    with publish.staged_folder(out) as staging:
        assert (out / "table.md").read_text() == "old table\n"
        _fill(staging, {"table.md": "next"})
    assert _tree(out) == {"table.md": b"next"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table"]


def test_recover_keeps_the_new_folder_when_the_swap_finished(tmp_path):
    out = tmp_path / "table"
    _fill(out, {"table.md": "new"})
    _fill(tmp_path / ".table.previous.tmp", OLD)     # killed before the previous one was removed
    _fill(tmp_path / f".table.staging-{os.getpid()}.tmp", {"x": "mine"})   # a live process's
    publish.recover_folder(out)
    assert _tree(out) == {"table.md": b"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".table.staging-{os.getpid()}.tmp", "table"]


def test_git_ignores_staging_and_previous_folders():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    names = ["results/02_train_video/synthetic-video/.vit.staging-123.tmp/table.md",
             "results/02_train_video/synthetic-video/.vit.previous.tmp/table.md",
             "results/local/02_train_video/synthetic-video/vit/table.md"]
    out = subprocess.run(["git", "check-ignore", "--no-index", *names], cwd=REPO,
                         capture_output=True, text=True).stdout.split()
    assert out == names


# ----------------------------------------------------------------------------------- run_table
def _kw(tmp_path: Path, results: Path, **extra) -> dict:
    return dict(benchmark="synthetic-video", backbone="vit", profile="test", steps=1, seeds="0",
                device="cpu", results_dir=results, runs_root=tmp_path / "runs", progress=False,
                **extra)


def test_run_table_writes_local_unless_publish(committed, tmp_path):
    res = ux.run_table("02_train_video", methods="source_only", **_kw(tmp_path, committed))
    local = committed / "local" / "/".join(TABLE)
    assert res["out_dir"] == local and (local / "table.md").is_file()
    assert res["files"]["table_md"] == local / "table.md"
    assert (local / "runs" / "source_only-s0" / "run.json").is_file()
    assert [p.name for p in committed.iterdir()] == ["local"]      # nothing else written
    res = ux.run_table("02_train_video", methods="source_only",
                       **_kw(tmp_path, committed, publish=True))
    assert res["out_dir"] == committed / "/".join(TABLE)
    assert (committed / "/".join(TABLE) / "table.md").read_text() == (local / "table.md").read_text()


def test_run_table_interrupted_leaves_the_previous_table_whole(committed, tmp_path, monkeypatch):
    kw = _kw(tmp_path, committed, publish=True)
    ux.run_table("02_train_video", methods="source_only,dacs", **kw)
    folder = committed / "/".join(TABLE)
    before = _tree(folder)
    assert "runs/dacs-s0/metrics.json" in before

    calls = []

    def second_method_interrupted(cfg, *args, **kwargs):   # Ctrl-C while training the 2nd method
        calls.append(cfg.train.method)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return ensure_run(cfg, *args, **kwargs)

    monkeypatch.setattr(ux, "ensure_run", second_method_interrupted)
    with pytest.raises(KeyboardInterrupt):
        ux.run_table("02_train_video", methods="quadmix,oracle", **kw)
    assert calls == ["quadmix", "oracle"] and _tree(folder) == before
    monkeypatch.setattr(ux, "ensure_run", ensure_run)

    def figure_interrupted(*args, **kwargs):     # Ctrl-C while the new folder is being written
        raise KeyboardInterrupt

    monkeypatch.setattr(ux, "training_curves", figure_interrupted)
    with pytest.raises(KeyboardInterrupt):
        ux.run_table("02_train_video", methods="quadmix", **kw)
    assert _tree(folder) == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["vit"]


# ----------------------------------------------------------------------------------- evaluation only
@pytest.fixture(scope="module")
def trained_quadmix(tmp_path_factory) -> Path:
    """The checkpoint of a one-step quadmix run at the test profile (synthetic-video, ViT)."""
    runs = tmp_path_factory.mktemp("trained-runs")
    cfg = build_config("synthetic-video", "vit", "quadmix", "test", steps=1)
    ensure_run(cfg, runs, device="cpu", progress=False)
    return run_checkpoint(cfg, runs)


def _run_folders(runs_root: Path) -> list[Path]:
    return sorted(p.parent for p in runs_root.rglob("run.json"))


def test_checkpoints_fill_a_row_by_evaluation_and_train_nothing(trained_quadmix, tmp_path, capsys):
    import hashlib

    runs_root = tmp_path / "runs"
    kw = dict(benchmark="synthetic-video", backbone="vit", profile="test", device="cpu",
              results_dir=tmp_path / "results", runs_root=runs_root, progress=False)
    res = ux.run_table("02_train_video", checkpoints={"QuadMix": trained_quadmix}, **kw)
    assert _run_folders(runs_root) == []                      # nothing trained
    assert [r["method"] for r in res["table"]["rows"]] == ["QuadMix"]
    row = res["table"]["rows"][0]
    assert row["source"] == "ours: evaluated/QuadMix" and 0.0 <= row["miou"] <= 100.0
    folder = tmp_path / "results" / "/".join(TABLE)
    rec = json.loads((folder / "evaluated" / "QuadMix" / "metrics.json").read_text())
    assert rec["sha256"] == hashlib.sha256(trained_quadmix.read_bytes()).hexdigest()
    assert rec["checkpoint"] == str(trained_quadmix.resolve()) and rec["miou"] == row["miou"]
    combined = json.loads((folder / "metrics.json").read_text())
    assert combined["checkpoints"] == {"QuadMix": str(trained_quadmix)} and combined["seeds"] == []
    assert "nothing was trained" in (folder / "table.md").read_text()
    assert "evaluating QuadMix" in capsys.readouterr().out
    cached = list((runs_root / "evaluations" / "synthetic-video").glob("*/metrics.json"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    # a second call reuses the cached evaluation ("label=path" on the command line)
    res2 = ux.run_table("02_train_video", checkpoints=f"QuadMix={trained_quadmix}", **kw)
    assert res2["records"][0]["reused"] and cached[0].stat().st_mtime_ns == stamp
    assert "evaluating" not in capsys.readouterr().out
    assert res2["table"]["rows"][0]["miou"] == row["miou"]


def test_checkpoints_refuse_a_wrong_backbone_and_a_missing_file(trained_quadmix, tmp_path):
    kw = dict(benchmark="synthetic-video", profile="test", device="cpu",
              results_dir=tmp_path / "results", runs_root=tmp_path / "runs", progress=False)
    with pytest.raises(UdassError) as e:
        ux.run_table("02_train_video", backbone="cnn", checkpoints={"QuadMix": trained_quadmix}, **kw)
    assert "\n" not in str(e.value) and "is a vit network" in str(e.value) and "backbone=vit" in str(e.value)
    with pytest.raises(UdassError) as e:
        ux.run_table("02_train_video", backbone="vit", checkpoints="QuadMix:/no/such/file.pt", **kw)
    msg = str(e.value)
    assert "\n" not in msg and "parameter `checkpoints`" in msg and "/no/such/file.pt" in msg
    assert "udass convert" in msg
    with pytest.raises(UdassError, match="parameter `checkpoints`: expected a mapping"):
        ux.run_table("02_train_video", backbone="vit", checkpoints="just-a-path.pt", **kw)
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------------------------- udass nb / demo
def _stub(calls: list):
    def execute(name, params, output):
        calls.append((name, dict(params), Path(output)))
        return Path(output)
    return execute


@pytest.mark.parametrize("given", ["02", "02_train_video", "notebooks/02_train_video.ipynb",
                                   str(REPO / "notebooks" / "02_train_video.ipynb")])
def test_udass_nb_names_and_executed_copy(given, tmp_path, capsys):
    calls: list = []
    res = reproduce.notebook(given, {"backbone": "cnn", "seeds": "0,1"}, execute=_stub(calls),
                             results_dir=tmp_path)
    name, params, output = calls[0]
    assert name == "02_train_video" and params["backbone"] == "cnn" and params["seeds"] == "0,1"
    assert output == tmp_path / "executed" / "02_train_video-backbone-cnn-seeds-0,1.ipynb"
    assert res["out_dir"] == tmp_path / "02_train_video" / "synthetic-video" / "cnn"
    assert (tmp_path / "README.md").is_file()
    assert f"it wrote {res['out_dir']}" in capsys.readouterr().out


def test_udass_nb_rejects_an_unknown_notebook_or_parameter(tmp_path):
    with pytest.raises(UdassError, match="notebook '07': expected one of 00_quadmix_explorer"):
        reproduce.notebook("07", {}, execute=_stub([]), results_dir=tmp_path)
    with pytest.raises(UdassError) as e:
        reproduce.notebook("02", {"backbon": "cnn"}, execute=_stub([]), results_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "has no parameter backbon" in msg
    assert "its parameters: benchmark, backbone, methods" in msg and "checkpoints" in msg


def test_udass_nb_command_line_reads_values_as_papermill(tmp_path, monkeypatch):
    from udass.cli import main

    calls: list = []
    real = reproduce.notebook
    monkeypatch.setattr(reproduce, "notebook", lambda name, params, output: real(
        name, {**params, "results_dir": str(tmp_path)}, output, _stub(calls), tmp_path))
    assert main(["nb", "03", "-p", "seeds", "0", "-p", "steps", "5", "-p", "publish", "False",
                 "-o", str(tmp_path / "x.ipynb")]) == 0
    name, params, output = calls[0]
    assert name == "03_ablation" and output == tmp_path / "x.ipynb"
    assert params["seeds"] == 0 and params["steps"] == 5 and params["publish"] is False
    assert [reproduce.parse_value(v) for v in ("True", "None", "1.5", "0,1", "vit")] == \
        [True, None, 1.5, "0,1", "vit"]


def test_demo_does_not_publish(committed, capsys):
    calls: list = []
    res = reproduce.demo({"profile": "test"}, results_dir=committed, execute=_stub(calls))
    name, params, output = calls[0]
    assert name == "02_train_video" and "publish" not in params and params["profile"] == "test"
    assert output == committed / "executed" / "02_train_video.ipynb"
    assert res["root"] == committed / "local"
    assert res["out_dir"] == committed / "local" / "/".join(TABLE)
    assert (committed / "local" / "README.md").is_file() and not (committed / "README.md").exists()
    # the notebook itself, given these parameters, redirects the same way
    assert reproduce.notebook_defaults("02_train_video")["publish"] is False


@pytest.mark.parametrize("profile,published", [("demo", True), ("test", False)])
def test_reproduce_publishes_except_at_the_test_profile(committed, profile, published):
    calls: list = []
    reproduce.reproduce(profile, results_dir=committed, only="02,05", execute=_stub(calls))
    assert [c[0] for c in calls] == ["02_train_video", "02_train_video", "05_tsne"]
    assert all(c[1]["publish"] is published for c in calls)
    where = committed if published else committed / "local"
    assert json.loads((where / "reproduce.json").read_text())["publish"] is published
    assert (where / "README.md").is_file()
    assert not (committed / "local").exists() if published else not (committed / "README.md").exists()


# ----------------------------------------------------------------------------------- on a clone
def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def clone(tmp_path) -> Path:
    """A clone of this repository's HEAD (committed files only)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    dst = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--local", "--no-hardlinks", str(REPO), str(dst)],
                   check=True, capture_output=True)
    return dst


def _in_process(clone: Path, runs: Path):
    """An `execute` that does what notebook 02's cells do (one call to run_table), in this
    process, at the test profile with one step."""
    def execute(name, params, output):
        assert name == "02_train_video"
        ux.run_table(name, **{**params, "steps": 1, "runs_root": str(runs), "progress": False,
                              "methods": "source_only,dacs"})
        return Path(output)
    return execute


def test_demo_and_an_interrupted_demo_on_a_clone_leave_git_clean(clone, tmp_path, monkeypatch):
    """The sequence `make demo` (and an interrupted one), then the committed-results check, on a
    clone whose committed results/ stands for the repository's: nothing git holds changes."""
    from tests.test_experiments import committed_table_problems

    monkeypatch.setattr(publish, "committed_results", lambda: clone / "results")
    head = _tree(clone / "results" / "/".join(TABLE))
    runs = tmp_path / "runs"
    reproduce.demo({"profile": "test", "device": "cpu"}, results_dir=clone / "results",
                   execute=_in_process(clone, runs))
    local = clone / "results" / "local" / "/".join(TABLE)
    assert (local / "table.md").is_file() and (local / "runs" / "dacs-s0" / "metrics.json").is_file()
    assert _git(clone, "status", "--porcelain", "--untracked-files=all") == ""
    # interrupted while the new table folder is written, then a notebook with other parameters
    monkeypatch.setattr(ux, "per_class_bars", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        reproduce.demo({"profile": "test", "device": "cpu"}, results_dir=clone / "results",
                       execute=_in_process(clone, runs))
    assert (local / "table.md").is_file()
    monkeypatch.undo()
    monkeypatch.setattr(publish, "committed_results", lambda: clone / "results")
    reproduce.notebook("02", {"profile": "test", "device": "cpu", "backbone": "vit", "seeds": "1"},
                       execute=_in_process(clone, runs), results_dir=clone / "results")
    assert _git(clone, "status", "--porcelain", "--untracked-files=all") == ""
    assert _tree(clone / "results" / "/".join(TABLE)) == head
    problems, cited = committed_table_problems(clone, "HEAD")
    assert problems == [] and cited >= 100


@pytest.mark.slow
def test_udass_demo_and_an_interrupted_one_in_a_clone(clone, tmp_path):
    """The real commands in a clone: `python -m udass demo` (papermill, test profile) to the end,
    then one stopped by SIGINT and one by SIGTERM while it trains; `git status` stays clean and
    the committed results are whole."""
    import signal
    import time

    from tests.test_experiments import committed_table_problems

    env = {**os.environ, "PYTHONPATH": str(clone), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "udass", "demo", "-p", "profile", "test", "-p", "device", "cpu",
           "-p", "runs_root", str(tmp_path / "runs")]
    subprocess.run(cmd, cwd=clone, env=env, check=True, capture_output=True, timeout=900)
    assert (clone / "results" / "local" / "/".join(TABLE) / "table.md").is_file()
    assert _git(clone, "status", "--porcelain", "--untracked-files=all") == ""
    # a terminal's Ctrl-C: SIGINT to the foreground group (its default action restored, as a
    # shell's background job would have it ignored); a scheduler's or `kill`'s SIGTERM to the
    # udass process alone (the kernel runs in a session of its own)
    for runs, signum, to_group, says in (("runs2", signal.SIGINT, True, "Ctrl-C"),
                                         ("runs3", signal.SIGTERM, False, "SIGTERM")):
        cmd[-1] = str(tmp_path / runs)
        proc = subprocess.Popen(cmd, cwd=clone, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 300
        while time.time() < deadline and not any(len(f.read_text().splitlines()) > 2
                                                 for f in (tmp_path / runs).rglob("log.csv")):
            time.sleep(0.5)
        (os.killpg if to_group else os.kill)(proc.pid, signum)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signum, out
        # one line says what was kept; no traceback from the kernel or papermill
        assert "Traceback" not in out, out
        assert out.rstrip().splitlines()[-1].startswith(f"udass: interrupted ({says})"), out
        assert list((tmp_path / runs).rglob("checkpoints/step_*.pt")), out
        assert _git(clone, "status", "--porcelain", "--untracked-files=all") == ""
        assert committed_table_problems(clone, "HEAD")[0] == []


STOP_BY_SIGTERM = """
import os, signal, time
from udass.cli import _notebook_stop
from udass.errors import Interrupted
try:
    with _notebook_stop():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
except Interrupted as e:
    print(e.exit_status, signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, e)
"""


def test_sigterm_during_a_papermill_command_takes_the_ctrl_c_path():
    """`udass demo / nb / reproduce` turn SIGTERM into their own SIGINT (papermill's loop then
    stops the kernel, which checkpoints): one line naming the signal, exit status 143, and the
    previous SIGTERM handler back. In a process of its own: a missing handler would kill it."""
    out = subprocess.run([sys.executable, "-c", STOP_BY_SIGTERM], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert out.stdout.startswith("143 True interrupted (SIGTERM); the training runs finished so "
                                 "far"), (out.stdout, out.stderr)


# ----------------------------------------------------------------------------------- explorer
def test_explorer_trains_a_short_run_when_none_is_cached_and_reuses_a_finished_one(tmp_path, capsys):
    kw = dict(benchmark="synthetic-video", backbone="vit", profile="test", device="cpu",
              results_dir=tmp_path / "results", runs_root=tmp_path / "runs", iterations=1,
              fallback_steps=2, progress=False)
    res = ux.quadmix_explorer("00_quadmix_explorer", **kw)
    out = capsys.readouterr().out
    full = build_config("synthetic-video", "vit", "quadmix", "test")
    short = build_config("synthetic-video", "vit", "quadmix", "test", steps=2)
    assert f"no finished {full.train.steps}-step quadmix run" in out and "training a 2-step run" in out
    assert res["started_from"].startswith("a short 2-step quadmix run")
    assert _run_folders(tmp_path / "runs") == [run_dir(short, tmp_path / "runs")]
    rec = json.loads((res["out_dir"] / "metrics.json").read_text())
    assert rec["init"] == str(run_checkpoint(short, tmp_path / "runs"))
    # a second call: the short run is cached, nothing is trained and nothing said about training
    ux.quadmix_explorer("00_quadmix_explorer", **kw)
    assert "training a" not in capsys.readouterr().out
    # with the profile's run finished, the explorer starts from it and trains nothing
    ensure_run(full, tmp_path / "runs", device="cpu", progress=False)
    folders = _run_folders(tmp_path / "runs")
    stamps = [(f / "log.csv").stat().st_mtime_ns for f in folders]
    res = ux.quadmix_explorer("00_quadmix_explorer", **kw)
    assert "training a" not in capsys.readouterr().out
    assert res["started_from"].startswith(f"the finished {full.train.steps}-step quadmix run")
    assert _run_folders(tmp_path / "runs") == folders
    assert [(f / "log.csv").stat().st_mtime_ns for f in folders] == stamps
    assert json.loads((res["out_dir"] / "metrics.json").read_text())["init"] == \
        str(run_checkpoint(full, tmp_path / "runs"))


def test_udass_nb_passes_paths_typed_from_the_current_folder(tmp_path, monkeypatch):
    """The kernel runs in the repository root: relative data_root and checkpoint files typed
    from another folder reach it as absolute paths; labels, unknown files and None stay (the
    checkpoints in their "label:path" spelling)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "qm.pt").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    calls: list = []
    reproduce.notebook("02", {"data_root": "data", "checkpoints": "QuadMix:qm.pt,TPS=missing.pt",
                              "pretrained": "None"},
                       execute=_stub(calls), results_dir=tmp_path / "results")
    params = calls[0][1]
    assert params["data_root"] == str(tmp_path / "data") and params["pretrained"] == "None"
    assert params["checkpoints"] == f"QuadMix:{tmp_path / 'qm.pt'},TPS:missing.pt"


def test_checkpoints_row_beside_the_papers_rows_on_a_paper_benchmark(tiny_paper_root, tmp_path):
    """Issue 15's evaluation-only table on a paper benchmark id (its tiny generated root): the
    paper's published rows, then the evaluated row, labelled as ours and evaluated here."""
    root = tiny_paper_root("viper2cityscapes-seq")
    cfg = build_config("viper2cityscapes-seq", "vit", "quadmix", "test", data_root=str(root), steps=1)
    ensure_run(cfg, tmp_path / "trained", device="cpu", progress=False)
    res = ux.run_table("02_train_video", benchmark="viper2cityscapes-seq", backbone="vit",
                       profile="test", data_root=str(root), device="cpu",
                       results_dir=tmp_path / "results", runs_root=tmp_path / "runs",
                       checkpoints={"QuadMix": run_checkpoint(cfg, tmp_path / "trained")},
                       progress=False)
    rows = res["table"]["rows"]
    paper = [r["method"] for r in rows if r["source"] == "paper"]
    assert paper[0] == "Source" and {"TPS", "QuadMix(CNN)", "QuadMix(ViT)"} <= set(paper)
    assert rows[-1]["method"] == "QuadMix" and rows[-1]["source"] == "ours: evaluated/QuadMix"
    assert next(r for r in rows if r["method"] == "QuadMix(ViT)")["miou"] == 58.2
    assert res["records"][0]["clips"]["evaluated"] == res["records"][0]["clips"]["expected"]
