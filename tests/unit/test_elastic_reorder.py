"""Reordering heads/neurons by importance leaves the model's function unchanged."""

from __future__ import annotations

import pytest
import torch

from minidisc.elastic import Importance, make_elastic
from minidisc.elastic.reorder import head_order
from minidisc.errors import ModelError
from tests.elastic_helpers import DECODERS, random_batch, randomize_, tiny_bert, tiny_decoder


def _model(kind):
    model = tiny_decoder(kind) if kind in DECODERS else tiny_bert(kind)
    return randomize_(model)


def _random_importance(em, seed=0) -> Importance:
    gen = torch.Generator().manual_seed(seed)
    geo = em.geometry
    return Importance(
        torch.rand(geo.num_layers, geo.num_heads, generator=gen),
        torch.rand(geo.num_layers, geo.intermediate_size, generator=gen),
    )


@pytest.mark.parametrize("kind", ["bert", "roberta", *DECODERS])
def test_reorder_keeps_outputs(kind):
    model = _model(kind)
    batch = random_batch()
    with torch.no_grad():
        before = model(**batch).logits
    em = make_elastic(model)
    imp = _random_importance(em)
    new = em.reorder(imp)
    with torch.no_grad():
        after = model(**batch).logits
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    # Neurons are sorted descending in every layer and are a permutation of the old scores.
    assert (new.neurons[:, :-1] >= new.neurons[:, 1:]).all()
    torch.testing.assert_close(new.neurons.sort(dim=1).values, imp.neurons.sort(dim=1).values)
    groups = new.group_scores(em.geometry.group_size)
    assert (groups[:, :-1] >= groups[:, 1:]).all()


def test_reorder_moves_the_most_important_head_and_neuron_first():
    model = _model("bert")
    em = make_elastic(model)
    layer = em.family.layers(model)[1]
    q = layer.get_submodule(em.family.q_path)
    o = layer.get_submodule(em.family.o_path)
    ffn_in = layer.get_submodule(em.family.ffn_in_paths[0])
    ffn_out = layer.get_submodule(em.family.ffn_out_path)
    d = em.geometry.head_dim
    imp = _random_importance(em, seed=3)
    top_head = int(imp.heads[1].argmax())
    top_unit = int(imp.neurons[1].argmax())
    q_rows = q.weight[top_head * d : (top_head + 1) * d].detach().clone()
    o_cols = o.weight[:, top_head * d : (top_head + 1) * d].detach().clone()
    in_row, out_col = (
        ffn_in.weight[top_unit].detach().clone(),
        ffn_out.weight[:, top_unit].detach().clone(),
    )
    em.reorder(imp)
    torch.testing.assert_close(q.weight[:d], q_rows)
    torch.testing.assert_close(o.weight[:, :d], o_cols)
    torch.testing.assert_close(ffn_in.weight[0], in_row)
    torch.testing.assert_close(ffn_out.weight[:, 0], out_col)


def test_gqa_head_order_keeps_groups_together():
    # 6 query heads in 3 KV groups of 2: group sums 0.3, 1.1, 0.9 → groups 1, 2, 0.
    scores = torch.tensor([0.1, 0.2, 0.5, 0.6, 0.8, 0.1])
    q_order, kv_order = head_order(scores, group_size=2)
    assert kv_order.tolist() == [1, 2, 0]
    assert q_order.tolist() == [3, 2, 4, 5, 1, 0]


def test_reorder_rejects_wrong_shapes():
    em = make_elastic(_model("bert"))
    geo = em.geometry
    with pytest.raises(ModelError):
        em.reorder(
            Importance(
                torch.rand(geo.num_layers, geo.num_heads + 1), torch.rand(geo.num_layers, 48)
            )
        )
