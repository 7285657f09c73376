"""Batches of a `DeviceDataset` on its device: normalisation, random crop and flip
(`augment_batch`, `GpuAugment`) and shuffled fixed-size batches (`iterate_batches`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from .device import DeviceDataset


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

    Every image gets its own offsets and flip; all of it runs on the images' device in one
    gather, the random draws included (`draw_on_device`), so that no step waits on a copy from
    the host. The draws are reproducible from `generator` (on the CPU or on the device).
    """
    n, channels, height, width = images.shape
    rows = torch.arange(height, device=images.device).expand(n, height)
    cols = torch.arange(width, device=images.device).expand(n, width)
    if crop_padding > 0:
        images = F.pad(images, (crop_padding,) * 4)
        rows = rows + draw_on_device(2 * crop_padding + 1, n, generator, images.device)[:, None]
        cols = cols + draw_on_device(2 * crop_padding + 1, n, generator, images.device)[:, None]
    if flip:
        mirrored = draw_on_device(2, n, generator, images.device).bool()
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=images.device).view(n, 1, 1, 1)
    channel = torch.arange(channels, device=images.device).view(1, channels, 1, 1)
    crops = images[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
    return normalize(crops, mean, std)


_DEVICE_GENERATORS: dict[torch.device, torch.Generator] = {}
SEED_BOUND = 2**62


def draw_on_device(
    high: int, n: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """n integers in [0, high) drawn on `device`, reproducibly from `generator`.

    A generator on another device (the run's CPU generators, which a checkpoint saves) gives
    one seed, drawn on its own device without touching `device`, to a generator kept on
    `device`; that generator draws there. A CPU draw copied to a GPU would make the host wait
    for the copy at every step."""
    device = torch.device(device)
    if generator is None or generator.device.type == device.type:
        return torch.randint(high, (n,), generator=generator, device=device)
    seed = int(torch.randint(SEED_BOUND, (1,), generator=generator, device=generator.device))
    local = _DEVICE_GENERATORS.get(device)
    if local is None:
        local = _DEVICE_GENERATORS[device] = torch.Generator(device)
    local.manual_seed(seed)
    return torch.randint(high, (n,), generator=local, device=device)


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
