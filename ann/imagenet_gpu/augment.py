"""GpuAugmenter: a batch of Plans and encoded images to a normalised, augmented batch on the device.

Part of ann.imagenet_gpu, whose docstring describes the whole pipeline."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ann.data import ImageNetAugment, normalize

from .decode import decode_images
from .pixels import _to, apply_ops, resized_crop
from .plan import Plan


class GpuAugmenter:
    """Encoded images + plans -> a normalised, randomly erased float32 batch on `device`."""

    def __init__(self, augment: ImageNetAugment, device: torch.device | str) -> None:
        from timm.data.random_erasing import RandomErasing

        self.device = torch.device(device)
        self.size = augment.input_size
        self.mean = torch.tensor(augment.mean, device=self.device)
        self.std = torch.tensor(augment.std, device=self.device)
        self.erasing = (
            RandomErasing(probability=augment.re_prob, mode="const", device=self.device)
            if augment.re_prob > 0
            else None
        )

    def images(
        self,
        data: Sequence[torch.Tensor],
        plans: Sequence[Plan],
        batchable: Sequence[bool] | None = None,
    ) -> torch.Tensor:
        """Decoded, cropped, resized, flipped and RandAugmented uint8 (N, 3, S, S) images."""
        decoded = decode_images(data, self.device, batchable)
        x = torch.stack(
            [
                resized_crop(image, plan.crop, self.size, plan.interpolation)
                for image, plan in zip(decoded, plans, strict=True)
            ]
        )
        flips = _to(self.device, torch.tensor([plan.flip for plan in plans]))
        x = torch.where(flips.view(-1, 1, 1, 1), x.flip(-1), x)
        for step in range(max((len(plan.ops) for plan in plans), default=0)):
            x = apply_ops(x, [plan.ops[step] if step < len(plan.ops) else None for plan in plans])
        return x

    def __call__(
        self,
        data: Sequence[torch.Tensor],
        plans: Sequence[Plan],
        batchable: Sequence[bool] | None = None,
    ) -> torch.Tensor:
        x = normalize(self.images(data, plans, batchable), self.mean, self.std)
        if self.erasing is not None:
            x = self.erasing(x)
        return x
