"""Tiny datasets in their real on-disk formats, written at test time."""

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

FASHION_PATTERN_SIZE = 6


def learnable_images(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with a bright square whose position encodes the label (easy to learn)."""
    images = rng.integers(0, 60, (len(labels), size, size), dtype=np.uint8)
    for k, label in enumerate(labels):
        row, col = divmod(int(label) % 9, 3)
        r, c = 2 + row * 8, 2 + col * 8
        images[k, r : r + FASHION_PATTERN_SIZE, c : c + FASHION_PATTERN_SIZE] = 255 - 20 * (
            int(label) // 9
        )
    return images


def idx_bytes(magic: int, array: np.ndarray) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_gz(path: Path, payload: bytes) -> None:
    with gzip.open(path, "wb") as file:
        file.write(payload)


def write_fashion_mnist(
    folder: Path, n_train: int = 12, n_test: int = 5, seed: int = 0, learnable: bool = False
) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        if learnable:
            images = learnable_images(labels, 28, rng)
        else:
            images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        write_gz(folder / f"{prefix}-images-idx3-ubyte.gz", idx_bytes(2051, images))
        write_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", idx_bytes(2049, labels))
        written[split] = (images, labels)
    return written


def write_pickle(path: Path, obj: object) -> None:
    with path.open("wb") as file:
        pickle.dump(obj, file, protocol=2)


def cifar_batch(rng: np.random.Generator, n: int, label_key: bytes, num_classes: int) -> dict:
    return {
        b"batch_label": b"fixture",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key: rng.integers(0, num_classes, n).tolist(),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def write_cifar10(root: Path, seed: int = 0) -> dict[str, list[dict]]:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {"train": [], "test": []}
    for name, split, n in [(f"data_batch_{i}", "train", 3) for i in range(1, 6)] + [
        ("test_batch", "test", 4)
    ]:
        batch = cifar_batch(rng, n, b"labels", 10)
        write_pickle(folder / name, batch)
        batches[split].append(batch)
    return batches


def write_cifar100(root: Path, seed: int = 0) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    batches = {}
    for split, n in (("train", 6), ("test", 3)):
        batch = cifar_batch(rng, n, b"fine_labels", 100)
        batch[b"fine_labels"][0] = 99
        batch[b"coarse_labels"] = [label // 5 for label in batch[b"fine_labels"]]
        write_pickle(folder / split, batch)
        batches[split] = batch
    return batches


def write_imagenet(root: Path, train: dict[str, int], val: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for split, counts in (("train", train), ("val", val)):
        for wnid, count in counts.items():
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG", format="JPEG")


def natural_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like uint8 (height, width, 3) image: smooth colour waves, flat discs with hard
    edges and a little noise (what JPEG, resampling and RandAugment see in real images)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.full((height, width, 3), 128.0)
    for channel in range(3):
        for _ in range(6):
            fx, fy, phase = rng.uniform(0, 8, 3)
            wave = np.sin(2 * np.pi * (fx * x + fy * y) + 3 * phase)
            image[..., channel] += rng.uniform(20, 50) * wave
    for _ in range(8):
        cy, cx = rng.uniform(0, 1, 2) * (height, width) / max(height, width)
        radius = rng.uniform(0.05, 0.2)
        image[(y - cy) ** 2 + (x - cx) ** 2 < radius**2] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def tiny_workflow_config(default: dict, results: Path, fmnist_root: Path) -> dict:
    """The whole workflow shrunk to run in about a minute: 2 sites, a few trials, a
    fixture Fashion-MNIST, one training epoch, small theory experiments."""
    import copy

    config = copy.deepcopy(default)
    config["results_dir"] = str(results)
    dendrite = config["dendrite"]
    dendrite["sites"]["n_sites"] = 2
    dendrite["chunks"] = 2
    protocol = dendrite["protocol"]
    protocol["trial_ms"] = 60.0
    protocol["strengths_nS"] = {"E": [0.5, 1.0], "I": [1.0, 2.0]}
    protocol["pairs"]["max_pairs_per_kind"] = 3
    protocol["timing"].update(n_pairs=1, delta_t_ms=[-5.0, 5.0])
    protocol["multi"].update(n_trials=2, n_E=4, n_I=2)
    config["kappa"]["window_ms"] = [10.0, 50.0]
    config["train"]["experiments"] = {
        "fashion_mnist": {
            "models": ["resnet20", "dit_resnet20"],
            "priors": ["zero", "bio"],
            "seeds": [0],
        }
    }
    config["datasets"]["fashion_mnist"]["root"] = str(fmnist_root)
    config["train"]["processes"] = 2  # every training job goes through torchrun (gloo)
    config["datasets"]["fashion_mnist"]["recipe"] = "fmnist_short"  # on any device
    config["recipes"]["fmnist_short"].update(
        epochs=3, batch_size=32, train_subset=None, eval_subset=None, warmup_epochs=0
    )
    config["theory"]["gaussian"] = {
        "n_test": 2000,
        "seeds": [0],
        "sweep_sizes": [20, 100],
        "sweep_seeds": [0],
        "monte_carlo_samples": 20000,
        "mlp_steps": 100,
        "quad_steps": 50,
    }
    config["theory"]["fewshot"] = {
        "shots": [1, 2],
        "seeds": [0],
        "min_steps": 5,
        "max_steps": 10,
        "lr_grid": [1e-3, 1e-2],
        "sweep_shots": [2],
        "validation_per_class": 10,
        "test_subset": None,
        "threads": 1,
    }
    return config
