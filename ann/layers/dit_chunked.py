"""The Dit quadratic term y_o = sum_ij K_o,ij x_i x_j in plain torch, chunk by chunk (the CPU
path, and float64 anywhere).

The reference forms the full outer product x x^T (P x C^2 for P pixels) and keeps it for
backward. Since x^T K x only sees the symmetric part of K, the C(C+1)/2 products x_i x_j of
unordered pairs {i, j} suffice, weighted by packed coefficients S_(ij) = K_ij + K_ji (i != j)
and S_(ii) = K_ii: half the multiply-adds, the same outputs and the same gradients with
respect to K. The products are recomputed in row chunks of bounded size in forward and
backward, so backward keeps only the input and the coefficients: O(P*C) activation memory
instead of O(P*C^2). Pairs are ordered by cyclic shift, (i, i + d mod C), which makes every
chunk of products (and of their gradients) a few whole-tensor operations on strided views.

`chunked_forward` and `chunked_backward` are what the operator `ann::dit_quadratic`
(ann.layers.dit_op) runs off CUDA.
"""

import torch
from torch import Tensor

# Scratch per chunk: cache-sized on the CPU (fastest there for C = 32 and 96, see the
# benchmark), large on GPUs where each chunk is a kernel launch.
CPU_CHUNK_BYTES = 4 * 2**20
GPU_CHUNK_BYTES = 64 * 2**20
FORWARD_BUFFERS = 1
BACKWARD_BUFFERS = 3


def pair_count(in_channels: int) -> int:
    return in_channels * (in_channels + 1) // 2


def shift_count(in_channels: int) -> int:
    return in_channels // 2 + 1


def pair_indices(in_channels: int, device: torch.device | str | None = None) -> Tensor:
    """(2, C(C+1)/2) channel pairs (i, (i + d) mod C) in packed order: shift d major, i minor.

    Every unordered pair appears once. For even C the shift C/2 holds each pair twice; its
    second half (i >= C/2) is dropped, which is the tail of the order."""
    shifts = torch.arange(shift_count(in_channels), device=device)
    first = torch.arange(in_channels, device=device).repeat(len(shifts))
    second = (first + shifts.repeat_interleave(in_channels)) % in_channels
    return torch.stack((first, second))[:, : pair_count(in_channels)]


def packed_coefficients(weight: Tensor, in_channels: int) -> Tensor:
    """(C_out, C_in^2) weight K -> (C_out, C_in(C_in+1)/2) coefficients S_(ij) = K_ij + K_ji."""
    first, second = pair_indices(in_channels, weight.device)
    upper = weight.index_select(1, first * in_channels + second)
    lower = weight.index_select(1, second * in_channels + first)
    return torch.where(first != second, upper + lower, upper)


def rows_per_chunk(in_channels: int, element_size: int, chunk_bytes: int, buffers: int = 1) -> int:
    """Rows whose scratch, `buffers` arrays of packed products, fits in chunk_bytes (at least 1)."""
    row_bytes = buffers * shift_count(in_channels) * in_channels * element_size
    return max(1, chunk_bytes // row_bytes)


def default_chunk_bytes(device: torch.device) -> int:
    return CPU_CHUNK_BYTES if device.type == "cpu" else GPU_CHUNK_BYTES


def chunk_bounds(num_rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk_rows, num_rows)) for start in range(0, num_rows, chunk_rows)]


def naive_quadratic_rows(rows: Tensor, weight: Tensor) -> Tensor:
    """Reference formula: full outer product x x^T per row, then a product with K^T."""
    num_rows, in_channels = rows.shape
    outer = rows.unsqueeze(2) * rows.unsqueeze(1)
    return outer.reshape(num_rows, in_channels * in_channels) @ weight.t()


