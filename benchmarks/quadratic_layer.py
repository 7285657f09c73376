"""Forward+backward time and peak memory of the Dit quadratic layer against the reference.

Run as `python benchmarks/quadratic_layer.py [--reps N] [--threads T] [--rounds R]`. Every
(shape, layer) pair is measured in its own process (this script, started with worker
arguments), R times, alternating the layers. Time: median over all timed repetitions, each
after one warm-up pass per process. Peak memory: the peak resident set size during the warm-up
and timed forward+backward passes minus the resident size just before them.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from ann.layers import DitQuadratic
from ann.layers.dit_chunked import naive_quadratic_rows

SHAPES = [(32, 16, 128), (96, 56, 8)]  # (channels, height = width, batch)
TARGET_SHAPE = (96, 56, 8)
TIME_TARGET = 0.6
MEMORY_TARGET = 0.35
LAYERS = ("reference", "packed")


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_resident() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def peak_resident_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class ReferenceQuadratic(torch.nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(channels, channels * channels))

    def forward(self, x):
        batch, channels, height, width = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, channels)
        out = naive_quadratic_rows(rows, self.weight)
        return out.view(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()


def make_layer(name: str, channels: int) -> torch.nn.Module:
    layer = (
        ReferenceQuadratic(channels) if name == "reference" else DitQuadratic(channels, channels)
    )
    with torch.no_grad():
        layer.weight.normal_(std=channels**-1.5, generator=torch.Generator().manual_seed(0))
    return layer


def forward_backward(layer: torch.nn.Module, x: torch.Tensor) -> float:
    x.grad = None
    layer.weight.grad = None
    start = time.perf_counter()
    out = layer(x)
    out.backward(torch.ones_like(out))
    return time.perf_counter() - start


def worker(name: str, channels: int, size: int, batch: int, reps: int) -> dict:
    layer = make_layer(name, channels)
    x = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(1))
    x.requires_grad_(True)
    exact_peak = reset_peak_resident()
    before = resident_bytes()
    forward_backward(layer, x)
    seconds = [forward_backward(layer, x) for _ in range(reps)]
    peak = peak_resident_bytes() - before
    return {"seconds": seconds, "peak_bytes": peak, "exact_peak": exact_peak}


def run_worker(name: str, shape: tuple[int, int, int], reps: int, threads: int) -> dict:
    channels, size, batch = shape
    command = [sys.executable, __file__, "--worker", name, "--shape", str(channels), str(size)]
    command += [str(batch), "--reps", str(reps), "--threads", str(threads)]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        sys.exit(f"worker {name} {shape} failed:\n{finished.stderr}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def combined(runs: list[dict]) -> dict:
    seconds = [rep for run in runs for rep in run["seconds"]]
    peak = statistics.median(run["peak_bytes"] for run in runs)
    exact_peak = all(run["exact_peak"] for run in runs)
    return {"seconds": statistics.median(seconds), "peak_bytes": peak, "exact_peak": exact_peak}


def measure(shapes: list[tuple[int, int, int]], arguments: argparse.Namespace) -> dict:
    """Rounds alternate the layers, so that both see the same changes in machine load."""
    runs = {shape: {name: [] for name in LAYERS} for shape in shapes}
    for _ in range(arguments.rounds):
        for shape in shapes:
            for name in LAYERS:
                run = run_worker(name, shape, arguments.reps, arguments.threads)
                runs[shape][name].append(run)
    return {
        shape: {name: combined(by_layer[name]) for name in LAYERS}
        for shape, by_layer in runs.items()
    }


def print_table(results: dict) -> None:
    header = f"{'shape (C, HxW, batch)':<24}{'layer':<11}{'time s':>9}{'peak MiB':>10}"
    print(header + f"{'time ratio':>12}{'mem ratio':>11}")
    for shape, by_layer in results.items():
        label = f"{shape[0]}, {shape[1]}x{shape[1]}, {shape[2]}"
        reference = by_layer["reference"]
        for name in LAYERS:
            row = by_layer[name]
            line = f"{label:<24}{name:<11}{row['seconds']:>9.3f}{row['peak_bytes'] / 2**20:>10.1f}"
            if name != "reference":
                line += f"{row['seconds'] / reference['seconds']:>12.3f}"
                line += f"{row['peak_bytes'] / reference['peak_bytes']:>11.3f}"
            print(line)


def print_targets(results: dict) -> None:
    by_layer = results[TARGET_SHAPE]
    time_ratio = by_layer["packed"]["seconds"] / by_layer["reference"]["seconds"]
    memory_ratio = by_layer["packed"]["peak_bytes"] / by_layer["reference"]["peak_bytes"]
    label = f"C={TARGET_SHAPE[0]}, {TARGET_SHAPE[1]}x{TARGET_SHAPE[1]}, batch {TARGET_SHAPE[2]}"
    for what, ratio, target in (
        ("time", time_ratio, TIME_TARGET),
        ("peak memory", memory_ratio, MEMORY_TARGET),
    ):
        verdict = "met" if ratio <= target else "NOT met"
        print(f"target {what} <= {target:.2f}x reference at {label}: {ratio:.3f}x, {verdict}")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions after one warm-up")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--rounds", type=int, default=2, help="worker processes per layer and shape"
    )
    parser.add_argument("--worker", choices=LAYERS, help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs=3, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    torch.set_num_threads(arguments.threads)
    if arguments.worker:
        print(json.dumps(worker(arguments.worker, *arguments.shape, arguments.reps)))
        return
    print(
        f"torch {torch.__version__}, {arguments.threads} threads, median of {arguments.reps} reps"
        f" x {arguments.rounds} rounds, load average before: {os.getloadavg()[0]:.1f}"
    )
    results = measure(SHAPES, arguments)
    if not all(row["exact_peak"] for by_layer in results.values() for row in by_layer.values()):
        print("peak resident size could not be reset; peaks include everything before the run")
    print_table(results)
    print_targets(results)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
