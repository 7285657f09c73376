"""Multiply-accumulates per image, counted with torch.utils.flop_counter.FlopCounterMode.

FlopCounterMode counts matrix products and convolutions (FLOPs = 2 MACs); elementwise work
(BN, LN, activations, the products inside QResNet/QuadraResNet neurons) is not counted, as in
the usual tables. A DitQuadratic layer is one custom operator, `ann::dit_quadratic`, for which
a flop formula is registered here: its matrix product over the packed pair products,
P * C_out * C_in(C_in+1)/2 MACs (its backward: twice that); the elementwise products x_i x_j
are added by a forward hook, P * C_in(C_in+1)/2 multiplications. The paper's formula, y = K vec(x x^T)
with the full outer product, costs P * C_out * C_in^2 (reference_quadratic_macs).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

from ann.layers import DitQuadratic
from ann.layers.dit_chunked import pair_count

__all__ = [
    "MacCount",
    "count_macs",
    "measure_macs",
    "quadratic_macs",
    "reference_quadratic_macs",
]


def quadratic_macs(pixels: int, in_channels: int, out_channels: int) -> int:
    """Packed layer: the pair products plus their product with the packed coefficients."""
    return pixels * (out_channels + 1) * pair_count(in_channels)


def reference_quadratic_macs(pixels: int, in_channels: int, out_channels: int) -> int:
    """The paper's formula, K (C_out x C_in^2) times the full outer product, at every pixel."""
    return pixels * out_channels * in_channels * in_channels


@register_flop_formula(torch.ops.ann.dit_quadratic)
def _dit_quadratic_flops(
    x_shape: Sequence[int], weight_shape: Sequence[int], *args, **kwargs
) -> int:
    images, positions, in_channels = x_shape
    return 2 * images * positions * weight_shape[0] * pair_count(in_channels)


@register_flop_formula(torch.ops.ann.dit_quadratic_backward)
def _dit_quadratic_backward_flops(
    grad_shape: Sequence[int],
    x_shape: Sequence[int],
    weight_shape: Sequence[int],
    *args,
    **kwargs,
) -> int:
    return 2 * _dit_quadratic_flops(x_shape, weight_shape)


@dataclass(frozen=True)
class MacCount:
    """total: the whole model as it runs; quadratic: the part inside DitQuadratic layers;
    reference_quadratic: those layers at the paper's P * C_out * C_in^2."""

    total: int
    quadratic: int
    reference_quadratic: int

    @property
    def reference_total(self) -> int:
        return self.total - self.quadratic + self.reference_quadratic


def _pixels(layer: DitQuadratic, x: Tensor) -> int:
    return x.numel() // layer.in_channels


def measure_macs(model: nn.Module, input_size: Sequence[int] = (3, 32, 32)) -> MacCount:
    """MACs of one forward pass of a single image (batch 1) in eval mode."""
    parameter = next(model.parameters(), None)
    options = {} if parameter is None else {"device": parameter.device, "dtype": parameter.dtype}
    image = torch.zeros(1, *input_size, **options)
    counter = FlopCounterMode(display=False)
    seen_at_entry: dict[DitQuadratic, int] = {}
    quadratic = reference = pair_products = 0

    def enter(layer: DitQuadratic, inputs: tuple[Tensor, ...]) -> None:
        seen_at_entry[layer] = counter.get_total_flops()

    def leave(layer: DitQuadratic, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal quadratic, reference, pair_products
        pixels = _pixels(layer, inputs[0])
        products = pixels * pair_count(layer.in_channels)
        pair_products += products
        quadratic += (counter.get_total_flops() - seen_at_entry.pop(layer)) // 2 + products
        reference += reference_quadratic_macs(pixels, layer.in_channels, layer.out_channels)

    layers = [module for module in model.modules() if isinstance(module, DitQuadratic)]
    handles = [layer.register_forward_pre_hook(enter) for layer in layers]
    handles += [layer.register_forward_hook(leave) for layer in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(image)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return MacCount(counter.get_total_flops() // 2 + pair_products, quadratic, reference)


def count_macs(model: nn.Module, input_size: Sequence[int] = (3, 32, 32)) -> int:
    return measure_macs(model, input_size).total
