"""The process's memory: freed large buffers go back to the system at once (glibc), so that the resident size of a
long upscale follows what it holds, not what it once held; and how much the system can still give."""

from __future__ import annotations

import ctypes
import sys

#: glibc's mallopt parameter for the size from which an allocation gets its own mapping
_M_MMAP_THRESHOLD = -3
#: 4 MiB: buffers of a tile and larger are mapped on their own and unmapped when freed
LARGE_BUFFER = 4 << 20


def release_large_buffers() -> None:
    """Serve allocations of :data:`LARGE_BUFFER` and more from their own mappings, unmapped when freed.

    By default glibc raises that threshold after each large free (up to 32 MiB) and then serves such buffers from
    its heap, which it seldom returns: tile after tile, the resident size climbs by hundreds of MB of freed memory
    (a 1000x1000 upscale, torch backend: peak 784 MB by default, 539 MB with this). The upscaling commands call it;
    ``MALLOC_MMAP_THRESHOLD_=4194304`` in the environment does the same for any Python process. Elsewhere than
    Linux with glibc it does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl and others: their own allocator, without this parameter
        return
    libc.mallopt(_M_MMAP_THRESHOLD, LARGE_BUFFER)


def available_memory() -> int | None:
    """Bytes of memory the system can give this process now without swapping (Linux: ``MemAvailable``), or None
    where that is not known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
