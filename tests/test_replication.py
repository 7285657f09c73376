"""Faithful replication: every recipe that trains a published row against the official values
declared in pipeline.paper.OFFICIAL_RECIPES (each with its source), the deviation table
against both the recipes and docs/replication.md, and the schedules of the baselines' recipes
against the official schedulers, computed independently."""

import copy
import math
import re
from fnmatch import fnmatchcase

import numpy as np
import pytest
import torch
from conftest import ROOT

from ann.engine import build_optimizer, build_scheduler
from ann.models import MODEL_NAMES, create_model, fan_gb_parameters
from ann.recipes import recipe_choice, recipe_name, resolve_recipe
from pipeline import paper
from pipeline.plan_checks import model_recipe

REPLICATED = {
    "cifar10": [m for m in MODEL_NAMES if "convnext" not in m],
    "cifar100": [m for m in MODEL_NAMES if "convnext" not in m],
    "imagenet": [m for m in MODEL_NAMES if "convnext" in m],
}
RUNS = [(dataset, model) for dataset, models in REPLICATED.items() for model in models]


def ours(recipe, key):
    return recipe.peak_lr() if key == "peak_lr" else getattr(recipe, key)


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12)
    return a == b


def differences(config):
    """(dataset, model, recipe, key, ours, official) of every key in which the recipe that
    trains the run differs from the official value."""
    out = []
    for dataset, model in RUNS:
        name = recipe_name(config, dataset, "cuda", model)
        recipe = resolve_recipe(config, dataset, model, device_type="cuda")
        for key, (value, _) in paper.official_values(name, model).items():
            if not same(ours(recipe, key), value):
                out.append((dataset, model, name, key, ours(recipe, key), value))
    return out


def covers(row, dataset, model, name, key):
    return (
        dataset in row["datasets"]
        and name in row.get("recipes", ())
        and fnmatchcase(model, row.get("models", "*"))
        and key in row.get("keys", ())
    )


def unlisted(config):
    return [d for d in differences(config) if not any(covers(r, *d[:4]) for r in paper.DEVIATIONS)]


def test_every_difference_from_the_official_values_is_a_listed_deviation(default_config):
    assert unlisted(default_config) == []
    assert differences(default_config)  # the listed ones: precision, resnet110's warm-up, ...


@pytest.mark.parametrize(
    ("recipe", "key", "value"),
    [("cifar", "lr", 0.2), ("qresnet", "fan_gb_lr_mult", 1.0), ("convnext", "ema_decay", 0.9998)],
)
def test_an_unlisted_difference_fails_the_check(default_config, recipe, key, value):
    config = copy.deepcopy(default_config)
    config["recipes"][recipe][key] = value
    assert {(d[2], d[3]) for d in unlisted(config)} == {(recipe, key)}


def test_no_deviation_lists_a_key_in_which_nothing_differs(default_config):
    found = {(d[0], d[1], d[2], d[3]) for d in differences(default_config)}
    for row in paper.DEVIATIONS:
        for key in row.get("keys", ()):
            assert any(covers(row, *run) for run in found if run[3] == key), (row["scope"], key)


def test_every_recipe_of_a_published_row_has_declared_official_values(default_config):
    used = {recipe_name(default_config, d, "cuda", m) for d, m in RUNS}
    assert used == {"cifar", "qresnet", "quadralib", "quadralib_cifar100", "imagenet", "convnext"}
    for name in used:
        declared = paper.OFFICIAL_RECIPES[name]
        assert {"epochs", "batch_size", "optimizer", "weight_decay", "precision"} <= set(declared)
        assert all(source for _, source in declared.values())


def test_each_baseline_trains_with_its_own_papers_recipe(default_config):
    chosen = {(d, m): recipe_name(default_config, d, "cuda", m) for d, m in RUNS}
    for (dataset, model), name in chosen.items():
        if model.startswith("qresnet"):
            assert name == "qresnet"
        elif model.startswith("quadraresnet"):
            assert name == "quadralib" if dataset == "cifar10" else "quadralib_cifar100"
        elif model.startswith("convnext"):
            assert name == "convnext"
        else:
            assert name == ("imagenet" if dataset == "imagenet" else "cifar")


