"""A run's identity: everything its numbers depend on, recorded in checkpoint.pt and
metrics.json and compared before a run resumes or reuses a folder.

It holds the labels (dataset, model, prior, seed), the model's keyword arguments, every
recipe key (as `asdict` of the Recipe, so keys added later are covered), the prior settings
the run depends on (PriorSettings.used_by of its prior and mode: the same the train rule's
params hold, so what reruns a job also changes the identity), the sha256 of
the prior file and of the kappa file, the dataset's files (name, size and a hash: the whole
file up to WHOLE_FILE_BYTES, its first and last HEAD_BYTES above; for ImageNet the index of
its file names), the precision the model trains in, the number of pieces each global batch is
split into (ranks x micro-batches: BatchNorm sees one piece at a time) and ENGINE_VERSION.

Left out because they do not change the numbers: the output folder, the data root's path
(the files are compared, not where they are), CPU threads, the device's name and torch.compile's
mode, and the recipe keys of NEUTRAL_RECIPE_KEYS. docs/reruns.md describes what reruns what.
"""

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import torch

from ann.data.readers import resolve_root
from ann.data.sources import CIFAR_FILES, CIFAR_FOLDER, FASHION_FILES, IMAGENET_FOLDERS

from .distributed import Context
from .evaluate import autocast
from .run import Run

__all__ = [
    "ENGINE_VERSION",
    "NEUTRAL_RECIPE_KEYS",
    "dataset_fingerprint",
    "identity_differences",
    "run_identity",
]

# Raise when a change to the training engine changes the numbers a run produces: runs made
# before it then count as another identity (the workflow starts them over, the CLI refuses).
ENGINE_VERSION = 1
# Recipe keys that choose how, not what: the ImageNet input pipelines make the same batches
# (tests/test_imagenet_gpu.py), so a checkpoint resumes under either.
NEUTRAL_RECIPE_KEYS = ("data_pipeline",)
WHOLE_FILE_BYTES = 256 * 2**20  # Fashion-MNIST's and CIFAR's files are hashed whole
HEAD_BYTES = 4 * 2**20


def _jsonable(value: object) -> object:
    """Tuples as lists, Paths as text: the form the identity takes in JSON and in a checkpoint."""
    return json.loads(json.dumps(value, default=str))


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as file:
        if size <= WHOLE_FILE_BYTES:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        else:
            digest.update(file.read(HEAD_BYTES))
            file.seek(size - HEAD_BYTES)
            digest.update(file.read(HEAD_BYTES))
    return digest.hexdigest()


def _small_dataset_files(name: str, root: Path) -> list[Path]:
    """The files ann.data reads for a small dataset: the first folder that holds each
    split's files (as ann.data.readers searches them)."""
    if name == "fashion_mnist":
        folders, splits = [root, root / "FashionMNIST" / "raw"], FASHION_FILES
    else:
        folders, splits = [root / CIFAR_FOLDER[name], root], CIFAR_FILES[name]
    files = []
    for names in splits.values():
        folder = next((f for f in folders if all((f / n).is_file() for n in names)), None)
        files += [folder / n for n in names] if folder else []
    return files


def dataset_fingerprint(name: str, root: str | Path | None) -> dict:
    """What identifies a dataset's contents: per file its name, size and hash (the small
    datasets), or the sorted index of every file name under train/ and val/ (ImageNet)."""
    base = resolve_root(name, root) if name != "imagenet" else Path(root or ".").expanduser()
    if name == "imagenet":
        digest, count = hashlib.sha256(), 0
        for folder in IMAGENET_FOLDERS:
            for dirpath, dirnames, filenames in os.walk(base / folder):
                dirnames.sort()
                for filename in sorted(filenames):
                    relative = os.path.relpath(os.path.join(dirpath, filename), base)
                    digest.update(relative.encode() + b"\n")
                    count += 1
        return {"index_sha256": digest.hexdigest(), "files": count}
    return {
        str(path.relative_to(base)): {"bytes": path.stat().st_size, "sha256": _file_digest(path)}
        for path in _small_dataset_files(name, base)
    }


def _prior_settings(run: Run) -> dict | None:
    """The prior settings this run depends on (ann.settings.PriorSettings.used_by: its cell and
    the mapping's choices for a built prior, the calibration, the anchor strength in anchor
    mode; nothing for zero in init mode); none for a model without quadratic layers."""
    if run.prior == "none":
        return None
    return run.priors.used_by(run.priors.spec(run.prior))


def _precision(ctx: Context, precision: str) -> str:
    """The dtype the forward pass computes in: the autocast the loop trains under."""
    context = autocast(ctx, precision)
    enabled = getattr(context, "_enabled", True)
    return str(context.fast_dtype if enabled else torch.float32).removeprefix("torch.")


def run_identity(
    run: Run,
    ctx: Context,
    model_kwargs: Mapping,
    *,
    prior_sha: str | None,
    kappa_sha: str | None,
    data: Mapping,
) -> dict:
    """The identity of `run` on `ctx` (module docstring): a JSON-able mapping."""
    recipe = {k: v for k, v in asdict(run.recipe).items() if k not in NEUTRAL_RECIPE_KEYS}
    return _jsonable(
        {
            "engine": ENGINE_VERSION,
            "dataset": run.dataset,
            "model": run.model,
            "prior": run.prior,
            "seed": run.seed,
            "model_kwargs": dict(model_kwargs),
            "recipe": recipe,
            "priors": _prior_settings(run),
            "prior_file_sha256": prior_sha,
            "kappa_sha256": kappa_sha,
            "data": dict(data),
            "precision": _precision(ctx, run.recipe.precision),
            "batch_pieces": ctx.world_size * run.micro_batches,
        }
    )


def _flat(value: object, key: str = "") -> dict[str, object]:
    if isinstance(value, Mapping) and value:
        out = {}
        for name, item in value.items():
            out |= _flat(item, f"{key}.{name}" if key else str(name))
        return out
    return {key: value}


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:16] + "..." + text[-8:]


def identity_differences(saved: Mapping | None, current: Mapping, limit: int = 6) -> str:
    """The keys in which two identities differ, as 'key: old -> new' (at most `limit`); ''
    when they are equal."""
    if saved is None:
        return "no identity recorded (made by an earlier version of ann.train)"
    old, new = _flat(saved), _flat(current)
    missing = object()
    keys = [
        k for k in sorted(old.keys() | new.keys()) if old.get(k, missing) != new.get(k, missing)
    ]
    shown = [
        f"{k}: {_short(old[k]) if k in old else '(absent)'} -> {_short(new[k]) if k in new else '(absent)'}"
        for k in keys[:limit]
    ]
    return "; ".join(shown) + (f"; and {len(keys) - limit} more" if len(keys) > limit else "")
