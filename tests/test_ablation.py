"""The prior experiments: the runs table, the primary contrasts, the learned-K comparison,
the pairing they rely on (runs of one seed differ in K only, whatever the prior's mode), the
low-data experiment and the report page. The statistics themselves: tests/test_statistics.py."""

import copy
import dataclasses
import html
import json
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


def test_primary_contrasts_are_each_prior_against_zero_and_bio_against_each_control():
    names = [c.name for c in ablation.contrasts(["zero", "bio", "shuffled", "block_mean"])]
    assert names == ["bio − zero", "shuffled − zero", "block_mean − zero", "bio − shuffled",
                     "bio − block_mean"]  # fmt: skip
    assert [c.name for c in ablation.contrasts(["zero", "bio_nmda"])] == ["bio_nmda − zero"]
    assert ablation.split_prior("bio_nmda_shuffled+anchor") == ("bio_nmda_shuffled", "anchor")
    assert ablation.split_prior("zero") == ("zero", "init")


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
    """Same seed, different priors and modes: the same initial parameters apart from K, the
    same batches (order and augmentation); the data calibration and the mode change K alone."""
    from ann import engine
    from ann.engine import trainer
    from ann.layers import DitQuadratic
    from ann.models import create_model
    from ann.prior_modes import effective_weights
    from ann.recipes import recipe_name

    root = tmp_path / "fmnist"
    write_fashion_mnist(root, n_train=96, n_test=32, seed=1, learnable=True)
    config = copy.deepcopy(default_config)
    config["datasets"]["fashion_mnist"]["root"] = str(root)
    name = recipe_name(config, "fashion_mnist", "cpu")
    config["datasets"]["fashion_mnist"]["recipe"] = name
    config["recipes"][name] |= {"epochs": 1, "train_subset": None, "eval_subset": None}
    config["priors"]["calibration_images"] = 16
    seed = 3
    network = create_model("dit_resnet20", in_chans=1)
    k_names = {n for n, m in network.named_modules() if isinstance(m, DitQuadratic)}
    weights = {n: 0.01 * torch.randn_like(network.get_submodule(n).weight) for n in k_names}
    prior_file = tmp_path / "bio.pt"
    torch.save({"prior": "bio", "seed": seed, "weights": weights}, prior_file)

    seen: dict[str, dict] = {}
    build, load = trainer.build_model, trainer.load_data

    def recording_build(run, *args):
        built = build(run, *args)
        plain = {k: v for k, v in built.model.state_dict().items() if "quadratic" not in k}
        seen.setdefault(run.prior, {}).update(
            state=copy.deepcopy(plain), k=effective_weights(built.model), built=built
        )
        return built

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
    arms = (("zero", None), ("bio", prior_file), ("bio+anchor", prior_file))
    for prior, file in arms:
        run = engine.run_from_config(
            config, "fashion_mnist", "dit_resnet20", prior, seed, tmp_path / prior,
            prior_file=file, threads=1, device="cpu",
        )  # fmt: skip
        summary = engine.train(run)
        if prior != "zero":  # the data calibration: every Dit layer's real response is 0.1
            (record,) = summary["prior_calibration"]
            assert record["data_rms_after"] == pytest.approx(0.1, rel=0.02)
    zero = seen["zero"]["state"]
    for prior in ("bio", "bio+anchor"):
        other = seen[prior]["state"]
        assert set(zero) == set(other)
        for key in zero:
            assert torch.equal(zero[key], other[key]), (prior, key)
        for layer in k_names:
            start = seen[prior]["k"][layer]
            assert torch.equal(seen["zero"]["k"][layer], torch.zeros_like(start))
            scale = seen[prior]["built"].calibration[0]["scale"]
            torch.testing.assert_close(start, weights[layer] * scale)
        assert len(seen[prior]["batches"]) == 2
        for (x0, y0), (x1, y1) in zip(seen["zero"]["batches"], seen[prior]["batches"], strict=True):
            assert torch.equal(y0, y1) and torch.equal(x0, x1)
    (delta,) = seen["bio+anchor"]["built"].decay_of
    assert seen["bio+anchor"]["built"].decay_of[delta] == config["priors"]["anchor_strength"]


