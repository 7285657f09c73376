"""Datasets for the Dit-CNN experiments.

Fashion-MNIST (IDX files) and CIFAR-10/100 (python pickle batches) are parsed from their original
formats into uint8 tensors (`DeviceDataset`) that are moved to the training device once and are
batched, randomly cropped, flipped and normalised there, so an epoch never waits on a data loader.
ImageNet-1K is read from class folders through timm's dataset, transforms and loaders.
Nothing is downloaded unless a caller passes ``download=True``; a missing or damaged dataset
raises `DatasetError` naming the paths searched and how to get the data.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError, DatasetError

if TYPE_CHECKING:
    from timm.data import ImageDataset
    from torch.utils.data import DataLoader

PathLike = str | os.PathLike[str]

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "test")
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

NUM_CLASSES = {"fashion_mnist": 10, "cifar10": 10, "cifar100": 100}
MEAN = {
    "fashion_mnist": (0.2860,),
    "cifar10": (0.4914, 0.4822, 0.4465),
    "cifar100": (0.5071, 0.4865, 0.4409),
}
STD = {
    "fashion_mnist": (0.3530,),
    "cifar10": (0.2470, 0.2435, 0.2616),
    "cifar100": (0.2673, 0.2564, 0.2762),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_CIFAR_FOLDER = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_CIFAR_FILES = {
    "cifar10": {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    "cifar100": {"train": ("train",), "test": ("test",)},
}
_CIFAR_LABEL_KEY = {"cifar10": b"labels", "cifar100": b"fine_labels"}
_TORCHVISION_CLASS = {"fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}
_IMAGE_SHAPE = {"fashion_mnist": (28, 28), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32)}
_IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})
IMAGENET_FOLDERS = ("train/", "val/")


def expected_files(name: str) -> list[str]:
    """What shows that a dataset's root holds it, relative to the root: any one of these
    files (the first training file, in each folder searched), or, for ImageNet, all of these
    folders. (The workflow checks them when it reads the config, without importing ann:
    pipeline.plan_checks.DATASET_FILES, which tests/test_config_sections.py compares.)"""
    if name == "fashion_mnist":
        first = _FASHION_FILES["train"][0]
        return [first, f"{_TORCHVISION_CLASS[name]}/raw/{first}"]
    if name in _CIFAR_FILES:
        first = _CIFAR_FILES[name]["train"][0]
        return [f"{_CIFAR_FOLDER[name]}/{first}", first]
    return list(IMAGENET_FOLDERS)


# How to get each dataset: the error that misses it says so, and so does the report.
HOW_TO_GET = {
    "fashion_mnist": (
        "Install it with `apt-get install dataset-fashion-mnist` (files in "
        f"{FASHION_MNIST_ROOT}), set `datasets.fashion_mnist.root` to a folder holding the four "
        "IDX .gz files, or set `datasets.fashion_mnist.download: true`."
    ),
    "cifar10": (
        "Unpack the CIFAR-10 python version (cifar-10-python.tar.gz from "
        "https://www.cs.toronto.edu/~kriz/cifar.html) into a folder and set "
        "`datasets.cifar10.root` to it, or set `datasets.cifar10.download: true`."
    ),
    "cifar100": (
        "Unpack the CIFAR-100 python version (cifar-100-python.tar.gz from "
        "https://www.cs.toronto.edu/~kriz/cifar.html) into a folder and set "
        "`datasets.cifar100.root` to it, or set `datasets.cifar100.download: true`."
    ),
    "imagenet": (
        "ImageNet-1K is expected as <root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG "
        "(validation images sorted into the same class folders); set `datasets.imagenet.root`. "
        "It cannot be downloaded automatically (https://image-net.org/download.php)."
    ),
}


@dataclass
class DeviceDataset:
    """A whole dataset as uint8 images (N x C x H x W) and int64 labels on one device."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 N x C x H x W, got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 of shape ({len(self.images)},)")
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise ValueError("mean and std need one value per channel")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> DeviceDataset:
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def subset(self, n: int, seed: int = 0) -> DeviceDataset:
        """A class-stratified random subset of n items, in original order, fixed by the seed."""
        if not 0 < n <= len(self):
            raise ValueError(f"subset size must be in 1..{len(self)}, got {n}")
        keep = _stratified_choice(self.labels.cpu(), n, seed).to(self.device)
        return replace(self, images=self.images[keep], labels=self.labels[keep])


