"""The scan's memory helpers against the real C library and kernel counters."""

import ctypes
import ctypes.util
import gc
import weakref

import pytest

from tasks.io.process_memory import memory, release_cyclic_garbage, release_free_memory

_BLOCK = 64 * 1024  # below glibc's default mmap threshold too: these come from the heap
_BLOCKS = 1600  # 100 MiB, half of it freed as holes


def test_the_peak_is_never_below_the_resident_set():
    used = memory()
    assert 0 < used.rss_mib <= used.peak_mib


@pytest.mark.skipif(ctypes.util.find_library("c") is None, reason="no C library to call")
def test_freed_heap_memory_goes_back_to_the_kernel():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "malloc_trim"):
        pytest.skip("not glibc: nothing to trim")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    release_free_memory()
    blocks = [libc.malloc(_BLOCK) for _ in range(_BLOCKS)]
    for block in blocks:
        ctypes.memset(block, 1, _BLOCK)  # resident, not only reserved
    for block in blocks[::2]:  # holes between blocks in use: free() alone cannot shrink the heap
        libc.free(block)
    before = memory().rss_mib
    release_free_memory()
    after = memory().rss_mib
    for block in blocks[1::2]:
        libc.free(block)
    assert before - after >= 40, (before, after)


class _Node:
    """An object in a reference cycle with itself, holding a buffer."""

    def __init__(self, size: int):
        self.buffer = bytearray(size)
        self.me = self


def test_memory_only_a_cycle_keeps_is_freed():
    gc.disable()  # no automatic collection may free it first
    try:
        node = _Node(32 * 1024 * 1024)
        alive = weakref.ref(node)
        del node
        assert alive() is not None  # reference counting alone never frees a cycle
        freed = release_cyclic_garbage()
    finally:
        gc.enable()
    assert alive() is None and freed >= 2  # the node and its __dict__
