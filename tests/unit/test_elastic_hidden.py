"""The hidden-width axis of decoders: slicing = masking, reorder, export, uniform maps,
parameter accounting, refusals (tiny random LLaMA-family models with GQA, tied and
untied embeddings)."""

from __future__ import annotations

import itertools
import json
from contextlib import contextmanager

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from minidisc.compute.flops import forward_flops, non_embedding_params, total_params
from minidisc.elastic import Importance, SubnetSpec, load_student, make_elastic, save_student
from minidisc.elastic.modules import rms_norm
from minidisc.elastic.sparsity_map import default_layer_shapes, model_sparsity_map, sparsity_map
from minidisc.elastic.uniform_map import uniform_path, uniform_sparsity_map
from minidisc.errors import ConfigError
from tests.elastic_helpers import (
    DECODERS,
    mask_heads_and_units,
    random_batch,
    randomize_,
    tiny_bert,
    tiny_decoder,
)

# tiny decoders: 3 layers, width 32, 4 query heads of 8 in 2 KV groups, FFN 40
SPECS = [
    SubnetSpec((0, 2, 4), (16, 0, 39), hidden=16),
    SubnetSpec((4, 4, 2), (40, 8, 1), hidden=8),
    SubnetSpec((2, 2, 2), (16, 16, 16), hidden=24),
    SubnetSpec((4, 4, 4), (40, 40, 40), hidden=32),
]


def _model(kind="llama", tied=False, head="causal_lm", seed=0):
    return randomize_(tiny_decoder(kind, head=head, seed=seed, tie_word_embeddings=tied), seed=seed)


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def _random_importance(geo, seed=1, hidden=True):
    gen = torch.Generator().manual_seed(seed)
    return Importance(
        torch.rand(geo.num_layers, geo.num_heads, generator=gen),
        torch.rand(geo.num_layers, geo.intermediate_size, generator=gen),
        hidden=torch.rand(geo.hidden_size, generator=gen) if hidden else None,
    ).normalize()


@contextmanager
def _masked(model, family, spec, head_dim):
    """Reference on the full model, with hooks written here: pruned heads' contexts and
    units' activations are zeroed; the residual stream is zero in the cut channels
    (embedding output and every attention / FFN output zeroed there), and every RMSNorm
    takes its mean square over the kept channels only (the cut ones output 0)."""
    h = spec.hidden or model.config.hidden_size
    handles = []

    def zero_cut(_m, _args, out):
        out = out.clone()
        out[..., h:] = 0
        return out

    def norm_over_kept(m, args, _out):
        x = args[0]
        kept = x[..., :h].float()
        scale = torch.rsqrt((kept * kept).sum(-1, keepdim=True) / h + m.variance_epsilon)
        out = torch.zeros_like(x)
        out[..., :h] = m.weight[:h] * (kept * scale).to(x.dtype)
        return out

    handles.append(family.embedding(model).register_forward_hook(zero_cut))
    for norm in family.hidden_norms(model):
        handles.append(norm.register_forward_hook(norm_over_kept))
    handles.extend(mask_heads_and_units(model, family, spec, head_dim))
    for layer in family.layers(model):
        for path in (family.o_path, family.ffn_out_path):
            handles.append(layer.get_submodule(path).register_forward_hook(zero_cut))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# --- slicing ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind, tied", [*((k, False) for k in DECODERS), ("llama", True), ("qwen3", True)])
def test_hidden_and_head_slicing_equals_masking(kind, tied):
    model = _model(kind, tied)
    em = make_elastic(model)
    batch = random_batch()
    for spec in SPECS:
        with torch.no_grad():
            with em.active(spec):
                sliced = em(**batch).logits
            with _masked(model, em.family, spec, em.geometry.head_dim):
                masked = model(**batch).logits
        torch.testing.assert_close(sliced, masked, atol=1e-5, rtol=0, msg=str(spec))
    assert em.spec == em.full_spec()


