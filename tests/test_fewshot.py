import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from ann.data import FASHION_MNIST_ROOT
from ann.engine import parameter_groups
from ann.errors import ConfigError
from ann.models import count_parameters
from ann.models import fewshot as fewshot_models
from ann.theory import fewshot

needs_fashion_mnist = pytest.mark.skipif(
    not (FASHION_MNIST_ROOT / "t10k-images-idx3-ubyte.gz").exists(),
    reason=f"Fashion-MNIST files are not in {FASHION_MNIST_ROOT}",
)

TINY = {
    "shots": [5],
    "seeds": [0],
    "min_steps": 40,
    "max_steps": 40,
    "test_subset": 1000,
    "threads": 1,
}


@pytest.fixture(scope="module")
def tiny_result():
    if not (FASHION_MNIST_ROOT / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST files are not in {FASHION_MNIST_ROOT}")
    return fewshot.fewshot_experiment(TINY)


def test_draw_has_exactly_n_per_class_and_depends_only_on_the_seed():
    labels = torch.arange(10).repeat_interleave(30)[torch.randperm(300)]
    for shots in (1, 5, 10):
        draw = fewshot.class_balanced_draw(labels, shots, seed=3)
        assert torch.equal(torch.bincount(labels[draw], minlength=10), torch.full((10,), shots))
        assert len(set(draw.tolist())) == 10 * shots
        assert torch.equal(draw, fewshot.class_balanced_draw(labels, shots, seed=3))
    other = fewshot.class_balanced_draw(labels, 5, seed=4)
    assert not torch.equal(fewshot.class_balanced_draw(labels, 5, seed=3), other)
    one, five = (set(fewshot.class_balanced_draw(labels, n, seed=3).tolist()) for n in (1, 5))
    assert one <= five
    with pytest.raises(ValueError, match="fewer than"):
        fewshot.class_balanced_draw(labels, 31, seed=0)


@pytest.mark.slow
@needs_fashion_mnist
def test_every_model_of_a_seed_trains_on_the_same_draw(monkeypatch):
    seen: dict[str, list[int]] = {}
    original = fewshot.train_model

    def record(model, name, train, shots, seed, config, lr=None):
        if seed == TINY["seeds"][0]:
            seen[name] = train.labels.tolist() + [int(train.images.long().sum())]
        return original(model, name, train, shots, seed, config, lr=lr)

    monkeypatch.setattr(fewshot, "train_model", record)
    fewshot.fewshot_experiment({**TINY, "min_steps": 1, "max_steps": 1, "test_subset": 10})
    assert set(seen) == set(fewshot_models.MODEL_NAMES)
    assert all(value == seen["linear"] for value in seen.values())


def test_low_rank_quadratic_is_the_sum_of_rank_one_forms():
    torch.manual_seed(0)
    layer = fewshot_models.LowRankQuadratic(in_features=7, out_features=3, rank=4)
    with torch.no_grad():
        layer.v.normal_()
    x = torch.randn(5, 7)
    u, v = layer.u.view(3, 4, 7), layer.v.view(3, 4, 7)
    matrices = torch.einsum("ori,orj->oij", u, v)
    expected = torch.einsum("bi,oij,bj->bo", x, matrices, x)
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_low_rank_quadratic_starts_at_zero_with_gradients_for_v():
    layer = fewshot_models.LowRankQuadratic(in_features=16, out_features=10, rank=8)
    x = torch.randn(4, 16)
    out = layer(x)
    assert torch.equal(out, torch.zeros(4, 10))
    out.sum().backward()
    assert layer.v.grad.abs().sum() > 0


def test_pixel_classifier_is_linear_plus_quadratic():
    torch.manual_seed(1)
    model = fewshot_models.PixelClassifier(64, 10, rank=2)
    with torch.no_grad():
        model.quadratic.v.normal_()
    x = torch.randn(3, 1, 8, 8)
    flat = x.flatten(1)
    assert torch.allclose(model(x), model.linear(flat) + model.quadratic(flat), atol=1e-6)


def test_dit_block_with_zero_quadratic_weights_is_half_the_bn_conv():
    torch.manual_seed(2)
    cnn = fewshot_models.SmallCNN(dit=True).eval()
    block = cnn.blocks[2]
    assert block.dit is not None and torch.count_nonzero(block.dit.quadratic.weight) == 0
    with torch.no_grad():
        block.bn.running_mean.normal_()
        block.bn.running_var.uniform_(0.5, 2)
    h = torch.randn(4, 16, 8, 8)
    with torch.no_grad():
        expected = block.bn(block.conv(h)) / 2
        assert torch.allclose(block.pre_activation(h), expected, atol=1e-6)
        assert torch.allclose(block(h), F.max_pool2d(F.relu(expected), 2), atol=1e-6)


def test_dit_cnn_sum_starts_as_the_cnn():
    torch.manual_seed(5)
    plain = fewshot_models.build_model("cnn", rank=8).eval()
    torch.manual_seed(5)
    summed = fewshot_models.build_model("dit_cnn_sum", rank=8).eval()
    torch.manual_seed(5)
    halved = fewshot_models.build_model("dit_cnn", rank=8).eval()
    assert summed.blocks[2].dit is not None and not summed.blocks[2].halve
    assert halved.blocks[2].halve
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(summed(x), plain(x), rtol=0, atol=0)
        assert not torch.allclose(halved(x), plain(x))
        block = summed.blocks[2]
        block.dit.quadratic.weight.normal_()
        h = torch.randn(2, 16, 8, 8)
        expected = block.bn(block.conv(h)) + block.dit(h)
        torch.testing.assert_close(block.pre_activation(h), expected)


def test_sweep_draw_and_validation_split_are_disjoint_and_seeded():
    labels = torch.arange(10).repeat_interleave(40)[torch.randperm(400)]
    draw = fewshot.class_balanced_draw(labels, 10, seed=1000)
    validation = fewshot.class_balanced_draw(labels, 20, seed=1000, skip=10)
    assert not set(draw.tolist()) & set(validation.tolist())
    assert torch.equal(torch.bincount(labels[validation], minlength=10), torch.full((10,), 20))
    both = fewshot.class_balanced_draw(labels, 30, seed=1000)
    assert set(both.tolist()) == set(draw.tolist()) | set(validation.tolist())


def test_chosen_learning_rate_is_the_best_mean_validation_accuracy():
    config = fewshot.resolve_config({"models": ["cnn", "linear"]})
    sweep = pd.DataFrame(
        {
            "model": ["cnn"] * 6 + ["linear"] * 2,
            "shots": [5, 5, 5, 10, 10, 10, 5, 5],
            "lr": [1e-3, 3e-3, 1e-2, 1e-3, 3e-3, 1e-2, 1e-3, 1e-2],
            "val_acc": [0.5, 0.6, 0.7, 0.6, 0.8, 0.5, 0.4, 0.4],
        }
    )
    assert fewshot.chosen_lrs(sweep, config) == {"cnn": 3e-3, "linear": 1e-3}  # tie: smaller
    empty = pd.DataFrame(columns=fewshot.SWEEP_COLUMNS)
    assert fewshot.chosen_lrs(empty, config) == {"cnn": 3e-3, "linear": 3e-3}
    with pytest.raises(ConfigError, match=r"theory\.fewshot\.sweep_seed"):
        fewshot.resolve_config({"seeds": [0, 1000]})


@pytest.mark.slow
@needs_fashion_mnist
def test_sweep_uses_no_test_image_and_runs_use_the_chosen_rate(monkeypatch):
    config = {**TINY, "min_steps": 2, "max_steps": 2, "lr_grid": [1e-3, 1e-2], "test_subset": 70}
    config |= {"models": ["cnn", "dit_cnn_sum"], "validation_per_class": 3}
    scored = []
    original = fewshot.accuracy
    monkeypatch.setattr(
        fewshot, "accuracy", lambda model, x, y: scored.append(len(y)) or original(model, x, y)
    )
    result = fewshot.fewshot_experiment(config)
    sweep, runs = result["sweep"], result["runs"]
    assert len(sweep) == 2 * 2 and set(sweep.lr) == {1e-3, 1e-2}
    assert set(sweep.shots) == {10}
    # sweep runs score on 30 validation images (3 per class), evaluation runs on 70 test images
    assert scored.count(30) == len(sweep) and scored.count(70) == len(runs)
    lrs = fewshot.chosen_lrs(sweep, fewshot.resolve_config(config))
    assert dict(zip(runs.model, runs.lr, strict=True)) == lrs


def test_dit_cnn_shares_the_cnn_layout_and_initial_weights():
    torch.manual_seed(5)
    plain = fewshot_models.SmallCNN(dit=False)
    torch.manual_seed(5)
    dit = fewshot_models.SmallCNN(dit=True)
    shared = plain.state_dict()
    assert all(torch.equal(tensor, dit.state_dict()[key]) for key, tensor in shared.items())
    extra = count_parameters(dit) - count_parameters(plain)
    assert extra == 16 * 16 * 16 + 2 * 8 * 8
    assert count_parameters(dit) < 100_000
    assert dit(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_quadratic_parameters_get_the_larger_learning_rate():
    config = fewshot.resolve_config(None)
    model = fewshot_models.build_model("dit_cnn", config.rank)
    quadratic = {id(p) for p in fewshot_models.quadratic_parameters(model)}
    groups = parameter_groups(
        model,
        fewshot_models.quadratic_parameters(model),
        weight_decay=0.5,
        quadratic_lr_mult=config.quadratic_lr_mult,
        decay_vectors=False,
        decay_norms=False,
        lr=1.0,
    )
    assert len(quadratic) == 3  # LN weight, LN bias, Q weight
    for group in groups:
        kinds = {id(p) in quadratic for p in group["params"]}
        assert len(kinds) == 1
        assert group["lr"] == (config.quadratic_lr_mult if kinds.pop() else 1.0)
        norms = {
            id(p)
            for m in model.modules()
            if isinstance(m, torch.nn.LayerNorm)
            for p in m.parameters()
        }
        decayed = {p.ndim > 1 and id(p) not in norms for p in group["params"]}
        assert decayed == {group["weight_decay"] == 0.5}  # kernels decayed; vectors, norms not
    assert any(
        p.ndim > 1
        for m in model.modules()
        if isinstance(m, torch.nn.LayerNorm)
        for p in m.parameters()
    )
    grouped = sum(len(group["params"]) for group in groups)
    assert grouped == len(list(model.parameters()))


def test_training_steps_follow_the_documented_schedule():
    config = fewshot.resolve_config(None)
    steps = [fewshot.training_steps(n, config) for n in config.shots]
    assert steps == [100, 100, 100, 313, 500]


def test_unknown_config_keys_and_models_are_rejected():
    with pytest.raises(ConfigError, match=r"theory\.fewshot\.shot: unknown"):
        fewshot.resolve_config({"shot": [1]})
    with pytest.raises(ConfigError, match=r"theory\.fewshot\.models: unknown models"):
        fewshot.resolve_config({"models": ["mlp"]})


@pytest.mark.slow
@needs_fashion_mnist
def test_tiny_experiment_is_deterministic(tiny_result):
    again = fewshot.fewshot_experiment(TINY)
    columns = ["model", "shots", "seed", "test_acc", "train_acc", "parameters", "steps"]
    pd.testing.assert_frame_equal(tiny_result["runs"][columns], again["runs"][columns])
    pd.testing.assert_frame_equal(tiny_result["summary"], again["summary"])


def test_summary_matches_the_runs_table():
    runs = pd.DataFrame(
        {
            "model": ["a", "a", "a", "b", "b", "b", "a"],
            "shots": [1, 1, 1, 1, 1, 1, 5],
            "seed": [0, 1, 2, 0, 1, 2, 0],
            "test_acc": [0.5, 0.6, 0.8, 0.3, 0.3, 0.4, 0.9],
        }
    )
    summary = fewshot.summarise(runs).set_index(["model", "shots"])
    for (model, shots), rows in runs.groupby(["model", "shots"]):
        values = rows["test_acc"].to_numpy()
        row = summary.loc[(model, shots)]
        assert row["n_seeds"] == len(values)
        assert row["mean"] == pytest.approx(values.mean())
        expected_std = values.std(ddof=1) if len(values) > 1 else 0.0
        assert row["std"] == pytest.approx(expected_std)


@pytest.mark.slow
@needs_fashion_mnist
def test_tiny_run_tables_and_accuracy_clearly_above_chance(tiny_result):
    runs, summary = tiny_result["runs"], tiny_result["summary"]
    assert list(runs.columns[:7]) == [
        "model",
        "shots",
        "seed",
        "test_acc",
        "train_acc",
        "parameters",
        "steps",
    ]
    assert "seconds" in runs.columns
    assert len(runs) == len(fewshot_models.MODEL_NAMES)
    assert set(summary.columns) == {"model", "shots", "mean", "std", "n_seeds", "lr"}
    merged = summary.merge(runs, on=["model", "shots"])
    assert np.allclose(merged["mean"], merged["test_acc"])
    assert (summary["std"] == 0).all()
    assert (runs["test_acc"] > 0.35).all(), runs


def test_plot_has_one_line_per_model():
    summary = pd.DataFrame(
        {
            "model": ["linear", "linear", "cnn", "cnn"],
            "shots": [1, 10, 1, 10],
            "mean": [0.5, 0.7, 0.55, 0.75],
            "std": [0.02, 0.01, np.nan, 0.01],
            "n_seeds": [3, 3, 1, 3],
        }
    )
    (axes,) = fewshot.plot_fewshot(summary).axes
    assert [line.get_label() for line in axes.get_lines()] == ["linear", "cnn"]
