import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from ann.flops import (
    count_macs,
    measure_macs,
    quadratic_macs,
    reference_quadratic_macs,
)
from ann.layers import DitBranch, DitQuadratic, FanQuadraticConv2d, QuadraConv2d
from ann.models import (
    CIFAR_MODEL_NAMES,
    CIFAR_VARIANT_NAMES,
    IMAGENET_MODEL_NAMES,
    MODEL_NAMES,
    CifarResNet,
    DitDepthwiseConv,
    count_parameters,
    create_model,
    dit_parameters,
    quadratic_layers,
)

# Seed talk, CIFAR table: model -> (# param. CIFAR-10, # param. CIFAR-100), millions.
SEED_CIFAR_PARAMS = {
    "resnet20": (0.27, 0.30),
    "qresnet20": (0.81, 0.84),
    "quadraresnet20": (0.81, 0.84),
    "dit_resnet20": (0.30, 0.33),
    "resnet32": (0.46, 0.49),
    "qresnet32": (1.39, 1.42),
    "quadraresnet32": (1.39, 1.42),
    "dit_resnet32": (0.49, 0.52),
    "resnet56": (0.86, 0.89),
    "qresnet56": (2.55, 2.58),
    "quadraresnet56": (2.55, 2.58),
    "dit_resnet56": (0.89, 0.92),
    "resnet110": (1.73, 1.76),
    "qresnet110": (5.17, 5.20),
    "quadraresnet110": (5.17, 5.20),
    "dit_resnet110": (1.76, 1.79),
}
# Seed talk, ImageNet table: model -> (# param., FLOPs), millions and billions.
SEED_IMAGENET = {
    "convnext_tiny": (29, 4.5),
    "dit_convnext_tiny": (29, 5.0),
    "convnext_small": (50, 8.7),
    "dit_convnext_small": (50, 9.2),
    "convnext_base": (89, 15.4),
    "dit_convnext_base": (90, 16.7),
}
TOLERANCE = 0.03


def test_seed_tables_cover_every_model():
    assert set(SEED_CIFAR_PARAMS) == set(CIFAR_MODEL_NAMES)
    assert set(SEED_IMAGENET) == set(IMAGENET_MODEL_NAMES)
    assert set(MODEL_NAMES) == (
        set(CIFAR_MODEL_NAMES) | set(CIFAR_VARIANT_NAMES) | set(IMAGENET_MODEL_NAMES)
    )


@pytest.mark.parametrize("name", [*SEED_CIFAR_PARAMS, *CIFAR_VARIANT_NAMES])
def test_cifar_parameter_counts_match_seed(name):
    published = SEED_CIFAR_PARAMS[name.removesuffix("_transposed")]
    for num_classes, millions in zip((10, 100), published, strict=True):
        count = count_parameters(create_model(name, num_classes=num_classes))
        assert count == pytest.approx(millions * 1e6, rel=TOLERANCE), (name, num_classes)


@pytest.mark.parametrize("name", SEED_IMAGENET)
def test_imagenet_parameter_counts_match_seed(name):
    model = create_model(name, num_classes=1000, device="meta")
    assert count_parameters(model) == pytest.approx(SEED_IMAGENET[name][0] * 1e6, rel=TOLERANCE)


def test_resnet20_parameters_exactly():
    convs = 3 * 16 * 9 + 6 * 16 * 16 * 9 + 16 * 32 * 9 + 5 * 32 * 32 * 9
    convs += 32 * 64 * 9 + 5 * 64 * 64 * 9 + 16 * 32 + 32 * 64
    batch_norms = 2 * (16 + 6 * 16 + 7 * 32 + 7 * 64)
    head = 256 * 10 + 10
    assert count_parameters(create_model("resnet20")) == convs + batch_norms + head


