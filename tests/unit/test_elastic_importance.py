"""Head/neuron importance = accumulated |dL/dmask| (MiniDisc spec §Sparsification)."""

from __future__ import annotations

import pytest
import torch

from minidisc.elastic import Importance, make_elastic
from minidisc.errors import ConfigError, DataError
from tests.elastic_helpers import DECODERS, random_batch, randomize_, tiny_bert, tiny_decoder


def _labelled(model_kind: str, seed: int = 0) -> dict:
    if model_kind in DECODERS:
        batch = random_batch(seed=seed)
        return {**batch, "labels": batch["input_ids"].clone()}
    return random_batch(seed=seed, labels=torch.tensor([0, 2, 1]))


def _model(kind: str):
    model = tiny_decoder(kind) if kind in DECODERS else tiny_bert(kind)
    return randomize_(model)


@pytest.mark.parametrize("kind", ["bert", "roberta", *DECODERS])
def test_importance_shape_sign_and_unit_rows(kind):
    em = make_elastic(_model(kind))
    geo = em.geometry
    imp = em.importance([_labelled(kind, 0), _labelled(kind, 1)])
    assert imp.heads.shape == (geo.num_layers, geo.num_heads)
    assert imp.neurons.shape == (geo.num_layers, geo.intermediate_size)
    assert imp.normalized
    assert (imp.heads >= 0).all() and (imp.neurons >= 0).all()
    torch.testing.assert_close(imp.heads.norm(dim=1), torch.ones(geo.num_layers))
    torch.testing.assert_close(imp.neurons.norm(dim=1), torch.ones(geo.num_layers))


def _causal_ce(outputs, batch) -> torch.Tensor:
    # HF's causal-LM loss upcasts logits to float32, too coarse for finite differences;
    # the same next-token CE in the logits' dtype (float64 here).
    logits = outputs.logits[:, :-1]
    targets = batch["input_ids"][:, 1:]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    )


def _loss_fn(kind):
    return _causal_ce if kind in DECODERS else None


def _loss(model, batch, loss_fn) -> float:
    with torch.no_grad():
        out = model(**batch)
        return float(loss_fn(out, batch) if loss_fn else out.loss)


def _finite_difference(
    model, batch, loss_fn, linear_of_layer, columns_of_unit, eps=1e-5
) -> torch.Tensor:
    """|dL/dm| by scaling the input columns a mask entry multiplies: W[:, cols] *= 1 ± eps.

    Independent of the library's hooks: multiplying a head's context (or a neuron's
    activation) by m is the same as multiplying those input columns of the next
    projection by m.
    """
    rows = []
    for layer_idx, linear in enumerate(linear_of_layer):
        row = []
        for cols in columns_of_unit:
            w = linear.weight
            saved = w.detach().clone()
            with torch.no_grad():
                w[:, cols] = saved[:, cols] * (1 + eps)
            up = _loss(model, batch, loss_fn)
            with torch.no_grad():
                w[:, cols] = saved[:, cols] * (1 - eps)
            down = _loss(model, batch, loss_fn)
            with torch.no_grad():
                w.copy_(saved)
            row.append(abs(up - down) / (2 * eps))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


