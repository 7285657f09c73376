"""The original on-disk formats: Fashion-MNIST's IDX files (gzipped or not) and CIFAR's
python pickle batches (through an allow-listed unpickler); optional torchvision download."""

from __future__ import annotations

import gzip
import math
import os
import pickle
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ann.errors import DatasetError

from .sources import (
    CIFAR_FILES,
    CIFAR_FOLDER,
    CIFAR_LABEL_KEY,
    FASHION_FILES,
    FASHION_MNIST_ROOT,
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    IMAGE_SHAPE,
    NUM_CLASSES,
    TORCHVISION_CLASS,
)

PathLike = str | os.PathLike[str]


def resolve_root(name: str, root: PathLike | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    if name == "fashion_mnist":
        return FASHION_MNIST_ROOT
    raise DatasetError(f"no root folder given for {name} (config key `datasets.{name}.root`).")


def read_arrays(name: str, root: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    if name == "fashion_mnist":
        images, labels = _read_fashion_mnist(root, split, download)
        images = np.pad(images, ((0, 0), (2, 2), (2, 2)))[:, None]
    else:
        images, labels = _read_cifar(name, root, split, download)
    return images, labels


def _read_fashion_mnist(root: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    names = FASHION_FILES[split]
    folder = _find_files(
        "fashion_mnist", [root, root / "FashionMNIST" / "raw"], names, root, split, download
    )
    images = read_idx(folder / names[0], IDX_IMAGES_MAGIC)
    labels = read_idx(folder / names[1], IDX_LABELS_MAGIC)
    _check_arrays("fashion_mnist", images, labels, folder)
    return images, labels


def _read_cifar(name: str, root: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    names = CIFAR_FILES[name][split]
    folder = _find_files(name, [root / CIFAR_FOLDER[name], root], names, root, split, download)
    batches = [read_cifar_batch(folder / file, CIFAR_LABEL_KEY[name]) for file in names]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    _check_arrays(name, images, labels, folder)
    return images, labels


def _find_files(
    name: str, folders: list[Path], names: Sequence[str], root: Path, split: str, download: bool
) -> Path:
    found = _first_folder_with(folders, names)
    if found is None and download:
        _torchvision_download(name, root, split)
        found = _first_folder_with(folders, names)
    if found is None:
        searched = ", ".join(str(folder) for folder in folders)
        raise DatasetError(
            f"{name} {split} files ({', '.join(names)}) not found; searched: {searched}."
        )
    return found


def _first_folder_with(folders: list[Path], names: Sequence[str]) -> Path | None:
    return next((f for f in folders if all((f / n).is_file() for n in names)), None)


def _torchvision_download(name: str, root: Path, split: str) -> None:
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, TORCHVISION_CLASS[name])
    try:
        dataset_class(str(root), train=split == "train", download=True)
    except Exception as error:
        raise DatasetError(f"downloading {name} into {root} failed: {error}") from error


def read_idx(path: PathLike, magic: int) -> np.ndarray:
    """Read a gzipped uint8 IDX file, checking its magic number and that its size matches."""
    raw = _gunzip(Path(path))
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} bytes).")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DatasetError(f"{path}: IDX magic number {found}, expected {magic}.")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    payload = np.frombuffer(raw, np.uint8, offset=header_size)
    if payload.size != math.prod(shape):
        raise DatasetError(
            f"{path}: header gives shape {shape} ({math.prod(shape)} bytes) "
            f"but the file holds {payload.size} data bytes."
        )
    return payload.reshape(shape)


def _gunzip(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as file:
            return file.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{path}: not a complete gzip file ({error}).") from error


class _CifarUnpickler(pickle.Unpickler):
    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, not part of a CIFAR batch")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def read_cifar_batch(path: PathLike, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR python batch as uint8 N x 3 x 32 x 32 images and int64 labels."""
    batch = _unpickle(Path(path))
    missing = [key for key in (b"data", label_key) if key not in batch]
    if missing:
        raise DatasetError(f"{path}: batch lacks key(s) {missing}; found {sorted(batch)}.")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{path}: data is {data.dtype} {data.shape}, expected uint8 (N, 3072).")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{path}: labels are {labels.dtype} {labels.shape}, expected integers.")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as file:
            batch = _CifarUnpickler(file, encoding="bytes").load()
    except Exception as error:
        raise DatasetError(f"{path}: not a readable CIFAR pickle ({error}).") from error
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: holds a {type(batch).__name__}, expected a dict.")
    return batch


def _check_arrays(name: str, images: np.ndarray, labels: np.ndarray, folder: Path) -> None:
    if images.shape[1:] != IMAGE_SHAPE[name]:
        raise DatasetError(
            f"{folder}: images have shape {images.shape[1:]}, expected {IMAGE_SHAPE[name]}."
        )
    if len(images) != len(labels):
        raise DatasetError(f"{folder}: {len(images)} images but {len(labels)} labels.")
    if len(labels) == 0:
        raise DatasetError(f"{folder}: no images.")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES[name]:
        raise DatasetError(
            f"{folder}: labels span {labels.min()}..{labels.max()}, "
            f"expected 0..{NUM_CLASSES[name] - 1}."
        )
