"""GpuAugmenter: a batch of Plans and encoded images to a normalised, augmented batch on the device.

Part of ann.imagenet_gpu, whose docstring describes the whole pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ann.data import ImageNetAugment, normalize

from .decode import decode_images
from .pixels import _to, apply_ops, resized_crop
from .plan import Plan


@dataclass(frozen=True)
class MixDraw:
    """One loader batch's mixup/cutmix draw, as timm's FastCollateMixup makes it: the weight of
    each image and, for cutmix, the box (top, bottom, left, right) pasted from its partner."""

    lam: float
    box: tuple[int, int, int, int] | None = None


def mixed(images: torch.Tensor, draw: MixDraw) -> torch.Tensor:
    """uint8 images mixed with the batch reversed (image i with image n - 1 - i), as timm's
    FastCollateMixup mixes a batch: the box pasted for cutmix, else lam x + (1 - lam) x',
    rounded half to even in float32."""
    if draw.lam == 1.0:
        return images
    partner = images.flip(0)
    if draw.box is not None:
        top, bottom, left, right = draw.box
        out = images.clone()
        out[:, :, top:bottom, left:right] = partner[:, :, top:bottom, left:right]
        return out
    blend = images.float() * draw.lam + partner.float() * (1 - draw.lam)
    return torch.round(blend).to(torch.uint8)


class GpuAugmenter:
    """Encoded images + plans -> a normalised, randomly erased float32 batch on `device`; with
    mixup draws, each chunk of the batch is mixed before it is erased (timm's order)."""

    def __init__(self, augment: ImageNetAugment, device: torch.device | str) -> None:
        from timm.data.random_erasing import RandomErasing

        self.device = torch.device(device)
        self.size = augment.input_size
        self.mean = torch.tensor(augment.mean, device=self.device)
        self.std = torch.tensor(augment.std, device=self.device)
        self.erasing = (
            RandomErasing(
                probability=augment.re_prob,
                mode=augment.re_mode,
                num_splits=augment.re_num_splits,
                device=self.device,
            )
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
        *,
        chunk: int | None = None,
        draws: Sequence[MixDraw] | None = None,
    ) -> torch.Tensor:
        """The batch as timm's prefetching loader makes it from loader batches of `chunk`
        images (None: one): each chunk mixed by its draw (if any), then normalised and erased
        (timm's RandomErasing on each chunk, so re_num_splits splits each chunk)."""
        x = self.images(data, plans, batchable)
        chunks = list(x.split(chunk or len(x)))
        if draws is not None:
            chunks = [mixed(part, draw) for part, draw in zip(chunks, draws, strict=True)]
        x = normalize(torch.cat(chunks) if len(chunks) > 1 else chunks[0], self.mean, self.std)
        if self.erasing is not None:
            for part in x.split(chunk or len(x)):
                self.erasing(part)  # in place
        return x