def test_quadratic_baselines_count_their_published_neurons():
    """Fan: three biased kernels per 3x3 convolution of the blocks and a linear stem without
    bias (Fan's qresnet.py; the quadratic stem is an option); QuadraLib: three biased kernels,
    each with its BN, per 3x3 convolution of the blocks, and a linear stem."""
    linear, fan, quadra = (
        create_model(f"{family}20") for family in ("resnet", "qresnet", "quadraresnet")
    )
    convs_3x3 = [
        m for m in linear.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    stem = linear.stem[0]
    kernels = sum(m.weight.numel() for m in convs_3x3)
    outputs = sum(m.out_channels for m in convs_3x3)
    block_kernels = kernels - stem.weight.numel()
    block_outputs = outputs - stem.out_channels
    assert count_parameters(fan) - count_parameters(linear) == 2 * block_kernels + 3 * block_outputs
    assert type(fan.stem[0]) is nn.Conv2d and fan.stem[0].bias is None
    quadratic_stem = create_model("qresnet20", stem_layer=FanQuadraticConv2d)
    assert count_parameters(quadratic_stem) - count_parameters(linear) == 2 * kernels + 3 * outputs
    assert count_parameters(quadratic_stem) - count_parameters(fan) == 912
    extra = 2 * block_kernels + 3 * block_outputs + 3 * 2 * block_outputs
    assert count_parameters(quadra) - count_parameters(linear) == extra
    assert sum(isinstance(m, FanQuadraticConv2d) for m in fan.modules()) == len(convs_3x3) - 1
    assert sum(isinstance(m, QuadraConv2d) for m in quadra.modules()) == len(convs_3x3) - 1


def test_qresnet110_has_the_counted_parameters():
    """5,182,298 on CIFAR-10, 5.18M (the Dit paper's table: 5.17M); 5,183,210 with the
    quadratic stem, 5.18M too."""
    assert count_parameters(create_model("qresnet110")) == 5_182_298
    quadratic_stem = create_model("qresnet110", stem_layer=FanQuadraticConv2d)
    assert count_parameters(quadratic_stem) == 5_183_210


@pytest.mark.parametrize("conv_init", ["pytorch", "kaiming_normal"])
def test_qresnet_draws_w_r_as_fans_code(conv_init):
    """kaiming_normal_ (N(0, 2 / fan_in)) for every W_r, whatever conv_init says for the
    other convolutions; the stem keeps conv_init's draw."""
    torch.manual_seed(0)
    model = create_model("qresnet110", conv_init=conv_init)
    for layer in (m for m in model.modules() if isinstance(m, FanQuadraticConv2d)):
        weight = layer.conv_r.weight.detach()
        if weight.numel() > 10_000:
            expected = (2 / weight[0].numel()) ** 0.5
            assert float(weight.std()) == pytest.approx(expected, rel=0.05)
            assert float(weight.mean()) == pytest.approx(0, abs=0.05 * expected)
    stem = model.stem[0].weight.detach()
    bound = 1 / stem[0].numel() ** 0.5
    if conv_init == "pytorch":  # kaiming_uniform_(a=sqrt(5)): U(-bound, bound)
        assert stem.abs().max() <= bound
    else:
        assert stem.abs().max() > bound  # N(0, 2 / 27) reaches past 1 / sqrt(27)


def fan_by_hand(layer, x):
    def conv(c, inp):
        return F.conv2d(inp, c.weight, c.bias, c.stride, c.padding)

    r, g, b = layer.conv_r, layer.conv_g, layer.conv_b
    return conv(r, x) * conv(g, x) + conv(b, x * x)


@pytest.mark.slow
@pytest.mark.parametrize("conv_init", ["pytorch", "kaiming_normal"])
def test_qresnet_neuron_starts_as_its_linear_convolution(conv_init):
    torch.manual_seed(0)
    model = create_model("qresnet20", conv_init=conv_init)
    layers = [m for m in model.modules() if isinstance(m, FanQuadraticConv2d)]
    assert len(layers) == 18
    for layer in layers:
        assert torch.equal(layer.conv_g.weight, torch.zeros_like(layer.conv_g.weight))
        assert torch.equal(layer.conv_g.bias, torch.ones_like(layer.conv_g.bias))
        assert not layer.conv_b.weight.any() and not layer.conv_b.bias.any()
        assert layer.conv_r.weight.std() > 0 and layer.conv_r.bias is not None
    layer = layers[3]
    x = torch.randn(2, layer.conv_r.in_channels, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer.conv_r(x), rtol=0, atol=0)
        # affine in x: f(a x + b y) - f(0) = a (f(x) - f(0)) + b (f(y) - f(0))
        y, zero = torch.randn_like(x), torch.zeros_like(x)
        f0 = layer(zero)
        torch.testing.assert_close(
            layer(2 * x - 3 * y) - f0, 2 * (layer(x) - f0) - 3 * (layer(y) - f0)
        )
    # the whole network at init equals the same network with every neuron replaced by W_r * x + b_r
    model.eval()
    randomise_batch_norms(model)
    linearised = copy.deepcopy(model)
    for module in list(linearised.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, FanQuadraticConv2d):
                setattr(module, child_name, child.conv_r)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images), linearised(images))
    # the quadratic parameters get gradients at the linear start, and the formula is Fan's
    model.train()
    model(images).square().sum().backward()
    assert layer.conv_g.weight.grad.abs().sum() > 0 and layer.conv_b.weight.grad.abs().sum() > 0
    with torch.no_grad():
        for conv in (layer.conv_g, layer.conv_b):
            conv.weight.normal_(0, 0.1)
            conv.bias.normal_()
        torch.testing.assert_close(layer(x), fan_by_hand(layer, x), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(layer(x), layer.conv_r(x), atol=1e-3)


def test_quadraresnet_has_quadralib_neurons_and_a_linear_stem():
    torch.manual_seed(0)
    model = create_model("quadraresnet20").eval()
    stem = model.stem[0]
    assert type(stem) is nn.Conv2d and stem.bias is None
    randomise_batch_norms(model)
    for stage in model.stages:
        for block in stage:
            for neuron in (block.conv1, block.conv2):
                assert isinstance(neuron, QuadraConv2d)
                for index in (1, 2, 3):
                    conv = getattr(neuron, f"conv{index}")
                    assert conv.bias is not None and conv.kernel_size == (3, 3)
                    assert isinstance(getattr(neuron, f"bn{index}"), nn.BatchNorm2d)
            if not isinstance(block.shortcut, nn.Identity):
                assert type(block.shortcut[0]) is nn.Conv2d  # linear projection
    neuron = model.stages[1][0].conv1
    assert neuron.conv1.stride == (2, 2)
    x = torch.randn(2, 16, 8, 8)

    def branch(index):
        conv, bn = getattr(neuron, f"conv{index}"), getattr(neuron, f"bn{index}")
        y = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)
        return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps)

    with torch.no_grad():
        expected = branch(1) * branch(2) + branch(3)
        torch.testing.assert_close(neuron(x), expected, rtol=1e-5, atol=1e-5)
        assert neuron(x).shape == (2, 32, 4, 4)


