"""Hub path: column mapping on hand-made rows in the hub's layout; no network needed."""

from __future__ import annotations

import datasets
import pytest

from minidisc.errors import ConfigError, DataError
from minidisc.tasks import get_task, load_split
from minidisc.tasks.hub import hub_split, map_hub_batch

pytestmark = pytest.mark.usefixtures("no_data_dir_env")


def test_single_sentence_rows():
    batch = {"sentence": ["hide new secretions", "good"], "label": [0, 1], "idx": [0, 1]}
    out = map_hub_batch(get_task("sst2"), batch)
    assert out == {"text_a": ["hide new secretions", "good"], "text_b": [None, None],
                   "label": [0, 1], "idx": [0, 1]}


def test_pair_rows_use_each_configs_column_names():
    mnli = {"premise": ["P"], "hypothesis": ["H"], "label": [2], "idx": [7]}
    assert map_hub_batch(get_task("mnli-mm"), mnli) == {
        "text_a": ["P"], "text_b": ["H"], "label": [2], "idx": [7]}
    qqp = {"question1": ["q1"], "question2": ["q2"], "label": [-1], "idx": [0]}
    assert map_hub_batch(get_task("qqp"), qqp)["label"] == [-1]  # hub test label
    qnli = {"question": ["Q?"], "sentence": ["S."], "label": [1], "idx": [3]}
    assert map_hub_batch(get_task("qnli"), qnli)["text_a"] == ["Q?"]
    mrpc = {"sentence1": ["a"], "sentence2": ["b"], "label": [1], "idx": [0]}
    assert map_hub_batch(get_task("mrpc"), mrpc)["text_b"] == ["b"]


def test_stsb_scores_stay_floats():
    out = map_hub_batch(get_task("stsb"), {"sentence1": ["a"], "sentence2": ["b"],
                                           "label": [3.8], "idx": [0]})
    assert out["label"] == [3.8] and isinstance(out["label"][0], float)


def test_conll_rows():
    batch = {"id": ["0"], "tokens": [["EU", "rejects"]], "pos_tags": [[22, 42]],
             "chunk_tags": [[11, 21]], "ner_tags": [[3, 0]]}
    assert map_hub_batch(get_task("ner"), batch) == {
        "tokens": [["EU", "rejects"]], "tags": [[3, 0]], "idx": [0]}


def test_missing_column_and_bad_label():
    with pytest.raises(DataError, match="missing column 'sentence2'"):
        map_hub_batch(get_task("rte"), {"sentence1": ["a"], "label": [0]})
    with pytest.raises(DataError, match="outside -1..1"):
        map_hub_batch(get_task("rte"), {"sentence1": ["a"], "sentence2": ["b"], "label": [5]})


def test_split_names_on_the_hub():
    assert hub_split(get_task("sst2"), "dev") == "validation"
    assert hub_split(get_task("mnli"), "dev") == "validation_matched"
    assert hub_split(get_task("mnli-mm"), "test") == "test_mismatched"
    assert hub_split(get_task("mnli-mm"), "train") == "train"
    with pytest.raises(ConfigError, match="--data-dir"):
        hub_split(get_task("mrpc"), "test_labeled")


def test_unreachable_hub_says_how_to_use_local_files(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConfigError, match="--data-dir DIR or set MINIDISC_DATA_DIR") as info:
        load_split("cola", "dev")
    assert "nyu-mll/glue" in str(info.value) and "CoLA/" in str(info.value)


def test_hub_dataset_is_mapped_and_subsampled(monkeypatch):
    calls = []

    def fake_load(name, config, split):
        calls.append((name, config, split))
        rows = {"sentence1": [f"a{i}" for i in range(6)], "sentence2": ["b"] * 6,
                "label": [0, 1, 0, 1, 0, 1], "idx": list(range(6))}
        return datasets.Dataset.from_dict(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    data = load_split("rte", "validation", max_samples=4, seed=1)
    assert calls == [("nyu-mll/glue", "rte", "validation")]
    assert data.column_names == ["text_a", "text_b", "label", "idx"]
    assert len(data) == 4
    assert data["text_a"] == [f"a{i}" for i in data["idx"]]
    assert data.features["label"].names == ["entailment", "not_entailment"]
