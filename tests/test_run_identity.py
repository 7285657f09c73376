"""A run's identity (ann.engine.identity): everything that changes its numbers is in it, and a
folder that holds a run of another identity is refused (ann.train), set aside (the workflow)
or restarted (--restart) - never silently resumed or overwritten. The engine cases train on a
tiny fixture Fashion-MNIST."""

import copy
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from fixtures import write_fashion_mnist, write_imagenet
from test_train import tiny_config

from ann.engine import Context, run_from_config, train
from ann.engine.checkpoint import SET_ASIDE, prepare_folder
from ann.engine.cli import main as train_cli
from ann.engine.identity import (
    ENGINE_VERSION,
    NEUTRAL_RECIPE_KEYS,
    dataset_fingerprint,
    identity_differences,
    run_identity,
)
from ann.errors import TrainingError
from ann.recipes import Recipe
from ann.settings import PriorSettings

CPU = Context(0, 1, torch.device("cpu"))
RUN_FILES = ("checkpoint.pt", "metrics.csv", "metrics.json")


@pytest.fixture(scope="module")
def fmnist_root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fmnist")
    write_fashion_mnist(folder, n_train=128, n_test=64, seed=1, learnable=True)
    return folder


def identity_of(run, **changes) -> dict:
    parts = {"prior_sha": None, "kappa_sha": None, "data": {"f": {"bytes": 1, "sha256": "a"}}}
    return run_identity(run, CPU, {"num_classes": 10}, **(parts | changes))