def conv_weights(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def pytorch_drawn(model):
    """The convolutions whose weights PyTorch's default (or conv_init) draws: not Fan's W_r
    (Kaiming-normal in Fan's code) nor the ReLinear kernels (zero)."""
    fan = {
        id(conv)
        for m in model.modules()
        if isinstance(m, FanQuadraticConv2d)
        for conv in (m.conv_r, m.conv_g, m.conv_b)
    }
    return [conv for conv in conv_weights(model) if id(conv) not in fan]


@pytest.mark.parametrize("name", ["resnet56", "dit_resnet56", "qresnet20", "quadraresnet20"])
def test_conv_init_is_pytorchs_default_as_in_the_official_code(name):
    torch.manual_seed(0)
    default = create_model(name)
    for conv in pytorch_drawn(default):
        fan_in = conv.weight[0].numel()
        bound = 1 / fan_in**0.5  # kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        assert conv.weight.abs().max() <= bound
        assert float(conv.weight.detach().std()) == pytest.approx(bound / 3**0.5, rel=0.25)
    torch.manual_seed(0)
    kaiming = create_model(name, conv_init="kaiming_normal")
    ratios = [
        float(k.weight.detach().std() / d.weight.detach().std())
        for k, d in zip(pytorch_drawn(kaiming), pytorch_drawn(default), strict=True)
        if d.weight.numel() > 1000
    ]
    assert ratios and all(r == pytest.approx(6**0.5, rel=0.1) for r in ratios)  # 2.45x
    with pytest.raises(ValueError, match="conv_init"):
        create_model(name, conv_init="xavier")


def official_cifar_quadratic(x, weight):
    """Direct port of the forward of official: CIFAR/model/Conv2d_quadratic.py."""
    c = x.size(1)
    rows = x.transpose(1, 3).reshape(-1, c)
    qinput = torch.bmm(rows.unsqueeze(-1), rows.unsqueeze(-2)).reshape(-1, c**2)
    y = F.linear(qinput, weight).reshape(x.size(0), x.size(2), x.size(3), weight.size(0))
    return y.transpose(1, 3).transpose(2, 3)


@pytest.mark.parametrize("height, width", [(16, 16), (5, 7)])
def test_transposed_branch_equals_the_official_layer(height, width):
    torch.manual_seed(0)
    branch = DitBranch(6, height, width, transpose=True).double()
    plain = DitBranch(6, height, width).double()
    with torch.no_grad():
        branch.quadratic.weight.normal_()
        branch.norm.weight.uniform_(0.5, 1.5)
        branch.norm.bias.normal_()
    plain.load_state_dict(branch.state_dict())
    x = torch.randn(3, 6, height, width, dtype=torch.float64)
    with torch.no_grad():
        official = official_cifar_quadratic(branch.norm(x), branch.quadratic.weight)
        torch.testing.assert_close(branch(x), official)
        assert not torch.allclose(plain(x), official)
        if height == width:
            torch.testing.assert_close(plain(x).transpose(2, 3), official)


def test_transposed_dit_resnet_block_is_the_official_block():
    torch.manual_seed(0)
    model = create_model("dit_resnet20_transposed").eval()
    assert set(model.state_dict()) == set(create_model("dit_resnet20").state_dict())
    randomise_batch_norms(model)
    block = model.stages[1][0]
    assert block.dit.transpose and quadratic_layers(model) == [block.dit.quadratic]
    with torch.no_grad():
        block.dit.quadratic.weight.normal_(0, 0.05)
        x, y = block_input_and_output(model, block, torch.randn(2, 3, 32, 32))
        h, linear = linear_part(block, x)
        official = official_cifar_quadratic(block.dit.norm(h), block.dit.quadratic.weight)
        expected = torch.relu((linear + official) / 2 + block.shortcut(x))
        torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)


