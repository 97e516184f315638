"""`minidisc pretrain` (with --log-runs) and `minidisc finetune --glue-suite` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minidisc.cli import app
from minidisc.cli.finetune import parse_suite, render_suite
from minidisc.errors import ConfigError
from minidisc.fileio import read_json
from minidisc.scaling.records import read_run_records
from tests.pretrain_helpers import write_corpus, write_teacher

runner = CliRunner()
GLUE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "glue"

# non-embedding parameters by hand: per layer Q,K,V,O 4·(32·32 + 32) + FFN (32·64 + 64) +
# (64·32 + 32) + 2 LayerNorms 2·2·32 = 8544; the student has 2 layers, the teacher 4
STUDENT_PARAMS, TEACHER_PARAMS = 2 * 8544, 4 * 8544


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return root, write_teacher(root / "teacher"), write_corpus(root / "corpus.txt")


def pretrain(files, name, *extra):
    root, teacher, corpus = files
    return runner.invoke(app, [
        "pretrain", "--teacher", str(teacher), "--corpus", str(corpus), "--eval-blocks", "2",
        "--block-size", "16", "--batch-size", "4", "--output", str(root / name), *extra,
    ])


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_log_runs_appends_records_that_parse_back(files, suffix):
    root = files[0]
    runs = root / f"runs{suffix}"
    scratch = pretrain(files, f"scratch{suffix}", "--strategy", "scratch", "--budget-tokens", "200", "--log-runs", str(runs))
    assert scratch.exit_code == 0, scratch.output
    assert "200 tokens" in scratch.output
    kd = pretrain(files, f"kd{suffix}", "--strategy", "kd", "--objective-option", "alpha=1.0",
                  "--budget-tokens", "150", "--log-runs", str(runs))
    assert kd.exit_code == 0, kd.output
    again = pretrain(files, f"kd{suffix}", "--strategy", "kd", "--objective-option", "alpha=1.0",
                     "--budget-tokens", "150", "--log-runs", str(runs))  # finished run: no second record
    assert again.exit_code == 0, again.output

    records = read_run_records(runs)
    assert [r.kind for r in records] == ["supervised", "distillation"]
    sup, dist = records
    s_report = read_json(root / f"scratch{suffix}" / "report.json")
    k_report = read_json(root / f"kd{suffix}" / "report.json")
    assert (sup.student_params, sup.student_tokens) == (STUDENT_PARAMS, 200)
    assert sup.student_loss == pytest.approx(s_report["heldout"]["final_loss"])
    assert sup.teacher_params is None and sup.teacher_loss is None
    assert (dist.student_params, dist.student_tokens, dist.teacher_params) == (STUDENT_PARAMS, 150, TEACHER_PARAMS)
    assert dist.student_loss == pytest.approx(k_report["heldout"]["final_loss"])
    assert dist.teacher_loss == pytest.approx(k_report["teacher"]["heldout_loss"])
    assert "alpha=1.0" in k_report["objective"] and k_report["objective_name"] == "kd"
    assert dist.label.startswith("objective=kd(alpha=1.0) run=") and sup.label.startswith("objective=scratch run=")
    assert dist.teacher_tokens is None  # a teacher folder that is no minidisc pretrain output


def test_teacher_tokens_come_from_a_pretrain_teacher_trained_from_scratch(files):
    root = files[0]
    runs = root / "teacher-tokens.jsonl"
    assert pretrain(files, "t-scratch", "--strategy", "scratch", "--budget-tokens", "200").exit_code == 0
    # a head warm-up: the encoder's weights come from elsewhere, so its tokens are unknown
    warm = pretrain(files, "t-warm", "--strategy", "scratch", "--init-from-teacher", "all", "--freeze-encoder",
                    "--budget-tokens", "100")
    assert warm.exit_code == 0, warm.output
    for name, teacher in (("kd-from-scratch", "t-scratch"), ("kd-from-warm", "t-warm")):
        result = pretrain(files, name, "--strategy", "kd", "--teacher", str(root / teacher / "student"),
                          "--budget-tokens", "64", "--log-runs", str(runs))
        assert result.exit_code == 0, result.output
    from_scratch, from_warm = read_run_records(runs)
    assert from_scratch.kind == from_warm.kind == "distillation"
    assert from_scratch.teacher_tokens == 200 and from_scratch.student_tokens == 64
    assert from_warm.teacher_tokens is None
    note = read_json(root / "kd-from-warm" / "report.json")["teacher"]["pretrain_tokens_note"]
    assert "another model's weights" in note and "MLM head" in note


@pytest.mark.parametrize("strategy", ["distilbert", "pkd"])
def test_log_runs_refuses_arms_with_hidden_state_losses(files, strategy):
    result = pretrain(files, f"log-{strategy}", "--strategy", strategy, "--budget-tokens", "100",
                      "--log-runs", str(files[0] / "hidden.jsonl"))
    assert isinstance(result.exception, ConfigError)
    assert "logit distillation only" in str(result.exception) and "scratch and kd" in str(result.exception)
    assert not (files[0] / "hidden.jsonl").exists() and not (files[0] / f"log-{strategy}").exists()


def test_log_runs_refuses_arms_without_an_mlm_head_loss(files):
    result = pretrain(files, "minilm", "--strategy", "minilm", "--budget-tokens", "100",
                      "--log-runs", str(files[0] / "bad.jsonl"))
    assert isinstance(result.exception, ConfigError)
    assert "untrained" in str(result.exception)
    assert not (files[0] / "bad.jsonl").exists()


@pytest.mark.parametrize("budget", [[], ["--budget-tokens", "100", "--budget-flops", "1e9"]])
def test_exactly_one_budget(files, budget):
    result = pretrain(files, "nobudget", *budget)
    assert isinstance(result.exception, ConfigError)
    assert "exactly one" in str(result.exception)


def test_unknown_strategy_and_objective_option(files):
    result = pretrain(files, "bad1", "--strategy", "magic", "--budget-tokens", "100")
    assert isinstance(result.exception, ConfigError) and "scratch" in str(result.exception)
    result = pretrain(files, "bad2", "--strategy", "kd", "--objective-option", "gamma=2", "--budget-tokens", "100")
    assert isinstance(result.exception, ConfigError) and "gamma" in str(result.exception)


def test_parse_suite():
    assert parse_suite("SST-2, mrpc,cola") == ["sst2", "mrpc", "cola"]
    with pytest.raises(ConfigError):
        parse_suite("sst2,sst2")
    with pytest.raises(ConfigError):
        parse_suite(" , ")


def test_render_suite_in_percent():
    summary = {"model": "m", "average": 0.5, "tasks": {
        "sst2": {"dev": {"accuracy": 0.75, "main": 0.75}, "data": {"train_examples": 10, "dev_examples": 5}},
        "cola": {"dev": {"mcc": 0.25, "accuracy": 0.6, "main": 0.25}, "data": {"train_examples": 8, "dev_examples": 4}},
    }}
    text = render_suite(summary)
    assert "| sst2 | accuracy 75.00 | 75.00 | 10 / 5 |" in text
    assert "| cola | mcc 25.00, accuracy 60.00 | 25.00 | 8 / 4 |" in text
    assert "**50.00**" in text


@pytest.mark.skipif(not (GLUE / "SST-2").is_dir(), reason="GLUE data not found at ../shared/data/glue")
def test_glue_suite_from_a_pretrained_student(files):
    root = files[0]
    trained = pretrain(files, "for-glue", "--strategy", "scratch", "--budget-tokens", "64")
    assert trained.exit_code == 0, trained.output
    args = ["finetune", "--model", str(root / "for-glue" / "student"), "--glue-suite", "sst2,cola",
            "--data-dir", str(GLUE), "--max-train-samples", "16", "--max-eval-samples", "16", "--epochs", "1",
            "--max-length", "24", "--batch-size", "8", "--no-save-model", "--output", str(root / "suite")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((root / "suite" / "glue_suite.json").read_text())
    mains = [summary["tasks"][t]["dev"]["main"] for t in ("sst2", "cola")]
    assert summary["average"] == pytest.approx(sum(mains) / 2)
    assert summary["tasks"]["sst2"]["data"]["train_examples"] == 16
    assert (root / "suite" / "glue_suite.md").read_text().count("|") > 10
    assert not (root / "suite" / "sst2" / "model.safetensors").exists()
    stamp = (root / "suite" / "cola" / "finetune.json").stat().st_mtime_ns
    assert runner.invoke(app, args).exit_code == 0  # finished stages are not redone
    assert (root / "suite" / "cola" / "finetune.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_help_summary_is_one_short_line(command):
    from minidisc.cli import finetune as finetune_cli
    from minidisc.cli import pretrain as pretrain_cli

    function = {"pretrain": pretrain_cli.pretrain, "finetune": finetune_cli.finetune}[command]
    first, second, *_ = function.__doc__.splitlines()
    assert len(first) <= 66 and second.strip() == ""  # the summary paragraph is this one line
    result = runner.invoke(app, ["--help"], terminal_width=100)
    line = next(x for x in result.output.splitlines() if f" {command} " in x)
    assert first.strip() in line
