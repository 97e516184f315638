"""Hidden channels and whole layers of BERT-like encoders (issue 15, part 4): the same
Family route as the decoders' width and depth. A masked elastic sub-network that keeps
fewer channels and skips whole layers gives the logits of the student extracted from it,
saved and loaded back; importance scores channels and layers; the uniform map drops the
weakest layers and cuts the width, with the sparsity counted by the one parameter count."""

from __future__ import annotations

import itertools

import pytest
import torch

from minidisc.compute.flops import forward_flops, non_embedding_params
from minidisc.elastic import SubnetSpec, load_student, make_elastic, save_student
from minidisc.elastic.importance import compute_importance
from minidisc.elastic.io import loads_with_plain_transformers
from minidisc.errors import ConfigError
from tests.elastic_helpers import random_batch, randomize_, tiny_bert

SPEC = SubnetSpec((3, 0, 2), (40, 0, 16), hidden=24, dropped=(1,))  # layer 1 removed whole


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def _scored(kind: str):
    """A reordered elastic tiny encoder, scored on one labelled batch (channels and layers too)."""
    em = make_elastic(randomize_(tiny_bert(kind), seed=1))
    batch = random_batch(seed=2, labels=torch.tensor([0, 1, 2]))
    imp = compute_importance(em.model, em.family, [batch], hidden=True, layers=True, progress=False)
    return em, imp


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_fewer_channels_and_layers_extract_save_and_load_with_the_masked_logits(kind, tmp_path):
    em, imp = _scored(kind)
    batch = random_batch(seed=3)
    full = _logits(em, batch)
    em.reorder(imp)
    torch.testing.assert_close(_logits(em, batch), full, atol=1e-5, rtol=0)  # reorder keeps the function
    with em.active(SPEC):
        masked = _logits(em, batch)
    assert (masked - full).abs().max() > 1e-2  # the cut changes the function: the comparison below is not vacuous
    student = em.extract(SPEC)
    torch.testing.assert_close(_logits(student, batch), masked, atol=1e-5, rtol=0)
    base = student.base_model
    assert student.config.num_hidden_layers == 2 and len(base.encoder.layer) == 2
    assert student.config.hidden_size == 24 and student.config.head_dim == 8  # the head size stays the teacher's
    assert base.embeddings.position_embeddings.weight.shape[1] == 24
    assert base.embeddings.LayerNorm.bias.shape == (24,)
    assert not loads_with_plain_transformers(student.config)  # BertConfig cannot state heads of 8 at width 24
    save_student(student, tmp_path / "s")
    again = load_student(tmp_path / "s")
    torch.testing.assert_close(_logits(again, batch), masked, atol=1e-5, rtol=0)
    assert again.config.minidisc_subnet == {"heads": [3, 2], "neurons": [40, 16], "hidden": 24, "sparsity": None}
    # the parameter count of the student is the count of the spec in the teacher (dropped layer: nothing)
    counted = sum(p.numel() for p in again.base_model.encoder.parameters())
    assert non_embedding_params(again.config) == counted == non_embedding_params(em.model.config, SPEC)
    assert forward_flops(again.config) == forward_flops(em.model.config, SPEC)


def test_encoder_importance_scores_channels_and_layers():
    em, imp = _scored("bert")
    assert imp.hidden.shape == (32,) and imp.layers.shape == (3,)
    assert torch.all(imp.hidden >= 0) and imp.hidden.sum() > 0 and torch.all(imp.layers > 0)
    # masking the LayerNorm outputs reads the same loss: the head scores are those without the extra masks
    plain = compute_importance(em.model, em.family, [random_batch(seed=2, labels=torch.tensor([0, 1, 2]))],
                               progress=False)
    torch.testing.assert_close(plain.heads, imp.heads)


