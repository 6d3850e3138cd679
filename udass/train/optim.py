"""The optimiser recipes: parameter groups with their learning-rate multipliers, the warm-up +
poly schedule, and gradient clipping."""
from __future__ import annotations

import torch
from torch import nn

from udass.config import Config


def lr_factor(step: int, total: int, warmup: int, power: float, warmup_ratio: float = 1e-6) -> float:
    """Linear warm-up from `warmup_ratio` over `warmup` steps, then poly decay to 0 at `total`
    (the schedule ends where training ends)."""
    if warmup > 0 and step < warmup:
        return warmup_ratio + (1 - warmup_ratio) * step / warmup
    return max(0.0, 1.0 - step / max(total, 1)) ** power


def param_roles(learner: nn.Module) -> dict[int, str]:
    """Role of every trainable parameter (by id): "backbone" (the encoder), "head" (decoder,
    classifier, auxiliary head) or "fusion" (the flow-guided temporal fusion of the logits and
    the feature-level QuadMix fusion g)."""
    roles = {id(p): role for role, ps in learner.net.param_groups().items() for p in ps}
    if getattr(learner, "fusion", None) is not None:
        roles.update({id(p): "fusion" for p in learner.fusion.parameters()})
    return roles


_MULT = {"backbone": lambda o: 1.0, "head": lambda o: o.head_lr_mult,
         "fusion": lambda o: o.fusion_lr_mult}


def build_optimizer(learner: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """SGD (CNN) or AdamW (ViT) over the learner's trainable parameters.

    Groups: backbone at lr, heads at lr x optim.head_lr_mult, the fusion layers at
    lr x optim.fusion_lr_mult; for AdamW, normalisation parameters without weight decay
    (DAFormer). Frozen parameters (requires_grad False) are left out."""
    o = cfg.optim
    roles = param_roles(learner)
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in learner.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = o.name == "adamw" and "norm" in name.rsplit(".", 2)[-2]
        buckets.setdefault((roles[id(p)], no_decay), []).append(p)
    groups = [{"params": ps, "lr": o.lr * _MULT[role](o),
               "weight_decay": 0.0 if nd else o.weight_decay, "role": role}
              for (role, nd), ps in sorted(buckets.items())]
    # foreach: one multi-tensor kernel per update term instead of a Python loop over the
    # parameters (torch picks it on CUDA, not on CPU); the same values, faster on CPU
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                               foreach=True)
    return torch.optim.AdamW(groups, lr=o.lr, betas=(0.9, 0.999), weight_decay=o.weight_decay,
                             foreach=True)


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float | None,
                   scaler: torch.amp.GradScaler | None = None) -> float | None:
    """Clip the global L2 norm of the gradients of every parameter the optimiser updates to
    `max_norm` (None or <= 0: nothing is done). Under a float16 GradScaler the gradients are
    unscaled first, as torch's AMP recipe requires. Returns the norm before clipping."""
    if not max_norm or max_norm <= 0:
        return None
    if scaler is not None:
        scaler.unscale_(optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