def test_the_workflow_chooses_the_recipe_as_ann_does(default_config):
    """The plan-time copy (pipeline.plan_checks.model_recipe, no torch) agrees with ann."""
    config = copy.deepcopy(default_config)
    config["datasets"]["fashion_mnist"]["model_recipes"] = {"dit_*": "fmnist_full"}
    for dataset, entry in config["datasets"].items():
        for model in MODEL_NAMES:
            assert model_recipe(dataset, entry, model) == recipe_choice(config, dataset, model)[0]


def test_two_patterns_for_one_model_are_refused(default_config):
    from ann.errors import RecipeError
    from dendrite_sim.errors import InputError

    config = copy.deepcopy(default_config)
    config["datasets"]["cifar10"]["model_recipes"]["qres*"] = "cifar"
    with pytest.raises(RecipeError, match=r"qresnet20.*'qresnet\*' and 'qres\*'"):
        resolve_recipe(config, "cifar10", "qresnet20")
    with pytest.raises(InputError, match="make the patterns exclusive"):
        model_recipe("cifar10", config["datasets"]["cifar10"], "qresnet20")
    assert resolve_recipe(config, "cifar10", "quadraresnet20").batch_size == 256  # one match


# --------------------------------------------------------------- the deviation table's pages
def markdown_table(text: str, heading: str) -> list[list[str]]:
    section = text.split(heading, 1)[1]
    lines = [line for line in section.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows[2:]  # below the header and its rule


def test_docs_deviation_table_is_the_deviations_list():
    text = (ROOT / "docs" / "replication.md").read_text()
    rows = markdown_table(text, "## Where we differ from the published protocol")
    expected = [[r["scope"], r["difference"], r["why"], r["switch"]] for r in paper.DEVIATIONS]
    assert rows == expected


def test_readme_and_training_docs_point_to_the_deviation_table():
    assert "docs/replication.md" in (ROOT / "README.md").read_text()
    training = (ROOT / "docs" / "training.md").read_text()
    section = training.split("## Where we differ from the published protocol", 1)[1][:1500]
    assert "replication.md" in section


def test_docs_parameter_counts_are_the_models():
    from ann.models import count_parameters

    text = (ROOT / "docs" / "replication.md").read_text()
    rows = markdown_table(text, "## Parameter counts")
    assert len(rows) == 16
    for row in rows:
        name = row[0].strip("`")
        for classes, cell in ((10, row[1]), (100, row[5])):
            assert int(cell.replace(",", "")) == count_parameters(create_model(name, classes))


# --------------------------------------------------------------- schedules, computed as the
# official code computes them
UPDATES = 7


def learning_rates(model, recipe, epochs):
    """Each group's lr for every update, with the scheduler driven as ann.train drives it."""
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe, UPDATES)
    rates = []
    for epoch in range(epochs):
        scheduler.step(epoch)
        for step in range(UPDATES):
            rates.append([group["lr"] for group in optimizer.param_groups])
            scheduler.step_update(num_updates=epoch * UPDATES + step + 1)
    return optimizer, np.array(rates)


def convnext_cosine(base, final, epochs, per_epoch, warmup_epochs):
    """The lr per iteration of ConvNeXt's utils.cosine_scheduler (start_warmup_value 0)."""
    warmup = warmup_epochs * per_epoch
    ramp = np.linspace(0, base, warmup)
    rest = epochs * per_epoch - warmup
    cosine = [
        final + 0.5 * (base - final) * (1 + math.cos(math.pi * i / rest)) for i in range(rest)
    ]
    return np.concatenate([ramp, cosine])