@pytest.mark.parametrize("kind, tied", [*((k, True) for k in DECODERS), ("llama", False)])
def test_active_equals_physically_extracted(kind, tied):
    """The elastic forward (sliced embedding, RMSNorm over the kept channels) against
    the extracted model, whose modules are transformers' own classes with cut weights."""
    em = make_elastic(_model(kind, tied))
    batch = random_batch(seed=3)
    for spec in SPECS:
        with em.active(spec):
            expected = _logits(em, batch)
        student = em.extract(spec)
        h = spec.hidden
        assert student.config.hidden_size == h and student.config.head_dim == 8
        assert student.model.embed_tokens.weight.shape == (64, h)
        assert type(student.model.embed_tokens) is torch.nn.Embedding
        assert type(student.lm_head) is torch.nn.Linear and student.lm_head.in_features == h
        assert all(type(n).__name__.endswith("RMSNorm") and n.weight.shape == (h,) for n in em.family.hidden_norms(student))
        assert (student.lm_head.weight is student.model.embed_tokens.weight) == tied
        torch.testing.assert_close(_logits(student, batch), expected, atol=1e-5, rtol=0, msg=str(spec))
    if kind == "qwen3":  # the per-head query/key norms keep the head size
        assert student.model.layers[0].self_attn.q_norm.weight.shape == (8,)


def test_classification_decoder_cuts_its_score_head():
    em = make_elastic(_model("llama", head="classification"))
    spec = SPECS[0]
    batch = random_batch()
    with em.active(spec):
        expected = _logits(em, batch)
    with torch.no_grad(), _masked(em.model, em.family, spec, 8):
        torch.testing.assert_close(em.model(**batch).logits, expected, atol=1e-5, rtol=0)
    student = em.extract(spec)
    assert student.score.in_features == 16
    torch.testing.assert_close(_logits(student, batch), expected, atol=1e-5, rtol=0)


def test_elastic_rms_norm_is_transformers_formula():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    norm = LlamaRMSNorm(32, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(32))
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(2, 5, 32).to(dtype)
        torch.testing.assert_close(rms_norm(x, norm.weight, norm.variance_epsilon), norm(x), atol=0, rtol=0)


def test_train_mode_gradients_reach_only_the_kept_channels():
    model = _model("llama", tied=True)
    em = make_elastic(model)
    model.train()
    batch = random_batch()
    batch["labels"] = batch["input_ids"].clone()
    with em.active(SPECS[0]):
        em(**batch).loss.backward()
    embedding = model.model.embed_tokens.weight.grad
    assert embedding[:, 16:].abs().sum() == 0 and embedding[:, :16].abs().sum() > 0
    assert model.model.norm.weight.grad[16:].abs().sum() == 0


def test_kv_cache_with_a_cut_width():
    em = make_elastic(_model("llama", tied=True))
    ids = random_batch(batch=2, length=7)["input_ids"]
    with torch.no_grad(), em.active(SPECS[0]):
        full = em(input_ids=ids).logits
        first = em(input_ids=ids[:, :6], use_cache=True)
        step = em(input_ids=ids[:, 6:], past_key_values=first.past_key_values, use_cache=True).logits
    torch.testing.assert_close(step[:, -1], full[:, -1], atol=1e-5, rtol=0)


# --- reorder ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind, tied", [*((k, False) for k in DECODERS), ("llama", True), ("qwen2", True)])
def test_reorder_by_hidden_importance_keeps_logits(kind, tied):
    model = _model(kind, tied)
    em = make_elastic(model)
    batch = random_batch()
    before = _logits(model, batch)
    embedding_before = model.model.embed_tokens.weight.detach().clone()
    imp = _random_importance(em.geometry)
    reordered = em.reorder(imp)
    torch.testing.assert_close(_logits(model, batch), before, atol=1e-5, rtol=1e-5)
    order = torch.sort(imp.hidden, descending=True, stable=True).indices
    torch.testing.assert_close(reordered.hidden, imp.hidden[order])
    assert torch.all(reordered.hidden[:-1] >= reordered.hidden[1:])
    torch.testing.assert_close(model.model.embed_tokens.weight, embedding_before[:, order])
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    # the prefix of the reordered model is the sub-network of the best channels
    spec = SubnetSpec((4, 4, 4), (40, 40, 40), hidden=12)
    with torch.no_grad(), em.active(spec):
        sliced = em(**batch).logits
    fresh = _model(kind, tied)  # the same weights, not reordered: mask the best 12 channels' complement
    perm_spec = SubnetSpec(spec.heads, spec.neurons, hidden=12)
    fresh_em = make_elastic(fresh)
    fresh_em.reorder(Importance(imp.heads * 0 + 1, imp.neurons * 0 + 1, hidden=imp.hidden))
    with torch.no_grad(), fresh_em.active(perm_spec):
        torch.testing.assert_close(fresh_em(**batch).logits, sliced, atol=1e-5, rtol=1e-5)