def test_raw_importance_matches_finite_differences():
    # float64 end to end (BERT has no float32 upcasts), so central differences are exact
    # to ~1e-9 relative.
    model = _model("bert").double()
    batch = _labelled("bert")
    em = make_elastic(model)
    raw = em.importance([batch], normalize=False)

    layers = em.family.layers(model)
    d, heads, units = em.geometry.head_dim, em.geometry.num_heads, em.geometry.intermediate_size
    o_proj = [layer.get_submodule(em.family.o_path) for layer in layers]
    down = [layer.get_submodule(em.family.ffn_out_path) for layer in layers]
    fd_heads = _finite_difference(
        model, batch, None, o_proj, [slice(h * d, (h + 1) * d) for h in range(heads)]
    )
    fd_neurons = _finite_difference(
        model, batch, None, down, [slice(i, i + 1) for i in range(units)]
    )
    torch.testing.assert_close(raw.heads.double(), fd_heads, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(raw.neurons.double(), fd_neurons, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("kind", ["bert", "roberta", *DECODERS])
def test_raw_importance_matches_weight_gradients(kind):
    """dL/dm for a mask m scaling input columns C of W equals sum(dL/dW[:, C] * W[:, C]).

    (LLaMA's RMSNorm computes in float32, too coarse for finite differences; this
    chain-rule identity is checked with ordinary parameter gradients instead.)
    """
    model = _model(kind).double()
    batch = _labelled(kind)
    loss_fn = _loss_fn(kind)
    em = make_elastic(model)
    raw = em.importance([batch], normalize=False, loss_fn=loss_fn)

    out = model(**batch)
    (loss_fn(out, batch) if loss_fn else out.loss).backward()
    d = em.geometry.head_dim
    exp_heads, exp_neurons = [], []
    for layer in em.family.layers(model):
        o = layer.get_submodule(em.family.o_path)
        down = layer.get_submodule(em.family.ffn_out_path)
        per_col = (o.weight.grad * o.weight).sum(0)  # (heads·d,)
        exp_heads.append(per_col.reshape(-1, d).sum(1).abs())
        exp_neurons.append((down.weight.grad * down.weight).sum(0).abs())
    torch.testing.assert_close(raw.heads.double(), torch.stack(exp_heads), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(raw.neurons.double(), torch.stack(exp_neurons), rtol=1e-4, atol=1e-6)


def test_regression_uses_mse_and_batches_sum_absolute_gradients():
    model = randomize_(tiny_bert(num_labels=1))
    em = make_elastic(model)
    b1 = random_batch(seed=1, labels=torch.tensor([0.5, -1.0, 2.0]))
    b2 = random_batch(seed=2, labels=torch.tensor([1.5, 0.0, -0.3]))
    assert model.config.problem_type in (None, "regression")
    one = em.importance([b1], normalize=False)
    two = em.importance([b2], normalize=False)
    both = em.importance([b1, b2], normalize=False)
    torch.testing.assert_close(both.heads, one.heads + two.heads)
    torch.testing.assert_close(both.neurons, one.neurons + two.neurons)
    assert model.config.problem_type == "regression"  # HF picked MSE for num_labels == 1
    # max_batches stops early
    first = em.importance([b1, b2], normalize=False, max_batches=1)
    torch.testing.assert_close(first.heads, one.heads)


@pytest.mark.parametrize("kind", ["bert", "regression", "llama"])
def test_chunked_back_propagation_is_the_same_estimator(kind):
    """A batch with one label per example is back-propagated in chunks, their gradients
    summed by share before the absolute value: the whole batch's scores up to float
    order (uneven chunks included); token-level labels are back-propagated whole."""
    from minidisc.elastic.importance import compute_importance

    if kind == "regression":
        model = randomize_(tiny_bert(num_labels=1))
        batches = [random_batch(seed=s, labels=torch.tensor([0.5, -1.0, 2.0])) for s in (1, 2)]
    else:
        model, batches = _model(kind), [_labelled(kind, 0), _labelled(kind, 1)]
    em = make_elastic(model)

    def scores(chunk):
        return compute_importance(model, em.family, batches, normalize=False, progress=False, chunk=chunk)

    whole, chunked = scores(None), scores(2)  # 3 examples: chunks of 2 and 1
    if kind in DECODERS:  # labels per token: never chunked, so bit-identical
        assert torch.equal(whole.heads, chunked.heads) and torch.equal(whole.neurons, chunked.neurons)
    else:
        for got, want in ((chunked.heads, whole.heads), (chunked.neurons, whole.neurons)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6 * float(want.abs().max()))
        # the absolute value is taken per batch, not per chunk (that would be another estimator)
        per_chunk = sum(compute_importance(model, em.family, [{k: v[i:j] for k, v in b.items()}], normalize=False,
                                           progress=False, chunk=None).neurons
                        for b in batches for i, j in ((0, 2), (2, 3)))
        assert not torch.allclose(per_chunk, whole.neurons, rtol=1e-3)


def test_custom_loss_fn_and_side_effects():
    model = randomize_(tiny_bert())
    model.train()
    em = make_elastic(model)
    batch = random_batch()
    imp = em.importance([batch], loss_fn=lambda out, b: out.logits[:, 0].mean(), normalize=False)
    assert imp.heads.sum() > 0
    assert model.training, "the model's train/eval mode is restored"
    assert all(p.grad is None for p in model.parameters()), "parameter gradients are not touched"


def test_importance_errors():
    em = make_elastic(tiny_bert())
    with pytest.raises(ConfigError):
        em.importance([random_batch()])  # no labels, no loss_fn
    with pytest.raises(DataError):
        em.importance([])


def test_normalize_and_save_load(tmp_path):
    heads = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    neurons = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 0.0, 0.0]])
    imp = Importance(heads, neurons).normalize()
    torch.testing.assert_close(imp.heads, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))
    torch.testing.assert_close(
        imp.neurons, torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.0, 1.0, 0.0, 0.0]])
    )
    imp.save(tmp_path / "imp.safetensors")
    back = Importance.load(tmp_path / "imp.safetensors")
    assert back.normalized
    torch.testing.assert_close(back.heads, imp.heads)
    torch.testing.assert_close(back.neurons, imp.neurons)
    torch.testing.assert_close(imp.group_scores(2), torch.tensor([[1.4], [0.0]]))


def test_importance_shows_a_progress_bar_that_can_be_turned_off(capsys):
    from transformers.utils import logging as hf_logging

    em = make_elastic(_model("bert"))
    batches = [_labelled("bert", s) for s in range(3)]
    em.importance(batches, max_batches=2)
    err = capsys.readouterr().err
    assert "Importance" in err and "2/2" in err  # the bar counts the batches actually used

    em.importance(batches, progress=False)
    assert "Importance" not in capsys.readouterr().err

    hf_logging.disable_progress_bar()  # the switch that also silences the Trainer's bars
    try:
        em.importance(batches)
    finally:
        hf_logging.enable_progress_bar()
    assert "Importance" not in capsys.readouterr().err


def test_importance_round_trips_hidden_and_layer_scores(tmp_path):
    imp = Importance(torch.rand(2, 4), torch.rand(2, 8), hidden=torch.rand(16), layers=torch.rand(2))
    imp.save(tmp_path / "imp.safetensors")
    back = Importance.load(tmp_path / "imp.safetensors")
    assert torch.equal(back.hidden, imp.hidden) and torch.equal(back.layers, imp.layers)
    assert torch.allclose(imp.normalize().hidden.norm(), torch.tensor(1.0))


def test_subnet_spec_hidden_width_is_optional_in_records():
    from minidisc.elastic.spec import SubnetSpec

    plain = SubnetSpec((2, 2), (8, 8), 0.5)
    assert "hidden" not in plain.to_dict()  # encoder records stay as they were
    cut = SubnetSpec((2, 2), (8, 8), 0.5, hidden=12)
    assert SubnetSpec.from_dict(cut.to_dict()) == cut
    assert cut.fits_in(plain) and not plain.fits_in(cut)
    assert not SubnetSpec((2, 2), (8, 8), hidden=16).fits_in(cut)
