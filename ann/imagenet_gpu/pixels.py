"""The pixel operations of the augmentation on uint8 batches, matching PIL's (crop and
resize, enhance, affine warps, RandAugment ops).

Part of ann.imagenet_gpu, whose docstring describes the whole pipeline."""

from __future__ import annotations

import math
from collections.abc import Sequence

import PIL
import torch
import torch.nn.functional as F

from .plan import _ENHANCE, GEOMETRIC, Op


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
