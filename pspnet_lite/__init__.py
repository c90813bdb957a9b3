"""pspnet_lite: the PSPNet paper (Zhao et al., CVPR 2017) as a small, tested PyTorch package."""

__version__ = "0.1.0"
