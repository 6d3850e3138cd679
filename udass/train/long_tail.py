"""The long-tail classes of a benchmark without a published list (the embedded benchmarks):
the classes QuadMix's source templates always take when present (docs/method.md, "Choices the
paper does not state")."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from udass.benchmarks import IGNORE_INDEX


def compute_long_tail(dataset: Dataset, num_classes: int, fraction: float = 0.4,
                      max_items: int = 2000) -> tuple[int, ...]:
    """The rarest classes of a labelled source split by pixel share (for benchmarks without a
    published long-tail list): the rarest `fraction` of the classes present."""
    counts = torch.zeros(num_classes, dtype=torch.float64)
    n = len(dataset)
    stride = max(1, n // max_items)
    for i in range(0, n, stride):
        labels = dataset[i].labels
        if labels is None:
            continue
        lab = labels[0].flatten()
        lab = lab[lab != IGNORE_INDEX]
        counts += torch.bincount(lab, minlength=num_classes)[:num_classes].double()
    present = [c for c in range(num_classes) if counts[c] > 0]
    present.sort(key=lambda c: float(counts[c]))
    k = max(1, round(fraction * len(present)))
    return tuple(sorted(present[:k]))