def test_convnext_schedule_is_convnexts_per_iteration_cosine(default_config):
    recipe = resolve_recipe(default_config, "imagenet", "convnext_tiny")
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    _, rates = learning_rates(model, recipe, recipe.epochs)
    theirs = convnext_cosine(4e-3, 1e-6, 300, UPDATES, 20)
    assert rates.shape[0] == len(theirs) == 300 * UPDATES
    for group in rates.T:
        warm = 20 * UPDATES
        # timm's ramp reaches the peak one update later: each lr (W - 1) / W of ConvNeXt's
        np.testing.assert_allclose(group[1:warm], theirs[1:warm] * (warm - 1) / warm, rtol=1e-9)
        np.testing.assert_allclose(group[warm:], theirs[warm:], rtol=1e-9)


def test_quadralib_schedule_is_torchs_cosine_annealing(default_config):
    recipe = resolve_recipe(default_config, "cifar10", "quadraresnet20")
    model = torch.nn.Linear(3, 3)
    _, rates = learning_rates(model, recipe, recipe.epochs)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(sgd, T_max=200, eta_min=1e-4)
    theirs = []
    for _ in range(200):  # QuadraLib: train an epoch, then scheduler.step()
        theirs += [sgd.param_groups[0]["lr"]] * UPDATES
        sgd.step()  # no gradients: changes nothing, keeps torch's call order
        annealing.step()
    for group in rates.T:
        np.testing.assert_allclose(group, theirs, rtol=1e-9)


def test_qresnet_schedule_and_groups_are_fans(default_config):
    """Fan's trainer: SGD groups r (lr 0.1), g and b (--lr_gb 1e-5), the rest (0.1), every
    group x 0.1 at epochs 100 and 150 (torch's MultiStepLR)."""
    recipe = resolve_recipe(default_config, "cifar100", "qresnet20")
    model = create_model("qresnet20", num_classes=100)
    optimizer, rates = learning_rates(model, recipe, recipe.epochs)
    gb = {id(p) for p in fan_gb_parameters(model)}
    assert len(gb) == 4 * 18  # weight and bias of g and b in each of the 18 Fan neurons
    slow = [all(id(p) in gb for p in g["params"]) for g in optimizer.param_groups]
    assert [any(id(p) in gb for p in g["params"]) for g in optimizer.param_groups] == slow
    reference = torch.optim.SGD(
        [{"params": [torch.zeros(1)], "lr": 1e-5 if s else 0.1} for s in slow], lr=0.1
    )
    steps = torch.optim.lr_scheduler.MultiStepLR(reference, milestones=[100, 150])
    theirs = []
    for _ in range(200):
        theirs += [[g["lr"] for g in reference.param_groups]] * UPDATES
        reference.step()
        steps.step()
    np.testing.assert_allclose(rates, theirs, rtol=1e-9)
    assert all(g["weight_decay"] == 1e-4 for g in optimizer.param_groups)  # every parameter


def test_imagenet_recipes_split_into_the_official_loader_batches(default_config):
    dit = resolve_recipe(default_config, "imagenet", "dit_convnext_tiny")
    plain = resolve_recipe(default_config, "imagenet", "convnext_base")
    assert (dit.mixup_chunk, dit.re_num_splits, dit.mix_then_erase) == (64, 2, True)
    assert (plain.mixup_chunk, plain.re_num_splits, plain.mix_then_erase) == (128, 0, False)
    assert dit.batch_size // dit.mixup_chunk == 8 * 8  # GPUs x accumulation steps
    assert plain.batch_size // plain.mixup_chunk == 4 * 8  # nodes x GPUs
    assert (plain.lr, plain.weight_decay, plain.ema_decay, plain.drop_path) == (
        4e-3,
        0.05,
        0.9999,
        0.5,
    )


def test_cifar_recipes_train_in_fp32_and_synchronise_batch_norm(default_config):
    for dataset, model in RUNS:
        if dataset != "imagenet":
            recipe = resolve_recipe(default_config, dataset, model, device_type="cuda")
            assert recipe.precision == "fp32" and recipe.sync_bn, (dataset, model)
    cpu = resolve_recipe(default_config, "fashion_mnist", "dit_resnet20", device_type="cpu")
    assert cpu.precision == "fp32" and not cpu.sync_bn  # the CPU demo: unchanged


