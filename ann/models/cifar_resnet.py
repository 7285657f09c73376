"""CIFAR ResNets and their quadratic variants, in the layout of the Dit-CNN authors' code,
registered in timm.

Layout (official: CIFAR/model/dit_resnet_cifar10.py): a 3x3 stem with 16 channels, three stages
of 16/32/64 channels with (depth - 2) / 6 basic blocks each (stride 2 at the start of stages 2
and 3, 1x1 convolution + BN shortcuts where the shape changes, He et al.'s option B), then 4x4
average pooling of the last map (8x8 for 32x32 images) into a 2x2x64 = 256-wide feature for the
linear head. This is not He et al.'s CIFAR ResNet (option-A zero-padding shortcuts, global
pooling into a 64-wide head), whose published numbers the Dit paper quotes for its ResNet rows
(see workflow/pipeline/paper.py).

Initialisation: PyTorch's default for every layer (convolutions kaiming_uniform with
a = sqrt(5), i.e. weights U(-1/sqrt(fan_in), 1/sqrt(fan_in))), as the official code leaves it.
`conv_init="kaiming_normal"` draws the convolutions from He et al.'s N(0, 2/fan_in) instead
(about 2.45x larger weights; this project's earlier default).

Models and the equation each implements:

- ResNet (`resnet*`): every convolution linear.
- Dit-ResNet (`dit_resnet*`), Liu et al., NeurIPS 2024, the Dit-CNN layer: chosen blocks add the
  quadratic term to their second convolution, out = (BN(conv2(h)) + Q(LN(h))) / 2 with
  Q(z)_o = sum_ij K_oij z_i z_j at every pixel (a DitBranch); by default the first block of the
  second stage, as in the official code.
- Dit-ResNet, official transpose (`dit_resnet*_transposed`): the same with Q's output map
  spatially transposed, which is what official: CIFAR/model/Conv2d_quadratic.py computes (it
  flattens the input as (B, W, H, C) and reads the result back as (B, H, W, C)); the published
  CIFAR numbers come from this layer. The ImageNet layer does not transpose.
- QResNet (`qresnet*`), Fan, Cong & Wang, "A new type of neurons for machine learning" (2018),
  as Fan's code builds it (github.com/FengleiFan/ReLinear, TrainQuadraticNetworksViaReLinear/
  qresnet.py): every 3x3 convolution of the blocks is the quadratic neuron
  (W_r*x + b_r) . (W_g*x + b_g) + W_b*(x . x) + c with W_r Kaiming-normal, initialised with
  ReLinear (Fan et al., "Expressivity and trainability of quadratic networks", 2021: W_g = 0,
  b_g = 1, W_b = 0, c = 0) so that every neuron starts as the linear convolution W_r*x + b_r;
  the stem is a linear convolution without bias. `stem_layer=FanQuadraticConv2d` makes the stem
  a Fan neuron too (this project's earlier model; 912 more parameters).
- QuadraResNet (`quadraresnet*`), Xu et al., "QuadraLib" (MLSys 2022), the QuadraLib neuron of
  its ResNet (Quadraour in image_classification/models/quadratic_layer.py):
  BN(W_1*x + b_1) . BN(W_2*x + b_2) + BN(W_3*x + b_3), three biased convolutions each with its
  own BN; every 3x3 convolution of the blocks is one, the stem stays linear as in QuadraLib.

In both quadratic baselines a BN follows every neuron and the 1x1 projection shortcuts stay
linear. Both keep the Dit code's layout (1x1 shortcuts, 256-wide head) rather than their own
(Fan: option-A shortcuts and a 64-wide head); with it the counts are within 1% of the
paper's table (QResNet-110: 5,182,298 parameters, 5.18M, on CIFAR-10 against 5.17M;
docs/replication.md lists all).

The layers are in ann.layers. This module is one model family, as timm's resnet.py is: the
network with timm's interface, its default cfgs and its 20 registered variants (which make
it a little over 400 lines).
"""

import math
from collections.abc import Callable, Sequence
from functools import partial

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import Tensor, nn

from ann.data import MEAN, NUM_CLASSES, STD
from ann.errors import ConfigError
from ann.layers import DitBranch, FanQuadraticConv2d, QuadraConv2d

__all__ = ["BasicBlock", "CifarResNet", "CIFAR_DEPTHS", "CONV_INITS", "DIT_RESNET_BLOCKS"]

CIFAR_DEPTHS = (20, 32, 56, 110)
STAGE_WIDTHS = (16, 32, 64)
POOL_SIZE = 4
DIT_RESNET_BLOCKS = ((1, 0),)
CONV_INITS = ("pytorch", "kaiming_normal")

