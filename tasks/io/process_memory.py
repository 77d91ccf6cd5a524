"""This process's memory as the kernel counts it: for the scan's per-block log and the bench.

``ru_maxrss`` alone only ever rises, so it cannot tell a steady climb from one block's peak;
``VmRSS`` (the resident set now) can. Linux only: elsewhere the current figure is the peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_STATUS = Path("/proc/self/status")


@dataclass(frozen=True)
class Memory:
    rss_mib: int  # resident now
    peak_mib: int  # the highest resident set so far (ru_maxrss)


def memory() -> Memory:
    """The resident set now and its peak so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux
    try:
        lines = _STATUS.read_text().splitlines()
    except OSError:
        return Memory(peak, peak)
    current = next((int(x.split()[1]) // 1024 for x in lines if x.startswith("VmRSS:")), peak)
    return Memory(current, peak)


def release_free_memory() -> None:
    """Hand the heap's free pages back to the kernel (glibc ``malloc_trim``).

    Why: freed memory stays in this process's heap, so the resident set keeps every chunk's
    high-water mark; with fragmentation it climbs chunk after chunk although nothing is kept.
    A no-op where the C library has no ``malloc_trim`` (musl, macOS).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def release_cyclic_garbage() -> int:
    """Free what only reference cycles keep alive, then hand the freed pages back; objects freed.

    Why: Great Expectations' validation leaves its pandas copy of a block (tens of MiB of
    abstracts, in Arrow buffers) inside reference cycles, as Prefect's engine leaves call
    objects. Only a full collection frees a cycle, and with the model, Prefect and pandas
    loaded the heap is so large that Python's own full collections come many blocks apart:
    the resident set climbed ~40 MiB per 20,000-row block, then fell all at once. A full
    collection costs ~0.7 s on two cores, so the scan calls this between blocks, not per chunk.
    """
    freed = gc.collect()
    release_free_memory()
    return freed


_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
_MMAP_FROM_BYTES = 1 << 20


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, after fixing the mmap threshold once for the process.

    glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB), so
    after the first batch the embedder's tensors (a few MiB each, another shape every batch)
    come from the heap and fragment it. A fixed threshold keeps every block of 1 MiB or more in
    its own mapping, returned to the kernel when freed.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    trim: Callable[[int], int] | None = getattr(libc, "malloc_trim", None)
    mallopt = getattr(libc, "mallopt", None)
    if trim is not None and mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _MMAP_FROM_BYTES)
    return trim
