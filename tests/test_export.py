"""The registered models leave PyTorch as graphs: torch.jit.trace (and a scripted model saved
and loaded), torch.export for every registered model, and ONNX (torch.onnx.export with
dynamo=True, the Dit term through ann.layers.dit_onnx) for one model of each family, its output
checked against PyTorch's with onnxruntime. TorchScript scripting is part of timm's contract
(test_timm_contract.py). Inputs are one or two 32 x 32 images, as there."""

import io

import pytest
import timm
import torch
from test_timm_contract import EVERY_MODEL, FAMILIES  # our registered models, one per family
from torch import nn

import ann.models  # noqa: F401  (registers the models and torch.ops.ann.dit_quadratic)
from ann.layers import DitQuadratic
from ann.layers.dit_onnx import DIT_ONNX_TRANSLATIONS, dit_quadratic_onnx, export_onnx


def build(name):
    torch.manual_seed(0)
    model = timm.create_model(name)
    with torch.no_grad():  # the Dit terms of ConvNeXt start at zero; make them count
        for layer in ann.models.quadratic_layers(model):
            layer.weight.normal_(0, 0.01)
    return model.eval()


def images(batch=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 32, 32, generator=generator)


def dit_nodes(graph):
    return [n for n in graph.nodes if n.op == "call_function" and "dit_quadratic" in str(n.target)]


def einsum_quadratic(x, weight):
    """y_o = sum_ij K_o,ij x_i x_j over the last dimension, independently of ann.layers."""
    channels = x.shape[-1]
    return torch.einsum("...i,...j,oij->...o", x, x, weight.reshape(-1, channels, channels))


def test_trace_records_the_operator_and_generalises_over_the_batch():
    model = build("dit_resnet20")
    traced = torch.jit.trace(model, images())
    assert "ann::dit_quadratic" in str(traced.inlined_graph)
    with torch.no_grad():
        x = images(batch=3, seed=1)
        assert torch.allclose(traced(x), model(x), rtol=1e-5, atol=1e-6)


def test_scripted_model_saves_and_loads():
    """A scripted Dit model holds ann::dit_quadratic by name: torch.jit.load finds it once
    ann is imported."""
    with timm.set_scriptable(True):
        model = build("dit_resnet20_transposed")
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(model), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x = images(batch=2)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels_last", [False, True])
def test_scripted_layer_matches_einsum_and_checks_its_input(channels_last):
    layer = DitQuadratic(5, 3, channels_last=channels_last)
    nn.init.normal_(layer.weight)
    scripted = torch.jit.script(layer)
    x = torch.randn(2, 4, 6, 5) if channels_last else torch.randn(2, 5, 4, 6)
    pixels = x if channels_last else x.movedim(1, -1)
    expected = einsum_quadratic(pixels, layer.weight)
    y = scripted(x)
    assert torch.allclose(y if channels_last else y.movedim(1, -1), expected, atol=1e-5)
    rows = torch.randn(7, 5)
    assert torch.allclose(scripted(rows), einsum_quadratic(rows, layer.weight), atol=1e-5)
    with pytest.raises(torch.jit.Error, match="expected 5 channels"):
        scripted(torch.randn(2, 4, 3, 3))


@pytest.mark.parametrize("name", EVERY_MODEL)
def test_torch_export(name):
    model = build(name)
    x = images()
    program = torch.export.export(model, (x,))
    # the Dit term stays one operator node per layer, not decomposed
    assert len(dit_nodes(program.graph)) == len(ann.models.quadratic_layers(model))
    x = images(seed=1)
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), rtol=1e-5, atol=1e-6)


def onnx_outputs(program, *inputs):
    import onnxruntime

    session = onnxruntime.InferenceSession(
        program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    feed = {arg.name: x.numpy() for arg, x in zip(session.get_inputs(), inputs, strict=True)}
    return [torch.from_numpy(y) for y in session.run(None, feed)]


class Rows(nn.Module):
    """A DitQuadratic on rows, with an input scale that gives outputs of order 10."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(3 * x)


@pytest.mark.parametrize("channels_last", [False, True])
def test_onnx_layer_matches_pytorch_with_a_dynamic_batch(channels_last):
    layer = DitQuadratic(6, 4, channels_last=channels_last).eval()
    nn.init.normal_(layer.weight)
    x = torch.randn(2, 5, 3, 6) if channels_last else torch.randn(2, 6, 5, 3)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = export_onnx(layer, (x,), dynamic_shapes=({0: batch},))
    x = torch.randn(5, 5, 3, 6) if channels_last else torch.randn(5, 6, 5, 3)
    (y,) = onnx_outputs(program, x)
    expected = layer(x).detach()
    assert y.shape == expected.shape
    assert torch.allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_onnx_rows_float64():
    layer = Rows(DitQuadratic(4, 3)).double().eval()
    nn.init.normal_(layer.layer.weight)
    x = torch.randn(9, 4, dtype=torch.float64)
    (y,) = onnx_outputs(export_onnx(layer, (x,)), x)
    assert y.dtype == torch.float64
    assert torch.allclose(y, einsum_quadratic(3 * x, layer.layer.weight.detach()), atol=1e-10)


def test_onnx_needs_the_translation_and_then_holds_only_standard_operators():
    """Without ann.layers.dit_onnx the exporter has no ONNX function for the operator (what
    docs/export.md says); with it the graph is plain ai.onnx, no custom domain."""
    layer = DitQuadratic(3, 2).eval()
    x = torch.randn(1, 3, 2, 2)
    with pytest.raises(Exception, match="ann.dit_quadratic"):
        torch.onnx.export(layer, (x,), dynamo=True)
    proto = export_onnx(layer, (x,)).model_proto
    assert {node.domain for node in proto.graph.node} == {""}
    assert "MatMul" in {node.op_type for node in proto.graph.node}
    assert not proto.functions
    assert DIT_ONNX_TRANSLATIONS[torch.ops.ann.dit_quadratic.default] is dit_quadratic_onnx


@pytest.mark.parametrize("name", FAMILIES)
def test_onnx_model_matches_pytorch(name):
    model = build(name)
    program = export_onnx(model, (images(batch=2),))
    x = images(batch=2, seed=1)
    (y,) = onnx_outputs(program, x)
    with torch.no_grad():
        expected = model(x)
    difference = (y - expected).abs().max().item()
    assert difference <= 1e-5 * max(1.0, expected.abs().max().item()), difference