ConvLayer = Callable[..., nn.Module]
linear_conv3x3: ConvLayer = partial(nn.Conv2d, kernel_size=3, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN and a shortcut; with a DitBranch, the second one's output is
    (BN(conv2(h)) + Q(LN(h))) / 2."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        conv_layer: ConvLayer = linear_conv3x3,
        dit_map_size: tuple[int, int] | None = None,
        dit_chunk_bytes: int | None = None,
        dit_transpose: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = conv_layer(in_chs, out_chs, stride=stride)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv_layer(out_chs, out_chs)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.dit = None
        if dit_map_size is not None:
            self.dit = DitBranch(
                out_chs, *dit_map_size, chunk_bytes=dit_chunk_bytes, transpose=dit_transpose
            )
        self.shortcut = nn.Identity()
        if stride != 1 or in_chs != out_chs:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chs)
            )
        self.act2 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(h))
        if self.dit is not None:
            out = (out + self.dit(h)) / 2
        return self.act2(out + self.shortcut(x))


def blocks_per_stage(depth: int) -> int:
    if depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1, got {depth}")
    return (depth - 2) // 6


def halved(size: int, times: int) -> int:
    for _ in range(times):
        size = math.ceil(size / 2)
    return size


class CifarResNet(nn.Module):
    """ResNet-depth for small images, with timm's model interface (forward_features /
    forward_head, features_only, forward_intermediates, reset_classifier).

    dit_blocks lists the (stage, block) pairs, 0-based, whose second convolution gets the Dit
    quadratic term (dit_transpose: the official CIFAR layer's transposed map); conv_layer builds
    the 3x3 convolutions of the blocks and, unless stem_layer is given, of the stem;
    conv_init is "pytorch" (the official code's) or "kaiming_normal" for every nn.Conv2d (Fan
    neurons then draw their W_r as Fan's code does); dit_chunk_bytes sets the
    quadratic layers' scratch size (None: the layer's default).

    num_features is the width of the last map (64), head_hidden_size that of the pooled feature
    the classifier reads (64 x 2 x 2 for 32 x 32 images); global_pool "avg" is the official
    4 x 4 average pool (not a global one), "" none."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int = 32,
        dit_blocks: Sequence[tuple[int, int]] = (),
        conv_layer: ConvLayer = linear_conv3x3,
        stem_layer: ConvLayer | None = None,
        conv_init: str = "pytorch",
        dit_chunk_bytes: int | None = None,
        dit_transpose: bool = False,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        if conv_init not in CONV_INITS:
            raise ConfigError(f"conv_init must be one of {CONV_INITS}, got {conv_init!r}")
        depth_per_stage = blocks_per_stage(depth)
        dit_blocks = {tuple(place) for place in dit_blocks}
        outside = {
            (s, b)
            for s, b in dit_blocks
            if not (0 <= s < len(STAGE_WIDTHS) and 0 <= b < depth_per_stage)
        }
        if outside:
            raise ConfigError(f"dit_blocks {sorted(outside)} outside the {depth}-layer network")
        self.num_classes = num_classes
        self.conv_init = conv_init
        self.stem = nn.Sequential(
            (stem_layer or conv_layer)(in_chans, STAGE_WIDTHS[0]),
            nn.BatchNorm2d(STAGE_WIDTHS[0]),
            nn.ReLU(inplace=True),
        )
        # stem.2: the stem's last module, as timm's feature wrapper sees it (flattened)
        self.feature_info = [dict(num_chs=STAGE_WIDTHS[0], reduction=1, module="stem.2")]
        stages, in_chs = [], STAGE_WIDTHS[0]
        for stage, width in enumerate(STAGE_WIDTHS):
            map_size = halved(img_size, stage)
            blocks = []
            for block in range(depth_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                dit_map_size = (map_size, map_size) if (stage, block) in dit_blocks else None
                blocks.append(
                    BasicBlock(
                        in_chs,
                        width,
                        stride,
                        conv_layer,
                        dit_map_size,
                        dit_chunk_bytes,
                        dit_transpose,
                    )
                )
                in_chs = width
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(
                dict(num_chs=width, reduction=2**stage, module=f"stages.{stage}")
            )
        self.stages = nn.Sequential(*stages)
        pooled = halved(img_size, len(STAGE_WIDTHS) - 1) // POOL_SIZE
        if pooled < 1:
            raise ConfigError(f"img_size {img_size} too small for the {POOL_SIZE}x{POOL_SIZE} pool")
        self.num_features = STAGE_WIDTHS[-1]
        self.head_hidden_size = STAGE_WIDTHS[-1] * pooled * pooled
        self.global_pool, self.pool = _pool(global_pool)
        self.fc = _classifier(self.head_hidden_size, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """conv_init for the convolutions (layers are built with PyTorch's default init), then
        the quadratic neurons' own starting state (Fan's: Kaiming-normal W_r and ReLinear)."""
        if self.conv_init == "kaiming_normal":
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        for module in self.modules():
            if isinstance(module, FanQuadraticConv2d):
                module.reset_parameters()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool, self.pool = _pool(global_pool)
        self.fc = _classifier(self.head_hidden_size, num_classes)

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """The maps of the stem and the three stages that `indices` selects (timm's meaning:
        the last n if an int, all if None), and unless intermediates_only the last map."""
        if output_fmt != "NCHW":
            raise ConfigError(f"output_fmt must be NCHW, got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        x = self.stem(x)
        intermediates = [x] if 0 in take_indices else []
        stages = self.stages[:max_index] if stop_early else self.stages
        for index, stage in enumerate(stages, start=1):
            x = stage(x)
            if index in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last of `indices` (and the head); the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        prune_end = max_index < len(self.stages)
        self.stages = self.stages[:max_index]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.pool(x)
        if self.global_pool:
            x = x.flatten(1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _pool(global_pool: str) -> tuple[str, nn.Module]:
    if global_pool not in ("avg", ""):
        raise ConfigError(f"global_pool must be 'avg' or '', got {global_pool!r}")
    return global_pool, nn.AvgPool2d(POOL_SIZE) if global_pool else nn.Identity()


def _classifier(width: int, num_classes: int) -> nn.Module:
    return nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()


FAMILY_ARGS: dict[str, dict[str, object]] = {
    "resnet": {},
    "dit_resnet": {"dit_blocks": DIT_RESNET_BLOCKS},
    "dit_resnet_transposed": {"dit_blocks": DIT_RESNET_BLOCKS, "dit_transpose": True},
    "qresnet": {"conv_layer": FanQuadraticConv2d, "stem_layer": linear_conv3x3},
    "quadraresnet": {"conv_layer": QuadraConv2d, "stem_layer": linear_conv3x3},
}


def _variant(family: str, depth: int) -> str:
    if family.endswith("_transposed"):
        return f"{family.removesuffix('_transposed')}{depth}_transposed"
    return f"{family}{depth}"


CIFAR_FAMILY_DEPTHS = {_variant(f, d): (f, d) for f in FAMILY_ARGS for d in CIFAR_DEPTHS}


def _cfg(family: str) -> dict[str, object]:
    """timm's pretrained_cfg of an untrained CIFAR-10 model: input, normalisation, names."""
    return {
        "url": "",
        "num_classes": NUM_CLASSES["cifar10"],
        "input_size": (3, 32, 32),
        "pool_size": (8, 8),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": MEAN["cifar10"],
        "std": STD["cifar10"],
        "first_conv": "stem.0",
        "classifier": "fc",
    }


