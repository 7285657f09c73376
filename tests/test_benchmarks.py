"""The GPU benchmark script runs (at toy size on the CPU), and refuses plainly without CUDA."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
GPU_SCRIPT = ROOT / "benchmarks" / "gpu.py"


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_gpu_benchmark_says_it_needs_cuda():
    result = subprocess.run([sys.executable, GPU_SCRIPT], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert "needs a CUDA device" in result.stdout


@pytest.mark.slow
def test_gpu_benchmark_smoke_runs_every_section():
    result = subprocess.run(
        [sys.executable, GPU_SCRIPT, "--smoke"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for heading in (
        "1. Dit quadratic layer",
        "2. ConvNeXt",
        "3. ResNet-20",
        "4. python -m ann.train",
    ):
        assert heading in out
    assert "chunked" in out and "formula" in out
    assert "dit_convnext_tiny / convnext_tiny" in out
    assert "training images/s, last epoch" in out and "target >= 25,000" in out
