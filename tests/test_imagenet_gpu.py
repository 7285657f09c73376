"""The device-side ImageNet pipeline (ann.imagenet_gpu) against timm's PIL pipeline, on the CPU:
each pixel operation against timm's PIL op, the crop and resize against torchvision's PIL path,
the drawn augmentation against timm's own draws, decoding fallbacks and the loader."""

import io
import random

import numpy as np
import pytest
import torch
from fixtures import natural_image, write_imagenet
from PIL import Image
from timm.data import auto_augment as timm_aa
from timm.data import create_transform
from timm.data.transforms import RandomResizedCropAndInterpolation
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TVF

from ann import imagenet_gpu as gpu
from ann.data import ImageNetAugment, load_imagenet

# torchvision 0.29 deprecates its image decoders in favour of TorchCodec; they still work.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
FILL = (124, 116, 104)  # timm's img_mean for the ImageNet mean


def encoded(image: Image.Image, format: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def as_bytes_tensor(raw: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)


def as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)[None].contiguous()


def difference(out: torch.Tensor, reference: Image.Image) -> tuple[float, float]:
    """Mean absolute difference in grey levels, and the share of values off by more than 1."""
    delta = (out.int() - as_tensor(reference).int()).abs().float()
    return delta.mean().item(), (delta > 1).float().mean().item()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A decoded photo-like JPEG, not square (80 rows, 96 columns)."""
    raw = encoded(Image.fromarray(natural_image(80, 96, seed=0)), quality=90)
    return Image.open(io.BytesIO(raw)).convert("RGB")


# --- pixel operations against timm's PIL ops ----------------------------------------------------
COLOUR_CASES = [
    ("AutoContrast", ()),
    ("Equalize", ()),
    ("Invert", ()),
    ("Posterize", (3,)),
    ("Posterize", (1,)),
    ("Solarize", (230,)),
    ("Solarize", (77,)),
    ("SolarizeAdd", (99,)),
    ("Color", (1.72,)),
    ("Color", (0.3,)),
    ("Desaturate", (0.7,)),
    ("Contrast", (1.72,)),
    ("Contrast", (0.28,)),
    ("Brightness", (1.72,)),
    ("Brightness", (0.4,)),
    ("Sharpness", (1.72,)),
    ("Sharpness", (0.2,)),
]


@pytest.mark.parametrize(("name", "args"), COLOUR_CASES)
def test_colour_ops_match_timm_pil_ops(photo, name, args):
    reference = timm_aa.NAME_TO_OP[name](photo, *args)
    out = gpu.apply_op(as_tensor(photo), name, torch.tensor([list(args) or [0.0]]))
    mean, off = difference(out, reference)
    assert mean <= 0.01 and off == 0.0  # PIL's integer arithmetic, reproduced
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):  # the bound can fail:
        nudged = gpu.apply_op(as_tensor(photo), name, torch.tensor([[args[0] + 0.1]]))
        mean, off = difference(nudged, reference)
        assert mean > 0.1 and off > 0.01


def test_posterize_to_zero_bits_is_black(photo):
    """timm's PosterizeIncreasing reaches 0 bits at magnitude 10 (Pillow 13 refuses those)."""
    out = gpu.apply_op(
        as_tensor(photo).expand(2, -1, -1, -1), "Posterize", torch.tensor([[0], [8]])
    )
    assert out[0].max() == 0 and torch.equal(out[1], as_tensor(photo)[0])


GEOMETRIC_CASES = [
    ("Rotate", (27.0,)),
    ("Rotate", (-13.0,)),
    ("ShearX", (0.27,)),
    ("ShearY", (-0.27,)),
    ("TranslateXRel", (0.3,)),
    ("TranslateYRel", (-0.21,)),
    ("TranslateX", (10.3,)),
    ("TranslateY", (-7.6,)),
]


