"""ImageNet training batches decoded and augmented on the training device (`data_pipeline: gpu`).

timm's CPU loader (`data_pipeline: timm`, the default) decodes each JPEG with PIL and runs
RandomResizedCrop, the flip and RandAugment on PIL images in DataLoader worker processes; one
CPU core manages one to two hundred images a second (benchmarks/imagenet_loader.py), so a GPU
training at 2,500 images/s would need well over ten cores. Here the CPU does almost nothing:

* DataLoader workers read each file's bytes, parse its header with PIL (size, format, mode)
  and draw the image's augmentation with timm's own objects, in timm's order, from the same
  global generators: the RandomResizedCropAndInterpolation, RandomHorizontalFlip and
  RandAugment (or, without auto_augment, ColorJitter) that
  `timm.data.transforms_factory.transforms_imagenet_train` builds for the recipe, with the
  hparams timm derives (translate_const = int(0.45 * size), img_mean from the mean, the
  interpolation). The crop comes from timm's `get_params`, the flip from torch.rand as in
  torchvision, the RandAugment ops from timm's own RandAugment/AugmentOp code (choice, prob,
  magnitude noise and clamp, level functions, fill colour, resampling filter) run on copies
  whose pixel functions only record their arguments. The result is a `Plan` per image.
* On the device, `GpuAugmenter` decodes the batch (`torchvision.io.decode_jpeg` on the list
  of byte tensors: nvjpeg on CUDA, libjpeg-turbo on the CPU; what the batched decoder cannot
  take, PNG or CMYK JPEG, goes to `torchvision.io.decode_image` on the CPU), crops and resizes
  each image, flips, applies each RandAugment step to the whole batch grouped by op (uint8
  tensors; one warp for all geometric ops of a step), normalises and applies timm's
  RandomErasing to the batch as timm's PrefetchLoader does. Mixup/cutmix stay in the engine.
* On CUDA, `GpuTrainLoader` makes the next batch on a side stream in a background thread while
  the model trains on the current one.

With the same seeds, `GpuTrainLoader` gives the batches of timm's loader with its prefetcher
(how ann.train runs timm's loader on CUDA): the same images in the same batches with the same
crops, flips, RandAugment ops and erased boxes (tests/test_imagenet_gpu.py, to 0.04 grey
levels). What differs from timm's CPU pipeline:

* Pixels, by rounding only. Resizing uses `F.interpolate(antialias=True)` (PIL's kernels) one
  axis at a time in PIL's order, rounding to uint8 after each pass as PIL does; rotate, shear
  and translate use PIL's geometry (inverse map, shear and translation about the top-left
  corner, rotation about the centre, pixel centres at +0.5, fill outside the source) and PIL's
  filters (bilinear; cubic with a = -1, not torch's -0.75) with PIL's truncation, written as
  gathers; colour ops reproduce PIL's integer grey, contrast mean, SMOOTH kernel and
  truncating blend. Measured against PIL: colour ops equal; resize and warps within one grey
  level on a few pixels (float32 here, fixed point or double in PIL); nearest-neighbour warps
  differ at exact ties.
* Decoding: torchvision's decoders. libjpeg-turbo on the CPU gives PIL's pixels; nvjpeg (CUDA)
  may differ by a grey level (not measured here: no GPU). torchvision 0.29 marks its decoders
  deprecated in favour of TorchCodec; they still work.
* Random streams: the same draws as timm's prefetching loader (above). Against timm's loader
  without prefetcher (ann.train on the CPU) the erasing draws move from the workers to the main
  process, so the streams differ after the first erased image. With `workers: 0` on CUDA the
  background thread and the training loop share NumPy's generator (RandAugment's op choice,
  timm's Mixup), so such runs are not reproducible draw for draw.
* Posterize with 0 bits gives black, as timm intends; Pillow 13's ImageOps.posterize refuses 0
  bits, so timm's CPU pipeline fails there ('PosterizeIncreasing' at magnitude 10, e.g. with
  rand-m9-mstd0.5-inc1).

Evaluation stays on timm's CPU loader (resize, centre crop by crop_pct), which is light.
Not implemented (`TimmPlanner` says so when a recipe asks for them): the GaussianBlur ops of
timm's '3a' RandAugment sets, ColorJitter's hue.
"""

from __future__ import annotations

import io
import math
import queue
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import PIL
import torch
import torch.nn.functional as F
from PIL import Image

from .data import ImageNetAugment, normalize

if TYPE_CHECKING:
    from timm.data import ImageDataset

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
            interpolation=augment.interpolation,
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


# ---------------------------------------------------------------- decoding
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


