"""What the optimiser trains: the segmentation network and, for QuadMix with feature-level
mixing, the 1x1 fusion g (docs/method.md, section 6)."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.profiler import record_function


class Learner(nn.Module):
    """The student: `net` (the segmentation network) and `fusion` (FeatureFusion or None).

    One forward call is one student pass over a batch of clips, so that under DDP every
    parameter a loss uses is used inside forward (DDP's requirement)."""

    def __init__(self, net: nn.Module, fusion: nn.Module | None = None) -> None:
        super().__init__()
        self.net = net
        self.fusion = fusion

    def forward(self, frames: Tensor, flows: Tensor, fuse_shared: Tensor | None = None,
                with_aux: bool = True, generator: torch.Generator | None = None) -> dict[str, Any]:
        """frames [N, K, 3, H, W], flows [N, K-1, 2, H, W] -> the network's output dict.

        fuse_shared: [n, H, W] bool, the shared class-mask region of feature-level QuadMix; when
        given, the batch is [X_tss (n); X_stt (n)] and the output also carries `fused_logits`
        [2n, C, h, w]: the classifier h on the fused features [phi_c'; phi_d']. with_aux: run the
        network's auxiliary head (CNN); False for a pass that has no auxiliary loss. generator:
        what an HRDA network draws its detail crops from (`udass.models.hrda`); None for a
        network without HRDA.
        """
        with record_function("udass.student_forward"):
            return self._forward(frames, flows, fuse_shared, with_aux, generator)

    def _forward(self, frames: Tensor, flows: Tensor, fuse_shared: Tensor | None, with_aux: bool,
                 generator: torch.Generator | None) -> dict[str, Any]:
        extra = {} if generator is None else {"generator": generator}
        out = dict(self.net(frames, flows, with_aux=with_aux, **extra))
        if fuse_shared is not None:
            if self.fusion is None:
                raise ValueError("Learner: fuse_shared given but the learner has no feature fusion")
            n = fuse_shared.shape[0]
            feats = out["features"]
            phi_c, phi_d = self.fusion(feats[:n], feats[n:2 * n], fuse_shared)
            out["fused_logits"] = torch.cat([self.net.classify(phi_c), self.net.classify(phi_d)])
        return out
