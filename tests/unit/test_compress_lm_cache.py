"""``minidisc compress --task lm --teacher-cache`` in a fresh process on a tiny random
LLaMA (grouped-query attention, tied embeddings): iteration 1 fills the cache from the
reordered teacher, a stage distilling from an assistant runs online, the report gives
k and the disk per token, a rerun of iteration 1 reads every block from the cache and
trains to the same numbers, a stale cache is refused with what to do, and
``--overwrite`` rebuilds it; ``benchmarks/lm_teacher_cache.py --tiny`` prints its JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO, run_minidisc

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARGS = ["compress", "--task", "lm", "--teacher", "teacher", "--corpus", "train.txt", "--block-size", "16",
        "--selection-blocks", "4", "--calibration-blocks", "4", "--grid", "0,0.25,0.5,0.75", "--truncation", "0.25",
        "--target-sparsity", "0.5", "--lam", "0", "--budget-tokens", "128", "--final-budget-tokens", "64",
        "--batch-size", "4", "--eval-steps", "2", "--learning-rate", "1e-3", "--prompt", "the cat",
        "--teacher-cache", "--cache-top-k", "8", "--cache-tail-samples", "4", "-o", "run"]


@pytest.fixture(scope="module")
def cached_run(tmp_path_factory):
    from tests.pretrain_helpers import write_corpus, write_decoder_teacher

    root = tmp_path_factory.mktemp("lmcache")
    write_decoder_teacher(root / "teacher", layers=2)
    write_corpus(root / "train.txt", lines=120)
    p = run_minidisc(*ARGS, cwd=root, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return root


def test_the_cache_serves_the_teachers_stages_and_is_reported(cached_run):
    from minidisc.fileio import read_json

    run = cached_run / "run"
    manifest = read_json(run / "manifest.json")
    assert manifest["config"]["teacher_cache"] == {"top_k": 8, "dtype": "float16", "tail_samples": 4}
    iter1 = manifest["stages"]["iter1"]["compute"]["teacher_cache"]
    assert iter1["served"] and iter1["misses"] == 128 // 16 and iter1["hits"] == 0  # filled by iteration 1
    for name, stage in manifest["stages"].items():
        if name.startswith("iter") and name != "iter1":  # distils from the assistant: online, full vocabulary
            assert not stage["compute"]["teacher_cache"]["served"]
    cache = manifest["teacher_cache"]
    assert cache["top_k"] == 8 and cache["blocks"] == 8 and cache["bytes_per_token"] >= (8 + 4) * 4 + 8
    report = read_json(run / "report.json")
    assert report["teacher_cache"]["bytes_per_token"] == cache["bytes_per_token"]
    assert "teacher-logit cache: top-8 float16 log-probabilities + 4 words sampled from the tail" in (
        run / "report.md").read_text()


def test_a_rerun_reads_the_cache_and_trains_the_same(cached_run):
    from minidisc.fileio import read_json

    run = cached_run / "run"
    before = read_json(run / "manifest.json")["stages"]["iter1"]
    shutil.rmtree(run / "iter1")
    p = run_minidisc(*ARGS, cwd=cached_run, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    after = read_json(run / "manifest.json")["stages"]["iter1"]
    served = after["compute"]["teacher_cache"]
    assert served["hits"] == 128 // 16 and served["misses"] == 0 and served["flops_saved"] > 0
    # stored and freshly computed top-k give the same loss: the same training, the same metrics
    assert [c["best_metric"] for c in after["candidates"]] == [c["best_metric"] for c in before["candidates"]]


def test_a_stale_cache_is_refused_and_overwrite_rebuilds(cached_run):
    from safetensors.torch import load_file, save_file

    run = cached_run / "run"
    (folder,) = (run / "teacher-cache").glob("lm-topk-*")
    probe = load_file(str(folder / "probe.safetensors"))
    save_file({**probe, "logp": probe["logp"] - 0.5}, str(folder / "probe.safetensors"))
    shutil.rmtree(run / "student")
    p = run_minidisc(*ARGS, cwd=cached_run, timeout=900)
    assert p.returncode != 0 and "stale" in p.stderr and "--no-teacher-cache" in p.stderr and "--overwrite" in p.stderr
    assert "Traceback" not in p.stderr
    p = run_minidisc(*ARGS, "--overwrite", cwd=cached_run, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (run / "student" / "config.json").is_file()


def test_cache_options_apply_to_task_lm_only(tmp_path):
    p = run_minidisc("compress", "--task", "sst2", "--teacher-cache", "-o", "a", cwd=tmp_path)
    assert p.returncode != 0 and "--teacher-cache" in p.stderr and not (tmp_path / "a").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--no-teacher-cache", "--cache-tail-samples", "4"], "drop --no-teacher-cache"),
    (["--cache-tail-samples", "4", "--objective", "jsd"], "forward KL only"),
    (["--cache-tail-samples", "-1"], "tail_samples"),
])
def test_a_sampled_tail_is_checked_before_any_work(tmp_path, extra, message):
    (tmp_path / "train.txt").write_text("some text\n")
    p = run_minidisc("compress", "--task", "lm", "--teacher", "nowhere", "--corpus", "train.txt", *extra, "-o", "a",
                     cwd=tmp_path)
    assert p.returncode != 0 and message in p.stderr and not (tmp_path / "a").exists()


def test_benchmark_tiny_prints_its_measurements():
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "lm_teacher_cache.py"), "--tiny", "--threads", "1"],
                       check=False, capture_output=True, text=True, timeout=600,
                       env={"PYTHONPATH": f"{REPO / 'src'}", "PATH": ""})
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    online, cached = out["arms"]["online"], out["arms"]["cached k=8"]
    assert out["tokens"] == out["steps"] * 4 * 16 and online["median_step_s"] > 0
    assert cached["served"]["hits"] == out["steps"] * 4 and cached["served"]["misses"] == 0  # every step from the cache
    assert cached["cache"]["fill"]["misses"] == out["steps"] * 4 or cached["cache"]["fill"]["hits"] > 0
    assert cached["speedup"] == pytest.approx(online["median_step_s"] / cached["median_step_s"])
    assert cached["perplexity_ratio"] == pytest.approx(cached["perplexity"] / online["perplexity"])
    assert cached["cache"]["bytes_per_token"] > 8 * 4 and cached["cache"]["full_logits_bytes_per_token"] == 4 * 256
