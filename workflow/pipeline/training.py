"""Stages 3-4: the kappa priors and the training runs, as plain functions of paths and
config sections (the Snakemake scripts in workflow/scripts call these and nothing else)."""

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
import yaml

from ann.engine import file_sha256, run_from_config, train
from ann.errors import TrainingError
from ann.models import create_model
from ann.priors import load_kappa, prior_weights

from .files import MAX_WIDTH_IN, save_csv, save_figure, write_atomic

log = logging.getLogger(__name__)


def build_prior(
    model: str,
    prior: str,
    kind: str,
    seed: int,
    kappa_path: str | Path,
    priors: Mapping,
    out: str | Path,
) -> None:
    """Initial quadratic coefficients of `model` for (prior, seed) from a kappa.nc: `kind` is bio
    or a control of it (ann.settings.PRIORS); a named biological prior and its controls are built
    the same way from their own cell's kappa (the same seed draws the same channel types and
    sites for each)."""
    network = create_model(model)
    weights = prior_weights(
        network,
        kind,
        load_kappa(kappa_path),
        seed=seed,
        fraction_inhibitory=priors["fraction_inhibitory"],
        init_ratio=priors["init_ratio"],
        diagonal=priors.get("diagonal", "zero"),
    )
    record = {
        "model": model,
        "prior": prior,
        "seed": seed,
        "weights": weights,
        "kappa_sha256": file_sha256(kappa_path),
        "kappa_path": str(kappa_path),
    }
    write_atomic(out, lambda tmp: torch.save(record, tmp))
    sizes = {name: tuple(w.shape) for name, w in weights.items()}
    log.info("%s prior for %s seed %d: layers %s", prior, model, seed, sizes)


def prior_statistics(
    model: str,
    priors: Mapping[str, Mapping[str, str]],
    settings: Mapping,
    root: str | None,
    outputs: Mapping[str, str | Path],
) -> None:
    """What each prior looks like on the first Dit layer of `model` (seed 0): the kappa of its
    cell beside its K's sign structure and eigen-spectrum, where |K|^2 sits (E/I blocks,
    same-site pairs, distance) and its effective rank (ann.prior_statistics), and, with
    Fashion-MNIST at `root`, its response on the layer's real inputs at initialisation before
    the data calibration. `priors`: name -> {"kind", "cell", "kappa"} (kappa.nc path)."""
    from ann import prior_statistics as stats
    from ann.layers import DitQuadratic

    layer = next(m for m in create_model(model).modules() if isinstance(m, DitQuadratic))
    c_out, c_in = layer.weight.shape[0], round(layer.weight.shape[1] ** 0.5)
    kappas = {path: load_kappa(path) for path in {p["kappa"] for p in priors.values()}}
    built = stats.layer_priors(
        {name: (p["kind"], kappas[p["kappa"]]) for name, p in priors.items()}, c_in, c_out, settings
    )
    cells = {name: p["cell"] for name, p in priors.items()}
    table = stats.statistics_table(built, cells)
    table.insert(0, "layer", f"{model} first Dit layer ({c_in} -> {c_out} channels)")
    structure = stats.structure_table(built)
    structure["real_input_response"] = real_input_responses(model, priors, kappas, settings, root)
    save_csv(table, outputs["table"])
    save_csv(structure, outputs["structure"])
    biological = {name: kappas[p["kappa"]] for name, p in priors.items() if p["kind"] == "bio"}
    figure = stats.statistics_figure(built, biological, cells, MAX_WIDTH_IN)
    save_figure(figure, outputs["figure"])
    log.info("priors of %s:\n%s", model, structure.to_string(index=False))


def real_input_responses(
    model: str,
    priors: Mapping[str, Mapping[str, str]],
    kappas: Mapping[str, object],
    settings: Mapping,
    root: str | None,
    images: int = 256,
) -> list[float]:
    """Per prior, RMS(Q(z)) / RMS(z) of the model's first Dit layer on its real inputs z for
    `images` Fashion-MNIST training images at initialisation (seed 0), with the prior sized on
    x ~ N(0, I) as in its file: what the data calibration then corrects. NaN without data."""
    import math

    from ann.data import load_dataset, normalize
    from ann.prior_modes import calibrate
    from ann.priors import apply_prior

    try:
        train = load_dataset("fashion_mnist", root, "train")
    except Exception as err:  # no data: the column says NaN, the log says why
        log.warning("no real-input responses (%s)", err)
        return [math.nan] * len(priors)
    picked = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:images]
    batch = normalize(train.images[picked], train.mean, train.std)
    options = {k: settings[k] for k in ("fraction_inhibitory", "init_ratio")}
    responses = []
    for prior in priors.values():
        torch.manual_seed(0)
        network = create_model(model, in_chans=1, img_size=32)
        kappa = kappas[prior["kappa"]]
        weights = prior_weights(network, prior["kind"], kappa, seed=0,
                                diagonal=settings.get("diagonal", "zero"), **options)  # fmt: skip
        apply_prior(network, weights)
        responses.append(calibrate(network, batch, settings["init_ratio"])[0]["data_rms_before"])
    return responses


def train_run(
    config: Mapping,
    dataset: str,
    model: str,
    prior: str,
    seed: int,
    out_dir: str | Path,
    prior_file: str | Path | None,
    threads: int,
    processes: int = 1,
) -> None:
    """Train one run of the experiment grid into out_dir (resuming from its checkpoint).

    With processes > 1 the run goes through torchrun on this node (DistributedDataParallel:
    one process per GPU, or CPU processes with the gloo backend).
    """
    out_dir = Path(out_dir)
    if processes > 1:
        _train_with_torchrun(
            config, dataset, model, prior, seed, out_dir, prior_file, threads, processes
        )
        return
    run = run_from_config(
        config,
        dataset,
        model,
        prior,
        seed,
        out_dir,
        prior_file=Path(prior_file) if prior_file else None,
        threads=threads,
    )
    # Snakemake reruns a job when its settings changed: a checkpoint of other settings is set
    # aside (logged), one of the same settings (a job cut off) is resumed.
    summary = train(run, "set_aside")
    log.info(
        "%s %s %s seed %d: test top-1 %.4f",
        dataset,
        model,
        prior,
        seed,
        summary["final"]["test_top1"],
    )


def _train_with_torchrun(
    config: Mapping,
    dataset: str,
    model: str,
    prior: str,
    seed: int,
    out_dir: Path,
    prior_file: str | Path | None,
    threads: int,
    processes: int,
) -> None:
    threads_each = str(max(1, threads // processes))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc-per-node={processes}", "-m", "ann.train"]
    command += ["--dataset", dataset, "--model", model, "--prior", prior, "--seed", str(seed)]
    command += ["--out", str(out_dir), "--threads", threads_each, "--set-aside"]
    if prior_file:
        command += ["--prior-file", str(prior_file)]
    # The config travels in a private temporary file: nothing is written into the run folder
    # before rank 0 holds its lock.
    with tempfile.TemporaryDirectory(prefix="ann-train-") as private:
        config_file = Path(private) / "run_config.yaml"
        config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        command += ["--config", str(config_file)]
        log.info("launching: %s", " ".join(command))
        env = {**os.environ, "OMP_NUM_THREADS": threads_each}
        result = subprocess.run(command, env=env)
    if result.returncode != 0:
        raise TrainingError(
            f"torchrun with {processes} processes failed (exit code "
            f"{result.returncode}); see the messages above."
        )
