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
    fixture Fashion-MNIST, three short training epochs, small theory experiments, the prior
    ablation on the grid's seed."""
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
    protocol["crowd"]["max_inputs"] = 4
    config["kappa"]["window_ms"] = [10.0, 50.0]
    # The sweeps at toy size: two sites, one value of each (the figures and page still drawn).
    config["sweeps"].update(n_sites=2, nmda_g_ratio=[1.0], E_GABA_mV=[-75.0])
    config["train"]["experiments"] = {
        "fashion_mnist": {
            "models": ["resnet20", "dit_resnet20"],
            "priors": ["zero", "bio"],
            "seeds": [0],
        }
    }
    # The full-data prior ablation at toy size: one seed, whose runs are the grid's.
    config["experiments"]["prior_ablation"].update(
        enabled=True,
        datasets=["fashion_mnist", "cifar10"],  # CIFAR-10 has no data: skipped
        models=["dit_resnet20"],
        plain_model="resnet20",
        priors=["zero", "bio"],
        modes=["init"],
        seeds=[0],
        sample_epochs=[1, 2, 5],  # 5 is past the runs' 3 epochs: not measured
    )
    # The low-data experiment at toy size: 3 paired seeds of zero, bio and block_mean in two
    # modes on 8 images per class of the fixture.
    config["experiments"]["prior_lowdata"].update(
        shots=8,
        validation_per_class=4,
        seeds=[0, 1, 2],
        priors=["zero", "bio", "block_mean"],
        modes=["init", "anchor"],
        epochs=1,
        batch_size=20,
        lr_grid=[0.01, 0.02],
        anchor_strengths=[0.1, 1.0],
        choice_seeds=[1000],
    )
    config["priors"]["calibration_images"] = 32
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


# ---------------------------------------------------------------- reconstructions
SOMA_RADIUS_UM = 7.5
SOMA_KINDS = ("one-point", "three-point", "multi-point", "outline")