def _doubled_columns(x: Tensor) -> Tensor:
    """(2C, N*L): the channels of every row of x (N, L, C), any strides, twice, so that cyclic
    shifts are plain views; one copy pass (not a reshape's copy and then a concatenation's)."""
    images, positions, channels = x.shape
    doubled = x.new_empty(2, channels, images, positions)
    doubled.copy_(x.permute(2, 0, 1).unsqueeze(0).expand(2, -1, -1, -1))
    return doubled.view(2 * channels, images * positions)


def _shifted(doubled: Tensor, shifts: int) -> Tensor:
    """View v[d, i, t] = doubled[i + d, t] of a (2C, n) tensor, for d < shifts."""
    channels, width, stride = doubled.shape[0] // 2, doubled.shape[1], doubled.stride(0)
    return doubled.as_strided((shifts, channels, width), (stride, stride, 1))


def _fill_products(scratch: Tensor, doubled: Tensor) -> Tensor:
    """scratch (D*C, n) <- x_i x_(i+d mod C) at row d*C + i."""
    channels = doubled.shape[0] // 2
    shifts = scratch.shape[0] // channels
    products = scratch.view(shifts, channels, -1)
    torch.mul(doubled[:channels], _shifted(doubled, shifts), out=products)
    return scratch


def _input_grad_into(out: Tensor, pair_grad: Tensor, doubled: Tensor, wide: Tensor) -> None:
    """out (C, n) <- d/dx_k of sum_(d,i) G[d,i] x_i x_(i+d), for every column of a chunk:
    sum_d G[d,k-d] x_(k-d) + G[d,k] x_(k+d).

    The first sum reads G[d, k - d mod C] x_(k-d) through a view of a buffer that holds G x
    twice along the channels, which turns the cyclic index into a plain stride; the second sum
    is added into the same view, so one reduction over d finishes both."""
    shifts, channels, width = pair_grad.shape
    halves = wide.view(shifts, 2, channels, width)
    torch.mul(pair_grad.unsqueeze(1), doubled[:channels].expand(2, -1, -1), out=halves)
    stride, start = (2 * channels - 1) * width, wide.storage_offset() + channels * width
    terms = wide.as_strided((shifts, channels, width), (stride, width, 1), start)
    terms.addcmul_(pair_grad, _shifted(doubled, shifts))
    torch.mv(terms.flatten(1).t(), pair_grad.new_ones(shifts), out=out.view(-1))


def _columns(t: Tensor) -> Tensor:
    """(C, N*L) of an (N, L, C) tensor: a view for channels innermost, else one copy whose
    innermost dimension is contiguous on both sides (positions, for NCHW), not a transpose."""
    return t.permute(2, 0, 1).reshape(t.shape[2], -1)