def test_deviation_rows_name_only_known_recipes_and_pages(default_config):
    for row in paper.DEVIATIONS:
        assert set(row) <= {"scope", "difference", "why", "switch", "datasets", "recipes"} | {
            "models",
            "keys",
        }
        assert set(row["datasets"]) <= set(REPLICATED)
        assert set(row.get("recipes", ())) <= set(default_config["recipes"])
        assert re.fullmatch(r"[a-z0-9_*\[\]]+", row.get("models", "*"))


# --------------------------------------------------------------- the recipes in the docs
DOCUMENTED = {  # recipe -> (dataset, model) whose resolved recipe the docs' table shows
    "cifar": ("cifar10", "dit_resnet20"),
    "qresnet": ("cifar10", "qresnet20"),
    "quadralib": ("cifar10", "quadraresnet20"),
    "quadralib_cifar100": ("cifar100", "quadraresnet20"),
    "imagenet": ("imagenet", "dit_convnext_tiny"),
    "convnext": ("imagenet", "convnext_tiny"),
}


def shown(value) -> str:
    return "none" if value is None else str(value)


def recipe_rows(config, name: str) -> list[list[str]]:
    """key, ours, official, source of every official value of a recipe, for the docs."""
    dataset, model = DOCUMENTED[name]
    recipe = resolve_recipe(config, dataset, model, device_type="cuda")
    return [
        [f"`{key}`", shown(ours(recipe, key)), shown(value), source]
        for key, (value, source) in sorted(paper.official_values(name, model).items())
    ]


@pytest.mark.parametrize("name", DOCUMENTED)
def test_docs_recipe_tables_are_the_recipes_and_their_sources(default_config, name):
    text = (ROOT / "docs" / "replication.md").read_text()
    assert markdown_table(text, f"### Recipe `{name}`") == recipe_rows(default_config, name)


# --------------------------------------------------------------- checked when the workflow is read
def plan(tmp_path, config):
    from conftest import run_snakemake

    return run_snakemake(tmp_path, config, "-n")


def cifar_config(default_config, tmp_path):
    from fixtures import write_cifar10

    write_cifar10(tmp_path / "cifar10")
    config = copy.deepcopy(default_config)
    config["datasets"]["cifar10"]["root"] = str(tmp_path / "cifar10")
    config["experiments"]["prior_ablation"]["enabled"] = False
    return config


@pytest.mark.slow
def test_a_multi_process_cpu_run_of_a_sync_bn_recipe_stops_the_plan(default_config, tmp_path):
    config = cifar_config(default_config, tmp_path)
    config["train"].update(processes=2, device="cpu")
    run = plan(tmp_path, config)
    assert run.returncode != 0
    assert "config key train.processes: 2 processes on the CPU" in run.stdout, run.stdout[-2000:]
    assert "recipes.cifar.sync_bn: false" in run.stdout
    assert "Job stats" not in run.stdout
    config["recipes"]["cifar"]["sync_bn"] = False  # per-process statistics: planned
    config["recipes"]["qresnet"]["sync_bn"] = False
    config["recipes"]["quadralib"]["sync_bn"] = False
    assert plan(tmp_path, config).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model_recipes", "message"),
    [
        ({"qres*": "cifar"}, "model 'qresnet20' matches 'qresnet*' and 'qres*'"),
        ({"resnet20": "cifar_typo"}, "datasets.cifar10.model_recipes.resnet20: no recipe named"),
    ],
)
def test_bad_model_recipes_stop_the_plan(default_config, tmp_path, model_recipes, message):
    config = cifar_config(default_config, tmp_path)
    config["datasets"]["cifar10"]["model_recipes"] |= model_recipes
    run = plan(tmp_path, config)
    assert run.returncode != 0 and message in run.stdout, run.stdout[-2000:]
    assert "Traceback (most recent call last)" not in run.stdout
