"""``benchmarks/sandwich_step.py --tiny`` in a fresh process: the JSON it prints times
the paper's sandwich step (every candidate of the default grid) with both paddings, and
the default rule's step."""

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
    assert out["candidates"] == [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95]  # the paper's: the grid above 0.5
    assert out["default_rule_candidates"] == [0.6, 0.7, 0.8, 0.85, 0.9]  # today's: K = 0 from 0.3 below the target
    assert out["default_rule_sandwich_samples"] == 0
    for variant in ("dynamic_padding", "padded_to_128", "default_rule_dynamic_padding"):
        timing = out["seconds_per_step"][variant]
        assert timing["steps"] == 1 and 0 < timing["min_s"] <= timing["median_s"]
    assert out["official_seconds_per_step"] == 3.12 and out["ratio_to_official"] is None  # tiny: not comparable
