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

Forward forms each chunk's products and multiplies them by the packed coefficients. Its form,
and backward's, follow the library that does the CPU's float32 products (ONEDNN_MATMUL,
`torch_mm_path`):

- oneDNN (as on AMD CPUs), and GPUs: forward row by row (m, D*C), so that oneDNN's
  matmul reads both operands along contiguous memory (`matmul_transposed`); backward in the
  packed form: the pair products column by column (D*C, m) for the weight gradient, and the
  pair gradients S^T g for the input gradient, which four elementwise passes turn into dx;
- torch.mm (as with MKL on Intel CPUs): forward column by column (D*C, m) where the input
  has positions innermost (NCHW), which reads it in one pass (rows otherwise); backward, up
  to OUTER_MAX_CHANNELS input channels, in an outer-product form: u = g (x) x, the
  C_out*C_in products g_o x_j of each column, then dx = M u and dK += u x^T, two plain matrix
  products with twice the multiply-adds but one elementwise pass (at (128, 32, 16x16), one
  thread, on an Intel Xeon: 34-36 ms against 50-53 ms for the packed form); above it, where
  the multiply-adds dominate, in the packed form. The column forward doubles each chunk's
  images in scratch, and for float32 and float64 inputs with positions innermost whose
  images fit a chunk whole the outer backward goes a chunk of whole images at a time
  (`_backward_outer_images`), reading and writing them in place: no full-size copy of the
  input, the output's gradient or the input's gradient is made (forward and backward at
  (128, 32, 16x16) on the Intel Xeon: 0.89x the time at one thread, 0.97x at two).

With oneDNN and several intra-op threads, the chunks are split into one contiguous group per
thread, and each group runs on its own worker thread with one intra-op thread
(`chunk_workers`): a chunk's operations are too small to spread well over threads (backward
at (128, 32, 16x16) on an AMD EPYC: 26-36 ms at one thread, 30-31 ms at two; in groups 19-21
ms at two; measured before the workers really kept one thread each, see `_one_intra_op_thread`).
With torch.mm they use the intra-op threads: on an Intel Xeon at two threads the groups took
1.02x (backward) and 1.05x (forward) the time (MKL's products alone finish about 8% sooner
side by side on two workers than on two intra-op threads).

`chunked_forward` and `chunked_backward` are what the operator `ann::dit_quadratic`
(ann.layers.dit_op) runs off CUDA.
"""

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
from torch import Tensor

T = TypeVar("T")

# Scratch per chunk on the CPU: large enough that a chunk's Python and dispatch overhead stays
# small, small enough to stay in cache. 8 MiB for the row-by-row forward and the packed
# backward: LN + Q forward and backward at (128, 32, 16x16), one thread, on an AMD EPYC,
# 41.1 ms against 43.5 at 4 MiB and 49.0 at 16 MiB. 1 MiB per intra-op thread, about a core's
# L2 cache, for torch.mm's column-by-column forward and outer-product backward: the same on an
# Intel Xeon, one thread 47 ms at 1 MiB, 51 at 2, 54 at 4; two threads 31 ms at 2 MiB, 32 at
# 1/2, 33 at 1, 34 at 4.
CPU_CHUNK_BYTES = 8 * 2**20
CACHED_CHUNK_BYTES_PER_THREAD = 2**20
# The outer-product backward's extra multiply-adds outweigh its fewer elementwise passes above
# 32 input channels (Intel Xeon, one thread: backward at (128, 32, 16x16) 34-36 ms against
# 50-53 for the packed form; at (8, 32x32, 64) 69-94 ms against 56-79, at (8, 56x56, 96)
# channels innermost 711-1100 ms against 516-1020).
OUTER_MAX_CHANNELS = 32
GPU_CHUNK_BYTES = 64 * 2**20  # each chunk is a kernel launch there
FORWARD_BUFFERS = 1  # the products
BACKWARD_BUFFERS = 3  # the products or the doubled pair terms (2), and the pair gradients


def cpu_vendor() -> str:
    """The CPU's vendor string on Linux ("GenuineIntel", "AuthenticAMD"); "" where unknown."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


ONEDNN_AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(
    torch.ops.mkldnn, "_linear_pointwise"
)


