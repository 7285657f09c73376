"""The Triton kernels and the custom operator of the Dit quadratic term.

Without CUDA the kernels run under Triton's interpreter (tests/conftest.py sets
TRITON_INTERPRET=1) on CPU tensors, float32 only (the interpreter's bf16 matrix product is not
exact); tests marked `gpu` run the compiled kernels at real sizes where CUDA is present.
"""

import pytest
import torch

from ann.layers import DitQuadratic, dit_quadratic
from ann.layers.dit_triton import quadratic_backward, quadratic_forward, tile_config
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
    assert (config.block_b, config.block_n) == (16, 16)
    assert tile_config(10**6, 96, 96).block_b == 64


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


@gpu
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("triangular", [True, False], ids=["packed", "full"])
@pytest.mark.parametrize("shape", [(96, 56, 8), (32, 16, 128), (33, 17, 4)])
def test_cuda_kernels_at_real_sizes(shape, triangular, dtype, tolerance):
    channels, size, batch = shape
    generator = torch.Generator().manual_seed(channels)
    x = images("channels_last", batch, channels, size, size, generator, "cuda")
    weight = (torch.randn(channels, channels**2, generator=generator) / channels).cuda()
    expected, grad = reference(x, weight)
    torch.backends.cuda.matmul.allow_tf32 = False
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
