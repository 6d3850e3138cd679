"""Segmentation networks over clips (docs/method.md, section 2, docs/architecture.md, Contracts: Models).

    model = build_model("vit", num_classes=19, size="mit_b5")      # or ("cnn", 19, "resnet101")
    load_pretrained(model, "pretrained/mit_b5.pth")                 # optional, strict
    out = model(frames, flows)   # frames [B, K, 3, H, W] in [0, 1], flows [B, K-1, 2, H, W]
    out["logits"], out["logits_t"], out["features"], out["aux"], out["logits_prev"], ...
    model.classify(features)     # decoder features -> logits (feature-level mixing)

`VARIANTS` lists every network (`docs/models.md`).
"""
from udass.models.factory import (ALLOWED_EXTRA_KEYS, VARIANTS, Variant, build_model,
                                  build_model_from_config, count_parameters, load_encoder_state,
                                  load_pretrained, variants)
from udass.models.hrda import HRDAModel, slide_inference
from udass.models.temporal import FrameOutput, SegModel, TemporalFusion

__all__ = ["ALLOWED_EXTRA_KEYS", "FrameOutput", "HRDAModel", "SegModel", "TemporalFusion", "VARIANTS",
           "Variant", "build_model", "build_model_from_config", "count_parameters",
           "load_encoder_state", "load_pretrained", "slide_inference", "variants"]
