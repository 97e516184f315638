"""When the C allocator gives freed memory back to the system (issue 13, part 3).

On Linux, torch's CPU tensors (and CPython's larger objects) come from glibc's
``malloc``. glibc keeps freed heap chunks resident for reuse and hands out buffers
below its *mmap threshold* from that heap; the threshold starts at 128 KiB and rises
(up to 32 MiB) each time a mapped buffer is freed, so after the first training step
nearly every activation comes from the heap. Activations change size with every batch
(dynamic padding) and with every candidate sub-network, so freed chunks rarely fit the
next request and the heap grows: measured on ``minidisc demo``'s sandwich stage, 1.2 GB is
live but 2.0–2.5 GB is resident (docs/minidisc.md, "Cost").

:func:`use_low_memory_allocator` fixes the threshold (which also stops it rising):
every buffer of at least that size gets its own mapping, returned to the system the
moment it is freed. The price is page faults when such a buffer is mapped again, so
the lower the threshold the less memory and the more time. :func:`release_free_memory`
returns the free pages the heap holds (``malloc_trim``); a run calls it between
stages, so a stage's measured peak does not carry its predecessor's freed memory.

Neither changes any computed value: weights and metrics are bit-identical; only the
memory and time figures move. Where the C library is not glibc (macOS, Windows, musl)
both do nothing, and ``--low-memory`` says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["LOW_MEMORY_MMAP_THRESHOLD", "allocator_name", "release_free_memory", "use_low_memory_allocator"]

#: glibc's ``mallopt`` parameter number of the mmap threshold (``M_MMAP_THRESHOLD``, malloc.h).
_M_MMAP_THRESHOLD = -3
#: Bytes; docs/minidisc.md ("Cost") gives the thresholds measured on the demo (only 1 MiB got it under 1.5 GB).
LOW_MEMORY_MMAP_THRESHOLD = 1 << 20

_state = {"threshold": None}


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (it has ``gnu_get_libc_version``), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not all(hasattr(libc, f) for f in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    return libc


def use_low_memory_allocator(threshold_bytes: int = LOW_MEMORY_MMAP_THRESHOLD) -> bool:
    """Serve every buffer of ``threshold_bytes`` or more from its own mapping, freed to
    the system at once, and give back the free pages the heap holds now.

    Call it before the work whose peak matters (a command calls it at its start); it
    applies to the whole process until it ends.

    Args:
        threshold_bytes: the fixed mmap threshold in bytes (glibc caps it at 32 MiB).

    Returns:
        True when set; False where the C library is not glibc (nothing changed).

    Raises:
        ValueError: ``threshold_bytes`` not in [4 KiB, 32 MiB].
    """
    if not 4096 <= threshold_bytes <= 32 << 20:
        raise ValueError(f"the mmap threshold must be between 4 KiB and 32 MiB, got {threshold_bytes} bytes")
    libc = _glibc()
    if libc is None or libc.mallopt(_M_MMAP_THRESHOLD, int(threshold_bytes)) != 1:
        return False
    _state["threshold"] = int(threshold_bytes)
    release_free_memory()
    return True


def release_free_memory() -> None:
    """Give the free pages glibc's heaps hold back to the system (``malloc_trim(0)``);
    nothing elsewhere. Costs milliseconds; the pages are faulted in again when reused."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def allocator_name() -> str:
    """How this process allocates, for a report next to its memory figures:
    ``"glibc, mmap threshold 1 MiB"`` (low-memory), ``"glibc"`` or ``"system"``."""
    if _glibc() is None:
        return "system"
    threshold = _state["threshold"]
    return "glibc" if threshold is None else f"glibc, mmap threshold {threshold / (1 << 20):g} MiB"
