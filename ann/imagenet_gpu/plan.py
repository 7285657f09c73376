"""Each image's augmentation drawn by timm's own objects, recorded as a Plan (the CPU side).

Part of ann.imagenet_gpu, whose docstring describes the whole pipeline."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from PIL import Image

from ann.data import ImageNetAugment

if TYPE_CHECKING:
    pass

GEOMETRIC = frozenset(
    {"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXRel", "TranslateYRel"}
)
_ENHANCE = {  # op name: PIL ImageEnhance class it follows
    "Color": "color",
    "ColorIncreasing": "color",
    "Desaturate": "color",
    "Contrast": "contrast",
    "ContrastIncreasing": "contrast",
    "Brightness": "brightness",
    "BrightnessIncreasing": "brightness",
    "Sharpness": "sharpness",
    "SharpnessIncreasing": "sharpness",
}
_LUT_OPS = frozenset(
    {
        "AutoContrast",
        "Equalize",
        "Invert",
        "Posterize",
        "PosterizeIncreasing",
        "PosterizeOriginal",
        "Solarize",
        "SolarizeIncreasing",
        "SolarizeAdd",
    }
)
SUPPORTED_OPS = GEOMETRIC | frozenset(_ENHANCE) | _LUT_OPS


@dataclass(frozen=True)
class Op:
    """One pixel operation as timm's AugmentOp would call it: name, level arguments, fill colour
    and (geometric ops) resampling filter."""

    name: str
    args: tuple[float, ...] = ()
    fill: tuple[int, ...] = (128, 128, 128)
    resample: str | None = None  # nearest | bilinear | bicubic


@dataclass(frozen=True)
class Plan:
    """One image's augmentation: crop box (top, left, height, width), its resize filter, the
    flip and the pixel operations in the order timm applies them."""

    crop: tuple[int, int, int, int]
    interpolation: str
    flip: bool
    ops: tuple[Op, ...]


def _filter_name(mode: object) -> str:
    """'nearest', 'bilinear' or 'bicubic' for a PIL resampling constant or torchvision mode."""
    if hasattr(mode, "value") and isinstance(mode.value, str):  # torchvision InterpolationMode
        return mode.value
    names = {
        Image.Resampling.NEAREST: "nearest",
        Image.Resampling.BILINEAR: "bilinear",
        Image.Resampling.BICUBIC: "bicubic",
    }
    if mode not in names:
        raise ValueError(f"resampling filter {mode!r} is not nearest, bilinear or bicubic")
    return names[mode]


class TimmPlanner:
    """Draws each image's `Plan` with the transform objects timm builds for the recipe.

    Call it on a PIL image (only its size is read: a lazily opened file will do). The draws
    come from the global random generators in the order timm's CPU transform makes them.
    """

    def __init__(self, augment: ImageNetAugment) -> None:
        from timm.data.auto_augment import AugmentOp, RandAugment
        from timm.data.transforms import RandomResizedCropAndInterpolation
        from timm.data.transforms_factory import transforms_imagenet_train
        from torchvision import transforms

        primary, secondary, _ = transforms_imagenet_train(
            img_size=augment.input_size,
            interpolation=augment.train_interpolation,
            mean=augment.mean,
            std=augment.std,
            auto_augment=augment.auto_augment,
            use_prefetcher=True,
            separate=True,
        )
        self._steps: list[Callable[[Image.Image], None]] = []
        self._recorded: list[Op] = []
        self.size = augment.input_size
        for transform in [*primary.transforms, *secondary.transforms]:
            if isinstance(transform, RandomResizedCropAndInterpolation):
                self.crop = transform
            elif isinstance(transform, transforms.RandomHorizontalFlip):
                self.flip_p = transform.p
            elif isinstance(transform, RandAugment):
                unsupported = sorted({op.name for op in transform.ops} - SUPPORTED_OPS)
                if unsupported:
                    raise ValueError(
                        f"RandAugment '{augment.auto_augment}' uses {unsupported}, which the "
                        "GPU pipeline does not implement; use data_pipeline: timm."
                    )
                ops = [self._recording(op, AugmentOp) for op in transform.ops]
                recording = RandAugment(ops, transform.num_layers, transform.choice_weights)
                self._steps.append(recording)
            elif isinstance(transform, transforms.ColorJitter):
                if transform.hue is not None:
                    raise ValueError("ColorJitter hue is not implemented by the GPU pipeline.")
                self._steps.append(self._jitter_recording(transform))
            else:
                raise ValueError(
                    f"timm's training transform {transform!r} is not implemented by the GPU "
                    "pipeline; use data_pipeline: timm."
                )

    def _recording(self, op: object, op_class: type) -> object:
        """A copy of a timm AugmentOp whose pixel function records its call instead."""
        copy = op_class.__new__(op_class)
        copy.__dict__.update(op.__dict__)
        copy.kwargs = dict(op.kwargs)
        name = op.name

        def record(img: Image.Image, *args: float, fillcolor: tuple, resample: object) -> object:
            resample_name = None
            if name in GEOMETRIC:  # timm's _check_args_tf draws the filter here
                if isinstance(resample, (list, tuple)):
                    resample = random.choice(resample)
                resample_name = _filter_name(resample)
            self._recorded.append(Op(name, tuple(args), tuple(fillcolor), resample_name))
            return img

        copy.aug_fn = record
        return copy

    def _jitter_recording(self, jitter: object) -> Callable[[Image.Image], None]:
        """torchvision's ColorJitter draws (order, factors) as its forward does; on PIL images
        its brightness, contrast and saturation are PIL's ImageEnhance ops."""
        names = ("Brightness", "Contrast", "Color")

        def draw(_: Image.Image) -> None:
            order, *factors = jitter.get_params(
                jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue
            )
            for index in order.tolist():
                if index < 3 and factors[index] is not None:
                    self._recorded.append(Op(names[index], (factors[index],)))

        return draw

    def __call__(self, image: Image.Image) -> Plan:
        crop = self.crop.get_params(image, self.crop.scale, self.crop.ratio)
        interpolation = self.crop.interpolation
        if isinstance(interpolation, (list, tuple)):
            interpolation = random.choice(interpolation)
        flip = bool(torch.rand(1) < self.flip_p)
        self._recorded = []
        for step in self._steps:
            step(image)
        return Plan(tuple(crop), _filter_name(interpolation), flip, tuple(self._recorded))
