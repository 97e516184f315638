"""The low-memory allocator setting (issue 13, part 3): freed tensor buffers go back to the
system, and a command run with ``--low-memory`` records it beside its peak memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from minidisc.compute.allocator import LOW_MEMORY_MMAP_THRESHOLD, allocator_name, use_low_memory_allocator
from tests.helpers import run_minidisc, write_tiny_bert

glibc_only = pytest.mark.skipif(allocator_name() == "system", reason="the setting is glibc's (Linux)")

# Each run is a fresh process: the setting holds for the whole process. It allocates 1.5 MiB
# buffers (between the low-memory threshold and the 16 MiB one glibc rises to after the
# first big free), each followed by a small long-lived one that pins the heap, frees the
# big ones and prints how much of them stayed resident (MiB).
_RETAINED = textwrap.dedent("""
    import sys, torch
    from minidisc.compute.allocator import use_low_memory_allocator
    def rss():
        return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS:")).split()[1]) / 1024
    if sys.argv[1] == "low":
        assert use_low_memory_allocator()
    torch.ones(4 << 20).sum(); big, pins = [], []
    before = rss()
    for _ in range(100):
        big.append(torch.ones(3 << 17)); pins.append(torch.ones(64))
    del big
    print(rss() - before)
""")


def _retained_mib(mode: str) -> float:
    p = subprocess.run([sys.executable, "-c", _RETAINED, mode], capture_output=True, text=True, check=False, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return float(p.stdout.strip())


@glibc_only
def test_low_memory_gives_freed_buffers_back_and_the_default_keeps_them() -> None:
    # 100 × 1.5 MiB were written: the default allocator keeps most of them resident
    assert _retained_mib("default") > 100
    assert _retained_mib("low") < 20


def test_an_impossible_threshold_is_refused_before_anything_changes() -> None:
    with pytest.raises(ValueError, match="between 4 KiB and 32 MiB"):
        use_low_memory_allocator(64 << 20)
    assert "mmap threshold" not in allocator_name()


@glibc_only
def test_a_command_run_with_low_memory_records_it_beside_each_peak(tmp_path) -> None:
    """``minidisc distill --low-memory`` in a fresh process: every stage's peak names the
    allocator it was measured under; without the flag, the default allocator."""
    from minidisc.fileio import read_json
    from tests.helpers import write_tiny_sst2

    teacher, glue = write_tiny_bert(tmp_path / "teacher"), write_tiny_sst2(tmp_path / "glue")
    common = ("--teacher", str(teacher), "--task", "sst2", "--data-dir", str(glue),
              "--sparsity", "0.5", "--grid", "0,0.5", "--epochs", "1", "--batch-size", "8", "--max-length", "16",
              "--seed", "1")
    for flag, expected in (("--low-memory", f"glibc, mmap threshold {LOW_MEMORY_MMAP_THRESHOLD >> 20} MiB"),
                           ("--no-low-memory", "glibc")):
        out = tmp_path / flag.strip("-")
        p = run_minidisc("distill", *common, flag, "-o", str(out), cwd=tmp_path)
        assert p.returncode == 0, p.stderr[-3000:]
        stages = read_json(out / "manifest.json")["stages"]
        assert stages and {s["peak_rss_allocator"] for s in stages.values()} == {expected}


def test_every_command_with_a_precision_has_the_allocator_setting() -> None:
    """``--low-memory`` is a process setting, as ``--precision`` is: wherever one is, so is
    the other (the training, scoring and evaluation commands)."""
    import typer

    from minidisc.cli import app

    commands = typer.main.get_command(app).commands
    with_precision = {name for name, command in commands.items()
                      if any("--precision" in param.opts for param in command.params)}
    assert {"finetune", "sparsify", "pretrain", "evaluate-lm", "compress", "demo", "distill"} <= with_precision
    for name in with_precision:
        assert any("--low-memory" in param.opts for param in commands[name].params), name
