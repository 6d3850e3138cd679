"""Data: the clip contract, protocols, loaders of the real layouts, the synthetic generator, flow."""
from udass.data.clip import Clip, ClipBatch, collate_clips, pair_view

__all__ = ["Clip", "ClipBatch", "collate_clips", "pair_view", "build_dataset"]


def __getattr__(name: str):  # lazy: loaders import cv2 / PIL only when used
    if name == "build_dataset":
        from udass.data.datasets import build_dataset

        return build_dataset
    raise AttributeError(name)
