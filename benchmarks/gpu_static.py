"""Static check of the Dit Triton kernels, no GPU needed (`python benchmarks/gpu.py --static`).

Compiles every kernel configuration that `ann.layers.dit_triton.tile_config` chooses, at the
benchmark's layer shapes and at every Dit layer shape of the registered models (or of the
models named), for sm_80 and sm_90, in bf16, fp16 and fp32 with TF32 on and off: Triton's
compiler with an explicit GPUTarget, then the ptxas that ships with Triton for registers and
spills. Prints registers, shared memory and spills per kernel and returns non-zero when any
exceeds its target's limits (shared memory per block, 255 registers per thread, 64 K
registers per block) or spills. It also notes where ptxas serializes the sm_90 tensor-core
products (C7515: a wgmma waits for the previous one instead of overlapping it).
"""

import os
import subprocess
import tempfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import torch

# Per-block shared memory (opt-in maximum) and the register file, per architecture.
SHARED_LIMIT = {80: 166_912, 90: 232_448}
REGISTERS_PER_THREAD = 255
REGISTERS_PER_BLOCK = 65_536
PRECISIONS = {  # name: (input dtype, TF32 matmul on)
    "bf16": (torch.bfloat16, False),
    "fp16": (torch.float16, False),
    "fp32-tf32": (torch.float32, True),
    "fp32-ieee": (torch.float32, False),
}
_POINTER = {torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float32: "*fp32"}


@dataclass(frozen=True)
class Compilation:
    """One kernel configuration to compile: what the launcher would pass."""

    kernel: str  # "matmul" or "gram"
    arch: int
    precision: str
    signature: tuple
    constants: tuple
    num_warps: int
    num_stages: int

    def label(self) -> str:
        values = dict(self.constants)
        tiles = "x".join(
            str(values[key])
            for key in ("BLOCK_M", "BLOCK_N", "BLOCK_T", "BLOCK_B", "BLOCK_P")
            if key in values
        )
        extra = " tri" if values.get("TRIANGULAR") else ""
        return f"{tiles} w{self.num_warps} s{self.num_stages}{extra}"


@dataclass(frozen=True)
class Measured:
    compilation: Compilation
    registers: int
    shared: int
    spill_bytes: int
    problems: tuple[str, ...]
    error: str = ""
    serialized: bool = False  # ptxas C7515: a wgmma waits for the previous one (sm_90)


def model_layer_shapes(names: Iterable[str], batch: int = 128) -> set[tuple[int, int, int]]:
    """(C_in, C_out, rows) of every Dit layer of the models, at `batch` images of the models'
    default input size (224^2 for ConvNeXt, 32^2 for the CIFAR models), found by running the
    models on the meta device with the quadratic term replaced by a recorder."""
    from ann.layers.dit_quadratic import DitQuadratic
    from ann.models import create_model, quadratic_layers

    shapes: set[tuple[int, int, int]] = set()

    def record(layer: DitQuadratic, x: torch.Tensor) -> torch.Tensor:
        shapes.add((layer.in_channels, layer.out_channels, x.shape[0] * x.shape[1]))
        return x.new_empty(x.shape[0], x.shape[1], layer.out_channels)

    original = DitQuadratic._quadratic
    DitQuadratic._quadratic = record
    try:
        for name in names:
            with torch.device("meta"):
                model = create_model(name, num_classes=10)
            if not quadratic_layers(model):
                continue
            size = 224 if "convnext" in name else 32
            with torch.no_grad():
                model(torch.empty(batch, 3, size, size, device="meta"))
    finally:
        DitQuadratic._quadratic = original
    return shapes


def compilations(
    shapes: Iterable[tuple[int, int, int]], archs: Iterable[int] = (80, 90)
) -> list[Compilation]:
    """The distinct kernel configurations of the forward pass (packed and full), the input
    gradient and the weight gradient (packed and full) at every shape, arch and precision."""
    from ann.layers import dit_triton as kernels

    found = {}
    for in_channels, out_channels, rows in sorted(set(shapes)):
        for precision, (dtype, tf32) in PRECISIONS.items():
            mode = "tf32" if dtype != torch.float32 or tf32 else "ieee"
            ieee = mode == "ieee"
            x, dot = _POINTER[dtype], _POINTER[kernels.dot_dtype(dtype)]
            launches = []
            for triangular in (True, False):
                cfg = kernels.tile_config(rows, in_channels, out_channels, dtype, "matmul", ieee)
                launches.append(("matmul", (x, x, dot, x), cfg, triangular))
            cfg = kernels.tile_config(rows, in_channels, in_channels, dtype, "matmul", ieee)
            launches.append(("matmul", (x, x, dot, x), cfg, False))  # input gradient
            gram = kernels.tile_config(rows, in_channels, out_channels, dtype, "gram", ieee)
            launches.append(("gram", (x, x, "*i32", "*i32", "*fp32"), gram, None))
            for kind, pointers, cfg, triangular in launches:
                if kind == "matmul":
                    constants = {
                        "TRIANGULAR": triangular,
                        "BLOCK_M": cfg.block_m,
                        "BLOCK_N": cfg.block_n,
                        "BLOCK_T": cfg.block_t,
                        "BLOCK_B": cfg.block_b,
                        "PRECISION": mode,
                    }
                    fn = kernels._pair_matmul_kernel
                else:
                    constants = {
                        "DOT_DTYPE": str(kernels.dot_dtype(dtype)).removeprefix("torch."),
                        "BLOCK_M": cfg.block_m,
                        "BLOCK_N": cfg.block_n,
                        "BLOCK_T": cfg.block_t,
                        "BLOCK_P": cfg.block_b,
                        "PRECISION": mode,
                    }
                    fn = kernels._pair_gram_kernel
                names = fn.arg_names
                types = list(pointers) + ["i32"] * (len(names) - len(pointers) - len(constants))
                signature = tuple(zip(names, types, strict=False))
                for arch in archs:
                    item = Compilation(
                        kind,
                        arch,
                        precision,
                        signature,
                        tuple(constants.items()),
                        cfg.num_warps,
                        cfg.num_stages,
                    )
                    found[item] = None
    return list(found)