NARROW_CONVNEXT = {"dims": (16, 32, 64, 128)}  # the tiny layout at a sixth of the width
FORWARD_CASES = {
    "resnet20": {},
    "dit_resnet20": {},
    "qresnet20": {},
    "quadraresnet20": {},
    "dit_resnet20_transposed": {},
    "convnext_tiny": NARROW_CONVNEXT,
    "dit_convnext_tiny": NARROW_CONVNEXT,
}


@pytest.fixture(scope="module")
def dit_convnext_tiny():
    return timm.create_model("dit_convnext_tiny", num_classes=10)


@pytest.mark.parametrize("name", FORWARD_CASES)
@pytest.mark.parametrize("in_chans", [3, 1])
def test_forward_shapes(name, in_chans):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_chans=in_chans, **FORWARD_CASES[name])
    out = model(torch.randn(2, in_chans, 32, 32))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_cifar_models_are_timm_models():
    for name in ("resnet20", "dit_resnet110", "qresnet32", "quadraresnet56"):
        assert isinstance(timm.create_model(name, num_classes=100), CifarResNet)
    assert {"dit_convnext_tiny", "dit_convnext_small", "dit_convnext_base"} <= set(
        timm.list_models("dit_convnext_*")
    )
    with pytest.raises(ValueError):
        create_model("resnet18")


def dit_places(model):
    return {
        (stage_index, block_index)
        for stage_index, stage in enumerate(model.stages)
        for block_index, block in enumerate(stage)
        if block.dit is not None
    }


def test_dit_branch_where_configured():
    default = create_model("dit_resnet20")
    assert dit_places(default) == {(1, 0)}
    branch = default.stages[1][0].dit
    assert branch.norm.normalized_shape == (16, 16)
    assert (branch.quadratic.in_channels, branch.quadratic.out_channels) == (32, 32)
    assert quadratic_layers(default) == [branch.quadratic]
    assert dit_places(create_model("resnet20")) == set()
    assert quadratic_layers(create_model("qresnet20")) == []

    custom = create_model("dit_resnet32", dit_blocks=[(0, 4), (2, 1)], img_size=28, in_chans=1)
    assert dit_places(custom) == {(0, 4), (2, 1)}
    assert custom.stages[0][4].dit.norm.normalized_shape == (28, 28)
    assert custom.stages[2][1].dit.norm.normalized_shape == (7, 7)
    assert custom.stages[2][1].dit.quadratic.in_channels == 64
    with pytest.raises(ValueError):
        create_model("dit_resnet20", dit_blocks=[(1, 3)])


