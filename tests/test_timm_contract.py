"""Every model this project registers in timm keeps timm's model contract, checked through
timm's public API as timm's own model tests check it: forward, backward, default cfg,
forward_features / forward_head, reset_classifier, features_only, forward_intermediates with
prune_intermediate_layers, torch.fx feature extraction, and TorchScript (torch.jit.script of the
model, and of its torch.fx graph, as timm's test_model_forward_torchscript and
test_model_forward_fx_torchscript script them). torch.export and ONNX are in test_export.py.

The default cfg and the feature_info are checked for every model we register. The tests that
run the network check one model of each family (the 20-layer CIFAR ResNets of the five
families, dit_convnext_tiny): the other depths and sizes are the same classes, built by the same
function with other block counts and widths (ann.models.cifar_resnet, ann.models.dit_convnext),
and running them all costs minutes (the TorchScript tests run them all, the others marked slow).
Inputs are tiny (one 32 x 32 image) to keep each test to a
few seconds."""

import math

import pytest
import timm
import torch
from timm.models import (
    FeatureInfo,
    get_graph_node_names,
    get_notrace_functions,
    get_notrace_modules,
)
from torchvision.models import feature_extraction

import ann.models  # noqa: F401  (registers the models)
from ann.models import CIFAR_MODEL_NAMES, CIFAR_VARIANT_NAMES

OURS = (
    CIFAR_MODEL_NAMES
    + CIFAR_VARIANT_NAMES
    + tuple(f"dit_convnext_{size}" for size in ("tiny", "small", "base"))
)
# one model per family: the networks that the tests below run
FAMILIES = tuple(name for name in OURS if name.endswith(("20", "20_transposed", "_tiny")))
# every model: one of each family in the fast tests, the others slow
EVERY_MODEL = [
    name if name in FAMILIES else pytest.param(name, marks=pytest.mark.slow) for name in OURS
]
BATCH = 1


def tiny_input(name, batch=BATCH):
    torch.manual_seed(0)
    return torch.randn(batch, 3, 32, 32)


def build(name, **kwargs):
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs)
    if "convnext" in name:  # the Dit terms start at zero; make them count
        with torch.no_grad():
            for layer in ann.models.quadratic_layers(model):
                layer.weight.normal_(0, 0.01)
    return model.eval()


def test_every_model_of_ours_is_registered():
    assert set(OURS) <= set(timm.list_models())
    assert set(OURS) <= set(ann.MODEL_NAMES)


