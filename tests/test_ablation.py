"""The prior ablation: its statistics against a hand-computed example and edge cases, the
sentences of its report page, the learned-K comparison, and the pairing it relies on (two
runs of one seed differ in K only)."""

import copy
import dataclasses
import html
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures import write_fashion_mnist

from ann import ablation

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------- a hand-computed example
# Final test top-1 of zero and bio on three seeds; the differences bio - zero are
# 0.010, 0.020, 0.030 -> mean 0.020; deviations -0.01, 0, +0.01 -> sum of squares 2e-4,
# variance 2e-4 / (3 - 1) = 1e-4, sd = 0.010; standard error 0.010 / sqrt(3) = 0.0057735;
# t_{0.975, 2} = 4.302653 (table value); half width 4.302653 * 0.0057735 = 0.0248414;
# interval 0.020 -/+ 0.0248414 = [-0.0048414, 0.0448414]; t = 0.020 / 0.0057735 = 3.4641,
# two-sided p with 2 degrees of freedom = 1 - 3.4641 / sqrt(2 + 3.4641^2) = 0.07418.
ZERO = [0.800, 0.810, 0.790]
BIO = [0.810, 0.830, 0.820]


def test_paired_difference_matches_the_hand_computed_example():
    out = ablation.paired_difference(ZERO, BIO)
    assert out["n"] == 3
    assert out["mean_difference"] == pytest.approx(0.020)
    assert out["sd_difference"] == pytest.approx(0.010)
    assert out["t_quantile"] == pytest.approx(4.302653, abs=1e-6)
    assert out["ci_low"] == pytest.approx(-0.0048414, abs=1e-7)
    assert out["ci_high"] == pytest.approx(0.0448414, abs=1e-7)
    assert out["t_statistic"] == pytest.approx(3.4641016, abs=1e-6)
    assert out["p_value"] == pytest.approx(1 - 3.4641016 / math.sqrt(2 + 12), abs=1e-6)
    assert out["p_value"] == pytest.approx(0.07418, abs=1e-5)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert out["p_value"] == pytest.approx(scipy_stats.ttest_rel(BIO, ZERO).pvalue)
    assert ablation.detectable(out) is False  # the interval contains 0
    assert out["note"] == ""


def test_one_seed_gives_no_interval_and_says_so():
    out = ablation.paired_difference([0.8], [0.9])
    assert out["n"] == 1 and out["mean_difference"] == pytest.approx(0.1)
    assert math.isnan(out["ci_low"]) and math.isnan(out["p_value"])
    assert "one seed" in out["note"] and ablation.detectable(out) is None
    assert ablation.verdict(out) == "too few seeds to tell"


def test_zero_variance_gives_a_zero_width_interval():
    same = ablation.paired_difference([0.8, 0.7], [0.85, 0.75])
    # 0.85 - 0.8 and 0.75 - 0.7 differ in the last bit: still the same difference
    assert same["sd_difference"] == 0 and same["p_value"] == 0.0
    assert same["ci_low"] == pytest.approx(0.05) and same["ci_high"] == pytest.approx(0.05)
    identical = ablation.paired_difference([0.8, 0.7], [0.8, 0.7])
    assert identical["ci_low"] == identical["ci_high"] == 0.0
    assert math.isnan(identical["p_value"]) and "identical" in identical["note"]
    assert ablation.verdict(identical) == "no detectable effect"


def test_zero_variance_exactly():
    out = ablation.paired_difference([0.5, 0.25], [0.75, 0.5])  # exact in binary
    assert out["sd_difference"] == 0 and out["p_value"] == 0.0
    assert out["ci_low"] == out["ci_high"] == 0.25
    assert ablation.verdict(out) == "helps"