def randomise_batch_norms(model):
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            for tensor in (module.weight, module.bias, module.running_mean):
                tensor.data.copy_(torch.randn(tensor.shape, generator=generator))
            module.running_var.data.uniform_(0.5, 2.0, generator=generator)


def block_input_and_output(model, block, x):
    seen = {}
    handle = block.register_forward_hook(lambda module, args, out: seen.update(x=args[0], y=out))
    model(x)
    handle.remove()
    return seen["x"], seen["y"]


def linear_part(block, x):
    h = block.act1(block.bn1(block.conv1(x)))
    return h, block.bn2(block.conv2(h))


def test_zero_kernel_halves_the_convolution():
    torch.manual_seed(0)
    model = create_model("dit_resnet20").eval()
    randomise_batch_norms(model)
    block = model.stages[1][0]
    with torch.no_grad():
        x, y = block_input_and_output(model, block, torch.randn(2, 3, 32, 32))
        _, linear = linear_part(block, x)
        shortcut = block.shortcut(x)
        torch.testing.assert_close(y, torch.relu(linear / 2 + shortcut))
        assert not torch.allclose(y, torch.relu(linear + shortcut))


def test_dit_block_adds_quadratic_of_layer_norm():
    torch.manual_seed(0)
    model = create_model("dit_resnet20").eval()
    randomise_batch_norms(model)
    block = model.stages[1][0]
    with torch.no_grad():
        block.dit.quadratic.weight.normal_(0, 0.05)
        block.dit.norm.weight.uniform_(0.5, 1.5)
        block.dit.norm.bias.normal_()
        x, y = block_input_and_output(model, block, torch.randn(2, 3, 32, 32))
        h, linear = linear_part(block, x)
        mean = h.mean(dim=(2, 3), keepdim=True)
        var = h.var(dim=(2, 3), unbiased=False, keepdim=True)
        normed = (h - mean) / torch.sqrt(var + 1e-5) * block.dit.norm.weight + block.dit.norm.bias
        kernel = block.dit.quadratic.weight.view(32, 32, 32)
        quadratic = torch.einsum("nihw,oij,njhw->nohw", normed, kernel, normed)
        expected = torch.relu((linear + quadratic) / 2 + block.shortcut(x))
        torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)


def test_dit_parameters_are_the_quadratic_branches():
    dit = create_model("dit_resnet20")
    branch = dit.stages[1][0].dit
    expected = {id(branch.norm.weight), id(branch.norm.bias), id(branch.quadratic.weight)}
    assert {id(p) for p in dit_parameters(dit)} == expected
    assert len(dit_parameters(dit)) == 3
    assert dit_parameters(create_model("resnet20")) == []

    convnext = create_model("dit_convnext_tiny", device="meta")
    assert dit_parameters(convnext) == [convnext.stages[0].blocks[2].conv_dw.quadratic.weight]


def dit_convnext_places(model):
    return {
        (stage_index, block_index)
        for stage_index, stage in enumerate(model.stages)
        for block_index, block in enumerate(stage.blocks)
        if isinstance(block.conv_dw, DitDepthwiseConv)
    }


def test_timm_builds_dit_convnext(dit_convnext_tiny):
    assert dit_convnext_places(dit_convnext_tiny) == {(0, 2)}
    wrapper = dit_convnext_tiny.stages[0].blocks[2].conv_dw
    assert (wrapper.quadratic.in_channels, wrapper.quadratic.out_channels) == (96, 96)
    assert not wrapper.quadratic.channels_last
    assert quadratic_layers(dit_convnext_tiny) == [wrapper.quadratic]
    assert dit_convnext_tiny.num_classes == 10

    options = {"num_classes": 5, "drop_path_rate": 0.1, "in_chans": 1, "device": "meta"}
    passed = timm.create_model("dit_convnext_tiny", **options)
    assert passed.num_classes == 5 and passed.stem[0].in_channels == 1
    assert isinstance(passed.stages[3].blocks[2].drop_path, DropPath)
    plain = timm.create_model("convnext_tiny", num_classes=10, device="meta")
    assert dit_convnext_places(plain) == set()
    assert quadratic_layers(plain) == []

    base = timm.create_model("dit_convnext_base", device="meta")
    assert base.stages[0].blocks[2].conv_dw.quadratic.in_channels == 128
    moved = timm.create_model("dit_convnext_small", device="meta", dit_blocks=[(1, 0), (2, 26)])
    assert dit_convnext_places(moved) == {(1, 0), (2, 26)}
    with pytest.raises(ValueError):
        timm.create_model("dit_convnext_tiny", device="meta", dit_blocks=[(0, 3)])


