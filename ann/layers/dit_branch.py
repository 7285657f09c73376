"""The Dit term inside a block: DitBranch, Q(LN(h)) beside a CIFAR ResNet block's second
convolution, and DitDepthwiseConv, conv(x) + Q(x) in place of a ConvNeXt block's depthwise
convolution."""

from torch import Tensor, nn

from ann.layers.dit_quadratic import DitQuadratic

__all__ = ["DitBranch", "DitDepthwiseConv", "chunk_option"]


def chunk_option(chunk_bytes: int | None) -> dict[str, int]:
    """DitQuadratic keyword for a scratch size; None keeps the layer's default."""
    return {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}


class DitBranch(nn.Module):
    """Q(LN(h)): the Dit quadratic term of a block, LN normalising every channel over its map.

    With transpose=True the result is laid out as the official CIFAR layer lays it out: the
    pixels are read in (width, height) order and written back in (height, width) order, which
    on a square map is the spatial transpose of Q(LN(h))."""

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        chunk_bytes: int | None = None,
        transpose: bool = False,
    ) -> None:
        super().__init__()
        self.transpose = transpose
        self.norm = nn.LayerNorm((height, width))
        self.quadratic = DitQuadratic(channels, channels, **chunk_option(chunk_bytes))

    def forward(self, x: Tensor) -> Tensor:
        z = self.norm(x)
        if not self.transpose:
            return self.quadratic(z)
        rows = self.quadratic(z.permute(0, 3, 2, 1).reshape(-1, z.shape[1]))
        out = rows.reshape(z.shape[0], z.shape[2], z.shape[3], -1)
        return out.permute(0, 3, 1, 2).contiguous()

    def extra_repr(self) -> str:
        return f"transpose={self.transpose}"


class DitDepthwiseConv(nn.Module):
    """A depthwise convolution plus the Dit quadratic term of its input: conv(x) + Q(x)."""

    def __init__(self, conv: nn.Conv2d, chunk_bytes: int | None = None) -> None:
        super().__init__()
        channels = conv.out_channels
        if conv.in_channels != channels or conv.groups != channels:
            raise ValueError(f"expected a depthwise convolution, got {conv}")
        if tuple(conv.stride) != (1, 1):
            raise ValueError(f"the quadratic term needs a stride-1 convolution, got {conv}")
        self.conv = conv
        self.quadratic = DitQuadratic(channels, channels, **chunk_option(chunk_bytes)).to(
            device=conv.weight.device, dtype=conv.weight.dtype
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) + self.quadratic(x)
