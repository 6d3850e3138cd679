"""Shared fixtures. The suite is deterministic and CPU-only; torch uses 2 threads at most."""
from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