def prefers_onednn(vendor: str, onednn_available: bool = ONEDNN_AVAILABLE) -> bool:
    """Whether the float32 products go to oneDNN on a CPU of this vendor.

    MKL's sgemm (torch.mm on the CPU) runs its AVX-512 kernels on Intel CPUs only; on AMD CPUs
    it runs AVX2 code at about half the rate of oneDNN's matmul. There the products go to
    oneDNN, backward takes the packed form, whose products oneDNN runs well, and the chunks run
    in groups on worker threads. On Intel CPUs they are torch.mm's, backward takes the
    outer-product form (up to OUTER_MAX_CHANNELS), and the chunks use the intra-op threads
    (worker groups were no faster there)."""
    return onednn_available and vendor != "GenuineIntel"


ONEDNN_MATMUL = prefers_onednn(cpu_vendor())


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


def default_chunk_bytes(device: torch.device, cached: bool = False) -> int:
    """Scratch per chunk: the GPU's, or the CPU's for the row-by-row forward and the packed
    backward, or (cached) for torch.mm's column-by-column forward and outer-product backward."""
    if device.type != "cpu":
        return GPU_CHUNK_BYTES
    return CACHED_CHUNK_BYTES_PER_THREAD * torch.get_num_threads() if cached else CPU_CHUNK_BYTES


def torch_mm_path(device: torch.device) -> bool:
    """Whether the chunks' products are torch.mm's: on CPUs where oneDNN does not do them (not
    ONEDNN_MATMUL). There an NCHW input is read column by column in forward, and backward takes
    the outer-product form up to OUTER_MAX_CHANNELS input channels."""
    return device.type == "cpu" and not ONEDNN_MATMUL


def _positions_innermost(x: Tensor) -> bool:
    """Whether x (N, L, C) is NCHW underneath: its positions are its innermost dimension."""
    return x.shape[1] > 1 and x.stride(1) == 1


def _columns_forward(x: Tensor) -> bool:
    return torch_mm_path(x.device) and _positions_innermost(x)


def _outer_backward(x: Tensor) -> bool:
    return torch_mm_path(x.device) and x.shape[2] <= OUTER_MAX_CHANNELS


def chunk_bounds(num_rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk_rows, num_rows)) for start in range(0, num_rows, chunk_rows)]


_WORKERS: dict[int, ThreadPoolExecutor] = {}
os.register_at_fork(after_in_child=_WORKERS.clear)  # a forked child has none of the threads


def _one_intra_op_thread() -> None:
    """This thread's OpenMP and MKL setting: one thread. Torch sets a new thread's count at its
    first parallel operation or query, to the count last set by any thread; that happens first
    here, so that the caller's later reset does not reach this thread."""
    torch.get_num_threads()
    torch.set_num_threads(1)


def chunk_workers(count: int) -> ThreadPoolExecutor:
    """`count` threads that each run torch operations on one intra-op thread, started once per
    process; the process-wide intra-op setting stays the caller's."""
    pool = _WORKERS.get(count)
    if pool is None:
        threads = torch.get_num_threads()
        pool = ThreadPoolExecutor(count, "dit-chunks", initializer=_one_intra_op_thread)
        started = threading.Barrier(count)
        list(pool.map(lambda _: started.wait(), range(count)))
        torch.set_num_threads(threads)
        _WORKERS[count] = pool
    return pool


def chunk_groups(
    bounds: list[tuple[int, int]], device: torch.device
) -> list[list[tuple[int, int]]]:
    """The chunks in one contiguous group per CPU intra-op thread where oneDNN does the
    products (ONEDNN_MATMUL); one group elsewhere."""
    threads = torch.get_num_threads() if device.type == "cpu" and ONEDNN_MATMUL else 1
    count = min(len(bounds), threads)
    if count <= 1:
        return [bounds]
    edges = [round(i * len(bounds) / count) for i in range(count + 1)]
    return [bounds[a:b] for a, b in itertools.pairwise(edges)]


