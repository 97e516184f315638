"""Loading models for a task: heads sized for the task, GGUF teachers as float models."""

from __future__ import annotations

import pytest
import torch


def test_teacher_head_for_another_task_is_reinitialised_or_refused(tmp_path):
    """An SST-2-sized head loads for MNLI with a fresh 3-way head (fine-tuning trains it);
    as an already fine-tuned teacher (`require_head`) it is refused with what to do."""
    from minidisc.errors import ModelError
    from minidisc.models import ModelSource, load_for_task
    from minidisc.tasks import get_task
    from tests.helpers import write_tiny_bert

    source = ModelSource(str(write_tiny_bert(tmp_path / "sst2-sized")))
    model = load_for_task(source, get_task("mnli"))
    assert model.config.num_labels == 3 and model.classifier.weight.shape[0] == 3
    with pytest.raises(ModelError, match="teacher-finetuned"):
        load_for_task(source, get_task("mnli"), require_head=True)
    model.save_pretrained(tmp_path / "mnli-tuned")
    tuned = load_for_task(ModelSource(str(tmp_path / "mnli-tuned")), get_task("mnli"), require_head=True)
    assert torch.equal(tuned.classifier.weight, model.classifier.weight)


def test_a_config_with_more_layers_than_the_weights_is_an_error(tmp_path):
    """config.json declaring 4 layers over 2 stored ones would load 2 random layers."""
    from minidisc.errors import ModelError
    from minidisc.models import ModelSource, load_for_task
    from minidisc.tasks import get_task
    from tests.helpers import edit_config, write_tiny_bert

    folder = edit_config(write_tiny_bert(tmp_path / "m", trained_head=True), num_hidden_layers=4)
    with pytest.raises(ModelError, match=r"bert\.encoder\.layer\.[23]\..*num_hidden_layers") as err:
        load_for_task(ModelSource(str(folder)), get_task("sst2"))
    assert "not in the checkpoint" in str(err.value) and "config.json" in str(err.value)


def test_a_config_with_fewer_layers_than_the_weights_is_an_error(tmp_path):
    from minidisc.errors import ModelError
    from minidisc.models import ModelSource, load_for_task
    from minidisc.tasks import get_task
    from tests.helpers import edit_config, write_tiny_bert

    folder = edit_config(write_tiny_bert(tmp_path / "m", layers=3, trained_head=True), num_hidden_layers=2)
    with pytest.raises(ModelError, match=r"not in the model the config describes \(.*layer\.2\."):
        load_for_task(ModelSource(str(folder)), get_task("sst2"))


def test_a_config_wider_than_the_weights_is_an_error(tmp_path):
    """hidden 64 declared, 32 stored: every body weight has another shape."""
    from minidisc.errors import ModelError
    from minidisc.models import ModelSource, load_for_task
    from minidisc.tasks import get_task
    from tests.helpers import edit_config, write_tiny_bert

    folder = edit_config(write_tiny_bert(tmp_path / "m", trained_head=True), hidden_size=64)
    with pytest.raises(ModelError, match=r"another shape .*checkpoint \[.*32\], config \[.*64\].*hidden_size"):
        load_for_task(ModelSource(str(folder)), get_task("sst2"))


def test_a_checkpoint_without_a_head_loads_and_says_the_head_was_initialised(tmp_path):
    """A bare encoder (no classifier) is what fine-tuning starts from: the head is
    initialised and the load says why; the body is the checkpoint's, bit for bit."""
    from safetensors.torch import load_file
    from transformers import BertModel

    from minidisc.models import ModelSource, load_task_model
    from minidisc.tasks import get_task
    from tests.helpers import write_tiny_bert

    full = write_tiny_bert(tmp_path / "full")
    BertModel.from_pretrained(full).save_pretrained(tmp_path / "bare")
    loaded = load_task_model(ModelSource(str(tmp_path / "bare")), get_task("sst2"))
    assert loaded.head_initialised and "no sst2 head" in loaded.head_initialised
    assert "classifier.weight" in loaded.head_initialised
    saved = load_file(tmp_path / "bare" / "model.safetensors")
    state = loaded.model.state_dict()
    assert all(torch.equal(state[f"bert.{k}"], v) for k, v in saved.items())
    tuned = load_task_model(ModelSource(str(full)), get_task("sst2"))
    assert tuned.head_initialised is None


