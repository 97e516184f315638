"""Activated sub-networks = the full model with pruned heads/neurons masked out."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from minidisc.elastic import ElasticLinear, Importance, SubnetSpec, make_elastic
from minidisc.errors import ConfigError
from tests.elastic_helpers import (
    DECODERS,
    mask_heads_and_units,
    random_batch,
    randomize_,
    tiny_bert,
    tiny_decoder,
)

# Per-kind specs (3 layers): a 0-head layer, a 0-neuron layer, and a partial one.
# BERT: 4 heads, 48 units. LLaMA: 4 query heads in 2 KV groups, 40 units.
SPECS = {
    "bert": [
        SubnetSpec((0, 3, 1), (16, 0, 47)),
        SubnetSpec((4, 2, 4), (48, 8, 1)),
        SubnetSpec((0, 0, 0), (0, 0, 0)),
    ],
    "llama": [
        SubnetSpec((0, 2, 4), (16, 0, 39)),
        SubnetSpec((4, 4, 2), (40, 8, 1)),
        SubnetSpec((0, 0, 0), (0, 0, 0)),
    ],
}
SPECS["roberta"] = SPECS["bert"]
for _decoder in DECODERS:  # the LLaMA-like families share tiny_llama's sizes
    SPECS[_decoder] = SPECS["llama"]


def _model(kind, **kw):
    model = tiny_decoder(kind, **kw) if kind in DECODERS else tiny_bert(kind, **kw)
    return randomize_(model)


@contextmanager
def _masked(model, family, spec, head_dim):
    """Reference: the pruned heads' context and units' activations of the full model zeroed."""
    handles = mask_heads_and_units(model, family, spec, head_dim)
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("kind", ["bert", "roberta", *DECODERS])
def test_activated_equals_masked_full_model(kind):
    model = _model(kind)
    em = make_elastic(model)
    batch = random_batch()
    for spec in SPECS[kind]:
        with torch.no_grad():
            with em.active(spec):
                sliced = em(**batch).logits
            with _masked(model, em.family, spec, em.geometry.head_dim):
                masked = model(**batch).logits
        torch.testing.assert_close(sliced, masked, atol=1e-5, rtol=0)
        assert em.spec == em.full_spec()  # restored by the context manager


@pytest.mark.parametrize("kind", ["bert", *DECODERS])
def test_sparsity_map_subnetworks_equal_masked(kind):
    model = _model(kind)
    em = make_elastic(model)
    gen = torch.Generator().manual_seed(1)
    geo = em.geometry
    imp = em.reorder(
        Importance(
            torch.rand(geo.num_layers, geo.num_heads, generator=gen),
            torch.rand(geo.num_layers, geo.intermediate_size, generator=gen),
        ).normalize()
    )
    batch = random_batch(seed=4)
    for s, spec in em.sparsity_map(imp).items():
        with torch.no_grad():
            em.activate(spec)
            sliced = em(**batch).logits
            em.activate(None)
            with _masked(model, em.family, spec, geo.head_dim):
                masked = model(**batch).logits
        torch.testing.assert_close(sliced, masked, atol=1e-5, rtol=0, msg=f"sparsity {s}")


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_compute_uses_slices_and_skips_empty_attention(kind):
    model = _model(kind)
    em = make_elastic(model)
    spec = SPECS[kind][0]  # layer 0 keeps no heads
    seen: dict[str, tuple] = {}
    handles = []
    for idx, layer in enumerate(em.family.layers(model)):
        for path in em.family.linears(layer):
            lin = layer.get_submodule(path)
            assert isinstance(lin, ElasticLinear)
            handles.append(
                lin.register_forward_hook(
                    lambda m, a, out, key=f"{idx}.{path}": seen.__setitem__(
                        key, (a[0].shape[-1], out.shape[-1])
                    )
                )
            )
    with torch.no_grad(), em.active(spec):
        em(**random_batch())
    for h in handles:
        h.remove()
    fam, d = em.family, em.geometry.head_dim
    assert f"0.{fam.q_path}" not in seen and f"0.{fam.k_path}" not in seen  # attention not run
    assert seen[f"0.{fam.o_path}"][0] == 0
    assert seen[f"1.{fam.q_path}"][1] == spec.heads[1] * d
    assert seen[f"1.{fam.k_path}"][1] == spec.heads[1] // em.geometry.group_size * d
    assert seen[f"1.{fam.ffn_out_path}"][0] == 0
    for path in fam.ffn_in_paths:
        assert seen[f"2.{path}"][1] == spec.neurons[2]


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_train_mode_gradients_flow_into_the_shared_slices(kind):
    model = _model(kind, seed=2)
    em = make_elastic(model)
    model.train()
    spec = SPECS[kind][0]
    batch = random_batch(labels=torch.tensor([0, 2, 1]) if kind != "llama" else None)
    if kind == "llama":
        batch["labels"] = batch["input_ids"].clone()

    with em.active(spec):
        em(**batch).loss.backward()
    sliced = {
        n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in model.named_parameters()
    }
    model.zero_grad(set_to_none=True)
    with _masked(model, em.family, spec, em.geometry.head_dim):
        model(**batch).loss.backward()
    masked = {
        n: (p.grad if p.grad is not None else torch.zeros_like(p))
        for n, p in model.named_parameters()
    }
    for name, grad in sliced.items():
        torch.testing.assert_close(grad, masked[name], atol=1e-5, rtol=1e-4, msg=name)
    # Something non-trivial flowed into the kept slice of layer 1's FFN-in weight.
    ffn_in = em.family.layers(model)[1].get_submodule(em.family.ffn_in_paths[0])
    grad_name = next(n for n, p in model.named_parameters() if p is ffn_in.weight)
    assert sliced[grad_name].abs().sum() == 0  # layer 1 keeps 0 units
    q2 = em.family.layers(model)[2].get_submodule(em.family.q_path)
    q2_name = next(n for n, p in model.named_parameters() if p is q2.weight)
    assert sliced[q2_name].abs().sum() > 0


def test_activate_validates_specs():
    em = make_elastic(_model("bert"))
    with pytest.raises(ConfigError):
        em.activate(SubnetSpec((5, 4, 4), (48, 48, 48)))  # more heads than the model has
    with pytest.raises(ConfigError):
        em.activate(SubnetSpec((4, 4), (48, 48)))  # wrong number of layers
    llama = make_elastic(_model("llama"))
    with pytest.raises(ConfigError):
        llama.activate(SubnetSpec((3, 4, 4), (40, 40, 40)))  # 3 heads = 1.5 KV groups


def test_nested_context_managers_restore():
    em = make_elastic(_model("bert"))
    a, b = SPECS["bert"][0], SPECS["bert"][1]
    with em.active(a):
        with em.active(b):
            assert em.spec == b
        assert em.spec == a
    assert em.spec == em.full_spec()


def test_eager_attentions_keep_one_entry_per_layer():
    model = _model("bert", attn_implementation="eager")
    em = make_elastic(model)
    with torch.no_grad(), em.active(SPECS["bert"][0]):
        out = em(**random_batch(), output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == 3 and len(out.hidden_states) == 4
    assert [a.shape[1] for a in out.attentions] == [0, 3, 1]


@pytest.mark.parametrize("kind", DECODERS)
def test_decoder_kv_cache_with_a_skipped_layer(kind):
    model = _model(kind)
    em = make_elastic(model)
    ids = random_batch(batch=2, length=7)["input_ids"]
    with torch.no_grad(), em.active(SPECS[kind][0]):
        full = em(input_ids=ids).logits
        first = em(input_ids=ids[:, :6], use_cache=True)
        step = em(
            input_ids=ids[:, 6:], past_key_values=first.past_key_values, use_cache=True
        ).logits
    torch.testing.assert_close(step[:, -1], full[:, -1], atol=1e-5, rtol=0)


def test_wrapping_keeps_parameter_names_and_state_dict():
    model = _model("bert")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    em = make_elastic(model)
    em.activate(SPECS["bert"][0])
    after = model.state_dict()
    assert list(after) == list(before)
    for k, value in before.items():
        torch.testing.assert_close(after[k], value)