# ------------------------------------------------------------------- the experiments, end to end
def test_the_toy_experiments_fill_the_report_page(tiny_workflow):
    """The tiny workflow's experiments (fixture Fashion-MNIST): the full-data ablation of
    dit_resnet20 zero/bio and resnet20 on the grid's seed 0 (too few for a test), the low-data
    experiment on 3 paired seeds; their contrasts, learned K and the page with the numbers."""
    workdir, config = tiny_workflow
    results = workdir / "results"
    folder = results / "experiments/prior_ablation/fashion_mnist"
    runs = pd.read_csv(folder / "runs.csv")
    assert len(runs) == 3 and set(runs.seed) == {0}
    assert set(runs.prior) == {"zero", "bio", "none"} and set(runs["mode"]) == {"init"}
    stats = pd.read_csv(folder / "statistics.csv")
    final = stats[stats.metric == "final_test_top1"].iloc[0]
    assert (final.model, final.contrast, final.n, final.role) == (
        "dit_resnet20", "bio − zero", 1, "primary",
    )  # fmt: skip
    bio = runs[runs.prior == "bio"].set_index("seed").final_test_top1
    zero = runs[runs.prior == "zero"].set_index("seed").final_test_top1
    assert final.mean_difference == pytest.approx((bio - zero).mean())
    assert math.isnan(final.ci_low) and final.verdict == "inconclusive"  # one seed: too few
    assert "too few seeds" in final.note
    assert set(stats.metric) == {"epoch1_top1", "epoch2_top1", "epoch5_top1", "final_test_top1"}
    assert (stats[stats.metric == "epoch5_top1"].n == 0).all()  # the runs have 3 epochs
    layers = pd.read_csv(folder / "learned_k.csv")
    assert set(layers.prior) == {"zero", "bio"} and set(layers.seed) == {0}
    learned_bio = layers[layers.prior == "bio"]
    assert learned_bio.corr_with_prior.between(-1, 1).all()
    assert learned_bio.corr_with_zero_learned.notna().all()
    assert learned_bio.relative_change.gt(0).all()
    assert layers[layers.prior == "zero"].corr_with_prior.isna().all()

    low = results / "experiments/prior_lowdata"
    lowruns = pd.read_csv(low / "runs.csv")
    assert len(lowruns) == 3 * 3 * 2 and set(lowruns.seed) == {0, 1, 2}
    assert lowruns.final_test_top1.between(0, 1).all()
    calibrated = lowruns[lowruns.prior != "zero"].calibrated_response
    np.testing.assert_allclose(calibrated, config["priors"]["init_ratio"], rtol=0.02)
    lowstats = pd.read_csv(low / "statistics.csv")
    primary = lowstats[lowstats.role == "primary"]
    assert set(primary.contrast) == {"bio − zero", "block_mean − zero", "bio − block_mean"}
    assert set(primary["mode"]) == {"init", "anchor"} and (primary.n == 3).all()
    assert set(primary.verdict) <= {"helps", "hurts", "equivalent", "inconclusive"}
    sweep = pd.read_csv(low / "choices/anchor_sweep.csv")
    strengths = set(lowruns[lowruns["mode"] == "anchor"].anchor_strength)
    assert len(strengths) == 1 and strengths <= set(sweep.anchor_strength)
    assert len(pd.read_csv(low / "survival.csv")) == 2

    page = html.unescape((results / "report/prior_ablation.html").read_text())
    for sentence in list(primary.sentence) + [final.sentence]:
        assert sentence in page
    assert "Little data" in page and "Full data" in page and "CIFAR-10" in page
    assert "contrasts.png" in page and "survival.png" in page and "learned_k.png" in page
    index = html.unescape((results / "report/index.html").read_text())
    assert 'href="prior_ablation.html"' in index and primary.sentence.iloc[0] in index


def test_seeds_per_device_and_datasets_without_data(tmp_path, default_config):
    from conftest import run_snakemake
    from fixtures import write_cifar10

    config = copy.deepcopy(default_config)
    write_cifar10(tmp_path / "cifar10")
    config["datasets"]["cifar10"]["root"] = str(tmp_path / "cifar10")
    config["train"]["device"] = "cuda"
    config["train"]["experiments"] = {"cifar10": {"models": ["resnet20"], "seeds": [0]}}
    config["datasets"]["fashion_mnist"]["root"] = None  # skipped by the grid and the ablation
    config["experiments"]["prior_ablation"].update(
        enabled=True, seeds={"cpu": [], "cuda": [0, 1, 2]}
    )
    out = run_snakemake(tmp_path, config, "-n")
    assert out.returncode == 0, out.stdout[-3000:]
    seeds = config["experiments"]["prior_ablation"]["seeds"]["cuda"]
    assert f"prior ablation: seeds {seeds}" in out.stdout
    table = out.stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    jobs = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    arms = len(config["experiments"]["prior_ablation"]["priors"])
    arms *= len(config["experiments"]["prior_ablation"]["modes"])
    # every seed: resnet20 + dit_resnet20 in each prior and mode; the grid's resnet20 seed 0
    # is one of them
    assert jobs["train"] == len(seeds) * (1 + arms) and jobs["prior_ablation"] == 1
    assert "prior_lowdata" not in jobs  # no Fashion-MNIST
    assert "cifar100 skipped (no data root set)" in out.stdout
    config["train"]["device"] = "cpu"  # no full-data runs on the CPU
    out = run_snakemake(tmp_path, config, "-n")
    assert out.returncode == 0 and "prior_ablation " not in out.stdout


