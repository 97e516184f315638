"""Importance estimators (activation / gradient / magnitude / random) and their costs,
on a tiny random LLaMA with grouped-query attention and tied embeddings, and a tiny BERT."""

from __future__ import annotations

import pytest
import torch

from minidisc.compute.flops import forward_flops
from minidisc.elastic import make_elastic
from minidisc.elastic.activation import activation_importance
from minidisc.elastic.estimators import (
    METHODS,
    ImportanceCost,
    estimate_importance,
    magnitude_importance,
    random_importance,
)
from minidisc.elastic.families import family_for
from minidisc.elastic.importance import compute_importance
from minidisc.errors import ConfigError, DataError
from tests.elastic_helpers import (
    DECODERS,
    random_batch,
    randomize_,
    tiny_bert,
    tiny_decoder,
    tiny_llama,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _llama(**overrides):
    """Tiny LLaMA: 3 layers, width 32, 4 query heads over 2 KV heads (groups of 2), FFN 40."""
    return randomize_(tiny_llama(tie_word_embeddings=True, **overrides))


def _batches(n: int = 2) -> list[dict]:
    return [random_batch(seed=s) for s in range(n)]  # row 0 of each ends in 2 padding tokens


def _bert_batches(n: int = 2) -> list[dict]:
    return [random_batch(seed=s, labels=torch.tensor([0, 2, 1])) for s in range(n)]


# --- shapes, signs, normalisation --------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_decoder_scores_every_axis_per_query_head(method):
    model = _llama()
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    imp, cost = estimate_importance(model, None, _batches(), method, progress=False)
    assert imp.heads.shape == (3, 4) and imp.neurons.shape == (3, 40) and imp.hidden.shape == (32,)
    assert imp.normalized
    for t in (imp.heads, imp.neurons, imp.hidden):
        assert t.dtype == torch.float32 and (t >= 0).all()
    torch.testing.assert_close(imp.heads.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(imp.neurons.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(imp.hidden.norm(), torch.tensor(1.0))
    if method == "magnitude":
        assert imp.layers is None  # no data: no block importance
    else:
        assert imp.layers.shape == (3,) and imp.layers.dtype == torch.float32 and (imp.layers >= 0).all()
    assert cost.method == method


@pytest.mark.parametrize("kind", DECODERS)
def test_every_decoder_family_is_scored_by_activation(kind):
    imp, _ = estimate_importance(randomize_(tiny_decoder(kind)), None, _batches(1), "activation", progress=False)
    assert imp.hidden.shape == (32,) and imp.layers.shape == (3,) and imp.heads.sum() > 0


@pytest.mark.parametrize("method", METHODS)
def test_encoder_keeps_its_width(method):
    imp, _ = estimate_importance(randomize_(tiny_bert()), None, _bert_batches(), method, progress=False)
    assert imp.heads.shape == (3, 4) and imp.neurons.shape == (3, 48)
    assert imp.hidden is None
    assert (imp.layers is not None) == (method in ("activation", "random"))


def test_encoder_gradient_is_exactly_the_existing_estimator():
    model = randomize_(tiny_bert())
    batches = _bert_batches(3)
    ours, cost = estimate_importance(model, None, batches, "gradient", max_batches=2, progress=False)
    theirs = make_elastic(model).importance(batches, max_batches=2, progress=False)
    assert torch.equal(ours.heads, theirs.heads) and torch.equal(ours.neurons, theirs.neurons)
    assert ours.hidden is None and ours.layers is None and cost.batches == 2


def test_gradient_importance_leaves_every_weight_as_trainable_as_it_found_it():
    """The weights are frozen while the masks' gradients are taken (less memory held for
    the backward); afterwards each one is as before, a weight frozen by the caller too."""
    model = randomize_(tiny_bert())
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    imp = compute_importance(model, family_for(model), _bert_batches(2), progress=False)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before
    assert imp.heads.abs().sum() > 0 and all(p.grad is None for p in model.parameters())


# --- activation: hand-checkable cases ------------------------------------------------------


def test_activation_matches_mean_over_tokens_then_l2_over_samples():
    """Recomputed from the down projection's inputs: per sample the mean |a| over its real
    tokens (padding left out), then the L2 norm over all samples of all batches."""
    model = _llama()
    batches = _batches(2)
    seen = []
    hook = model.model.layers[1].mlp.down_proj.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    try:
        imp = activation_importance(model, family_for(model), batches, normalize=False, progress=False)
    finally:
        hook.remove()
    per_sample = []
    for acts, batch in zip(seen, batches):
        for row, mask in zip(acts, batch["attention_mask"]):
            per_sample.append(row[mask.bool()].abs().mean(0))
    expected = torch.stack(per_sample).double().pow(2).sum(0).sqrt()
    torch.testing.assert_close(imp.neurons[1].double(), expected, rtol=1e-5, atol=1e-7)


def test_activation_zero_unit_head_and_channel():
    model = _llama()
    geo = family_for(model).geometry(model.config)
    d = geo.head_dim
    with torch.no_grad():
        layer = model.model.layers[0]
        layer.mlp.up_proj.weight[7].zero_()  # FFN unit 7 of layer 0 is always 0
        layer.self_attn.v_proj.weight[d : 2 * d].zero_()  # KV group 1 (query heads 2, 3) outputs 0
        for norm in [*(m for m in model.modules() if type(m).__name__ == "LlamaRMSNorm")]:
            norm.weight[5] = 0.0  # channel 5 of every norm's output is 0
    imp, _ = estimate_importance(model, None, _batches(), "activation", progress=False)
    assert imp.neurons[0, 7] == 0 and (imp.neurons[0, :7] > 0).all()
    assert (imp.heads[0, 2:] == 0).all() and (imp.heads[0, :2] > 0).all()
    assert imp.hidden[5] == 0 and (imp.hidden[:5] > 0).all()


def test_block_importance_of_an_identity_layer_is_zero():
    model = _llama()
    with torch.no_grad():
        model.model.layers[1].self_attn.o_proj.weight.zero_()
        model.model.layers[1].mlp.down_proj.weight.zero_()
    for method in ("activation", "gradient"):
        imp, _ = estimate_importance(model, None, _batches(), method, normalize=False, progress=False)
        assert imp.layers[1] == pytest.approx(0.0, abs=1e-6), method
        assert (imp.layers[[0, 2]] > 1e-4).all(), method


def test_activation_runs_without_gradients():
    model = _llama()
    model.train()
    with torch.no_grad():  # works inside no_grad too
        estimate_importance(model, None, _batches(), "activation", progress=False)
    imp, cost = estimate_importance(model, None, _batches(), "activation", progress=False)
    assert all(p.grad is None for p in model.parameters())
    assert not imp.heads.requires_grad and cost.backward_flops == 0
    assert model.training, "train/eval mode is restored"


# --- gradient --------------------------------------------------------------------------------


def _unmasked_labels(batch: dict) -> dict:
    return {**batch, "labels": batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)}


def test_decoder_gradient_uses_the_causal_lm_loss_and_leaves_head_and_neuron_scores_unchanged():
    model = _llama()
    batches = _batches()
    imp, cost = estimate_importance(model, None, batches, "gradient", normalize=False, progress=False)
    plain = compute_importance(model, family_for(model), [_unmasked_labels(b) for b in batches],
                               normalize=False, progress=False)
    # labels = input ids with padding ignored, and the channel/layer masks change nothing else
    assert torch.equal(imp.heads, plain.heads) and torch.equal(imp.neurons, plain.neurons)
    assert plain.hidden is None and plain.layers is None
    assert all(p.grad is None for p in model.parameters())
    assert cost.backward_flops == 2 * cost.forward_flops


def test_gradient_channel_and_layer_scores_match_the_chain_rule():
    """|dL/dm_c| = |Σ over every reader of the residual stream of Σ dL/dW[:, c]·W[:, c]|
    (LM head untied here, so its weight gradient is its own); |dL/dm_l| = |Σ g_out·(out − in)|."""
    model = randomize_(tiny_llama(tie_word_embeddings=False)).double()
    batch = _unmasked_labels(random_batch(seed=3))
    family = family_for(model)
    raw = compute_importance(model, family, [batch], normalize=False, progress=False, hidden=True, layers=True)

    saved = {}

    def keep(idx):
        def hook(module, args, kwargs, output):
            out = output[0] if isinstance(output, tuple) else output
            out.retain_grad()
            saved[idx] = (args[0] if args else kwargs["hidden_states"], out)

        return hook

    handles = [layer.register_forward_hook(keep(i), with_kwargs=True) for i, layer in enumerate(model.model.layers)]
    try:
        model(**batch).loss.backward()
    finally:
        for h in handles:
            h.remove()
    readers = [model.lm_head]
    for layer in model.model.layers:
        readers += [layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
                    layer.mlp.gate_proj, layer.mlp.up_proj]
    expected = sum((m.weight.grad * m.weight).sum(0) for m in readers).abs()
    torch.testing.assert_close(raw.hidden.double(), expected, rtol=1e-4, atol=1e-6)
    blocks = torch.stack([(out.grad * (out - inp)).sum().abs() for inp, out in (saved[i] for i in range(3))])
    torch.testing.assert_close(raw.layers.double(), blocks.detach(), rtol=1e-4, atol=1e-6)


def test_gradient_of_a_unit_that_writes_nothing_is_zero():
    model = _llama()
    with torch.no_grad():
        model.model.layers[2].mlp.down_proj.weight[:, 11].zero_()
    for method in ("gradient", "magnitude"):
        imp, _ = estimate_importance(model, None, _batches(), method, progress=False)
        assert imp.neurons[2, 11] == 0 and (imp.neurons[2, :11] > 0).all(), method


# --- magnitude and random -----------------------------------------------------------------


def test_magnitude_is_the_documented_weight_norm_product():
    model = _llama()
    imp = magnitude_importance(model, normalize=False)
    layer = model.model.layers[1]
    d = 8
    with torch.no_grad():
        o_col = layer.self_attn.o_proj.weight[:, 3 * d : 4 * d].norm()  # query head 3 ...
        v_rows = layer.self_attn.v_proj.weight[1 * d : 2 * d].norm()  # ... reads KV head 1
        unit = (layer.mlp.down_proj.weight[:, 4].norm() * layer.mlp.gate_proj.weight[4].norm()
                * layer.mlp.up_proj.weight[4].norm())
        model.model.embed_tokens.weight[:, 9].zero_()
    assert imp.heads[1, 3] == pytest.approx(float(o_col * v_rows), rel=1e-5)
    assert imp.neurons[1, 4] == pytest.approx(float(unit), rel=1e-5)
    assert magnitude_importance(model).hidden[9] == 0


def test_random_is_reproducible_per_seed_and_differs_across_seeds():
    model = _llama()
    a = random_importance(model, seed=1)
    b = random_importance(model, seed=1)
    c = random_importance(model, seed=2)
    for name in ("heads", "neurons", "hidden", "layers"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert not torch.equal(getattr(a, name), getattr(c, name)), name
    via_entry, _ = estimate_importance(model, None, None, "random", seed=1)
    assert torch.equal(via_entry.neurons, a.neurons)


# --- costs and errors -------------------------------------------------------------------------


def test_costs_count_tokens_flops_and_batches():
    model = _llama()
    batches = _batches(3)
    one = forward_flops(model.config, None, seq_len=9, batch=3)
    with_head = forward_flops(model.config, None, seq_len=9, batch=3, lm_head=True)
    _, act = estimate_importance(model, None, batches, "activation", max_batches=2, progress=False)
    assert (act.batches, act.sequences, act.positions, act.tokens) == (2, 6, 54, 50)  # 2 padded per batch
    assert act.forward_flops == 2 * one and act.backward_flops == 0  # no LM head: it is not run
    _, grad = estimate_importance(model, None, batches, "gradient", progress=False)
    assert (grad.batches, grad.positions, grad.tokens) == (3, 81, 75)
    assert grad.forward_flops == 3 * with_head and grad.backward_flops == 6 * with_head
    _, mag = estimate_importance(model, None, batches, "magnitude")
    assert (mag.batches, mag.tokens, mag.positions, mag.flops) == (0, 0, 0, 0.0)
    record = grad.to_dict()
    assert record["flops"] == grad.flops and record["wall_time_s"] >= 0
    assert ImportanceCost.from_dict(record) == grad


def test_estimator_errors():
    model = _llama()
    with pytest.raises(ConfigError, match="unknown importance method"):
        estimate_importance(model, None, _batches(), "taylor")
    for method in ("activation", "gradient"):
        with pytest.raises(DataError, match="no batches"):
            estimate_importance(model, None, [], method, progress=False)
        with pytest.raises(ConfigError, match="needs calibration batches"):
            estimate_importance(model, None, None, method)