def test_a_minidisc_student_for_another_task_gets_a_fresh_head(tmp_path):
    """An exported SST-2 student fine-tuned for MNLI: 3-way head initialised (reported),
    every other weight loaded strictly; a body that does not match is still an error."""
    from minidisc.elastic import SubnetSpec, make_elastic, save_student
    from minidisc.errors import ModelError
    from minidisc.models import ModelSource, load_task_model
    from minidisc.tasks import get_task
    from tests.elastic_helpers import randomize_, tiny_bert
    from tests.helpers import edit_config

    em = make_elastic(randomize_(tiny_bert(num_labels=2)))
    spec = SubnetSpec((2, 4, 1), (16, 48, 8), sparsity=0.5)
    save_student(em.extract(spec), tmp_path / "s", spec)
    same = load_task_model(ModelSource(str(tmp_path / "s")), get_task("sst2"))
    assert same.head_initialised is None
    other = load_task_model(ModelSource(str(tmp_path / "s")), get_task("mnli"))
    assert other.model.classifier.weight.shape[0] == 3
    assert "sized for another task" in other.head_initialised
    student = em.extract(spec)
    assert torch.equal(other.model.bert.encoder.layer[1].output.dense.weight,
                       student.bert.encoder.layer[1].output.dense.weight)
    edit_config(tmp_path / "s", hidden_size=64, intermediate_size=96)
    with pytest.raises(ModelError, match="do not match"):
        load_task_model(ModelSource(str(tmp_path / "s")), get_task("mnli"))


def test_an_already_finetuned_teacher_with_an_untrained_head_is_refused(tmp_path):
    """--teacher-finetuned on a checkpoint whose classifier is as initialised: the
    teacher stage refuses instead of evaluating (and then sparsifying) a random head."""
    from minidisc.config import TrainConfig
    from minidisc.errors import ModelError
    from minidisc.models import ModelSource, load_tokenizer
    from minidisc.schedules.stages import teacher_stage
    from minidisc.training.data import prepare_task_data
    from tests.helpers import tiny_sst2_data, write_tiny_bert

    source = ModelSource(str(write_tiny_bert(tmp_path / "fresh")))
    data = prepare_task_data(tiny_sst2_data(tmp_path / "glue"), load_tokenizer(source), seed=0)
    with pytest.raises(ModelError, match="never trained.*drop --teacher-finetuned"):
        teacher_stage(source, data, TrainConfig(), True, tmp_path / "out")


def test_an_initialised_head_is_reported_by_finetune_and_compress(tmp_path):
    """finetune prints and records why the head was initialised; the teacher stage
    records it and the compress report shows it."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer, BertModel
    from typer.testing import CliRunner

    from minidisc.cli import app
    from minidisc.config import TrainConfig
    from minidisc.fileio import read_json, write_json
    from minidisc.models import ModelSource, load_tokenizer
    from minidisc.report.compress import build_compress_report, render_markdown
    from minidisc.schedules.stages import teacher_stage
    from minidisc.training.data import prepare_task_data
    from tests.helpers import tiny_sst2_data, write_tiny_bert, write_tiny_sst2

    full = write_tiny_bert(tmp_path / "full")
    BertModel.from_pretrained(full).save_pretrained(tmp_path / "bare")
    AutoTokenizer.from_pretrained(full).save_pretrained(tmp_path / "bare")
    glue = write_tiny_sst2(tmp_path / "glue")
    result = CliRunner().invoke(app, ["finetune", "--model", str(tmp_path / "bare"), "--data-dir", str(glue),
                                      "--max-length", "16", "--epochs", "0.2", "--batch-size", "8",
                                      "-o", str(tmp_path / "ft")])
    assert result.exit_code == 0, result.output
    assert "classifier head initialised: the checkpoint has no sst2 head" in result.output
    assert "no sst2 head" in read_json(tmp_path / "ft" / "finetune.json")["head_initialised"]

    source = ModelSource(str(tmp_path / "bare"))
    data = prepare_task_data(tiny_sst2_data(tmp_path / "glue2"), load_tokenizer(source), seed=0)
    entry = teacher_stage(source, data, TrainConfig(max_steps=1, batch_size=8), False, tmp_path / "teacher")
    assert "no sst2 head" in entry["head_initialised"]

    write_json(tmp_path / "sparsified" / "sparsity_map.json",
               {"0.5": {"heads": [2, 2], "neurons": [32, 32], "sparsity": 0.5}})
    stages = {"teacher": {**entry, "status": "done", "wall_time_s": 1.0},
              "iter1": {"status": "done", "iteration": 1, "final": True, "selected": 0.5, "selected_metric": 0.5,
                        "candidates": [{"sparsity": 0.5, "best_metric": 0.5, "tradeoff": 0.6}], "wall_time_s": 1.0},
              "student": {"status": "done", "dev": entry["dev"], "plain_hf_loadable": False, "wall_time_s": 1.0}}
    run = SimpleNamespace(path=tmp_path, manifest={"config": {"data": {"task": "sst2"}, "lam": 0.2,
                                                              "target_sparsity": 0.5}, "stages": stages})
    markdown = render_markdown(build_compress_report(run))
    assert "- classifier head initialised: the checkpoint has no sst2 head" in markdown