class _SwcWriter:
    """Collects SWC rows (depth-first, ids from 1) for `write_reconstruction`."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, float, float, float, float, int]] = []

    def add(self, kind: int, xyz: np.ndarray, radius: float, parent: int) -> int:
        ident = len(self.rows) + 1
        self.rows.append((ident, kind, *map(float, xyz), float(radius), parent))
        return ident


def _grow(
    swc: _SwcWriter,
    rng: np.random.Generator,
    kind: int,
    start: np.ndarray,
    direction: np.ndarray,
    parent: int,
    radius: float,
    length: float,
    order: int,
    max_order: int,
    step: float,
    taper: float,
) -> None:
    """One branch of `length` um in steps of about `step` um from `start` (not written:
    it is the parent point), then two daughters until `max_order`."""
    position, heading = start.astype(float), direction / np.linalg.norm(direction)
    n = max(2, round(length / step))
    r = radius
    for _ in range(n):
        heading = heading + rng.normal(0.0, 0.12, 3)
        heading /= np.linalg.norm(heading)
        position = position + heading * step * rng.uniform(0.7, 1.3)
        r = max(0.12, r - taper * step)
        parent = swc.add(kind, np.round(position, 3), round(r, 4), parent)
    if order >= max_order:
        return
    for sign in (1.0, -1.0):
        turn = rng.normal(0.0, 1.0, 3)
        turn -= turn.dot(heading) * heading
        daughter = heading + sign * 0.6 * turn / np.linalg.norm(turn)
        _grow(
            swc,
            rng,
            kind,
            position,
            daughter,
            parent,
            r * 0.79,
            length * rng.uniform(0.7, 1.1),
            order + 1,
            max_order,
            step,
            taper,
        )


def _soma_points(swc: _SwcWriter, soma: str) -> dict[str, int]:
    """The soma rows; returns the ids the basal stems and the apical trunk attach to."""
    r = SOMA_RADIUS_UM
    if soma == "one-point":
        root = swc.add(1, np.zeros(3), r, -1)
        return {"basal": root, "basal_side": root, "apical": root}
    if soma == "three-point":  # NeuroMorpho's standard: root, then +-r along y
        root = swc.add(1, np.zeros(3), r, -1)
        swc.add(1, np.array([0.0, -r, 0.0]), r, root)
        swc.add(1, np.array([0.0, r, 0.0]), r, root)
        return {"basal": root, "basal_side": root, "apical": root}
    if soma == "multi-point":  # a stack of cylinders along y, root at the bottom
        ys, radii = [-8.0, -4.0, 0.0, 4.0, 8.0], [3.0, 6.5, 7.5, 6.5, 3.0]
        ids, parent = [], -1
        for y, radius in zip(ys, radii, strict=True):
            parent = swc.add(1, np.array([0.0, y, 0.0]), radius, parent)
            ids.append(parent)
        return {"basal": ids[0], "basal_side": ids[2], "apical": ids[-1]}
    if soma == "outline":  # a traced outline in the x-y plane, a chain of soma points
        ids, parent = [], -1
        for angle in np.linspace(-np.pi / 2, 1.5 * np.pi, 13)[:-1]:
            xyz = np.array([8.0 * np.cos(angle), 9.0 * np.sin(angle), 0.0])
            parent = swc.add(1, np.round(xyz, 3), 1.0, parent)
            ids.append(parent)
        return {"basal": ids[0], "basal_side": ids[3], "apical": ids[6]}
    raise ValueError(f"unknown soma kind {soma!r}; choose from {SOMA_KINDS}")


def write_reconstruction(
    path: Path,
    soma: str = "one-point",
    duplicates: int = 18,
    seed: int = 0,
    step_um: float = 1.2,
    scale: float = 1.0,
) -> dict:
    """A CA1-like pyramidal reconstruction as an SWC file, written at test time.

    A soma (`soma`: one-point, NeuroMorpho three-point, a multi-point stack or a traced
    outline), six basal stems (two of them 0.18 um thick at the soma, like the thin
    stems of real reconstructions) branching to third order, an apical trunk tapering
    from 3.2 to 1.2 um with six obliques and a two-level tuft; points every ~`step_um`
    (about 9000 at scale 1), radii tapering with distance, coordinates rounded to 1 nm.
    `duplicates` points repeat their parent's position (some with another radius), as
    in real files: inside branches, at branch points and at the tips.
    Returns a summary (points, duplicated ids).
    """
    rng = np.random.default_rng(seed)
    swc = _SwcWriter()
    attach = _soma_points(swc, soma)
    r = SOMA_RADIUS_UM
    stems = [
        (-0.2, -1.0, 0.3),
        (0.9, -0.8, -0.2),
        (-0.9, -0.7, -0.3),
        (0.3, -0.9, 0.9),
        (1.0, 0.1, 0.2),
        (-1.0, 0.2, -0.1),
    ]
    for k, direction in enumerate(stems):
        direction = np.asarray(direction) / np.linalg.norm(direction)
        radius = 0.09 if k in (1, 4) else 0.55
        where = attach["basal_side"] if k >= 4 else attach["basal"]
        start_xyz = direction * r
        first = swc.add(3, np.round(start_xyz, 3), radius, where)
        _grow(swc, rng, 3, start_xyz, direction, first, radius, 50 * scale, 1, 4, step_um, 0.001)
    # apical trunk with obliques, then the tuft
    up = np.array([0.0, 1.0, 0.0])
    position = up * r
    parent = swc.add(4, position, 1.6, attach["apical"])
    radius = 1.6
    for piece in range(7):
        for _ in range(round(50 * scale / step_um)):
            position = position + (up + rng.normal(0, 0.05, 3)) / 1.0 * step_um
            radius = max(0.6, radius - 0.0017 * step_um)
            parent = swc.add(4, np.round(position, 3), round(radius, 4), parent)
        if piece < 6:
            side = np.array([np.cos(piece * 2.1), 0.25, np.sin(piece * 2.1)])
            _grow(swc, rng, 4, position, side, parent, 0.45, 120 * scale, 1, 2, step_um, 0.0005)
    for side in ((1.0, 1.0, 0.2), (-1.0, 1.0, -0.2)):
        _grow(
            swc, rng, 4, position, np.asarray(side), parent, 0.8, 90 * scale, 1, 4, step_um, 0.0008
        )
    rows = _with_duplicates(swc.rows, duplicates, rng)
    path.write_text(
        f"# synthetic CA1-like reconstruction ({soma} soma), seed {seed}\n"
        + "".join(
            f"{i} {t} {x:.3f} {y:.3f} {z:.3f} {rad:.4f} {p}\n" for i, t, x, y, z, rad, p in rows
        )
    )
    return {"points": len(rows), "duplicates": duplicates, "soma": soma}


def _with_duplicates(rows: list, count: int, rng: np.random.Generator) -> list:
    """Insert `count` points that repeat their parent's position, renumbering the rows."""
    children: dict[int, list[int]] = {}
    for ident, _, _, _, _, _, parent in rows:
        children.setdefault(parent, []).append(ident)
    dendritic = [row[0] for row in rows if row[1] != 1]
    branch_points = [i for i in dendritic if len(children.get(i, [])) > 1]
    tips = [i for i in dendritic if not children.get(i)]
    n_branch, n_tip = min(count // 3, len(branch_points)), min(count // 6, len(tips))
    picked = set(rng.choice(branch_points, n_branch, replace=False).tolist())
    picked |= set(rng.choice(tips, n_tip, replace=False).tolist())
    inside = [i for i in dendritic if i not in picked and len(children.get(i, [])) == 1]
    picked |= set(rng.choice(inside, count - len(picked), replace=False).tolist())
    out, new_id = [], {}
    for ident, kind, x, y, z, radius, parent in rows:
        new_id[ident] = len(out) + 1
        out.append([len(out) + 1, kind, x, y, z, radius, new_id.get(parent, -1)])
        if ident in picked:  # the duplicate takes over the point's children
            step = radius * (0.8 if rng.random() < 0.3 else 1.0)
            out.append([len(out) + 1, kind, x, y, z, step, len(out)])
            new_id[ident] = len(out)
    return [tuple(row) for row in out]