# ---------------------------------------------------------------- pixel operations
def _to(
    device: torch.device, values: torch.Tensor, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """A small CPU tensor of per-image parameters on the device, without waiting for the
    device (a blocking copy would stall the batch-making thread on its own queued work)."""
    return values.to(device=device, dtype=dtype, non_blocking=True)


# Pillow 13 resizes vertically first when the height shrinks by more than twice as many
# pixels as the width (python-pillow/Pillow#9549); earlier versions always go horizontal first.
_PIL_VERTICAL_FIRST_RULE = int(PIL.__version__.split(".")[0]) >= 13


def resized_crop(
    image: torch.Tensor, crop: Sequence[int], size: int, interpolation: str
) -> torch.Tensor:
    """The crop (top, left, height, width) of a uint8 (C, H, W) image resized to size x size,
    as PIL's resize after its crop: antialiased separable filters (torch's follow PIL's
    kernels), one pass per axis in PIL's order, each pass rounded to uint8."""
    top, left, height, width = crop
    patch = image[None, :, top : top + height, left : left + width].float()
    if interpolation == "nearest":
        out = F.interpolate(patch, size=(size, size), mode="nearest-exact")
        return out[0].to(torch.uint8)
    shapes = [(height, size), (size, size)]
    if _PIL_VERTICAL_FIRST_RULE and size < height and height - size > 2 * (width - size):
        shapes[0] = (size, width)
    for shape in shapes:
        if tuple(patch.shape[-2:]) != shape:
            patch = F.interpolate(
                patch, size=shape, mode=interpolation, align_corners=False, antialias=True
            )
            patch = patch.round_().clamp_(0, 255)
    return patch[0].to(torch.uint8)


def pil_grey(images: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L conversion (L = R*299/1000 + G*587/1000 + B*114/1000, rounded) of uint8
    (N, 3, H, W) images, as uint8 (N, 1, H, W)."""
    r, g, b = images.to(torch.int32).unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.uint8)[:, None]


def blend(degenerate: torch.Tensor, images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's Image.blend(degenerate, images, factor) per image: degenerate + factor * (images -
    degenerate) in float32, clipped and truncated to uint8 (what ImageEnhance does)."""
    low = degenerate.float()
    out = low + factor.float().view(-1, 1, 1, 1) * (images.float() - low)
    return out.clamp_(0, 255).to(torch.uint8)


def enhance(images: torch.Tensor, kind: str, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance.<kind>(image).enhance(factor) on uint8 (N, 3, H, W) images with one
    factor per image; kind is color, contrast, brightness or sharpness."""
    from torchvision.transforms.v2 import functional as TF

    if kind == "color":
        degenerate = pil_grey(images).expand_as(images)
    elif kind == "contrast":
        mean = pil_grey(images).double().mean(dim=(1, 2, 3))
        degenerate = torch.floor(mean + 0.5).view(-1, 1, 1, 1).expand_as(images)
    elif kind == "brightness":
        degenerate = torch.zeros_like(images)
    elif kind == "sharpness":
        degenerate = TF.adjust_sharpness(images, 0.0)  # PIL's SMOOTH, borders left as they are
    else:
        raise ValueError(f"unknown enhancement {kind!r}")
    return blend(degenerate, images, factor)


def pil_affine_data(name: str, args: Sequence[float], height: int, width: int) -> list[float]:
    """PIL's AFFINE data (a, b, c, d, e, f) of a timm geometric op on a width x height image:
    output pixel centre (x, y) reads the input at (a x + b y + c, d x + e y + f)."""
    if name == "ShearX":
        return [1.0, args[0], 0.0, 0.0, 1.0, 0.0]
    if name == "ShearY":
        return [1.0, 0.0, 0.0, args[0], 1.0, 0.0]
    if name in ("TranslateX", "TranslateXRel"):
        pixels = args[0] * width if name == "TranslateXRel" else args[0]
        return [1.0, 0.0, pixels, 0.0, 1.0, 0.0]
    if name in ("TranslateY", "TranslateYRel"):
        pixels = args[0] * height if name == "TranslateYRel" else args[0]
        return [1.0, 0.0, 0.0, 0.0, 1.0, pixels]
    if name == "Rotate":  # PIL's Image.rotate: about the centre, counter-clockwise in degrees
        angle = -math.radians(args[0] % 360.0)
        cos, sin = round(math.cos(angle), 15), round(math.sin(angle), 15)
        cx, cy = width / 2.0, height / 2.0
        return [cos, sin, cos * -cx + sin * -cy + cx, -sin, cos, -sin * -cx + cos * -cy + cy]
    raise ValueError(f"{name} is not a geometric op")


def _pil_taps(
    coordinate: torch.Tensor, size: int, resample: str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(pixel index, weight) pairs of PIL's affine-transform filters along one axis, for
    continuous coordinates (pixel i covers [i, i + 1)); indices clamped to the image."""
    if resample == "nearest":
        return [(coordinate.floor().long().clamp_(0, size - 1), torch.ones_like(coordinate))]
    shifted = coordinate - 0.5
    base = shifted.floor()
    d = shifted - base
    if resample == "bilinear":
        offsets, weights = (0, 1), (1.0 - d, d)
    elif resample == "bicubic":  # PIL's Geometry.c cubic: a = -1
        near = lambda x: (x - 2.0) * x * x + 1.0  # noqa: E731  |x| <= 1
        far = lambda x: ((5.0 - x) * x - 8.0) * x + 4.0  # noqa: E731  1 < |x| < 2
        offsets, weights = (-1, 0, 1, 2), (far(d + 1.0), near(d), near(1.0 - d), far(2.0 - d))
    else:
        raise ValueError(f"resampling filter {resample!r} is not nearest, bilinear or bicubic")
    return [
        ((base + offset).long().clamp_(0, size - 1), weight)
        for offset, weight in zip(offsets, weights, strict=True)
    ]


def warp_affine(
    images: torch.Tensor, data: torch.Tensor, fill: torch.Tensor, resample: str
) -> torch.Tensor:
    """PIL's Image.transform(size, AFFINE, data, resample, fillcolor) on uint8 (N, C, H, W)
    images with one data row (a, b, c, d, e, f) and fill colour per image.

    Output pixel centres (x + 0.5, y + 0.5) read the input at (a x + b y + c, d x + e y + f) in
    continuous coordinates; points outside [0, W) x [0, H) take the fill colour, points inside
    are interpolated with PIL's filters (nearest, bilinear, cubic with a = -1; edge pixels
    repeated) and truncated to uint8, as PIL does.
    """
    n, channels, height, width = images.shape
    device = images.device
    a, b, c, d, e, f = _to(device, data, torch.float32).view(n, 6, 1, 1).unbind(1)
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5).view(1, 1, width)
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5).view(1, height, 1)
    sx = (a * xs + b * ys + c).view(n, 1, -1)
    sy = (d * xs + e * ys + f).view(n, 1, -1)
    flat = images.reshape(n, channels, height * width).float()
    columns = _pil_taps(sx, width, resample)
    out = torch.zeros_like(flat)
    for rows, row_weight in _pil_taps(sy, height, resample):
        rows = rows * width
        line = torch.zeros_like(flat)
        for cols, col_weight in columns:
            line.addcmul_(col_weight, flat.gather(2, (rows + cols).expand(n, channels, -1)))
        out.addcmul_(row_weight, line)
    inside = (sx >= 0) & (sx < width) & (sy >= 0) & (sy < height)
    fill = _to(device, fill, torch.float32).view(n, channels, 1)
    out = torch.where(inside, out, fill)
    return out.clamp_(0, 255).to(torch.uint8).view(n, channels, height, width)


def apply_op(images: torch.Tensor, name: str, args: torch.Tensor) -> torch.Tensor:
    """A non-geometric timm op on uint8 (N, 3, H, W) images, args one row per image."""
    from torchvision.transforms.v2 import functional as TF

    view = (-1, 1, 1, 1)
    if name == "AutoContrast":
        return TF.autocontrast(images)
    if name == "Equalize":
        return TF.equalize(images)
    if name == "Invert":
        return TF.invert(images)
    if name.startswith("Posterize"):  # keep the top `bits` bits
        shift = _to(images.device, (8 - args[:, 0].long()).clamp(0, 8)).view(view)
        mask = ((255 >> shift) << shift).to(torch.uint8)
        return images & mask
    if name.startswith("Solarize") and name != "SolarizeAdd":  # invert at or above threshold
        threshold = _to(images.device, args[:, 0]).view(view)
        return torch.where(images >= threshold, 255 - images, images)
    if name == "SolarizeAdd":  # add to pixels below 128
        add = _to(images.device, args[:, 0], torch.int32).view(view)
        raised = (images.to(torch.int32) + add).clamp_(max=255).to(torch.uint8)
        return torch.where(images < 128, raised, images)
    if name in _ENHANCE:
        factor = _to(images.device, args[:, 0])
        if name == "Desaturate":
            factor = (1.0 - factor).clamp(0.0, 1.0)
        return enhance(images, _ENHANCE[name], factor)
    raise ValueError(f"op {name} is not implemented")


def apply_ops(images: torch.Tensor, ops: Sequence[Op | None]) -> torch.Tensor:
    """One step of per-image ops (None: leave that image) on uint8 (N, 3, H, W) images: the
    images of each non-geometric op together, all geometric ops of one filter in one warp."""
    out = images.clone()
    height, width = images.shape[-2:]
    groups: dict[str, list[int]] = {}
    for k, op in enumerate(ops):
        if op is not None:
            key = f"warp:{op.resample}" if op.name in GEOMETRIC else op.name
            groups.setdefault(key, []).append(k)
    for key, members in groups.items():
        index = _to(images.device, torch.tensor(members))
        chosen = [ops[k] for k in members]
        if key.startswith("warp:"):
            data = torch.tensor(
                [pil_affine_data(op.name, op.args, height, width) for op in chosen],
                dtype=torch.float64,
            )
            fill = torch.tensor([op.fill for op in chosen], dtype=torch.float32)
            out[index] = warp_affine(images[index], data, fill, chosen[0].resample)
        else:
            args = torch.tensor([list(op.args) or [0.0] for op in chosen], dtype=torch.float64)
            out[index] = apply_op(images[index], key, args)
    return out


# ---------------------------------------------------------------- the batch
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


# ---------------------------------------------------------------- the loader
class PlannedFiles(torch.utils.data.Dataset):
    """(file bytes, label, plan, batchable by the JPEG decoder) of each (path, label) sample.

    The planner is built where it is first used (in each worker process), so nothing but the
    sample list and the recipe's augmentation keys is sent to the workers.
    """

    def __init__(self, samples: Sequence[tuple[str | Path, int]], augment: ImageNetAugment) -> None:
        self.samples = list(samples)
        self.augment = augment
        self.planner = TimmPlanner(augment)  # fails here, early, on an unsupported recipe

    def __getstate__(self) -> dict:
        return {"samples": self.samples, "augment": self.augment, "planner": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.planner = TimmPlanner(self.augment)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, Plan, bool]:
        path, label = self.samples[index]
        raw = Path(path).read_bytes()
        with Image.open(io.BytesIO(raw)) as header:  # reads the header only
            plan = self.planner(header)
            batchable = header.format == "JPEG" and header.mode in ("RGB", "L")
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8), int(label), plan, batchable


