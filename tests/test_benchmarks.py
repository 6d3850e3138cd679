"""The benchmark scripts (benchmarks/) at tiny sizes: each core function runs, its loop
reference agrees with the vectorised implementation it times, the step instrumentation accounts
for the step without double counting, and results/benchmarks/README.md is generated from the JSON
files beside it."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_eval  # noqa: E402
import bench_kernels  # noqa: E402
import bench_memory  # noqa: E402
import bench_step  # noqa: E402
import run_all  # noqa: E402

from udass.evaluate import ConfusionMatrix  # noqa: E402
from udass.method.aggregation import class_prototypes  # noqa: E402
from udass.method.templates import class_mask  # noqa: E402


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> dict:
    """Each benchmark's quick result, also written as JSON into a results folder."""
    folder = tmp_path_factory.mktemp("benchmarks")
    with torch.random.fork_rng():
        out = {"step": bench_step.run(quick=True, backbones=("vit",)),
               "kernels": bench_kernels.run(quick=True), "eval": bench_eval.run(quick=True),
               "memory": bench_memory.run(quick=True)}
    for name, result in out.items():
        (folder / f"{name}.json").write_text(json.dumps(result))
    shutil.copy(REPO / "results" / "benchmarks" / "flow.json", folder / "flow.json")
    out["folder"] = folder
    return out


# ----------------------------------------------------------------------------------- kernels
def test_kernel_references_agree_with_the_vectorised_kernels(quick):
    k = quick["kernels"]
    for name in ("quadmix", "class_mask", "class_prototypes", "strong_augment"):
        assert k[name]["identical_outputs"] is True, name
        # both sides were timed (the ratio itself is a measurement, not asserted: CPU contention)
        assert k[name]["vectorised_ms"]["median"] > 0 and k[name]["loop_ms"]["median"] > 0
    shares = k["quadmix"]["changed_label_share"]  # the masks are not trivial: every path pastes
    assert all(0.0 < v < 1.0 for v in shares.values()), shares


@pytest.mark.parametrize("batch,size,threads,seeds", [
    (6, (24, 30), 1, 12),   # small clips with gray pixels (hue undefined) and channel ties
    (2, (96, 192), 2, 16),  # the demo crop on two threads: a one-clip mean is split between them
])
def test_strong_augment_of_the_drawn_samples_equals_augmenting_all_and_selecting(batch, size, threads, seeds):
    """strong_augment runs the jitter / blur on the samples whose draw is on only: the same bits
    as running them on the whole batch and keeping the drawn samples (the benchmark's reference),
    also with several threads, where the clip means must still come from the whole batch (a
    subset's mean rounds differently, which changed the demo's results by up to 0.4 mIoU)."""
    from udass.method.augment import strong_augment

    clip = torch.rand(batch, 2, 3, *size, generator=torch.Generator().manual_seed(7))
    clip[:, :, :, :4] = 0.5
    clip[:, :, 1, 4:8] = clip[:, :, 0, 4:8]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        partial_jitter = partial_blur = 0
        for seed in range(seeds):
            out = strong_augment(clip, torch.Generator().manual_seed(seed), jitter_p=0.5, blur_p=0.5)
            ref = bench_kernels.augment_all_then_select(clip, torch.Generator().manual_seed(seed), 0.5, 0.5)
            assert torch.equal(out, ref), seed
            g = torch.Generator().manual_seed(seed)  # replay the draws: jitter on, 3 factors, hue, blur on
            jitter_on, *_, blur_on = (torch.rand(batch, generator=g) < 0.5 for _ in range(6))
            assert torch.equal(out, clip) == (not bool(jitter_on.any() or blur_on.any())), seed
            partial_jitter += int(0 < int(jitter_on.sum()) < batch)
            partial_blur += int(0 < int(blur_on.sum()) < batch)
        # the partial-batch paths were exercised, not only all / none
        assert partial_jitter >= 4 and partial_blur >= 4, (partial_jitter, partial_blur)
    finally:
        torch.set_num_threads(previous)


