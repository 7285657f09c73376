"""Model zoo of the Dit-CNN experiments; every model is also registered in timm's registry.

CIFAR: resnet, dit_resnet, qresnet, quadraresnet at depths 20/32/56/110, the paper's table
(ann.models.cifar_resnet, whose docstring names the paper and equation of each), and
dit_resnet*_transposed, the Dit-ResNets with the official CIFAR layer's transposed quadratic map.
ImageNet: timm's convnext_tiny/small/base and dit_convnext_tiny/small/base
(ann.models.dit_convnext). Each is built by timm's build_model_with_cfg with a default cfg and
keeps timm's model contract (features_only, forward_intermediates, fx tracing); the layers
they are made of are in ann.layers. The few-shot experiment's models are in ann.models.fewshot (not registered in timm).
"""

from typing import Any

import timm
from timm.layers import register_notrace_module
from torch import nn

from ann.errors import ConfigError
from ann.layers import DitBranch, DitDepthwiseConv, DitQuadratic, FanQuadraticConv2d
from ann.models.cifar_resnet import CIFAR_DEPTHS, CifarResNet
from ann.models.dit_convnext import DitConvNeXt, add_dit_terms

__all__ = [
    "CIFAR_MODEL_NAMES",
    "CIFAR_VARIANT_NAMES",
    "IMAGENET_MODEL_NAMES",
    "MODEL_NAMES",
    "CifarResNet",
    "DitConvNeXt",
    "DitBranch",
    "DitDepthwiseConv",
    "add_dit_terms",
    "count_parameters",
    "create_model",
    "dit_parameters",
    "fan_gb_parameters",
    "parameters_of",
    "quadratic_layers",
]

CIFAR_FAMILIES = ("resnet", "dit_resnet", "qresnet", "quadraresnet")
CONVNEXT_SIZES = ("tiny", "small", "base")

CIFAR_MODEL_NAMES = tuple(f"{family}{depth}" for family in CIFAR_FAMILIES for depth in CIFAR_DEPTHS)
CIFAR_VARIANT_NAMES = tuple(f"dit_resnet{depth}_transposed" for depth in CIFAR_DEPTHS)
IMAGENET_MODEL_NAMES = tuple(
    f"{prefix}convnext_{size}" for prefix in ("", "dit_") for size in CONVNEXT_SIZES
)
MODEL_NAMES = CIFAR_MODEL_NAMES + CIFAR_VARIANT_NAMES + IMAGENET_MODEL_NAMES

# a leaf for torch.fx in timm's feature extraction: its forward checks shapes in Python
register_notrace_module(DitQuadratic)


def create_model(name: str, num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """Build one of MODEL_NAMES through timm's registry; kwargs go to the model (in_chans,
    img_size, dit_blocks, conv_init, dit_transpose for the CIFAR models; drop_path_rate,
    dit_blocks, ... for ConvNeXt)."""
    if name not in MODEL_NAMES:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return timm.create_model(name, num_classes=num_classes, **kwargs)


def quadratic_layers(model: nn.Module) -> list[DitQuadratic]:
    return [module for module in model.modules() if isinstance(module, DitQuadratic)]


def parameters_of(model: nn.Module, *kinds: type[nn.Module]) -> list[nn.Parameter]:
    """Each parameter of the submodules that are instances of `kinds`, once."""
    found: dict[int, nn.Parameter] = {}
    for module in model.modules():
        if isinstance(module, kinds):
            found.update((id(parameter), parameter) for parameter in module.parameters())
    return list(found.values())


def dit_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the quadratic terms: every DitBranch (LN included) and every DitQuadratic."""
    return parameters_of(model, DitBranch, DitQuadratic)


def fan_gb_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The g and b kernels and biases of every Fan neuron (qresnet*), which Fan's trainer
    gives their own learning rate (--lr_gb)."""
    return [
        parameter
        for module in model.modules()
        if isinstance(module, FanQuadraticConv2d)
        for conv in (module.conv_g, module.conv_b)
        for parameter in conv.parameters()
    ]


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