def test_reorder_refuses_a_wrong_hidden_shape():
    from minidisc.errors import ModelError

    em = make_elastic(_model())
    imp = _random_importance(em.geometry)
    with pytest.raises(ModelError, match="width"):
        em.reorder(Importance(imp.heads, imp.neurons, hidden=torch.rand(31)))


def test_encoder_reorders_its_hidden_channels_without_changing_the_logits():
    em = make_elastic(randomize_(tiny_bert()))
    batch = random_batch()
    full = _logits(em, batch)
    geo = em.geometry
    imp = Importance(torch.ones(3, 4), torch.ones(3, 48), hidden=torch.rand(geo.hidden_size))
    out = em.reorder(imp)
    assert torch.equal(out.hidden, imp.hidden.sort(descending=True).values)
    torch.testing.assert_close(_logits(em, batch), full, atol=1e-5, rtol=0)


# --- export -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind, tied", [*((k, True) for k in DECODERS), ("llama", False)])
def test_uniform_student_loads_with_plain_transformers_and_generates(kind, tied, tmp_path):
    em = make_elastic(_model(kind, tied))
    em.reorder(_random_importance(em.geometry))
    spec = SubnetSpec.uniform(3, 2, 16, sparsity=0.5, hidden=24)
    batch = random_batch()
    with em.active(spec):
        expected = _logits(em, batch)
        prompt = batch["input_ids"][1:, :5]
        with torch.no_grad():
            elastic_tokens = em.model.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=0)
    save_student(em, tmp_path / "s", spec)
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert (config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]) == (24, 2, 1)
    assert (config["head_dim"], config["intermediate_size"]) == (8, 16)
    assert config["minidisc_subnet"]["hidden"] == 24

    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "s").eval()
    assert type(plain) is type(em.model)
    torch.testing.assert_close(_logits(plain, batch), expected, atol=1e-5, rtol=0)
    assert (plain.lm_head.weight is plain.model.embed_tokens.weight) == tied
    with torch.no_grad():
        tokens = plain.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert tokens.shape == (2, 11)
    assert torch.equal(tokens, elastic_tokens)

    loaded = load_student(tmp_path / "s")  # minidisc's loader agrees
    torch.testing.assert_close(_logits(loaded, batch), expected, atol=1e-5, rtol=0)
    assert (loaded.lm_head.weight is loaded.model.embed_tokens.weight) == tied
    if tied:  # saved once
        from safetensors import safe_open

        with safe_open(str(tmp_path / "s" / "model.safetensors"), framework="pt") as f:
            assert "lm_head.weight" not in set(f.keys())


def test_heterogeneous_student_with_a_cut_width_round_trips(tmp_path):
    em = make_elastic(_model("llama", tied=True))
    spec = SPECS[0]
    batch = random_batch()
    with em.active(spec):
        expected = _logits(em, batch)
    save_student(em, tmp_path / "s", spec)
    loaded = load_student(tmp_path / "s")
    assert loaded.config.hidden_size == 16 and loaded.config.minidisc_subnet["hidden"] == 16
    torch.testing.assert_close(_logits(loaded, batch), expected, atol=1e-5, rtol=0)
    # saving the loaded student again keeps its recorded width
    save_student(loaded, tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["minidisc_subnet"]["hidden"] == 16
    with pytest.raises(ConfigError, match="width"):
        save_student(loaded, tmp_path / "bad", SubnetSpec(spec.heads, spec.neurons, hidden=8))


def test_student_with_a_cut_width_is_elastic_again():
    em = make_elastic(_model("llama", tied=True))
    ta = make_elastic(em.extract(SubnetSpec((4, 2, 4), (40, 24, 32), hidden=24)))
    smaller = SubnetSpec((2, 2, 2), (16, 8, 24), hidden=16)
    batch = random_batch()
    with em.active(smaller), ta.active(smaller):
        torch.testing.assert_close(_logits(ta, batch), _logits(em, batch), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="width"):
        ta.activate(SubnetSpec((4, 2, 4), (40, 24, 32), hidden=32))


# --- refusals ---------------------------------------------------------------------------


def test_hidden_is_refused_on_a_bert_lm_and_above_the_width():
    from transformers import BertForMaskedLM

    bert = make_elastic(BertForMaskedLM(tiny_bert().config))  # its MLM head is not sliced
    with pytest.raises(ConfigError, match="language model is not supported"):
        bert.activate(SubnetSpec((4, 4, 4), (48, 48, 48), hidden=16))
    llama = make_elastic(_model())
    with pytest.raises(ConfigError, match="more than the model's width 32"):
        llama.activate(SubnetSpec((4, 4, 4), (40, 40, 40), hidden=33))
    with pytest.raises(ConfigError):
        SubnetSpec((4,), (40,), hidden=0)
    assert llama.spec == llama.full_spec()
    # LlamaConfig cannot save a width that is not a multiple of its query heads
    odd = SubnetSpec((4, 4, 4), (40, 40, 40), hidden=6)
    with llama.active(odd):
        assert _logits(llama, random_batch()).shape == (3, 9, 64)  # it computes
    with pytest.raises(ConfigError, match="divisible by num_attention_heads"):
        llama.extract(odd)
    assert make_elastic(_model("mistral")).extract(odd).config.hidden_size == 6  # Mistral's config accepts it


# --- uniform sparsity map ---------------------------------------------------------------

SMOLLM2 = LlamaConfig(  # SmolLM2-135M's sizes (config only: no weights are built)
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, head_dim=64, tie_word_embeddings=True,
)
GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)


