"""runtime.memory.trim_heap: returns freed heap to the OS on glibc, a no-op elsewhere."""

from __future__ import annotations

import platform

import pytest

from runtime.memory import trim_heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_trim_heap_releases_freed_memory_on_glibc() -> None:
    # Many small blocks freed together leave the top of the heap free; malloc_trim returns 1
    # when it released something.
    blocks = [bytearray(4096) for _ in range(20_000)]
    del blocks
    assert trim_heap() is True