default_cfgs = generate_default_cfgs(
    {variant: _cfg(family) for variant, (family, _) in CIFAR_FAMILY_DEPTHS.items()}
)


def _create_cifar_resnet(variant: str, pretrained: bool = False, **kwargs: object) -> CifarResNet:
    if pretrained:
        raise ConfigError(f"no pretrained weights exist for {variant}")
    family, depth = CIFAR_FAMILY_DEPTHS[variant]
    return build_model_with_cfg(
        CifarResNet,
        variant,
        pretrained,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **{"depth": depth, **FAMILY_ARGS[family], **kwargs},
    )


@register_model
def resnet20(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("resnet20", pretrained, **kwargs)


@register_model
def resnet32(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("resnet32", pretrained, **kwargs)


@register_model
def resnet56(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("resnet56", pretrained, **kwargs)


@register_model
def resnet110(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("resnet110", pretrained, **kwargs)


@register_model
def dit_resnet20(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("dit_resnet20", pretrained, **kwargs)


@register_model
def dit_resnet32(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("dit_resnet32", pretrained, **kwargs)


@register_model
def dit_resnet56(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("dit_resnet56", pretrained, **kwargs)


@register_model
def dit_resnet110(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("dit_resnet110", pretrained, **kwargs)


@register_model
def dit_resnet20_transposed(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("dit_resnet20_transposed", pretrained, **kwargs)


@register_model
def dit_resnet32_transposed(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("dit_resnet32_transposed", pretrained, **kwargs)


@register_model
def dit_resnet56_transposed(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("dit_resnet56_transposed", pretrained, **kwargs)


@register_model
def dit_resnet110_transposed(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("dit_resnet110_transposed", pretrained, **kwargs)


@register_model
def qresnet20(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("qresnet20", pretrained, **kwargs)


@register_model
def qresnet32(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("qresnet32", pretrained, **kwargs)


@register_model
def qresnet56(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("qresnet56", pretrained, **kwargs)


@register_model
def qresnet110(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("qresnet110", pretrained, **kwargs)


@register_model
def quadraresnet20(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("quadraresnet20", pretrained, **kwargs)


@register_model
def quadraresnet32(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("quadraresnet32", pretrained, **kwargs)


@register_model
def quadraresnet56(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("quadraresnet56", pretrained, **kwargs)


@register_model
def quadraresnet110(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    return _create_cifar_resnet("quadraresnet110", pretrained, **kwargs)