def _smollm2_importance(hidden=True):
    return Importance(torch.ones(30, 9), torch.ones(30, 1536), hidden=torch.ones(576) if hidden else None)


def _sparsity(config, spec):
    return 1 - non_embedding_params(config, spec) / non_embedding_params(config)


def _assert_nested(specs):
    for lo, hi in itertools.pairwise(sorted(specs)):
        assert specs[hi].fits_in(specs[lo]), (lo, hi)


def test_uniform_map_of_smollm2_is_nested_at_or_just_above_each_level():
    specs = model_sparsity_map(SMOLLM2, _smollm2_importance(), GRID)  # decoders default to uniform
    assert list(specs) == list(GRID)
    _assert_nested(specs)
    assert specs[0.0] == SubnetSpec.uniform(30, 9, 1536, sparsity=0.0)  # full width: hidden None
    for s, spec in specs.items():
        assert spec.is_uniform and spec.sparsity == s
        assert spec.hidden is None or spec.hidden % spec.heads[0] == 0  # LlamaConfig's rule
        assert all(n % 8 == 0 for n in spec.neurons) and all(h % 3 == 0 for h in spec.heads)
        achieved = _sparsity(SMOLLM2, spec)
        assert s <= achieved < s + (0.01 if spec.heads[0] == 9 or s >= 0.8 else 0.05), (s, achieved)
    # heads whole up to 60 %, hidden and FFN cut by about the same fraction
    half = specs[0.5]
    assert (half.heads[0], half.hidden, half.neurons[0]) == (9, 378, 1024)
    assert all(specs[s].heads[0] == 9 for s in GRID if s <= 0.6)
    assert specs[0.95].heads[0] < 9


def test_uniform_map_takes_the_first_shape_of_the_path_at_or_above_each_level():
    axes = ("heads", "neurons", "hidden")
    path = uniform_path(SMOLLM2, axes=axes)
    for (before, s_before), (after, s_after) in itertools.pairwise(path):
        assert after.fits_in(before) and s_after >= s_before
        changed = [before.heads != after.heads, before.neurons != after.neurons, before.hidden != after.hidden]
        assert sum(changed) == 1  # one size per step
    specs = uniform_sparsity_map(SMOLLM2, _smollm2_importance(), GRID, axes=axes)
    for s, spec in specs.items():
        index = next(i for i, (p, _) in enumerate(path) if SubnetSpec(p.heads, p.neurons, s, p.hidden) == spec)
        assert path[index][1] >= s and (index == 0 or path[index - 1][1] < s)
    # a level added later gets the spec it has in the whole map
    assert uniform_sparsity_map(SMOLLM2, _smollm2_importance(), (0.7,), axes=axes)[0.7] == specs[0.7]


def test_uniform_map_without_hidden_scores_keeps_the_width():
    specs = uniform_sparsity_map(SMOLLM2, _smollm2_importance(hidden=False), (0.0, 0.5, 0.9), axes=("heads", "neurons", "hidden"))
    assert all(spec.hidden is None for spec in specs.values())
    _assert_nested(specs)
    assert 0.9 <= _sparsity(SMOLLM2, specs[0.9]) < 0.91
    with pytest.raises(ConfigError, match="no uniform sub-network reaches sparsity 0.95 without cutting the hidden"):
        uniform_sparsity_map(SMOLLM2, _smollm2_importance(hidden=False), (0.95,), axes=("heads", "neurons", "hidden"))


