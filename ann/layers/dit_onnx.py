"""ONNX export of models with the Dit quadratic term (torch.onnx.export with dynamo=True).

The exporter knows PyTorch's own operators, not `ann::dit_quadratic`; DIT_ONNX_TRANSLATIONS
tells it how to write the term in ONNX operators, and `export_onnx` passes it on:

    y[n, l, o] = sum_ij W[o, i * C + j] x[n, l, i] x[n, l, j]
               = MatMul(Reshape(x[..., :, None] * x[..., None, :], (N, L, C * C)), W^T).

The ONNX graph forms all C^2 products of a pixel at once (N * L * C^2 values), where the
PyTorch operator works chunk by chunk (CPU) or tile by tile (Triton): the function is the same,
the scratch memory is not. onnxscript (a dev dependency) is needed only to export, not to
import this module.
"""

from collections.abc import Callable
from os import PathLike
from typing import Any

import torch
from torch import nn

import ann.layers.dit_op  # noqa: F401  (registers torch.ops.ann.dit_quadratic)

__all__ = ["DIT_ONNX_TRANSLATIONS", "dit_quadratic_onnx", "export_onnx"]


def dit_quadratic_onnx(x: Any, weight: Any, chunk_bytes: int = 0, kernel: str = "packed") -> Any:
    """ONNX Script translation of `ann::dit_quadratic`: x (N, L, C), weight (C_out, C^2) ->
    (N, L, C_out) in x's dtype. chunk_bytes and kernel choose how PyTorch computes the term, not
    what it computes, and have no part in the graph."""
    from onnxscript import opset18 as op

    rows = op.Unsqueeze(x, op.Constant(value_ints=[-1]))  # (N, L, C, 1)
    columns = op.Unsqueeze(x, op.Constant(value_ints=[-2]))  # (N, L, 1, C)
    # Reshape's 0 keeps N and L as they are, -1 joins the C x C products of a pixel
    products = op.Reshape(op.Mul(rows, columns), op.Constant(value_ints=[0, 0, -1]))
    return op.MatMul(products, op.Transpose(op.CastLike(weight, x), perm=[1, 0]))


DIT_ONNX_TRANSLATIONS: dict[Callable, Callable] = {
    torch.ops.ann.dit_quadratic.default: dit_quadratic_onnx,
}


def export_onnx(
    model: nn.Module,
    args: tuple[Any, ...],
    path: str | PathLike[str] | None = None,
    **kwargs: Any,
) -> "torch.onnx.ONNXProgram":
    """torch.onnx.export(model, args, path, dynamo=True) with the Dit term's translation added
    to any `custom_translation_table` in kwargs; returns the ONNXProgram (saved to `path` when
    one is given)."""
    table = {**DIT_ONNX_TRANSLATIONS, **kwargs.pop("custom_translation_table", {})}
    program = torch.onnx.export(
        model, args, path, dynamo=True, custom_translation_table=table, **kwargs
    )
    if program is None:  # only the TorchScript exporter returns None
        raise RuntimeError("torch.onnx.export returned no ONNXProgram")
    return program
