"""DitQuadratic: the quadratic (dendritic bilinear) term of a Dit-CNN layer as a module,
y_o = sum_{i,j} K_{o,ij} x_i x_j over the input channels of every pixel (ann.layers.dit_op).

ann.models registers it with timm as a leaf for torch.fx in feature extraction
(register_notrace_module): its forward checks the input's shape in Python, which symbolic
tracing cannot follow. This module does not import timm."""

import torch
from torch import Tensor, nn

from ann.layers.dit_op import checked_kernel, quadratic_images

__all__ = ["DitQuadratic"]


class DitQuadratic(nn.Module):
    """Quadratic (dendritic bilinear) term of a Dit-CNN layer, applied at every pixel.

    Input (N, C, H, W) (any memory format; the output keeps it), (N, H, W, C) with
    channels_last=True, or rows (P, C). `kernel` chooses the CUDA implementation ("packed":
    Triton on the pairs i <= j, the default; "full": Triton on all C^2 products; "chunked":
    the torch path that the CPU always uses)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        channels_last: bool = False,
        chunk_bytes: int | None = None,
        kernel: str = "packed",
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.channels_last = channels_last
        self.chunk_bytes = chunk_bytes
        self.kernel = checked_kernel(kernel)
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels * in_channels))

    def forward(self, x: Tensor) -> Tensor:
        channel_dim = -1 if x.dim() == 2 or self.channels_last else 1
        if x.dim() not in (2, 4) or x.shape[channel_dim] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} channels, got input {list(x.shape)}")
        if x.dim() == 2:
            return self._quadratic(x.unsqueeze(0))[0]
        if self.channels_last:
            return self._quadratic(x.flatten(1, 2)).unflatten(1, x.shape[1:3])
        return (
            self._quadratic(x.flatten(2).transpose(1, 2)).transpose(1, 2).unflatten(2, x.shape[2:])
        )

    def _quadratic(self, x: Tensor) -> Tensor:
        return quadratic_images(x, self.weight, self.chunk_bytes, self.kernel)

    def extra_repr(self) -> str:
        channels = f"in_channels={self.in_channels}, out_channels={self.out_channels}"
        return f"{channels}, channels_last={self.channels_last}, kernel={self.kernel}"