def test_loop_references_on_constructed_inputs():
    g = torch.Generator().manual_seed(3)
    x = bench_kernels.mixing_inputs(2, 2, 16, 24, 5, seed=3, block=4)
    assert bench_kernels.same_mixes(bench_kernels.quadmix_vectorised(x), bench_kernels.quadmix_loop(x))
    x["t_confidence"].zero_()  # nothing confident: T' pastes nothing, tt == T exactly
    mixed = bench_kernels.quadmix_loop(x)
    assert torch.equal(mixed["tt"].frames, x["T"].frames) and torch.equal(mixed["tt"].labels, x["T"].labels)
    assert bench_kernels.same_mixes(bench_kernels.quadmix_vectorised(x), mixed)
    labels = torch.tensor([[[[0, 1, 255], [2, 1, 0]]]])  # [1, 1, 2, 3]
    classes = torch.tensor([[False, True, True]])
    expected = torch.tensor([[[[False, True, False], [True, True, False]]]])
    assert torch.equal(bench_kernels.loop_mask(labels, classes), expected)
    assert torch.equal(class_mask(labels, classes), expected)
    assert not bench_kernels.loop_mask(labels, torch.zeros(1, 3, dtype=torch.bool)).any()
    feats = torch.randn(1, 4, 2, 6, generator=g)
    lab = torch.tensor([[[0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 255, 2]]])  # class 0: 5 px, 1: 5, 2: 1
    pv, vv = class_prototypes(feats, lab, 3)
    pl, vl = bench_kernels.prototypes_loop(feats, lab, 3)
    assert vv.tolist() == vl.tolist() == [True, True, False]
    assert torch.allclose(pv, pl, atol=1e-6) and torch.equal(pl[2], torch.zeros(4))
    assert torch.allclose(pl[0], feats[0, :, 0, :5].mean(1), atol=1e-6)


# ----------------------------------------------------------------------------------- eval
def test_numpy_reference_and_confusion_matrix_agree(quick):
    e = quick["eval"]
    assert e["identical_matrices"] is True and e["input"]["pixels"] == 2 * 32 * 64
    assert 0 < e["input"]["ignored_share"] < 0.5 and e["throughput_ratio_udass_over_numpy"] > 0
    pred = np.array([[0, 1, 2, 2]])
    target = np.array([[0, 2, 255, 2]])
    m = bench_eval.numpy_confusion(pred, target, 3)
    assert m.tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]
    assert np.array_equal(ConfusionMatrix(3).update(torch.from_numpy(pred), torch.from_numpy(target))
                          .matrix.numpy(), m)


# ----------------------------------------------------------------------------------- step
def test_step_breakdown_accounts_for_the_step_without_double_counting(quick):
    r = quick["step"]["backbones"]["vit"]
    assert r["variant"] == "mit_tiny" and r["step_ms"]["quadmix"]["n"] == 2
    assert all(v > 0 for v in r["ratios"].values())
    for method, b in r["breakdown"].items():
        ms = b["ms_per_step"]
        total = r["step_ms"][method]["median"]
        assert ms["student_forward"] > 0 and ms["backward"] > 0 and ms["optimizer_step"] > 0
        assert ms["other"] > -0.05 * total, f"{method}: overlapping timers ({ms['other']} ms)"
        assert abs(sum(b["share"].values()) - 1.0) < 1e-3
        assert b["outside_network_share"] == pytest.approx(1 - b["network_share"], abs=1e-4)
        assert 0 < b["outside_network_share"] < 1
    assert "teacher_forward" not in r["breakdown"]["source_only"]["ms_per_step"]
    q = r["breakdown"]["quadmix"]["ms_per_step"]
    assert q["teacher_forward"] > 0 and q["paste"] > 0 and q["aggregation_loss"] > 0
    assert q["strong_augment"] > 0 and q["classes_templates"] > 0
    assert "aggregation_loss" not in r["breakdown"]["dacs"]["ms_per_step"]
    assert set(r["targets"]) == {"quadmix/dacs <= 2.2", "quadmix outside network < 15%"}


# ----------------------------------------------------------------------------------- memory
def test_memory_runs_in_a_fresh_process_and_states_the_gpu(quick):
    m = quick["memory"]
    (run,) = m["cpu"]["runs"]
    assert (run["backbone"], run["method"], run["variant"]) == ("vit", "quadmix", "mit_tiny")
    assert run["peak_rss_mib"] >= run["peak_rss_before_steps_mib"] > 50
    assert run["step_rss_rise_mib"] >= 0
    gpu = m["gpu"]
    if not torch.cuda.is_available():
        assert gpu["status"] == bench_memory.NOT_MEASURED == "not measured: no GPU on this machine"
    assert gpu["command"] == "python benchmarks/bench_memory.py --device cuda"
    vit, cnn = gpu["static_lower_bound"]["vit"], gpu["static_lower_bound"]["cnn"]
    assert vit["variant"] == "mit_b5" and 80e6 < vit["params"] < 90e6
    assert vit["mib"] == pytest.approx(vit["params"] * 4 * 5 / 2**20, rel=1e-3)  # 2 weights + grad + 2 moments
    assert cnn["variant"] == "resnet101" and cnn["trainable_params"] < cnn["params"]  # frozen BN


