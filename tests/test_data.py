"""Tests for ann.data on tiny fixtures written in each dataset's real on-disk format."""

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import (
    idx_bytes,
    write_cifar10,
    write_cifar100,
    write_fashion_mnist,
    write_gz,
    write_imagenet,
    write_pickle,
)

from ann.data import (
    DeviceDataset,
    GpuAugment,
    ImageNetAugment,
    augment_batch,
    imagenet_loaders,
    iterate_batches,
    load_dataset,
    load_imagenet,
    normalize,
    readers,
)
from ann.errors import DatasetError

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(readers, "_torchvision_download", refuse)


# --- Fashion-MNIST -------------------------------------------------------------------------------


def test_idx_header_bytes_match_the_format():
    assert idx_bytes(2051, np.zeros((2, 28, 28)))[:8] == bytes([0, 0, 8, 3, 0, 0, 0, 2])
    assert idx_bytes(2049, np.zeros(7))[:8] == bytes([0, 0, 8, 1, 0, 0, 0, 7])


def test_fashion_mnist_round_trip(tmp_path, no_download):
    written = write_fashion_mnist(tmp_path)
    for split in ("train", "test"):
        images, labels = written[split]
        ds = load_dataset("fashion_mnist", tmp_path, split)
        assert ds.images.shape == (len(images), 1, 32, 32)
        assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
        assert np.array_equal(ds.images[:, 0, 2:30, 2:30].numpy(), images)
        border = ds.images.clone()
        border[:, :, 2:30, 2:30] = 0
        assert border.sum() == 0
        assert np.array_equal(ds.labels.numpy(), labels)
        assert (ds.num_classes, ds.name, len(ds.mean), len(ds.std)) == (10, "fashion_mnist", 1, 1)


def test_fashion_mnist_found_in_torchvision_raw_folder(tmp_path, no_download):
    written = write_fashion_mnist(tmp_path / "FashionMNIST" / "raw")
    ds = load_dataset("fashion_mnist", str(tmp_path), "test")
    assert np.array_equal(ds.labels.numpy(), written["test"][1])


def test_fashion_mnist_download_goes_through_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeFashionMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            write_fashion_mnist(Path(root) / "FashionMNIST" / "raw")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    ds = load_dataset("fashion_mnist", tmp_path, "train", download=True)
    assert calls == [(str(tmp_path), True, True)]
    assert len(ds) == 12


def test_missing_fashion_mnist_names_paths_and_remedy(tmp_path, no_download):
    root = tmp_path / "absent"
    with pytest.raises(DatasetError) as error:
        load_dataset("fashion_mnist", root, "train")
    message = str(error.value)
    assert str(root) in message and str(root / "FashionMNIST" / "raw") in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "datasets.fashion_mnist.root" in message and "download: true" in message


def test_bad_idx_magic_is_reported(tmp_path, no_download):
    write_fashion_mnist(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    write_gz(bad, idx_bytes(2049, np.zeros((12, 28, 28), np.uint8)))
    with pytest.raises(DatasetError, match="magic number 2049, expected 2051") as error:
        load_dataset("fashion_mnist", tmp_path, "train")
    assert str(bad) in str(error.value)


def test_truncated_gzip_is_reported(tmp_path, no_download):
    write_fashion_mnist(tmp_path)
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-40])
    with pytest.raises(DatasetError, match="gzip") as error:
        load_dataset("fashion_mnist", tmp_path, "test")
    assert str(bad) in str(error.value)


def test_truncated_idx_payload_is_reported(tmp_path, no_download):
    write_fashion_mnist(tmp_path)
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_gz(bad, idx_bytes(2051, np.zeros((5, 28, 28), np.uint8))[:-100])
    with pytest.raises(DatasetError, match="data bytes") as error:
        load_dataset("fashion_mnist", tmp_path, "test")
    assert str(bad) in str(error.value)


