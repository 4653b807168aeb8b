"""Process memory knobs.

glibc gives each thread that allocates its own malloc arena (up to 8 x cores); a worker's
model threads, ONNX Runtime and librdkafka's threads each fragment their own, and RSS grows
by tens of MB that are never returned. Two arenas measured 183 MB instead of 233 MB for a
worker after the direct-Kafka benchmark at the same throughput (bench/RESULTS.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc malloc arenas for threads started from now on (0: leave the default).

    Call before starting threads. Returns False where it does not apply (not glibc)."""
    if arenas <= 0:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt or no arenas to cap
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_ARENA_MAX, arenas))
    if not ok:
        log.warning("mallopt(M_ARENA_MAX) refused", extra={"arenas": arenas})
    return ok


def trim_heap() -> bool:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``).

    After a burst, glibc keeps the freed memory of its arenas for reuse and RSS stays at the
    burst's peak; a worker calls this once when it turns idle, so an idle worker's RSS reflects
    what it holds, not its busiest second. Returns False where it does not apply (not glibc)."""
    try:
        # The process's own symbol table has libc's: no library lookup (find_library runs
        # ldconfig, a subprocess) on a path that runs every time a worker turns idle.
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim
        return False
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int
    return bool(malloc_trim(0))


def freeze_startup_objects() -> None:
    """Move every object alive now (modules, models, settings, app) out of the collector's reach.

    Why: a full (generation 2) collection walks every tracked object; a server holds hundreds of
    thousands from start-up that live forever, so each full collection under load stalls the event
    loop or the worker for tens of ms, which is what a p99 sees. ``gc.freeze()`` (CPython 3.7+,
    the approach Instagram described for its Django fleet) leaves them out of every later
    collection; objects created while serving are collected as before."""
    gc.collect()
    gc.freeze()
