"""Dit-ConvNeXt-T/S/B: timm's ConvNeXt with the Dit quadratic term added to the depthwise
convolution of chosen blocks, x = dwconv(x) + Q(x); by default the third block of the first
stage, as in the paper. Registered in timm as dit_convnext_tiny/small/base, built by timm's
build_model_with_cfg like timm's own convnext_* (features_only, forward_intermediates and fx
tracing come with timm's ConvNeXt; the Dit term is an fx leaf).

timm's ConvNeXtBlock runs conv_dw on (N, C, H, W) whether or not conv_mlp is set, so the
quadratic term is a channels-first DitQuadratic(C, C). Its weight starts at zero: a freshly
built ConvNeXt computes the same function with the term added. No pretrained weights exist.
"""

from collections.abc import Sequence
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.convnext import ConvNeXt

from ann.errors import ConfigError
from ann.layers import DitDepthwiseConv

__all__ = ["DIT_CONVNEXT_BLOCKS", "DitConvNeXt", "add_dit_terms"]

DIT_CONVNEXT_BLOCKS = ((0, 2),)
SIZES = {  # timm's convnext_tiny/small/base
    "tiny": dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
    "small": dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
    "base": dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024)),
}


def add_dit_terms(
    model: ConvNeXt, dit_blocks: Sequence[tuple[int, int]], chunk_bytes: int | None = None
) -> ConvNeXt:
    """Wrap the conv_dw of every (stage, block), 0-based, in a DitDepthwiseConv."""
    for stage, block in dit_blocks:
        if not (0 <= stage < len(model.stages) and 0 <= block < len(model.stages[stage].blocks)):
            raise ConfigError(f"no block ({stage}, {block}) in this ConvNeXt")
        target = model.stages[stage].blocks[block]
        if isinstance(target.conv_dw, DitDepthwiseConv):
            raise ConfigError(f"block ({stage}, {block}) listed twice")
        target.conv_dw = DitDepthwiseConv(target.conv_dw, chunk_bytes)
    return model


class DitConvNeXt(ConvNeXt):
    """timm's ConvNeXt (every argument of it) with Dit terms in the `dit_blocks`."""

    def __init__(
        self,
        *args: Any,
        dit_blocks: Sequence[tuple[int, int]] = DIT_CONVNEXT_BLOCKS,
        dit_chunk_bytes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        add_dit_terms(self, dit_blocks, dit_chunk_bytes)


default_cfgs = generate_default_cfgs(
    {
        f"dit_convnext_{size}": {
            "url": "",
            "num_classes": 1000,
            "input_size": (3, 224, 224),
            "pool_size": (7, 7),
            "crop_pct": 0.875,
            "interpolation": "bicubic",
            "mean": IMAGENET_DEFAULT_MEAN,
            "std": IMAGENET_DEFAULT_STD,
            "first_conv": "stem.0",
            "classifier": "head.fc",
        }
        for size in SIZES
    }
)


def _create_dit_convnext(size: str, pretrained: bool, **kwargs: Any) -> DitConvNeXt:
    variant = f"dit_convnext_{size}"
    if pretrained:
        raise ConfigError(f"no pretrained weights exist for {variant}")
    return build_model_with_cfg(
        DitConvNeXt,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **{**SIZES[size], **kwargs},
    )


@register_model
def dit_convnext_tiny(pretrained: bool = False, **kwargs: Any) -> DitConvNeXt:
    return _create_dit_convnext("tiny", pretrained, **kwargs)


@register_model
def dit_convnext_small(pretrained: bool = False, **kwargs: Any) -> DitConvNeXt:
    return _create_dit_convnext("small", pretrained, **kwargs)


@register_model
def dit_convnext_base(pretrained: bool = False, **kwargs: Any) -> DitConvNeXt:
    return _create_dit_convnext("base", pretrained, **kwargs)