def changed(value: object) -> object:
    """A value of the same kind that differs from `value`."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, tuple):
        return (*value, 1)
    if isinstance(value, dict):
        return {**value, "x": "y"}
    return 1  # None


def test_every_recipe_key_but_the_neutral_ones_is_part_of_the_identity(default_config):
    run = run_from_config(default_config, "imagenet", "dit_convnext_tiny", "zero", 0, Path("x"))
    base = identity_of(run)
    for field in dataclasses.fields(Recipe):
        other = dataclasses.replace(
            run,
            recipe=dataclasses.replace(
                run.recipe, **{field.name: changed(getattr(run.recipe, field.name))}
            ),
        )
        differences = identity_differences(base, identity_of(other))
        if field.name in NEUTRAL_RECIPE_KEYS:
            assert differences == "", field.name
        else:
            assert f"recipe.{field.name}:" in differences, field.name


def test_every_prior_setting_a_run_uses_is_part_of_its_identity(default_config):
    """What a run of a prior in a mode depends on (PriorSettings.used_by, the train rule's
    params): every setting for bio in anchor mode, all but the anchor strength in init mode,
    only the anchor strength for zero in anchor mode, nothing for zero or a plain model."""
    run = run_from_config(
        default_config, "fashion_mnist", "dit_resnet20", "bio+anchor", 0, Path("x")
    )
    base = identity_of(run)
    for field in dataclasses.fields(PriorSettings):
        if field.name == "biological":
            continue
        value = changed(getattr(run.priors, field.name))
        other = dataclasses.replace(
            run, priors=dataclasses.replace(run.priors, **{field.name: value})
        )
        assert f"priors.{field.name}:" in identity_differences(base, identity_of(other))
    more = dataclasses.replace(
        run, priors=dataclasses.replace(run.priors, biological={"bio_other": "elsewhere"})
    )
    assert identity_differences(base, identity_of(more)) == ""  # another prior's cell
    init = dataclasses.replace(run, prior="bio")
    assert "anchor_strength" not in identity_of(init)["priors"]
    named = dataclasses.replace(run, prior="bio_nmda_shuffled")
    assert identity_of(named)["priors"]["cell"] == run.priors.biological["bio_nmda"]
    plain = run_from_config(default_config, "fashion_mnist", "resnet20", "none", 0, Path("x"))
    assert identity_of(plain)["priors"] is None  # no quadratic layers: no prior settings
    zero = dataclasses.replace(run, prior="zero")  # K = 0 whatever builds the other priors
    assert identity_of(zero)["priors"] == {}
    zero_anchor = dataclasses.replace(run, prior="zero+anchor")
    assert identity_of(zero_anchor)["priors"] == {"anchor_strength": run.priors.anchor_strength}


def test_the_identity_names_files_seed_precision_and_engine_but_not_threads_or_compile(
    default_config,
):
    run = run_from_config(default_config, "fashion_mnist", "dit_resnet20", "bio", 0, Path("x"))
    base = identity_of(run)
    assert base["engine"] == ENGINE_VERSION and base["precision"] == "float32"
    assert base["batch_pieces"] == 1 and base["seed"] == 0
    for changes, key in (
        ({"prior_sha": "b"}, "prior_file_sha256"),
        ({"kappa_sha": "c"}, "kappa_sha256"),
        ({"data": {"f": {"bytes": 2, "sha256": "a"}}}, "data.f.bytes"),
    ):
        assert f"{key}:" in identity_differences(base, identity_of(run, **changes))
    seeded = dataclasses.replace(run, seed=1)
    assert "seed: 0 -> 1" in identity_differences(base, identity_of(seeded))
    split = dataclasses.replace(run, micro_batches=2)
    assert "batch_pieces: 1 -> 2" in identity_differences(base, identity_of(split))
    neutral = dataclasses.replace(run, threads=7, compile=True, out=Path("elsewhere"))
    assert identity_differences(base, identity_of(neutral)) == ""
    assert "no identity recorded" in identity_differences(None, base)


def test_the_dataset_fingerprint_follows_the_contents_not_the_folder(tmp_path):
    write_fashion_mnist(tmp_path / "a", n_train=8, n_test=4, seed=0)
    write_fashion_mnist(tmp_path / "b", n_train=8, n_test=4, seed=0)  # the same files elsewhere
    a = dataset_fingerprint("fashion_mnist", tmp_path / "a")
    assert sorted(a) == sorted(
        ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
        + ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    )
    assert a == dataset_fingerprint("fashion_mnist", tmp_path / "b")
    labels = tmp_path / "b" / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(labels.read_bytes())
    data[-12] ^= 0xFF  # one byte flipped, the size kept
    labels.write_bytes(bytes(data))
    b = dataset_fingerprint("fashion_mnist", tmp_path / "b")
    assert b["t10k-labels-idx1-ubyte.gz"]["bytes"] == a["t10k-labels-idx1-ubyte.gz"]["bytes"]
    assert b["t10k-labels-idx1-ubyte.gz"]["sha256"] != a["t10k-labels-idx1-ubyte.gz"]["sha256"]


def test_imagenet_is_fingerprinted_by_its_index_of_file_names(tmp_path):
    write_imagenet(tmp_path / "a", {"n01": 2, "n02": 1}, {"n01": 1})
    first = dataset_fingerprint("imagenet", tmp_path / "a")
    assert first["files"] == 4
    (tmp_path / "a").rename(tmp_path / "b")  # another root, the same files
    assert dataset_fingerprint("imagenet", tmp_path / "b") == first
    (tmp_path / "b" / "val" / "n01" / "n01_0.JPEG").rename(
        tmp_path / "b" / "val" / "n01" / "x.JPEG"
    )
    assert dataset_fingerprint("imagenet", tmp_path / "b")["index_sha256"] != first["index_sha256"]


def test_a_folder_of_another_identity_is_refused_set_aside_or_restarted(tmp_path, caplog):
    ours, theirs = {"recipe": {"lr": 0.05}}, {"recipe": {"lr": 0.01}}
    for name in RUN_FILES[1:]:
        (tmp_path / name).write_text("old")
    (tmp_path / "metrics.json").write_text(json.dumps({"identity": theirs}))
    with pytest.raises(TrainingError, match=r"another identity \(recipe.lr: 0.01 -> 0.05\)"):
        prepare_folder(tmp_path, ours, "refuse")
    assert (tmp_path / "metrics.json").read_text() == json.dumps({"identity": theirs})
    assert prepare_folder(tmp_path, theirs, "refuse") is False  # its own, finished: no checkpoint
    with caplog.at_level(logging.WARNING):
        assert prepare_folder(tmp_path, ours, "set_aside") is False
    assert not any((tmp_path / name).exists() for name in RUN_FILES)
    [aside] = (tmp_path / SET_ASIDE).iterdir()
    assert (aside / "metrics.csv").read_text() == "old"
    assert f"in '{aside}'" in caplog.text and "recipe.lr: 0.01 -> 0.05" in caplog.text


@pytest.mark.slow
def test_a_finished_run_is_refused_untouched_and_restart_equals_a_fresh_run(
    default_config, fmnist_root, tmp_path, caplog
):
    """L1: a folder of a finished run, run again with --set lr=0.01 epochs=1, keeps every
    byte; --restart ends equal to a fresh run and sets the old one aside."""
    config = tiny_config(default_config, fmnist_root, epochs=2)
    (tmp_path / "config.yaml").write_text(__import__("yaml").safe_dump(config))
    out, fresh = tmp_path / "run", tmp_path / "fresh"

    def cli(folder, *extra):
        argv = ["--config", str(tmp_path / "config.yaml"), "--dataset", "fashion_mnist"]
        argv += ["--model", "resnet20", "--out", str(folder), "--threads", "1", *extra]
        return train_cli(argv)

    assert cli(out) == 0
    before = {name: (out / name).read_bytes() for name in RUN_FILES}
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert cli(out, "--set", "lr=0.01", "epochs=1") == 1
    assert "recipe.epochs: 2 -> 1" in caplog.text and "recipe.lr: 0.05 -> 0.01" in caplog.text
    assert "left untouched" in caplog.text
    assert {name: (out / name).read_bytes() for name in RUN_FILES} == before
    assert cli(out, "--restart", "--set", "lr=0.01", "epochs=1") == 0
    assert cli(fresh, "--set", "lr=0.01", "epochs=1") == 0
    restarted, new = (json.loads((f / "metrics.json").read_text()) for f in (out, fresh))
    assert restarted["final"] == new["final"] and restarted["epochs"] == 1
    assert restarted["identity"] == new["identity"]
    [aside] = (out / SET_ASIDE).iterdir()
    assert {name: (aside / name).read_bytes() for name in RUN_FILES} == before


@pytest.mark.slow
def test_other_epochs_data_or_prior_start_over_in_the_workflow_and_equal_a_fresh_run(
    default_config, fmnist_root, tmp_path, caplog
):
    """S1-S4 as the workflow meets them (existing "set_aside"): a finished 1-epoch run asked
    for 2 epochs, then the same run on other data; each starts over, logs what it set aside,
    and ends equal to a run started fresh."""
    config = tiny_config(default_config, fmnist_root, epochs=1)
    out = tmp_path / "run"

    def run(cfg, folder, existing):
        return train(
            run_from_config(cfg, "fashion_mnist", "resnet20", "none", 0, folder, threads=1),
            existing,
        )

    run(config, out, "set_aside")
    with caplog.at_level(logging.INFO):
        run(config, out, "set_aside")  # its own identity: resumed (at its end)
    assert f"resuming {out / 'checkpoint.pt'} from epoch 1" in caplog.text
    caplog.clear()
    longer = tiny_config(default_config, fmnist_root, epochs=2)
    with caplog.at_level(logging.INFO):
        resumed = run(longer, out, "set_aside")
    assert "recipe.epochs: 1 -> 2" in caplog.text and "resuming" not in caplog.text
    fresh = run(longer, tmp_path / "fresh", "set_aside")
    assert resumed["final"] == fresh["final"] and resumed["epochs"] == 2
    curves = [
        pd.read_csv(f / "metrics.csv").drop(columns=["seconds", "images_per_s"])
        for f in (out, tmp_path / "fresh")
    ]
    pd.testing.assert_frame_equal(*curves)

    other = tmp_path / "other_data"  # S2: same sizes, other images
    write_fashion_mnist(other, n_train=128, n_test=64, seed=5, learnable=True)
    moved = copy.deepcopy(longer)
    moved["datasets"]["fashion_mnist"]["root"] = str(other)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run(moved, out, "set_aside")
    assert "data.t10k-images-idx3-ubyte.gz.sha256" in caplog.text
    assert len(list((out / SET_ASIDE).iterdir())) == 2


def write_kappa(path: Path, n_sites: int = 3, scale: float = 1.0) -> None:
    """A kappa.nc as fit_kappa writes it, with planted tables."""
    a, b = np.meshgrid(np.arange(n_sites), np.arange(n_sites), indexing="ij")
    xr.Dataset(
        {
            "kappa_EI": (("e_site", "i_site"), scale * (10.0 + 3 * a + b) / 100),
            "kappa_EE": (("site_a", "site_b"), -scale * (1.0 + a + b) / 100),
            "kappa_II": (("site_a", "site_b"), scale * (5.0 + a * b) / 100),
            "psp_peak": (("receptor", "psp_site"), np.ones((2, n_sites))),
        }
    ).to_netcdf(path, engine="h5netcdf")


@pytest.mark.slow
def test_a_rebuilt_prior_with_other_settings_starts_over(
    default_config, fmnist_root, tmp_path, caplog
):
    """S1: priors.init_ratio 0.1 -> 0.5 rebuilds the prior file; the training run finds a
    checkpoint of the old prior and starts over instead of resuming it."""
    from pipeline.training import build_prior

    kappa, prior_file = tmp_path / "kappa.nc", tmp_path / "bio.pt"
    write_kappa(kappa)
    config = tiny_config(default_config, fmnist_root, epochs=1)

    def bio_run(init_ratio):
        cfg = copy.deepcopy(config)
        cfg["priors"]["init_ratio"] = init_ratio
        build_prior("dit_resnet20", "bio", "bio", 0, kappa, cfg["priors"], prior_file)
        run = run_from_config(
            cfg, "fashion_mnist", "dit_resnet20", "bio", 0, tmp_path / "run", prior_file=prior_file
        )
        return train(run, "set_aside")

    first = bio_run(0.1)
    with caplog.at_level(logging.INFO):
        second = bio_run(0.5)
    assert "priors.init_ratio: 0.1 -> 0.5" in caplog.text
    assert "prior_file_sha256" in caplog.text and "resuming" not in caplog.text
    assert second["identity"]["priors"]["init_ratio"] == 0.5
    assert first["identity"]["prior_file_sha256"] != second["identity"]["prior_file_sha256"]
