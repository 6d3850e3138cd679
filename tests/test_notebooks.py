"""Every notebook, executed with papermill (kernel python3 of this environment) on the embedded
benchmarks at the test profile; the tests assert on what each one wrote. The notebooks share
one runs folder, so each training run happens once (later notebooks reuse it, as they would in
`udass reproduce`). Also: the notebooks are in sync with their jupytext twins and follow the
parameter-cell contract."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import nbformat
import pytest

from udass import experiments as ux
from udass.params import NOTEBOOKS
from udass.reproduce import run_notebook, write_results_index
from udass.config import ABLATIONS
from udass.errors import UdassError

pytestmark = pytest.mark.notebook

REPO = Path(__file__).resolve().parent.parent
NB = REPO / "notebooks"
PNG = b"\x89PNG\r\n\x1a\n"
REQUIRED = ("benchmark", "backbone", "methods", "profile", "steps", "data_root", "seeds",
            "pretrained", "device", "results_dir")
PARAM_LINE = re.compile(r"^(?P<name>[a-z_]+): (?P<type>[^=]+?) = (?P<value>.+?)  # (?P<help>\S.*)$")


# ----------------------------------------------------------------------------------- structure
def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_in_sync_with_its_py_twin_and_stripped(name):
    import jupytext

    ipynb = nbformat.read(NB / f"{name}.ipynb", as_version=4)
    twin = jupytext.read(NB / f"{name}.py")
    assert ipynb.nbformat == 4
    assert [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in ipynb.cells] == \
        [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in twin.cells], \
        f"notebooks/{name}.ipynb and .py differ: run `jupytext --sync notebooks/{name}.ipynb`"
    for c in _code_cells(ipynb):
        assert c.outputs == [] and c.execution_count is None, f"{name}: outputs not stripped"
    assert ipynb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_cell_contract(name):
    nb = nbformat.read(NB / f"{name}.ipynb", as_version=4)
    cells = _code_cells(nb)
    first = cells[0]
    assert first.metadata.get("tags") == ["parameters"]
    lines = [ln for ln in first.source.splitlines() if ln.strip()]
    names = []
    for ln in lines:
        m = PARAM_LINE.match(ln)
        assert m, f"{name}: parameter line does not read `name: type = value  # help`: {ln!r}"
        names.append(m["name"])
    assert set(REQUIRED) <= set(names), f"{name}: missing {set(REQUIRED) - set(names)}"
    # papermill reads every line as a parameter (else `-p NAME` warns "unknown parameter")
    import papermill as pm

    assert list(pm.inspect_notebook(str(NB / f"{name}.ipynb"))) == names
    values: dict = {}
    exec(first.source, values)  # noqa: S102 - our own notebook
    assert values["profile"] == "demo" and values["steps"] is None and values["data_root"] is None
    assert values["results_dir"] == "results" and values["device"] == "auto"
    expected = {"01_train_image": "synthetic-image"}.get(name, "synthetic-video")
    assert values["benchmark"] == expected
    # thin: one call into udass.experiments, then display
    body = "\n".join(c.source for c in cells[1:])
    assert body.count("experiments.") <= 2 and "def " not in body and "for " not in body.replace(
        "for png in result", "")


# ----------------------------------------------------------------------------------- execution
@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("notebooks")
    return {"results": base / "results", "runs": base / "runs", "executed": base / "executed"}


def _execute(name: str, dirs: dict[str, Path], **params) -> nbformat.NotebookNode:
    """Run a notebook at the test profile; its kernel uses one thread (tiny models; on a shared
    machine several spinning OpenMP threads per process slow everything down several-fold)."""
    params = {"profile": "test", "device": "cpu", "results_dir": str(dirs["results"]),
              "runs_root": str(dirs["runs"]), **params}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        out = run_notebook(name, params, dirs["executed"] / f"{name}.ipynb", log_output=False)
    return nbformat.read(out, as_version=4)


def _displayed(nb: nbformat.NotebookNode, mime: str) -> int:
    return sum(1 for c in _code_cells(nb) for o in c.outputs if mime in o.get("data", {}))


def _png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 1000, f"{path} is not a non-empty PNG"


def _table_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _check_table(folder: Path, methods: list[str], classes: int) -> dict:
    rows = _table_rows(folder / "table.csv")
    assert [r["method"] for r in rows] == methods
    md = (folder / "table.md").read_text()
    assert "ours = the student network" in md and all(f"| {m} |" in md for m in methods)
    combined = json.loads((folder / "metrics.json").read_text())
    assert combined["network"] == "student" and combined["profile"] == "test"
    for m in methods:
        e = combined["methods"][m]
        assert 0.0 <= e["miou"] <= 100.0 and 0.0 <= e["teacher"]["miou"] <= 100.0
        assert len(e["per_class_iou"]) == classes
        assert all(v is None or 0.0 <= v <= 100.0 for v in e["per_class_iou"].values())
        assert e["steps"] == 4 and e["seeds"] == [0] and e["provenance"] == "this call"
        for rel in e["runs"]:
            assert json.loads((folder / rel / "metrics.json").read_text())["method"] == m
            assert "commit" in json.loads((folder / rel / "run.json").read_text())
    assert not list(folder.rglob("*.pt")), "checkpoints must stay in runs/"
    for png in ("per_class_iou.png", "training_curves.png"):
        _png(folder / png)
    return combined


@pytest.fixture(scope="module")
def video_table(dirs) -> nbformat.NotebookNode:
    """Notebook 02 at its defaults, executed once per module: the tests that read its runs
    (reuse, evaluation from a checkpoint) get them whichever of them pytest runs first or alone."""
    return _execute("02_train_video", dirs)


def test_02_train_video(dirs, video_table):
    nb = video_table
    folder = dirs["results"] / "02_train_video" / "synthetic-video" / "vit"
    # the notebook's default methods: the table brackets the adaptation by both bounds
    _check_table(folder, ["source_only", "dacs", "quadmix", "oracle"], classes=11)
    assert _displayed(nb, "image/png") == 2 and _displayed(nb, "text/markdown") == 1


def test_second_call_with_the_same_config_does_not_retrain(dirs, video_table):
    logs = sorted(dirs["runs"].glob("synthetic-video/vit/*/test-s0-*/log.csv"))
    assert len(logs) >= 3
    stamps = [p.stat().st_mtime_ns for p in logs]
    res = ux.run_table("02_train_video", benchmark="synthetic-video", backbone="vit",
                       methods="source_only,dacs,quadmix", profile="test", device="cpu",
                       results_dir=dirs["results"], runs_root=dirs["runs"], progress=False)
    ran = [r for r in res["records"] if not r.get("kept")]
    assert [r["method"] for r in ran] == ["source_only", "dacs", "quadmix"]
    assert all(r["reused"] for r in ran)
    # the oracle row of the earlier (default-methods) call stays in the table, marked as kept
    assert [r["method"] for r in res["records"] if r.get("kept")] == ["oracle"]
    assert [p.stat().st_mtime_ns for p in logs] == stamps


def test_02_evaluation_only_from_checkpoints(dirs, video_table):
    """`-p checkpoints "QuadMix:PATH"`: the table's row comes from evaluating the file (here the
    checkpoint of the quadmix run that notebook 02 trained), nothing is trained."""
    from udass.config import build_config
    from udass.runs import run_checkpoint

    ckpt = run_checkpoint(build_config("synthetic-video", "vit", "quadmix", "test"), dirs["runs"])
    runs_before = sorted(dirs["runs"].rglob("run.json"))
    results = dirs["results"].parent / "evaluated-results"
    nb = _execute("02_train_video", dirs, checkpoints=f"QuadMix:{ckpt}", results_dir=str(results))
    folder = results / "02_train_video" / "synthetic-video" / "vit"
    rows = _table_rows(folder / "table.csv")
    assert [r["method"] for r in rows] == ["QuadMix"]
    rec = json.loads((folder / "evaluated" / "QuadMix" / "metrics.json").read_text())
    trained = json.loads(next(dirs["runs"].glob("synthetic-video/vit/quadmix/test-s0-*/metrics.json"))
                         .read_text())
    assert rec["miou"] == trained["miou"] and float(rows[0]["miou"]) == pytest.approx(rec["miou"], abs=0.01)
    assert sorted(dirs["runs"].rglob("run.json")) == runs_before
    assert _displayed(nb, "image/png") == 1 and not (folder / "training_curves.png").exists()


def test_01_train_image(dirs):
    _execute("01_train_image", dirs, methods="source_only,dacs,quadmix")
    folder = dirs["results"] / "01_train_image" / "synthetic-image" / "vit"
    _check_table(folder, ["source_only", "dacs", "quadmix"], classes=19)


def test_04_qualitative(dirs):
    nb = _execute("04_qualitative", dirs, num_images=2, num_frames=3)
    folder = dirs["results"] / "04_qualitative" / "synthetic-video" / "vit"
    for png in ("qualitative.png", "temporal_strip.png"):
        _png(folder / png)
    rec = json.loads((folder / "metrics.json").read_text())
    assert set(rec["pixel_accuracy"]) == {"source_only", "dacs", "quadmix"}
    assert all(len(v) == 2 and all(0 <= a <= 100 for a in v) for v in rec["pixel_accuracy"].values())
    assert len(rec["strip"]["frames"]) == 3
    assert all(0 <= c <= 100 for c in rec["strip"]["consistency"].values())
    assert _displayed(nb, "image/png") == 2


def test_05_tsne(dirs):
    _execute("05_tsne", dirs, per_class=8, num_clips=2)
    folder = dirs["results"] / "05_tsne" / "synthetic-video" / "vit"
    _png(folder / "tsne.png")
    rec = json.loads((folder / "metrics.json").read_text())
    assert rec["methods"]["quadmix"]["domains"] == ["S", "T", "X_tss", "X_stt"]
    assert rec["methods"]["dacs"]["domains"] == ["S", "T", "ClassMix"]
    for m in ("dacs", "quadmix"):
        e = rec["methods"][m]
        assert e["points"] == sum(e["points_per_domain"].values()) > 0
        assert -1 <= e["class_silhouette"] <= 1 and 0 <= e["prototype_distance"] <= 2
    rows = _table_rows(folder / "tsne_metrics.csv")
    assert [r["model"] for r in rows] == ["dacs", "quadmix"]
    assert "| quadmix |" in (folder / "tsne_metrics.md").read_text()


def test_00_quadmix_explorer(dirs):
    nb = _execute("00_quadmix_explorer", dirs, iterations=2)
    folder = dirs["results"] / "00_quadmix_explorer" / "synthetic-video" / "vit"
    for k in (1, 2):
        _png(folder / f"quadmix_explorer_step{k}.png")
    rec = json.loads((folder / "metrics.json").read_text())
    first, second = rec["steps"]
    assert first["mixed"] == ["mix"] and "source_template" not in first  # no template yet
    assert second["mixed"] == ["ss", "stt", "tss", "tt"] and second["loss_samples"] == ["tss", "stt"]
    assert "source_template" in second and "feature_mix_region_share" in second
    assert rec["init"].endswith(".pt")  # started from the (reused) quadmix run
    assert _displayed(nb, "image/png") >= 1


def test_03_ablation(dirs):
    rows = ["source_only", "classmix", "intra_only", "+aggregation"]
    _execute("03_ablation", dirs, methods=",".join(rows), seeds="0,1")
    folder = dirs["results"] / "03_ablation" / "synthetic-video" / "vit"
    table = _table_rows(folder / "table.csv")
    assert [r["method"] for r in table] == rows
    assert all(r["miou_std"] != "" for r in table)  # two seeds: a spread
    assert "quadmix.paths=ss,tt" in next(r for r in table if r["method"] == "intra_only")["setting"]
    combined = json.loads((folder / "metrics.json").read_text())
    assert all(len(combined["methods"][r]["miou_per_seed"]) == 2 for r in rows)
    _png(folder / "ablation.png")
    assert (folder / "runs" / "aggregation-s1" / "metrics.json").is_file()
    assert set(rows) <= set(ABLATIONS)


def test_results_index_of_the_executed_notebooks(dirs):
    text = write_results_index(dirs["results"]).read_text()
    for nb in NOTEBOOKS:
        assert f"## {nb}" in text
    assert "tsne_metrics.md" in text and "quadmix_explorer_step2.png" in text


def test_a_wrong_parameter_fails_with_one_line(dirs):
    with pytest.raises(UdassError) as e:
        _execute("02_train_video", dirs, steps="ten")
    msg = str(e.value)
    assert "\n" not in msg and "parameter `steps`" in msg and "'ten' (str)" in msg
