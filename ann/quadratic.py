"""Dit quadratic layer: y_o = sum_{i,j} K_{o,ij} x_i x_j over the input channels of every pixel.

The term is one PyTorch custom operator, `ann::dit_quadratic` (with `ann::dit_quadratic_backward`
as its registered gradient and fake implementations for tracing), so `torch.compile(...,
fullgraph=True)` captures it as one node and CUDA graphs can record it. It dispatches on the
device:

- CUDA: Triton kernels (`ann.quadratic_triton`) that form the products x_i x_j tile by tile
  in on-chip memory and feed them to tensor-core matrix products.
- CPU (and float64 anywhere): the chunked torch path below. The reference forms the full outer
  product x x^T (P x C^2 for P pixels) and keeps it for backward. Since x^T K x only sees the
  symmetric part of K, the C(C+1)/2 products x_i x_j of unordered pairs {i, j} suffice,
  weighted by packed coefficients S_(ij) = K_ij + K_ji (i != j) and S_(ii) = K_ii: half the
  multiply-adds, the same outputs and the same gradients with respect to K. The products are
  recomputed in row chunks of bounded size in forward and backward, so backward keeps only the
  input and the coefficients: O(P*C) activation memory instead of O(P*C^2). Pairs are ordered
  by cyclic shift, (i, i + d mod C), which makes every chunk of products (and of their
  gradients) a few whole-tensor operations on strided views.
"""

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx

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


def _doubled_columns(rows: Tensor) -> Tensor:
    """(2C, P): the channels of every row, twice, so that cyclic shifts are plain views."""
    columns = rows.t()
    return torch.cat((columns, columns))


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


def _rows_from_blocks(blocks: Tensor, channels: int, chunk_rows: int) -> Tensor:
    """(P, C) from chunks stored one after the other, each as a contiguous (C, n) block."""
    num_rows = blocks.numel() // channels
    full = num_rows // chunk_rows * chunk_rows
    rows = blocks.new_empty(num_rows, channels)
    whole_chunks = blocks[: full * channels].view(-1, channels, chunk_rows)
    rows[:full].view(-1, chunk_rows, channels).copy_(whole_chunks.transpose(1, 2))
    rows[full:].copy_(blocks[full * channels :].view(channels, -1).t())
    return rows


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


def _forward_rows(doubled: Tensor, packed: Tensor, chunk_bytes: int) -> Tensor:
    in_channels, num_rows = doubled.shape[0] // 2, doubled.shape[1]
    chunk_rows = rows_per_chunk(in_channels, doubled.element_size(), chunk_bytes, FORWARD_BUFFERS)
    products_per_row = shift_count(in_channels) * in_channels
    pairs = pair_count(in_channels)
    out = doubled.new_empty(num_rows, packed.shape[0])
    buffer = doubled.new_empty(products_per_row * min(chunk_rows, num_rows))
    for start, stop in chunk_bounds(num_rows, chunk_rows):
        scratch = _scratch(buffer, products_per_row, stop - start)
        products = _fill_products(scratch, doubled[:, start:stop])
        torch.mm(products[:pairs].t(), packed.t(), out=out[start:stop])
    return out


