"""ImageNet input pipeline rates: timm's CPU loader per CPU core against the device pipeline.

Builds a folder of synthetic ImageNet-sized JPEGs (500x375, photo-like: colour waves, hard-edged
discs, noise; quality 90) in a temporary folder, then measures side by side, in one run, the
training input pipeline of the `imagenet` recipe (224 px, RandomResizedCrop, flip, RandAugment
rand-m9-mstd0.5, normalisation, random erasing 0.25, mixup 0.8 / cutmix 1.0 on the batch):

(a) timm's CPU loader (`data_pipeline: timm`; PIL decode and augmentation in DataLoader worker
    processes, mixup in the main process) with 0 workers (everything in one process), 1 worker
    and N workers -> images/s and images/s per CPU core;
(b) the device pipeline (`data_pipeline: gpu`, ann.imagenet_gpu): its CPU part (read the file,
    parse the header, draw the augmentation) per core, and the whole pipeline on the device at
    hand (on a machine without CUDA: the CPU device, one thread, which is not a GPU figure);
(c) the model's training-step rate to compare against: Dit-ConvNeXt-T, bf16 autocast,
    channels_last, AdamW, batch 128, measured on CUDA, or given with --model-rate.

Prints medians over the repeats, ratios, and the CPU cores per GPU needed to feed --target
images/s (the issue's 2,500 per GPU, 20,000 per 8-GPU node).

Usage: .venv/bin/python benchmarks/imagenet_loader.py [--images 256] [--batch 32]
       [--workers N] [--repeats 3] [--model-rate IMAGES_PER_S] [--target 2500] [--compile]
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ann.data import ImageNetAugment, imagenet_loader, load_imagenet
from ann.imagenet_gpu import GpuAugmenter, GpuTrainLoader, PlannedFiles, collate_planned

RECIPE = dict(input_size=224, auto_augment="rand-m9-mstd0.5", re_prob=0.25)
MIXUP = dict(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)


# ---------------------------------------------------------------- synthetic ImageNet
def photo(rng: np.random.Generator, height: int = 375, width: int = 500) -> np.ndarray:
    """A photo-like uint8 (height, width, 3) image: colour waves, hard-edged discs, texture
    (noise at a third of the resolution, upsampled) and pixel noise; as JPEG at quality 90
    about as large as an average ImageNet file."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) / max(height, width)
    image = np.full((height, width, 3), 128.0, dtype=np.float32)
    for channel in range(3):
        for _ in range(4):
            fx, fy, phase = rng.uniform(0, 12, 3)
            image[..., channel] += rng.uniform(15, 45) * np.sin(
                2 * np.pi * (fx * x + fy * y) + phase
            )
    for _ in range(12):
        cy, cx = rng.uniform(0, 1, 2) * (height, width) / max(height, width)
        radius = rng.uniform(0.03, 0.2)
        image[(y - cy) ** 2 + (x - cx) ** 2 < radius**2] = rng.uniform(0, 255, 3)
    coarse = rng.integers(0, 256, (height // 3, width // 3, 3), dtype=np.uint8)
    texture = Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)
    image += 0.5 * (np.asarray(texture, dtype=np.float32) - 128)
    image += rng.normal(0, 8, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def build_folder(root: Path, n_images: int, n_classes: int = 4, seed: int = 0) -> float:
    """<root>/train/<wnid>/*.JPEG and a small val; returns the mean JPEG size in kB."""
    rng = np.random.default_rng(seed)
    sizes = []
    for k in range(n_images):
        folder = root / "train" / f"n{k % n_classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img_{k:05d}.JPEG"
        Image.fromarray(photo(rng)).save(path, format="JPEG", quality=90)
        sizes.append(path.stat().st_size)
    for c in range(n_classes):
        (root / "val" / f"n{c:08d}").mkdir(parents=True)
        Image.fromarray(photo(rng)).save(root / "val" / f"n{c:08d}" / "v.JPEG", quality=90)
    return float(np.mean(sizes)) / 1000


# ---------------------------------------------------------------- measurements
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its living children (DataLoader workers,
    read from /proc), in seconds: per-core rates from it do not depend on what else runs."""
    total = time.process_time()
    me, tick = str(os.getpid()), os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:  # the parent pid
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


def rate(loader, mixup, device: torch.device, repeats: int) -> tuple[float, float]:
    """Median images/s (wall clock) and images per CPU-second over `repeats` passes through
    the loader after one warm-up pass, mixup included, batches moved to `device`."""
    wall, cpu = [], []
    for repeat in range(repeats + 1):
        start, start_cpu, count = time.perf_counter(), cpu_seconds(), 0
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            images, _ = mixup(images, labels)
            count += len(images)
        _sync(device)
        if repeat:  # the first pass starts the workers and warms the caches
            wall.append(count / (time.perf_counter() - start))
            cpu.append(count / (cpu_seconds() - start_cpu))
    return statistics.median(wall), statistics.median(cpu)


def cpu_part_rate(files: PlannedFiles, repeats: int) -> float:
    """Images per CPU-second of the device pipeline's CPU part (read, header, draw)."""
    rates = []
    for _ in range(repeats):
        start = time.process_time()
        for k in range(len(files)):
            files[k]
        rates.append(len(files) / (time.process_time() - start))
    return statistics.median(rates)


def stage_times(files: PlannedFiles, augment, device, mixup, batch: int, repeats: int) -> dict:
    """Median seconds per batch of each device stage, the batch's CPU part done beforehand."""
    from ann.data import normalize
    from ann.imagenet_gpu import apply_ops, decode_images, resized_crop

    augmenter = GpuAugmenter(augment, device)
    batches = [
        collate_planned([files[k] for k in range(start, start + batch)])
        for start in range(0, len(files) - batch + 1, batch)
    ]
    stages = {"decode": [], "crop+resize": [], "flip+RandAugment": [], "normalise+erase": []}
    stages["mixup"] = []
    for _ in range(repeats):
        for data, labels, plans, batchable in batches:
            marks = [time.perf_counter()]
            decoded = decode_images(data, device, batchable)
            _sync(device)
            marks.append(time.perf_counter())
            x = torch.stack(
                [
                    resized_crop(im, p.crop, augment.input_size, p.interpolation)
                    for im, p in zip(decoded, plans, strict=True)
                ]
            )
            _sync(device)
            marks.append(time.perf_counter())
            flips = torch.tensor([p.flip for p in plans], device=device)
            x = torch.where(flips.view(-1, 1, 1, 1), x.flip(-1), x)
            for step in range(max(len(p.ops) for p in plans)):
                x = apply_ops(x, [p.ops[step] if step < len(p.ops) else None for p in plans])
            _sync(device)
            marks.append(time.perf_counter())
            x = normalize(x, augmenter.mean, augmenter.std)
            x = augmenter.erasing(x)
            _sync(device)
            marks.append(time.perf_counter())
            mixup(x, labels.to(device))
            _sync(device)
            marks.append(time.perf_counter())
            for name, begin, end in zip(stages, marks, marks[1:], strict=False):
                stages[name].append(end - begin)
    return {name: statistics.median(values) for name, values in stages.items()}


def model_rate(batch: int, compile_model: bool, steps: int = 20) -> float:
    """Dit-ConvNeXt-T training steps on CUDA: bf16 autocast, channels_last, fused AdamW."""
    from ann.models import create_model

    device = torch.device("cuda")
    model = create_model("dit_convnext_tiny", num_classes=1000, drop_path_rate=0.1)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05, fused=True)
    step_model = torch.compile(model) if compile_model else model
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(step_model(x).float(), y)
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


# ---------------------------------------------------------------- the report
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="synthetic JPEGs to build")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="N for (a)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model-rate", type=float, help="training images/s of one GPU")
    parser.add_argument("--target", type=float, default=2500.0, help="images/s per GPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model in (c)")
    parser.add_argument("--folder", type=Path, help="use/keep this folder for the JPEGs")
    args = parser.parse_args()
    from timm.data import Mixup

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    cores = os.cpu_count()
    torch.set_num_threads(1)
    print(
        f"machine: {cores} CPU cores (os.cpu_count), device for (b)/(c): {device}"
        + (f" ({torch.cuda.get_device_name()})" if cuda else " (no CUDA here)")
    )

    with tempfile.TemporaryDirectory() as scratch:
        root = args.folder or Path(scratch)
        start = time.perf_counter()
        kb = build_folder(root, args.images) if not (root / "train").is_dir() else float("nan")
        print(
            f"synthetic ImageNet: {args.images} JPEGs of 500x375, mean {kb:.0f} kB "
            f"(ImageNet's average is about 110 kB), built in {time.perf_counter() - start:.0f} s"
        )
        data = load_imagenet(root)
        augment = ImageNetAugment(crop_pct=0.95, **RECIPE)
        print(
            f"pipeline: {augment.input_size} px, bicubic RandomResizedCrop, flip, RandAugment "
            f"{augment.auto_augment}, normalise, random erasing {augment.re_prob}, "
            f"mixup {MIXUP['mixup_alpha']} / cutmix {MIXUP['cutmix_alpha']}; batch {args.batch}; "
            f"medians of {args.repeats} passes after a warm-up pass\n"
        )

        mixup = Mixup(num_classes=data.num_classes, **MIXUP)
        print(
            "(a) timm's CPU loader (data_pipeline: timm), batches on the CPU; images/s by the "
            "wall clock (depends on what else runs) and per CPU-second of all its processes:"
        )
        per_core = {}
        for workers in sorted({0, 1, args.workers}):
            loader = imagenet_loader(
                data.train,
                augment,
                is_training=True,
                batch_size=args.batch,
                num_workers=workers,
                device="cpu",
            )
            wall, cpu = rate(loader, mixup, torch.device("cpu"), args.repeats)
            per_core[workers] = cpu
            what = "all in the main process" if workers == 0 else f"{workers} worker processes"
            print(
                f"    {workers} workers ({what}): {wall:7.1f} images/s wall, "
                f"{cpu:6.1f} images/s per core"
            )
            del loader
        timm_per_core = per_core[args.workers]

        print("\n(b) device pipeline (data_pipeline: gpu):")
        files = PlannedFiles(data.train.reader.samples, augment)
        cpu_part = cpu_part_rate(files, args.repeats)
        print(
            f"    its CPU part (read file, parse header, draw crop/flip/RandAugment): "
            f"{cpu_part:6.0f} images/s per core"
        )
        loader = GpuTrainLoader(
            data.train, augment, batch_size=args.batch, num_workers=1, device=device
        )
        device_mixup = Mixup(num_classes=data.num_classes, **MIXUP)
        pipeline, pipeline_cpu = rate(loader, device_mixup, device, args.repeats)
        if cuda:
            print(
                f"    whole pipeline (decode, crop, RandAugment, erase, mixup on {device}): "
                f"{pipeline:7.1f} images/s per GPU ({pipeline_cpu:.0f} per CPU-second)"
            )
        else:
            print(
                f"    whole pipeline run on the CPU device, 1 thread (NOT a GPU figure): "
                f"{pipeline:6.1f} images/s wall, {pipeline_cpu:6.1f} images/s per core"
            )
        stages = stage_times(files, augment, device, device_mixup, args.batch, args.repeats)
        total = sum(stages.values())
        listed = ", ".join(f"{name} {1000 * s:.1f}" for name, s in stages.items())
        print(
            f"    per stage on {device}, ms per batch of {args.batch} (wall): {listed}; "
            f"sum {1000 * total:.1f}"
        )
        if not cuda:
            print(
                "    GPU figures (nvjpeg decode, device ops, overlap with training): not "
                "measured here; run this script on a CUDA machine."
            )

        print("\n(c) model training step (Dit-ConvNeXt-T, bf16, channels_last, batch 128):")
        model = args.model_rate
        if cuda and model is None:
            model = model_rate(128, args.compile)
            print(
                f"    measured: {model:7.1f} images/s per GPU"
                + (" (torch.compile)" if args.compile else " (eager)")
            )
        elif model is not None:
            print(f"    given (--model-rate): {model:7.1f} images/s per GPU")
        else:
            print(
                "    not measured (no CUDA); pass --model-rate. Issue #12: about 1,300 "
                "images/s per H200 today, 2,500 the target."
            )

        print("\nSummary:")
        print(
            f"    timm CPU loader: {timm_per_core:.1f} images/s per CPU core with "
            f"{args.workers} workers ({per_core[0]:.1f} in one process)"
        )
        for name, need in (("the target", args.target), ("the model", model)):
            if need:
                print(
                    f"    to feed {name} ({need:.0f} images/s per GPU) timm's loader needs "
                    f"{need / timm_per_core:.0f} cores per GPU ({8 * need / timm_per_core:.0f} "
                    f"per 8-GPU node); the device pipeline's CPU part needs "
                    f"{need / cpu_part:.2f} cores per GPU"
                )
        if cuda:
            print(
                f"    device pipeline / target: {pipeline / args.target:.2f}"
                + (f"; device pipeline / model: {pipeline / model:.2f}" if model else "")
            )
        else:
            print(
                f"    device pipeline on the CPU device / timm loader, per core: "
                f"{pipeline_cpu / per_core[0]:.2f} (a CPU figure; the pipeline is made for "
                "a GPU)"
            )


if __name__ == "__main__":
    main()