def test_default_layer_shapes():
    from minidisc.elastic.families import family_for

    decoder, encoder = family_for(SMOLLM2), family_for(tiny_bert().config)
    assert default_layer_shapes(decoder, _smollm2_importance()) == "uniform"
    assert default_layer_shapes(decoder, _smollm2_importance(hidden=False)) == "global"  # cannot reach 95 %
    assert default_layer_shapes(encoder, Importance(torch.ones(3, 4), torch.ones(3, 48), hidden=torch.ones(32))) == "global"
    global_map = model_sparsity_map(SMOLLM2, _smollm2_importance(hidden=False), (0.5,))
    assert global_map == sparsity_map(_smollm2_importance(hidden=False), (0.5,), group_size=3)
    with pytest.raises(ConfigError, match="layer shapes"):
        sparsity_map(_smollm2_importance(), (0.5,), layer_shapes="ragged")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="config"):
        sparsity_map(_smollm2_importance(), (0.5,), layer_shapes="uniform")


@pytest.mark.parametrize("kind", DECODERS)
def test_uniform_map_subnetworks_equal_their_exports(kind):
    em = make_elastic(_model(kind, tied=True))
    imp = em.reorder(_random_importance(em.geometry))
    specs = em.sparsity_map(imp, (0.0, 0.25, 0.5, 0.75))
    _assert_nested(specs)
    assert specs[0.5].hidden is not None and specs[0.5].is_uniform
    batch = random_batch(seed=5)
    for s, spec in specs.items():
        assert _sparsity(em.model.config, spec) >= s
        with em.active(spec):
            expected = _logits(em, batch)
        torch.testing.assert_close(_logits(em.extract(spec), batch), expected, atol=1e-5, rtol=0, msg=str(s))
    global_specs = em.sparsity_map(imp, (0.5,), layer_shapes="global")
    assert global_specs[0.5].hidden is None  # the global map keeps the width


# --- accounting -------------------------------------------------------------------------


def test_params_and_flops_with_a_cut_width_by_hand():
    config = LlamaConfig(
        hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        intermediate_size=40, num_hidden_layers=1, vocab_size=100, tie_word_embeddings=False,
    )
    spec = SubnetSpec((2,), (8,), hidden=16)
    # h=16, one KV group (2 query heads of 8): q 16·16=256, k 16·8=128, v 128, o 256,
    # FFN 3·16·8=384, 2 RMSNorms 32, final RMSNorm 16
    assert non_embedding_params(config, spec) == 256 + 128 + 128 + 256 + 384 + 32 + 16 == 1200
    # + embeddings 100·16 + the untied LM head 100·16
    assert total_params(config, spec) == 1200 + 1600 + 1600
    assert total_params(config) == 7008 + 3200 + 3200  # full: test_flops' 7008
    config.tie_word_embeddings = True
    assert total_params(config, spec) == 1200 + 1600
    # T=4: Q 2·4·16·16=2048, K=V 2·4·16·8=1024 each, O 2048, attn 4·16·2·8=1024, FFN 3·2·4·16·8=3072
    assert forward_flops(config, spec, seq_len=4) == 2048 + 2 * 1024 + 2048 + 1024 + 3072
    assert forward_flops(config, spec, seq_len=4, lm_head=True) == 10240 + 2 * 4 * 16 * 100


def _count(params) -> int:
    return sum(p.numel() for p in params)


@pytest.mark.parametrize("kind, tied", [("llama", True), ("llama", False), ("qwen3", True), ("mistral", False), ("qwen2", True)])
def test_param_counts_match_real_models_with_a_cut_width(kind, tied):
    model = _model(kind, tied)
    em = make_elastic(model)
    assert total_params(model.config) == _count(model.parameters())  # shared tensors counted once
    for spec in SPECS:
        student = em.extract(spec)
        base = student.model
        real_non_embedding = _count(base.layers.parameters()) + _count(base.norm.parameters())
        assert non_embedding_params(model.config, spec) == real_non_embedding
        assert non_embedding_params(student.config) == real_non_embedding  # from the recorded spec
        assert total_params(model.config, spec) == _count(student.parameters())
        assert total_params(student.config) == _count(student.parameters())


def test_bert_total_params_are_embeddings_and_encoder():
    model = tiny_bert()
    assert total_params(model.config) == _count(model.bert.embeddings.parameters()) + _count(
        model.bert.encoder.parameters()
    )