@pytest.mark.parametrize("resample", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize(("name", "args"), GEOMETRIC_CASES)
def test_geometric_ops_match_timm_pil_ops(photo, name, args, resample):
    reference = timm_aa.NAME_TO_OP[name](photo, *args, fillcolor=FILL, resample=RESAMPLE[resample])

    def warped(arguments: tuple) -> torch.Tensor:
        data = torch.tensor([gpu.pil_affine_data(name, arguments, 80, 96)], dtype=torch.float64)
        return gpu.warp_affine(as_tensor(photo), data, torch.tensor([FILL]), resample)

    mean, off = difference(warped(args), reference)
    assert mean <= 0.1 and off <= 0.002  # rounding; nearest: a few ties at pixel borders
    negated = tuple(-a for a in args)  # a wrong sign or direction would fail the bound
    assert difference(warped(negated), reference)[0] > 20


def test_warp_samples_at_pixel_centres(photo):
    """PIL reads output pixel (x, y) at (x + 0.5, y + 0.5): half a pixel off is visible."""
    reference = timm_aa.translate_x_abs(photo, 3.0, fillcolor=FILL, resample=RESAMPLE["bilinear"])
    for shift, close in ((3.0, True), (3.5, False)):
        data = torch.tensor([gpu.pil_affine_data("TranslateX", (shift,), 80, 96)])
        out = gpu.warp_affine(as_tensor(photo), data, torch.tensor([FILL]), "bilinear")
        assert (difference(out, reference)[0] <= 0.1) == close


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize(
    "crop", [(5, 7, 50, 60), (0, 0, 80, 96), (10, 20, 20, 30), (3, 1, 77, 40), (0, 2, 78, 70)]
)
def test_resized_crop_matches_pil_resize(photo, crop, interpolation):
    """timm's RandomResizedCropAndInterpolation calls torchvision's resized_crop on PIL images."""
    reference = TVF.resized_crop(photo, *crop, [64, 64], InterpolationMode(interpolation))
    out = gpu.resized_crop(as_tensor(photo)[0], crop, 64, interpolation)[None]
    mean, off = difference(out, reference)
    assert mean <= 0.05 and off == 0.0


# --- the drawn augmentation against timm's draws ------------------------------------------------
def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@pytest.fixture(scope="module")
def photo_jpeg() -> bytes:
    return encoded(Image.fromarray(natural_image(150, 200, seed=3)), quality=92)


def test_crop_draws_are_timms(photo_jpeg):
    planner = gpu.TimmPlanner(ImageNetAugment(input_size=224, auto_augment="rand-m9-mstd0.5"))
    assert planner.crop.scale == (0.08, 1.0)
    assert planner.crop.ratio == pytest.approx((3 / 4, 4 / 3))
    header = Image.open(io.BytesIO(photo_jpeg))
    crops = set()
    for seed in range(50):
        _seed(seed)
        expected = RandomResizedCropAndInterpolation.get_params(header, (0.08, 1.0), (3 / 4, 4 / 3))
        _seed(seed)
        assert planner(header).crop == expected
        crops.add(expected)
    assert len(crops) == 50


def test_rand_augment_draws_are_timms(photo_jpeg):
    """The same ops with the same level arguments and fill as timm's own RandAugment calls."""
    augment = ImageNetAugment(
        input_size=64, auto_augment="rand-m9-mstd0.5", train_interpolation="bicubic"
    )
    reference = create_transform(
        64,
        is_training=True,
        auto_augment=augment.auto_augment,
        interpolation="bicubic",
        use_prefetcher=True,
    )
    rand_augment = next(t for t in reference.transforms if isinstance(t, timm_aa.RandAugment))
    calls = []
    for op in rand_augment.ops:

        def recording(img, *args, _name=op.name, _fn=op.aug_fn, **kwargs):
            calls.append((_name, tuple(args), tuple(kwargs.get("fillcolor", FILL))))
            return _fn(img, *args, **kwargs)

        op.aug_fn = recording
    planner = gpu.TimmPlanner(augment)
    names = set()
    for seed in range(200):
        calls.clear()
        _seed(seed)
        reference(Image.open(io.BytesIO(photo_jpeg)).convert("RGB"))
        _seed(seed)
        plan = planner(Image.open(io.BytesIO(photo_jpeg)))
        assert [(op.name, op.args, op.fill) for op in plan.ops] == calls
        assert all(op.resample == "bicubic" for op in plan.ops if op.name in gpu.GEOMETRIC)
        names |= {op.name for op in plan.ops}
    assert names == {op.name for op in rand_augment.ops}  # all 15 ops were drawn


@pytest.mark.parametrize(
    ("interpolation", "auto_augment"),
    [("bicubic", "rand-m9-mstd0.5"), ("random", "rand-m7-n3-mstd1"), ("bilinear", None)],
)
def test_augmented_images_equal_timms_from_the_same_seeds(photo_jpeg, interpolation, auto_augment):
    """Decode, crop, resize, flip and RandAugment (or, without it, timm's ColorJitter) on
    tensors give timm's PIL images, seed for seed, to rounding."""
    augment = ImageNetAugment(
        input_size=64, auto_augment=auto_augment, re_prob=0.0, train_interpolation=interpolation
    )
    reference = create_transform(
        64,
        is_training=True,
        auto_augment=auto_augment,
        interpolation=interpolation,
        use_prefetcher=True,
    )
    planner, augmenter = gpu.TimmPlanner(augment), gpu.GpuAugmenter(augment, "cpu")
    data = as_bytes_tensor(photo_jpeg)
    means, other_seed, flips = [], [], 0
    for seed in range(30):
        _seed(seed)
        expected = reference(Image.open(io.BytesIO(photo_jpeg)).convert("RGB")).int()
        _seed(seed)
        plan = planner(Image.open(io.BytesIO(photo_jpeg)))
        flips += plan.flip
        means.append((augmenter.images([data], [plan])[0].int() - expected).abs().float().mean())
        _seed(seed + 1000)
        other = augmenter.images([data], [planner(Image.open(io.BytesIO(photo_jpeg)))])[0]
        other_seed.append((other.int() - expected).abs().float().mean())
    assert max(means) <= 0.5 and np.mean(means) <= 0.05
    assert min(other_seed) > 20  # what a wrongly drawn crop, flip or op looks like
    assert 5 <= flips <= 25


def write_photo_imagenet(root, per_class: int = 6) -> None:
    for split, count in (("train", per_class), ("val", 1)):
        for c in range(2):
            folder = root / split / f"n0{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                image = Image.fromarray(natural_image(90, 120, seed=10 * c + i))
                image.save(folder / f"{i}.JPEG", quality=90)


LOADER_CASES = {
    # workers, re_mode, re_num_splits, mixup/cutmix, loader batches per batch
    "const erasing, no workers": (0, "const", 0, False, 1),
    "const erasing, 2 workers": (2, "const", 0, False, 1),
    # the Dit command's: pixel noise, --resplit, FastCollateMixup, several loader batches
    "pixel, resplit, mixup, 2 loader batches": (2, "pixel", 2, True, 2),
    "pixel, mixup, no workers": (0, "pixel", 0, True, 1),
}


@pytest.mark.parametrize("case", LOADER_CASES)
def test_loader_batches_equal_timms_prefetching_loader_seed_for_seed(tmp_path, case):
    """From the same seeds, GpuTrainLoader gives the batches of timm's loader with its
    prefetcher and FastCollateMixup (how ann.train runs timm's loader): same images in the
    same batches, same crops, flips, RandAugment, mixup/cutmix and random erasing (mode and
    splits), pixels to rounding, the same soft targets."""
    from timm.data import FastCollateMixup, create_loader

    from ann.data import update_batches

    workers, re_mode, re_num_splits, mixes, per_batch = LOADER_CASES[case]
    write_photo_imagenet(tmp_path, per_class=8)
    imagenet = load_imagenet(tmp_path)
    augment = ImageNetAugment(
        input_size=48,
        auto_augment="rand-m9-mstd0.5",
        re_prob=0.5,
        re_mode=re_mode,
        re_num_splits=re_num_splits,
        train_interpolation="random",
    )

    def mixup():
        options = dict(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=2)
        return FastCollateMixup(**options) if mixes else None

    reference = create_loader(
        imagenet.train,
        input_size=(3, 48, 48),
        batch_size=4,
        is_training=True,
        auto_augment=augment.auto_augment,
        re_prob=augment.re_prob,
        re_mode=re_mode,
        re_split=re_num_splits == 2,
        interpolation="random",
        mean=augment.mean,
        std=augment.std,
        num_workers=workers,
        collate_fn=mixup(),
        device=torch.device("cpu"),
        use_prefetcher=True,
    )
    loader = gpu.GpuTrainLoader(
        imagenet.train,
        augment,
        batch_size=4 * per_batch,
        chunk=4,
        mixup=mixup(),
        num_workers=workers,
        device="cpu",
    )
    grey_level = 1 / (255 * max(augment.std))
    for epoch in range(2):
        _seed(epoch)
        expected = list(update_batches(reference, per_batch))
        _seed(epoch)
        batches = list(loader)
        assert len(batches) == len(expected) == len(loader) == 4 // per_batch
        for (images, targets), (want_images, want_targets) in zip(batches, expected, strict=True):
            assert images.shape == (4 * per_batch, 3, 48, 48)
            if mixes:
                assert targets.shape == (4 * per_batch, 2)
                torch.testing.assert_close(targets, want_targets, rtol=0, atol=1e-6)
            else:
                assert torch.equal(targets, want_targets)
            assert (images - want_images).abs().mean() <= 0.1 * grey_level
            if re_mode == "const":
                erased, want = (images == 0).all(1), (want_images == 0).all(1)
                assert (erased == want).float().mean() > 0.999


def test_erasing_splits_each_loader_batch_and_uses_the_recipes_mode(photo_jpeg):
    """re_num_splits 2 spares the first half of each chunk (timm's --resplit, per loader
    batch); pixel mode fills the box with N(0, 1) noise, const with zeros."""
    data = [as_bytes_tensor(photo_jpeg)] * 8
    for mode in ("const", "pixel"):
        augment = ImageNetAugment(input_size=32, re_prob=1.0, re_mode=mode, re_num_splits=2)
        augmenter = gpu.GpuAugmenter(augment, "cpu")
        planner = gpu.TimmPlanner(augment)
        plans = [planner(Image.open(io.BytesIO(photo_jpeg))) for _ in data]
        _seed(0)
        images = augmenter(data, plans, chunk=4)
        clean = normalize_plain(augmenter, data, plans)
        changed = (images != clean).flatten(1).any(1).tolist()
        assert changed == [False, False, True, True] * 2
        boxes = images != clean
        if mode == "const":
            assert (images[boxes] == 0).all()
        else:
            noise = images[boxes]
            assert noise.numel() > 500 and abs(float(noise.std()) - 1) < 0.2


def normalize_plain(augmenter, data, plans):
    from ann.data import normalize

    return normalize(augmenter.images(data, plans), augmenter.mean, augmenter.std)


def test_mixing_on_the_device_is_fast_collate_mixups(photo_jpeg):
    """`mixed` on a uint8 batch equals timm's FastCollateMixup on the same images and draw:
    blended (rounded half to even) or with the partner's box pasted."""
    from timm.data import FastCollateMixup

    images = torch.stack(
        [torch.from_numpy(natural_image(24, 24, seed=s)).permute(2, 0, 1) for s in range(6)]
    )
    batch = [(image.numpy(), 0) for image in images]
    for cutmix, seed in ((0.0, 1), (1.0, 2)):
        mixup = FastCollateMixup(mixup_alpha=0.8, cutmix_alpha=cutmix, prob=1.0, num_classes=2)
        np.random.seed(seed)
        want, _ = mixup(batch)
        np.random.seed(seed)
        collate = gpu.PlannedCollate(mixup, 24)
        *_, draw = collate([(torch.zeros(1), 0, None, True)] * 6)
        assert (draw.box is not None) == (cutmix > 0) and 0 < draw.lam < 1
        assert torch.equal(gpu.mixed(images, draw), want)


@pytest.mark.gpu
def test_cuda_batches_equal_the_cpu_devices_and_the_thread_stops(tmp_path):
    """On CUDA (nvjpeg, device ops, side stream, background thread) the batches are those of
    the CPU device from the same seeds, to decoder and float rounding; leaving the loop early
    ends the batch-making thread."""
    import threading

    write_photo_imagenet(tmp_path, per_class=8)
    imagenet = load_imagenet(tmp_path)
    augment = ImageNetAugment(input_size=48, auto_augment="rand-m9-mstd0.5", re_prob=0.5)
    got = {}
    for device in ("cpu", "cuda"):
        loader = gpu.GpuTrainLoader(
            imagenet.train, augment, batch_size=4, num_workers=2, device=device
        )
        _seed(0)
        got[device] = []
        for images, labels in loader:
            assert images.device.type == labels.device.type == device
            got[device].append((images.cpu(), labels.cpu()))
    grey_level = 1 / (255 * max(augment.std))
    assert len(got["cuda"]) == len(got["cpu"]) == 4
    for (images, labels), (want_images, want_labels) in zip(got["cuda"], got["cpu"], strict=True):
        assert torch.equal(labels, want_labels)
        assert (images - want_images).abs().mean() <= 1.0 * grey_level
    batches = iter(loader)
    next(batches)
    batches.close()
    assert not any(t.name == "imagenet-gpu-batches" for t in threading.enumerate())


# --- decoding -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed_files() -> dict[str, bytes]:
    rgb = Image.fromarray(natural_image(40, 56, seed=1))
    return {
        "jpeg": encoded(rgb, quality=90),
        "grey jpeg": encoded(rgb.convert("L"), quality=90),
        "png": encoded(rgb, format="PNG"),
        "cmyk jpeg": encoded(rgb.convert("CMYK"), quality=90),
    }


def _check_decoded(images: list[torch.Tensor], files: dict[str, bytes]) -> None:
    for image, (kind, raw) in zip(images, files.items(), strict=True):
        expected = as_tensor(Image.open(io.BytesIO(raw)))[0]
        assert image.shape == expected.shape and image.dtype == torch.uint8, kind
        assert (image.int() - expected.int()).abs().float().mean() <= 0.5, kind


def test_decoding_a_mixed_batch_falls_back_per_file(mixed_files, monkeypatch):
    data = [as_bytes_tensor(raw) for raw in mixed_files.values()]
    assert [gpu.is_jpeg(d) for d in data] == [True, True, False, True]
    _check_decoded(gpu.decode_images(data, "cpu"), mixed_files)  # PNG: decode_image

    import torchvision.io

    original, calls = torchvision.io.decode_jpeg, []
    cmyk = data[3]

    def like_nvjpeg(input, **kwargs):  # rejects CMYK, as the CUDA decoder does
        batch = input if isinstance(input, list) else [input]
        calls.append(len(batch))
        if any(item is cmyk for item in batch):
            raise RuntimeError("unsupported JPEG colour space")
        return original(input, **kwargs)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", like_nvjpeg)
    _check_decoded(gpu.decode_images(data, "cpu"), mixed_files)
    assert calls == [3, 1, 1, 1]  # the batch, then each JPEG alone; CMYK went to decode_image


def test_planned_files_send_only_plain_jpegs_to_the_batched_decoder(mixed_files, tmp_path):
    samples = []
    for k, raw in enumerate(mixed_files.values()):
        (tmp_path / f"{k}.JPEG").write_bytes(raw)  # a PNG with a .JPEG name, as in ImageNet
        samples.append((tmp_path / f"{k}.JPEG", k))
    files = gpu.PlannedFiles(samples, ImageNetAugment(input_size=32))
    items = [files[k] for k in range(len(files))]
    assert [batchable for *_, batchable in items] == [True, True, False, False]
    data, labels, plans, batchable = gpu.collate_planned(items)
    assert labels.tolist() == [0, 1, 2, 3] and all(isinstance(p, gpu.Plan) for p in plans)
    out = gpu.GpuAugmenter(ImageNetAugment(input_size=32), "cpu").images(data, plans, batchable)
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.uint8


# --- the loader ---------------------------------------------------------------------------------
def test_gpu_train_loader_makes_normalised_erased_batches(tmp_path):
    write_imagenet(tmp_path, {"n01": 3, "n02": 4}, {"n01": 1})
    imagenet = load_imagenet(tmp_path)
    augment = ImageNetAugment(
        input_size=32, auto_augment="rand-m9-mstd0.5", re_prob=1.0, re_mode="const"
    )
    loader = gpu.GpuTrainLoader(imagenet.train, augment, batch_size=3, num_workers=1, device="cpu")
    assert len(loader) == 2  # the last partial batch is dropped, as in timm's training loader
    epochs = [list(loader), list(loader)]
    for batches in epochs:
        assert len(batches) == 2
        for images, labels in batches:
            assert images.shape == (3, 3, 32, 32) and images.dtype == torch.float32
            assert set(labels.tolist()) <= {0, 1}
            assert images.abs().max() < 3  # normalised by the ImageNet mean and std
            erased = (images == 0).all(dim=1).flatten(1).any(dim=1)  # const mode: zeros
            assert erased.all()
    first, second = (torch.cat([images for images, _ in batches]) for batches in epochs)
    assert not torch.equal(first, second)


def test_unsupported_transforms_are_refused():
    with pytest.raises(ValueError, match="GaussianBlur"):
        gpu.TimmPlanner(ImageNetAugment(auto_augment="rand-m9-t3a"))
