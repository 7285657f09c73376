"""Triton kernels of the Dit quadratic term y_o = sum_ij K_o,ij x_i x_j (the CUDA path).

Every product x_i x_j is formed in registers, one (rows x BLOCK_B) tile at a time, and fed
straight to a tensor-core matrix product; no P x C^2 (or P x C(C+1)/2) array is ever written.

- `_pair_matmul_kernel`: out[p, n] = sum_(a, b) u[p, a] v[p, b] W[a, b, n]. The forward pass
  is u = v = x with W[i, j, o] from K; the input gradient is u = dY, v = x with
  W[o, j, k] = K_o,kj + K_o,jk, so dx_k = sum_o,j dY_o x_j (K_o,kj + K_o,jk).
- `_pair_gram_kernel`: G[n, a, b] = sum_p g[p, n] x[p, a] x[p, b], split over row ranges
  (partial sums written side by side and added after, so the result is deterministic); the
  weight gradient is g = dY.

`triangular=True` uses only the pairs i <= j (block-wise: the tiles that hold a pair with
i <= j), with packed coefficients K_ij + K_ji above the diagonal: about half the products of
the forward pass and of the weight gradient. `triangular=False` runs the full C^2 products.
Rows are addressed through (image, position) strides, so NCHW, channels_last and plain
(rows, C) inputs are read in place. Channel counts are padded to the tile inside the kernels
(masked loads), so any C works. Products are formed in float32 and rounded once to the dot's
input type (the input's dtype: bf16/fp16, or fp32 with IEEE or TF32 products as
`torch.backends.cuda.matmul.allow_tf32` says); accumulation is float32.

The kernels also run on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1), which
is how the test suite checks them on machines without a GPU.
"""

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from ann.layers.dit_chunked import output_like

__all__ = ["TileConfig", "quadratic_backward", "quadratic_forward", "tile_config"]


