"""benchmarks/bench_hrda_memory.py at tiny sizes (slow: fresh processes per configuration)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_hrda_memory  # noqa: E402


@pytest.mark.slow
def test_hrda_memory_benchmark_runs_each_configuration_in_a_fresh_process():
    res = bench_hrda_memory.run("mit_tiny", batches=(1, 2), crop=64, detail=32, passes=2, threads=1)
    runs = {(r["mode"], r["batch"]): r for r in res["runs"]}
    assert set(runs) == {("train", 1), ("teacher", 1), ("train", 2), ("teacher", 2)}
    for r in runs.values():
        assert r["context_hw"] == [32, 32] and r["detail_hw"] == [32, 32]
        assert r["peak_rss_mib"] >= r["peak_rss_before_mib"] > 0
        assert len(r["seconds_per_pass"]) == 2 and min(r["seconds_per_pass"]) > 0
    assert res["gpu"].startswith("not measured")
