import json
import platform
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Three rounds of filling 40 fresh 8 MiB tensors and freeing them all, as a training step
# frees its activations and allocates them again; prints each round's minor page faults.
ROUNDS = """
import importlib.util, json, resource, sys
import torch
spec = importlib.util.spec_from_file_location("memory", sys.argv[1])
memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory)
retained = sys.argv[2] == "retain" and memory.retain_freed_memory()
if sys.argv[2] == "unmap":  # glibc's starting threshold, fixed: it no longer adapts upwards
    import ctypes
    ctypes.CDLL(None).mallopt(memory.M_MMAP_THRESHOLD, 128 * 1024)
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tensors = [torch.ones(2 * 2**20) for _ in range(40)]
    del tensors
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"retained": retained, "faults": faults}))
"""


def rounds(allocator: str) -> dict:
    command = [sys.executable, "-c", ROUNDS, str(ROOT / "ann/engine/memory.py"), allocator]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_freed_memory_is_reused_without_page_faults():
    """With glibc unmapping large blocks on free, the 320 MiB are faulted in afresh every
    round; with freed memory retained, the last round reuses (nearly all) the pages of the
    first. glibc's default threshold starts at 128 KiB and adapts upwards as mapped blocks are
    freed, so what its untouched default does varies between runs (2,048 to 81,920 faults in
    round 3 seen here); the comparison fixes it at its start."""
    pages = 40 * 8 * 2**20 // resource.getpagesize()
    unmapping, retained = rounds("unmap"), rounds("retain")
    assert not unmapping["retained"] and retained["retained"]
    assert unmapping["faults"][-1] > 0.5 * pages
    assert retained["faults"][-1] < 0.1 * pages  # one 8 MiB tensor (2,048 pages) seen under load