def test_image_and_label_counts_must_agree(tmp_path, no_download):
    write_fashion_mnist(tmp_path)
    write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(2049, np.zeros(4, np.uint8)))
    with pytest.raises(DatasetError, match="5 images but 4 labels") as error:
        load_dataset("fashion_mnist", tmp_path, "test")
    assert str(tmp_path) in str(error.value)


def test_unknown_name_or_split_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist", tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("cifar10", tmp_path, "validation")


@pytest.mark.skipif(not REAL_FASHION_MNIST.is_dir(), reason=f"{REAL_FASHION_MNIST} is absent")
def test_real_fashion_mnist(no_download):
    train = load_dataset("fashion_mnist", None, "train")
    test = load_dataset("fashion_mnist", REAL_FASHION_MNIST, "test")
    assert train.images.shape == (60000, 1, 32, 32)
    assert test.images.shape == (10000, 1, 32, 32)
    assert train.num_classes == test.num_classes == 10
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.images[:, :, :2].sum() == 0 and train.images[:, :, :, 30:].sum() == 0
    pixels = train.images[:, :, 2:30, 2:30].double() / 255
    assert pixels.mean().item() == pytest.approx(train.mean[0], abs=5e-4)
    assert pixels.std().item() == pytest.approx(train.std[0], abs=5e-4)


# --- CIFAR ---------------------------------------------------------------------------------------


def test_cifar10_round_trip_keeps_channel_planes(tmp_path, no_download):
    batches = write_cifar10(tmp_path)
    for split in ("train", "test"):
        ds = load_dataset("cifar10", tmp_path, split)
        flat = np.concatenate([batch[b"data"] for batch in batches[split]])
        labels = sum((batch[b"labels"] for batch in batches[split]), [])
        assert ds.images.shape == (len(flat), 3, 32, 32)
        assert ds.labels.tolist() == labels
        for channel in range(3):
            for y, x in ((0, 0), (0, 31), (17, 5), (31, 31)):
                expected = flat[:, channel * 1024 + y * 32 + x]
                assert np.array_equal(ds.images[:, channel, y, x].numpy(), expected)
    assert (ds.num_classes, ds.name, len(ds.mean)) == (10, "cifar10", 3)


def test_cifar10_root_may_be_the_batches_folder(tmp_path, no_download):
    batches = write_cifar10(tmp_path)
    ds = load_dataset("cifar10", tmp_path / "cifar-10-batches-py", "test")
    assert ds.labels.tolist() == batches["test"][0][b"labels"]


def test_cifar100_round_trip_uses_fine_labels(tmp_path, no_download):
    batches = write_cifar100(tmp_path)
    for split in ("train", "test"):
        ds = load_dataset("cifar100", tmp_path, split)
        flat = batches[split][b"data"]
        assert ds.labels.tolist() == batches[split][b"fine_labels"]
        assert ds.labels[0] == 99
        assert np.array_equal(ds.images.reshape(len(flat), -1).numpy(), flat)
    assert ds.num_classes == 100


def test_cifar_without_root_asks_for_the_config_key():
    with pytest.raises(DatasetError, match="datasets.cifar100.root"):
        load_dataset("cifar100", None, "train")


