"""Step-indexed batches: the batch of training step k is a pure function of (seed, k, rank), so a
run stopped after step k and resumed draws exactly what the uninterrupted run drew."""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from udass.data.clip import collate_clips
from udass.errors import UdassError
from udass.runtime import step_seed


class StepBatchSampler(Sampler[list[int]]):
    """Batches indexed by training step: the batch of step k is a pure function of (seed, k).

    Global position j = k * B * world + r * B + i walks through a fresh permutation per epoch
    (epoch = j // n, permutation seeded by (seed, epoch)); rank r takes its own slice, so the
    ranks of a distributed run see disjoint samples within an epoch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, end: int,
                 rank: int = 0, world: int = 1) -> None:
        if n < 1:
            raise UdassError("a training split is empty; run `udass check-data` on the data root")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.end, self.rank, self.world = start, end, rank, world
        self._perms: dict[int, Tensor] = {}

    def _perm(self, epoch: int) -> Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            g = torch.Generator().manual_seed(step_seed(self.seed, epoch, stream=17))
            self._perms[epoch] = torch.randperm(self.n, generator=g)
        return self._perms[epoch]

    def indices_for_step(self, step: int) -> list[int]:
        base = step * self.batch_size * self.world + self.rank * self.batch_size
        return [int(self._perm(j // self.n)[j % self.n]) for j in range(base, base + self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.end):
            yield self.indices_for_step(step)

    def __len__(self) -> int:
        return max(0, self.end - self.start)


def make_loader(dataset: Dataset, sampler: Sampler[list[int]], workers: int, pin: bool) -> DataLoader:
    """A DataLoader that yields the collated ClipBatch of each step of `sampler` (a
    StepBatchSampler or a `udass.data.rcs.RareClassSampler`)."""
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_clips, num_workers=workers,
                      pin_memory=pin, persistent_workers=False,
                      prefetch_factor=2 if workers > 0 else None)