def _backward_rows(
    doubled: Tensor, packed: Tensor, grad_out: Tensor, chunk_bytes: int, needs: tuple[bool, bool]
) -> tuple[Tensor | None, Tensor | None]:
    in_channels, num_rows = doubled.shape[0] // 2, doubled.shape[1]
    chunk_rows = rows_per_chunk(in_channels, doubled.element_size(), chunk_bytes, BACKWARD_BUFFERS)
    shifts, pairs = shift_count(in_channels), pair_count(in_channels)
    grad_blocks = doubled.new_empty(num_rows * in_channels) if needs[0] else None
    grad_packed = _accumulator(packed) if needs[1] else None
    padded = _padded(packed, shifts * in_channels)
    buffer = doubled.new_empty(BACKWARD_BUFFERS * shifts * in_channels * min(chunk_rows, num_rows))
    for start, stop in chunk_bounds(num_rows, chunk_rows):
        chunk, grad_chunk = doubled[:, start:stop], grad_out[start:stop].t()
        scratch = _scratch(buffer, shifts * in_channels, stop - start)
        if grad_packed is not None:
            products = _fill_products(scratch, chunk)
            _accumulate_product(grad_packed, grad_chunk, products[:pairs].t())
        if grad_blocks is not None:
            torch.mm(padded.t(), grad_chunk, out=scratch)
            wide = buffer[scratch.numel() : 3 * scratch.numel()]
            pair_grad = scratch.view(shifts, in_channels, -1)
            block = grad_blocks[start * in_channels : stop * in_channels].view(in_channels, -1)
            _input_grad_into(block, pair_grad, chunk, wide)
    if grad_blocks is None:
        return None, grad_packed
    return _rows_from_blocks(grad_blocks, in_channels, chunk_rows), grad_packed


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
        from ann.quadratic_triton import quadratic_forward

        return quadratic_forward(x, weight, kernel == "packed")
    in_channels = x.shape[2]
    budget = _chunk_budget(chunk_bytes, x.device)
    with torch.autocast(x.device.type, enabled=False):
        doubled = _doubled_columns(x.reshape(-1, in_channels))
        packed = packed_coefficients(weight.to(x.dtype), in_channels)
        rows = _forward_rows(doubled, packed, budget)
    out = output_like(x, weight.shape[0])
    out.copy_(rows.view(out.shape))
    return out


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
        from ann.quadratic_triton import quadratic_backward

        grad_x, grad_weight = quadratic_backward(grad, x, weight, kernel == "packed")
        return (grad_x if input_grad else x.new_empty(0)), (
            grad_weight if weight_grad else weight.new_empty(0)
        )
    in_channels = x.shape[2]
    budget = _chunk_budget(chunk_bytes, x.device)
    with torch.autocast(x.device.type, enabled=False):
        doubled = _doubled_columns(x.reshape(-1, in_channels))
        packed = packed_coefficients(weight.to(x.dtype), in_channels)
        grad_rows, grad_packed = _backward_rows(
            doubled,
            packed,
            grad.reshape(-1, grad.shape[2]).to(x.dtype),
            budget,
            (input_grad, weight_grad),
        )
    grad_x = x.new_empty(0)
    if grad_rows is not None:
        grad_x = torch.empty_like(x)
        grad_x.copy_(grad_rows.view(x.shape))
    grad_weight = weight.new_empty(0)
    if grad_packed is not None:
        grad_weight = unpacked_gradient(grad_packed, in_channels).to(weight.dtype)
    return grad_x, grad_weight


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
    device_type = x.device.type
    dtype = torch.promote_types(x.dtype, weight.dtype)
    if dtype != torch.float64 and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return dtype


def quadratic_images(
    x: Tensor, weight: Tensor, chunk_bytes: int | None = None, kernel: str = "packed"
) -> Tensor:
    """x (N, L, C_in) -> (N, L, C_out): y_o = sum_ij K_o,ij x_i x_j at each of the N*L rows,
    in the autocast dtype when autocast is on; the weight's gradient keeps the weight's dtype."""
    in_channels = x.shape[2]
    if weight.shape[1] != in_channels * in_channels:
        raise ValueError(f"weight {tuple(weight.shape)} does not match {in_channels} channels")
    return dit_quadratic(x.to(_compute_dtype(x, weight)), weight, chunk_bytes or 0, kernel)


def quadratic_rows(rows: Tensor, weight: Tensor, chunk_bytes: int | None = None) -> Tensor:
    """rows (P, C_in), weight (C_out, C_in^2) -> (P, C_out): y_o = sum_ij K_o,ij x_i x_j."""
    return quadratic_images(rows.unsqueeze(0), weight, chunk_bytes)[0]


class DitQuadratic(nn.Module):
    """Quadratic (dendritic bilinear) term of a Dit-CNN layer, applied at every pixel.

    Input (N, C, H, W) (any memory format; the output keeps it), (N, H, W, C) with
    channels_last=True, or rows (P, C). `kernel` chooses the CUDA implementation ("packed":
    Triton on the pairs i <= j, the default; "full": Triton on all C^2 products; "chunked":
    the torch path that the CPU always uses)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        channels_last: bool = False,
        chunk_bytes: int | None = None,
        kernel: str = "packed",
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.channels_last = channels_last
        self.chunk_bytes = chunk_bytes
        self.kernel = checked_kernel(kernel)
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels * in_channels))

    def forward(self, x: Tensor) -> Tensor:
        channel_dim = -1 if x.dim() == 2 or self.channels_last else 1
        if x.dim() not in (2, 4) or x.shape[channel_dim] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} channels, got input {tuple(x.shape)}")
        if x.dim() == 2:
            return self._quadratic(x.unsqueeze(0))[0]
        if self.channels_last:
            return self._quadratic(x.flatten(1, 2)).unflatten(1, x.shape[1:3])
        return (
            self._quadratic(x.flatten(2).transpose(1, 2)).transpose(1, 2).unflatten(2, x.shape[2:])
        )

    def _quadratic(self, x: Tensor) -> Tensor:
        return quadratic_images(x, self.weight, self.chunk_bytes, self.kernel)

    def extra_repr(self) -> str:
        channels = f"in_channels={self.in_channels}, out_channels={self.out_channels}"
        return f"{channels}, channels_last={self.channels_last}, kernel={self.kernel}"
