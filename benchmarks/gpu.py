"""GPU speed of the Dit-CNN pipeline, side by side in one run, each figure against its target.

    python benchmarks/gpu.py                 # one CUDA device (H100/H200), under 5 minutes
    python benchmarks/gpu.py --smoke         # every section at toy size on the CPU (checks the
                                             # script itself; its figures mean nothing)
    python benchmarks/gpu.py --static        # no GPU: compile every Triton kernel configuration
                                             # for sm_80 and sm_90, check registers, shared
                                             # memory and spills (benchmarks/gpu_static.py)

Sections:
1. The Dit quadratic layer, forward + backward, at (C, H x W, batch) = (96, 56^2, 128),
   (128, 56^2, 64), (64, 32^2, 128), (32, 16^2, 128), bf16 (autocast) and fp32, channels_last
   input: the Triton kernels (packed i <= j pairs, and full C^2 products), the chunked torch
   path, the outer-product formula, and a plain 7x7 depthwise convolution of the same input
   for scale. Median time, peak memory above the inputs, TFLOP/s counted on the products each
   implementation runs (`layer_flops`: packed forward and weight gradient on C(C+1)/2 pairs,
   the input gradient on all C^2).
2. Training-step time of Dit-ConvNeXt-T / ConvNeXt-T (batch 128) and Dit-ConvNeXt-B /
   ConvNeXt-B (batch 64): 224^2, bf16 autocast, channels_last, fused AdamW, eager.
3. Dit-ResNet-20 / ResNet-20 training step, batch 128, 3 x 32^2, bf16: eager and
   torch.compile(fullgraph=True, mode="reduce-overhead") (CUDA graphs).
4. `ann.train` on Fashion-MNIST (Dit-ResNet-20, prior zero, the fmnist_gpu recipe, 3 epochs,
   train.compile auto): training images/s of the last epoch. The real data are used when
   found (--fmnist-root, default Debian's folder), else synthetic images of the same shape
   (the speed does not depend on the pixels; said in the output).

With --tune, section 1 is followed by a sweep of the Triton kernels' tile sizes at
(96, 56^2, 128) bf16 (forward and backward timed apart), printing the fastest settings beside
those `ann.layers.dit_triton.tile_config` chooses, for whoever tunes that function next.

Each section (and each implementation in section 1) reports its own error and the run goes
on. The run ends with one table, every target with its measured value and met / NOT met /
not measured (--json writes it as JSON too).

Exits with status 2 and a message when no CUDA device is present (unless --smoke or
--static); --static exits 1 when a kernel exceeds its target's limits.
"""

import argparse
import copy
import gzip
import json
import os
import statistics
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml

from ann.layers import DitQuadratic
from ann.layers.dit_chunked import naive_quadratic_rows, pair_count
from ann.models import create_model, quadratic_layers

ROOT = Path(__file__).resolve().parents[1]
LAYER_SHAPES = [(96, 56, 128), (128, 56, 64), (64, 32, 128), (32, 16, 128)]
LAYER_TARGET_MS = {((96, 56, 128), "bf16"): 6.0}  # the target for the packed kernel
STEP_RATIO_TARGET = 1.15
RESNET_COMPILED_TARGET_MS = 4.5
TRAIN_IMAGES_TARGET = 25_000


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


class Targets:
    """The issue's targets, each with its measured value and verdict (not measured until set)."""

    def __init__(self) -> None:
        self.rows = {
            "layer": ["Dit layer fwd+bwd (96, 56^2, 128) bf16, packed", "<= 6 ms (stretch 4)"],
            "convnext": ["Dit-ConvNeXt-T / ConvNeXt-T train step", f"<= {STEP_RATIO_TARGET}"],
            "resnet": ["compiled Dit-ResNet-20 train step", f"<= {RESNET_COMPILED_TARGET_MS} ms"],
            "fmnist": ["Fashion-MNIST training images/s", f">= {TRAIN_IMAGES_TARGET:,}"],
        }
        self.measured: dict[str, tuple[str, str]] = {}

    def set(self, key: str, measured: str, met: bool) -> None:
        self.measured[key] = (measured, verdict(met))

    def failed(self, key: str, error: str) -> None:
        self.measured.setdefault(key, (f"error: {error}", "not measured"))

    def records(self) -> list[dict[str, str]]:
        return [
            {
                "target": name,
                "required": required,
                "measured": self.measured.get(key, ("-", "not measured"))[0],
                "verdict": self.measured.get(key, ("-", "not measured"))[1],
            }
            for key, (name, required) in self.rows.items()
        ]

    def print_table(self) -> None:
        print("\nTargets")
        records = self.records()
        width = max(len(r["target"]) for r in records)
        print(f"   {'target':<{width}}  {'required':<20} {'measured':<28} verdict")
        for r in records:
            print(
                f"   {r['target']:<{width}}  {r['required']:<20} {r['measured'][:60]:<28} "
                f"{r['verdict']}"
            )