def test_missing_cifar_names_paths_and_remedy(tmp_path, no_download):
    with pytest.raises(DatasetError) as error:
        load_dataset("cifar10", tmp_path, "train")
    message = str(error.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message
    assert "datasets.cifar10.root" in message and "download: true" in message


def test_cifar_missing_key_is_reported(tmp_path, no_download):
    batches = write_cifar100(tmp_path)
    bad = tmp_path / "cifar-100-python" / "test"
    del batches["test"][b"fine_labels"]
    write_pickle(bad, batches["test"])
    with pytest.raises(DatasetError, match="fine_labels") as error:
        load_dataset("cifar100", tmp_path, "test")
    assert str(bad) in str(error.value)


def test_cifar_wrong_array_size_is_reported(tmp_path, no_download):
    batches = write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch = batches["train"][2]
    batch[b"data"] = batch[b"data"][:, :3000]
    write_pickle(bad, batch)
    with pytest.raises(DatasetError, match="3072") as error:
        load_dataset("cifar10", tmp_path, "train")
    assert str(bad) in str(error.value)


def test_cifar_label_count_mismatch_is_reported(tmp_path, no_download):
    batches = write_cifar10(tmp_path)
    batch = batches["test"][0]
    batch[b"labels"] = batch[b"labels"][:-1]
    write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", batch)
    with pytest.raises(DatasetError, match="4 images but 3 labels"):
        load_dataset("cifar10", tmp_path, "test")


def test_cifar_truncated_pickle_is_reported(tmp_path, no_download):
    write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DatasetError, match="not a readable CIFAR pickle") as error:
        load_dataset("cifar10", tmp_path, "test")
    assert str(bad) in str(error.value)


def test_cifar_pickle_cannot_run_code(tmp_path, no_download):
    write_cifar10(tmp_path)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", {b"data": Payload()})
    with pytest.raises(DatasetError, match="not part of a CIFAR batch"):
        load_dataset("cifar10", tmp_path, "test")
    assert not marker.exists()


# --- ImageNet ------------------------------------------------------------------------------------


def test_imagenet_folders_and_loaders(tmp_path):
    write_imagenet(tmp_path, {"n02": 2, "n01": 3, "n03": 2}, {"n03": 2, "n01": 1})
    imagenet = load_imagenet(tmp_path)
    assert imagenet.num_classes == 3
    assert imagenet.class_to_idx == {"n01": 0, "n02": 1, "n03": 2}
    assert (len(imagenet.train), len(imagenet.val)) == (7, 3)
    val_labels = sorted(label for _, label in imagenet.val.reader.samples)
    assert val_labels == [0, 2, 2]

    augment = ImageNetAugment(
        input_size=32,
        crop_pct=0.9,
        auto_augment="rand-m9-mstd0.5",
        re_prob=0.5,
        interpolation="bilinear",
    )
    train, val = imagenet_loaders(
        imagenet, augment, batch_size=3, num_workers=0, eval_batch_size=2, device="cpu"
    )
    images, labels = next(iter(train))
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.float32
    assert set(labels.tolist()) <= {0, 1, 2}
    batches = list(val)
    assert [len(labels) for _, labels in batches] == [2, 1]
    assert sorted(torch.cat([labels for _, labels in batches]).tolist()) == [0, 2, 2]


def test_imagenet_empty_class_folder_is_reported(tmp_path):
    write_imagenet(tmp_path, {"n01": 1, "n02": 1}, {"n01": 1})
    (tmp_path / "train" / "n03").mkdir()
    with pytest.raises(DatasetError, match="n03") as error:
        load_imagenet(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "train") in message and "datasets.imagenet.root" in message


def test_imagenet_missing_root_is_reported(tmp_path):
    with pytest.raises(DatasetError, match="<root>/train/<wnid>/") as error:
        load_imagenet(tmp_path / "imagenet")
    assert str(tmp_path / "imagenet" / "train") in str(error.value)


def test_imagenet_val_class_unknown_to_train_is_reported(tmp_path):
    write_imagenet(tmp_path, {"n01": 1}, {"n01": 1, "n09": 1})
    with pytest.raises(DatasetError, match="n09"):
        load_imagenet(tmp_path)


# --- device datasets and augmentation ------------------------------------------------------------


def make_dataset(
    n: int = 40, channels: int = 3, size: int = 8, num_classes: int = 4
) -> DeviceDataset:
    generator = torch.Generator().manual_seed(1)
    return DeviceDataset(
        images=torch.randint(
            0, 256, (n, channels, size, size), generator=generator, dtype=torch.uint8
        ),
        labels=torch.arange(n) % num_classes,
        num_classes=num_classes,
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        name="fixture",
    )


