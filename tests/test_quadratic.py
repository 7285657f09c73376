import platform
from pathlib import Path

import pytest
import torch

import ann.layers.dit_chunked as quadratic
from ann.layers import DitQuadratic, quadratic_rows
from ann.layers.dit_chunked import naive_quadratic_rows, packed_coefficients, pair_indices


def einsum_reference(x, weight, channel_dim):
    """y_o = sum_ij K_o,ij x_i x_j, written independently of ann.layers."""
    channels = x.shape[channel_dim]
    kernel = weight.reshape(weight.shape[0], channels, channels)
    moved = x.movedim(channel_dim, -1)
    return torch.einsum("...i,...j,oij->...o", moved, moved, kernel).movedim(-1, channel_dim)


def relative_error(actual, expected):
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def outputs_and_grads(forward, x, weight, grad_out=None):
    x = x.detach().requires_grad_(True)
    weight = weight.detach().requires_grad_(True)
    y = forward(x, weight)
    grad_out = torch.randn_like(y) if grad_out is None else grad_out
    grad_x, grad_weight = torch.autograd.grad(y, (x, weight), grad_out)
    return y, grad_x, grad_weight, grad_out


@pytest.fixture(params=["torch_mm", "onednn"])
def cpu_form(request, monkeypatch):
    """Runs a test with each form of the CPU path, whichever this CPU takes: torch.mm's
    (forward by columns, the outer-product backward) and oneDNN's (forward by rows, the packed
    backward; its products are torch.mm's where the build lacks oneDNN)."""
    monkeypatch.setattr(quadratic, "torch_mm_path", lambda device: request.param == "torch_mm")
    return request.param


def module_forward(in_channels, out_channels, **options):
    layer = DitQuadratic(in_channels, out_channels, **options)

    def forward(x, weight):
        return torch.func.functional_call(layer, {"weight": weight}, (x,))

    return forward


# (input shape, out_channels, module options, channel dim)
CASES = {
    "nchw_odd": ((2, 5, 3, 7), 3, {}, 1),
    "batch1_even": ((1, 4, 5, 5), 6, {}, 1),
    "channels_last": ((2, 3, 7, 6), 4, {"channels_last": True}, -1),
    "flat_2d": ((11, 7), 2, {}, -1),
    "one_channel": ((3, 1, 2, 2), 2, {}, 1),
    "two_channels": ((2, 2, 3, 3), 3, {}, 1),
    "tiny_chunks": ((2, 6, 3, 5), 5, {"chunk_bytes": 1}, 1),
    "few_chunks": ((3, 9, 4, 4), 7, {"chunk_bytes": 9 * 5 * 8 * 10}, 1),
    "wide": ((2, 40, 3, 3), 3, {}, 1),  # above OUTER_MAX_CHANNELS: packed backward
    # two whole images per chunk in float64 (4 * 6 * 9 * 8 bytes each way), the last one alone
    "image_chunks": ((5, 6, 3, 3), 4, {"chunk_bytes": 2 * 4 * 6 * 9 * 8}, 1),
}


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("case", CASES)
def test_matches_einsum_reference(case, dtype, tolerance, cpu_form):
    shape, out_channels, options, channel_dim = CASES[case]
    generator = torch.Generator().manual_seed(len(case))
    in_channels = shape[channel_dim]
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    weight = torch.randn(out_channels, in_channels**2, generator=generator, dtype=torch.float64)
    expected = outputs_and_grads(lambda a, k: einsum_reference(a, k, channel_dim), x, weight)
    forward = module_forward(in_channels, out_channels, **options)
    actual = outputs_and_grads(forward, x.to(dtype), weight.to(dtype), expected[3].to(dtype))
    for got, want in zip(actual[:3], expected[:3], strict=True):
        assert got.shape == want.shape
        assert got.dtype == dtype
        assert relative_error(got.double(), want) < tolerance


def recording(monkeypatch, name, calls):
    original = getattr(quadratic, name)

    def record(*args):
        calls.append(name)
        return original(*args)

    monkeypatch.setattr(quadratic, name, record)


