"""``benchmarks/lm_losses.py --tiny`` (the loss study of issue 12) in a fresh process: every
loss trained from the same student on the same batches, perplexities per seed, the summary's
mean ± std over seeds and the paired differences to the winner."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_tiny_loss_study_prints_per_seed_and_summary():
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "lm_losses.py"), "--tiny", "--threads", "1",
                        "--seeds", "0", "1", "--objectives", "forward_kl", "reverse_kl", "jsd"],
                       check=False, capture_output=True, text=True, timeout=600,
                       env={"PYTHONPATH": f"{REPO / 'src'}", "PATH": ""})
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["tokens"] == out["steps"] * 4 * 16 and out["seeds"] == [0, 1]
    per_seed = {int(s): arms for s, arms in out["per_seed"].items()}
    assert set(per_seed[0]) == {"forward_kl", "reverse_kl", "jsd"}
    # the losses train differently from one start: their perplexities differ
    assert len({round(arm["heldout"], 6) for arm in per_seed[0].values()}) == 3
    summary = out["summary"]["heldout"]
    ppl = {loss: [per_seed[s][loss]["heldout"] for s in (0, 1)] for loss in per_seed[0]}
    for loss, values in ppl.items():
        assert summary["perplexity"][loss]["mean"] == pytest.approx(statistics.fmean(values))
        assert summary["perplexity"][loss]["std"] == pytest.approx(statistics.stdev(values))
    winner = summary["winner"]
    assert winner == min(ppl, key=lambda loss: statistics.fmean(ppl[loss]))
    for loss, paired in summary["paired_difference_to_winner"].items():
        diff = [a - b for a, b in zip(ppl[loss], ppl[winner])]
        assert paired["mean"] == pytest.approx(statistics.fmean(diff))
        assert paired["wins_every_seed"] == all(d > 0 for d in diff)
