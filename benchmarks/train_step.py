"""Training step time of Dit-ResNet-20 against ResNet-20 on this machine, side by side.

One SGD step (forward, backward, update) at batch 128 on 32x32 inputs, both models in the
same process. Every round steps each model once, in alternating order, and the Dit/plain
ratio of that round is one paired sample, so slow spells of a shared machine fall on both
models of a round. Prints each model's median step time, images/s and minor page faults
per step, and the median paired ratio with its distribution-free 95% interval (target
<= 1.15).

By default the process keeps freed memory as a training job does
(ann.engine.retain_freed_memory); --allocator glibc measures glibc's default, which maps
and faults in every step's activations afresh.

Usage: .venv/bin/python benchmarks/train_step.py [--threads 1] [--rounds 60] [--allocator retain]
"""

import argparse
import math
import resource
import statistics
import time

import torch

from ann.engine import retain_freed_memory
from ann.layers.dit_chunked import cpu_vendor, torch_mm_path
from ann.models import create_model

MODELS = ("resnet20", "dit_resnet20")
TARGET = 1.15


def step_once(model, optimizer, x, y):
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    if x.is_cuda:
        torch.cuda.synchronize()


def timed_step(part, x, y) -> tuple[float, int]:
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    step_once(*part, x, y)
    elapsed = time.perf_counter() - start
    return elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def median_interval(values: list[float]) -> tuple[float, float]:
    """Distribution-free 95% interval of the median: order statistics n/2 -/+ 1.96 sqrt(n)/2."""
    ordered, n = sorted(values), len(values)
    half_width = 1.96 * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half_width))
    high = min(n - 1, math.ceil(n / 2 + half_width) - 1)
    return ordered[low], ordered[high]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="1: a workflow training job's")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--allocator", choices=("retain", "glibc"), default="retain")
    args = parser.parse_args()
    retained = args.allocator == "retain" and retain_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, device=args.device)
    y = torch.randint(0, 10, (args.batch,), device=args.device)
    parts = {}
    for name in MODELS:
        model = create_model(name).to(args.device)
        parts[name] = (model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
        for _ in range(3):
            step_once(*parts[name], x, y)
    times = {name: [] for name in MODELS}
    faults = {name: [] for name in MODELS}
    ratios = []
    for round_ in range(args.rounds):
        order = MODELS if round_ % 2 == 0 else MODELS[::-1]
        for name in order:
            elapsed, faulted = timed_step(parts[name], x, y)
            times[name].append(elapsed)
            faults[name].append(faulted)
        ratios.append(times["dit_resnet20"][-1] / times["resnet20"][-1])
    allocator = "freed memory retained" if retained else "glibc's default allocator"
    print(
        f"torch {torch.__version__}, device {args.device}, {args.threads} threads, batch "
        f"{args.batch}, {allocator}, {args.rounds} rounds of alternating steps"
    )
    if args.device == "cpu":
        form = "torch.mm" if torch_mm_path(torch.device("cpu")) else "oneDNN"
        print(f"CPU {cpu_vendor() or 'of unknown vendor'}: the Dit products are {form}'s")
    for name in MODELS:
        step = statistics.median(times[name])
        print(
            f"{name:14s} {1e3 * step:8.1f} ms/step {args.batch / step:8.1f} images/s "
            f"{statistics.median(faults[name]):8.0f} page faults/step"
        )
    ratio = statistics.median(ratios)
    low, high = median_interval(ratios)
    verdict = "met" if high <= TARGET else ("NOT met" if low > TARGET else "not shown")
    print(
        f"dit_resnet20 / resnet20 step time: {ratio:.3f} (95% interval {low:.3f}-{high:.3f}; "
        f"target <= {TARGET}: {verdict})"
    )


if __name__ == "__main__":
    main()