def _ptxas() -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")


def compile_one(item: Compilation) -> Measured:
    """Compile with Triton for the item's arch, then read registers and spills from ptxas."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from ann.layers import dit_triton as kernels

    fn = kernels._pair_matmul_kernel if item.kernel == "matmul" else kernels._pair_gram_kernel
    constants = dict(item.constants)
    if "DOT_DTYPE" in constants:
        constants["DOT_DTYPE"] = kernels._TL_DTYPES[getattr(torch, constants["DOT_DTYPE"])]
    signature = dict(item.signature) | {name: "constexpr" for name in constants}
    try:
        compiled = triton.compile(
            ASTSource(fn, signature, constants),
            target=GPUTarget("cuda", item.arch, 32),
            options={"num_warps": item.num_warps, "num_stages": item.num_stages},
        )
    except Exception as error:  # noqa: BLE001 - reported as the item's result
        return Measured(item, 0, 0, 0, ("compilation failed",), f"{type(error).__name__}: {error}")
    gpu = f"sm_{item.arch}a" if item.arch == 90 else f"sm_{item.arch}"
    with tempfile.TemporaryDirectory() as folder:
        ptx = os.path.join(folder, "kernel.ptx")
        with open(ptx, "w") as f:
            f.write(compiled.asm["ptx"])
        result = subprocess.run(
            [_ptxas(), "-lineinfo", "-v", "--regAllocOptLevel=2", f"--gpu-name={gpu}", ptx]
            + ["-o", os.path.join(folder, "kernel.cubin")],  # Triton's own ptxas options
            capture_output=True,
            text=True,
        )
    report = result.stdout + result.stderr
    registers = _number(report, "Used ", " registers")
    spills = _number(report, "bytes stack frame, ", " bytes spill stores")
    spills += _number(report, "bytes spill stores, ", " bytes spill loads")
    shared = int(compiled.metadata.shared)
    problems = []
    if result.returncode != 0:
        problems.append("ptxas failed")
    if shared > SHARED_LIMIT[item.arch]:
        problems.append(f"shared memory {shared} > {SHARED_LIMIT[item.arch]}")
    if registers > REGISTERS_PER_THREAD:
        problems.append(f"{registers} registers > {REGISTERS_PER_THREAD}")
    if registers * 32 * item.num_warps > REGISTERS_PER_BLOCK:
        problems.append(f"{registers} x {32 * item.num_warps} threads > {REGISTERS_PER_BLOCK}")
    if spills:
        problems.append(f"spills {spills} B")
    serialized = "C7515" in report
    return Measured(item, registers, shared, spills, tuple(problems), "", serialized)


def _number(text: str, before: str, after: str) -> int:
    start = text.find(before)
    if start < 0:
        return 0
    start += len(before)
    stop = text.find(after, start)
    return int(text[start:stop].strip()) if stop > start else 0


def run_static(
    shapes: Iterable[tuple[int, int, int]], archs: Iterable[int] = (80, 90), workers: int = 0
) -> list[Measured]:
    """Compile every configuration (in `workers` processes; 0: one per CPU) and print a table."""
    items = compilations(shapes, archs)
    print(f"{len(items)} distinct kernel configurations to compile")
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(compile_one, items))
    print(
        f"{'arch':>5} {'kernel':>6} {'precision':>9} {'tiles (M x N x T x B|P) warps stages':<30}"
        f" {'regs':>5} {'smem B':>7} {'spill B':>7}  verdict"
    )
    for m in sorted(results, key=lambda m: (m.compilation.arch, m.compilation.kernel)):
        c = m.compilation
        verdict = "ok" if not m.problems else "; ".join(m.problems)
        verdict += f" ({m.error})" if m.error else ""
        verdict += " (wgmma serialized: C7515)" if m.serialized else ""
        print(
            f"{'sm_' + str(c.arch):>5} {c.kernel:>6} {c.precision:>9} {c.label():<30}"
            f" {m.registers:>5} {m.shared:>7} {m.spill_bytes:>7}  {verdict}"
        )
    for arch in sorted({m.compilation.arch for m in results}):
        mine = [m for m in results if m.compilation.arch == arch]
        print(
            f"sm_{arch}: {len(mine)} kernels, max {max(m.registers for m in mine)} registers, "
            f"max {max(m.shared for m in mine)} B shared (limit {SHARED_LIMIT[arch]}), "
            f"max {max(m.spill_bytes for m in mine)} B spilled, "
            f"{sum(bool(m.problems) for m in mine)} over a limit, "
            f"{sum(m.serialized for m in mine)} with serialized wgmma"
        )
    return results


def as_records(results: list[Measured]) -> list[dict]:
    return [
        {
            **{k: v for k, v in asdict(m.compilation).items() if k not in ("signature",)},
            "constants": dict(m.compilation.constants),
            "registers": m.registers,
            "shared": m.shared,
            "spill_bytes": m.spill_bytes,
            "problems": list(m.problems),
            "error": m.error,
            "serialized": m.serialized,
        }
        for m in results
    ]