@pytest.mark.parametrize(
    "layout, dtype, expected",
    [
        ("nchw", torch.float32, ["_backward_outer_images"]),
        ("channels_last", torch.float32, []),
        ("nchw", torch.bfloat16, []),  # bf16 sums in float32: the column chunks
    ],
)
def test_nchw_input_goes_image_by_image_on_the_torch_mm_path(monkeypatch, layout, dtype, expected):
    monkeypatch.setattr(quadratic, "torch_mm_path", lambda device: True)
    calls = []
    recording(monkeypatch, "_backward_outer_images", calls)
    layer = DitQuadratic(8, 5).to(dtype)
    torch.nn.init.normal_(layer.weight)
    x = torch.randn(3, 8, 4, 4, dtype=dtype)
    x = x.to(memory_format=torch.channels_last) if layout == "channels_last" else x
    layer(x.requires_grad_(True)).sum().backward()
    assert calls == expected
    assert x.grad.shape == x.shape and layer.weight.grad is not None


def test_tiny_budget_runs_one_row_per_chunk(monkeypatch, cpu_form):
    calls = []
    original = quadratic.chunk_bounds

    def recording(num_rows, chunk_rows):
        calls.append((num_rows, chunk_rows))
        return original(num_rows, chunk_rows)

    monkeypatch.setattr(quadratic, "chunk_bounds", recording)
    x = torch.randn(13, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 36, dtype=torch.float64, requires_grad=True)
    quadratic_rows(x, weight, chunk_bytes=1).sum().backward()
    assert calls == [(13, 1), (13, 1)]
    assert len(original(13, 1)) == 13


def test_chunk_rows_follow_budget():
    assert quadratic.rows_per_chunk(32, 4, 1) == 1
    assert quadratic.rows_per_chunk(31, 4, 16 * 31 * 4 * 10) == 10
    assert quadratic.rows_per_chunk(31, 8, 16 * 31 * 8 * 30, buffers=3) == 10
    bounds = quadratic.chunk_bounds(10, 4)
    assert bounds == [(0, 4), (4, 8), (8, 10)]


@pytest.mark.parametrize("in_channels, out_channels", [(3, 2), (4, 3)])
def test_gradcheck(in_channels, out_channels, cpu_form):
    generator = torch.Generator().manual_seed(in_channels)
    rows = torch.randn(7, in_channels, generator=generator, dtype=torch.float64)
    weight = torch.randn(out_channels, in_channels**2, generator=generator, dtype=torch.float64)
    square = weight.view(out_channels, in_channels, in_channels)
    assert not torch.allclose(square, square.transpose(1, 2))
    inputs = (rows.requires_grad_(True), weight.requires_grad_(True))
    assert torch.autograd.gradcheck(lambda r, k: quadratic_rows(r, k, chunk_bytes=200), inputs)


def test_weight_gradient_is_symmetric_and_matches_naive(cpu_form):
    generator = torch.Generator().manual_seed(3)
    rows = torch.randn(40, 6, generator=generator, dtype=torch.float64)
    weight = torch.randn(5, 36, generator=generator, dtype=torch.float64)
    _, _, grad, grad_out = outputs_and_grads(quadratic_rows, rows, weight)
    _, _, naive_grad, _ = outputs_and_grads(naive_quadratic_rows, rows, weight, grad_out)
    square = grad.view(5, 6, 6)
    assert torch.equal(square, square.transpose(1, 2))
    torch.testing.assert_close(grad, naive_grad, rtol=1e-12, atol=1e-12)


def test_expanded_output_gradient():
    rows = torch.randn(9, 5, dtype=torch.float64)
    weight = torch.randn(3, 25, dtype=torch.float64)
    ones = torch.ones(9, 3, dtype=torch.float64)
    actual = outputs_and_grads(
        lambda r, k: quadratic_rows(r, k).sum(), rows, weight, torch.ones((), dtype=torch.float64)
    )
    expected = outputs_and_grads(naive_quadratic_rows, rows, weight, ones)
    for got, want in zip(actual[1:3], expected[1:3], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_gradient_for_one_input_only(cpu_form):
    rows = torch.randn(10, 5, dtype=torch.float64)
    weight = torch.randn(4, 25, dtype=torch.float64)
    _, grad_rows, grad_weight, grad_out = outputs_and_grads(naive_quadratic_rows, rows, weight)
    frozen = quadratic_rows(rows.requires_grad_(True), weight)
    (only_rows,) = torch.autograd.grad(frozen, rows, grad_out)
    weight.requires_grad_(True)
    fixed_input = quadratic_rows(rows.detach(), weight)
    (only_weight,) = torch.autograd.grad(fixed_input, weight, grad_out)
    torch.testing.assert_close(only_rows, grad_rows, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(only_weight, grad_weight, rtol=1e-12, atol=1e-12)


def saved_elements(forward, *inputs):
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward(*inputs)
    return total


def test_saved_for_backward_is_linear_in_pixels():
    channels = 32
    layer = DitQuadratic(channels, channels)
    x = torch.randn(4, channels, 16, 16, requires_grad=True)
    pixels = 4 * 16 * 16
    saved = saved_elements(layer, x)
    assert saved <= pixels * channels + 2 * layer.weight.numel()
    assert saved < pixels * channels**2 / 4
    rows = x.detach().permute(0, 2, 3, 1).reshape(-1, channels).requires_grad_(True)
    assert saved_elements(naive_quadratic_rows, rows, layer.weight) >= pixels * channels**2


def test_zero_initialised_with_reference_parameter_count():
    layer = DitQuadratic(5, 3)
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    assert layer.weight.shape == (3, 25)
    assert sum(parameter.numel() for parameter in layer.parameters()) == 3 * 5 * 5
    assert torch.count_nonzero(layer.weight) == 0
    assert torch.count_nonzero(layer(torch.randn(2, 5, 4, 4))) == 0
    assert "in_channels=5" in repr(layer) and "out_channels=3" in repr(layer)


def test_channels_last_memory_format_input_keeps_layout():
    layer = DitQuadratic(4, 3)
    torch.nn.init.normal_(layer.weight)
    x = torch.randn(2, 4, 5, 6)
    y = layer(x.to(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert layer(x).is_contiguous()
    torch.testing.assert_close(y, layer(x))


def test_rejects_wrong_channel_count():
    with pytest.raises(ValueError):
        DitQuadratic(4, 3)(torch.randn(2, 5, 3, 3))
    with pytest.raises(ValueError):
        DitQuadratic(4, 3, channels_last=True)(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError):
        quadratic_rows(torch.randn(2, 4), torch.randn(3, 15))


@pytest.mark.parametrize("channels", range(1, 9))
def test_pairs_cover_each_unordered_pair_once(channels):
    first, second = pair_indices(channels)
    pairs = sorted(
        zip(
            torch.minimum(first, second).tolist(),
            torch.maximum(first, second).tolist(),
            strict=True,
        )
    )
    assert pairs == [(i, j) for i in range(channels) for j in range(i, channels)]


def test_packed_coefficients_give_same_quadratic_form():
    generator = torch.Generator().manual_seed(5)
    weight = torch.randn(3, 49, generator=generator, dtype=torch.float64)
    x = torch.randn(7, generator=generator, dtype=torch.float64)
    first, second = pair_indices(7)
    packed = packed_coefficients(weight, 7)
    assert packed.shape == (3, 28)
    full = weight.view(3, 7, 7) @ x @ x
    torch.testing.assert_close(packed @ (x[first] * x[second]), full, rtol=1e-12, atol=1e-12)


def test_cpu_autocast_bfloat16(cpu_form):
    """Under bfloat16 autocast: a bfloat16 output, and float32 gradients, close to float32's."""
    layer = DitQuadratic(6, 4)
    torch.nn.init.normal_(layer.weight, std=0.1)
    x = torch.randn(2, 6, 3, 3, requires_grad=True)
    grad_out = torch.randn(2, 4, 3, 3)
    expected = layer(x)
    expected_grads = torch.autograd.grad(expected, (x, layer.weight), grad_out)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    assert relative_error(y.float(), expected) < 3e-2
    grads = torch.autograd.grad(y, (x, layer.weight), grad_out.bfloat16())
    for got, want in zip(grads, expected_grads, strict=True):
        assert got.dtype == torch.float32
        assert relative_error(got, want) < 3e-2


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "rows", "strided"])
@pytest.mark.parametrize("chunk_bytes", [0, 3000])
def test_chunked_path_writes_each_layout_in_place(layout, chunk_bytes, cpu_form):
    """Forward and input gradient are written chunk by chunk straight into the layout of the
    input (whole images per chunk for NCHW, also when a chunk would be smaller than an image;
    any rows for channels innermost; a buffer for other strides), matching float64 einsum."""
    generator = torch.Generator().manual_seed(6)
    base = torch.randn(3, 5, 4, 6, generator=generator, dtype=torch.float64)
    if layout == "channels_last":
        base = base.contiguous(memory_format=torch.channels_last)
    x = base.flatten(2).transpose(1, 2)
    if layout == "rows":
        x = base.permute(0, 2, 3, 1).reshape(1, -1, 5)
    if layout == "strided":  # every other image of a batch: neither layout's strides
        x = torch.randn(6, 24, 5, generator=generator, dtype=torch.float64)[::2]
    weight = torch.randn(4, 25, generator=generator, dtype=torch.float64)
    grad = torch.randn(*x.shape[:2], 4, generator=generator, dtype=torch.float64)
    reference = torch.einsum("nli,nlj,oij->nlo", x, x, weight.view(4, 5, 5))
    leaf = x.clone().requires_grad_(True)
    (torch.einsum("nli,nlj,oij->nlo", leaf, leaf, weight.view(4, 5, 5)) * grad).sum().backward()
    y = quadratic.chunked_forward(x, weight, chunk_bytes)
    grad_x, _ = quadratic.chunked_backward(grad, x, weight, chunk_bytes, True, False)
    torch.testing.assert_close(y, reference)
    torch.testing.assert_close(grad_x, leaf.grad)
    assert grad_x.stride() == torch.empty_like(x).stride()


@pytest.mark.parametrize("onednn", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_cpu_matrix_products_match_float64(monkeypatch, onednn, channels_last):
    """Both CPU matrix products (oneDNN's where the build has it, with the packed backward;
    torch.mm, with the outer-product backward) give the float64 einsum's output and gradients
    in float32, over chunks of several sizes."""
    monkeypatch.setattr(quadratic, "ONEDNN_MATMUL", onednn and quadratic.ONEDNN_AVAILABLE)
    generator = torch.Generator().manual_seed(11)
    x64 = torch.randn(3, 32, 5, 5, generator=generator, dtype=torch.float64)
    weight64 = torch.randn(8, 32 * 32, generator=generator, dtype=torch.float64) / 32
    expected = outputs_and_grads(lambda a, k: einsum_reference(a, k, 1), x64, weight64)
    x = x64.float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    chunk_bytes = 17 * 32 * 4 * 40  # 40 rows forward, 13 backward: whole images for NCHW
    forward = module_forward(32, 8, chunk_bytes=chunk_bytes)
    actual = outputs_and_grads(forward, x, weight64.float(), expected[3].float())
    for got, want in zip(actual[:3], expected[:3], strict=True):
        assert got.dtype == torch.float32
        assert relative_error(got.double(), want) < 2e-6


def test_the_cpu_vendor_chooses_the_matrix_library():
    """oneDNN's products on AMD (and unknown) CPUs where the build has oneDNN; torch.mm's (MKL
    with its AVX-512 kernels) on Intel CPUs and without oneDNN. This machine's vendor is read."""
    assert quadratic.prefers_onednn("AuthenticAMD", onednn_available=True)
    assert quadratic.prefers_onednn("", onednn_available=True)
    assert not quadratic.prefers_onednn("GenuineIntel", onednn_available=True)
    assert not quadratic.prefers_onednn("AuthenticAMD", onednn_available=False)
    vendor = quadratic.cpu_vendor()
    assert quadratic.ONEDNN_MATMUL == quadratic.prefers_onednn(vendor)
    if Path("/proc/cpuinfo").is_file() and platform.machine() in ("x86_64", "AMD64"):
        assert vendor in ("GenuineIntel", "AuthenticAMD", "HygonGenuine")


def test_matmul_transposed_takes_any_strides():
    generator = torch.Generator().manual_seed(12)
    a = torch.randn(7, 9, generator=generator)
    b = torch.randn(9, 5, generator=generator)
    for left, right in [(a, b.t()), (a.t().contiguous().t(), b.t()), (a[:, :5], b[:5].t())]:
        product = quadratic.matmul_transposed(left, right)
        torch.testing.assert_close(product, (left.double() @ right.double().t()).float())


@pytest.fixture
def three_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("channels_last", [False, True])
def test_chunk_groups_on_worker_threads_match_float64(
    monkeypatch, three_threads, channels_last, cpu_form
):
    """With oneDNN's products and three intra-op threads the chunks run in three groups on
    worker threads: the same output and gradients as float64 einsum, the caller's thread
    setting unchanged, and under inference mode too (the output tensor the workers write is an
    inference tensor). With torch.mm's, one group."""
    bounds = quadratic.chunk_bounds(4 * 30, 12)
    monkeypatch.setattr(quadratic, "ONEDNN_MATMUL", False)
    assert quadratic.chunk_groups(bounds, torch.device("cpu")) == [bounds]
    monkeypatch.setattr(quadratic, "ONEDNN_MATMUL", True)
    generator = torch.Generator().manual_seed(13)
    x64 = torch.randn(4, 12, 6, 5, generator=generator, dtype=torch.float64)
    weight64 = torch.randn(5, 144, generator=generator, dtype=torch.float64) / 12
    expected = outputs_and_grads(lambda a, k: einsum_reference(a, k, 1), x64, weight64)
    x = x64.contiguous(memory_format=torch.channels_last) if channels_last else x64
    chunk_bytes = 7 * 12 * 8 * 30  # 30 rows backward: 12 chunks, 3 groups
    groups = quadratic.chunk_groups(bounds, torch.device("cpu"))
    assert sorted(map(len, groups)) == [3, 3, 4] and sum(groups, []) == bounds
    forward = module_forward(12, 5, chunk_bytes=chunk_bytes)
    actual = outputs_and_grads(forward, x, weight64, expected[3])
    for got, want in zip(actual[:3], expected[:3], strict=True):
        assert relative_error(got, want) < 1e-12
    with torch.inference_mode():
        assert relative_error(forward(x, weight64), expected[0]) < 1e-12
    assert torch.get_num_threads() == 3


def _threads_after_a_parallel_operation(_: int) -> int:
    torch.randn(2**16).mul_(2)
    return torch.get_num_threads()


def test_chunk_workers_keep_one_intra_op_thread(monkeypatch, three_threads):
    """Each worker runs its operations on one intra-op thread, also after the caller has set
    its own count again (torch initialises a thread's count at its first operation, from the
    count set last by any thread), and the caller keeps its three."""
    monkeypatch.setattr(quadratic, "_WORKERS", {})
    workers = quadratic.chunk_workers(2)
    assert list(workers.map(_threads_after_a_parallel_operation, range(4))) == [1, 1, 1, 1]
    assert torch.get_num_threads() == 3


def _output_in_child(layer, x):
    return layer(x).detach().tolist()


def test_chunk_workers_are_restarted_in_a_forked_child(monkeypatch, three_threads):
    """A forked child (a DataLoader worker) has none of the parent's worker threads; its first
    Dit layer starts its own instead of waiting on threads that do not exist."""
    import multiprocessing

    monkeypatch.setattr(quadratic, "ONEDNN_MATMUL", True)

    layer = DitQuadratic(8, 4, chunk_bytes=5 * 8 * 4 * 10)
    x = torch.randn(2, 8, 6, 6)
    expected = layer(x).detach()  # starts the parent's workers
    assert quadratic._WORKERS
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(_output_in_child, (layer, x))
        torch.testing.assert_close(torch.tensor(child.get(timeout=60)), expected)
