"""The experiments layer without papermill: parameter checking (udass.params), the run cache
(udass.runs: reuse, resume), table provenance (udass.experiments), the reproduce plan and the
results index (udass.reproduce)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from udass import experiments as ux
from udass import params, reproduce, runs
from udass.cli import main as udass_main
from udass.config import ABLATIONS, build_config
from udass.errors import UdassError

PNG = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------------- parameters
def test_parse_params_converts_types(tmp_path):
    p = params.parse_params("synthetic-image", "cnn", "dacs, quadmix,dacs", "test", "12", str(tmp_path),
                        "0,1, 2", "none", "cpu", str(tmp_path / "r"), str(tmp_path / "runs"))
    assert p.methods == ("dacs", "quadmix") and p.seeds == (0, 1, 2) and p.steps == 12
    assert p.data_root == str(tmp_path) and p.pretrained is None and p.device == "cpu"
    assert p.results_dir == tmp_path / "r" and p.runs_root == tmp_path / "runs"
    q = params.parse_params(methods=["quadmix"], seeds=3, steps=None, data_root="None")
    assert q.seeds == (3,) and q.steps is None and q.data_root is None and q.profile == "demo"
    assert params.parse_params(methods="all", method_names=list(ABLATIONS)).methods == tuple(ABLATIONS)


@pytest.mark.parametrize("kwargs,name,given", [
    ({"steps": "ten"}, "steps", "'ten' (str)"),
    ({"steps": 0}, "steps", "0 (int)"),
    ({"steps": True}, "steps", "True (bool)"),
    ({"seeds": "0,a"}, "seeds", "'0,a' (str)"),
    ({"seeds": 1.5}, "seeds", "1.5 (float)"),
    ({"methods": "quadmix,mixup"}, "methods", "'quadmix,mixup' (str)"),
    ({"methods": 3}, "methods", "3 (int)"),
    ({"backbone": "resnet"}, "backbone", "'resnet' (str)"),
    ({"benchmark": "cityscapes"}, "benchmark", "'cityscapes' (str)"),
    ({"profile": "fast"}, "profile", "'fast' (str)"),
    ({"device": "tpu"}, "device", "'tpu' (str)"),
    ({"data_root": "/no/such/folder"}, "data_root", "'/no/such/folder'"),
    ({"pretrained": "/no/such/file.pth"}, "pretrained", "'/no/such/file.pth'"),
])
def test_parse_params_rejects_with_one_line(kwargs, name, given):
    with pytest.raises(UdassError) as e:
        params.parse_params(**kwargs)
    msg = str(e.value)
    assert "\n" not in msg and f"parameter `{name}`" in msg and "expected" in msg and given in msg


def test_real_benchmarks_need_a_data_root_and_paper_needs_weights(tmp_path):
    with pytest.raises(UdassError, match="parameter `data_root`.*real datasets"):
        params.parse_params(benchmark="viper2cityscapes-seq")
    with pytest.raises(UdassError, match="parameter `pretrained`.*ImageNet"):
        params.parse_params(profile="paper")
    assert params.parse_params(profile="paper", pretrained="none").pretrained is None
    assert params.check_int("iterations", "3") == 3


# ----------------------------------------------------------------------------------- run cache
def test_run_dir_layout_and_hash():
    a = build_config("synthetic-video", "vit", "dacs", "test", seed=1)
    d = runs.run_dir(a, "runs")
    assert d.parts[:4] == ("runs", "synthetic-video", "vit", "dacs")
    assert d.name.startswith("test-s1-") and len(d.name.rsplit("-", 1)[1]) == 8
    # run-control keys (data root, checkpoint interval, ...) do not change the run
    b = build_config("synthetic-video", "vit", "dacs", "test", {"train.checkpoint_every": 1,
                                                              "data.data_root": "/elsewhere"}, seed=1)
    assert runs.run_dir(b, "runs") == d
    # what a run computes does
    for other in (build_config("synthetic-video", "vit", "dacs", "test", seed=2),
                  build_config("synthetic-video", "vit", "dacs", "test", {"teacher.ema": 0.5}, seed=1),
                  build_config("synthetic-video", "vit", "dacs", "test", steps=5, seed=1)):
        assert runs.run_dir(other, "runs") != d
    # an ablation row equal to a plain method is the same run
    method, over = ABLATIONS["+aggregation"]
    assert runs.config_hash(build_config("synthetic-video", "vit", method, "test", over)) == \
        runs.config_hash(build_config("synthetic-video", "vit", "quadmix", "test"))


def test_ensure_run_trains_once_then_reuses(tmp_path):
    cfg = build_config("synthetic-video", "vit", "source_only", "test", steps=2)
    first = runs.ensure_run(cfg, tmp_path, device="cpu", progress=False)
    log = runs.run_dir(cfg, tmp_path) / "log.csv"
    stamp = log.stat().st_mtime_ns
    second = runs.ensure_run(cfg, tmp_path, device="cpu", progress=False)
    assert not first["reused"] and second["reused"]
    assert second["miou"] == first["miou"] and log.stat().st_mtime_ns == stamp


def test_ensure_run_resumes_an_unfinished_run(tmp_path):
    from udass.train import train

    cfg = build_config("synthetic-video", "vit", "dacs", "test", steps=2)
    out = runs.run_dir(cfg, tmp_path)
    assert train(cfg, out, until=1, progress=False) is None
    assert runs.finished_record(cfg, out) is None
    rec = runs.ensure_run(cfg, tmp_path, device="cpu", progress=False)
    assert rec["step"] == 2 and not rec["reused"]
    assert [r.split(",")[0] for r in (out / "log.csv").read_text().splitlines()[1:]] == ["1", "2"]


def test_finished_run_of_another_config_is_an_error(tmp_path):
    cfg = build_config("synthetic-video", "vit", "source_only", "test", steps=2)
    rec = runs.ensure_run(cfg, tmp_path, device="cpu", progress=False)
    other = build_config("synthetic-video", "vit", "source_only", "test", {"teacher.ema": 0.5}, steps=2)
    with pytest.raises(UdassError, match="teacher.ema"):
        runs.finished_record(other, rec["run_dir"])


def test_a_run_trained_by_the_cli_into_its_run_dir_is_reused(tmp_path, capsys):
    flags = ["--method", "source_only", "--profile", "test", "--steps", "2", "--seed", "1"]
    assert udass_main(["run-dir", *flags, "--runs-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip()
    assert udass_main(["train", *flags, "--device", "cpu", "--out", out]) == 0
    cfg = build_config("synthetic-video", "vit", "source_only", "test", steps=2, seed=1)
    assert Path(out) == runs.run_dir(cfg, tmp_path)
    assert runs.ensure_run(cfg, tmp_path, device="cpu", progress=False)["reused"]


def test_relative_results_and_runs_folders_are_taken_from_the_repository_root(tmp_path):
    from udass.runtime import REPO_ROOT

    p = params.parse_params(results_dir="results", runs_root="runs", publish=True)
    assert p.results_dir == REPO_ROOT / "results" and p.runs_root == REPO_ROOT / "runs"
    assert params.anchor(tmp_path) == tmp_path
    # without publish, the committed results/ (and any folder in it) is mirrored in results/local/
    assert params.parse_params().results_dir == REPO_ROOT / "results" / "local"
    assert params.parse_params(results_dir="results/longer-schedule", publish="false").results_dir \
        == REPO_ROOT / "results" / "local" / "longer-schedule"
    assert params.parse_params(results_dir=tmp_path).results_dir == tmp_path   # the user's own
    with pytest.raises(UdassError, match="parameter `publish`: expected True or False"):
        params.parse_params(publish="maybe")


# ----------------------------------------------------------------------------------- tables
def test_table_keeps_earlier_rows_with_their_provenance(tmp_path):
    kw = dict(benchmark="synthetic-video", backbone="vit", profile="test", steps=2, seeds="0",
              device="cpu", results_dir=tmp_path / "results", runs_root=tmp_path / "runs",
              progress=False)
    ux.run_table("02_train_video", methods="source_only,dacs", **kw)
    res = ux.run_table("02_train_video", methods="dacs", **kw)
    rows = {r["method"]: r for r in res["table"]["rows"]}
    assert set(rows) == {"dacs", "source_only"}
    assert rows["dacs"]["source"] == "ours: runs/dacs-s0"
    assert "earlier run" in rows["source_only"]["source"]
    combined = json.loads(res["files"]["metrics"].read_text())
    assert combined["methods"]["source_only"]["provenance"].startswith("earlier run")
    assert combined["methods"]["dacs"]["provenance"] == "this call"
    assert "earlier run" in res["markdown"]
    # rows of another profile are not mixed into this table
    combined["methods"]["source_only"]["profile"] = "demo"
    res["files"]["metrics"].write_text(json.dumps(combined))
    res = ux.run_table("02_train_video", methods="dacs", **kw)
    assert [r["method"] for r in res["table"]["rows"]] == ["dacs"]


def test_results_index_links_tables_and_figures(tmp_path):
    results = tmp_path / "results"
    ux.run_table("01_train_image", benchmark="synthetic-image", backbone="vit", methods="source_only",
                 profile="test", steps=2, device="cpu", results_dir=results,
                 runs_root=tmp_path / "runs", progress=False)
    (results / "benchmarks").mkdir()
    (results / "benchmarks" / "models.json").write_text("{}")
    (results / "reproduce.json").write_text(json.dumps({
        "profile": "demo", "wall_seconds": 3725.0, "device": "CPU x", "commit": "abc",
        "finished": "now", "notebooks": [{"notebook": "01_train_image", "benchmark": "synthetic-image",
                                          "backbone": "vit", "status": "ok", "seconds": 62.0}]}))
    text = reproduce.write_results_index(results).read_text()
    assert "(01_train_image/synthetic-image/vit/table.md)" in text
    assert "![per_class_iou](01_train_image/synthetic-image/vit/per_class_iou.png)" in text
    assert "mIoU (student): source_only" in text and "test profile" in text
    assert "wall time 1 h 02 min" in text and "benchmarks/models.json" in text


# ----------------------------------------------------------------------------------- reproduce
def test_reproduce_plan_order_and_selection(tmp_path, monkeypatch):
    jobs = reproduce.reproduce_plan("demo")
    assert [(j.notebook, j.parameters["benchmark"], j.parameters["backbone"]) for j in jobs] == [
        ("00_quadmix_explorer", "synthetic-video", "vit"),
        ("01_train_image", "synthetic-image", "cnn"), ("01_train_image", "synthetic-image", "vit"),
        ("02_train_video", "synthetic-video", "cnn"), ("02_train_video", "synthetic-video", "vit"),
        ("03_ablation", "synthetic-video", "vit"), ("03_ablation", "synthetic-video", "cnn"),
        ("03_ablation", "synthetic-image", "vit"),
        ("04_qualitative", "synthetic-video", "vit"), ("05_tsne", "synthetic-video", "vit")]
    assert {j.parameters["profile"] for j in jobs} == {"demo"}
    assert len({j.output for j in jobs}) == len(jobs)
    # the video tables run five (vit) and three (cnn) seeds, the others their notebook's default
    assert [j.parameters.get("seeds") for j in jobs] == \
        [None] * 3 + ["0,1,2", "0,1,2,3,4", None, "0", None, None, None]
    assert [j.notebook for j in reproduce.reproduce_plan("demo", only="02,05_tsne")] == [
        "02_train_video", "02_train_video", "05_tsne"]
    with pytest.raises(UdassError, match="--only"):
        reproduce.reproduce_plan("demo", only="07")
    # a real data root: only the benchmarks whose dataset folders are there
    for d in ("cityscapes", "viper"):
        (tmp_path / d).mkdir()
    monkeypatch.setenv("UDASS_PRETRAINED_VIT", "none")
    monkeypatch.setenv("UDASS_PRETRAINED_CNN", "none")
    jobs = reproduce.reproduce_plan("paper", tmp_path)
    assert {j.parameters["benchmark"] for j in jobs} == {"viper2cityscapes-seq"}
    assert all(j.parameters["data_root"] == str(tmp_path) for j in jobs)
    monkeypatch.delenv("UDASS_PRETRAINED_CNN")
    with pytest.raises(UdassError, match="UDASS_PRETRAINED_CNN"):
        reproduce.reproduce_plan("paper", tmp_path)


def test_reproduce_runs_the_plan_records_wall_time_and_reports_failures(tmp_path):
    calls = []

    def fake(name, parameters, output, log_output=True):
        calls.append((name, dict(parameters), Path(output)))
        if name == "05_tsne":
            raise UdassError("notebook 05_tsne failed: ValueError: boom (executed copy: x)")
        return Path(output)

    with pytest.raises(UdassError, match="1 notebook\\(s\\) failed.*boom"):
        reproduce.reproduce("test", results_dir=tmp_path, execute=fake)
    assert [c[0] for c in calls][:2] == ["00_quadmix_explorer", "01_train_image"]
    assert all(c[1]["results_dir"] == str(tmp_path) and c[2].parent == tmp_path / "executed"
               for c in calls)
    rec = json.loads((tmp_path / "reproduce.json").read_text())
    assert rec["profile"] == "test" and rec["wall_seconds"] >= 0
    assert [n["status"] for n in rec["notebooks"]].count("failed") == 1
    assert "wall time" in (tmp_path / "README.md").read_text()


def test_reproduce_records_the_commit_it_started_from(tmp_path, monkeypatch):
    """The notebooks write into results/ while the plan runs, so the tree is dirty by its end:
    reproduce.json names the commit read before the first notebook."""
    commits = iter(["abc123", "abc123-dirty"])
    monkeypatch.setattr(reproduce, "git_commit", lambda: next(commits))
    reproduce.reproduce("test", results_dir=tmp_path, only="02",
                        execute=lambda name, parameters, output: Path(output))
    assert json.loads((tmp_path / "reproduce.json").read_text())["commit"] == "abc123"


def test_demo_runs_the_video_notebook_with_the_vit(tmp_path, capsys):
    calls = []
    reproduce.demo(results_dir=tmp_path, execute=lambda name, params, output:
                   calls.append((name, params, Path(output))) or Path(output))
    name, params, output = calls[0]
    assert name == "02_train_video" and params["backbone"] == "vit" and "publish" not in params
    assert output == tmp_path / "executed" / "02_train_video.ipynb"
    assert f"wrote {tmp_path}/02_train_video/synthetic-video/vit" in capsys.readouterr().out


def test_run_notebook_names_a_missing_notebook(tmp_path):
    with pytest.raises(UdassError, match="not found"):
        reproduce.run_notebook("99_nothing", {}, tmp_path / "x.ipynb")


# ----------------------------------------------------------------------------------- helpers
def test_embedding_metrics_on_constructed_features():
    import numpy as np

    from udass.explore import embedding_metrics

    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 0.0], [0.0, 10.0]])
    classes = np.repeat([0, 1], 20)
    x = centres[classes] + 0.01 * rng.standard_normal((40, 2))
    domains = np.tile([0, 1], 20)                    # S and T share the class clusters
    m = embedding_metrics(x, classes, domains)
    assert m["class_silhouette"] > 0.99 and abs(m["domain_silhouette"]) < 0.1
    assert m["prototype_distance"] < 1e-3 and m["classes_compared"] == 2 and m["points"] == 40
    shifted = x + np.where(domains[:, None] == 1, [[0.0, 30.0]], 0.0)  # T moved away
    m2 = embedding_metrics(shifted, classes, domains)
    assert m2["domain_silhouette"] > 0.5 and m2["prototype_distance"] > m["prototype_distance"]
    assert embedding_metrics(x[:2], classes[:2], domains[:2])["class_silhouette"] is None


def test_bar_rows_keep_ours_and_the_papers_source_and_quadmix_of_the_backbone():
    from udass.report import comparison_table

    table = comparison_table([], "viper2cityscapes-seq")
    rows = ux._bar_rows(table, "vit")
    assert [r["method"] for r in rows] == ["Source", "QuadMix(ViT)"]


def test_results_summary_reads_the_tables_and_computes_the_gap_closed(tmp_path):
    folder = tmp_path / "results" / "02_train_video" / "synthetic-video" / "vit"
    folder.mkdir(parents=True)
    rec = lambda m, s: {"miou": m, "miou_std": s, "miou_per_seed": [m - 1, m + 1],  # noqa: E731
                        "teacher": {"miou": m - 2, "miou_std": None}}
    (folder / "metrics.json").write_text(json.dumps({"seeds": [0, 1], "methods": {
        "source_only": rec(30.0, 1.0), "dacs": rec(50.0, 2.0), "quadmix": rec(60.0, 1.5),
        "oracle": rec(70.0, 0.5)}}))
    text = ux.results_summary(tmp_path / "results")
    assert "### synthetic-video, vit (02_train_video, seeds 0, 1)" in text
    assert "| dacs | 49.0, 51.0 | 50.0 ± 2.0 | 48.0 | 50% |" in text
    assert "| quadmix | 59.0, 61.0 | 60.0 ± 1.5 | 58.0 | 75% |" in text
    assert "- quadmix − dacs, paired by seed: +10.0, +10.0 (mean +10.0, std 0.0)" in text


def test_summary_command_keeps_the_hand_written_analysis(tmp_path):
    folder = tmp_path / "results" / "02_train_video" / "synthetic-video" / "vit"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"seeds": [0], "methods": {
        "dacs": {"miou": 50.0, "miou_per_seed": [50.0]}}}))
    out = tmp_path / "results-synthetic.md"
    args = ["summary", "--results-dir", str(tmp_path / "results"), "--out", str(out)]
    assert udass_main(args) == 0
    first = out.read_text()
    assert "| dacs | 50.0 |" in first and first.rstrip().endswith(ux.ANALYSIS_MARKER)
    out.write_text(first + "\n## Why\n\nhand-written text\n")
    (folder / "metrics.json").write_text(json.dumps({"seeds": [0], "methods": {
        "dacs": {"miou": 55.0, "miou_per_seed": [55.0]}}}))
    assert udass_main(args) == 0
    second = out.read_text()
    assert "| dacs | 55.0 |" in second and "| dacs | 50.0 |" not in second
    assert second.count(ux.ANALYSIS_MARKER) == 1 and second.endswith("## Why\n\nhand-written text\n")


def test_results_index_counts_the_runs_behind_the_tables(tmp_path):
    results = tmp_path / "results"
    old = {"config": {"train": {"method": "dacs"}}, "finished": "2026-01-01T10:00:00+0000",
           "wall_seconds_this_call": 100.0}
    new = {"config": {"train": {"method": "quadmix"}}, "finished": "2026-01-01T12:00:30+0000",
           "wall_seconds_this_call": 20.0}
    for nb, name, rec in (("02_train_video", "dacs-s0", old), ("03_ablation", "classmix-s0", old),
                          ("02_train_video", "quadmix-s0", new)):
        folder = results / nb / "synthetic-video" / "vit" / "runs" / name
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps(rec))
    (results / "reproduce.json").write_text(json.dumps({
        "profile": "demo", "wall_seconds": 60.0, "finished": "2026-01-01T12:01:00+0000",
        "notebooks": []}))
    text = reproduce.write_results_index(results).read_text()
    # the dacs run appears twice (table and ablation) but is one run, trained before the call
    assert ("Runs behind these tables: 2; that call trained 1 and reused 1 from runs/. Their "
            "recorded wall times add up to 2 min 00 s") in text


def test_results_summary_lists_the_ablation_of_each_backbone(tmp_path):
    for bb, seeds in (("vit", [0, 1, 2]), ("cnn", [0])):
        folder = tmp_path / "results" / "03_ablation" / "synthetic-video" / bb
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"seeds": seeds, "methods": {
            "intra+stt": {"miou": 40.0 + len(seeds), "miou_per_seed": [40.0 + len(seeds)] * len(seeds)}}}))
    text = ux.results_summary(tmp_path / "results")
    vit, cnn = text.index("## Ablation (synthetic-video, vit, seeds 0, 1, 2)"), \
        text.index("## Ablation (synthetic-video, cnn, seeds 0)")
    assert vit < cnn and "| intra+stt | quadmix: quadmix.paths=ss,tt,stt" in text[cnn:]
    assert "| 41.0 | 41.0 |" in text[cnn:] and "-p backbone cnn -p seeds 0`" in text
    folder = tmp_path / "results" / "03_ablation" / "synthetic-image" / "vit"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"seeds": [0], "profile": "demo", "methods": {
        "+hrda": {"miou": 50.0, "miou_per_seed": [50.0]}}}))
    text = ux.results_summary(tmp_path / "results")
    image = text.index("## Ablation (synthetic-image, vit, seeds 0)")
    assert "| +hrda | quadmix: data.rcs, fd.enabled, model.hrda | 50.0 |" in text[image:]
    assert "-p benchmark synthetic-image -p backbone vit -p seeds 0`" in text[image:]


def test_the_image_ablation_trains_each_recipe_row_on_synthetic_image(tmp_path):
    """03_ablation's call on the image benchmark: the rows quadmix, +rcs, +fd, +hrda, +mic, each
    a run whose config has exactly the row's components on (test profile, one step)."""
    res = ux.run_ablation("03_ablation", benchmark="synthetic-image", backbone="vit", methods="all",
                          profile="test", steps=1, seeds="0", device="cpu",
                          results_dir=tmp_path / "results", runs_root=tmp_path / "runs",
                          progress=False)
    folder = tmp_path / "results" / "03_ablation" / "synthetic-image" / "vit"
    table = (folder / "table.md").read_text()
    assert [r["method"] for r in res["records"]] == ["quadmix", "+rcs", "+fd", "+hrda", "+mic"]
    switches = ("data", "rcs"), ("fd", "enabled"), ("model", "hrda"), ("mic", "enabled")
    for i, r in enumerate(res["records"]):
        cfg = json.loads((folder / "runs" / f"{ux._safe(r['method'])}-s0" / "run.json").read_text())["config"]
        assert [cfg[sec][key] for sec, key in switches] == [j < i for j in range(4)], r["method"]
        assert r["step"] == 1
    assert "quadmix: data.rcs, fd.enabled, model.hrda, mic.enabled" in table
    assert "IMAGE_ABLATIONS" in table
    with pytest.raises(UdassError, match="parameter `methods`"):
        ux.run_ablation("03_ablation", benchmark="synthetic-image", methods="intra_only",
                        profile="test", results_dir=tmp_path / "results", runs_root=tmp_path / "runs")