def run_groups(task: Callable[[Sequence[tuple[int, int]]], T], groups: list) -> list[T]:
    """task(group) for every group: on this thread for one group, else one group per worker
    thread, under the caller's inference mode and without autograd."""
    if len(groups) == 1:
        return [task(groups[0])]
    inference = torch.is_inference_mode_enabled()

    def in_worker(group: Sequence[tuple[int, int]]) -> T:
        with torch.inference_mode(inference), torch.no_grad():
            return task(group)

    return list(chunk_workers(torch.get_num_threads()).map(in_worker, groups))


def naive_quadratic_rows(rows: Tensor, weight: Tensor) -> Tensor:
    """Reference formula: full outer product x x^T per row, then a product with K^T."""
    num_rows, in_channels = rows.shape
    outer = rows.unsqueeze(2) * rows.unsqueeze(1)
    return outer.reshape(num_rows, in_channels * in_channels) @ weight.t()


def matmul_transposed(a: Tensor, b: Tensor) -> Tensor:
    """a @ b.T. Float32 CPU operands whose rows are contiguous go to oneDNN's matmul, which
    uses AVX-512 where MKL's sgemm (torch.mm on the CPU) falls back to AVX2, as on AMD CPUs:
    about 2x the multiply-adds per second there (benchmarks/train_step.py). Others: torch.mm."""
    if (
        ONEDNN_MATMUL
        and a.device.type == "cpu"
        and a.dtype == b.dtype == torch.float32
        and a.stride(-1) == 1
        and b.stride(-1) == 1
    ):
        return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    return torch.mm(a, b.t())


def _doubled_rows(x: Tensor) -> Tensor:
    """(N*L, 2C): every row of x (N, L, C), any strides, with its channels twice, so that
    cyclic shifts are plain views."""
    images, positions, channels = x.shape
    doubled = x.new_empty(images, positions, 2, channels)
    doubled[:, :, 0].copy_(x)
    doubled[:, :, 1].copy_(doubled[:, :, 0])
    return doubled.view(images * positions, 2 * channels)


def _fill_row_products(scratch: Tensor, doubled_rows: Tensor) -> Tensor:
    """scratch (m, D*C) <- x_i x_(i+d mod C) at column d*C + i, for the m rows (m, 2C)."""
    rows, channels = doubled_rows.shape[0], doubled_rows.shape[1] // 2
    shifts = scratch.shape[1] // channels
    shifted = doubled_rows.as_strided(
        (rows, shifts, channels), (doubled_rows.stride(0), 1, 1), doubled_rows.storage_offset()
    )
    products = scratch.view(rows, shifts, channels)
    torch.mul(doubled_rows[:, :channels].unsqueeze(1), shifted, out=products)
    return scratch


def _doubled_columns(x: Tensor, buffer: Tensor | None = None) -> Tensor:
    """(2C, N*L): the channels of every row of x (N, L, C), any strides, twice, so that cyclic
    shifts are plain views; one copy pass (not a reshape's copy and then a concatenation's),
    into the front of `buffer` when given."""
    images, positions, channels = x.shape
    size = 2 * channels * images * positions
    doubled = x.new_empty(size) if buffer is None else buffer[:size]
    doubled.view(2, channels, images, positions).copy_(
        x.permute(2, 0, 1).unsqueeze(0).expand(2, -1, -1, -1)
    )
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
    is added into the same view, so one reduction over d finishes both. The view reads the
    first copy only where k - d wraps, at channels C - d >= C - C//2, so only those are
    copied there."""
    shifts, channels, width = pair_grad.shape
    halves = wide.view(shifts, 2, channels, width)
    torch.mul(pair_grad, doubled[:channels], out=halves[:, 1])
    wrapped = channels - channels // 2
    halves[:, 0, wrapped:].copy_(halves[:, 1, wrapped:])
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
            images.copy_(block.unflatten(1, (count, self.positions)).transpose(0, 1))
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

    Forward multiplies all D*C products of a row by them, so the products need no slicing
    (which would leave their rows strided). Backward's product for the pair gradients covers
    them too (C/2 extra rows of C(C+1)/2) and writes zeros there, where the input gradient
    expects them, without a separate pass."""
    return torch.nn.functional.pad(packed, (0, products_per_row - packed.shape[1]))


def _accumulator(like: Tensor) -> Tensor:
    return torch.zeros_like(like, dtype=torch.promote_types(like.dtype, torch.float32))