def collate_planned(items: list) -> tuple[list[torch.Tensor], torch.Tensor, list, list]:
    data, labels, plans, batchable = zip(*items, strict=True)
    return list(data), torch.tensor(labels, dtype=torch.int64), list(plans), list(batchable)


def seed_worker(worker_id: int) -> None:
    """Seed NumPy's generator in a DataLoader worker from the worker's seed, as timm's loader
    does (worker_seeding='all'); torch seeds Python's and its own generator itself."""
    np.random.seed(torch.utils.data.get_worker_info().seed % (2**32 - 1))


_END = object()


class GpuTrainLoader:
    """ImageNet training batches (normalised float32 images, int64 labels) made on `device`.

    Iterating gives `len(self)` batches of `batch_size` (the last partial batch is dropped, as
    in timm's training loader). With distributed=True the sampler is a DistributedSampler:
    call `self.sampler.set_epoch(epoch)` each epoch. On CUDA the next batch is prepared on a
    side stream in a background thread while the caller works on the current one.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        augment: ImageNetAugment,
        *,
        batch_size: int,
        num_workers: int,
        device: torch.device | str,
        distributed: bool = False,
        prefetch: int = 2,
    ) -> None:
        from torch.utils.data import DataLoader, DistributedSampler

        self.device = torch.device(device)
        self.files = PlannedFiles(dataset.reader.samples, augment)
        sampler = DistributedSampler(self.files) if distributed else None
        self.loader = DataLoader(
            self.files,
            batch_size=batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            num_workers=num_workers,
            collate_fn=collate_planned,
            drop_last=True,
            worker_init_fn=seed_worker,
            persistent_workers=num_workers > 0,
        )
        self.sampler = self.loader.sampler
        self.augmenter = GpuAugmenter(augment, self.device)
        self.prefetch = prefetch

    def __len__(self) -> int:
        return len(self.loader)

    def _batch(self, batch: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        data, labels, plans, batchable = batch
        images = self.augmenter(data, plans, batchable)
        return images, labels.to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.device.type != "cuda":
            for batch in self.loader:
                yield self._batch(batch)
            return
        yield from self._overlapped()

    def _overlapped(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        stream = torch.cuda.Stream(device=self.device)

        def produce() -> None:
            try:
                with torch.cuda.device(self.device), torch.cuda.stream(stream):
                    for batch in self.loader:
                        if stop.is_set():
                            break
                        images, labels = self._batch(batch)
                        done = torch.cuda.Event()
                        done.record(stream)
                        ready.put((images, labels, done))
            except BaseException as error:  # handed to the consumer
                ready.put(error)
            finally:
                ready.put(_END)

        worker = threading.Thread(target=produce, name="imagenet-gpu-batches", daemon=True)
        worker.start()
        try:
            while (item := ready.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                images, labels, done = item
                consumer = torch.cuda.current_stream(self.device)
                consumer.wait_event(done)
                images.record_stream(consumer)  # freed blocks wait for the consumer's work
                labels.record_stream(consumer)
                yield images, labels
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    ready.get(timeout=0.1)
                except queue.Empty:
                    pass
            worker.join()
