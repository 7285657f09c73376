"""The Dit quadratic term as one PyTorch custom operator, `ann::dit_quadratic`.

`ann::dit_quadratic_backward` is its registered gradient, and both have fake implementations
for tracing, so `torch.compile(..., fullgraph=True)` captures the term as one node and CUDA
graphs can record it. The operator dispatches on the device:

- CUDA: Triton kernels (ann.layers.dit_triton) that form the products x_i x_j tile by tile in
  on-chip memory and feed them to tensor-core matrix products;
- CPU (and float64 anywhere): the chunked torch path (ann.layers.dit_chunked).

ann.flops registers flop formulas for both operators.
"""

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from ann.layers.dit_chunked import chunked_backward, chunked_forward, output_like

__all__ = ["KERNELS", "checked_kernel", "dit_quadratic", "quadratic_images", "quadratic_rows"]

KERNELS = ("packed", "full", "chunked")


def checked_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"unknown Dit kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    return kernel


def _uses_triton(x: Tensor, kernel: str) -> bool:
    checked_kernel(kernel)
    return x.device.type == "cuda" and x.dtype != torch.float64 and kernel != "chunked"


@torch.library.custom_op("ann::dit_quadratic", mutates_args=())
def dit_quadratic(x: Tensor, weight: Tensor, chunk_bytes: int, kernel: str) -> Tensor:
    """x (N, L, C_in) with any strides, weight (C_out, C_in^2) -> (N, L, C_out), computed in
    x's dtype and laid out as x (`output_like`). `kernel` on CUDA: "packed" (Triton, the pairs
    i <= j), "full" (Triton, all C^2 products) or "chunked" (torch); on the CPU, and for
    float64 anywhere, always the chunked torch path (`chunk_bytes` of scratch per chunk, 0 for
    the device's default)."""
    if _uses_triton(x, kernel):
        from ann.layers.dit_triton import quadratic_forward

        return quadratic_forward(x, weight, kernel == "packed")
    return chunked_forward(x, weight, chunk_bytes)


@dit_quadratic.register_fake
def _(x: Tensor, weight: Tensor, chunk_bytes: int, kernel: str) -> Tensor:
    return output_like(x, weight.shape[0])


@torch.library.custom_op("ann::dit_quadratic_backward", mutates_args=())
def dit_quadratic_backward(
    grad: Tensor,
    x: Tensor,
    weight: Tensor,
    chunk_bytes: int,
    kernel: str,
    input_grad: bool,
    weight_grad: bool,
) -> tuple[Tensor, Tensor]:
    """Gradients of dit_quadratic with respect to x (laid out as x) and weight (its dtype); an
    empty tensor in place of one that is not asked for."""
    if _uses_triton(x, kernel):
        from ann.layers.dit_triton import quadratic_backward

        grad_x, grad_weight = quadratic_backward(grad, x, weight, kernel == "packed")
        return (grad_x if input_grad else x.new_empty(0)), (
            grad_weight if weight_grad else weight.new_empty(0)
        )
    return chunked_backward(grad, x, weight, chunk_bytes, input_grad, weight_grad)


@dit_quadratic_backward.register_fake
def _(
    grad: Tensor,
    x: Tensor,
    weight: Tensor,
    chunk_bytes: int,
    kernel: str,
    input_grad: bool,
    weight_grad: bool,
) -> tuple[Tensor, Tensor]:
    grad_x = torch.empty_like(x) if input_grad else x.new_empty(0)
    return grad_x, (torch.empty_like(weight) if weight_grad else weight.new_empty(0))


def _setup_context(ctx: FunctionCtx, inputs: tuple, output: Tensor) -> None:
    x, weight, chunk_bytes, kernel = inputs
    ctx.save_for_backward(x, weight)
    ctx.options = (chunk_bytes, kernel)


def _backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
    x, weight = ctx.saved_tensors
    input_grad, weight_grad = ctx.needs_input_grad[:2]
    grad_x, grad_weight = dit_quadratic_backward(
        grad, x, weight, *ctx.options, input_grad, weight_grad
    )
    return (grad_x if input_grad else None), (grad_weight if weight_grad else None), None, None


dit_quadratic.register_autograd(_backward, setup_context=_setup_context)


def _compute_dtype(x: Tensor, weight: Tensor) -> torch.dtype:
    dtype = torch.promote_types(x.dtype, weight.dtype)
    # TorchScript has no autocast queries (a scripted model follows its inputs' dtype)
    if not torch.jit.is_scripting() and dtype != torch.float64:
        if torch.is_autocast_enabled(x.device.type):
            return torch.get_autocast_dtype(x.device.type)
    return dtype


def quadratic_images(
    x: Tensor, weight: Tensor, chunk_bytes: int | None = None, kernel: str = "packed"
) -> Tensor:
    """x (N, L, C_in) -> (N, L, C_out): y_o = sum_ij K_o,ij x_i x_j at each of the N*L rows,
    in the autocast dtype when autocast is on; the weight's gradient keeps the weight's dtype."""
    in_channels = x.shape[2]
    if weight.shape[1] != in_channels * in_channels:
        raise ValueError(f"weight {list(weight.shape)} does not match {in_channels} channels")
    scratch = 0 if chunk_bytes is None else chunk_bytes
    # through torch.ops, the same operator as dit_quadratic, so that TorchScript can call it
    return torch.ops.ann.dit_quadratic(x.to(_compute_dtype(x, weight)), weight, scratch, kernel)


def quadratic_rows(rows: Tensor, weight: Tensor, chunk_bytes: int | None = None) -> Tensor:
    """rows (P, C_in), weight (C_out, C_in^2) -> (P, C_out): y_o = sum_ij K_o,ij x_i x_j."""
    return quadratic_images(rows.unsqueeze(0), weight, chunk_bytes)[0]
