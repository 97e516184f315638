"""Architecture families: adding one is one class (DistilBERT here, registered by the
test), and each family answers what slicing, importance, capture, FLOP counts, pretraining
and layer dropping ask."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from transformers import DistilBertConfig, DistilBertForSequenceClassification

from minidisc.compute.flops import non_embedding_params
from minidisc.elastic import SubnetSpec, families, load_student, make_elastic, save_student
from minidisc.elastic.families import Family, Geometry, family_for, register_family
from minidisc.elastic.spec import NEURONS
from minidisc.errors import ConfigError, ModelError
from minidisc.objectives import forward_with_signals
from tests.elastic_helpers import (
    DECODERS,
    VOCAB,
    random_batch,
    randomize_,
    tiny_bert,
    tiny_decoder,
)


class DistilBertFamily(Family):
    """DistilBERT in a few lines: its module paths, its config's size names."""

    name = "distilbert"
    model_types = frozenset({"distilbert"})
    layers_path = "transformer.layer"
    attention_path = "attention"  # projects its own context with out_lin
    q_path, k_path, v_path, o_path = (f"attention.{n}" for n in ("q_lin", "k_lin", "v_lin", "out_lin"))
    ffn_in_paths = ("ffn.lin1",)
    ffn_out_path = "ffn.lin2"

    def geometry(self, config):
        h, heads = config.dim, config.n_heads
        return Geometry(num_layers=config.n_layers, hidden_size=h, num_heads=heads, num_kv_heads=heads,
                        head_dim=h // heads, intermediate_size=config.hidden_dim, gated_ffn=False, qkv_bias=True,
                        o_bias=True, ffn_bias=True, norm_params_per_layer=4 * h, final_norm_params=0,
                        vocab_size=config.vocab_size)

    def write_uniform_sizes(self, config, spec):
        config.hidden_dim = spec.neurons[0]
        return spec.heads[0] == config.n_heads  # the head size is tied to dim / n_heads


class NeuronsOnlyFamily(DistilBertFamily):
    """The same architecture with its heads kept whole: only FFN units are pruned."""

    name = "distilbert-neurons"
    pruned_axes = (NEURONS,)


@pytest.fixture
def registry(monkeypatch):
    """Registrations of a test are undone after it."""
    monkeypatch.setattr(families, "FAMILIES", list(families.FAMILIES))


def tiny_distilbert(attn: str = "sdpa"):
    """3 layers, width 32, 4 heads of 8, FFN 48, no dropout; random weights and biases."""
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=3, n_heads=4, hidden_dim=48,
                              max_position_embeddings=40, dropout=0.0, attention_dropout=0.0,
                              seq_classif_dropout=0.0, num_labels=3, attn_implementation=attn)
    return randomize_(DistilBertForSequenceClassification(config).eval())


def _labelled(seed=0):
    return random_batch(seed=seed, labels=torch.tensor([0, 2, 1]))


def _logits(model, batch):
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


