"""Peak RSS per stage (issue 13, part 3): each stage's own peak, recorded in the manifest and the report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from minidisc.compute.memory import peak_memory
from minidisc.config import CompressConfig
from minidisc.runfolder.run import RunDir

BIG = 256 * 1024 * 1024  # bytes, far above the interpreter's own noise


def _touch(n_bytes: int) -> torch.Tensor:
    return torch.ones(n_bytes // 4)  # written, so every page is resident


def test_a_block_that_allocates_reports_at_least_what_it_held() -> None:
    with peak_memory() as peak:
        held = _touch(BIG)
        del held
    assert peak.peak_rss_mb is not None and peak.peak_rss_mb >= BIG / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the per-stage reset is Linux's /proc")
def test_the_next_block_does_not_inherit_the_previous_peak() -> None:
    with peak_memory() as first:
        held = _touch(BIG)
        del held  # a block this large is unmapped at once, so the RSS falls back
    with peak_memory() as later:
        pass
    assert later.scope == "stage"
    assert later.peak_rss_mb < first.peak_rss_mb - BIG / 2**20 / 2


def test_every_stage_entry_records_its_peak(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run", CompressConfig(), "compress")
    entry = run.stage("big", lambda tmp: {"n": len(_touch(BIG))})
    small = run.stage("small", lambda tmp: {})
    assert entry["peak_rss_mb"] >= BIG / 2**20
    assert small["peak_rss_scope"] in ("stage", "process")
    if small["peak_rss_scope"] == "stage":
        assert small["peak_rss_mb"] < entry["peak_rss_mb"]
