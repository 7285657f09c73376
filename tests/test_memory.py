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
    """glibc's default maps and faults in the 320 MiB afresh every round; with freed memory
    retained, the last round reuses (nearly all) the pages of the first."""
    pages = 40 * 8 * 2**20 // resource.getpagesize()
    default, retained = rounds("glibc"), rounds("retain")
    assert not default["retained"] and retained["retained"]
    assert default["faults"][-1] > 0.5 * pages
    assert retained["faults"][-1] < 0.1 * pages  # one 8 MiB tensor (2,048 pages) seen under load