def _scratch(buffer: Tensor, rows: int, width: int) -> Tensor:
    return buffer[: rows * width].view(rows, width)


def _summed_over_groups(
    task: Callable[[Sequence[tuple[int, int]]], Tensor | None],
    bounds: list[tuple[int, int]],
    device: torch.device,
    writer: _RowsWriter | None,
) -> Tensor | None:
    """task(group) over the chunk groups (`run_groups`), the writer finished, and the groups'
    accumulators summed (None where the task returns none)."""
    total, *others = run_groups(task, chunk_groups(bounds, device))
    if writer is not None:
        writer.finish()
    if total is not None:
        for other in others:
            total.add_(other)
    return total


def _forward_chunks(
    x: Tensor, packed: Tensor, chunk_bytes: int, out: Tensor, by_columns: bool
) -> None:
    """Fills out (N, L, C_out), written chunk by chunk in its own layout, from x (N, L, C).
    The products of a chunk are formed row by row (m, D*C) from x's doubled rows, oneDNN's
    form, or column by column (D*C, m), torch.mm's, for an input with positions innermost
    (NCHW): then a chunk is whole images, doubled in scratch, so no full-size copy of the input
    is made."""
    images, positions, in_channels = x.shape
    num_rows = images * positions
    chunk_rows = rows_per_chunk(in_channels, x.element_size(), chunk_bytes, FORWARD_BUFFERS)
    if by_columns:
        chunk_rows = max(1, chunk_rows // positions) * positions
    else:
        doubled_rows = _doubled_rows(x)
    writer = _RowsWriter(out)
    chunk_rows = writer.chunk_rows(chunk_rows)
    products_per_row = shift_count(in_channels) * in_channels
    padded = _padded(packed, products_per_row)

    def forward_group(bounds: Sequence[tuple[int, int]]) -> None:
        buffer = x.new_empty(products_per_row * min(chunk_rows, num_rows))
        if by_columns:
            doubled_buffer = x.new_empty(2 * in_channels * min(chunk_rows, num_rows))
        for start, stop in bounds:
            if by_columns:
                chunk = x[start // positions : stop // positions]
                doubled = _doubled_columns(chunk, doubled_buffer)
                scratch = _scratch(buffer, products_per_row, stop - start)
                block = torch.mm(padded, _fill_products(scratch, doubled))
            else:
                scratch = _scratch(buffer, stop - start, products_per_row)
                products = _fill_row_products(scratch, doubled_rows[start:stop])
                block = matmul_transposed(products, padded).t()
            writer.write(start, block)

    bounds = chunk_bounds(num_rows, chunk_rows)
    _summed_over_groups(forward_group, bounds, x.device, writer)


def _images_per_chunk(x: Tensor, bytes_per_image: int, chunk_bytes: int) -> int:
    """Whole images of an input with positions innermost (NCHW underneath) whose scratch fits
    in chunk_bytes, at most all of x's, for `_backward_outer_images`; 0 when none does, the
    layout is another or the sums need a wider dtype than x's (the column chunks then split
    images)."""
    same_dtype_sums = _accumulator(x).dtype == x.dtype  # float32, float64
    if not (_positions_innermost(x) and same_dtype_sums):
        return 0
    return min(x.shape[0], chunk_bytes // bytes_per_image)


def _backward_packed(
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
    coefficient_rows = _padded(packed, shifts * in_channels).t().contiguous()
    width = min(chunk_rows, num_rows)

    def backward_group(bounds: Sequence[tuple[int, int]]) -> Tensor | None:
        grad_packed = _accumulator(packed) if weight_grad else None
        buffer = doubled.new_empty(2 * shifts * in_channels * width)
        if writer is not None:
            block_buffer = doubled.new_empty(in_channels * width)
            grad_rows_buffer = doubled.new_empty(width * grad_columns.shape[0])
        for start, stop in bounds:
            chunk, grad_chunk = doubled[:, start:stop], grad_columns[:, start:stop]
            if grad_packed is not None:
                scratch = _scratch(buffer, shifts * in_channels, stop - start)
                products = _fill_products(scratch, chunk)
                grad_packed.add_(matmul_transposed(grad_chunk, products[:pairs]))
            if writer is not None:
                grad_rows = _scratch(grad_rows_buffer, stop - start, grad_columns.shape[0])
                grad_rows.copy_(grad_chunk.t())
                pair_grad = matmul_transposed(coefficient_rows, grad_rows)
                wide = buffer[: 2 * pair_grad.numel()]
                block = _scratch(block_buffer, in_channels, stop - start)
                _input_grad_into(block, pair_grad.view(shifts, in_channels, -1), chunk, wide)
                writer.write(start, block)
        return grad_packed

    bounds = chunk_bounds(num_rows, chunk_rows)
    return _summed_over_groups(backward_group, bounds, doubled.device, writer)


def _symmetric_rows(weight: Tensor, out_channels: int, in_channels: int) -> Tensor:
    """M (C_in, C_out*C_in), M[k, (o, j)] = K_o,kj + K_o,jk."""
    kernel = weight.view(out_channels, in_channels, in_channels)
    symmetric = kernel + kernel.transpose(1, 2)
    return symmetric.transpose(0, 1).reshape(in_channels, out_channels * in_channels)


def _backward_outer_images(
    x: Tensor,
    weight: Tensor,
    grad: Tensor,
    per_chunk: int,
    grad_x: Tensor | None,
    weight_grad: bool,
) -> Tensor | None:
    """`_backward_outer` a chunk of whole images at a time, for x (N, L, C_in), grad (N, L,
    C_out) and grad_x with positions innermost: every product reads and writes the images in
    place (no full-size copies). Returns the (C_out*C_in, C_in) sum of u x^T when weight_grad."""
    images, positions, in_channels = x.shape
    out_channels = grad.shape[2]
    width = out_channels * in_channels
    symmetric = _symmetric_rows(weight, out_channels, in_channels)
    x_images, grad_images = x.transpose(1, 2), grad.transpose(1, 2)
    grad_weight = _accumulator(weight).view(width, in_channels) if weight_grad else None
    buffer = x.new_empty(per_chunk, out_channels, in_channels, positions)
    symmetric_images = symmetric.expand(per_chunk, -1, -1)
    x_chunks, grad_chunks = x_images.split(per_chunk), grad_images.split(per_chunk)
    grad_x_chunks = grad_x.transpose(1, 2).split(per_chunk) if grad_x is not None else None
    for index, (x_chunk, grad_chunk) in enumerate(zip(x_chunks, grad_chunks, strict=True)):
        count = len(x_chunk)
        outer = torch.mul(grad_chunk.unsqueeze(2), x_chunk.unsqueeze(1), out=buffer[:count])
        outer = outer.view(count, width, positions)
        if grad_x_chunks is not None:
            torch.bmm(symmetric_images[:count], outer, out=grad_x_chunks[index])
        if grad_weight is not None:
            for image_outer, image_x in zip(outer, x_chunk, strict=True):
                grad_weight.addmm_(image_outer, image_x.t())
    return grad_weight


def _backward_outer(
    x_columns: Tensor,
    weight: Tensor,
    grad_columns: Tensor,
    chunk_bytes: int,
    grad_x: Tensor | None,
    weight_grad: bool,
) -> Tensor | None:
    """The outer-product form of backward. For every column, u = g (x) x, the C_out*C_in
    products g_o x_j; then dx = M u with M[k, (o, j)] = K_o,kj + K_o,jk, and the gradient of
    K_o,ij accumulates u_(o,i) x_j. Two plain matrix products with twice the multiply-adds of
    the packed form's, but one elementwise pass instead of four.

    Fills grad_x (N, L, C_in, written in its own layout) when given; returns the (C_out*C_in,
    C_in) sum of u x^T when weight_grad (`_symmetrised` makes it the weight's gradient).
    x_columns: (C_in, P), grad_columns: (C_out, P), the output's gradient."""
    in_channels, num_rows = x_columns.shape
    out_channels = grad_columns.shape[0]
    width = out_channels * in_channels
    chunk_rows = max(1, chunk_bytes // (width * x_columns.element_size()))
    writer = _RowsWriter(grad_x) if grad_x is not None else None
    if writer is not None:
        chunk_rows = writer.chunk_rows(chunk_rows)
    symmetric = _symmetric_rows(weight, out_channels, in_channels)

    def backward_group(bounds: Sequence[tuple[int, int]]) -> Tensor | None:
        grad_weight = _accumulator(weight).view(width, in_channels) if weight_grad else None
        buffer = x_columns.new_empty(width * min(chunk_rows, num_rows))
        for start, stop in bounds:
            x_chunk, grad_chunk = x_columns[:, start:stop], grad_columns[:, start:stop]
            outer = _scratch(buffer, width, stop - start)
            products = outer.view(out_channels, in_channels, -1)
            torch.mul(grad_chunk.unsqueeze(1), x_chunk.unsqueeze(0), out=products)
            if writer is not None:
                writer.write(start, torch.mm(symmetric, outer))
            if grad_weight is not None:
                grad_weight.add_(torch.mm(outer, x_chunk.t()))
        return grad_weight

    bounds = chunk_bounds(num_rows, chunk_rows)
    return _summed_over_groups(backward_group, bounds, x_columns.device, writer)


def _symmetrised(grad_weight: Tensor, out_channels: int, in_channels: int) -> Tensor:
    """(C_out, C_in^2) from the outer form's (C_out*C_in, C_in) sum, exactly symmetric as the
    true gradient is: K's antisymmetric part, which no output sees, then never moves by
    rounding."""
    square = grad_weight.view(out_channels, in_channels, in_channels)
    return ((square + square.transpose(1, 2)) / 2).view(out_channels, -1)


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


def _chunk_budget(chunk_bytes: int, device: torch.device, cached: bool) -> int:
    return chunk_bytes or default_chunk_bytes(device, cached)


def chunked_forward(x: Tensor, weight: Tensor, chunk_bytes: int) -> Tensor:
    """x (N, L, C_in), weight (C_out, C_in^2) -> (N, L, C_out) in x's dtype, laid out as x;
    `chunk_bytes` of scratch per chunk (0: the device's default)."""
    columns = _columns_forward(x)
    budget = _chunk_budget(chunk_bytes, x.device, columns)
    with torch.autocast(x.device.type, enabled=False):
        packed = packed_coefficients(weight.to(x.dtype), x.shape[2])
        out = output_like(x, weight.shape[0])
        _forward_chunks(x, packed, budget, out, by_columns=columns)
    return out


def chunked_backward(
    grad: Tensor, x: Tensor, weight: Tensor, chunk_bytes: int, input_grad: bool, weight_grad: bool
) -> tuple[Tensor, Tensor]:
    """Gradients of `chunked_forward` with respect to x (laid out as x) and weight (its dtype);
    an empty tensor in place of one that is not asked for."""
    _, positions, in_channels = x.shape
    out_channels = weight.shape[0]
    outer = _outer_backward(x)
    budget = _chunk_budget(chunk_bytes, x.device, outer)
    grad_x = output_like(x, in_channels) if input_grad else None
    image_bytes = out_channels * in_channels * positions * x.element_size()
    per_chunk = _images_per_chunk(x, image_bytes, budget) if outer else 0
    with torch.autocast(x.device.type, enabled=False):
        kernel, grad = weight.to(x.dtype), grad.to(x.dtype)
        if per_chunk:
            grad_sum = _backward_outer_images(x, kernel, grad, per_chunk, grad_x, weight_grad)
        elif outer:
            grad_sum = _backward_outer(
                _columns(x), kernel, _columns(grad), budget, grad_x, weight_grad
            )
        else:
            packed = packed_coefficients(kernel, in_channels)
            grad_sum = _backward_packed(
                _doubled_columns(x), packed, _columns(grad), budget, grad_x, weight_grad
            )
        grad_weight = None
        if grad_sum is not None and outer:
            grad_weight = _symmetrised(grad_sum, out_channels, in_channels)
        elif grad_sum is not None:
            grad_weight = unpacked_gradient(grad_sum, in_channels)
    grad_weight = weight.new_empty(0) if grad_weight is None else grad_weight.to(weight.dtype)
    return (grad_x if grad_x is not None else x.new_empty(0)), grad_weight
