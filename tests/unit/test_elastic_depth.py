"""The depth axis of decoders (``--drop-layers``): an empty layer (no heads, no FFN units)
is the identity of a pre-norm decoder, so masking it equals removing it; the uniform map
drops the layers of least block importance at every level above 0; parameter counts;
refusals (tiny random LLaMA-family models with GQA, and SmolLM2's sizes)."""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from minidisc.compute.flops import non_embedding_params
from minidisc.elastic import Importance, SubnetSpec, load_student, make_elastic, save_student
from minidisc.elastic.extract import drop_empty_layers_
from minidisc.elastic.sparsity_map import sparsity_map
from minidisc.elastic.uniform_map import uniform_sparsity_map
from minidisc.errors import ConfigError
from tests.elastic_helpers import DECODERS, random_batch, randomize_, tiny_bert, tiny_decoder

SMOLLM2 = LlamaConfig(  # SmolLM2-135M's sizes (config only: no weights are built)
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, head_dim=64, tie_word_embeddings=True,
)
AXES = ("heads", "neurons", "hidden", "layers")


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def _sparsity(config, spec):
    return 1 - non_embedding_params(config, spec) / non_embedding_params(config)


def _importance(layers, num_layers=30, heads=9, units=1536, width=576):
    return Importance(torch.ones(num_layers, heads), torch.ones(num_layers, units), hidden=torch.ones(width),
                      layers=None if layers is None else torch.tensor(layers, dtype=torch.float32))


@pytest.mark.parametrize("kind", DECODERS)
def test_an_empty_layer_is_removed_without_changing_the_logits(kind, tmp_path):
    if kind == "qwen3":  # attention_bias would put a bias on o_proj; the default has none
        assert not tiny_decoder(kind).config.attention_bias
    model = randomize_(tiny_decoder(kind, tie_word_embeddings=True), seed=3)
    em = make_elastic(model)
    spec = SubnetSpec((4, 0, 2), (40, 0, 16), hidden=24)  # layer 1 keeps nothing
    assert spec.empty_layers() == (1,)
    batch = random_batch(seed=4)
    with em.active(spec):
        expected = _logits(em, batch)
    student = em.extract(spec)
    assert drop_empty_layers_(student) == (1,)
    assert student.config.num_hidden_layers == 2 and len(student.model.layers) == 2
    torch.testing.assert_close(_logits(student, batch), expected, atol=1e-5, rtol=0)
    # the exported student is an ordinary two-layer model with its own sizes
    save_student(student, tmp_path / "s", spec.without_layers((1,)))
    again = load_student(tmp_path / "s")
    assert again.config.minidisc_subnet["heads"] == [4, 2]
    torch.testing.assert_close(_logits(again, batch), expected, atol=1e-5, rtol=0)
    # parameters: the empty layer counts nothing, its norms included
    real = sum(p.numel() for p in student.model.layers.parameters()) + student.model.norm.weight.numel()
    assert non_embedding_params(model.config, spec) == real == non_embedding_params(again.config)


def test_nothing_is_removed_where_an_empty_layer_is_not_the_identity():
    from minidisc.elastic.families import family_for

    bert = make_elastic(tiny_bert())  # post-norm: the LayerNorms still act on an empty layer
    assert not family_for(bert.model).geometry(bert.model.config).empty_layer_is_identity
    student = bert.extract(SubnetSpec((4, 0, 4), (48, 0, 48)))
    assert drop_empty_layers_(student) == () and len(student.bert.encoder.layer) == 3
    biased = tiny_decoder("llama", mlp_bias=True)  # an FFN output bias: not the identity either
    assert not family_for(biased).geometry(biased.config).empty_layer_is_identity


def test_weakest_layers_by_block_importance():
    imp = _importance([0.9, 0.1, 0.5, 0.1, 0.3], num_layers=5)
    assert imp.weakest_layers(0) == ()
    assert imp.weakest_layers(1) == (3,)  # a tie goes to the later layer
    assert imp.weakest_layers(3) == (1, 3, 4)
    with pytest.raises(ConfigError, match="between 0 and 4"):
        imp.weakest_layers(5)
    with pytest.raises(ConfigError, match="block importance"):
        _importance(None, num_layers=5).weakest_layers(1)


def test_uniform_map_drops_the_weakest_layers_above_level_zero():
    block = [1.0] * 30
    block[27], block[25], block[3] = 0.01, 0.02, 0.03
    grid = (0.0, 0.05, 0.25, 0.5, 0.75)
    specs = uniform_sparsity_map(SMOLLM2, _importance(block), grid, axes=AXES, drop_layers=3)
    assert specs[0.0] == SubnetSpec.uniform(30, 9, 1536, sparsity=0.0)  # the teacher keeps every layer
    for lo, hi in itertools.pairwise(grid):
        assert specs[hi].fits_in(specs[lo])
    for s in grid[1:]:
        spec = specs[s]
        assert spec.empty_layers() == (3, 25, 27) and spec.sparsity == s
        kept = spec.without_layers(spec.empty_layers())
        assert kept.is_uniform and kept.num_layers == 27
        assert spec.hidden is None or spec.hidden % kept.heads[0] == 0  # LlamaConfig's rule
        assert s <= _sparsity(SMOLLM2, spec) < s + 0.05
    # 3 of 30 layers are 10 % of the non-embedding parameters (less the final norm):
    # the 5 % level is the depth cut alone, the 25 % level cuts width in the 27 layers left
    assert specs[0.05].hidden is None and specs[0.05].heads[3] == 0 and specs[0.05].neurons[0] == 1536
    assert 0.099 < _sparsity(SMOLLM2, specs[0.05]) < 0.1
    assert specs[0.25].hidden is not None or specs[0.25].neurons[0] < 1536
    # without depth the same levels keep all 30 layers
    plain = uniform_sparsity_map(SMOLLM2, _importance(block), grid, axes=AXES)
    assert all(not spec.empty_layers() for spec in plain.values())


