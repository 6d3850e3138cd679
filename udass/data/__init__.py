"""Data: the clip contract, protocols, loaders of the real layouts, the synthetic generator, flow."""
from udass.data.clip import Clip, ClipBatch, collate_clips, pair_view
from udass.data.datasets import build_dataset

__all__ = ["Clip", "ClipBatch", "collate_clips", "pair_view", "build_dataset"]
