"""``benchmarks/sandwich_step.py --tiny`` in a fresh process: the JSON it prints times
the default grid's sandwich step with both paddings."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO, require_glue


def test_sandwich_step_benchmark_prints_both_paddings(tmp_path):
    glue = require_glue()
    p = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "sandwich_step.py"), "--tiny", "--threads", "1",
         "--data-dir", str(glue)],
        cwd=tmp_path, capture_output=True, text=True, timeout=900, env={"PYTHONPATH": f"{REPO / 'src'}", "PATH": ""},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["candidates"] == [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95]  # the default grid above the truncation
    for variant in ("dynamic_padding", "padded_to_128", "sandwich_rule_k0_dynamic_padding"):
        timing = out["seconds_per_step"][variant]
        assert timing["steps"] == 1 and 0 < timing["min_s"] <= timing["median_s"]
    assert out["official_seconds_per_step"] == 3.12 and out["ratio_to_official"] is None  # tiny: not comparable