class _RowsWriter:
    """Writes (C, n) column blocks of consecutive rows into an (N, L, C) tensor in its layout,
    in one pass: positions innermost (NCHW) takes blocks of whole images, channels innermost
    any rows; other strides go through a (P, C) buffer copied at the end."""

    def __init__(self, dest: Tensor) -> None:
        self.dest = dest
        images, positions, channels = dest.shape
        self.positions, self.channels = positions, channels
        if positions > 1 and dest.stride(1) == 1 and dest.stride(2) == positions:
            self.mode = "images"  # (N, C, L) contiguous underneath
        elif (
            dest.stride(2) == 1
            and (positions == 1 or dest.stride(1) == channels)
            and (images == 1 or dest.stride(0) == positions * channels)
        ):
            self.mode = "rows"
        else:
            self.mode = "buffer"
            self.buffer = dest.new_empty(images * positions, channels)

    def chunk_rows(self, wanted: int) -> int:
        """Rows per chunk: whole images for the "images" mode."""
        if self.mode != "images":
            return wanted
        return max(1, wanted // self.positions) * self.positions

    def write(self, start: int, block: Tensor) -> None:
        stop = start + block.shape[1]
        if self.mode == "images":
            first, count = start // self.positions, block.shape[1] // self.positions
            images = self.dest.transpose(1, 2)[first : first + count]
            images.copy_(block.view(self.channels, count, self.positions).transpose(0, 1))
        elif self.mode == "rows":
            rows = self.dest.view(-1, self.channels) if self.dest.dim() == 3 else self.dest
            rows[start:stop].copy_(block.t())
        else:
            self.buffer[start:stop].copy_(block.t())

    def finish(self) -> None:
        if self.mode == "buffer":
            self.dest.copy_(self.buffer.view(self.dest.shape))


def _padded(packed: Tensor, products_per_row: int) -> Tensor:
    """Zero coefficients for the C/2 duplicate pairs that end the products of an even C.

    Letting the product for the pair gradients cover them (C/2 extra rows of C(C+1)/2) writes
    zeros there, where the input gradient expects them, without a separate pass."""
    return torch.nn.functional.pad(packed, (0, products_per_row - packed.shape[1]))


def _accumulator(like: Tensor) -> Tensor:
    return torch.zeros_like(like, dtype=torch.promote_types(like.dtype, torch.float32))


def _accumulate_product(total: Tensor, left: Tensor, right: Tensor) -> None:
    if total.dtype == left.dtype:
        total.addmm_(left, right)
    else:
        total.add_(torch.mm(left, right))


def _scratch(buffer: Tensor, rows: int, width: int) -> Tensor:
    return buffer[: rows * width].view(rows, width)


def _forward_rows(doubled: Tensor, packed: Tensor, chunk_bytes: int, out: Tensor) -> None:
    """Fills out (N, L, C_out), written chunk by chunk in its own layout."""
    in_channels, num_rows = doubled.shape[0] // 2, doubled.shape[1]
    chunk_rows = rows_per_chunk(in_channels, doubled.element_size(), chunk_bytes, FORWARD_BUFFERS)
    writer = _RowsWriter(out)
    chunk_rows = writer.chunk_rows(chunk_rows)
    products_per_row = shift_count(in_channels) * in_channels
    pairs = pair_count(in_channels)
    width = min(chunk_rows, num_rows)
    buffer = doubled.new_empty(products_per_row * width)
    block_buffer = doubled.new_empty(packed.shape[0] * width)
    rows = out.view(num_rows, -1) if writer.mode == "rows" else None
    for start, stop in chunk_bounds(num_rows, chunk_rows):
        scratch = _scratch(buffer, products_per_row, stop - start)
        products = _fill_products(scratch, doubled[:, start:stop])
        if rows is not None:  # channels innermost: straight into the output
            torch.mm(products[:pairs].t(), packed.t(), out=rows[start:stop])
        else:
            block = _scratch(block_buffer, packed.shape[0], stop - start)
            torch.mm(packed, products[:pairs], out=block)
            writer.write(start, block)
    writer.finish()


def _backward_rows(
    doubled: Tensor,
    packed: Tensor,
    grad_columns: Tensor,
    chunk_bytes: int,
    grad_x: Tensor | None,
    weight_grad: bool,
) -> Tensor | None:
    """Fills grad_x (N, L, C, written in its own layout) when given; returns the gradient of
    the packed coefficients when weight_grad. grad_columns: (C_out, P), the output's gradient."""
    in_channels, num_rows = doubled.shape[0] // 2, doubled.shape[1]
    chunk_rows = rows_per_chunk(in_channels, doubled.element_size(), chunk_bytes, BACKWARD_BUFFERS)
    writer = _RowsWriter(grad_x) if grad_x is not None else None
    if writer is not None:
        chunk_rows = writer.chunk_rows(chunk_rows)
    shifts, pairs = shift_count(in_channels), pair_count(in_channels)
    grad_packed = _accumulator(packed) if weight_grad else None
    padded = _padded(packed, shifts * in_channels)
    width = min(chunk_rows, num_rows)
    buffer = doubled.new_empty(BACKWARD_BUFFERS * shifts * in_channels * width)
    block_buffer = doubled.new_empty(in_channels * width) if writer is not None else None
    for start, stop in chunk_bounds(num_rows, chunk_rows):
        chunk, grad_chunk = doubled[:, start:stop], grad_columns[:, start:stop]
        scratch = _scratch(buffer, shifts * in_channels, stop - start)
        if grad_packed is not None:
            products = _fill_products(scratch, chunk)
            _accumulate_product(grad_packed, grad_chunk, products[:pairs].t())
        if writer is not None:
            torch.mm(padded.t(), grad_chunk, out=scratch)
            wide = buffer[scratch.numel() : 3 * scratch.numel()]
            pair_grad = scratch.view(shifts, in_channels, -1)
            block = _scratch(block_buffer, in_channels, stop - start)
            _input_grad_into(block, pair_grad, chunk, wide)
            writer.write(start, block)
    if writer is not None:
        writer.finish()
    return grad_packed


def unpacked_gradient(grad_packed: Tensor, in_channels: int) -> Tensor:
    """Gradient of (C_out, C_in^2) K from that of its packed coefficients S_(ij) = K_ij + K_ji:
    both K_ij and K_ji receive dS_(ij)."""
    first, second = pair_indices(in_channels, grad_packed.device)
    grad = grad_packed.new_zeros(grad_packed.shape[0], in_channels * in_channels)
    grad[:, first * in_channels + second] = grad_packed
    grad[:, second * in_channels + first] = grad_packed
    return grad


def output_like(x: Tensor, channels: int, dtype: torch.dtype | None = None) -> Tensor:
    """An empty (N, L, channels) tensor laid out as x (N, L, C): channels innermost when x has
    them innermost (channels_last, rows), else positions innermost (NCHW)."""
    images, positions, _ = x.shape
    dtype = dtype or x.dtype
    if x.stride(2) == 1 or positions == 1:
        return x.new_empty((images, positions, channels), dtype=dtype)
    return x.new_empty((images, channels, positions), dtype=dtype).transpose(1, 2)


def _chunk_budget(chunk_bytes: int, device: torch.device) -> int:
    return chunk_bytes or default_chunk_bytes(device)


def chunked_forward(x: Tensor, weight: Tensor, chunk_bytes: int) -> Tensor:
    """x (N, L, C_in), weight (C_out, C_in^2) -> (N, L, C_out) in x's dtype, laid out as x;
    `chunk_bytes` of scratch per chunk (0: the device's default)."""
    in_channels = x.shape[2]
    budget = _chunk_budget(chunk_bytes, x.device)
    with torch.autocast(x.device.type, enabled=False):
        doubled = _doubled_columns(x)
        packed = packed_coefficients(weight.to(x.dtype), in_channels)
        out = output_like(x, weight.shape[0])
        _forward_rows(doubled, packed, budget, out)
    return out


def chunked_backward(
    grad: Tensor, x: Tensor, weight: Tensor, chunk_bytes: int, input_grad: bool, weight_grad: bool
) -> tuple[Tensor, Tensor]:
    """Gradients of `chunked_forward` with respect to x (laid out as x) and weight (its dtype);
    an empty tensor in place of one that is not asked for."""
    in_channels = x.shape[2]
    budget = _chunk_budget(chunk_bytes, x.device)
    grad_x = torch.empty_like(x) if input_grad else None
    with torch.autocast(x.device.type, enabled=False):
        doubled = _doubled_columns(x)
        packed = packed_coefficients(weight.to(x.dtype), in_channels)
        grad_packed = _backward_rows(
            doubled,
            packed,
            _columns(grad.to(x.dtype)),
            budget,
            grad_x,
            weight_grad,
        )
    grad_weight = weight.new_empty(0)
    if grad_packed is not None:
        grad_weight = unpacked_gradient(grad_packed, in_channels).to(weight.dtype)
    return (grad_x if grad_x is not None else x.new_empty(0)), grad_weight