def _fake_run(folder, model, prior, seed, accuracy, state, scale=None):
    folder.mkdir(parents=True)
    metrics = {"dataset": "fashion_mnist", "model": model, "prior": prior, "seed": seed,
               "epochs": 2, "final": {"test_top1": accuracy}, "best": {"test_top1": accuracy}}  # fmt: skip
    if scale is not None:
        metrics["prior_calibration"] = [
            {"layer": k.removesuffix(".weight"), "scale": scale}
            for k in state if k.endswith("quadratic.weight")
        ]  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(metrics))
    pd.DataFrame({"epoch": [1, 2], "test_top1": [accuracy - 0.1, accuracy]}).to_csv(
        folder / "metrics.csv", index=False
    )
    torch.save({"model": state}, folder / "checkpoint.pt")
    return str(folder / "metrics.json")


STATISTICS = {"endpoint": "final_test_top1", "margin_pp": 0.3, "alpha": 0.05, "power": 0.8}


def test_analysis_and_page_from_checkpoints(tmp_path, default_config):
    """Without the workflow: four seeds of zero and bio (and the plain model) give a contrast
    and a page; K is read from the checkpoints and the prior file times the calibration."""
    from ann.models import create_model
    from pipeline.ablation import ablation_page, analyse
    from pipeline.report import Report

    dit = create_model("dit_resnet20").state_dict()
    names = [k.removesuffix(".weight") for k in dit if k.endswith("quadratic.weight")]
    prior = {n: torch.randn_like(dit[f"{n}.weight"]) for n in names}
    torch.save({"weights": prior}, tmp_path / "bio.pt")
    learned = {**dit, **{f"{n}.weight": 2 * 0.5 * w for n, w in prior.items()}}
    runs = []
    for seed, (z, b) in enumerate([(0.80, 0.85), (0.81, 0.85), (0.79, 0.86), (0.80, 0.84)]):
        runs += [
            {"metrics": _fake_run(tmp_path / f"z{seed}", "dit_resnet20", "zero", seed, z, dit)},
            {"metrics": _fake_run(tmp_path / f"b{seed}", "dit_resnet20", "bio", seed, b,
                                  learned, scale=0.5),
             "prior_file": str(tmp_path / "bio.pt")},
        ]  # fmt: skip
    runs.append({"metrics": _fake_run(tmp_path / "p", "resnet20", "none", 0, 0.82, {})})
    out = tmp_path / "out"
    outputs = {
        k: out / f"{k}.csv" for k in ("runs", "summary", "statistics", "learned_k", "spectra")
    }
    outputs |= {"differences": out / "d.png", "learned_k_png": out / "k.png"}
    out.mkdir()
    analyse(runs, [1, 2, 5], ["zero", "bio"], STATISTICS, outputs)
    layers = pd.read_csv(outputs["learned_k"])
    bio = layers[layers.prior == "bio"]
    assert len(bio) == 4 * len(names) and (bio.corr_with_prior > 0.999).all()
    # learned = 2 x the calibrated start (0.5 x the file): relative change 1
    assert bio.relative_change.tolist() == pytest.approx([1.0] * len(bio))
    stats = pd.read_csv(outputs["statistics"])
    final = stats[(stats.metric == "final_test_top1")].iloc[0]
    assert final.n == 4 and final.mean_difference == pytest.approx(0.05)
    assert final.verdict == "helps" and final.role == "primary"
    report = Report(tmp_path / "report", ROOT / "workflow/report/templates", default_config)
    files = {k: outputs[k] for k in ("statistics", "summary", "learned_k")}
    files["figures"] = {
        "differences": outputs["differences"],
        "learned_k": outputs["learned_k_png"],
    }
    experiment = {"datasets": {"fashion_mnist": files}, "skipped": {}, "sample_epochs": [1, 2, 5],
                  "statistics": STATISTICS, "lowdata": None, "device": "cpu"}  # fmt: skip
    page = html.unescape(ablation_page(report, experiment).read_text())
    assert final.sentence in page and "+5.00" in page
    assert "Little data" in page and "Not in this run" in page