@contextmanager
def _masked(model, family, spec, head_dim):
    """Reference: zero the pruned heads' context and pruned units' activations of the
    full model (independent of minidisc's slicing)."""
    handles = []
    for layer, heads, units in zip(family.layers(model), spec.heads, spec.neurons):

        def zero_from(start):
            def hook(_module, args):
                x = args[0].clone()
                x[..., start:] = 0
                return (x,)

            return hook

        handles.append(layer.get_submodule(family.o_path).register_forward_pre_hook(zero_from(heads * head_dim)))
        handles.append(layer.get_submodule(family.ffn_out_path).register_forward_pre_hook(zero_from(units)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def test_distilbert_is_not_supported_until_registered(registry):
    model = tiny_distilbert()
    with pytest.raises(ModelError, match="distilbert"):
        family_for(model)
    family = register_family(DistilBertFamily())
    assert family_for(model) is family and family_for(model.config) is family


def test_a_registered_family_scores_reorders_slices_and_extracts(registry, tmp_path):
    register_family(DistilBertFamily())
    model = tiny_distilbert()
    batch = _labelled()
    full = _logits(model, batch)
    em = make_elastic(model)
    geo = em.geometry
    assert (geo.num_layers, geo.num_heads, geo.head_dim, geo.intermediate_size) == (3, 4, 8, 48)

    # importance = |dL/dm|, which equals |Σ dL/dW ⊙ W| over the columns a mask entry scales
    raw = em.importance([batch], normalize=False, progress=False)
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    for index, layer in enumerate(em.family.layers(model)):
        o = layer.get_submodule(em.family.o_path)
        down = layer.get_submodule(em.family.ffn_out_path)
        heads = (o.weight.grad * o.weight).sum(0).reshape(-1, geo.head_dim).sum(1).abs()
        torch.testing.assert_close(raw.heads[index], heads, rtol=1e-3, atol=1e-6)
        torch.testing.assert_close(raw.neurons[index], (down.weight.grad * down.weight).sum(0).abs(),
                                   rtol=1e-3, atol=1e-6)
    model.zero_grad(set_to_none=True)

    importance = em.reorder(raw.normalize())
    torch.testing.assert_close(_logits(model, batch), full, atol=1e-5, rtol=0)  # same function
    specs = em.sparsity_map(importance, (0.0, 0.5, 0.9))
    assert specs[0.9].total_heads() < specs[0.5].total_heads() < specs[0.0].total_heads() == 12
    hetero = SubnetSpec((0, 3, 1), (16, 0, 40))  # a layer without heads, one without units
    for spec in (*specs.values(), hetero):
        with em.active(spec):
            sliced = _logits(em, batch)
        with _masked(model, em.family, spec, geo.head_dim):
            masked = _logits(model, batch)
        torch.testing.assert_close(sliced, masked, atol=1e-5, rtol=0)

    student = em.extract(hetero)
    assert student.distilbert.transformer.layer[1].attention.q_lin.weight.shape == (3 * 8, 32)
    with em.active(hetero):
        expected = _logits(em, batch)
    torch.testing.assert_close(_logits(student, batch), expected, atol=1e-5, rtol=0)
    save_student(student, tmp_path / "s")
    torch.testing.assert_close(_logits(load_student(tmp_path / "s"), batch), expected, atol=1e-5, rtol=0)


def test_a_registered_family_is_captured_and_counted(registry):
    register_family(DistilBertFamily())
    model = tiny_distilbert(attn="eager")
    batch = random_batch()
    with torch.no_grad():
        signals = forward_with_signals(model, batch, need_qkv=True)
        reference = model(**batch, output_attentions=True)
    assert len(signals.queries) == 3 and signals.queries[0].shape == (3, 4, 9, 8) and not signals.is_causal
    real_rows = batch["attention_mask"].bool()[:, None, :, None]
    for layer in range(3):
        probs = signals.attention_probs(layer, batch["attention_mask"])
        torch.testing.assert_close(probs * real_rows, reference.attentions[layer] * real_rows, atol=1e-6, rtol=0)
    counted = sum(p.numel() for p in model.distilbert.transformer.parameters())
    assert non_embedding_params(model.config) == counted


def test_pruned_axes_decide_what_is_scored_mapped_and_cut(registry):
    register_family(NeuronsOnlyFamily())
    model = tiny_distilbert()
    em = make_elastic(model)
    importance = em.importance([_labelled(0), _labelled(1)], progress=False)
    assert torch.all(importance.heads == 0)  # heads are not scored
    torch.testing.assert_close(importance.neurons.norm(dim=1), torch.ones(3))
    specs = em.sparsity_map(em.reorder(importance), (0.0, 0.5, 0.9))
    assert all(spec.heads == (4, 4, 4) for spec in specs.values())
    assert specs[0.9].total_neurons() < specs[0.5].total_neurons() < specs[0.0].total_neurons() == 144
    with pytest.raises(ConfigError, match="does not prune heads"):
        em.activate(SubnetSpec((4, 2, 4), (48, 48, 48)))
    with pytest.raises(ConfigError, match="does not prune heads"):
        em.extract(SubnetSpec((4, 0, 4), (48, 48, 48)))
    attention = em.family.layers(model)[0].get_submodule(em.family.attention_path)
    assert not hasattr(attention, "minidisc_skip")  # never skipped: it always keeps its heads


def test_register_family_refuses_taken_model_types_names_and_unknown_axes(registry):
    class Clash(DistilBertFamily):
        name = "bert-again"
        model_types = frozenset({"distilbert", "roberta"})

    with pytest.raises(ConfigError, match="roberta.*'bert'"):
        register_family(Clash())
    with pytest.raises(ConfigError, match="name 'llama'"):
        register_family(type("Llama2", (DistilBertFamily,), {"name": "llama"})())
    with pytest.raises(ConfigError, match="unknown axes"):
        register_family(type("Moe", (DistilBertFamily,), {"name": "moe", "pruned_axes": ("experts",)})())
    with pytest.raises(ConfigError, match="names no embedding_path"):  # hidden needs its modules named
        register_family(type("Wide", (DistilBertFamily,), {"name": "wide", "pruned_axes": ("hidden",)})())
    register_family(DistilBertFamily())
    with pytest.raises(ConfigError, match="already|belong"):
        register_family(DistilBertFamily())


@pytest.mark.parametrize("kind", ["bert", "roberta", *DECODERS])
def test_each_family_counts_its_own_parameters(kind):
    model = tiny_decoder(kind) if kind in DECODERS else tiny_bert(kind)
    family = family_for(model)
    assert family.name == ("bert" if kind == "roberta" else kind)
    body = model.base_model  # excluded: embeddings (and their LayerNorm), BERT's pooler
    counted = sum(p.numel() for name, p in body.named_parameters() if not name.startswith(("embed", "pooler")))
    assert non_embedding_params(model.config) == counted


@pytest.mark.parametrize("kind", DECODERS)
def test_decoder_families_answer_pretraining_and_capture(kind):
    from minidisc.pretrain.config import StudentConfig
    from minidisc.pretrain.student import lm_head, student_config
    from minidisc.tasks.lm_types import CAUSAL_LM, lm_type_of

    model = randomize_(tiny_decoder(kind, attn_implementation="eager"))
    assert lm_type_of(model.config) is CAUSAL_LM and lm_head(model) is model.lm_head
    config, _ = student_config(model.config, StudentConfig(layers=2, hidden=48, heads=6))
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (
        2, 6, 3, 8)
    with pytest.raises(ConfigError, match="do not divide the 4 query heads"):
        student_config(model.config, StudentConfig(kv_heads=3))

    batch = random_batch()
    with torch.no_grad():
        signals = forward_with_signals(model, batch, need_qkv=True)
        reference = model(**batch, output_attentions=True)
    assert signals.is_causal and signals.keys[0].shape == (3, 2, 9, 8)  # KV heads, not expanded
    real_rows = batch["attention_mask"].bool()[:, None, :, None]
    for layer in range(3):
        probs = signals.attention_probs(layer, batch["attention_mask"])
        torch.testing.assert_close(probs * real_rows, reference.attentions[layer] * real_rows, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["bert", *DECODERS])
def test_keep_layers_drops_renumbers_and_cuts_per_layer_lists(kind):
    from minidisc.schedules.students import drop_layers

    model = randomize_(tiny_decoder(kind) if kind in DECODERS else tiny_bert(kind))
    family = family_for(model)
    student = drop_layers(model, [0, 2])
    assert len(family.layers(model)) == 3  # the teacher is untouched
    kept = family.layers(student)
    assert len(kept) == 2 and student.config.num_hidden_layers == 2
    if isinstance(getattr(model.config, "layer_types", None), list):
        assert student.config.layer_types == [model.config.layer_types[i] for i in (0, 2)]
    for new_index, layer in enumerate(kept):
        indices = {m.layer_idx for m in layer.modules() if isinstance(getattr(m, "layer_idx", None), int)}
        assert indices <= {new_index}
    for old, new in zip((0, 2), kept):
        for (name, p), q in zip(family.layers(model)[old].named_parameters(), new.parameters()):
            assert torch.equal(p, q), name
    if kind in DECODERS:  # the KV cache follows the new layer indices
        ids = random_batch(batch=2, length=7)["input_ids"]
        with torch.no_grad():
            whole = student(input_ids=ids).logits
            first = student(input_ids=ids[:, :6], use_cache=True)
            step = student(input_ids=ids[:, 6:], past_key_values=first.past_key_values, use_cache=True).logits
        torch.testing.assert_close(step[:, -1], whole[:, -1], atol=1e-5, rtol=0)
