"""Where each dataset lives and what it is: roots, file names, class counts, mean and
std, how to get the data (`HOW_TO_GET`) and the `datasets:` config entry (`DatasetSource`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ann.sections import checked_keys

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

FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CIFAR_FOLDER = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
CIFAR_FILES = {
    "cifar10": {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    "cifar100": {"train": ("train",), "test": ("test",)},
}
CIFAR_LABEL_KEY = {"cifar10": b"labels", "cifar100": b"fine_labels"}
TORCHVISION_CLASS = {"fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}
IMAGE_SHAPE = {"fashion_mnist": (28, 28), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32)}
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})
IMAGENET_FOLDERS = ("train/", "val/")


def expected_files(name: str) -> list[str]:
    """What shows that a dataset's root holds it, relative to the root: any one of these
    files (the first training file, in each folder searched), or, for ImageNet, all of these
    folders. (The workflow checks them when it reads the config, without importing ann:
    pipeline.plan_checks.DATASET_FILES, which tests/test_config_sections.py compares.)"""
    if name == "fashion_mnist":
        first = FASHION_FILES["train"][0]
        return [first, f"{TORCHVISION_CLASS[name]}/raw/{first}"]
    if name in CIFAR_FILES:
        first = CIFAR_FILES[name]["train"][0]
        return [f"{CIFAR_FOLDER[name]}/{first}", first]
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


@dataclass(frozen=True)
class DatasetSource:
    """One entry of the `datasets` config section: where the dataset is, whether it may be
    downloaded there, its recipe (one name, or one per device type) and the recipes of some of
    its models (model name or glob pattern -> the same; ann.recipes resolves them). The
    defaults are the schema's (tests/test_config_sections.py checks that they agree)."""

    root: str | None
    recipe: str | Mapping[str, str]
    download: bool = False
    model_recipes: Mapping[str, str | Mapping[str, str]] | None = None  # None: none

    @classmethod
    def from_mapping(cls, values: Mapping, where: str = "datasets") -> DatasetSource:
        return cls(**checked_keys(cls, values, where))
