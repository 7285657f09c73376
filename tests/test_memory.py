import platform
import resource

import torch

from ann.engine import retain_freed_memory

MIB = 2**20


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def allocate_and_free(blocks: int, block_bytes: int) -> int:
    """Minor page faults of filling `blocks` fresh tensors and freeing them all."""
    before = minor_faults()
    tensors = [torch.ones(block_bytes // 4) for _ in range(blocks)]
    del tensors
    return minor_faults() - before


def test_freed_memory_is_reused_without_page_faults():
    """A training step frees its activations and allocates them again: with freed memory
    retained, the second and later rounds reuse the pages of the first (glibc's default maps
    and faults in all 80,000 pages of 320 MiB every round)."""
    if platform.libc_ver()[0] != "glibc":
        assert not retain_freed_memory()
        return
    assert retain_freed_memory()
    pages = 40 * 8 * MIB // resource.getpagesize()
    allocate_and_free(40, 8 * MIB)
    allocate_and_free(40, 8 * MIB)
    assert allocate_and_free(40, 8 * MIB) < 0.01 * pages