@triton.jit
def _row_offsets(rows, rows_per_image, stride_image, stride_position):
    image = (rows // rows_per_image).to(tl.int64)
    position = (rows % rows_per_image).to(tl.int64)
    return image * stride_image + position * stride_position


@triton.jit
def _pair_matmul_kernel(
    u_ptr,
    v_ptr,
    w_ptr,
    out_ptr,
    num_rows,
    rows_per_image,
    a_channels,
    b_channels,
    out_channels,
    su_image,
    su_position,
    su_channel,
    sv_image,
    sv_position,
    sv_channel,
    so_image,
    so_position,
    so_channel,
    TRIANGULAR: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_B: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < num_rows
    col_ok = cols < out_channels
    u_rows = u_ptr + _row_offsets(rows, rows_per_image, su_image, su_position)
    v_rows = v_ptr + _row_offsets(rows, rows_per_image, sv_image, sv_position)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for b_start in range(0, b_channels, BLOCK_B):
        b = b_start + tl.arange(0, BLOCK_B)
        b_ok = b < b_channels
        v_tile = tl.load(
            v_rows[:, None] + b[None, :] * sv_channel,
            mask=row_ok[:, None] & b_ok[None, :],
            other=0.0,
        ).to(tl.float32)
        w_tile_ptrs = w_ptr + b[:, None] * out_channels + cols[None, :]
        w_mask = b_ok[:, None] & col_ok[None, :]
        a_stop = a_channels
        if TRIANGULAR:
            a_stop = tl.minimum(a_channels, b_start + BLOCK_B)
        for a in range(0, a_stop):
            u_col = tl.load(u_rows + a * su_channel, mask=row_ok, other=0.0).to(tl.float32)
            products = (u_col[:, None] * v_tile).to(w_ptr.dtype.element_ty)
            w_tile = tl.load(w_tile_ptrs + a * b_channels * out_channels, mask=w_mask, other=0.0)
            acc = tl.dot(products, w_tile, acc, input_precision=PRECISION)
    out_rows = out_ptr + _row_offsets(rows, rows_per_image, so_image, so_position)
    tl.store(
        out_rows[:, None] + cols[None, :] * so_channel,
        acc.to(out_ptr.dtype.element_ty),
        mask=row_ok[:, None] & col_ok[None, :],
    )


@triton.jit
def _pair_gram_kernel(
    g_ptr,
    x_ptr,
    partial_ptr,
    num_rows,
    rows_per_split,
    rows_per_image,
    channels,
    out_channels,
    sg_image,
    sg_position,
    sg_channel,
    sx_image,
    sx_position,
    sx_channel,
    TRIANGULAR: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_B: tl.constexpr,
    PRECISION: tl.constexpr,
):
    b_blocks = tl.cdiv(channels, BLOCK_B)
    a = tl.program_id(0) // b_blocks
    b_start = (tl.program_id(0) % b_blocks) * BLOCK_B
    if TRIANGULAR and b_start + BLOCK_B <= a:
        return  # a tile of pairs a > b only: its entries come from the transposed tile
    b = b_start + tl.arange(0, BLOCK_B)
    n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    split = tl.program_id(2)
    b_ok = b < channels
    n_ok = n < out_channels
    acc = tl.zeros((BLOCK_N, BLOCK_B), dtype=tl.float32)
    first = split * rows_per_split
    last = tl.minimum(first + rows_per_split, num_rows)
    for start in range(first, last, BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        row_ok = rows < last
        x_rows = x_ptr + _row_offsets(rows, rows_per_image, sx_image, sx_position)
        g_rows = g_ptr + _row_offsets(rows, rows_per_image, sg_image, sg_position)
        x_a = tl.load(x_rows + a * sx_channel, mask=row_ok, other=0.0).to(tl.float32)
        x_b = tl.load(
            x_rows[:, None] + b[None, :] * sx_channel,
            mask=row_ok[:, None] & b_ok[None, :],
            other=0.0,
        ).to(tl.float32)
        products = (x_a[:, None] * x_b).to(g_ptr.dtype.element_ty)
        g_tile = tl.load(
            g_rows[None, :] + n[:, None] * sg_channel,
            mask=n_ok[:, None] & row_ok[None, :],
            other=0.0,
        )
        acc = tl.dot(g_tile, products, acc, input_precision=PRECISION)
    square = channels * channels
    out = partial_ptr + split.to(tl.int64) * out_channels * square
    tl.store(
        out + n[:, None] * square + a * channels + b[None, :],
        acc,
        mask=n_ok[:, None] & b_ok[None, :],
    )


@dataclass(frozen=True)
class TileConfig:
    """Tile sizes and launch options of one kernel launch."""

    block_m: int
    block_n: int
    block_b: int
    num_warps: int = 4
    num_stages: int = 2


def _tile(size: int, largest: int) -> int:
    """The smallest power of two >= size, between tl.dot's minimum of 16 and `largest`."""
    return max(16, min(largest, triton.next_power_of_2(size)))


def tile_config(num_rows: int, b_channels: int, out_channels: int) -> TileConfig:
    """Tiles of a pair product over `num_rows` rows (GPU defaults; the interpreter takes any)."""
    block_m = 128 if num_rows >= 4096 else 64
    block_n = _tile(out_channels, 128)
    block_b = _tile(b_channels, 64)
    big = block_m * block_n >= 128 * 128
    return TileConfig(block_m, block_n, block_b, num_warps=8 if big else 4, num_stages=3)


def _dot_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.float32


def _precision(dtype: torch.dtype) -> str:
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"


def _row_strides(t: Tensor) -> tuple[int, int, int]:
    """(image, position, channel) strides of an (images, positions, channels) tensor."""
    return t.stride(0), t.stride(1), t.stride(2)


def _pair_matmul(
    u: Tensor, v: Tensor, w: Tensor, out: Tensor, triangular: bool, tiles: TileConfig | None
) -> Tensor:
    images, positions, a_channels = u.shape
    b_channels, out_channels = v.shape[2], out.shape[2]
    num_rows = images * positions
    cfg = tiles or tile_config(num_rows, b_channels, out_channels)
    grid = (triton.cdiv(num_rows, cfg.block_m), triton.cdiv(out_channels, cfg.block_n))
    _pair_matmul_kernel[grid](
        u,
        v,
        w,
        out,
        num_rows,
        positions,
        a_channels,
        b_channels,
        out_channels,
        *_row_strides(u),
        *_row_strides(v),
        *_row_strides(out),
        TRIANGULAR=triangular,
        BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n,
        BLOCK_B=cfg.block_b,
        PRECISION=_precision(w.dtype),
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return out


def _splits(num_rows: int, programs: int, block_m: int, device: torch.device) -> int:
    """Row ranges for the weight gradient: enough programs to fill the GPU four times over (under
    the interpreter, 16 programs, so that the split is exercised)."""
    if device.type == "cuda":
        wanted = 4 * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        wanted = 16
    most = max(1, num_rows // (4 * block_m))
    return max(1, min(most, math.ceil(wanted / programs)))


def _pair_gram(g: Tensor, x: Tensor, triangular: bool, tiles: TileConfig | None) -> Tensor:
    """(N_out, C, C) float32: sum over rows of g_n x_a x_b (only tiles with a <= b if triangular,
    zeros elsewhere)."""
    images, positions, channels = x.shape
    out_channels = g.shape[2]
    num_rows = images * positions
    cfg = tiles or tile_config(num_rows, channels, out_channels)
    pair_tiles = channels * triton.cdiv(channels, cfg.block_b)
    n_blocks = triton.cdiv(out_channels, cfg.block_n)
    programs = n_blocks * (pair_tiles // 2 + channels if triangular else pair_tiles)
    splits = _splits(num_rows, programs, cfg.block_m, x.device)
    rows_per_split = triton.cdiv(triton.cdiv(num_rows, splits), cfg.block_m) * cfg.block_m
    splits = triton.cdiv(num_rows, rows_per_split)
    partial = x.new_zeros((splits, out_channels, channels, channels), dtype=torch.float32)
    _pair_gram_kernel[(pair_tiles, n_blocks, splits)](
        g,
        x,
        partial,
        num_rows,
        rows_per_split,
        positions,
        channels,
        out_channels,
        *_row_strides(g),
        *_row_strides(x),
        TRIANGULAR=triangular,
        BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n,
        BLOCK_B=cfg.block_b,
        PRECISION=_precision(g.dtype),
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return partial.sum(0) if splits > 1 else partial[0]


def _forward_weight(kernel: Tensor, triangular: bool, dtype: torch.dtype) -> Tensor:
    """(C, C, C_out): K_o,ij at [i, j, o]; triangular: K_ij + K_ji above the diagonal, K_ii on
    it, zero below."""
    if triangular:
        channels = kernel.shape[1]
        upper = torch.ones(channels, channels, dtype=torch.bool, device=kernel.device).triu(1)
        eye = torch.eye(channels, dtype=torch.bool, device=kernel.device)
        summed = kernel + kernel.transpose(1, 2)
        kernel = torch.where(upper, summed, torch.where(eye, kernel, 0.0))
    return kernel.permute(1, 2, 0).contiguous().to(dtype)


def quadratic_forward(
    x: Tensor, weight: Tensor, triangular: bool = True, tiles: TileConfig | None = None
) -> Tensor:
    """x (N, L, C) with any strides, weight (C_out, C^2) -> (N, L, C_out) in x's dtype, laid out
    as x (channels innermost or positions innermost). `tiles` replaces `tile_config`'s choice."""
    channels = x.shape[2]
    kernel = weight.view(-1, channels, channels).float()
    w = _forward_weight(kernel, triangular, _dot_dtype(x))
    out = output_like(x, kernel.shape[0])
    return _pair_matmul(x, x, w, out, triangular, tiles)


def quadratic_backward(
    grad: Tensor,
    x: Tensor,
    weight: Tensor,
    triangular: bool = True,
    tiles: TileConfig | None = None,
) -> tuple[Tensor, Tensor]:
    """Gradients with respect to x (laid out as x, x's dtype) and weight ((C_out, C^2), weight's
    dtype) of sum(grad * quadratic_forward(x, weight))."""
    channels = x.shape[2]
    kernel = weight.view(-1, channels, channels).float()
    symmetric = (kernel + kernel.transpose(1, 2)).contiguous().to(_dot_dtype(x))
    grad = grad.to(x.dtype)
    grad_x = _pair_matmul(grad, x, symmetric, torch.empty_like(x), False, tiles)
    gram = _pair_gram(grad, x, triangular, tiles)
    if triangular:
        upper = torch.ones(channels, channels, dtype=torch.bool, device=x.device).triu()
        gram = torch.where(upper, gram, gram.transpose(1, 2))
    return grad_x, gram.reshape(weight.shape).to(weight.dtype)