def _stratified_choice(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled = labels[perm]
    counts = torch.bincount(shuffled)
    share = (_rank_within_class(shuffled, counts) + 0.5) / counts[shuffled]
    return perm[torch.argsort(share, stable=True)[:n]].sort().values


def _rank_within_class(labels: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    grouped = torch.argsort(labels, stable=True)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(grouped, dtype=torch.float64)
    rank[grouped] = (torch.arange(len(labels)) - first[labels[grouped]]).double()
    return rank


def load_dataset(
    name: str, root: PathLike | None = None, split: str = "train", download: bool = False
) -> DeviceDataset:
    """Load "fashion_mnist", "cifar10" or "cifar100" ("train" or "test" split) on the CPU.

    Fashion-MNIST images are zero-padded by 2 pixels on each side to 1 x 32 x 32, so the CIFAR
    networks, which expect 32 x 32 inputs, run on it unchanged. CIFAR images are 3 x 32 x 32.
    Root defaults to /usr/share/datasets/fashion-mnist for Fashion-MNIST; CIFAR needs a root.
    """
    if name not in NUM_CLASSES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(NUM_CLASSES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    try:
        images, labels = _read_arrays(name, _resolve_root(name, root), split, download)
    except DatasetError as error:
        raise DatasetError(f"{error}\n{HOW_TO_GET[name]}") from None
    return DeviceDataset(
        images=torch.from_numpy(np.ascontiguousarray(images)),
        labels=torch.from_numpy(labels.astype(np.int64)),
        num_classes=NUM_CLASSES[name],
        mean=MEAN[name],
        std=STD[name],
        name=name,
    )


def _resolve_root(name: str, root: PathLike | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    if name == "fashion_mnist":
        return FASHION_MNIST_ROOT
    raise DatasetError(f"no root folder given for {name} (config key `datasets.{name}.root`).")


def _read_arrays(
    name: str, root: Path, split: str, download: bool
) -> tuple[np.ndarray, np.ndarray]:
    if name == "fashion_mnist":
        images, labels = _read_fashion_mnist(root, split, download)
        images = np.pad(images, ((0, 0), (2, 2), (2, 2)))[:, None]
    else:
        images, labels = _read_cifar(name, root, split, download)
    return images, labels


def _read_fashion_mnist(root: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    names = _FASHION_FILES[split]
    folder = _find_files(
        "fashion_mnist", [root, root / "FashionMNIST" / "raw"], names, root, split, download
    )
    images = read_idx(folder / names[0], IDX_IMAGES_MAGIC)
    labels = read_idx(folder / names[1], IDX_LABELS_MAGIC)
    _check_arrays("fashion_mnist", images, labels, folder)
    return images, labels


def _read_cifar(name: str, root: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    names = _CIFAR_FILES[name][split]
    folder = _find_files(name, [root / _CIFAR_FOLDER[name], root], names, root, split, download)
    batches = [read_cifar_batch(folder / file, _CIFAR_LABEL_KEY[name]) for file in names]
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

    dataset_class = getattr(torchvision.datasets, _TORCHVISION_CLASS[name])
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
    if images.shape[1:] != _IMAGE_SHAPE[name]:
        raise DatasetError(
            f"{folder}: images have shape {images.shape[1:]}, expected {_IMAGE_SHAPE[name]}."
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


def normalize(
    images: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """uint8 N x C x H x W images to float32 (x / 255 - mean) / std, on their device."""
    mean_t = _per_channel(mean, images)
    std_t = _per_channel(std, images)
    return images.float().sub_(mean_t * 255).div_(std_t * 255)


def _per_channel(values: Sequence[float] | torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    channels = images.shape[1]
    tensor = torch.as_tensor(values, dtype=torch.float32, device=images.device)
    if tensor.numel() != channels:
        raise ValueError(f"need {channels} per-channel values, got {tensor.numel()}")
    return tensor.view(1, channels, 1, 1)


def augment_batch(
    images: torch.Tensor,
    *,
    crop_padding: int,
    flip: bool,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random crop (zero padding), random horizontal flip and normalisation of uint8 images.

    Every image gets its own offsets and flip; all of it runs on the images' device in one gather.
    Pass a generator on that device to keep the random draws there (and reproducible).
    """
    n, channels, height, width = images.shape
    rows = torch.arange(height, device=images.device).expand(n, height)
    cols = torch.arange(width, device=images.device).expand(n, width)
    if crop_padding > 0:
        images = F.pad(images, (crop_padding,) * 4)
        rows = rows + _randint(2 * crop_padding + 1, n, generator, images.device)[:, None]
        cols = cols + _randint(2 * crop_padding + 1, n, generator, images.device)[:, None]
    if flip:
        mirrored = _randint(2, n, generator, images.device).bool()
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=images.device).view(n, 1, 1, 1)
    channel = torch.arange(channels, device=images.device).view(1, channels, 1, 1)
    crops = images[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
    return normalize(crops, mean, std)


def _randint(
    high: int, n: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    source = generator.device if generator is not None else device
    return torch.randint(high, (n,), generator=generator, device=source).to(device)


class GpuAugment:
    """Training augmentation and evaluation normalisation for a `DeviceDataset`."""

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        crop_padding: int = 4,
        flip: bool = True,
    ) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        self.crop_padding = crop_padding
        self.flip = flip

    @classmethod
    def for_dataset(
        cls, dataset: DeviceDataset, *, crop_padding: int = 4, flip: bool = True
    ) -> GpuAugment:
        return cls(dataset.mean, dataset.std, crop_padding=crop_padding, flip=flip)

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        self._move_to(images.device)
        return augment_batch(
            images,
            crop_padding=self.crop_padding,
            flip=self.flip,
            mean=self.mean,
            std=self.std,
            generator=generator,
        )

    def evaluate(self, images: torch.Tensor) -> torch.Tensor:
        self._move_to(images.device)
        return normalize(images, self.mean, self.std)

    def _move_to(self, device: torch.device) -> None:
        if self.mean.device != device:
            self.mean = self.mean.to(device)
            self.std = self.std.to(device)


def iterate_batches(
    dataset: DeviceDataset,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, labels) batches of one (shuffled) order of the dataset, indexed on
    the device. Under torchrun every rank draws the same batches (identically seeded CPU
    generators) and the training loop keeps each rank's rows (ann.engine.batches)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if shuffle:
        source = generator.device if generator is not None else dataset.device
        order = torch.randperm(len(dataset), generator=generator, device=source)
        order = order.to(dataset.device)
    else:
        order = torch.arange(len(dataset), device=dataset.device)
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    for start in range(0, stop, batch_size):
        batch = order[start : start + batch_size]
        yield dataset.images[batch], dataset.labels[batch]


@dataclass
class ImageNetData:
    """ImageNet-1K train and validation datasets (timm ImageDataset) sharing one class index."""

    train: ImageDataset
    val: ImageDataset
    num_classes: int
    class_to_idx: dict[str, int]


@dataclass(frozen=True)
class ImageNetAugment:
    """The augmentation keys of an ImageNet training recipe (mixup/cutmix live in the engine)."""

    input_size: int = 224
    crop_pct: float = 0.875
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    re_prob: float = 0.25
    re_mode: str = "pixel"  # timm train.py's --remode
    interpolation: str = "bicubic"  # evaluation (ConvNeXt's pretrained config)
    train_interpolation: str = "random"  # timm train.py's --train-interpolation
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


def load_imagenet(root: PathLike) -> ImageNetData:
    """Index <root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG with timm's ImageDataset."""
    root = Path(root).expanduser()
    try:
        train_classes = _class_folders(root / "train")
        val_classes = _class_folders(root / "val")
        unknown = sorted(set(val_classes) - set(train_classes))
        if unknown:
            raise DatasetError(
                f"{root / 'val'}: class folders {unknown[:5]} are not in {root / 'train'}."
            )
    except DatasetError as error:
        raise DatasetError(f"{error}\n{HOW_TO_GET['imagenet']}") from None
    class_to_idx = {wnid: index for index, wnid in enumerate(train_classes)}
    return ImageNetData(
        train=_image_folder(root / "train", class_to_idx),
        val=_image_folder(root / "val", class_to_idx),
        num_classes=len(class_to_idx),
        class_to_idx=class_to_idx,
    )


def _class_folders(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder.")
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not classes:
        raise DatasetError(f"{folder} has no class folders.")
    empty = [name for name in classes if not _holds_image(folder / name)]
    if empty:
        raise DatasetError(f"{folder}: class folder(s) without images: {empty[:5]}.")
    return classes


def _holds_image(folder: Path) -> bool:
    return any(Path(entry.name).suffix.lower() in _IMAGE_SUFFIXES for entry in os.scandir(folder))


def _image_folder(folder: Path, class_to_idx: dict[str, int]) -> ImageDataset:
    from timm.data import create_dataset

    return create_dataset("", root=str(folder), search_split=False, class_map=class_to_idx)


def imagenet_loaders(
    data: ImageNetData,
    augment: ImageNetAugment,
    *,
    batch_size: int,
    num_workers: int,
    eval_batch_size: int | None = None,
    distributed: bool = False,
    device: torch.device | str | None = None,
) -> tuple[DataLoader, DataLoader]:
    """timm train and validation loaders; on CUDA they prefetch, normalise and erase on the GPU.

    With distributed=True the train loader uses a DistributedSampler (call set_epoch each epoch).
    """
    common = dict(num_workers=num_workers, distributed=distributed, device=device)
    train = imagenet_loader(data.train, augment, is_training=True, batch_size=batch_size, **common)
    val = imagenet_loader(
        data.val, augment, is_training=False, batch_size=eval_batch_size or batch_size, **common
    )
    return train, val


def imagenet_loader(
    dataset: ImageDataset,
    augment: ImageNetAugment,
    *,
    is_training: bool,
    batch_size: int,
    num_workers: int,
    distributed: bool = False,
    device: torch.device | str | None = None,
) -> DataLoader:
    """One timm loader: training (RandAugment, random erasing, dropped last batch) or evaluation
    (resize, centre crop by crop_pct)."""
    from timm.data import create_loader

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    on_gpu = device.type == "cuda"
    training = dict(
        auto_augment=augment.auto_augment,
        re_prob=augment.re_prob,
        re_mode=augment.re_mode,
        interpolation=augment.train_interpolation,
    )
    return create_loader(
        dataset,
        input_size=(3, augment.input_size, augment.input_size),
        batch_size=batch_size,
        is_training=is_training,
        mean=augment.mean,
        std=augment.std,
        crop_pct=augment.crop_pct,
        num_workers=num_workers,
        distributed=distributed,
        device=device,
        use_prefetcher=on_gpu,
        pin_memory=on_gpu,
        **(training if is_training else {"interpolation": augment.interpolation}),
    )


@dataclass(frozen=True)
class DatasetSource:
    """One entry of the `datasets` config section: where the dataset is, whether it may be
    downloaded there, and its recipe (one name, or one per device type). The defaults are
    the schema's (tests/test_config_sections.py checks that they agree)."""

    root: str | None
    recipe: str | Mapping[str, str]
    download: bool = False

    @classmethod
    def from_mapping(cls, values: Mapping, where: str = "datasets") -> DatasetSource:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"config key {where}.{unknown[0]}: unknown; known keys: {known}.")
        missing = [name for name in ("root", "recipe") if name not in values]
        if missing:
            raise ConfigError(f"config key {where}.{missing[0]}: missing.")
        return cls(**values)
