"""Student shapes, --init-from-teacher layer copies, teacher-head warm-up, loadability."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification

from minidisc.errors import ConfigError
from minidisc.fileio import read_json
from minidisc.models import resolve_model
from minidisc.pretrain.config import StudentConfig
from minidisc.pretrain.run import prepare_arm, run_pretrain
from minidisc.pretrain.student import build_student, load_teacher, parse_layer_selection
from tests.pretrain_helpers import tiny_config, write_corpus, write_teacher


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("student")
    return root, write_teacher(root / "teacher"), write_corpus(root / "corpus.txt")


@pytest.fixture(scope="module")
def teacher(files):
    return load_teacher(resolve_model(str(files[1])), seed=0)


@pytest.mark.parametrize(
    "text, n, m, expected",
    [("uniform", 6, None, [0, 2, 4]), ("uniform", 6, 2, [0, 3]), ("uniform", 4, 4, [0, 1, 2, 3]),
     ("all", 3, None, [0, 1, 2]), ("5, 1", 6, None, [5, 1]), ("0,2", 6, 2, [0, 2])],
)
def test_layer_selection(text, n, m, expected):
    assert parse_layer_selection(text, n, m) == expected


@pytest.mark.parametrize("text, m, message", [("0,6", None, "out of range"), ("0,2", 3, "differs"),
                                               ("every", None, "expects"), ("uniform", 7, "distinct")])
def test_bad_layer_selection(text, m, message):
    with pytest.raises(ConfigError, match=message):
        parse_layer_selection(text, 6, m)


def test_default_student_is_half_depth_at_the_teachers_width(teacher):
    student, layers = build_student(teacher.model.config, StudentConfig(), seed=0)
    c, t = student.config, teacher.model.config
    assert layers is None
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (2, 32, 4, 64)
    assert c.vocab_size == t.vocab_size
    assert not torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.model.bert.embeddings.word_embeddings.weight)
    narrow, _ = build_student(t, StudentConfig(layers=1, hidden=16, heads=2), seed=0)
    assert (narrow.config.num_hidden_layers, narrow.config.hidden_size, narrow.config.intermediate_size) == (1, 16, 32)
    with pytest.raises(ConfigError, match="do not divide"):
        build_student(t, StudentConfig(hidden=30, heads=4), seed=0)


def test_init_from_teacher_copies_the_selected_layers(teacher):
    student, layers = build_student(teacher.model.config, StudentConfig(init_from_teacher="3,1"), seed=0,
                                    teacher=teacher.model)
    assert layers == [3, 1] and student.config.num_hidden_layers == 2
    s_state, t_state = student.state_dict(), teacher.model.state_dict()
    for s_index, t_index in enumerate(layers):
        prefix_s, prefix_t = f"bert.encoder.layer.{s_index}.", f"bert.encoder.layer.{t_index}."
        names = [k for k in t_state if k.startswith(prefix_t)]
        assert names
        for name in names:
            assert torch.equal(s_state[prefix_s + name[len(prefix_t):]], t_state[name]), name
    for name in [k for k in t_state if k.startswith(("bert.embeddings.", "cls."))]:
        assert torch.equal(s_state[name], t_state[name]), name
    assert student.cls.predictions.decoder.weight is student.bert.embeddings.word_embeddings.weight  # still tied
    with pytest.raises(ConfigError, match="differs from the teacher"):
        build_student(teacher.model.config, StudentConfig(init_from_teacher="uniform", hidden=16), seed=0,
                      teacher=teacher.model)


def test_bare_encoder_checkpoint_gets_a_fresh_reproducible_head(files):
    root, _, _ = files
    bare = resolve_model(str(write_teacher(root / "bare", with_head=False)))
    a, b = load_teacher(bare, seed=5), load_teacher(bare, seed=5)
    assert a.head_is_fresh and any(k.startswith("cls.predictions.transform") for k in a.missing_keys)
    assert torch.equal(a.model.cls.predictions.transform.dense.weight, b.model.cls.predictions.transform.dense.weight)
    assert not load_teacher(resolve_model(str(files[1])), seed=0).head_is_fresh


def test_head_warmup_trains_only_the_head_and_the_student_loads_everywhere(files):
    root, _, corpus = files
    bare = write_teacher(root / "bare-warm", with_head=False, seed=3)
    cfg = tiny_config(bare, corpus, "scratch", student={"init_from_teacher": "all", "freeze_encoder": True},
                      optim={"learning_rate": 1e-2})
    run = run_pretrain(cfg, root / "warm")
    report = read_json(run.path / "report.json")
    before = load_teacher(resolve_model(str(bare)), seed=cfg.optim.seed).model
    after = AutoModelForMaskedLM.from_pretrained(run.path / "student")
    for name, value in before.bert.state_dict().items():
        assert torch.equal(after.bert.state_dict()[name], value), name  # encoder + embeddings frozen
    assert not torch.equal(after.cls.predictions.transform.dense.weight, before.cls.predictions.transform.dense.weight)
    assert report["curve"][-1]["loss"] != report["curve"][0]["loss"]
    assert report["student"]["frozen_encoder"] and report["student"]["init_from_teacher_layers"] == [0, 1, 2, 3]
    # frozen encoder: 1 × its forward; the head 3 × forward on the masked positions (hand count)
    h, f, L, V = 32, 64, 16, after.config.vocab_size
    layer = 4 * 2 * L * h * h + 4 * L * L * h + 2 * 2 * L * h * f
    stream = prepare_arm(cfg).stream
    masked = [int((stream[i]["labels"] != -100).sum()) for i in range(len(stream))]
    assert report["compute"]["student_flops"] == sum(4 * layer + 3 * m * (2 * h * h + 2 * h * V) for m in masked)

    encoder = AutoModel.from_pretrained(run.path / "student")
    assert type(encoder).__name__ == "BertModel"
    classifier = AutoModelForSequenceClassification.from_pretrained(run.path / "student", num_labels=2)
    torch.testing.assert_close(classifier.bert.encoder.layer[0].output.dense.weight,
                               after.bert.encoder.layer[0].output.dense.weight)