def test_uniform_map_of_an_encoder_drops_layers_and_cuts_the_width():
    em, imp = _scored("bert")
    imp = em.reorder(imp)
    specs = em.sparsity_map(imp, (0.0, 0.4, 0.7), layer_shapes="uniform", drop_layers=1)
    weakest = imp.weakest_layers(1)
    assert specs[0.0] == em.full_spec().with_sparsity(0.0)
    config = em.model.config
    for low, high in ((0.0, 0.4), (0.4, 0.7)):
        assert specs[high].fits_in(specs[low])
    for level in (0.4, 0.7):
        spec = specs[level]
        assert spec.dropped == weakest
        assert 1 - non_embedding_params(config, spec) / non_embedding_params(config) >= level
    assert specs[0.7].hidden is not None and specs[0.7].hidden < 32
    batch = random_batch(seed=4)
    with em.active(specs[0.7]):
        masked = _logits(em, batch)
    torch.testing.assert_close(_logits(em.extract(specs[0.7]), batch), masked, atol=1e-5, rtol=0)



def test_depth_map_of_an_encoder_skips_whole_layers_at_full_width():
    em, imp = _scored("bert")
    imp = em.reorder(imp)
    specs = em.sparsity_map(imp, (0.0, 0.3, 0.6), layer_shapes="depth")  # 3 layers: ⌈0.9⌉ = 1, ⌈1.8⌉ = 2
    assert specs[0.0] == em.full_spec().with_sparsity(0.0)
    assert specs[0.6].fits_in(specs[0.3])
    for level, n in ((0.3, 1), (0.6, 2)):
        spec = specs[level]
        assert spec.dropped == imp.weakest_layers(n) and spec.hidden is None  # post-norm: named, so skipped whole
        assert all(h in (0, 4) for h in spec.heads)
    batch = random_batch(seed=4)
    with em.active(specs[0.3]):
        masked = _logits(em, batch)
    student = em.extract(specs[0.3])
    assert student.config.num_hidden_layers == 2
    torch.testing.assert_close(_logits(student, batch), masked, atol=1e-5, rtol=0)

def test_dropped_layers_must_keep_nothing():
    with pytest.raises(ConfigError, match="keep 0 heads and 0 neurons"):
        SubnetSpec((4, 4), (8, 8), dropped=(1,))
    assert SubnetSpec.from_dict(SPEC.to_dict()) == SPEC
    assert SPEC.without_layers((1,)) == SubnetSpec((3, 2), (40, 16), hidden=24)


@pytest.mark.parametrize("shapes", ["global", "uniform"])
def test_aligned_maps_keep_multiples_stay_nested_and_count_their_own_sparsity(shapes):
    em, imp = _scored("bert")
    imp = em.reorder(imp)
    grid = (0.0, 0.3, 0.5, 0.7, 0.9)
    plain = em.sparsity_map(imp, grid, layer_shapes=shapes)
    aligned = em.sparsity_map(imp, grid, layer_shapes=shapes, align=16)  # heads of 8: pairs of heads
    config = em.model.config

    def sparsity(spec):
        return 1 - non_embedding_params(config, spec) / non_embedding_params(config)

    for level, spec in aligned.items():
        assert all(h in (0, 2, 4) for h in spec.heads) and all(n % 16 == 0 or n == 48 for n in spec.neurons)
        assert spec.hidden is None or spec.hidden % 16 == 0
        assert spec.sparsity == level
        if shapes == "uniform":  # the first aligned shape whose counted sparsity is at or above the level
            assert sparsity(spec) >= level - 1e-9
        else:  # the ranked sizes, rounded down: only sparser
            assert spec.fits_in(plain[level]) and sparsity(spec) >= sparsity(plain[level]) - 1e-9
    assert any(a != p for a, p in zip(aligned.values(), plain.values()))  # alignment changed some level
    levels = sorted(aligned)
    assert all(aligned[b].fits_in(aligned[a]) for a, b in itertools.pairwise(levels))
    assert em.sparsity_map(imp, grid, layer_shapes=shapes, align=1) == plain
    with pytest.raises(ConfigError, match="--align"):
        em.sparsity_map(imp, grid, layer_shapes=shapes, align=0)
