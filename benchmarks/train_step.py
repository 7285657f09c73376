"""Training step time of Dit-ResNet-20 against ResNet-20 on this machine, side by side.

One SGD step (forward, backward, update) at batch 128 on 32x32 inputs, both models in
the same process, alternating, median over --steps steps after a warm-up. Prints each
model's step time and images/s and the Dit/plain ratio (target <= 1.2 on the CPU).

Usage: .venv/bin/python benchmarks/train_step.py [--threads 2] [--steps 15] [--device cpu]
"""

import argparse
import statistics
import time

import torch

from ann.models import create_model

MODELS = ("resnet20", "dit_resnet20")


def step_once(model, optimizer, x, y):
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    if x.is_cuda:
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, device=args.device)
    y = torch.randint(0, 10, (args.batch,), device=args.device)
    parts = {}
    for name in MODELS:
        model = create_model(name).to(args.device)
        parts[name] = (model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
        step_once(*parts[name], x, y)
    times = {name: [] for name in MODELS}
    for _ in range(args.steps):
        for name in MODELS:
            start = time.perf_counter()
            step_once(*parts[name], x, y)
            times[name].append(time.perf_counter() - start)
    print(
        f"torch {torch.__version__}, device {args.device}, {args.threads} threads, batch {args.batch}, "
        f"median of {args.steps} alternating steps"
    )
    median = {name: statistics.median(t) for name, t in times.items()}
    for name in MODELS:
        print(
            f"{name:14s} {1e3 * median[name]:8.1f} ms/step {args.batch / median[name]:8.1f} images/s"
        )
    print(
        f"dit_resnet20 / resnet20 step time: {median['dit_resnet20'] / median['resnet20']:.3f} (target <= 1.2)"
    )


if __name__ == "__main__":
    main()
