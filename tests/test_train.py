"""The training engine on tiny fixtures: a run, resume after a kill, divergence,
checkpoints, DistributedDataParallel against one process, and each dataset family."""

import copy
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from fixtures import write_cifar10, write_fashion_mnist, write_imagenet

from ann.engine import run_from_config, train
from ann.errors import RecipeError, TrainingError
from ann.recipes import parse_overrides, recipe_name, resolve_recipe

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "epochs": 2,
    "batch_size": 32,
    "schedule": "multistep",
    "milestones": [],
    "warmup_epochs": 0,
    "lr": 0.05,
    "train_subset": None,
    "eval_subset": None,
    "eval_batch_size": 64,
}


@pytest.fixture(scope="module")
def fmnist_root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fmnist")
    write_fashion_mnist(folder, n_train=320, n_test=128, seed=1, learnable=True)
    return folder


def tiny_config(default_config: dict, root: Path, dataset: str = "fashion_mnist", **recipe) -> dict:
    config = copy.deepcopy(default_config)
    config["datasets"][dataset]["root"] = str(root)
    name = recipe_name(config, dataset, "cpu")
    config["datasets"][dataset]["recipe"] = name  # the same recipe on any device
    config["recipes"][name] = {**config["recipes"][name], **TINY, **recipe}
    return config


def run_cli(config: dict, out: Path, *extra: str, tmp: Path) -> list[str]:
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))  # JSON 1e-05 is text to YAML
    return [
        sys.executable,
        "-m",
        "ann.train",
        "--config",
        str(tmp / "config.yaml"),
        "--dataset",
        "fashion_mnist",
        "--model",
        "dit_resnet20",
        "--prior",
        "zero",
        "--seed",
        "3",
        "--out",
        str(out),
        "--threads",
        "1",
        *extra,
    ]


def not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


@pytest.mark.slow
def test_a_run_learns_and_leaves_its_outputs(default_config, fmnist_root, tmp_path):
    config = tiny_config(default_config, fmnist_root, epochs=3, lr=0.05)
    run = run_from_config(config, "fashion_mnist", "dit_resnet20", "zero", 0, tmp_path, threads=1)
    summary = train(run)
    assert summary["final"]["test_top1"] > 0.5  # chance is 0.1
    curve = pd.read_csv(tmp_path / "metrics.csv")
    assert list(curve.epoch) == [1, 2, 3]
    for column in (
        "train_loss",
        "train_top1",
        "test_top1",
        "test_top5",
        "lr",
        "seconds",
        "images_per_s",
    ):
        assert column in curve
    assert curve.train_loss.iloc[-1] < curve.train_loss.iloc[0]
    saved = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=not_json)
    assert saved["final"]["test_top5"] is None  # top-5 of ten classes: undefined, null
    assert not (tmp_path / "train.lock").exists()  # released at the end
    for key in (
        "final",
        "best",
        "parameters",
        "macs_per_image",
        "device",
        "wall_time_s",
        "recipe",
        "kappa_sha256",
        "commit",
    ):
        assert key in saved
    assert saved["parameters"] == sum(
        p.numel()
        for p in __import__("ann.models")
        .models.create_model("dit_resnet20", in_chans=1)
        .parameters()
    )
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 3