def find_crop(output: torch.Tensor, padded: torch.Tensor, size: int) -> tuple[int, int, bool]:
    span = padded.shape[-1] - size + 1
    for dy in range(span):
        for dx in range(span):
            window = padded[:, dy : dy + size, dx : dx + size]
            for mirrored in (False, True):
                candidate = window.flip(-1) if mirrored else window
                if torch.equal(candidate, output):
                    return dy, dx, mirrored
    raise AssertionError("output is not a translated (or mirrored) window of the padded image")


def test_normalize_matches_formula():
    ds = make_dataset()
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    expected = (ds.images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std
    ).view(1, 3, 1, 1)
    result = normalize(ds.images, mean, std)
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, expected, rtol=1e-6, atol=1e-6)


def test_augment_is_a_per_image_translation_and_mirror():
    ds = make_dataset(n=64)
    generator = torch.Generator().manual_seed(3)
    out = augment_batch(
        ds.images, crop_padding=2, flip=True, mean=ds.mean, std=ds.std, generator=generator
    )
    assert out.shape == ds.images.shape and out.dtype == torch.float32
    padded = torch.nn.functional.pad(ds.images, (2, 2, 2, 2))
    found = set()
    for image, expected_pad in zip(out, padded, strict=True):
        uint8 = torch.round(image * 0.25 * 255 + 0.5 * 255).to(torch.uint8)
        found.add(find_crop(uint8, expected_pad, 8))
    assert len({(dy, dx) for dy, dx, _ in found}) > 10
    assert {mirrored for _, _, mirrored in found} == {False, True}


def test_crop_offset_is_a_direct_slice_of_the_padded_image():
    image = torch.arange(1, 65, dtype=torch.uint8).view(1, 1, 8, 8)
    out = augment_batch(
        image.expand(100, 1, 8, 8),
        crop_padding=3,
        flip=False,
        mean=(0.0,),
        std=(1 / 255,),
        generator=torch.Generator().manual_seed(0),
    )
    padded = torch.nn.functional.pad(image[0, 0], (3, 3, 3, 3)).float()
    offsets = set()
    for crop in out[:, 0]:
        r, c = (int(i) for i in torch.nonzero(crop)[0])
        y, x = divmod(int(crop[r, c]) - 1, 8)
        dy, dx = y + 3 - r, x + 3 - c
        assert torch.equal(crop, padded[dy : dy + 8, dx : dx + 8])
        offsets.add((dy, dx))
    assert {dy for dy, _ in offsets} == set(range(7)) == {dx for _, dx in offsets}


def test_flip_alone_mirrors_images():
    ds = make_dataset(n=32)
    out = augment_batch(
        ds.images,
        crop_padding=0,
        flip=True,
        mean=(0.0,) * 3,
        std=(1 / 255,) * 3,
        generator=torch.Generator().manual_seed(5),
    )
    same = (out == ds.images.float()).flatten(1).all(1)
    mirrored = (out == ds.images.flip(-1).float()).flatten(1).all(1)
    assert torch.all(same ^ mirrored) and same.any() and mirrored.any()


def test_no_augmentation_equals_normalize():
    ds = make_dataset()
    out = augment_batch(ds.images, crop_padding=0, flip=False, mean=ds.mean, std=ds.std)
    torch.testing.assert_close(out, normalize(ds.images, ds.mean, ds.std), rtol=0, atol=0)


def test_augment_is_reproducible_for_a_seed():
    ds = make_dataset()
    augment = GpuAugment.for_dataset(ds, crop_padding=4)
    first = augment(ds.images, torch.Generator().manual_seed(7))
    second = augment(ds.images, torch.Generator().manual_seed(7))
    other = augment(ds.images, torch.Generator().manual_seed(8))
    assert torch.equal(first, second) and not torch.equal(first, other)
    torch.testing.assert_close(augment.evaluate(ds.images), normalize(ds.images, ds.mean, ds.std))