@pytest.mark.parametrize("name", OURS)
def test_default_cfg(name):
    model = build(name)
    cfg = model.pretrained_cfg
    assert cfg is model.default_cfg
    assert timm.models.get_pretrained_cfg(name) is not None
    assert not cfg.get("url") and not cfg.get("hf_hub_id")
    for key in ("num_classes", "input_size", "mean", "std", "first_conv", "classifier"):
        assert cfg.get(key) is not None, key
    assert model.num_classes == cfg["num_classes"]
    assert len(cfg["mean"]) == len(cfg["std"]) == cfg["input_size"][0]
    state = model.state_dict()
    for key in ("classifier", "first_conv"):
        names = cfg[key] if isinstance(cfg[key], tuple | list) else (cfg[key],)
        assert all(f"{n}.weight" in state for n in names), (key, names)
    assert model.get_classifier() is model.get_submodule(cfg["classifier"])


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_features_head_and_reset_classifier(name):
    model = build(name, num_classes=7)
    x = tiny_input(name)
    cfg = model.pretrained_cfg
    reduction = cfg["input_size"][-1] // cfg["pool_size"][-1]
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
        assert torch.equal(model.forward_head(features), logits)
    assert logits.shape == (BATCH, 7)
    assert features.shape[1] == model.num_features
    assert features.shape[2:] == (x.shape[2] // reduction, x.shape[3] // reduction)
    assert pre_logits.shape == (BATCH, model.head_hidden_size)
    model.reset_classifier(0)
    assert model.num_classes == 0
    with torch.no_grad():
        assert torch.equal(model(x), pre_logits)
    model.reset_classifier(0, "")
    with torch.no_grad():
        assert model(x).dim() == 4
    model.reset_classifier(5, "avg")
    with torch.no_grad():
        assert model(x).shape == (BATCH, 5)


@pytest.mark.parametrize("name", FAMILIES)
def test_backward_reaches_every_parameter(name):
    model = build(name, num_classes=3).train()
    model(tiny_input(name)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", FAMILIES)
def test_features_only_matches_feature_info(name):
    model = build(name, features_only=True)
    x = tiny_input(name)
    with torch.no_grad():
        outputs = model(x)
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    assert len(outputs) == len(channels) >= 3
    for out, width, reduction in zip(outputs, channels, reductions, strict=True):
        assert out.shape == (BATCH, width, x.shape[2] // reduction, x.shape[3] // reduction)
    picked = build(name, features_only=True, out_indices=(1, 2))
    with torch.no_grad():
        chosen = picked(x)
    assert [o.shape[1] for o in chosen] == channels[1:3]


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_intermediates_and_pruning(name):
    model = build(name)
    x = tiny_input(name)
    info = FeatureInfo(model.feature_info, list(range(len(model.feature_info))))
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        assert torch.allclose(final, model.forward_features(x))
        only = model.forward_intermediates(x, indices=[1], intermediates_only=True)
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
    assert len(intermediates) == len(info.channels())
    for out, width, reduction in zip(intermediates, info.channels(), info.reduction(), strict=True):
        assert out.shape[:2] == (BATCH, width)
        assert out.shape[2] == math.ceil(x.shape[2] / reduction)
    assert len(only) == 1 and torch.equal(only[0], intermediates[1])
    assert [o.shape for o in last_two] == [o.shape for o in intermediates[-2:]]
    kept = model.prune_intermediate_layers(indices=[1])
    assert list(kept) == [1]
    with torch.no_grad():
        pruned = model.forward_intermediates(x, indices=[1], intermediates_only=True)
        assert torch.equal(pruned[0], intermediates[1])
        assert model(x).shape[1] == model.num_features == info.channels()[1]


@pytest.mark.parametrize("name", FAMILIES)
def test_fx_feature_extraction(name):
    model = build(name)
    x = tiny_input(name)
    train_nodes, eval_nodes = get_graph_node_names(model)
    dit_inside = [n for n in eval_nodes if n.endswith(".quadratic") or ".quadratic." in n]
    if ann.models.quadratic_layers(model):
        # the Dit term is one leaf node, not traced through
        assert dit_inside and all(n.endswith("quadratic") for n in dit_inside)
    graph_features = build(name, features_only=True, feature_cls="fx")
    with torch.no_grad():
        outputs = graph_features(x)
        expected = build(name).forward_intermediates(x, intermediates_only=True)
    assert len(outputs) == len(expected)
    for traced, eager in zip(outputs, expected, strict=True):
        assert torch.allclose(traced, eager, atol=1e-6)


@pytest.mark.parametrize("name", OURS)
def test_feature_info_of_every_model(name):
    model = timm.create_model(name)
    info = model.feature_info
    assert len(info) >= 3
    assert all(model.get_submodule(level["module"]) is not None for level in info)
    assert info[-1]["num_chs"] == model.num_features
    assert [level["reduction"] for level in info] == sorted(level["reduction"] for level in info)


def last_node_extractor(model):
    """The model as a torch.fx GraphModule that returns its output, traced as timm's
    test_model_forward_fx_torchscript traces it: timm's no-trace modules (DitQuadratic among
    them) and functions stay leaves."""
    tracer_kwargs = dict(
        leaf_modules=get_notrace_modules(),
        autowrap_functions=get_notrace_functions(),
        param_shapes_constant=True,
    )
    train_nodes, eval_nodes = feature_extraction.get_graph_node_names(
        model, tracer_kwargs=tracer_kwargs
    )
    return feature_extraction.create_feature_extractor(
        model,
        train_return_nodes=train_nodes[-1:],
        eval_return_nodes=eval_nodes[-1:],
        tracer_kwargs=tracer_kwargs,
    )


def scripted_model(name):
    with timm.set_scriptable(True):
        model = build(name)
    return model, torch.jit.script(model)


@pytest.mark.parametrize("name", EVERY_MODEL)
def test_torchscript_forward_matches_eager(name):
    model, scripted = scripted_model(name)
    x = tiny_input(name)
    with torch.no_grad():
        expected = model(x)
        outputs = [scripted(x) for _ in range(2)]  # the second run is the optimised graph
    if ann.models.quadratic_layers(model):
        assert "ann::dit_quadratic" in str(scripted.inlined_graph)
    for output in outputs:
        assert output.shape == (BATCH, model.num_classes)
        assert torch.isfinite(output).all()
        assert torch.allclose(output, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", EVERY_MODEL)
def test_fx_graph_scripts_and_matches_eager(name):
    with timm.set_scriptable(True):
        model = build(name)
    scripted = torch.jit.script(last_node_extractor(model))
    x = tiny_input(name)
    with torch.inference_mode():
        expected = model(x)
        outputs = tuple(scripted(x).values())
    assert len(outputs) == 1
    assert outputs[0].shape == (BATCH, model.num_classes)
    assert torch.allclose(outputs[0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["dit_resnet20", "dit_convnext_tiny"])
def test_scripted_model_trains(name):
    """Gradients through a scripted Dit model (the custom operator's autograd) equal eager ones."""
    model, scripted = scripted_model(name)
    model.train()
    scripted.train()
    x = tiny_input(name, batch=2)
    model(x).square().mean().backward()
    scripted(x).square().mean().backward()
    eager_grads = dict(model.named_parameters())
    for key, parameter in scripted.named_parameters():
        assert parameter.grad is not None, key
        assert torch.allclose(parameter.grad, eager_grads[key].grad, rtol=1e-4, atol=1e-7), key