def test_zero_kernel_dit_convnext_equals_convnext():
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    base = create_model("convnext_tiny", **NARROW_CONVNEXT).eval()
    torch.manual_seed(0)
    dit = create_model("dit_convnext_tiny", **NARROW_CONVNEXT).eval()
    wrapper = dit.stages[0].blocks[2].conv_dw
    with torch.no_grad():
        torch.testing.assert_close(dit(x), base(x))
        wrapper.quadratic.weight.normal_()
        feature = torch.randn(2, 16, 8, 8)
        quadratic = torch.einsum(
            "nihw,oij,njhw->nohw", feature, wrapper.quadratic.weight.view(16, 16, 16), feature
        )
        torch.testing.assert_close(
            wrapper(feature), wrapper.conv(feature) + quadratic, rtol=1e-4, atol=1e-4
        )


@pytest.mark.parametrize(
    "in_channels, out_channels, shape, options",
    [
        (32, 32, (32, 16, 16), {}),
        (5, 3, (5, 7, 4), {}),
        (6, 9, (3, 5, 6), {"channels_last": True}),
        (7, 4, (7,), {}),
    ],
)
def test_flop_counter_on_lone_quadratic_layer(in_channels, out_channels, shape, options):
    layer = DitQuadratic(in_channels, out_channels, **options)
    pixels = torch.Size(shape).numel() // in_channels
    pairs = in_channels * (in_channels + 1) // 2
    count = measure_macs(layer, shape)
    assert count.total == count.quadratic == pixels * out_channels * pairs + pixels * pairs
    assert count.quadratic == quadratic_macs(pixels, in_channels, out_channels)
    assert count.reference_quadratic == pixels * out_channels * in_channels**2
    assert count.reference_quadratic == reference_quadratic_macs(pixels, in_channels, out_channels)


def test_resnet20_macs_exactly():
    def convs(pixels, c_in, c_out, kernel=9, count=1):
        return count * pixels * c_in * c_out * kernel

    expected = (
        convs(32 * 32, 3, 16)
        + convs(32 * 32, 16, 16, count=6)
        + convs(16 * 16, 16, 32)
        + convs(16 * 16, 32, 32, count=5)
        + convs(16 * 16, 16, 32, 1)
        + convs(8 * 8, 32, 64)
        + convs(8 * 8, 64, 64, count=5)
        + convs(8 * 8, 32, 64, 1)
        + 256 * 10
    )
    model = create_model("resnet20")
    assert count_macs(model) == expected
    assert model.training


def test_dit_resnet20_macs_exceed_resnet20_by_the_branch():
    difference = count_macs(create_model("dit_resnet20")) - count_macs(create_model("resnet20"))
    assert difference == quadratic_macs(16 * 16, 32, 32)
    assert (
        count_macs(create_model("dit_resnet20", in_chans=1), (1, 32, 32))
        - count_macs(create_model("resnet20", in_chans=1), (1, 32, 32))
        == difference
    )


def test_convnext_tiny_macs_at_224(dit_convnext_tiny):
    plain = create_model("convnext_tiny", num_classes=10, device="meta")
    base = measure_macs(plain, (3, 224, 224))
    dit = measure_macs(dit_convnext_tiny, (3, 224, 224))
    assert base.total == pytest.approx(SEED_IMAGENET["convnext_tiny"][1] * 1e9, rel=TOLERANCE)
    assert dit.total - base.total == dit.quadratic == quadratic_macs(56 * 56, 96, 96)
    assert dit.reference_total - base.total == reference_quadratic_macs(56 * 56, 96, 96)


def test_dit_chunk_bytes_reach_the_quadratic_layers():
    default = create_model("dit_resnet20").stages[1][0].dit.quadratic
    assert default.chunk_bytes == DitQuadratic(2, 2).chunk_bytes
    chosen = create_model("dit_resnet20", dit_chunk_bytes=1 << 20)
    assert [layer.chunk_bytes for layer in quadratic_layers(chosen)] == [1 << 20]
    convnext = create_model("dit_convnext_tiny", device="meta", dit_chunk_bytes=1 << 22)
    assert [layer.chunk_bytes for layer in quadratic_layers(convnext)] == [1 << 22]
