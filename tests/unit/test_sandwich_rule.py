"""The sandwich rule (issue 13, part 1): a sandwich step trains the least and the most
sparse candidate and K others drawn at random, reproducibly; the cost accounting follows."""

from __future__ import annotations

import pytest

from minidisc.config import CompressConfig, TrainConfig
from minidisc.training.sandwich import inclusion_probabilities, step_candidates
from tests.helpers import run_minidisc, tiny_sst2_data, write_tiny_bert

LEVELS = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95]


def test_every_candidate_by_default_and_when_k_covers_the_middle() -> None:
    assert step_candidates(LEVELS, None, seed=1, step=3) == LEVELS
    assert step_candidates(LEVELS, 5, seed=1, step=3) == LEVELS
    assert inclusion_probabilities(LEVELS, None) == dict.fromkeys(LEVELS, 1.0)


def test_the_extremes_every_step_and_k_distinct_others() -> None:
    seen = set()
    for step in range(200):
        chosen = step_candidates(LEVELS, 2, seed=7, step=step)
        assert chosen[0] == 0.5 and chosen[-1] == 0.95 and len(set(chosen)) == 4 == len(chosen)
        assert chosen == sorted(chosen)
        seen.update(chosen)
    assert seen == set(LEVELS)  # every middle candidate gets its turns


def test_the_draw_depends_on_seed_and_step_only() -> None:
    draws = [step_candidates(LEVELS, 1, seed=7, step=s) for s in range(50)]
    assert draws == [step_candidates(LEVELS, 1, seed=7, step=s) for s in range(50)]  # resumable
    assert draws != [step_candidates(LEVELS, 1, seed=8, step=s) for s in range(50)]
    assert len({tuple(d) for d in draws}) > 1


def test_inclusion_probabilities_sum_to_the_candidates_per_step() -> None:
    shares = inclusion_probabilities(LEVELS, 2)
    assert shares[0.5] == shares[0.95] == 1.0
    assert sum(shares.values()) == pytest.approx(4.0)


def test_negative_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="≥ 0"):
        step_candidates(LEVELS, -1, seed=0, step=0)


STAGE = TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, eval_steps=3, patience=None, seed=1)


def test_a_sampled_sandwich_trains_less_and_estimates_the_same_direct_kd(tmp_path) -> None:
    import minidisc.schedules.minidisc as md
    from minidisc.fileio import read_json

    teacher = write_tiny_bert(tmp_path / "teacher")
    cfg = CompressConfig(
        teacher=str(teacher), data=tiny_sst2_data(tmp_path / "glue"), target_sparsity=0.75, truncation=0.25,
        grid=(0.0, 0.25, 0.5, 0.75), finetune=STAGE, sandwich=STAGE, final=STAGE, sandwich_samples="all",
    )
    md.run_compress(cfg, tmp_path / "all")
    # K = 0: the 25 % and 75 % candidates every step, the 50 % one never (its share is exactly 0)
    md.run_compress(cfg.model_copy(update={"sandwich_samples": 0}), tmp_path / "sampled", teacher_run=tmp_path / "all")

    full, sampled = (read_json(tmp_path / name / "manifest.json") for name in ("all", "sampled"))
    full_c, sampled_c = (m["stages"]["iter1"]["compute"] for m in (full, sampled))
    assert sampled_c["teacher_forward_flops"] == full_c["teacher_forward_flops"]  # one teacher forward per step
    assert sampled_c["student_train_flops"] < 0.8 * full_c["student_train_flops"]
    # both runs estimate the same direct-KD run from what their sandwich measured
    assert sampled["cost"]["direct_kd"]["train_flops"] == pytest.approx(full["cost"]["direct_kd"]["train_flops"], rel=1e-6)
    assert sampled["cost"]["total"]["train_flops"] < full["cost"]["total"]["train_flops"]
    report = (tmp_path / "sampled" / "report.md").read_text()
    assert "the least and the most sparse candidate and 0 of the other 1 drawn at random" in report
    assert "Every sandwich step trained every candidate." in (tmp_path / "all" / "report.md").read_text()
    # every stage's own peak memory, and the run's (issue 13, part 3)
    peaks = {name: entry["peak_rss_mb"] for name, entry in sampled["stages"].items()}
    assert all(mb > 0 for mb in peaks.values())
    assert f"Peak memory of the run: {max(peaks.values()):,.0f} MiB resident" in report
    assert "sandwich_samples" not in full["config"]  # every candidate: runs made before the key resume
    assert sampled["config"]["sandwich_samples"] == 0
    assert "sandwich_samples: null" in (tmp_path / "all" / "config.yaml").read_text()  # --config reads it back


