"""The Triton kernels and the custom operator of the Dit quadratic term.

Without CUDA the kernels run under Triton's interpreter (tests/conftest.py sets
TRITON_INTERPRET=1) on CPU tensors, float32 and float16 only (the interpreter's bf16 matrix
product is not exact); tests marked `gpu` run the compiled kernels at real sizes where CUDA is present.
"""

import pytest
import torch

from ann.layers import DitQuadratic, dit_quadratic
from ann.layers.dit_triton import (
    TileConfig,
    dot_dtype,
    quadratic_backward,
    quadratic_forward,
    tile_config,
)
from ann.models import create_model, quadratic_layers

KERNEL_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
gpu = pytest.mark.gpu


def reference(x, weight):
    """Output, input gradient and weight gradient in float64, by einsum and autograd."""
    channels = x.shape[-1]
    x = x.detach().double().requires_grad_(True)
    weight = weight.detach().double().requires_grad_(True)
    y = torch.einsum("nli,nlj,oij->nlo", x, x, weight.view(-1, channels, channels))
    grad = torch.randn_like(y)
    return (y, *torch.autograd.grad(y, (x, weight), grad)), grad


def images(layout, batch, channels, height, width, generator, device="cpu"):
    """An (N, L, C) view of images in the given memory layout, as DitQuadratic passes them."""
    x = torch.randn(batch, channels, height, width, generator=generator).to(device)
    if layout == "rows":
        return x.permute(0, 2, 3, 1).reshape(1, -1, channels)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x.flatten(2).transpose(1, 2)


def relative_errors(actual, expected):
    return [
        ((a.double() - e).abs().max() / e.abs().max()).item()
        for a, e in zip(actual, expected, strict=True)
    ]


# (channels, out channels, layout, images, height, width): a few hundred rows each; the last
# has enough rows for the weight gradient to be summed over several row ranges.
SHAPES = [
    (1, 3, "nchw", 2, 9, 11),
    (7, 5, "channels_last", 3, 8, 9),
    (16, 16, "rows", 2, 10, 12),
    (33, 20, "nchw", 2, 9, 9),
    (5, 4, "channels_last", 4, 16, 16),
    (12, 48, "channels_last", 2, 6, 7),  # 48 outputs: a 32 + 16 main and tail tile
    (48, 24, "nchw", 1, 6, 6),  # the input gradient's 48 columns: main and tail tile
]


@pytest.mark.parametrize("triangular", [True, False], ids=["packed", "full"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"C{s[0]}-{s[2]}")
def test_kernels_match_float64_reference(shape, triangular):
    channels, out_channels, layout, batch, height, width = shape
    generator = torch.Generator().manual_seed(channels)
    x = images(layout, batch, channels, height, width, generator, KERNEL_DEVICE)
    weight = torch.randn(out_channels, channels**2, generator=generator).to(KERNEL_DEVICE)
    expected, grad = reference(x, weight)
    y = quadratic_forward(x, weight, triangular)
    grad_x, grad_weight = quadratic_backward(grad.float(), x, weight, triangular)
    assert y.shape == expected[0].shape and grad_x.stride() == x.stride()
    assert grad_weight.shape == weight.shape and grad_weight.dtype == weight.dtype
    assert max(relative_errors((y, grad_x, grad_weight), expected)) < 1e-5


def test_output_keeps_the_input_layout():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 16, generator=generator, device=KERNEL_DEVICE)
    nchw = images("nchw", 2, 4, 5, 6, generator, KERNEL_DEVICE)
    last = images("channels_last", 2, 4, 5, 6, generator, KERNEL_DEVICE)
    assert quadratic_forward(nchw, weight).stride() == (6 * 30, 1, 30)
    assert quadratic_forward(last, weight).stride() == (30 * 6, 6, 1)


def test_weight_gradient_is_split_over_row_ranges(monkeypatch):
    """The deterministic split-sum of the weight gradient is exercised, not only one range."""
    import ann.layers.dit_triton as kernels

    splits = []
    original = kernels._splits
    monkeypatch.setattr(kernels, "_splits", lambda *a: splits.append(original(*a)) or splits[-1])
    generator = torch.Generator().manual_seed(1)
    x = images("channels_last", 4, 5, 16, 16, generator, KERNEL_DEVICE)
    quadratic_backward(torch.randn(4, 256, 3).to(KERNEL_DEVICE), x, torch.randn(3, 25).to(x))
    assert splits and splits[0] > 1


def test_tiles_are_padded_to_the_matrix_product_minimum():
    config = tile_config(100, 1, 3)
    assert (config.block_b, config.block_n, config.block_t) == (16, 16, 0)
    with pytest.raises(ValueError, match="power of two"):
        TileConfig(64, 96, 32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("kind", ["matmul", "gram"])
def test_tiles_cover_96_channels_without_padding(kind, dtype):
    """C = O = 96 (ConvNeXt-T's first stage): output columns as 64 + 32, the matmul's reduction
    tile 32 (three full tiles), no dead column or half-empty tile."""
    config = tile_config(128 * 56 * 56, 96, 96, dtype, kind)
    assert (config.block_n, config.block_t) == (64, 32)
    if kind == "matmul":
        assert 96 % config.block_b == 0
    assert tile_config(10**6, 192, 192, dtype, kind).block_n == 128
    assert tile_config(10**6, 192, 192, dtype, kind).block_t == 64


def test_explicit_tiles_with_a_tail_match_float64():
    """Tiles given by hand, main + tail over the outputs, in forward and both gradients."""
    generator = torch.Generator().manual_seed(4)
    x = images("rows", 1, 6, 5, 7, generator, KERNEL_DEVICE)
    weight = torch.randn(40, 36, generator=generator).to(KERNEL_DEVICE)
    expected, grad = reference(x, weight)
    tiles = TileConfig(16, 32, 16, block_t=16)  # 48 columns a program: 40 outputs in one
    y = quadratic_forward(x, weight, True, tiles)
    grads = quadratic_backward(grad.float(), x, weight, True, TileConfig(16, 16, 16), tiles)
    assert max(relative_errors((y, *grads), expected)) < 1e-5


def test_float16_products_do_not_overflow():
    """|x| near 1000: every product x_i x_j is past float16's 65504, the outputs are not. The
    products and coefficients are float32 (TF32 on a GPU), so the result is finite and within
    float16's rounding of float64's."""
    assert dot_dtype(torch.float16) == torch.float32 and dot_dtype(torch.bfloat16) == torch.bfloat16
    generator = torch.Generator().manual_seed(5)
    x = (images("channels_last", 2, 5, 6, 6, generator) * 400 + 1000).to(KERNEL_DEVICE)
    weight = (torch.randn(4, 25, generator=generator) * 1e-3).to(KERNEL_DEVICE)
    expected, grad = reference(x.half(), weight)
    y = quadratic_forward(x.half(), weight)
    grads = quadratic_backward(grad.half(), x.half(), weight)
    assert y.dtype == grads[0].dtype == torch.float16 and grads[1].dtype == torch.float32
    assert all(bool(t.isfinite().all()) for t in (y, *grads))
    assert max(relative_errors((y, *grads), expected)) < 2e-3


def test_custom_op_passes_torch_library_checks():
    """Schema, fake (meta) implementation, autograd registration and tracing of the operator."""
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 12, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 25, generator=generator, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(dit_quadratic, (x, weight, 0, "packed"))
    nchw = torch.randn(2, 5, 3, 4, dtype=torch.float64).flatten(2).transpose(1, 2)
    torch.library.opcheck(dit_quadratic, (nchw.requires_grad_(True), weight, 64, "full"))


def test_custom_op_gradcheck_on_strided_input():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 3, 3, generator=generator, dtype=torch.float64)
    x = x.flatten(2).transpose(1, 2).requires_grad_(True)
    weight = torch.randn(2, 16, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, k: dit_quadratic(a, k, 200, "chunked"), (x, weight))


def small_dit_convnext():
    return create_model(
        "dit_convnext_tiny", num_classes=5, depths=(3, 1, 1, 1), dims=(8, 16, 24, 32)
    )


COMPILED_MODELS = {
    "dit_resnet20": (lambda: create_model("dit_resnet20", in_chans=1, img_size=28), (4, 1, 28, 28)),
    "dit_convnext": (small_dit_convnext, (2, 3, 32, 32)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", COMPILED_MODELS)
def test_fullgraph_compile_matches_eager(name):
    """One graph, no break (checked with dynamo's explain), and the compiled model's outputs and
    gradients equal eager's (float64, so that only reordering could differ). AOTAutograd traces
    the operator's fake and backward here; inductor's code generation for a Dit model is run by
    tests/test_train.py::test_compiled_run_trains_and_resumes_identically."""
    build, shape = COMPILED_MODELS[name]
    torch.manual_seed(0)
    model = build().double()
    for layer in quadratic_layers(model):
        torch.nn.init.normal_(layer.weight, std=0.05)
    x = torch.randn(shape, dtype=torch.float64)
    explanation = torch._dynamo.explain(model)(x)
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    results = []
    for forward in (model, compiled):
        model.zero_grad(set_to_none=True)
        out = forward(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out).double()).sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (eager, eager_grads), (graph, graph_grads) = results
    torch.testing.assert_close(graph, eager, rtol=1e-9, atol=1e-12)
    for got, want in zip(graph_grads, eager_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-10)


# dtype, TF32 matmul on, tolerance: TF32 and float16 products keep float16's 11-bit mantissa
PRECISIONS = {
    "fp32": (torch.float32, False, 1e-5),
    "tf32": (torch.float32, True, 5e-3),
    "fp16": (torch.float16, False, 5e-3),
    "bf16": (torch.bfloat16, False, 2e-2),
}


@gpu
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("triangular", [True, False], ids=["packed", "full"])
@pytest.mark.parametrize("shape", [(96, 56, 8), (32, 16, 128), (33, 17, 4), (192, 28, 4)])
def test_cuda_kernels_at_real_sizes(shape, triangular, precision, monkeypatch):
    dtype, tf32, tolerance = PRECISIONS[precision]
    channels, size, batch = shape
    generator = torch.Generator().manual_seed(channels)
    x = images("channels_last", batch, channels, size, size, generator, "cuda")
    weight = (torch.randn(channels, channels**2, generator=generator) / channels).cuda()
    expected, grad = reference(x, weight)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", tf32)  # restored after
    y = quadratic_forward(x.to(dtype), weight, triangular)
    grad_x, grad_weight = quadratic_backward(grad.to(dtype), x.to(dtype), weight, triangular)
    assert max(relative_errors((y, grad_x, grad_weight), expected)) < tolerance


@gpu
def test_cuda_layer_under_autocast_matches_float32():
    layer = DitQuadratic(48, 48).cuda()
    torch.nn.init.normal_(layer.weight, std=0.02)
    x = torch.randn(16, 48, 14, 14, device="cuda").contiguous(memory_format=torch.channels_last)
    expected = layer(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    assert relative_errors([y.float()], [expected.double()])[0] < 2e-2
