"""Task names, aliases, specs and split names."""

from __future__ import annotations

import pytest

from minidisc.errors import ConfigError
from minidisc.tasks import TASK_NAMES, get_task
from minidisc.tasks.registry import normalize_split


def test_all_nine_glue_tasks_and_ner_are_registered():
    assert set(TASK_NAMES) == {
        "cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "mnli-mm", "qnli", "rte", "wnli",
        "conll2003",
    }


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("SST-2", "sst2"), ("sst2", "sst2"), ("STS-B", "stsb"), ("stsb", "stsb"),
        ("MNLI-m", "mnli"), ("mnli", "mnli"), ("MNLI-MM", "mnli-mm"), ("CoNLL2003", "conll2003"),
        ("ner", "conll2003"), ("CoLA", "cola"), (" qqp ", "qqp"),
    ],
)
def test_names_are_case_insensitive_with_aliases(alias, name):
    assert get_task(alias).name == name


def test_unknown_task_is_a_config_error_listing_the_choices():
    with pytest.raises(ConfigError, match="unknown task 'glue'.*sst2"):
        get_task("glue")


def test_specs_carry_labels_and_metrics():
    stsb = get_task("stsb")
    assert (stsb.is_regression, stsb.num_labels, stsb.label_names) == (True, 1, None)
    assert stsb.task_type == "regression"
    assert stsb.metric_names == ("pearson", "spearman")
    mnli = get_task("mnli")
    assert mnli.label_names == ("entailment", "neutral", "contradiction")
    assert mnli.num_labels == 3 and mnli.task_type == "classification"
    assert get_task("cola").metric_names == ("mcc",)
    assert get_task("mrpc").metric_names == ("f1", "accuracy")
    assert get_task("qqp").metric_names == ("f1", "accuracy")
    assert get_task("qnli").text_columns == ("question", "sentence")
    assert get_task("mrpc").glue_folder == "MRPC"
    ner = get_task("ner")
    assert ner.task_type == "token_classification" and ner.num_labels == 9
    assert ner.label_names[0] == "O"
    assert all(get_task(n).main_metric == "main" for n in TASK_NAMES)


def test_spec_is_frozen():
    with pytest.raises(AttributeError):
        get_task("sst2").num_labels = 3  # type: ignore[misc]


def test_split_names():
    mnli, mm, sst2 = get_task("mnli"), get_task("mnli-mm"), get_task("sst2")
    assert normalize_split(sst2, "validation") == "dev"
    assert normalize_split(sst2, "TEST-labeled") == "test_labeled"
    assert normalize_split(mnli, "dev_matched") == "dev"
    assert normalize_split(mm, "validation_mismatched") == "dev"
    with pytest.raises(ConfigError, match="mnli-mm"):
        normalize_split(mnli, "dev_mismatched")
    with pytest.raises(ConfigError, match="unknown split"):
        normalize_split(sst2, "holdout")
    with pytest.raises(ConfigError, match="no public labelled test"):
        normalize_split(mnli, "test_labeled")
