"""Mean teacher and its flow-propagated pseudo-labels (docs/method.md, section 3, section 7a).

- `EMATeacher`: an exponential moving average of the student (parameters AND floating buffers),
  always in eval mode, with `alpha_k = min(1 - 1/(k+1), ema)`.
- `pseudo_label`: teacher softmax on the current pair, averaged with the teacher's prediction of
  frame t-1 warped to t where the warp is valid; DACS confidence weights.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

import torch
import torch.nn as nn
from torch import Tensor
from torch.profiler import record_function

from udass.data.flow import warp, warp_valid_mask
from udass.method.losses import upsample_logits


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (`.module`), else itself."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def ema_alpha(step: int, ema: float) -> float:
    """EMA momentum of step k: min(1 - 1/(k+1), ema). Step 0 gives 0 (the teacher copies the student)."""
    return min(1.0 - 1.0 / (step + 1), ema)


class EMATeacher:
    """Mean teacher: a frozen, eval-mode copy of the student updated by EMA after every step.

    Not an nn.Module on purpose: a parent's `.train()` can never switch it to training mode, and
    optimisers / DDP never see its parameters. `.model` is the teacher network.
    """

    def __init__(self, student: nn.Module) -> None:
        self.model: nn.Module = copy.deepcopy(unwrap_model(student))
        self.model.eval()
        self.model.requires_grad_(False)
        self._slots: tuple[nn.Module, list, list, list] | None = None  # see _slots_for

    def _slots_for(self, src: nn.Module) -> tuple[list, list, list]:
        """The (owner dict, name) slots of the tensors the EMA pairs: (teacher float slots, student
        float slots in the same order, (teacher, student) integer-buffer slots).

        Walking both module trees by name costs more than the update itself on a small network,
        so the pairing is found once per student and reused. Slots, not tensors, are kept: each
        update reads `module._parameters[name]` / `module._buffers[name]` afresh, so a `.to()`
        or a replaced buffer is still seen."""
        if self._slots is not None and self._slots[0] is src:
            return self._slots[1], self._slots[2], self._slots[3]

        def slots(model: nn.Module, kind: str) -> dict[str, tuple[dict, str]]:
            # named_parameters() / named_buffers() give the names, order and de-duplication
            # (shared modules and tied tensors once); each name becomes its owner's dict and key
            names = model.named_parameters() if kind == "_parameters" else model.named_buffers()
            return {name: (getattr(model.get_submodule(owner), kind), attr)
                    for name, _ in names for owner, _, attr in [name.rpartition(".")]}

        t_par, s_par = slots(self.model, "_parameters"), slots(src, "_parameters")
        t_buf, s_buf = slots(self.model, "_buffers"), slots(src, "_buffers")
        if t_par.keys() != s_par.keys() or t_buf.keys() != s_buf.keys():
            missing = sorted((set(s_par) | set(s_buf)) ^ (set(t_par) | set(t_buf)))
            raise ValueError(f"EMATeacher.update: student and teacher differ in tensors {missing[:8]}; "
                             f"build the teacher from this student")
        ema_t, ema_s = list(t_par.values()), list(s_par.values())
        ints = []
        for n, (d, attr) in t_buf.items():
            if d[attr].is_floating_point():
                ema_t.append((d, attr))
                ema_s.append(s_buf[n])
            else:
                ints.append(((d, attr), s_buf[n]))
        self._slots = (src, ema_t, ema_s, ints)
        return ema_t, ema_s, ints

    @torch.no_grad()
    @record_function("udass.ema_update")
    def update(self, student: nn.Module, step: int, ema: float) -> float:
        """teacher <- alpha * teacher + (1 - alpha) * student, alpha = ema_alpha(step, ema).

        Over parameters and floating-point buffers (BatchNorm running mean/var); integer buffers
        (`num_batches_tracked`) are copied. `student` may be DDP-wrapped. Returns alpha.
        """
        alpha = ema_alpha(step, ema)
        t_slots, s_slots, int_slots = self._slots_for(unwrap_model(student))
        ema_t: list[Tensor] = [d[n] for d, n in t_slots]
        ema_s: list[Tensor] = []
        for t, (d, n) in zip(ema_t, s_slots):  # no_grad: the student's tensors need no detach
            x = d[n]
            ema_s.append(x if x.dtype == t.dtype else x.to(t.dtype))
        for (td, tn), (sd, sn) in int_slots:
            td[tn].copy_(sd[sn])
        if ema_t:  # one fused kernel per dtype/device group instead of a Python loop of kernels
            torch._foreach_mul_(ema_t, alpha)
            torch._foreach_add_(ema_t, ema_s, alpha=1.0 - alpha)
        if self.model.training:  # only a caller's .train() on it can get here; eval() walks every module
            self.model.eval()
        return alpha

    def state_dict(self) -> dict[str, Tensor]:
        """The teacher network's state dict (for checkpoints)."""
        return self.model.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a state dict saved by `state_dict()` (strict), keeping eval mode and frozen weights."""
        self.model.load_state_dict(state, strict=True)
        self.model.eval()
        self.model.requires_grad_(False)

    def to(self, device: torch.device | str) -> "EMATeacher":
        self.model.to(device)
        return self


@dataclass
class PseudoLabels:
    """Teacher pseudo-labels of a target clip's frames t (index 0) and t-1 (index 1).

    labels:     [B, K2, H, W] int64 argmax of the (propagated) teacher probabilities; K2 = 1 for
                images (one-frame clips), 2 otherwise.
    confidence: [B, K2, H, W] float32 in [0, 1], the max probability of the same distribution.
    weights:    [B, K2, H, W] float32 in [0, 1], DACS weight: per sample and frame, the share of
                pixels whose confidence >= threshold, broadcast over the map.
    valid:      [B, H, W] bool, where the flow-propagated term entered frame t's probabilities
                (all False for images and with propagation off).
    """

    labels: Tensor
    confidence: Tensor
    weights: Tensor
    valid: Tensor

    def to(self, device: torch.device | str) -> "PseudoLabels":
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def num_frames(self) -> int:
        return int(self.labels.shape[1])


def teacher_probs(model: nn.Module, frames: Tensor, flows: Tensor) -> Tensor:
    """Softmax of the model's temporally fused logits, upsampled (bilinear) to the frame size.

    frames: [B, K, 3, H, W] in [0, 1]; flows: [B, K-1, 2, H, W]. Returns [B, C, H, W] float32.
    """
    with record_function("udass.teacher_forward"):
        logits = model(frames, flows)["logits"]
    return torch.softmax(upsample_logits(logits.float(), tuple(frames.shape[-2:])), dim=1)


def dacs_weight(confidence: Tensor, threshold: float) -> Tensor:
    """DACS pixel weight: per map, the share of pixels with confidence >= threshold, broadcast.

    confidence: [..., H, W] float; returns the same shape, float32 in [0, 1].
    """
    share = (confidence >= threshold).float().mean(dim=(-2, -1), keepdim=True)
    return share.expand_as(confidence).contiguous()


def propagate_probs(probs_t: Tensor, probs_prev: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """Flow-guided pseudo-label propagation (docs/method.md, section 7a).

    probs_t, probs_prev: [B, C, H, W]; flow: [B, 2, H, W] backward flow t -> t-1 on frame t's grid.
    Returns (P [B, C, H, W], valid [B, H, W] bool): P = (P_t + warp(P_{t-1}, F)) / 2 where the
    warp is valid, P_t elsewhere.
    """
    valid = warp_valid_mask(flow)
    # in the warp's output buffer: (w + P_t) * 0.5 is 0.5 * (P_t + w) exactly (IEEE sums and
    # products commute), and the select writes element by element onto its own input
    avg = warp(probs_prev, flow).add_(probs_t).mul_(0.5)
    out = None if avg.requires_grad else avg  # autograd takes no out= (the teacher's has no grad)
    return torch.where(valid.unsqueeze(1), avg, probs_t, out=out), valid


@torch.no_grad()
def pseudo_label(model: nn.Module, frames: Tensor, flows: Tensor, threshold: float = 0.968,
                 propagate: bool = True) -> PseudoLabels:
    """Teacher pseudo-labels, confidence and DACS weights of a target clip.

    model:  the teacher network (eval mode); called as model(frames [B, k, 3, H, W], flows
            [B, k-1, 2, H, W]) -> {"logits": [B, C, h, w], ...}.
    frames: [B, K, 3, H, W] in [0, 1], newest first; flows: [B, K-1, 2, H, W].
      K = 3 (video target training clip t, t-1, t-2): P_t from the pair (t, t-1) and P_{t-1}
            from the pair (t-1, t-2), run as ONE batched call of 2B clips.
      K = 2: P_t from the pair, P_{t-1} from the one-frame clip of frame t-1 (a second call).
      K = 1 (images): one call; K2 = 1 and nothing is propagated.
    Frame t's distribution is `propagate_probs(P_t, P_{t-1}, flows[:, 0])` (P_t if propagate is
    False); frame t-1's is P_{t-1} itself. Returns PseudoLabels with K2 = min(K, 2).
    """
    b, k = frames.shape[:2]
    if k not in (1, 2, 3) or tuple(flows.shape[:2]) != (b, k - 1):
        raise ValueError(f"pseudo_label: expected frames [B, K<=3, 3, H, W] and flows [B, K-1, 2, H, W], "
                         f"got {tuple(frames.shape)} and {tuple(flows.shape)}")
    if k == 1:
        probs_t = teacher_probs(model, frames, flows)
        conf, labels = probs_t.max(dim=1)
        conf, labels = conf.unsqueeze(1), labels.unsqueeze(1)
        valid = torch.zeros(b, *frames.shape[-2:], dtype=torch.bool, device=frames.device)
        return PseudoLabels(labels, conf, dacs_weight(conf, threshold), valid)
    if k == 3:
        both = teacher_probs(model, torch.cat([frames[:, 0:2], frames[:, 1:3]]),
                             torch.cat([flows[:, 0:1], flows[:, 1:2]]))
        probs_t, probs_prev = both[:b], both[b:]
    else:
        probs_t = teacher_probs(model, frames[:, 0:2], flows[:, 0:1])
        probs_prev = teacher_probs(model, frames[:, 1:2], flows[:, :0])
    if propagate:
        probs, valid = propagate_probs(probs_t, probs_prev, flows[:, 0])
    else:
        probs = probs_t
        valid = torch.zeros(b, *frames.shape[-2:], dtype=torch.bool, device=frames.device)
    (conf_t, lab_t), (conf_p, lab_p) = probs.max(dim=1), probs_prev.max(dim=1)  # no [B, 2, C, H, W] copy
    conf, labels = torch.stack([conf_t, conf_p], dim=1), torch.stack([lab_t, lab_p], dim=1)
    return PseudoLabels(labels, conf, dacs_weight(conf, threshold), valid)
