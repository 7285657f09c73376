"""`make gpu-check`: everything a machine with a CUDA GPU should check, ending in one table.

    python benchmarks/gpu_check.py [--json gpu-check.json] [--quick]

1. The `gpu`-marked tests (the compiled kernels at real sizes in bf16, fp16, fp32 with TF32
   on and off; the augmentation without host syncs; ...). Test files that cannot be imported
   here (ann.train's tests need pandas and xarray) are reported, the others run.
2. `benchmarks/gpu.py --static`: every kernel configuration compiled for sm_80 and sm_90,
   registers, shared memory and spills within limits.
3. `benchmarks/gpu.py` (all sections, or sections 1 and 3 with --quick), its targets table.

It ends with one table: every target, its measured value, met / NOT met / not measured, and
writes that table as JSON (--json). It needs torch, Triton and timm (with its torchvision and
PyYAML) and pytest: no snakemake, brian2, xarray or the workflow. Section 4 of the benchmark
runs ann.train, which writes its metrics with pandas; without pandas that one target reads
"not measured" with the reason. The exit status is 0 when every
target is met, 1 otherwise (not measured included).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPU_TEST_FILES = [
    "tests/test_quadratic_kernels.py",
    "tests/test_data.py",
    "tests/test_imagenet_gpu.py",
    "tests/test_train.py",
    "tests/test_recipes.py",
]


def run(command: list[str], env: dict | None = None) -> tuple[int, str]:
    """Run a command from the repository root, echoing its output; (status, output)."""
    print("$ " + " ".join(command), flush=True)
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    return process.wait(), "".join(lines)


def pytest_row(status: int, output: str) -> dict[str, str]:
    counts = dict(
        (word, int(number))
        for number, word in re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected)", output)
    )
    errors = counts.get("error", 0) + counts.get("errors", 0)
    measured = (
        f"{counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed, "
        f"{errors} errors, {counts.get('skipped', 0)} skipped"
    )
    ran = counts.get("passed", 0) + counts.get("failed", 0)
    met = status == 0 and ran > 0
    state = "met" if met else ("not measured" if ran == 0 else "NOT met")
    return {
        "target": "gpu-marked tests",
        "required": "all pass",
        "measured": measured,
        "verdict": state,
    }


def static_row(status: int, output: str) -> dict[str, str]:
    found = re.search(r"static check: (\d+) compilations, (\d+) over a limit", output)
    measured = f"{found[1]} kernels, {found[2]} over a limit" if found else "did not finish"
    state = "met" if status == 0 and found else ("NOT met" if found else "not measured")
    return {
        "target": "kernels within sm_80/sm_90 limits (--static)",
        "required": "0 over a limit",
        "measured": measured,
        "verdict": state,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("gpu-check.json"))
    parser.add_argument("--quick", action="store_true", help="benchmark sections 1 and 3 only")
    args = parser.parse_args()
    python = sys.executable
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)  # compiled kernels, not the interpreter
    # ann from this checkout, installed or not
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    rows = []
    status, output = run(
        [
            python,
            "-m",
            "pytest",
            "-m",
            "gpu",
            "-q",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            *GPU_TEST_FILES,
        ],
        env,
    )
    rows.append(pytest_row(status, output))
    status, output = run([python, "benchmarks/gpu.py", "--static"], env)
    rows.append(static_row(status, output))
    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / "targets.json"
        sections = ["--sections", "13"] if args.quick else []
        status, output = run([python, "benchmarks/gpu.py", "--json", str(table), *sections], env)
        if table.is_file():
            rows += json.loads(table.read_text())
        else:
            rows.append(
                {
                    "target": "benchmarks/gpu.py",
                    "required": "runs",
                    "measured": f"exit status {status}",
                    "verdict": "not measured",
                }
            )
    width = max(len(r["target"]) for r in rows)
    print("\ngpu-check")
    print(f"   {'target':<{width}}  {'required':<20} {'measured':<40} verdict")
    for r in rows:
        print(
            f"   {r['target']:<{width}}  {r['required']:<20} {r['measured'][:70]:<40} "
            f"{r['verdict']}"
        )
    args.json.write_text(json.dumps(rows, indent=1))
    print(f"(written to {args.json})")
    return 0 if all(r["verdict"] == "met" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