def test_the_cli_refuses_a_negative_count(tmp_path) -> None:
    for task in ("sst2", "lm"):
        bad = run_minidisc("compress", "--task", task, "--sandwich-samples", "-1", "-o", str(tmp_path / "r"), cwd=tmp_path)
        assert bad.returncode != 0 and "--sandwich-samples" in bad.stderr
    assert not (tmp_path / "r").exists()


def test_compress_at_its_defaults_trains_the_window_and_its_config_file_reruns_it(tmp_path) -> None:
    """``minidisc compress`` in a fresh process with no rule option: K = 0 from 0.3 below
    the target up to it (the 90 % level of the grid is beyond the target: never trained);
    the run's ``config.yaml`` given back as ``--config`` names the same run (it resumes)."""
    from minidisc.fileio import read_json
    from tests.helpers import write_tiny_sst2

    teacher, glue = write_tiny_bert(tmp_path / "teacher"), write_tiny_sst2(tmp_path / "glue")
    run = tmp_path / "run"
    made = run_minidisc("compress", "--teacher", str(teacher), "--task", "sst2", "--data-dir", str(glue),
                        "--max-length", "16", "--target-sparsity", "0.75",
                        "--grid", "0,0.25,0.5,0.6,0.75,0.9", "--epochs", "1", "--batch-size", "8", "--eval-steps", "3",
                        "--seed", "1", "-o", str(run), cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    manifest = read_json(run / "manifest.json")
    assert (manifest["config"]["sandwich_samples"], manifest["config"]["truncation"]) == (0, 0.45)
    assert [c["sparsity"] for c in manifest["stages"]["iter1"]["candidates"]] == [0.5, 0.6, 0.75]
    assert "the least and the most sparse candidate and 0 of the other 1 drawn at random" in (
        run / "report.md").read_text()
    again = run_minidisc("compress", "--config", str(run / "config.yaml"), "-o", str(run), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_json(run / "manifest.json")["stages"] == manifest["stages"]  # resumed: nothing trained again


def test_a_decoder_sandwich_takes_the_rule_from_the_command_line(tmp_path) -> None:
    """``compress --task lm --sandwich-samples 0`` in a fresh process against the same run
    with every candidate through the Python API: the middle candidate is never trained."""
    from minidisc.fileio import read_json
    from minidisc.schedules.lm import run_compress_lm
    from minidisc.schedules.lm_config import LMCompressConfig
    from tests.pretrain_helpers import write_corpus, write_decoder_teacher

    write_decoder_teacher(tmp_path / "teacher", layers=2)
    write_corpus(tmp_path / "train.txt", lines=80)
    # three candidates (25 %, 37.5 %, 50 % = the target): K = 0 trains the outer two
    options = {"--teacher": str(tmp_path / "teacher"), "--corpus": str(tmp_path / "train.txt"), "--block-size": "16", "--selection-blocks": "4",
               "--calibration-blocks": "4", "--grid": "0,0.25,0.375,0.5", "--target-sparsity": "0.5",
               "--budget-tokens": "128", "--final-budget-tokens": "64", "--batch-size": "4", "--eval-steps": "4"}
    args = [item for pair in options.items() for item in pair]
    p = run_minidisc("compress", "--task", "lm", *args, "--sandwich-samples", "0", "-o", "sampled", cwd=tmp_path, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    sampled = read_json(tmp_path / "sampled" / "manifest.json")
    assert sampled["config"]["sandwich_samples"] == 0
    every = LMCompressConfig.model_validate({**sampled["config"], "sandwich_samples": "all"})
    run_compress_lm(every, tmp_path / "all", cache_dir=None)

    full = read_json(tmp_path / "all" / "manifest.json")
    assert "sandwich_samples" not in full["config"]  # the default is left out: earlier runs resume
    full_c, sampled_c = (m["stages"]["iter1"]["compute"] for m in (full, sampled))
    assert [c["sparsity"] for c in sampled["stages"]["iter1"]["candidates"]] == [0.25, 0.375, 0.5]
    assert sampled_c["teacher_forward_flops"] == full_c["teacher_forward_flops"]  # one teacher forward per step
    # per step: 0.75 + 0.625 + 0.5 of the full model's width-scaled work against 0.75 + 0.5
    assert sampled_c["student_train_flops"] < 0.8 * full_c["student_train_flops"]
    assert "the least and the most sparse candidate and 0 of the other 1 drawn at random" in (
        tmp_path / "sampled" / "report.md").read_text()
    assert "Every sandwich step trained every candidate." in (tmp_path / "all" / "report.md").read_text()


def test_compare_passes_the_rule_to_its_minidisc_arm() -> None:
    from minidisc.schedules.config import CompareConfig

    assert CompareConfig(sandwich_samples=1).minidisc().sandwich_samples == 1
    default = CompareConfig()
    assert default.minidisc().sandwich_samples == 0  # the default: the sandwich rule, K = 0
    assert default.minidisc().candidate_levels() == [0.6, 0.7, 0.8, 0.85, 0.9]
    assert default.maxidisc("").assistant_levels() == [0.6, 0.7, 0.8, 0.85]  # MiniDisc's pool below the target
    every = CompareConfig(sandwich_samples="all")
    assert every.minidisc().sandwich_samples is None and every.truncation == 0.5
    assert "sandwich_samples" not in every.model_dump()  # earlier comparisons resume
    assert "sandwich_samples" not in CompressConfig(sandwich_samples="all").model_dump()


def test_the_default_rule_trains_from_three_tenths_below_the_target_up_to_it() -> None:
    """Issue 13's default: K = 0 between target − 0.3 and the target; every candidate keeps
    the paper's 0.5 and the whole grid; a given truncation always wins."""
    from minidisc.config import COMPLETE

    cases = {  # options → (truncation, candidates)
        (): (0.6, [0.6, 0.7, 0.8, 0.85, 0.9]),
        (("target_sparsity", 0.8),): (0.5, [0.5, 0.6, 0.7, 0.8]),
        (("sandwich_samples", 2),): (0.6, [0.6, 0.7, 0.8, 0.85, 0.9]),
        (("sandwich_samples", "all"),): (0.5, [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95]),
        (("truncation", 0.7),): (0.7, [0.7, 0.8, 0.85, 0.9]),
        (("target_sparsity", 0.2),): (0.0, [0.0, 0.1, 0.2]),
    }
    for options, (truncation, candidates) in cases.items():
        cfg = CompressConfig(**dict(options))
        assert (cfg.truncation, cfg.candidate_levels()) == (truncation, candidates), options
        # the saved config names the resolved level, and reads back as the same run
        assert cfg.model_dump(mode="json")["truncation"] == truncation
        assert CompressConfig.model_validate(cfg.model_dump(mode="json", context=COMPLETE)) == cfg
    # a run made before this default (every candidate, 0.5, no key) resumes with --sandwich-samples all
    before = CompressConfig(sandwich_samples="all").model_dump(mode="json")
    assert "sandwich_samples" not in before and before["truncation"] == 0.5