def _runs(values: dict, seeds=(0, 1, 2)) -> pd.DataFrame:
    rows = []
    for prior, accuracies in values.items():
        for seed, acc in zip(seeds, accuracies, strict=True):
            rows.append(
                {"dataset": "fashion_mnist", "model": "dit_resnet20", "prior": prior,
                 "seed": seed, "final_top1": acc, "best_top1": acc, "epoch1_top1": acc - 0.1}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_statistics_pair_by_seed_and_the_sentence_follows_the_interval():
    runs = _runs({"zero": ZERO, "bio": BIO})
    runs = pd.concat([runs, _runs({"bio": [0.99]}, seeds=(7,))])  # no zero run of seed 7
    metrics = ["epoch1_top1", "final_top1", "best_top1"]
    stats = ablation.paired_statistics(runs, metrics)
    final = stats[stats.metric == "final_top1"].iloc[0]
    assert final.n == 3 and final.seeds == "0 1 2"
    assert final.ci_low == pytest.approx(-0.0048414, abs=1e-7)
    (sentence,) = ablation.answer(stats, "Fashion-MNIST")
    assert sentence == (
        "On Fashion-MNIST, dit_resnet20 against the zero prior: bio changes final test top-1 by "
        "+2.00 points (95% CI −0.48 to +4.48, paired t-test over 3 seeds, p = 0.074): "
        "no detectable effect."
    )
    clear = ablation.paired_statistics(_runs({"zero": ZERO, "bio": [0.9, 0.91, 0.89]}), metrics)
    assert "helps" in ablation.answer(clear, "Fashion-MNIST")[0]
    summary = ablation.prior_summary(runs, metrics)
    bio = summary[(summary.prior == "bio") & (summary.metric == "final_top1")].iloc[0]
    assert bio.n == 4


def test_learned_k_comparison():
    rng = np.random.default_rng(0)
    init = {"a": rng.normal(size=(4, 9)), "b": np.zeros((2, 4))}
    learned = {"a": 2 * init["a"], "b": rng.normal(size=(2, 4))}
    zero_learned = {"a": -learned["a"], "b": learned["b"]}
    layers, spectra = ablation.compare_k(learned, init, zero_learned)
    a, b = layers.set_index("layer").loc["a"], layers.set_index("layer").loc["b"]
    assert a.corr_with_prior == pytest.approx(1) and a.corr_with_zero_learned == pytest.approx(-1)
    assert a.relative_change == pytest.approx(1) and a.channels == 3
    assert math.isnan(b.corr_with_prior) and math.isnan(b.relative_change)  # K_init = 0
    # spectrum of symmetric diag(3, 1) and diag(1, -1): mean of sorted eigenvalues
    k = np.array([[3.0, 0, 0, 1], [1.0, 0, 0, -1]])
    assert ablation.spectrum(k) == pytest.approx([2.0, 0.0])
    assert set(spectra.stage) == {"initial", "learned"} and len(spectra) == 2 * (3 + 2)


# ------------------------------------------------------------------- the pairing in ann.train
def test_runs_of_one_seed_differ_in_k_only(default_config, tmp_path, monkeypatch):
    """Same seed, different priors: the same initial parameters apart from K, the same
    batches (order and augmentation)."""
    from ann import engine
    from ann.engine import trainer
    from ann.models import create_model
    from ann.recipes import recipe_name

    root = tmp_path / "fmnist"
    write_fashion_mnist(root, n_train=96, n_test=32, seed=1, learnable=True)
    config = copy.deepcopy(default_config)
    config["datasets"]["fashion_mnist"]["root"] = str(root)
    name = recipe_name(config, "fashion_mnist", "cpu")
    config["datasets"]["fashion_mnist"]["recipe"] = name
    config["recipes"][name] |= {"epochs": 1, "train_subset": None, "eval_subset": None}
    seed = 3
    network = create_model("dit_resnet20", in_chans=1)
    from ann.layers import DitQuadratic

    k_names = {n for n, m in network.named_modules() if isinstance(m, DitQuadratic)}
    weights = {
        n: torch.randn_like(m.weight)
        for n, m in network.named_modules()
        if isinstance(m, DitQuadratic)
    }
    prior_file = tmp_path / "bio.pt"
    torch.save({"prior": "bio", "seed": seed, "weights": weights}, prior_file)

    seen: dict[str, dict] = {}
    build, load = trainer.build_model, trainer.load_data

    def recording_build(run, *args):
        model, sha = build(run, *args)
        seen.setdefault(run.prior, {})["state"] = copy.deepcopy(model.state_dict())
        return model, sha

    def recording_load(run, ctx):
        data = load(run, ctx)
        batches = data.train_batches

        def first_batches(generators, epoch):
            for step, (x, y) in enumerate(batches(generators, epoch)):
                if step == 2:
                    return
                seen.setdefault(run.prior, {}).setdefault("batches", []).append((x.clone(), y))
                yield x, y

        return dataclasses.replace(data, train_batches=first_batches)

    monkeypatch.setattr(trainer, "build_model", recording_build)
    monkeypatch.setattr(trainer, "load_data", recording_load)
    for prior, file in (("zero", None), ("bio", prior_file)):
        run = engine.run_from_config(
            config, "fashion_mnist", "dit_resnet20", prior, seed, tmp_path / prior,
            prior_file=file, threads=1, device="cpu",
        )  # fmt: skip
        engine.train(run)
    zero, bio = seen["zero"]["state"], seen["bio"]["state"]
    assert set(zero) == set(bio)
    k_keys = {f"{n}.weight" for n in k_names}
    assert k_keys <= set(zero)
    for key in zero:
        if key in k_keys:
            assert torch.equal(zero[key], torch.zeros_like(zero[key]))
            assert torch.equal(bio[key], weights[key.removesuffix(".weight")])
        else:
            assert torch.equal(zero[key], bio[key]), key
    assert len(seen["zero"]["batches"]) == len(seen["bio"]["batches"]) == 2
    for (x0, y0), (x1, y1) in zip(seen["zero"]["batches"], seen["bio"]["batches"], strict=True):
        assert torch.equal(y0, y1) and torch.equal(x0, x1)


# ------------------------------------------------------------------- the experiment, end to end
def test_the_toy_experiment_fills_the_report_page(tiny_workflow):
    """The tiny workflow's ablation (fixture Fashion-MNIST, dit_resnet20 zero/bio and resnet20,
    seeds 0 and 1): statistics, learned K and the page with the numbers in it."""
    workdir, config = tiny_workflow
    results = workdir / "results"
    folder = results / "experiments/prior_ablation/fashion_mnist"
    runs = pd.read_csv(folder / "runs.csv")
    assert len(runs) == 6 and set(runs.seed) == {0, 1}
    assert set(runs.prior) == {"zero", "bio", "none"}
    stats = pd.read_csv(folder / "statistics.csv")
    final = stats[stats.metric == "final_top1"].iloc[0]
    assert (final.model, final.prior, final.reference, final.n) == (
        "dit_resnet20",
        "bio",
        "zero",
        2,
    )
    bio = runs[runs.prior == "bio"].set_index("seed").final_top1
    zero = runs[runs.prior == "zero"].set_index("seed").final_top1
    assert final.mean_difference == pytest.approx((bio - zero).mean())
    assert math.isfinite(final.ci_low) and final.ci_low <= final.mean_difference <= final.ci_high
    assert set(stats.metric) == {"epoch1_top1", "epoch2_top1", "epoch5_top1", "final_top1",
                                 "best_top1"}  # fmt: skip
    assert (stats[stats.metric == "epoch5_top1"].n == 0).all()  # the runs have 3 epochs
    layers = pd.read_csv(folder / "learned_k.csv")
    assert set(layers.prior) == {"zero", "bio"} and set(layers.seed) == {0, 1}
    learned_bio = layers[layers.prior == "bio"]
    assert learned_bio.corr_with_prior.between(-1, 1).all()
    assert learned_bio.corr_with_zero_learned.notna().all()
    assert learned_bio.relative_change.gt(0).all()
    assert layers[layers.prior == "zero"].corr_with_prior.isna().all()
    assert (folder / "figures/learned_k.png").is_file()
    assert (folder / "spectra.csv").is_file()

    page = html.unescape((results / "report/prior_ablation.html").read_text())
    stats["note"] = stats["note"].fillna("")
    (sentence,) = ablation.answer(stats, "Fashion-MNIST")
    assert sentence in page and "paired t-test over 2 seeds" in sentence
    assert ablation.TEST_NAME in page and "No detectable effect" in page
    assert "Sample efficiency" in page and "Not measured: epoch 5" in page
    assert "CIFAR-10" in page  # skipped, and why
    assert "paired_differences.png" in page and "learned_k.png" in page
    index = html.unescape((results / "report/index.html").read_text())
    assert 'href="prior_ablation.html"' in index and sentence in index  # the key figures


def test_seeds_per_device_and_datasets_without_data(tmp_path, default_config):
    from conftest import run_snakemake
    from fixtures import write_cifar10

    config = copy.deepcopy(default_config)
    write_cifar10(tmp_path / "cifar10")
    config["datasets"]["cifar10"]["root"] = str(tmp_path / "cifar10")
    config["train"]["device"] = "cuda"
    config["train"]["experiments"] = {"cifar10": {"models": ["resnet20"], "seeds": [0]}}
    config["datasets"]["fashion_mnist"]["root"] = None  # skipped by the grid and the ablation
    out = run_snakemake(tmp_path, config, "-n")
    assert out.returncode == 0, out.stdout[-3000:]
    assert "prior ablation: seeds [0, 1, 2, 3, 4]" in out.stdout
    table = out.stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    jobs = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    # 5 seeds x (resnet20 + dit_resnet20 x zero, bio, bio_nmda, shuffled), the grid's resnet20
    # seed 0 among them (test_bad_input: the plan stops when zero is not among the priors)
    assert jobs["train"] == 25 and jobs["prior_ablation"] == 1
    assert "cifar100 skipped (no data root set)" in out.stdout


def _fake_run(folder, model, prior, seed, accuracy, state):
    import json

    folder.mkdir(parents=True)
    metrics = {"dataset": "fashion_mnist", "model": model, "prior": prior, "seed": seed,
               "epochs": 2, "final": {"test_top1": accuracy}, "best": {"test_top1": accuracy}}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(metrics))
    pd.DataFrame({"epoch": [1, 2], "test_top1": [accuracy - 0.1, accuracy]}).to_csv(
        folder / "metrics.csv", index=False
    )
    torch.save({"model": state}, folder / "checkpoint.pt")
    return str(folder / "metrics.json")


