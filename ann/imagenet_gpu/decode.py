"""Decoding a batch of encoded images on the device (nvjpeg on CUDA), with per-file fallbacks.

Part of ann.imagenet_gpu, whose docstring describes the whole pipeline."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def is_jpeg(data: torch.Tensor) -> bool:
    return len(data) > 3 and data[0].item() == 0xFF and data[1].item() == 0xD8


def decode_images(
    data: Sequence[torch.Tensor],
    device: torch.device | str,
    batchable: Sequence[bool] | None = None,
) -> list[torch.Tensor]:
    """Decode encoded images (1-D uint8 CPU tensors) to uint8 RGB (3, H, W) tensors on device.

    The `batchable` ones (default: those that start like a JPEG) go through one batched
    `decode_jpeg` call on the device (nvjpeg on CUDA); when that call fails, each is tried
    alone. What is left (PNG, CMYK or otherwise rejected JPEGs) is decoded by
    `decode_image` on the CPU and moved to the device.
    """
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    device = torch.device(device)
    if batchable is None:
        batchable = [is_jpeg(d) for d in data]
    images: list[torch.Tensor | None] = [None] * len(data)
    chosen = [k for k, ok in enumerate(batchable) if ok]
    if chosen:
        try:
            decoded = decode_jpeg([data[k] for k in chosen], mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            decoded = [_decode_alone(data[k], device) for k in chosen]
        for k, image in zip(chosen, decoded, strict=True):
            images[k] = image
    for k, image in enumerate(images):
        if image is None:
            images[k] = decode_image(data[k], mode=ImageReadMode.RGB).to(device)
    return images


def _decode_alone(data: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return None