def committed_table_problems(repo: Path, ref: str = "") -> tuple[list[str], int]:
    """What git holds (the index, or the commit `ref`: "HEAD"), not the work tree: every
    `runs/<row>-s<seed>` that a committed table.md under results/ cites must be committed beside
    it with its metrics.json and run.json (so a clean clone has them). Returns (problems, the
    number of cited runs)."""
    import re
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                              check=True).stdout

    listed = git("ls-tree", "-r", "--name-only", ref, "results") if ref else git("ls-files", "results")
    files = set(listed.splitlines())
    problems, cited = [], 0
    for table in sorted(f for f in files if f.endswith("/table.md")):
        text = git("show", f"{ref}:{table}")
        folder = table.rsplit("/", 1)[0]
        for name in sorted(set(re.findall(r"\bruns/([\w+.-]+-s\d+)\b", text))):
            cited += 1
            for f in ("metrics.json", "run.json"):
                if f"{folder}/runs/{name}/{f}" not in files:
                    problems.append(f"{table} cites {folder}/runs/{name}/{f}, which git does not hold")
    return problems, cited


def test_committed_tables_have_their_run_copies_in_git():
    """Every `runs/<row>-s<seed>` a committed table cites is committed beside it with its
    metrics.json and run.json: read from git (the index), so what a notebook run did to the work
    tree does not matter, and a clean clone has every cited copy."""
    import shutil

    repo = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    problems, cited = committed_table_problems(repo)
    assert not problems, problems[:5]
    assert cited >= 100
