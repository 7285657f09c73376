"""Freed memory kept in the process by glibc's allocator, so that a CPU training step reuses
the pages of the last one instead of faulting in fresh ones.

By default glibc's malloc maps every large block (above a threshold that adapts up to
32 MiB) straight from the kernel and unmaps it on free, and it returns the free top of its
heap to the kernel once that exceeds twice the threshold. A training step allocates and
frees its activations (8 MiB each in the first stage of a CIFAR ResNet at batch 128), so
every step faulted them in again: 1,000-45,000 minor page faults and up to 110 ms of system
time per (Dit-)ResNet-20 step on a 2-core VM. PyTorch's CPU allocator has no cache of its own; its
performance guide suggests jemalloc or tcmalloc. `retain_freed_memory` reaches the same
effect with glibc's own `mallopt`: blocks up to 32 MiB come from the heap, and the heap
is not trimmed below 1 GiB of free memory. It changes no result, only where memory comes
from."""

import ctypes
import platform

__all__ = ["retain_freed_memory"]

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's largest on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD_BYTES = 2**30


def retain_freed_memory() -> bool:
    """Keep freed memory in this process (glibc only); True when the allocator took it."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
