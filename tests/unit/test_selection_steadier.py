"""Steadier selection and collapsed candidates (issue 13, parts 2 and 5): the scoring rule
of a candidate's evaluations, the selection slice held out of the training data, the
constant-prediction score and the report's flags."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from minidisc.errors import ConfigError, DataError
from minidisc.evaluation.constant import at_constant_score, constant_prediction
from minidisc.tasks import get_task
from minidisc.training.selection import candidate_metric
from minidisc.training.tracker import CandidateTracker
from tests.helpers import tiny_sst2_data, write_tiny_bert

# --- the scoring rule -------------------------------------------------------------------


def test_candidate_metric_rules():
    evaluations = [0.5, 0.9, 0.6, 0.7, 0.8]
    assert candidate_metric(evaluations, "best") == 0.9
    assert candidate_metric(evaluations, "last_mean", 3) == pytest.approx(0.7)
    assert candidate_metric(evaluations[:2], "last_mean", 3) == pytest.approx(0.7)  # fewer: all of them
    assert candidate_metric([], "last_mean") == -math.inf
    with pytest.raises(ConfigError, match="at least 1"):
        candidate_metric(evaluations, "last_mean", 0)
    with pytest.raises(ConfigError, match="last_mean or best"):
        CandidateTracker([0.5], 0.2, 0.5, score="median")  # type: ignore[arg-type]


def test_a_lucky_spike_wins_under_best_but_not_under_last_mean():
    """The sparse candidate's one noisy high evaluation decides the running maximum; the
    mean of the last 3 sees the candidate as it ends, and keeps its latest weights."""
    evaluations = [  # step → (dense 0.5, sparse 0.9)
        (10, {0.5: 0.80, 0.9: 0.60}),
        (20, {0.5: 0.82, 0.9: 0.78}),  # the sparse candidate's lucky evaluation
        (30, {0.5: 0.83, 0.9: 0.62}),
        (40, {0.5: 0.84, 0.9: 0.63}),
    ]
    chosen = {}
    for rule in ("best", "last_mean"):
        tracker = CandidateTracker([0.5, 0.9], lam=0.2, target=0.9, score=rule, window=3)
        for step, metrics in evaluations:
            tracker.update(step, metrics, lambda s, step=step: f"weights of {s} at step {step}")
        chosen[rule] = (tracker.selection.sparsity, tracker.chosen())
        summary = tracker.summary()
        assert summary.score_rule == rule and summary.candidates[1].best_metric == 0.78
    # best: t(.5) = .84 + .10 = .94 < t(.9) = .78 + .18 = .96 → the sparse one, at its spike
    assert chosen["best"] == (0.9, "weights of 0.9 at step 20")
    # last_mean: t(.5) = .83 + .10 = .93 > t(.9) = .6767 + .18 = .8567 → the dense one, latest weights
    assert chosen["last_mean"] == (0.5, "weights of 0.5 at step 40")
    assert summary.candidates[1].score == pytest.approx((0.78 + 0.62 + 0.63) / 3)


def test_patience_counts_from_the_best_score_not_the_previous_one():
    """A mean of recent evaluations falls and recovers: recovering is not improving."""
    tracker = CandidateTracker([0.5], 0.0, 0.5, final=True, score="last_mean", window=2)
    improved = [tracker.update(step, {0.5: m}, lambda s: s) for step, m in enumerate([0.8, 0.6, 0.7, 0.8, 0.9])]
    # means .8, .7, .65, .75 (above the previous .65, not the best .8), .85
    assert improved == [True, False, False, False, True]


# --- the selection slice ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from minidisc.models import ModelSource, load_tokenizer
    from minidisc.training.data import prepare_task_data

    root = tmp_path_factory.mktemp("slice")
    tokenizer = load_tokenizer(ModelSource(str(write_tiny_bert(root / "bert"))))
    return prepare_task_data(tiny_sst2_data(root / "glue", n_train=40, n_dev=10), tokenizer, seed=3)


def _rows(dataset):
    return {tuple(ids) for ids in dataset["input_ids"]}


def test_selection_slice_is_held_out_stratified_and_seeded(tiny_data):
    from minidisc.training.data import carve_selection_slice

    cut = carve_selection_slice(tiny_data, None, seed=3, importance_samples=16)
    assert len(cut.selection) == 4  # 10 % of 40, 2 per class
    assert sorted(cut.selection["labels"]) == [0, 0, 1, 1]
    assert len(cut.train) == 36 and not _rows(cut.train) & _rows(cut.selection)
    assert _rows(cut.importance) <= _rows(cut.train)  # importance never reads the slice
    assert cut.selection_set is cut.selection and tiny_data.selection_set is tiny_data.dev
    assert cut.dev is tiny_data.dev and cut.sizes["selection_examples"] == 4 and cut.sizes["train_examples"] == 36
    again = carve_selection_slice(tiny_data, None, seed=3, importance_samples=16)
    other = carve_selection_slice(tiny_data, None, seed=4, importance_samples=16)
    assert _rows(again.selection) == _rows(cut.selection) != _rows(other.selection)
    assert len(carve_selection_slice(tiny_data, 10, seed=3, importance_samples=16).selection) == 10


def test_selection_slice_errors_say_what_to_change(tiny_data):
    from minidisc.config import CompressConfig, parse_config
    from minidisc.training.data import carve_selection_slice

    with pytest.raises(DataError, match="--select-on dev"):
        carve_selection_slice(tiny_data, 40, seed=3, importance_samples=16)
    with pytest.raises(ConfigError, match="selection_examples"):
        parse_config(CompressConfig, {"select_on": "dev", "selection_examples": 100}, "test")
    cfg = CompressConfig()  # the re-run study's defaults (issue 13), not the paper's protocol
    assert (cfg.select_on, cfg.candidate_score, cfg.score_window, cfg.sandwich_samples, cfg.skip_collapsed) == (
        "slice", "last_mean", 3, 0, True)


# --- the constant-prediction score --------------------------------------------------------


def test_constant_prediction_scores_majority_class_and_mean_target():
    sst2 = constant_prediction(get_task("sst2"), [1, 1, 0, 1], [0, 1, 1, 0, 1])
    assert sst2["predictor"].startswith("majority class 1") and sst2["main"] == pytest.approx(0.6)
    mrpc = constant_prediction(get_task("mrpc"), [1, 1, 0], [1, 0, 1, 1])  # accuracy .75, F1 2·.75/1.75
    assert mrpc["main"] == pytest.approx((0.75 + 1.5 / 1.75) / 2)
    cola = constant_prediction(get_task("cola"), [1, 0, 1], [1, 0, 0, 1])
    assert cola["main"] == 0.0  # MCC of one class
    stsb = constant_prediction(get_task("stsb"), [1.0, 3.0], [0.5, 4.0, 2.5])
    assert stsb["predictor"] == "mean target 2" and stsb["main"] == 0.0


def test_at_constant_score_catches_a_noisy_collapse_but_not_a_weak_model():
    # the regression run: teacher ~.87, constant 0; the 95 % candidate at 2.46 %
    assert at_constant_score(0.0246, 0.0, 0.87)
    assert not at_constant_score(0.7801, 0.0, 0.87)
    # classification: majority 50.9 %, teacher 91 %: 51.5 % sits at it, 60 % does not
    assert at_constant_score(0.515, 0.509, 0.91) and not at_constant_score(0.60, 0.509, 0.91)
    assert at_constant_score(0.509, 0.509, 0.509)  # a teacher that learned nothing


def test_collapse_floor_is_the_highest_score_at_the_constant():
    from minidisc.evaluation.constant import collapse_floor

    assert collapse_floor(0.509, 0.91) == pytest.approx(0.509 + 0.05 * (0.91 - 0.509))
    assert collapse_floor(0.0, 0.1) == pytest.approx(0.01)  # never tighter than one point
    assert at_constant_score(collapse_floor(0.748, 0.79), 0.748, 0.79)


# --- the report ---------------------------------------------------------------------------


def _fake_run(tmp_path, teacher_dev, candidate_scores, select_on="slice"):
    from minidisc.fileio import write_json

    write_tiny_bert(tmp_path / "teacher")
    specs = {f"{s:g}": {"heads": [2, 2], "neurons": [32, 32], "sparsity": s} for s in candidate_scores}
    write_json(tmp_path / "sparsified" / "sparsity_map.json", specs)
    candidates = [{"sparsity": s, "best_metric": m + 0.01, "tradeoff": m + 0.2 * s, "score": m}
                  for s, m in candidate_scores.items()]
    target = max(candidate_scores)
    stages = {
        "teacher": {"dev": {"main": teacher_dev}, "source": "tiny", "wall_time_s": 1.0,
                    "data": {"train_examples": 90, "dev_examples": 20, "subsampled": False, "data_source": "toy"}},
        "iter1": {"iteration": 1, "final": True, "selected": target, "selected_metric": candidate_scores[target],
                  "candidates": candidates, "wall_time_s": 1.0},
        "student": {"dev": {"main": 0.8}, "plain_hf_loadable": False, "wall_time_s": 1.0},
    }
    stages = {name: {"status": "done", **entry} for name, entry in stages.items()}
    cfg = {"data": {"task": "sst2"}, "lam": 0.2, "target_sparsity": target, "select_on": select_on,
           "candidate_score": "last_mean", "score_window": 3}
    constant = {"predictor": "majority class 1 (positive)", "main": 0.5}
    manifest = {"config": cfg, "stages": stages, "constant_prediction": {"dev": constant, "selection": constant},
                "selection_slice": {"examples": 10, "train_examples": 90}}
    return SimpleNamespace(path=tmp_path, manifest=manifest)


def test_report_flags_collapsed_candidates_and_says_where_it_selected(tmp_path):
    from minidisc.report.compress import build_compress_report, render_markdown

    report = build_compress_report(_fake_run(tmp_path, 0.9, {0.5: 0.85, 0.9: 0.505}))
    assert report["collapse"] == {"teacher": False, "student": False,
                                  "candidates": [{"iteration": 1, "sparsity": 0.9, "score": 0.505}]}
    assert report["selection"]["select_on"] == "slice" and report["selection"]["selection_examples"] == 10
    text = render_markdown(report)
    assert "selected on: the selection slice (10 training examples held out" in text
    assert "the 90 % candidate of iteration 1 ended at the constant-prediction score" in text
    assert "| 90.00 | 51.50 | 50.50 ⚠ constant |" in text and "| 50.00 | 86.00 | 85.00 |" in text
    assert "fine-tuned teacher" not in text
    assert "Passed over" not in text


def test_report_names_the_candidates_the_selection_passed_over(tmp_path):
    from minidisc.report.compress import build_compress_report, render_markdown

    run = _fake_run(tmp_path, 0.9, {0.5: 0.85, 0.9: 0.505, 0.95: 0.5})
    run.manifest["stages"]["iter1"] |= {"final": False, "selected": 0.5, "passed_over": [0.95, 0.9]}
    text = render_markdown(build_compress_report(run))
    assert ("Passed over at the constant-prediction score despite a higher λ-tradeoff: 90 %, 95 % "
            "(--keep-collapsed keeps them in the argmax, as the paper does).") in text


def test_report_warns_when_the_teacher_sits_at_the_constant_score(tmp_path):
    from minidisc.report.compress import build_compress_report, render_markdown

    report = build_compress_report(_fake_run(tmp_path, 0.5, {0.5: 0.85}, select_on="dev"))
    assert report["collapse"]["teacher"]
    text = render_markdown(report)
    assert "**warning**: the fine-tuned teacher scores 50.00 on dev, the score of a constant prediction" in text
    assert "the dev set (the paper's protocol" in text


# --- the command line ---------------------------------------------------------------------


def test_compress_options_reach_the_config_and_are_refused_for_lm(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import minidisc.schedules.minidisc as md
    from minidisc.cli import app

    seen = {}

    def capture(cfg, output, **kwargs):
        seen["cfg"] = cfg
        raise KeyboardInterrupt  # the config is all this test needs

    monkeypatch.setattr(md, "run_compress", capture)
    CliRunner().invoke(app, ["compress", "--task", "sst2", "--output", str(tmp_path / "run"), "--select-on", "dev",
                             "--candidate-score", "best", "--score-window", "5"])
    cfg = seen["cfg"]
    assert (cfg.select_on, cfg.selection_examples, cfg.candidate_score, cfg.score_window) == ("dev", None, "best", 5)
    CliRunner().invoke(app, ["compress", "--task", "sst2", "--output", str(tmp_path / "run"),
                             "--select-on", "slice", "--selection-examples", "200"])
    assert (seen["cfg"].select_on, seen["cfg"].selection_examples) == ("slice", 200)
    assert seen["cfg"].skip_collapsed  # the default
    CliRunner().invoke(app, ["compress", "--task", "sst2", "--output", str(tmp_path / "run"), "--keep-collapsed"])
    assert not seen["cfg"].skip_collapsed

    refused = CliRunner().invoke(app, ["compress", "--task", "lm", "--corpus", str(tmp_path), "--output",
                                       str(tmp_path / "lm"), "--select-on", "dev"])
    text = " ".join(refused.output.replace("│", " ").split())  # Rich may wrap the message in a box
    assert refused.exit_code != 0 and "--select-on do not apply to --task lm" in text
    refused = CliRunner().invoke(app, ["compress", "--task", "lm", "--corpus", str(tmp_path), "--output",
                                       str(tmp_path / "lm"), "--keep-collapsed"])
    text = " ".join(refused.output.replace("│", " ").split())
    assert refused.exit_code != 0 and "--skip-collapsed/--keep-collapsed do not apply to --task lm" in text



def test_compare_passes_the_selection_rules_to_its_minidisc_arm():
    from minidisc.config import CompressConfig
    from minidisc.schedules.config import CompareConfig

    assert CompareConfig().minidisc().skip_collapsed
    assert not CompareConfig(skip_collapsed=False).minidisc().skip_collapsed
    # the behaviour before the options existed is left out of the dump (earlier runs resume
    # unchanged), and today's defaults are written
    paper = {"select_on": "dev", "candidate_score": "best", "sandwich_samples": "all", "skip_collapsed": False}
    for model in (CompareConfig, CompressConfig):
        assert not set(paper) & set(model(**paper).model_dump())
        assert {"select_on", "candidate_score", "skip_collapsed"} <= set(model().model_dump())
    assert CompareConfig(**paper).minidisc().sandwich_samples is None  # all: every candidate
    arm = CompareConfig(candidate_score="last_mean", score_window=5, select_on="slice").minidisc()
    assert (arm.candidate_score, arm.score_window, arm.select_on) == ("last_mean", 5, "slice")


def test_schedule_commands_take_the_selection_slice_and_text_refuses_it(tmp_path):
    from typer.testing import CliRunner

    from minidisc.cli import app

    # the options reach the schedule's config: its own check of the pair answers
    refused = CliRunner().invoke(app, ["distill", "--task", "sst2", "--sparsity", "0.9", "--output",
                                       str(tmp_path / "d"), "--select-on", "dev", "--selection-examples", "64"])
    assert refused.exit_code != 0 and "selection_examples sizes the selection slice" in str(refused.exception)
    assert not (tmp_path / "d").exists()
    refused = CliRunner().invoke(app, ["compare", "--task", "lm", "--corpus", str(tmp_path), "--output",
                                       str(tmp_path / "lm"), "--select-on", "slice"])
    text = " ".join(refused.output.replace("│", " ").split())
    assert refused.exit_code != 0 and "--select-on do not apply to --task lm" in text