def test_drop_layers_refusals():
    imp = _importance([1.0] * 30)
    with pytest.raises(ConfigError, match="needs layer_shapes uniform"):
        sparsity_map(imp, (0.0, 0.5), group_size=3, axes=AXES, layer_shapes="global", drop_layers=2)
    with pytest.raises(ConfigError, match="cannot drop whole layers"):
        uniform_sparsity_map(SMOLLM2, imp, (0.0, 0.5), axes=("heads", "neurons", "hidden"), drop_layers=2)
    with pytest.raises(ConfigError, match="block importance"):
        uniform_sparsity_map(SMOLLM2, _importance(None), (0.0, 0.5), axes=AXES, drop_layers=2)
    with pytest.raises(ConfigError, match="between 0 and 29"):
        uniform_sparsity_map(SMOLLM2, imp, (0.0, 0.5), axes=AXES, drop_layers=30)


def test_elastic_map_with_dropped_layers_equals_its_plain_transformers_export(tmp_path):
    em = make_elastic(randomize_(tiny_decoder("llama", tie_word_embeddings=True), seed=2))
    gen = torch.Generator().manual_seed(0)
    imp = em.reorder(Importance(torch.rand(3, 4, generator=gen), torch.rand(3, 40, generator=gen),
                                hidden=torch.rand(32, generator=gen), layers=torch.tensor([0.5, 0.1, 0.9])).normalize())
    specs = em.sparsity_map(imp, (0.0, 0.25, 0.5), drop_layers=1)
    batch = random_batch(seed=7)
    for s in (0.25, 0.5):
        spec = specs[s]
        assert spec.empty_layers() == (1,)
        with em.active(spec):
            expected = _logits(em, batch)
        student = em.extract(spec)
        save_student(student, tmp_path / f"s{s}", spec.without_layers(drop_empty_layers_(student)))
        plain = AutoModelForCausalLM.from_pretrained(tmp_path / f"s{s}").eval()  # a plain LlamaConfig
        assert plain.config.num_hidden_layers == 2
        torch.testing.assert_close(_logits(plain, batch), expected, atol=1e-5, rtol=0, msg=str(s))


def test_depth_shapes_reach_each_level_by_whole_layers_only():
    block = [1.0] * 30
    block[27], block[25], block[3], block[10] = 0.01, 0.02, 0.03, 0.04
    order = (27, 25, 3, 10)  # least block importance first
    grid = (0.0, 0.05, 0.1, 0.25, 0.5)
    specs = sparsity_map(_importance(block), grid, group_size=3, axes=AXES, layer_shapes="depth", config=SMOLLM2)
    assert specs[0.0] == SubnetSpec.uniform(30, 9, 1536, sparsity=0.0)
    for lo, hi in itertools.pairwise(grid):
        assert specs[hi].fits_in(specs[lo])  # nested: each level removes a prefix of one order
    for s in grid:
        spec = specs[s]
        kept = spec.without_layers(spec.empty_layers())
        assert spec.sparsity == s and spec.hidden is None and kept.is_uniform
        assert kept.heads[0] == 9 and kept.neurons[0] == 1536  # full width in every layer that stays
        n = len(spec.empty_layers())
        assert s <= n / 30 < s + 1 / 30  # the fewest layers whose share reaches the level
        # counted: the layers' share less the final norm's (576 of 106.2 M parameters)
        assert n / 30 - 1e-5 < _sparsity(SMOLLM2, spec) <= n / 30
    assert specs[0.05].empty_layers() == tuple(sorted(order[:2]))  # 2/30 = 6.7 %
    assert specs[0.1].empty_layers() == tuple(sorted(order[:3]))  # 3/30 is the level itself
    assert len(specs[0.25].empty_layers()) == 8 and len(specs[0.5].empty_layers()) == 15


def test_depth_shapes_refusals():
    imp = _importance([1.0] * 30)
    with pytest.raises(ConfigError, match="needs layer_shapes uniform"):
        sparsity_map(imp, (0.0, 0.5), group_size=3, axes=AXES, layer_shapes="depth", config=SMOLLM2, drop_layers=2)
    with pytest.raises(ConfigError, match="block importance"):
        sparsity_map(_importance(None), (0.0, 0.5), group_size=3, axes=AXES, layer_shapes="depth", config=SMOLLM2)
    with pytest.raises(ConfigError, match="no depth cut reaches sparsity 0.99"):  # 30 of 30 layers
        sparsity_map(imp, (0.0, 0.99), group_size=3, axes=AXES, layer_shapes="depth", config=SMOLLM2)
    with pytest.raises(ConfigError, match=r"leave align \(--align\) at 1"):
        sparsity_map(imp, (0.0, 0.5), group_size=3, axes=AXES, layer_shapes="depth", config=SMOLLM2, align=64)
    with pytest.raises(ConfigError, match="needs the model's config"):
        sparsity_map(imp, (0.0, 0.5), group_size=3, axes=AXES, layer_shapes="depth")
    with pytest.raises(ConfigError, match="unknown layer shapes"):
        sparsity_map(imp, (0.0, 0.5), layer_shapes="deep")  # type: ignore[arg-type]
