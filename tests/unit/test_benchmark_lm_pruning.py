"""``benchmarks/lm_pruning.py`` in a fresh process on a tiny random LLaMA and toy text:
the JSON it prints (teacher, pruned per estimator and seed, students) and its arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO


def test_lm_pruning_benchmark_prints_its_measurements(tmp_path):
    from tests.pretrain_helpers import write_corpus, write_decoder_teacher

    write_decoder_teacher(tmp_path / "teacher", layers=2)
    write_corpus(tmp_path / "train.txt", lines=120)
    write_corpus(tmp_path / "eval.txt", lines=30, seed=1)
    p = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "lm_pruning.py"), "--teacher", "teacher", "--corpus", "train.txt",
         "--heldout", "eval.txt", "--heldout-tokens", "200", "--seeds", "0", "1", "--calibration-blocks", "4",
         "--block-size", "16", "--sparsity", "0.25", "--student", "teacher", "--threads", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env={"PYTHONPATH": f"{REPO / 'src'}", "PATH": ""},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    teacher = out["teacher_perplexity"]["eval.txt"]
    assert 1 < teacher < 10_000 and set(out["pruned"]) == {"activation", "random"}
    for method, result in out["pruned"].items():
        assert result["non_embedding_sparsity"] >= 0.25 and [r["seed"] for r in result["runs"]] == [0, 1]
        values = [r["perplexity"]["eval.txt"] for r in result["runs"]]
        assert result["perplexity"]["eval.txt"]["mean"] == pytest.approx(sum(values) / 2)
        ratio = result["perplexity"]["eval.txt"]["mean"] / out["pruned"]["random"]["perplexity"]["eval.txt"]["mean"]
        assert result["ratio_to_random"]["eval.txt"] == pytest.approx(ratio)
    # random scores differ by seed; the teacher scored as a "student" is the teacher
    random_runs = out["pruned"]["random"]["runs"]
    assert random_runs[0]["perplexity"] != random_runs[1]["perplexity"]
    (student,) = out["students"]
    assert student["ratio_to_teacher"]["eval.txt"] == pytest.approx(1.0) and student["within_1_5x"]
