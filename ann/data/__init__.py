"""Datasets for the Dit-CNN experiments.

Fashion-MNIST (IDX files) and CIFAR-10/100 (python pickle batches) are parsed from their
original formats (`readers`) into uint8 tensors (`DeviceDataset`, `device`) that are moved to
the training device once and are batched, randomly cropped, flipped and normalised there
(`augment`), so an epoch never waits on a data loader. ImageNet-1K is read from class folders
through timm's dataset, transforms and prefetching loaders (`imagenet`). Where each dataset
lives, its files, statistics and how to get it: `sources`. Nothing is downloaded unless a
caller passes ``download=True``; a missing or damaged dataset raises `DatasetError` naming
the paths searched and how to get the data.
"""

from .augment import GpuAugment, augment_batch, iterate_batches, normalize
from .device import DeviceDataset, load_dataset
from .imagenet import (
    ImageNetAugment,
    ImageNetData,
    check_timm_augmentation,
    imagenet_loader,
    imagenet_loaders,
    load_imagenet,
    update_batches,
)
from .readers import read_cifar_batch, read_idx
from .sources import (
    FASHION_MNIST_ROOT,
    HOW_TO_GET,
    IMAGENET_FOLDERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MEAN,
    NUM_CLASSES,
    SPLITS,
    STD,
    DatasetSource,
    expected_files,
)

__all__ = [
    "FASHION_MNIST_ROOT",
    "HOW_TO_GET",
    "IMAGENET_FOLDERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MEAN",
    "NUM_CLASSES",
    "SPLITS",
    "STD",
    "DatasetSource",
    "DeviceDataset",
    "GpuAugment",
    "ImageNetAugment",
    "ImageNetData",
    "augment_batch",
    "check_timm_augmentation",
    "expected_files",
    "imagenet_loader",
    "imagenet_loaders",
    "iterate_batches",
    "load_dataset",
    "load_imagenet",
    "normalize",
    "read_cifar_batch",
    "read_idx",
    "update_batches",
]
