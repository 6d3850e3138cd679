"""udass: unified image and video unsupervised domain adaptive semantic segmentation (QuadMix)."""

__version__ = "0.1.0"
