"""Peak resident memory (RSS) of one stage of a run.

A run folder records, beside each stage's wall time, the most physical memory the
process held while the stage ran, so that a report can say which stage sets a run's
peak (issue 13, part 3). On Linux the kernel's high-water mark ``VmHWM`` is reset to
the current RSS at the start of a stage (writing ``5`` to ``/proc/self/clear_refs``) and
read at its end: a per-stage peak. Where the mark cannot be reset (other systems,
restricted containers) the figure is the peak of the whole process so far
(``getrusage``), recorded with ``scope="process"`` so that nobody reads it as the stage's.

Only the calling process is measured (data-loader workers and other ranks are not).
The reset also lowers what the kernel reports as the process's own peak afterwards
(``getrusage``'s ``ru_maxrss``, GNU ``time -v``'s "Maximum resident set size": the peak
since the last stage began); the run's peak is the largest stage peak, which the
reports give.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from minidisc.compute.allocator import allocator_name, release_free_memory

__all__ = ["PeakMemory", "peak_memory"]

MiB = 1024 * 1024
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass
class PeakMemory:
    """The peak RSS of a stage, filled in when :func:`peak_memory`'s block ends.

    ``peak_rss_mb``: MiB (2**20 bytes); ``scope``: ``"stage"`` when the peak was reset
    at the stage's start, ``"process"`` when it is the process's peak since it started;
    ``allocator``: how the process allocated (:func:`~minidisc.compute.allocator.allocator_name`),
    which sets much of the figure.
    """

    peak_rss_mb: float | None = None
    scope: str = "stage"
    allocator: str | None = None

    def to_dict(self) -> dict[str, float | str | None]:
        return {"peak_rss_mb": self.peak_rss_mb, "peak_rss_scope": self.scope, "peak_rss_allocator": self.allocator}


@contextmanager
def peak_memory() -> Iterator[PeakMemory]:
    """Measure the peak RSS of the block (see the module docstring for the scope).

    The free pages the allocator holds are returned first, so that the block's peak
    does not carry memory its predecessors freed."""
    release_free_memory()
    peak = PeakMemory(scope="stage" if _reset_high_water_mark() else "process", allocator=allocator_name())
    try:
        yield peak
    finally:
        peak.peak_rss_mb = _high_water_mark_mb() if peak.scope == "stage" else _process_peak_mb()


def _reset_high_water_mark() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS; False where impossible."""
    try:
        _CLEAR_REFS.write_text("5")
        return _high_water_mark_mb() is not None
    except OSError:
        return False


def _high_water_mark_mb() -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # the kernel writes kB
    except OSError:
        return None
    return None


def _process_peak_mb() -> float | None:
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MiB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux
