"""A small dataset held whole on the training device (`DeviceDataset`): loaded once from
its original files, optionally a class-balanced subset."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
import torch

from ann.errors import DatasetError

from .readers import read_arrays, resolve_root
from .sources import HOW_TO_GET, MEAN, NUM_CLASSES, SPLITS, STD

PathLike = str | os.PathLike[str]


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
        images, labels = read_arrays(name, resolve_root(name, root), split, download)
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
