"""The method (docs/method.md, sections 3-7): teacher, templates, QuadMix, augmentation, feature mixing,
aggregation and their losses. Every function works on batched clips [B, K, ...] with K = 1
(images) or 2 (video mixing); the trainer (`udass.train`) composes them into one step."""
from udass.method.aggregation import (aggregate_temporal, aggregation_loss, class_prototypes,
                                      downsample_labels, entropy_weights, mean_entropy, mmd_loss,
                                      prototype_contrastive_loss)
from udass.method.augment import strong_augment
from udass.method.feature_distance import ImageNetEncoder, feature_distance, thing_classes
from udass.method.feature_mix import FeatureFusion, feature_mix_loss, shared_region
from udass.method.losses import multi_resolution_loss, weighted_cross_entropy
from udass.method.masking import block_mask, mask_frames, masked_consistency_loss, neutral_fill
from udass.method.quadmix import MixedClip, classmix, loss_samples, paste, paste_template, quadmix
from udass.method.teacher import EMATeacher, PseudoLabels, ema_alpha, pseudo_label
from udass.method.templates import (Template, choose_classes, class_mask, source_template,
                                    target_template)

__all__ = [
    "EMATeacher", "FeatureFusion", "ImageNetEncoder", "MixedClip", "PseudoLabels", "Template",
    "aggregate_temporal", "aggregation_loss", "block_mask", "choose_classes", "class_mask",
    "class_prototypes", "classmix", "downsample_labels", "ema_alpha", "entropy_weights",
    "feature_distance", "feature_mix_loss", "loss_samples", "mask_frames",
    "masked_consistency_loss", "mean_entropy", "mmd_loss", "multi_resolution_loss",
    "neutral_fill", "paste", "paste_template", "prototype_contrastive_loss", "pseudo_label",
    "quadmix", "shared_region", "source_template", "strong_augment", "target_template",
    "thing_classes", "weighted_cross_entropy",
]