def test_dit_parameters_learn_ten_times_faster(default_config, fmnist_root, tmp_path):
    from ann.engine import build_optimizer
    from ann.models import create_model

    config = tiny_config(default_config, fmnist_root)
    run = run_from_config(config, "fashion_mnist", "dit_resnet20", "zero", 0, tmp_path)
    model = create_model("dit_resnet20", in_chans=1)
    optimizer = build_optimizer(model, run.recipe)
    scales = {g["lr_scale"] for g in optimizer.param_groups}
    assert scales == {1.0, 10.0}
    dit = next(g for g in optimizer.param_groups if g["lr_scale"] == 10.0)
    assert any(p.shape == (32, 32 * 32) for p in dit["params"])


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(default_config, fmnist_root, tmp_path):
    config = tiny_config(default_config, fmnist_root, epochs=4)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(run_cli(config, whole, tmp=tmp_path), check=True, cwd=ROOT, capture_output=True)
    process = subprocess.Popen(
        run_cli(config, killed, tmp=tmp_path),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not (killed / "checkpoint.pt").exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    owner = json.loads((killed / "train.lock").read_text())  # left behind by the kill
    assert owner["pid"] == process.pid and owner["host"] == socket.gethostname()
    epochs_done = torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= epochs_done < 4
    assert not (killed / "metrics.json").exists()
    resumed = subprocess.run(
        run_cli(config, killed, tmp=tmp_path), cwd=ROOT, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {killed / 'checkpoint.pt'} from epoch {epochs_done}" in resumed.stderr
    assert f"taking over the lock of a run that ended without releasing it (pid {process.pid}" in (
        resumed.stderr
    )
    assert not (killed / "train.lock").exists()
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert a["final"] == b["final"] and a["best"] == b["best"]
    curve_a, curve_b = pd.read_csv(whole / "metrics.csv"), pd.read_csv(killed / "metrics.csv")
    pd.testing.assert_frame_equal(
        curve_a.drop(columns=["seconds", "images_per_s"]),
        curve_b.drop(columns=["seconds", "images_per_s"]),
    )


@pytest.mark.slow
def test_divergence_stops_with_epoch_and_step_and_keeps_the_checkpoint(
    default_config, fmnist_root, tmp_path
):
    config = tiny_config(default_config, fmnist_root, epochs=3, milestones=[1], gamma=1.0e12)
    run = run_from_config(config, "fashion_mnist", "dit_resnet20", "zero", 0, tmp_path, threads=1)
    with pytest.raises(TrainingError, match=r"non-finite in epoch 2, step \d+") as raised:
        train(run)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert f"the last good checkpoint is kept in '{tmp_path / 'checkpoint.pt'}'" in str(
        raised.value
    )
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_divergence_in_the_first_epoch_names_no_checkpoint(default_config, fmnist_root, tmp_path):
    config = tiny_config(default_config, fmnist_root, epochs=2, lr=1.0e12)
    run = run_from_config(config, "fashion_mnist", "dit_resnet20", "zero", 0, tmp_path, threads=1)
    with pytest.raises(TrainingError, match=r"non-finite in epoch 1, step \d+") as raised:
        train(run)
    assert "there is no checkpoint yet" in str(raised.value)
    assert "checkpoint.pt" not in str(raised.value)
    assert not (tmp_path / "checkpoint.pt").exists()
    assert not (tmp_path / "train.lock").exists()  # released on the way out


@pytest.mark.slow
def test_bad_checkpoints_are_refused_clearly(default_config, fmnist_root, tmp_path):
    config = tiny_config(default_config, fmnist_root, epochs=1)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    run = run_from_config(config, "fashion_mnist", "dit_resnet20", "zero", 0, tmp_path)
    with pytest.raises(TrainingError, match="cannot be read: damaged.*--restart") as raised:
        train(run)
    assert f"checkpoint '{tmp_path / 'checkpoint.pt'}'" in str(raised.value)
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"not a checkpoint"  # left untouched
    other = run_from_config(config, "fashion_mnist", "resnet20", "none", 0, tmp_path / "x")
    train(other)
    (tmp_path / "x" / "metrics.json").unlink()
    again = run_from_config(config, "fashion_mnist", "dit_resnet20", "zero", 0, tmp_path / "x")
    with pytest.raises(TrainingError, match="another identity .*model: resnet20 -> dit_resnet20"):
        train(again)


@pytest.mark.slow
def test_cli_reports_errors_in_one_line(default_config, tmp_path):
    config = tiny_config(default_config, tmp_path / "nowhere")
    result = subprocess.run(
        run_cli(config, tmp_path / "out", tmp=tmp_path), cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "error:" in result.stderr and str(tmp_path / "nowhere") in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # the failed run leaves no empty folder behind


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, extra, message",
    [
        (("train", "device", "gpu"), (), "config key train.device: 'gpu' is not one of"),
        ((), ("--set", "epochs=abc"), "--set epochs: 'abc' is not of type 'integer'"),
        ((), ("--set", "optimiser=adam"), "config key recipes.fmnist_short: Additional"),
    ],
)
def test_cli_checks_config_and_overrides_against_the_schema(
    default_config, fmnist_root, tmp_path, change, extra, message
):
    config = tiny_config(default_config, fmnist_root)
    if change:
        config[change[0]][change[1]] = change[2]
    result = subprocess.run(
        run_cli(config, tmp_path / "out", *extra, tmp=tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_two_processes_match_one_process(default_config, fmnist_root, tmp_path):
    config = tiny_config(default_config, fmnist_root, epochs=1)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    subprocess.run(
        run_cli(config, single, "--micro-batches", "2", tmp=tmp_path),
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29533",
    ]
    command = run_cli(config, ddp, tmp=tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        torchrun + command[1:], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    a = torch.load(single / "checkpoint.pt", weights_only=True)
    b = torch.load(ddp / "checkpoint.pt", weights_only=True)
    for name, value in a["model"].items():
        if value.is_floating_point() and "running" not in name:
            torch.testing.assert_close(value, b["model"][name], rtol=1e-4, atol=1e-6, msg=name)
    assert a["history"][0]["train_loss"] == pytest.approx(b["history"][0]["train_loss"], rel=1e-5)
    assert json.loads((ddp / "metrics.json").read_text())["world_size"] == 2
    assert not (ddp / "train.lock").exists()  # rank 0 took it and gave it back


@pytest.mark.slow
def test_cifar_fixture_trains_through_the_real_loader(default_config, tmp_path):
    write_cifar10(tmp_path / "data")
    config = tiny_config(
        default_config,
        tmp_path / "data",
        dataset="cifar10",
        epochs=1,
        batch_size=5,
        eval_batch_size=4,
    )
    summary = train(run_from_config(config, "cifar10", "resnet20", "none", 0, tmp_path / "run"))
    assert summary["epochs"] == 1 and 0 <= summary["final"]["test_top1"] <= 1


@pytest.mark.slow
def test_imagenet_fixture_trains_with_timm_recipe_parts(default_config, tmp_path):
    write_imagenet(tmp_path / "data", {"n01": 4, "n02": 4}, {"n01": 2, "n02": 2})
    config = tiny_config(
        default_config,
        tmp_path / "data",
        dataset="imagenet",
        epochs=1,
        batch_size=4,
        lr_base_batch=4,
        warmup_epochs=0,
        input_size=32,
        workers=0,
        eval_batch_size=4,
        model_ema=True,
        mixup=0.8,
        cutmix=1.0,
        mixup_chunk=2,  # two loader batches per update, each mixed, then erased
    )
    run = run_from_config(config, "imagenet", "dit_convnext_tiny", "zero", 0, tmp_path / "run")
    summary = train(run)
    assert summary["epochs"] == 1
    assert summary["recipe"]["auto_augment"] == "rand-m9-mstd0.5"
    assert summary["recipe"]["data_pipeline"] == "timm"  # the default


@pytest.mark.slow
def test_imagenet_fixture_trains_through_the_cli_with_the_gpu_pipeline(default_config, tmp_path):
    """`data_pipeline: gpu` on the CPU: decode and augment on the device (here the CPU) in one
    `python -m ann.train` run with a DataLoader worker, mixup/cutmix and EMA as in the recipe."""
    write_imagenet(tmp_path / "data", {"n01": 4, "n02": 4}, {"n01": 2, "n02": 2})
    config = tiny_config(
        default_config,
        tmp_path / "data",
        dataset="imagenet",
        epochs=2,
        batch_size=4,
        lr=1e-3,
        lr_base_batch=4,
        warmup_epochs=0,
        input_size=32,
        workers=1,
        eval_batch_size=4,
        mixup=0.8,
        cutmix=1.0,
        mixup_chunk=2,
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "ann.train", "--config", str(tmp_path / "config.yaml")]
    command += ["--dataset", "imagenet", "--model", "dit_convnext_tiny", "--prior", "zero"]
    command += ["--out", str(out), "--threads", "1", "--set", "data_pipeline=gpu"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["recipe"]["data_pipeline"] == "gpu"
    assert summary["recipe"]["auto_augment"] == "rand-m9-mstd0.5"
    curve = pd.read_csv(out / "metrics.csv")
    assert len(curve) == 2 and curve["train_loss"].notna().all()
    assert (curve["train_loss"] > 0).all() and curve["train_loss"].map(math.isfinite).all()
    assert (curve["images_per_s"] > 0).all()
    assert 0.0 <= summary["final"]["test_top1"] <= 1.0 and summary["final"]["test_loss"] > 0


@pytest.mark.slow
def test_unknown_data_pipeline_is_refused(default_config, tmp_path):
    write_imagenet(tmp_path / "data", {"n01": 1, "n02": 1}, {"n01": 1})
    config = tiny_config(default_config, tmp_path / "data", dataset="imagenet", workers=0)
    run = run_from_config(
        config, "imagenet", "convnext_tiny", "none", 0, tmp_path / "run", {"data_pipeline": "dali"}
    )
    with pytest.raises(RecipeError, match="data_pipeline 'dali'"):
        train(run)


def test_recipe_resolution_and_errors(default_config):
    config = copy.deepcopy(default_config)
    config["recipe_overrides"]["cifar10"] = {"dit_resnet20": {"epochs": 7}}
    assert resolve_recipe(config, "cifar10", "dit_resnet20").epochs == 7
    assert resolve_recipe(config, "cifar10", "resnet20").epochs == 160
    assert resolve_recipe(config, "cifar10", "resnet20", {"epochs": 2}).epochs == 2
    imagenet = resolve_recipe(config, "imagenet", "dit_convnext_tiny", {"batch_size": 1024})
    assert imagenet.peak_lr() == pytest.approx(6e-3 / 4)
    with pytest.raises(RecipeError, match="unknown key"):
        resolve_recipe(config, "cifar10", "resnet20", {"epoch": 2})
    assert parse_overrides(["epochs=3", "milestones=[1, 2]", "train_subset=null"]) == {
        "epochs": 3,
        "milestones": [1, 2],
        "train_subset": None,
    }
    with pytest.raises(RecipeError):
        parse_overrides(["epochs"])


@pytest.mark.slow
def test_a_finished_run_rerun_by_snakemake_rewrites_its_outputs(
    default_config, fmnist_root, tmp_path
):
    """Snakemake deletes a job's outputs before it reruns it; the run's checkpoint (same
    identity) brings back the same metrics without training again."""
    config = tiny_config(default_config, fmnist_root, epochs=1)
    train(run_from_config(config, "fashion_mnist", "resnet20", "none", 0, tmp_path))
    first = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("metrics.json", "metrics.csv"):
        (tmp_path / name).unlink()
    train(run_from_config(config, "fashion_mnist", "resnet20", "none", 0, tmp_path))
    again = json.loads((tmp_path / "metrics.json").read_text())
    assert (tmp_path / "metrics.csv").is_file()
    assert again["final"] == first["final"] and again["wall_time_s"] == first["wall_time_s"]


def test_recipe_per_device(default_config):
    """The shipped config trains the CPU demo on the CPU and all of Fashion-MNIST on a GPU."""
    cpu = resolve_recipe(default_config, "fashion_mnist", "dit_resnet20", device_type="cpu")
    cuda = resolve_recipe(default_config, "fashion_mnist", "dit_resnet20", device_type="cuda")
    assert cpu.train_subset == 8000 and cpu.epochs <= 5
    assert cuda.train_subset is None and cuda.epochs >= 20
    config = copy.deepcopy(default_config)
    config["datasets"]["fashion_mnist"]["recipe"] = {"cpu": "fmnist_short"}
    with pytest.raises(RecipeError, match="no recipe for device 'cuda'"):
        resolve_recipe(config, "fashion_mnist", "resnet20", device_type="cuda")
    run = run_from_config(config, "fashion_mnist", "resnet20", "none", 0, Path("x"), device="cpu")
    assert (run.recipe.epochs, run.compile) == (cpu.epochs, "auto")


def test_compile_setting_per_device(default_config):
    from ann.engine.loop import compile_mode

    run = run_from_config(default_config, "fashion_mnist", "resnet20", "none", 0, Path("x"))
    assert run.compile == "auto"
    assert compile_mode(run, torch.device("cpu")) is None
    assert compile_mode(run, torch.device("cuda")) == "reduce-overhead"
    forced = run_from_config(
        default_config, "imagenet", "convnext_tiny", "none", 0, Path("x"), compile=True
    )
    assert compile_mode(forced, torch.device("cpu")) == "default"
    assert compile_mode(forced, torch.device("cuda")) == "default"


@pytest.mark.slow
def test_padded_evaluation_equals_plain(default_config, fmnist_root):
    from ann.data import GpuAugment, iterate_batches, load_dataset
    from ann.engine import Context
    from ann.engine.evaluate import evaluate as _evaluate
    from ann.models import create_model

    test = load_dataset("fashion_mnist", fmnist_root, "test")  # 128 images: batches 50, 50, 28
    augment = GpuAugment.for_dataset(test)
    model = create_model("resnet20", in_chans=1, img_size=test.images.shape[-1])
    model.train()
    model(augment.evaluate(test.images[:64]))  # running statistics that differ from the defaults
    ctx = Context(0, 1, torch.device("cpu"))
    sizes = []
    model.register_forward_hook(lambda module, args, out: sizes.append(len(args[0])))
    results = []
    for fixed in (None, 50):
        batches = ((augment.evaluate(x), y) for x, y in iterate_batches(test, 50, shuffle=False))
        results.append(
            _evaluate(model, batches, ctx, reduce=False, num_classes=10, fixed_batch=fixed)
        )
    assert sizes == [50, 50, 28, 50, 50, 50]
    assert results[0]["test_images"] == results[1]["test_images"] == 128
    assert results[0]["test_top1"] == results[1]["test_top1"]
    assert results[0]["test_loss"] == pytest.approx(results[1]["test_loss"], rel=1e-6)


@pytest.mark.slow
def test_compiled_run_trains_and_resumes_identically(
    default_config, fmnist_root, tmp_path, monkeypatch
):
    """train.compile: true on the CPU (inductor): a two-epoch run stopped after its first
    epoch and started again ends equal to an uninterrupted compiled two-epoch run."""
    import ann.engine.trainer as trainer

    config = tiny_config(default_config, fmnist_root, epochs=2, eval_batch_size=50)
    config["train"]["compile"] = True

    def compiled_run(out):
        run = run_from_config(config, "fashion_mnist", "dit_resnet20", "zero", 0, out, threads=1)
        return train(run)

    def stop_in_epoch_two(run, epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt  # as Ctrl-C: after epoch 1's checkpoint, before epoch 2's

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "_log_epoch", stop_in_epoch_two)
        with pytest.raises(KeyboardInterrupt):
            compiled_run(tmp_path / "resumed")
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = compiled_run(tmp_path / "resumed")
    whole = compiled_run(tmp_path / "whole")
    assert resumed["compile_mode"] == "default" and resumed["first_step_s"] > 0
    assert resumed["final"] == whole["final"] and whole["final"]["test_top1"] > 0.2
    curves = [pd.read_csv(tmp_path / name / "metrics.csv") for name in ("resumed", "whole")]
    pd.testing.assert_frame_equal(
        *(curve.drop(columns=["seconds", "images_per_s"]) for curve in curves)
    )


@pytest.mark.slow
@pytest.mark.gpu
def test_cuda_graph_training_of_a_few_steps(default_config, fmnist_root, tmp_path):
    """On CUDA, train.compile auto compiles with CUDA graphs; a few epochs of the fixture learn."""
    config = tiny_config(default_config, fmnist_root, epochs=3, eval_batch_size=50)
    run = run_from_config(config, "fashion_mnist", "dit_resnet20", "zero", 0, tmp_path)
    summary = train(run)
    assert summary["compile_mode"] == "reduce-overhead" and summary["device"] != "cpu"
    assert summary["final"]["test_top1"] > 0.5
