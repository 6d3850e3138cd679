"""Shared fixtures. The suite is deterministic and CPU-only; torch uses 2 threads at most.

Synthetic data roots that the code generates on first use go to a temporary $UDASS_DATA for the
whole session, never into the repository.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("UDASS_DATA", tempfile.mkdtemp(prefix="udass-test-data-"))
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def tiny_video_root() -> Path:
    """The tiny synthetic-video data root (generated once per session)."""
    from udass.data.synthetic import ensure_synthetic_root

    return ensure_synthetic_root("synthetic-video", size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_image_root() -> Path:
    from udass.data.synthetic import ensure_synthetic_root

    return ensure_synthetic_root("synthetic-image", size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_paper_root(tmp_path_factory: pytest.TempPathFactory):
    """Factory: a paper benchmark id -> its tiny generated root in that benchmark's real layouts
    (`udass synth --benchmark B --size tiny`), generated once per session."""
    from udass.data.synthetic import ensure_synthetic_root

    base = tmp_path_factory.mktemp("paper-ids")
    return lambda benchmark: ensure_synthetic_root(benchmark, size="tiny", root=base / benchmark)


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules that train test-profile runs: one torch thread (on a shared machine, spinning
    OpenMP threads of several processes slow each other down several-fold)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
