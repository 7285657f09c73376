"""Dit-ConvNeXt-T/S/B: timm's ConvNeXt with the Dit quadratic term added to the depthwise
convolution of chosen blocks, x = dwconv(x) + Q(x); by default the third block of the first
stage, as in the paper. Registered in timm as dit_convnext_tiny/small/base.

timm's ConvNeXtBlock runs conv_dw on (N, C, H, W) whether or not conv_mlp is set, so the
quadratic term is a channels-first DitQuadratic(C, C). Its weight starts at zero: a freshly
built (or pretrained) ConvNeXt computes the same function with the term added.
"""

from collections.abc import Sequence
from typing import Any

import timm
from timm.models import register_model
from timm.models.convnext import ConvNeXt

from ann.layers import DitDepthwiseConv

__all__ = ["add_dit_terms", "DIT_CONVNEXT_BLOCKS"]

DIT_CONVNEXT_BLOCKS = ((0, 2),)


def add_dit_terms(
    model: ConvNeXt, dit_blocks: Sequence[tuple[int, int]], chunk_bytes: int | None = None
) -> ConvNeXt:
    """Wrap the conv_dw of every (stage, block), 0-based, in a DitDepthwiseConv."""
    for stage, block in dit_blocks:
        if not (0 <= stage < len(model.stages) and 0 <= block < len(model.stages[stage].blocks)):
            raise ValueError(f"no block ({stage}, {block}) in this ConvNeXt")
        target = model.stages[stage].blocks[block]
        if isinstance(target.conv_dw, DitDepthwiseConv):
            raise ValueError(f"block ({stage}, {block}) listed twice")
        target.conv_dw = DitDepthwiseConv(target.conv_dw, chunk_bytes)
    return model


def _create_dit_convnext(
    base: str,
    pretrained: bool,
    dit_blocks: Sequence[tuple[int, int]] = DIT_CONVNEXT_BLOCKS,
    dit_chunk_bytes: int | None = None,
    **kwargs: Any,
) -> ConvNeXt:
    model = timm.create_model(base, pretrained=pretrained, **kwargs)
    return add_dit_terms(model, dit_blocks, dit_chunk_bytes)


@register_model
def dit_convnext_tiny(pretrained: bool = False, **kwargs: Any) -> ConvNeXt:
    return _create_dit_convnext("convnext_tiny", pretrained, **kwargs)


@register_model
def dit_convnext_small(pretrained: bool = False, **kwargs: Any) -> ConvNeXt:
    return _create_dit_convnext("convnext_small", pretrained, **kwargs)


@register_model
def dit_convnext_base(pretrained: bool = False, **kwargs: Any) -> ConvNeXt:
    return _create_dit_convnext("convnext_base", pretrained, **kwargs)