# ----------------------------------------------------------------------------------- summary
def test_summary_table_is_generated_from_the_json_files(quick):
    text = run_all.summary(quick["folder"])
    r = quick["step"]["backbones"]["vit"]
    assert f"| step time quadmix / dacs, vit (mit_tiny, crop 64x32) | {r['ratios']['quadmix/dacs']}x" in text
    share = r["breakdown"]["quadmix"]["outside_network_share"]
    assert f"{100 * share:.1f} %" in text
    assert ("| yes |" in text) or ("| **no** |" in text)
    assert "outputs identical" in text and "matrices identical" in text
    assert "DIS flow (preset medium) at 2048x1024" in text
    assert "not measured: no GPU on this machine" in text or "MiB allocated" in text
    (quick["folder"] / "eval.json").unlink()
    assert "Not run here: `python benchmarks/bench_eval.py` writes `eval.json`." in run_all.summary(quick["folder"])


def test_committed_readme_matches_the_committed_json():
    results = REPO / "results" / "benchmarks"
    readme = results / "README.md"
    if not readme.exists():
        pytest.skip("results/benchmarks/README.md not generated yet (python benchmarks/run_all.py)")
    assert readme.read_text() == run_all.summary(results), \
        "results/benchmarks/README.md is stale: run `python benchmarks/run_all.py --summary-only`"


# ----------------------------------------------------------------------------------- fingerprint
def test_fingerprint_is_reproducible_and_sees_a_changed_value():
    import fingerprint

    case = "synthetic-video:vit:quadmix"
    a = fingerprint.fingerprint(case, steps=2, profile="test")
    assert a == fingerprint.fingerprint(case, steps=2, profile="test")
    assert a != fingerprint.fingerprint(case + ":augment.jitter=0.25", steps=2, profile="test")
    assert fingerprint.parse_case(case + ":quadmix.paths=ss,tt:aggregation.weight=0.1")[3] == {
        "quadmix.paths": "ss,tt", "aggregation.weight": "0.1"}
    with pytest.raises(SystemExit, match="expected BENCHMARK"):
        fingerprint.parse_case("synthetic-video:vit")


def test_image_recipe_benchmark_times_each_ablation_row():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_image_recipe

    res = bench_image_recipe.run(profile="test", steps=1, warmup=1)
    rows = res["rows"]
    assert list(rows) == ["quadmix", "+rcs", "+fd", "+hrda", "+mic"]
    assert rows["quadmix"]["ratio_to_quadmix"] == 1.0 and all(r["median_ms"] > 0 for r in rows.values())
    assert [r["passes"] for r in rows.values()] == [2, 2, 2, 2, 3]
    # test sizes: a 32 x 64 crop; HRDA a 64 x 64 crop, context 32 x 32 + detail 32 x 32
    assert rows["+fd"]["pixels_per_sample"] == 32 * 64 and rows["+hrda"]["pixels_per_sample"] == 2 * 32 * 32


def test_release_eval_times_udass_evaluate_of_a_one_network_release(tiny_video_root):
    """bench_release_eval.py --quick: the random-weight checkpoint is read by `udass evaluate`
    as a converted release (student and teacher: equal weights, so equal mIoU), every val clip
    of the root is evaluated and the projection to 500 clips is the measured time per clip."""
    import bench_release_eval

    res = bench_release_eval.run(str(tiny_video_root), quick=True)
    assert res["variant"] == "mit_tiny" and res["clips"]["evaluated"] == res["clips"]["expected"] > 0
    assert res["wall_seconds"] > 0 and res["seconds_per_clip"] > 0
    assert res["miou_teacher"] == res["miou_student"] is not None
    assert res["projected_seconds_500_clips"] == pytest.approx(res["seconds_per_clip"] * 500,
                                                               rel=0.02, abs=1)
