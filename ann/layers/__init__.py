"""Layers of the Dit-CNN models, laid out as timm lays out timm.layers.

- dit_chunked: the Dit quadratic term in plain torch, chunk by chunk (CPU, float64)
- dit_triton: its Triton kernels (CUDA)
- dit_op: the custom operator `ann::dit_quadratic` that dispatches between the two
- dit_quadratic: DitQuadratic, the term as a module
- dit_onnx: the operator's ONNX translation and export_onnx (needs onnxscript; not imported here)
- dit_branch: DitBranch (CIFAR ResNets) and DitDepthwiseConv (ConvNeXt), the term in a block
- quadratic_conv: Fan's and QuadraLib's quadratic convolutions (the CIFAR baselines)
- low_rank: LowRankQuadratic, the few-shot pixel model's quadratic term
"""

from .dit_branch import DitBranch, DitDepthwiseConv, chunk_option
from .dit_op import KERNELS, dit_quadratic, quadratic_images, quadratic_rows
from .dit_quadratic import DitQuadratic
from .low_rank import LowRankQuadratic
from .quadratic_conv import FanQuadraticConv2d, QuadraConv2d

__all__ = [
    "KERNELS",
    "DitBranch",
    "DitDepthwiseConv",
    "DitQuadratic",
    "FanQuadraticConv2d",
    "LowRankQuadratic",
    "QuadraConv2d",
    "chunk_option",
    "dit_quadratic",
    "quadratic_images",
    "quadratic_rows",
]
