"""``benchmarks/precision_numerics.py --tiny`` in a fresh process: fp32 seeds and a bf16
run of a tiny compress, the JSON it prints and its arithmetic."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest

from tests.helpers import REPO


def test_precision_numerics_tiny_prints_the_spread_and_the_bf16_runs(tmp_path):
    p = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "precision_numerics.py"), "--tiny", "--seeds", "1", "2",
         "--bf16-seeds", "1", "--threads", "1", "--output", str(tmp_path / "runs")],
        cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert [(r["precision"], r["seed"]) for r in out["runs"]] == [("fp32", 1), ("fp32", 2), ("bf16", 1)]
    assert [r["ran_as"] for r in out["runs"]] == [["fp32 on cpu"], ["fp32 on cpu"], ["bf16 on cpu"]]
    student = out["summary"]["student"]
    fp32 = [r["student"] for r in out["runs"] if r["precision"] == "fp32"]
    assert student["fp32_mean"] == pytest.approx(statistics.fmean(fp32)) and student["bf16"] == [out["runs"][2]["student"]]
    assert student["within_fp32_range"] == (min(fp32) <= out["runs"][2]["student"] <= max(fp32))
    assert student["informative"] == (max(fp32) > min(fp32))
    assert out["device"] == "cpu" and out["tiny"] is True
