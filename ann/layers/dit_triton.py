"""Triton kernels of the Dit quadratic term y_o = sum_ij K_o,ij x_i x_j (the CUDA path).

Every product x_i x_j is formed in registers, one tile at a time, and fed straight to a
tensor-core matrix product; no P x C^2 (or P x C(C+1)/2) array is ever written.

- `_pair_matmul_kernel`: out[p, n] = sum_(a, b) u[p, a] v[p, b] W[a, b, n]. The forward pass
  is u = v = x with W[i, j, o] from K; the input gradient is u = dY, v = x with
  W[o, j, k] = K_o,kj + K_o,jk, so dx_k = sum_o,j dY_o x_j (K_o,kj + K_o,jk).
- `_pair_gram_kernel` (the weight gradient): G[n, q] = sum_p g[p, n] x[p, a_q] x[p, b_q] for a
  list of channel pairs q = (a_q, b_q): the pairs a <= b (packed) or all C^2 pairs (full).
  One program takes BLOCK_P pairs (many output channels a at once) and every output column
  n, so each tile of g = dY and of x is read once per BLOCK_P pairs, not once per channel;
  the sum over rows is split over row ranges (partial sums written side by side and added
  after, so the result is deterministic).

Output columns are covered by two tiles, a main one and an optional tail, both powers of two
(96 = 64 + 32, 192 = 128 + 64), so that C = O = 96 runs no dead columns; the reduction tile
over b is chosen to divide C where it can (32 for C = 96). `tile_config` picks tiles per
(rows, C, O, dtype, kernel).

`triangular=True` uses only the pairs i <= j (in the forward pass block-wise: the tiles that
hold a pair with i <= j), with packed coefficients K_ij + K_ji above the diagonal: about half
the products of the forward pass and of the weight gradient. `triangular=False` runs the full
C^2 products. Rows are addressed through (image, position) strides, so NCHW, channels_last
and plain (rows, C) inputs are read in place; channel counts are padded to the tile inside
the kernels (masked loads), so any C works.

Products are formed in float32 and rounded once to the dot's input type: bf16 for bf16
inputs; float32 for float32 (IEEE or TF32 products as `torch.backends.cuda.matmul.allow_tf32`
says) and for float16, whose products (|x| > 256 gives x_i x_j > 65504) would overflow in
float16: its products and coefficients are kept in float32 and multiplied as TF32, whose
mantissa is float16's. Accumulation is float32; the output is in the input's dtype.

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

__all__ = ["KERNEL_KINDS", "TileConfig", "quadratic_backward", "quadratic_forward", "tile_config"]

KERNEL_KINDS = ("matmul", "gram")  # forward and input gradient; weight gradient


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
    BLOCK_T: tl.constexpr,
    BLOCK_B: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    col_start = tl.program_id(1) * (BLOCK_N + BLOCK_T)
    cols = col_start + tl.arange(0, BLOCK_N)
    row_ok = rows < num_rows
    col_ok = cols < out_channels
    u_rows = u_ptr + _row_offsets(rows, rows_per_image, su_image, su_position)
    v_rows = v_ptr + _row_offsets(rows, rows_per_image, sv_image, sv_position)
    out_rows = out_ptr + _row_offsets(rows, rows_per_image, so_image, so_position)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if BLOCK_T > 0:
        tail = col_start + BLOCK_N + tl.arange(0, BLOCK_T)
        tail_ok = tail < out_channels
        acc_tail = tl.zeros((BLOCK_M, BLOCK_T), dtype=tl.float32)
    for b_start in range(0, b_channels, BLOCK_B):
        b = b_start + tl.arange(0, BLOCK_B)
        b_ok = b < b_channels
        v_tile = tl.load(
            v_rows[:, None] + b[None, :] * sv_channel,
            mask=row_ok[:, None] & b_ok[None, :],
            other=0.0,
        ).to(tl.float32)
        w_rows = w_ptr + b[:, None] * out_channels
        a_stop = a_channels
        if TRIANGULAR:
            a_stop = tl.minimum(a_channels, b_start + BLOCK_B)
        for a in range(0, a_stop):
            u_col = tl.load(u_rows + a * su_channel, mask=row_ok, other=0.0).to(tl.float32)
            products = (u_col[:, None] * v_tile).to(w_ptr.dtype.element_ty)
            w_a = w_rows + a * b_channels * out_channels
            w_tile = tl.load(w_a + cols[None, :], mask=b_ok[:, None] & col_ok[None, :], other=0.0)
            acc = tl.dot(products, w_tile, acc, input_precision=PRECISION)
            if BLOCK_T > 0:
                w_tail = tl.load(
                    w_a + tail[None, :], mask=b_ok[:, None] & tail_ok[None, :], other=0.0
                )
                acc_tail = tl.dot(products, w_tail, acc_tail, input_precision=PRECISION)
    tl.store(
        out_rows[:, None] + cols[None, :] * so_channel,
        acc.to(out_ptr.dtype.element_ty),
        mask=row_ok[:, None] & col_ok[None, :],
    )
    if BLOCK_T > 0:
        tl.store(
            out_rows[:, None] + tail[None, :] * so_channel,
            acc_tail.to(out_ptr.dtype.element_ty),
            mask=row_ok[:, None] & tail_ok[None, :],
        )


@triton.jit
def _pair_gram_kernel(
    g_ptr,
    x_ptr,
    first_ptr,
    second_ptr,
    partial_ptr,
    num_rows,
    rows_per_split,
    rows_per_image,
    num_pairs,
    out_channels,
    sg_image,
    sg_position,
    sg_channel,
    sx_image,
    sx_position,
    sx_channel,
    DOT_DTYPE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_P: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pairs = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pair_ok = pairs < num_pairs
    a = tl.load(first_ptr + pairs, mask=pair_ok, other=0).to(tl.int64)
    b = tl.load(second_ptr + pairs, mask=pair_ok, other=0).to(tl.int64)
    col_start = tl.program_id(1) * (BLOCK_N + BLOCK_T)
    n = col_start + tl.arange(0, BLOCK_N)
    n_ok = n < out_channels
    split = tl.program_id(2)
    acc = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    if BLOCK_T > 0:
        tail = col_start + BLOCK_N + tl.arange(0, BLOCK_T)
        tail_ok = tail < out_channels
        acc_tail = tl.zeros((BLOCK_P, BLOCK_T), dtype=tl.float32)
    first = split * rows_per_split
    last = tl.minimum(first + rows_per_split, num_rows)
    for start in range(first, last, BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        row_ok = rows < last
        x_rows = x_ptr + _row_offsets(rows, rows_per_image, sx_image, sx_position)
        g_rows = g_ptr + _row_offsets(rows, rows_per_image, sg_image, sg_position)
        x_mask = pair_ok[:, None] & row_ok[None, :]
        x_a = tl.load(x_rows[None, :] + a[:, None] * sx_channel, mask=x_mask, other=0.0)
        x_b = tl.load(x_rows[None, :] + b[:, None] * sx_channel, mask=x_mask, other=0.0)
        products = (x_a.to(tl.float32) * x_b.to(tl.float32)).to(DOT_DTYPE)
        g_tile = tl.load(
            g_rows[:, None] + n[None, :] * sg_channel,
            mask=row_ok[:, None] & n_ok[None, :],
            other=0.0,
        ).to(DOT_DTYPE)
        acc = tl.dot(products, g_tile, acc, input_precision=PRECISION)
        if BLOCK_T > 0:
            g_tail = tl.load(
                g_rows[:, None] + tail[None, :] * sg_channel,
                mask=row_ok[:, None] & tail_ok[None, :],
                other=0.0,
            ).to(DOT_DTYPE)
            acc_tail = tl.dot(products, g_tail, acc_tail, input_precision=PRECISION)
    out = partial_ptr + split.to(tl.int64) * out_channels * num_pairs
    tl.store(
        out + n[None, :] * num_pairs + pairs[:, None],
        acc,
        mask=pair_ok[:, None] & n_ok[None, :],
    )
    if BLOCK_T > 0:
        tl.store(
            out + tail[None, :] * num_pairs + pairs[:, None],
            acc_tail,
            mask=pair_ok[:, None] & tail_ok[None, :],
        )


@dataclass(frozen=True)
class TileConfig:
    """Tile sizes and launch options of one kernel launch.

    block_m: rows per tile; block_n + block_t: output columns per program (block_t = 0: no
    tail tile); block_b: the reduction tile over b (matmul) or the channel pairs per program
    (gram)."""

    block_m: int
    block_n: int
    block_b: int
    num_warps: int = 4
    num_stages: int = 2
    block_t: int = 0

    def __post_init__(self) -> None:
        for name in ("block_m", "block_n", "block_b"):
            size = getattr(self, name)
            if size < 16 or size & (size - 1):
                raise ValueError(f"{name} {size} is not a power of two >= 16 (tl.dot's minimum)")
        if self.block_t and (self.block_t < 16 or self.block_t & (self.block_t - 1)):
            raise ValueError(f"block_t {self.block_t} is not 0 or a power of two >= 16")


def _cover(size: int, largest: int = 128) -> tuple[int, int]:
    """(main, tail) tiles over `size` columns: powers of two >= 16, the tail 0 or exact, with
    the fewest dead columns per program (96 -> (64, 32), 192 -> (128, 64), 384 -> (128, 0))."""
    if size <= 16:
        return 16, 0
    if size >= largest:
        rest = size % largest
        if size < 2 * largest and rest >= 16 and rest & (rest - 1) == 0:
            return largest, rest
        return largest, 0
    power = triton.next_power_of_2(size)
    if power == size:
        return size, 0
    main = power // 2
    rest = size - main
    if rest >= 16 and rest & (rest - 1) == 0:
        return main, rest
    return power, 0


def _reduction_tile(channels: int) -> int:
    """The b tile of the matmul kernel: the least padding of 16 or 32 (32 on ties); 64 spills
    registers on sm_80."""
    return min((32, 16), key=lambda size: triton.cdiv(channels, size) * size)


def tile_config(
    num_rows: int,
    b_channels: int,
    out_channels: int,
    dtype: torch.dtype = torch.bfloat16,
    kind: str = "matmul",
    ieee: bool = False,
) -> TileConfig:
    """Tiles of a pair kernel ("matmul": forward and input gradient; "gram": weight gradient)
    with `b_channels` inputs to the reduction and `out_channels` output columns, for inputs of
    `dtype`; `ieee`: float32 products without TF32 (CUDA-core FMAs, more registers). GPU
    defaults (the interpreter takes any); `num_rows` does not change the current choices.

    float32 dot operands (float32, and float16 whose products are float32) take twice the
    shared memory and registers of bf16, so their tiles are smaller and their pipelines
    shallower. Every choice stays within sm_80's and sm_90's shared memory and registers
    without spills: `python benchmarks/gpu.py --static` compiles them all and checks."""
    if kind not in KERNEL_KINDS:
        raise ValueError(f"unknown kernel kind {kind!r}; choose one of {KERNEL_KINDS}")
    two_byte = dtype == torch.bfloat16  # bf16 dot operands
    main, tail = _cover(out_channels, 128)
    columns = main + tail
    # Eight warps from 96 columns on: with four, the int64 row addresses, the float32 products
    # and the accumulators of a 64-row tile exceed 255 registers a thread and spill; below,
    # four (with eight ptxas caps registers at 128 and spills). See the static check.
    if kind == "gram":
        block_p = (128 if two_byte else 64) if columns <= 96 else (64 if two_byte else 32)
        return TileConfig(32, main, block_p, 8, 1, tail)
    reduction = _reduction_tile(b_channels)
    if ieee:  # CUDA-core FMAs: fewer rows where there are few or many columns
        block_m = 32 if columns <= 32 or columns >= 128 else 64
        warps, stages = (4, 1) if columns <= 32 else (8, 2)
        return TileConfig(block_m, main, reduction, warps, stages, tail)
    warps = 8 if columns >= 96 else 4
    return TileConfig(64, main, reduction, warps, 2 if two_byte else 1, tail)


def dot_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the products and coefficients fed to tl.dot for inputs of `dtype`: bf16
    stays bf16; float16 (whose products overflow past 65504) and float32 are float32."""
    return torch.bfloat16 if dtype == torch.bfloat16 else torch.float32


def _precision(dtype: torch.dtype) -> str:
    """tl.dot's precision for inputs of `dtype`: IEEE float32 only for float32 inputs with
    TF32 off; TF32 for float16 inputs (its mantissa is float16's, its range float32's)."""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"


_TL_DTYPES = {torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


def _row_strides(t: Tensor) -> tuple[int, int, int]:
    """(image, position, channel) strides of an (images, positions, channels) tensor."""
    return t.stride(0), t.stride(1), t.stride(2)


def _columns_grid(columns: int, cfg: TileConfig) -> int:
    return triton.cdiv(columns, cfg.block_n + cfg.block_t)


def _pair_matmul(
    u: Tensor, v: Tensor, w: Tensor, out: Tensor, triangular: bool, tiles: TileConfig | None
) -> Tensor:
    images, positions, a_channels = u.shape
    b_channels, out_channels = v.shape[2], out.shape[2]
    num_rows = images * positions
    ieee = _precision(v.dtype) == "ieee"
    cfg = tiles or tile_config(num_rows, b_channels, out_channels, v.dtype, "matmul", ieee)
    grid = (triton.cdiv(num_rows, cfg.block_m), _columns_grid(out_channels, cfg))
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
        BLOCK_T=cfg.block_t,
        BLOCK_B=cfg.block_b,
        PRECISION=_precision(v.dtype),
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


def channel_pairs(channels: int, triangular: bool, device: torch.device) -> tuple[Tensor, Tensor]:
    """(first, second) int32 channel indices of the pairs of the weight gradient: a <= b in
    row-major order (triangular), else all C^2 pairs, pair q = a * C + b."""
    if triangular:
        first, second = torch.triu_indices(channels, channels, device=device)
    else:
        index = torch.arange(channels * channels, device=device)
        first, second = index // channels, index % channels
    return first.to(torch.int32), second.to(torch.int32)


def _pair_gram(g: Tensor, x: Tensor, triangular: bool, tiles: TileConfig | None) -> Tensor:
    """(N_out, C^2) float32: sum over rows of g_n x_a x_b (the symmetric matrix of pairs a, b)."""
    images, positions, channels = x.shape
    out_channels = g.shape[2]
    num_rows = images * positions
    ieee = _precision(x.dtype) == "ieee"
    cfg = tiles or tile_config(num_rows, channels, out_channels, x.dtype, "gram", ieee)
    first, second = channel_pairs(channels, triangular, x.device)
    num_pairs = first.numel()
    pair_blocks, n_blocks = triton.cdiv(num_pairs, cfg.block_b), _columns_grid(out_channels, cfg)
    splits = _splits(num_rows, pair_blocks * n_blocks, cfg.block_m, x.device)
    rows_per_split = triton.cdiv(triton.cdiv(num_rows, splits), cfg.block_m) * cfg.block_m
    splits = triton.cdiv(num_rows, rows_per_split)
    partial = x.new_empty((splits, out_channels, num_pairs), dtype=torch.float32)
    _pair_gram_kernel[(pair_blocks, n_blocks, splits)](
        g,
        x,
        first,
        second,
        partial,
        num_rows,
        rows_per_split,
        positions,
        num_pairs,
        out_channels,
        *_row_strides(g),
        *_row_strides(x),
        DOT_DTYPE=_TL_DTYPES[dot_dtype(x.dtype)],
        BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n,
        BLOCK_T=cfg.block_t,
        BLOCK_P=cfg.block_b,
        PRECISION=_precision(x.dtype),
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    gram = partial.sum(0) if splits > 1 else partial[0]
    if not triangular:
        return gram
    full = gram.new_empty(out_channels, channels * channels)
    first, second = first.long(), second.long()
    full[:, second * channels + first] = gram
    full[:, first * channels + second] = gram
    return full


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
    w = _forward_weight(kernel, triangular, dot_dtype(x.dtype))
    out = output_like(x, kernel.shape[0])
    return _pair_matmul(x, x, w, out, triangular, tiles)


def quadratic_backward(
    grad: Tensor,
    x: Tensor,
    weight: Tensor,
    triangular: bool = True,
    tiles: TileConfig | None = None,
    gram_tiles: TileConfig | None = None,
) -> tuple[Tensor, Tensor]:
    """Gradients with respect to x (laid out as x, x's dtype) and weight ((C_out, C^2), weight's
    dtype) of sum(grad * quadratic_forward(x, weight)). `tiles` and `gram_tiles` replace
    `tile_config`'s choices for the input and the weight gradient."""
    channels = x.shape[2]
    kernel = weight.view(-1, channels, channels).float()
    symmetric = (kernel + kernel.transpose(1, 2)).contiguous().to(dot_dtype(x.dtype))
    grad = grad.to(x.dtype)
    grad_x = _pair_matmul(grad, x, symmetric, torch.empty_like(x), False, tiles)
    gram = _pair_gram(grad, x, triangular, gram_tiles)
    return grad_x, gram.view(weight.shape).to(weight.dtype)
