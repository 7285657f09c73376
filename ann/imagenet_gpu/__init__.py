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
  training interpolation). The crop comes from timm's `get_params`, the flip from torch.rand
  as in torchvision, the RandAugment ops from timm's own RandAugment/AugmentOp code (choice,
  prob, magnitude noise and clamp, level functions, fill colour, resampling filter) run on
  copies whose pixel functions only record their arguments. The result is a `Plan` per image.
  Each DataLoader batch is one of timm's loader batches (the recipe's mixup_chunk images); with
  mixup before erasing, its collate function (`PlannedCollate`) also draws the batch's mixup or
  cutmix and soft targets with the draws of timm's FastCollateMixup (`MixDraw`).
* On the device, `GpuAugmenter` decodes the batch (`torchvision.io.decode_jpeg` on the list
  of byte tensors: nvjpeg on CUDA, libjpeg-turbo on the CPU; what the batched decoder cannot
  take, PNG or CMYK JPEG, goes to `torchvision.io.decode_image` on the CPU), crops and resizes
  each image, flips, applies each RandAugment step to the whole batch grouped by op (uint8
  tensors; one warp for all geometric ops of a step), then, per loader batch, mixes it by its
  draw (`mixed`: FastCollateMixup's uint8 arithmetic), normalises and applies timm's
  RandomErasing with the recipe's mode and splits, as timm's PrefetchLoader does each batch.
  Several loader batches make one device batch (the process's share of an update).
* On CUDA, `GpuTrainLoader` makes the next batch on a side stream in a background thread while
  the model trains on the current one.

With the same seeds, `GpuTrainLoader` gives the batches of timm's loader with its prefetcher
and FastCollateMixup (how ann.train runs timm's loader): the same images in the same batches
with the same crops, flips, RandAugment ops, mixup/cutmix draws and erased boxes with their
noise (tests/test_imagenet_gpu.py, to 0.1 grey levels on average). What differs from timm's
CPU pipeline:

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
* Random streams: the same draws as timm's prefetching loader (above). With `workers: 0` the
  draws of several loader batches are made before their erasing (timm interleaves them), and on
  CUDA the background thread and the training loop share NumPy's generator (RandAugment's op
  choice, timm's Mixup), so such runs are not timm's draw for draw.
* Posterize with 0 bits gives black, as timm intends; Pillow 13's ImageOps.posterize refuses 0
  bits, so timm's CPU pipeline fails there ('PosterizeIncreasing' at magnitude 10, e.g. with
  rand-m9-mstd0.5-inc1).

Evaluation stays on timm's CPU loader (resize, centre crop by crop_pct), which is light.
Not implemented (`TimmPlanner` says so when a recipe asks for them): the GaussianBlur ops of
timm's '3a' RandAugment sets, ColorJitter's hue.

Modules: plan (the CPU side: timm's draws recorded as Plans), decode (the batch decoder),
pixels (the pixel operations), augment (GpuAugmenter, MixDraw), loader (GpuTrainLoader,
PlannedCollate).
"""

from .augment import GpuAugmenter, MixDraw, mixed
from .decode import decode_images, is_jpeg
from .loader import GpuTrainLoader, PlannedCollate, PlannedFiles, collate_planned, seed_worker
from .pixels import (
    apply_op,
    apply_ops,
    blend,
    enhance,
    pil_affine_data,
    pil_grey,
    resized_crop,
    warp_affine,
)
from .plan import GEOMETRIC, SUPPORTED_OPS, Op, Plan, TimmPlanner

__all__ = [
    "GEOMETRIC",
    "GpuAugmenter",
    "GpuTrainLoader",
    "MixDraw",
    "Op",
    "Plan",
    "PlannedCollate",
    "PlannedFiles",
    "SUPPORTED_OPS",
    "TimmPlanner",
    "apply_op",
    "apply_ops",
    "blend",
    "collate_planned",
    "decode_images",
    "enhance",
    "is_jpeg",
    "mixed",
    "pil_affine_data",
    "pil_grey",
    "resized_crop",
    "seed_worker",
    "warp_affine",
]
