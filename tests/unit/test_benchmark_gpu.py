"""``benchmarks/gpu.py --tiny`` in a fresh process (what CI runs of the GPU benchmark):
step times per precision, the stage times of a 1-epoch compress, and the inference
speed-ups of the default map's students and of the students built for the GPU, printed
as JSON."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO, require_glue


def test_gpu_benchmark_tiny_prints_every_measurement(tmp_path):
    glue = require_glue()
    p = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--tiny", "--data-dir", str(glue)],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
        env={"PYTHONPATH": f"{REPO / 'src'}", "PATH": "", "OMP_NUM_THREADS": "1"},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["device"] == "cpu" and set(out["step_ms"]) == {"fp32", "bf16"}  # no tf32 without a GPU
    for steps in out["step_ms"].values():
        assert set(steps) == {"finetune", "direct_kd", "sandwich", "sandwich_default_rule"}
        assert all(s["steps"] == 1 and 0 < s["min_ms"] <= s["median_ms"] for s in steps.values())
    compress = out["compress_1_epoch_mrpc"]
    assert compress["precision"] == "fp32"  # auto on a CPU
    assert {"teacher", "sparsified", "iter1", "student"} <= set(compress["stages_s"])
    rows = out["inference"]["students"]
    assert [r["sparsity"] for r in rows] == [0.0, 0.5, 0.9, 0.95]
    assert rows[0]["speedup"] == 1.0 and rows[0]["flops_ratio"] == 1.0
    ratios = [r["flops_ratio"] for r in rows]
    assert ratios == sorted(ratios) and ratios[-1] > 5  # sparser students need fewer FLOPs

    # built for the GPU: every fraction × depth cut, within its FLOPs, the width aligned
    built = out["inference"]["built_for_gpu"]
    assert {(r["flops_fraction"], r["drop_layers"]) for r in built} == {(f, d) for f in (0.1, 0.05) for d in (0, 1)}
    for r in built:
        assert r["flops_ratio"] >= 1 / r["flops_fraction"] - 0.01 and r["hidden"] % 8 == 0
        assert r["layers"] == 2 - r["drop_layers"]
    bars = out["inference"]["bars"]
    assert set(bars) == {"0.1", "0.05"} and (bars["0.1"]["bar"], bars["0.05"]["bar"]) == (5.0, 8.0)
    assert all(b["best_speedup"] == max(r["speedup"] for r in built if r["flops_fraction"] == float(f))
               for f, b in bars.items())