def test_analysis_and_page_of_one_seed(tmp_path, default_config):
    """Without the workflow: one seed of zero and bio (and the plain model) give numbers, no
    interval, and a page that says so; K is read from the checkpoints and the prior file."""
    from ann.models import create_model
    from pipeline.ablation import ablation_page, analyse
    from pipeline.report import Report

    dit = create_model("dit_resnet20").state_dict()
    names = [k.removesuffix(".weight") for k in dit if k.endswith("quadratic.weight")]
    prior = {n: torch.randn_like(dit[f"{n}.weight"]) for n in names}
    torch.save({"weights": prior}, tmp_path / "bio.pt")
    learned = {**dit, **{f"{n}.weight": 2 * w for n, w in prior.items()}}
    runs = [
        {"metrics": _fake_run(tmp_path / "z", "dit_resnet20", "zero", 0, 0.80, dit)},
        {"metrics": _fake_run(tmp_path / "b", "dit_resnet20", "bio", 0, 0.85, learned),
         "prior_file": str(tmp_path / "bio.pt")},
        {"metrics": _fake_run(tmp_path / "p", "resnet20", "none", 0, 0.82, {})},
    ]  # fmt: skip
    out = tmp_path / "out"
    outputs = {
        k: out / f"{k}.csv" for k in ("runs", "summary", "statistics", "learned_k", "spectra")
    }
    outputs |= {"differences": out / "d.png", "learned_k_png": out / "k.png"}
    out.mkdir()
    analyse(runs, [1, 2, 5], outputs)
    layers = pd.read_csv(outputs["learned_k"])
    bio = layers[layers.prior == "bio"]
    assert len(bio) == len(names) and (bio.corr_with_prior > 0.999).all()
    assert bio.relative_change.tolist() == pytest.approx([1.0] * len(names))
    report = Report(tmp_path / "report", ROOT / "workflow/report/templates", default_config)
    files = {k: outputs[k] for k in ("statistics", "summary", "learned_k")}
    files["figures"] = {
        "differences": outputs["differences"],
        "learned_k": outputs["learned_k_png"],
    }
    experiment = {"datasets": {"fashion_mnist": files}, "skipped": {}, "sample_epochs": [1, 2, 5]}
    page = html.unescape(ablation_page(report, experiment).read_text())
    assert "bio changes final test top-1 by +5.00 points (one seed: no interval" in page
    assert "too few seeds to tell" in page and "Not measured: epoch 5" in page
