"""The GPU benchmark script runs (at toy size on the CPU), and refuses plainly without CUDA."""

import json
import os
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


def _without_interpreter() -> dict:
    """The environment of a process that compiles the kernels (conftest sets the interpreter)."""
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    return env


@pytest.mark.slow
def test_static_check_compiles_the_default_models_kernels_within_limits(tmp_path):
    """`gpu.py --static` for the Dit layers of the default CIFAR model and of Dit-ConvNeXt-T:
    every tile_config choice compiled for sm_80 and sm_90 (Triton and ptxas, no GPU), none
    over the shared memory or register limits, none spilling."""
    report = tmp_path / "static.json"
    result = subprocess.run(
        [sys.executable, GPU_SCRIPT, "--static", "--models", "dit_resnet20", "dit_convnext_tiny"]
        + ["--json", str(report)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_without_interpreter(),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = json.loads(report.read_text())
    kinds = {(r["arch"], r["kernel"], r["precision"]) for r in records}
    precisions = ("bf16", "fp16", "fp32-tf32", "fp32-ieee")
    wanted = {(a, k, p) for a in (80, 90) for k in ("matmul", "gram") for p in precisions}
    assert kinds == wanted
    assert not any(r["problems"] for r in records)
    assert all(0 < r["registers"] <= 255 and r["spill_bytes"] == 0 for r in records)
    c96 = [r for r in records if r["constants"]["BLOCK_N"] == 64 and r["constants"]["BLOCK_T"]]
    assert c96 and all(r["shared"] <= 232_448 for r in records)  # C = O = 96: 64 + 32 columns


@pytest.mark.slow
def test_static_check_flags_a_kernel_over_the_limits():
    """The check can fail: bf16 weight-gradient tiles of 64 rows x 128 pairs on four warps
    spill on sm_80 (where tile_config takes eight warps and 32 rows), and it says so."""
    script = (
        "import sys; sys.path.insert(0, 'benchmarks'); import gpu_static as g\n"
        "item = [i for i in g.compilations({(96, 96, 10**5)}, (80,)) if i.kernel == 'gram'"
        " and i.precision == 'bf16'][0]\n"
        "constants = dict(item.constants) | {'BLOCK_M': 64, 'BLOCK_P': 128}\n"
        "big = g.Compilation('gram', 80, item.precision, item.signature,"
        " tuple(constants.items()), 4, 1)\n"
        "print(g.compile_one(big).problems)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_without_interpreter(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "spills" in result.stdout


def test_gpu_benchmark_reports_a_failed_section_and_goes_on(capsys):
    """A section that raises (a Triton error, say) is reported with its error; the next one
    runs, and the targets table says the failed section's target was not measured."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_benchmark", GPU_SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def broken() -> None:
        raise RuntimeError("OutOfResources: shared memory, Required: 295936")

    assert not bench.run_section("1", ("layer",), broken)
    assert bench.run_section("3", ("resnet",), lambda: bench.TARGETS.set("resnet", "4.1 ms", True))
    out = capsys.readouterr().out
    assert "section 1 failed: RuntimeError: OutOfResources" in out
    rows = {r["target"]: r for r in bench.TARGETS.records()}
    layer = rows["Dit layer fwd+bwd (96, 56^2, 128) bf16, packed"]
    assert layer["verdict"] == "not measured" and "OutOfResources" in layer["measured"]
    assert rows["compiled Dit-ResNet-20 train step"]["verdict"] == "met"
    assert rows["Fashion-MNIST training images/s"]["verdict"] == "not measured"


def test_layer_flops_count_what_each_implementation_runs():
    """The packed kernels: C(C+1)/2 pairs in forward and weight gradient, all C^2 in the input
    gradient; full: C^2 three times (2 flops a multiply-add, C_out = C)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_benchmark", GPU_SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.layer_flops("triton packed", 4, 10) == 2 * 10 * (2 * 10 + 16) * 4
    assert bench.layer_flops("triton full", 4, 10) == 2 * 10 * 48 * 4
