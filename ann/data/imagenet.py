"""ImageNet-1K from class folders through timm's dataset, transforms and loaders.

Training batches come as timm's train.py makes them by default (its prefetcher): each worker
decodes, crops, flips and RandAugments its images, the collate function stacks them as uint8
(timm's FastCollateMixup mixes each loader batch there when the recipe mixes before erasing),
and the prefetcher normalises and randomly erases each loader batch on the device (with
re_num_splits 2, only its second half: timm's --resplit). A loader batch is the official
per-GPU batch (the recipe's mixup_chunk); `update_batches` joins as many as one update of this
rank takes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ann.errors import DatasetError, RecipeError

from .sources import HOW_TO_GET, IMAGE_SUFFIXES, IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from timm.data import ImageDataset
    from torch.utils.data import DataLoader

PathLike = str | os.PathLike[str]


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
    re_num_splits: int = 0  # 2: erase only the second half of each loader batch (--resplit)
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
    return any(Path(entry.name).suffix.lower() in IMAGE_SUFFIXES for entry in os.scandir(folder))


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
    """timm train and validation loaders, with timm's prefetcher (normalise and erase on the
    device, which overlaps the copy with the caller's work on CUDA).

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
    collate_mixup: object | None = None,
) -> DataLoader:
    """One timm loader with timm's prefetcher, which normalises and (training) randomly erases
    each batch on `device`: training (RandAugment, erasing, the last partial batch dropped;
    with `collate_mixup`, a timm FastCollateMixup, each batch mixed before it is erased) or
    evaluation (resize, centre crop by crop_pct)."""
    from timm.data import create_loader

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    training = {}
    if is_training:
        check_timm_augmentation(augment)
        training = dict(
            auto_augment=augment.auto_augment,
            re_prob=augment.re_prob,
            re_mode=augment.re_mode,
            re_split=augment.re_num_splits == 2,
            interpolation=augment.train_interpolation,
            collate_fn=collate_mixup,
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
        use_prefetcher=True,
        pin_memory=device.type == "cuda",
        **(training if is_training else {"interpolation": augment.interpolation}),
    )


def check_timm_augmentation(augment: ImageNetAugment) -> None:
    """Refuse what timm's PIL pipeline cannot run here: re_num_splits other than 0 or 2 (timm's
    loader knows only --resplit), and, with Pillow 13 or later, RandAugment's increasing ops
    ('-inc1'), whose PosterizeIncreasing keeps 0 bits at magnitude 10, which Pillow 13 refuses."""
    import PIL

    if augment.re_num_splits not in (0, 2):
        raise RecipeError(
            f"re_num_splits {augment.re_num_splits} is not 0 or 2 (timm's --resplit)."
        )
    policy = augment.auto_augment or ""
    if "inc1" in policy.split("-") and int(PIL.__version__.split(".")[0]) >= 13:
        raise RecipeError(
            f"auto_augment '{policy}' with data_pipeline timm: timm's PosterizeIncreasing keeps "
            f"0 bits at magnitude 10, which Pillow {PIL.__version__} refuses; use "
            "data_pipeline: gpu (it posterizes to black there, as timm intends) or Pillow < 13."
        )


def update_batches(
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]], per_update: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches joined `per_update` at a time, in order (a last partial group is
    dropped): the images and targets of one update made of per_update loader batches."""
    group: list[tuple[torch.Tensor, torch.Tensor]] = []
    for batch in loader:
        group.append(batch)
        if len(group) == per_update:
            images, targets = zip(*group, strict=True)
            yield torch.cat(images), torch.cat(targets)
            group = []