TARGETS = Targets()


def run_section(name: str, keys: tuple[str, ...], fn: Callable[[], None]) -> bool:
    """Run one section; on any error print it (with the last frames) and go on."""
    try:
        fn()
        return True
    except Exception as error:  # noqa: BLE001 - reported, then the next section runs
        message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        print(f"   section {name} failed: {message}")
        print("   " + "".join(traceback.format_exc(limit=-3)).replace("\n", "\n   "))
        for key in keys:
            TARGETS.failed(key, message)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return False


class Timer:
    """Median wall time of a callable: CUDA events on the GPU, perf_counter on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __call__(self, fn: Callable[[], object], reps: int, warmup: int = 2) -> float:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(reps):
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                start_s = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start_s)
        return statistics.median(times)


def peak_mib(device: torch.device, fn: Callable[[], object]) -> float:
    if device.type != "cuda":
        return float("nan")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


class Formula(torch.nn.Module):
    """The paper's formula: the full outer product x x^T per pixel, then K."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(channels, channels * channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, channels)
        out = naive_quadratic_rows(rows, self.weight)
        return out.view(batch, height, width, -1).permute(0, 3, 1, 2)


class Depthwise(torch.nn.Module):
    """A plain 7x7 depthwise convolution (ConvNeXt's), for scale beside the Dit layer."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.weight = self.conv.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def forward_backward(
    layer: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype
) -> Callable[[], None]:
    """One forward + backward of the layer on x, in dtype (autocast unless float32)."""

    def step() -> None:
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
            y = layer(x)
        y.backward(torch.ones_like(y))
        x.grad = layer.weight.grad = None

    return step


def layer_flops(name: str, channels: int, rows: int) -> float:
    """Multiply-adds x 2 of forward + backward as the implementation runs them: the packed
    Triton kernels form C(C+1)/2 pairs in forward and in the weight gradient and all C^2 in
    the input gradient; "full" and the formula all C^2 three times; the chunked path the pairs
    three times; the depthwise convolution 49 taps a channel, three times."""
    pairs, square = pair_count(channels), channels * channels
    per_row = {
        "triton packed": 2 * pairs + square,
        "chunked": 3 * pairs,
        "depthwise 7x7": 3 * 49 / channels,
    }.get(name, 3 * square)
    return 2.0 * rows * per_row * channels


def layer_section(device: torch.device, shapes: list, reps: int) -> None:
    print("\n1. Dit quadratic layer, forward + backward, channels_last input")
    header = f"{'C':>4} {'HxW':>7} {'batch':>5} {'dtype':>5} {'implementation':>14}"
    print(f"{header} {'ms':>9} {'peak MiB':>9} {'TFLOP/s':>8} {'vs formula':>10}  target")
    timer = Timer(device)
    for channels, size, batch in shapes:
        for dtype_name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            generator = torch.Generator().manual_seed(0)
            x = torch.randn(batch, channels, size, size, generator=generator).to(device)
            x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
            weight = torch.randn(channels, channels**2, generator=generator) / channels
            layers = {
                "formula": Formula(channels),
                "chunked": DitQuadratic(channels, channels, kernel="chunked"),
                "triton packed": DitQuadratic(channels, channels, kernel="packed"),
                "triton full": DitQuadratic(channels, channels, kernel="full"),
                "depthwise 7x7": Depthwise(channels),
            }
            if device.type != "cuda":
                layers = {k: v for k, v in layers.items() if not k.startswith("triton")}
            times = {}
            for name, layer in layers.items():
                if name != "depthwise 7x7":
                    layer.weight.data.copy_(weight)
                layer.to(device)
                step = forward_backward(layer, x, dtype)
                where = f"{channels:>4} {size:>3}x{size:<3} {batch:>5} {dtype_name:>5} {name:>14}"
                try:
                    seconds = timer(step, reps)
                    memory = peak_mib(device, step)
                except Exception as error:  # noqa: BLE001 - OOM, a Triton error: go on
                    print(f"{where}  {type(error).__name__}: {str(error)[:200]}")
                    if name == "triton packed" and (channels, size, batch) == LAYER_SHAPES[0]:
                        TARGETS.failed("layer", type(error).__name__)
                    x.grad = None
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                times[name] = seconds
                ratio = seconds / times["formula"] if "formula" in times else float("nan")
                target = LAYER_TARGET_MS.get(((channels, size, batch), dtype_name))
                note = ""
                if name == "triton packed" and target is not None:
                    met = 1e3 * seconds <= target
                    note = f"<= {target} ms: {verdict(met)}"
                    TARGETS.set("layer", f"{1e3 * seconds:.3f} ms", met)
                if name.startswith("triton") and "formula" in times:
                    note += ("; " if note else "") + f"faster than formula: {verdict(ratio < 1)}"
                flops = layer_flops(name, channels, batch * size * size)
                print(
                    f"{where} {1e3 * seconds:9.3f} {memory:9.1f} {flops / seconds / 1e12:8.1f} "
                    f"{ratio:10.3f}  {note}"
                )
            del x
            if device.type == "cuda":
                torch.cuda.empty_cache()


def tune_section(device: torch.device, reps: int) -> None:
    import itertools

    from ann.layers.dit_triton import TileConfig, quadratic_backward, quadratic_forward, tile_config

    channels, size, batch = LAYER_SHAPES[0]
    print(f"\n1b. Tile sweep of the packed Triton kernels at ({channels}, {size}^2, {batch}) bf16")
    x = torch.randn(batch, channels, size, size, device=device, dtype=torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last).flatten(2).transpose(1, 2)
    weight = torch.randn(channels, channels**2, device=device) / channels
    grad = torch.randn(batch, size * size, channels, device=device, dtype=torch.bfloat16)
    timer = Timer(device)
    rows = x.shape[0] * x.shape[1]
    columns = ((64, 32), (128, 0), (32, 0))
    for kind in ("matmul", "gram"):
        chosen = tile_config(rows, channels, channels, torch.bfloat16, kind)
        results = []
        reductions = (16, 32) if kind == "matmul" else (64, 128)
        for block_m, (block_n, block_t), block_b, warps, stages in itertools.product(
            (32, 64, 128), columns, reductions, (4, 8), (1, 2, 3)
        ):
            tiles = TileConfig(block_m, block_n, block_b, warps, stages, block_t)
            if kind == "matmul":
                run = lambda t=tiles: quadratic_forward(x, weight, True, t)  # noqa: E731
            else:
                run = lambda t=tiles: quadratic_backward(grad, x, weight, True, None, t)  # noqa: E731
            try:
                results.append((timer(run, reps), tiles))
            except Exception as error:  # noqa: BLE001 - a tile over the chip's resources
                print(f"   {kind} {tiles}: {type(error).__name__}")
        results.sort(key=lambda row: row[0])
        label = "forward" if kind == "matmul" else "backward (the weight gradient's tiles)"
        for seconds, tiles in results[:5]:
            mark = "  <- tile_config's choice" if tiles == chosen else ""
            print(f"   {label} {1e3 * seconds:7.3f} ms: {tiles}{mark}")
        mine = [seconds for seconds, tiles in results if tiles == chosen]
        if mine:
            print(f"   {label}, tile_config's choice {chosen}: {1e3 * mine[0]:.3f} ms")


def training_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> Callable[[], None]:
    def step() -> None:
        if x.is_cuda:
            torch.compiler.cudagraph_mark_step_begin()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.is_cuda):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        optimizer.step()

    return step


def _optimizer(model: torch.nn.Module, kind: str) -> torch.optim.Optimizer:
    fused = {"fused": True} if next(model.parameters()).is_cuda else {}
    if kind == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, **fused)
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, **fused)


def _with_dit_weights(model: torch.nn.Module) -> torch.nn.Module:
    for layer in quadratic_layers(model):
        torch.nn.init.normal_(layer.weight, std=0.01)
    return model


def step_times(
    names: tuple[str, str],
    device: torch.device,
    shape: tuple,
    optimizer: str,
    reps: int,
    compile_options: dict | None = None,
    **model_kwargs: object,
) -> dict[str, float]:
    """Median step time of each model, alternating them over `reps` rounds."""
    batch = shape[0]
    x = torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    steps = {}
    for name in names:
        model = _with_dit_weights(create_model(name, num_classes=10, **model_kwargs))
        model = model.to(device).to(memory_format=torch.channels_last)
        forward = torch.compile(model, **compile_options) if compile_options else model
        steps[name] = training_step(forward, _optimizer(model, optimizer), x, y)
        started = time.perf_counter()
        for _ in range(3):
            steps[name]()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if compile_options:
            print(f"   {name}: first 3 steps (compilation) {time.perf_counter() - started:.1f} s")
    timer = Timer(device)
    samples = {name: [] for name in names}
    for _ in range(reps):
        for name in names:
            samples[name].append(timer(steps[name], 1, warmup=0))
    return {name: statistics.median(values) for name, values in samples.items()}


def convnext_section(device: torch.device, cases: list, reps: int, **model_kwargs: object) -> None:
    print("\n2. ConvNeXt training step, 224x224, bf16 autocast, channels_last, fused AdamW, eager")
    for size, batch, image in cases:
        plain, dit = f"convnext_{size}", f"dit_convnext_{size}"
        shape = (batch, 3, image, image)
        times = step_times((plain, dit), device, shape, "adamw", reps, **model_kwargs)
        ratio = times[dit] / times[plain]
        if size == "tiny":
            TARGETS.set("convnext", f"{ratio:.3f}", ratio <= STEP_RATIO_TARGET)
        print(
            f"   {dit} / {plain}, batch {batch}: {1e3 * times[dit]:.2f} / "
            f"{1e3 * times[plain]:.2f} ms = {ratio:.3f} "
            f"(target <= {STEP_RATIO_TARGET}: {verdict(ratio <= STEP_RATIO_TARGET)})"
        )


def resnet_section(device: torch.device, batch: int, reps: int, compile_options: dict) -> None:
    print(f"\n3. ResNet-20 training step, batch {batch}, 3x32x32, bf16 autocast, fused SGD")
    names = ("resnet20", "dit_resnet20")
    eager = step_times(names, device, (batch, 3, 32, 32), "sgd", reps)
    compiled = step_times(names, device, (batch, 3, 32, 32), "sgd", reps, compile_options)
    for label, times in (("eager", eager), (f"compiled {compile_options}", compiled)):
        ratio = times["dit_resnet20"] / times["resnet20"]
        line = (
            f"   {label}: dit_resnet20 {1e3 * times['dit_resnet20']:.2f} ms, resnet20 "
            f"{1e3 * times['resnet20']:.2f} ms, ratio {ratio:.3f}"
        )
        if label != "eager":
            fast = 1e3 * times["dit_resnet20"] <= RESNET_COMPILED_TARGET_MS
            TARGETS.set("resnet", f"{1e3 * times['dit_resnet20']:.2f} ms", fast)
            line += (
                f" (targets: <= {RESNET_COMPILED_TARGET_MS} ms: {verdict(fast)}; "
                f"ratio <= {STEP_RATIO_TARGET}: {verdict(ratio <= STEP_RATIO_TARGET)})"
            )
        print(line)


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    """Fashion-MNIST's IDX files (gzip), as Debian's dataset-fashion-mnist ships them."""
    count, rows, cols = images.shape
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, count, rows, cols) + images.tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, count) + labels.astype(np.uint8).tobytes())


def synthetic_fashion_mnist(folder: Path, n_train: int, n_test: int) -> Path:
    rng = np.random.default_rng(0)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        write_idx(folder, images, rng.integers(0, 10, count), prefix)
    return folder


def train_section(root: Path | None, device: str, overrides: dict, synthetic_size: tuple) -> None:
    try:
        import pandas  # ann.train writes its metrics with pandas

        from ann.engine import run_from_config, train
    except ImportError as error:  # ann.train's own needs, not the kernels'
        raise ImportError(f"section 4 runs ann.train, which needs {error.name}") from error

    print("\n4. python -m ann.train on Fashion-MNIST: dit_resnet20, prior zero, fmnist_gpu recipe")
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        if root is None or not (root / "train-images-idx3-ubyte.gz").is_file():
            root = synthetic_fashion_mnist(Path(tmp), *synthetic_size)
            print(f"   (synthetic images of Fashion-MNIST's shape, {synthetic_size} train/test)")
        config = copy.deepcopy(config)
        config["datasets"]["fashion_mnist"].update(root=str(root), recipe="fmnist_gpu")
        run = run_from_config(
            config,
            "fashion_mnist",
            "dit_resnet20",
            "zero",
            0,
            Path(tmp) / "run",
            overrides,
            device=device,
        )
        summary = train(run)
        curve = pandas.read_csv(Path(tmp) / "run" / "metrics.csv")
    rate = float(curve.images_per_s.iloc[-1])
    TARGETS.set("fmnist", f"{rate:,.0f}", rate >= TRAIN_IMAGES_TARGET)
    print(
        f"   compile mode {summary['compile_mode']}, first step {summary['first_step_s']} s; "
        f"images/s per epoch {[round(v) for v in curve.images_per_s]}"
    )
    print(
        f"   training images/s, last epoch: {rate:,.0f} "
        f"(target >= {TRAIN_IMAGES_TARGET:,}: {verdict(rate >= TRAIN_IMAGES_TARGET)})"
    )


def static_check(models: list[str] | None, json_path: Path | None) -> int:
    """Compile every kernel configuration offline (benchmarks/gpu_static.py); 1 on a breach."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("--static compiles the kernels: unset TRITON_INTERPRET (the interpreter's kernels")
        print("cannot be compiled), e.g. env -u TRITON_INTERPRET python benchmarks/gpu.py --static")
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_static import as_records, model_layer_shapes, run_static

    from ann.models import MODEL_NAMES

    names = models or list(MODEL_NAMES)
    shapes = model_layer_shapes(names)
    print(f"Dit layer shapes (C_in, C_out, rows) of {', '.join(names)}: {sorted(shapes)}")
    if models is None:
        shapes |= {(c, c, batch * size * size) for c, size, batch in LAYER_SHAPES}
    results = run_static(shapes)
    if json_path is not None:
        json_path.write_text(json.dumps(as_records(results), indent=1))
    breaches = [m for m in results if m.problems]
    print(f"static check: {len(results)} compilations, {len(breaches)} over a limit")
    return 1 if breaches else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU")
    parser.add_argument("--static", action="store_true", help="offline kernel check, no GPU")
    parser.add_argument(
        "--models", nargs="+", help="--static: only these models' Dit layers (default: all)"
    )
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument(
        "--fmnist-root", type=Path, default=Path("/usr/share/datasets/fashion-mnist")
    )
    parser.add_argument("--tune", action="store_true", help="sweep the Triton tile sizes")
    parser.add_argument(
        "--sections", default="1234", help="which sections to run, e.g. 13 (default: all)"
    )
    parser.add_argument("--json", type=Path, help="write the targets table (or --static's) here")
    args = parser.parse_args()
    if args.static:
        return static_check(args.models, args.json)
    if not args.smoke and not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA device and none is present (try --smoke).")
        if args.json is not None:
            for key in TARGETS.rows:
                TARGETS.failed(key, "no CUDA device")
            args.json.write_text(json.dumps(TARGETS.records(), indent=1))
        return 2
    device = torch.device("cpu" if args.smoke else "cuda")
    started = time.perf_counter()
    where = "CPU, --smoke: toy sizes" if args.smoke else torch.cuda.get_device_name(device)
    print(f"torch {torch.__version__}, {where}")
    if device.type == "cuda":
        import triton

        print(f"triton {triton.__version__}, TF32 matmul {torch.backends.cuda.matmul.allow_tf32}")
    convnext_kwargs = {}
    if args.smoke:
        shapes, convnext = [(5, 6, 2)], [("tiny", 2, 32)]
        convnext_kwargs = {"depths": (3, 1, 1, 1), "dims": (8, 16, 24, 32)}
        compile_options = {"fullgraph": True, "backend": "aot_eager"}
        overrides = {"epochs": 1, "batch_size": 32, "eval_batch_size": 100}
        synthetic, reps = (256, 100), 2
    else:
        shapes, convnext = LAYER_SHAPES, [("tiny", 128, 224), ("base", 64, 224)]
        compile_options = {"fullgraph": True, "mode": "reduce-overhead"}
        overrides, synthetic, reps = {"epochs": 3}, (60000, 10000), args.reps
    if "1" in args.sections:
        run_section("1", ("layer",), lambda: layer_section(device, shapes, reps))
        if args.tune and device.type == "cuda":
            run_section("1b", (), lambda: tune_section(device, reps))
    if "2" in args.sections:
        run_section(
            "2",
            ("convnext",),
            lambda: convnext_section(device, convnext, reps, **convnext_kwargs),
        )
    if "3" in args.sections:
        batch = 128 if not args.smoke else 4
        run_section("3", ("resnet",), lambda: resnet_section(device, batch, reps, compile_options))
    if "4" in args.sections:
        root = None if args.smoke else args.fmnist_root
        run_section(
            "4", ("fmnist",), lambda: train_section(root, device.type, overrides, synthetic)
        )
    TARGETS.print_table()
    if args.json is not None:
        args.json.write_text(json.dumps(TARGETS.records(), indent=1))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