def test_device_draws_follow_the_generator_and_keep_the_cpu_stream():
    """Draws on the generator's own device are torch.randint's (the CPU runs' augmentation is
    unchanged); a generator elsewhere seeds the device's draws, reproducibly."""
    from ann.data.augment import draw_on_device

    drawn = draw_on_device(9, 50, torch.Generator().manual_seed(4), torch.device("cpu"))
    expected = torch.randint(9, (50,), generator=torch.Generator().manual_seed(4))
    assert torch.equal(drawn, expected)


@pytest.mark.gpu
def test_gpu_augmentation_never_waits_on_the_host():
    """A CPU generator (the run's, checkpointed) and CUDA images: no synchronising copy per
    step (CUDA's sync debug mode raises on one), and the same seed gives the same batch."""
    ds = make_dataset(n=64)
    images = ds.images.cuda()
    augment = GpuAugment.for_dataset(ds, crop_padding=4)
    augment(images, torch.Generator().manual_seed(0))  # moves mean and std once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        first = augment(images, torch.Generator().manual_seed(7))
        second = augment(images, torch.Generator().manual_seed(7))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(first, second)


# --- batching, subsets -----------------------------------------------------------------


def test_unshuffled_batches_cover_the_dataset_in_order():
    ds = make_dataset(n=10)
    batches = list(iterate_batches(ds, 4, shuffle=False))
    assert [len(labels) for _, labels in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([images for images, _ in batches]), ds.images)
    assert len(list(iterate_batches(ds, 4, shuffle=False, drop_last=True))) == 2


def test_shuffled_batches_are_seeded_permutations():
    ds = make_dataset(n=30)

    def epoch(seed):
        batches = iterate_batches(
            ds, 8, shuffle=True, generator=torch.Generator().manual_seed(seed)
        )
        return torch.cat([images for images, _ in batches])

    assert torch.equal(epoch(1), epoch(1)) and not torch.equal(epoch(1), epoch(2))
    assert torch.equal(epoch(1).flatten(1).sort(0).values, ds.images.flatten(1).sort(0).values)


def test_subset_is_seeded_and_stratified():
    ds = make_dataset(n=200, num_classes=10)
    ds.labels = ds.labels.roll(3)
    small = ds.subset(50, seed=1)
    assert len(small) == 50
    assert torch.bincount(small.labels).tolist() == [5] * 10
    again = ds.subset(50, seed=1)
    assert torch.equal(small.images, again.images) and torch.equal(small.labels, again.labels)
    assert not torch.equal(small.images, ds.subset(50, seed=2).images)
    rows = [int(torch.nonzero((ds.images == image).flatten(1).all(1))[0]) for image in small.images]
    assert rows == sorted(rows) and torch.equal(ds.labels[rows], small.labels)
    with pytest.raises(ValueError):
        ds.subset(201)


def test_device_dataset_checks_and_moves():
    ds = make_dataset()
    moved = ds.to("cpu")
    assert moved.device == torch.device("cpu") and torch.equal(moved.images, ds.images)
    with pytest.raises(ValueError, match="uint8"):
        DeviceDataset(ds.images.float(), ds.labels, 4, ds.mean, ds.std, "x")


def test_update_batches_join_loader_batches_in_order():
    from ann.data import update_batches

    loader = [(torch.full((2, 1), float(i)), torch.tensor([i, i])) for i in range(5)]
    joined = list(update_batches(loader, 2))
    assert len(joined) == 2  # the fifth loader batch makes no whole update: dropped
    assert [images.flatten().tolist() for images, _ in joined] == [[0, 0, 1, 1], [2, 2, 3, 3]]
    assert [labels.tolist() for _, labels in joined] == [[0, 0, 1, 1], [2, 2, 3, 3]]
    assert [t.tolist() for _, t in update_batches(loader, 1)] == [[i, i] for i in range(5)]
