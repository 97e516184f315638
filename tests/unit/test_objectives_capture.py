"""Q/K/V capture from ordinary transformers models, and objectives end to end on tiny models."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    RobertaConfig,
    RobertaForMaskedLM,
)

from minidisc.errors import ModelError
from minidisc.objectives import OBJECTIVE_NAMES, build_objective, capture_qkv, forward_with_signals

pytestmark = pytest.mark.usefixtures("one_torch_thread")


IDS = torch.tensor([[5, 9, 11, 7, 20, 3], [6, 14, 8, 12, 2, 2]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])


@functools.cache
def tiny_bert(
    layers: int = 2, width: int = 32, heads: int = 4, seed: int = 0, attn: str = "sdpa"
) -> nn.Module:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=40,
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * width,
        max_position_embeddings=16,
        num_labels=3,
        attn_implementation=attn,
    )
    return BertForSequenceClassification(config).eval()


@functools.cache
def tiny_roberta(attn: str = "sdpa") -> nn.Module:
    torch.manual_seed(1)
    config = RobertaConfig(
        vocab_size=40,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=20,
        pad_token_id=1,
        attn_implementation=attn,
    )
    return RobertaForMaskedLM(config).eval()


@functools.cache
def tiny_llama(layers: int = 2, width: int = 32, seed: int = 2, attn: str = "sdpa") -> nn.Module:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=40,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention
        max_position_embeddings=32,
        rope_theta=10000.0,
        attn_implementation=attn,
    )
    return LlamaForCausalLM(config).eval()


def manual_bert_scores(model: nn.Module, hidden_in: torch.Tensor, layer: int) -> torch.Tensor:
    """Q·Kᵀ/√d from the layer's weights applied to its input hidden states."""
    attn = model.base_model.encoder.layer[layer].attention.self
    heads = model.config.num_attention_heads
    d = model.config.hidden_size // heads
    b, n, _ = hidden_in.shape
    q = (hidden_in @ attn.query.weight.T + attn.query.bias).reshape(b, n, heads, d).transpose(1, 2)
    k = (hidden_in @ attn.key.weight.T + attn.key.bias).reshape(b, n, heads, d).transpose(1, 2)
    return q @ k.transpose(-1, -2) / math.sqrt(d)


@pytest.mark.parametrize("factory", [tiny_bert, tiny_roberta], ids=["bert", "roberta"])
def test_encoder_capture_matches_manual_scores_and_eager_attention(factory) -> None:
    model = factory(attn="eager")
    with torch.no_grad():
        signals = forward_with_signals(
            model, {"input_ids": IDS, "attention_mask": MASK}, need_qkv=True
        )
        reference = model(input_ids=IDS, attention_mask=MASK, output_attentions=True)
    assert not signals.is_causal and len(signals.queries) == 2
    real_rows = MASK.bool()[:, None, :, None]
    for layer in range(2):
        manual = manual_bert_scores(model, signals.hidden_states[layer], layer)
        assert torch.allclose(signals.attention_scores(layer), manual, atol=1e-5)
        probs = signals.attention_probs(layer, MASK)
        assert torch.allclose(probs * real_rows, reference.attentions[layer] * real_rows, atol=1e-6)
        assert torch.all(probs[1, :, :4, 4:] == 0)  # padded keys get no probability


def _rotate(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE written out: pairs (i, i + d/2) rotate by position * theta^(-2i/d)."""
    d = x.shape[-1]
    inv_freq = theta ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    angle = positions[:, None].float() * inv_freq[None, :]  # (L, d/2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    first, second = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


def test_llama_gqa_capture_matches_manual_rope_scores_and_eager_attention() -> None:
    model = tiny_llama(attn="eager")
    with torch.no_grad():
        signals = forward_with_signals(
            model, {"input_ids": IDS, "attention_mask": MASK}, need_qkv=True
        )
        reference = model(input_ids=IDS, attention_mask=MASK, output_attentions=True)
    config = model.config
    heads, kv_heads, d = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    assert signals.is_causal
    assert signals.queries[0].shape == (2, heads, 6, d) and signals.keys[0].shape == (
        2,
        kv_heads,
        6,
        d,
    )
    positions = torch.arange(6)
    real_rows = MASK.bool()[:, None, :, None]
    for layer_index, layer in enumerate(model.model.layers):
        h = signals.hidden_states[layer_index]
        norm = layer.input_layernorm
        x = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon) * norm.weight
        attn = layer.self_attn
        q = (x @ attn.q_proj.weight.T).reshape(2, 6, heads, d).transpose(1, 2)
        k = (x @ attn.k_proj.weight.T).reshape(2, 6, kv_heads, d).transpose(1, 2)
        v = (x @ attn.v_proj.weight.T).reshape(2, 6, kv_heads, d).transpose(1, 2)
        theta = config.rope_parameters["rope_theta"]
        q, k = _rotate(q, positions, theta), _rotate(k, positions, theta)
        assert torch.allclose(signals.queries[layer_index], q, atol=1e-5)
        assert torch.allclose(signals.keys[layer_index], k, atol=1e-5)
        assert torch.allclose(signals.values[layer_index], v, atol=1e-6)
        # query head h uses key head h // (heads / kv_heads)
        manual = torch.stack(
            [q[:, h_] @ k[:, h_ // (heads // kv_heads)].transpose(-1, -2) for h_ in range(heads)], 1
        )
        assert torch.allclose(
            signals.attention_scores(layer_index), manual / math.sqrt(d), atol=1e-5
        )
        probs = signals.attention_probs(layer_index, MASK)
        assert torch.allclose(
            probs * real_rows, reference.attentions[layer_index] * real_rows, atol=1e-6
        )
        assert torch.all(probs.triu(diagonal=1) == 0)  # causal


def test_llama_capture_survives_in_place_subclassing() -> None:
    # Elastic sub-networks swap module classes for subclasses defined in another module;
    # the RoPE function must still be found through the class hierarchy.
    model = tiny_llama(layers=1, seed=5, attn="eager")
    with torch.no_grad():
        reference = forward_with_signals(
            model, {"input_ids": IDS, "attention_mask": MASK}, need_qkv=True
        )
        attn = model.model.layers[0].self_attn
        original = type(attn)

        def forward(self, *args, **kwargs):  # a generic wrapper, as elastic sub-networks install
            return original.forward(self, *args, **kwargs)

        attn.__class__ = type(
            "SwappedAttention", (original,), {"__module__": __name__, "forward": forward}
        )
        try:
            swapped = forward_with_signals(
                model, {"input_ids": IDS, "attention_mask": MASK}, need_qkv=True
            )
        finally:
            attn.__class__ = original
    assert torch.equal(swapped.queries[0], reference.queries[0])
    assert torch.equal(swapped.keys[0], reference.keys[0])


def test_qwen3_capture_includes_per_head_norm() -> None:
    torch.manual_seed(3)
    config = Qwen3Config(
        vocab_size=40,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=32,
        attn_implementation="eager",
    )
    model = Qwen3ForCausalLM(config).eval()
    with torch.no_grad():
        signals = forward_with_signals(
            model, {"input_ids": IDS, "attention_mask": MASK}, need_qkv=True
        )
        reference = model(input_ids=IDS, attention_mask=MASK, output_attentions=True)
    real_rows = MASK.bool()[:, None, :, None]
    for layer in range(2):
        probs = signals.attention_probs(layer, MASK)
        assert torch.allclose(probs * real_rows, reference.attentions[layer] * real_rows, atol=1e-6)


def test_capture_removes_its_hooks_and_rejects_unsupported_models() -> None:
    model = tiny_bert()
    with capture_qkv(model):
        model(input_ids=IDS, attention_mask=MASK)
    attn = model.bert.encoder.layer[0].attention.self
    assert not attn.query._forward_hooks and not attn._forward_pre_hooks
    with pytest.raises(ModelError, match="self-attention"):
        capture_qkv(nn.Sequential(nn.Linear(2, 2)))


def test_capture_finds_the_model_inside_a_wrapper() -> None:
    # Distributed training hands the loss a wrapper (DDP keeps the model as `.module`).
    model = tiny_bert(attn="eager")
    wrapper = nn.Module()
    wrapper.module = model
    with torch.no_grad():
        with capture_qkv(wrapper) as cap:
            model(input_ids=IDS, attention_mask=MASK)
        direct = forward_with_signals(model, {"input_ids": IDS, "attention_mask": MASK}, need_qkv=True)
    captured = cap.result()
    assert len(captured.queries) == 2 and not captured.is_causal
    assert all(torch.equal(a, b) for a, b in zip(captured.keys, direct.keys))


def test_forward_with_signals_keeps_objective_keys_away_from_the_model() -> None:
    model = tiny_bert()
    batch = {
        "input_ids": IDS,
        "attention_mask": MASK,
        "labels": torch.tensor([0, 2]),
        "distill_mask": MASK.bool(),
    }
    signals = forward_with_signals(model, batch, need_qkv=False, need_hidden_states=False)
    assert (
        signals.logits.shape == (2, 3) and signals.hidden_states is None and signals.queries is None
    )


def _trainable(
    objective_name: str, student: nn.Module, teacher: nn.Module, task_type: str, batch: dict
) -> None:
    objective = build_objective(
        objective_name,
        task_type=task_type,
        student_config=student.config,
        teacher_config=teacher.config,
    )
    student.zero_grad(set_to_none=True)
    teacher.zero_grad(set_to_none=True)
    with torch.no_grad():
        t = forward_with_signals(
            teacher, batch, objective.needs_qkv, need_hidden_states=objective.needs_hidden_states
        )
    s = forward_with_signals(
        student, batch, objective.needs_qkv, need_hidden_states=objective.needs_hidden_states
    )
    loss, parts = objective(s, t, batch)
    assert torch.isfinite(loss) and parts
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    for p in objective.parameters():  # projections learn too
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
def test_every_objective_trains_a_narrower_shallower_bert_student(name: str) -> None:
    teacher = tiny_bert(layers=4, width=32, seed=10)  # cached: built once, never updated
    student = tiny_bert(layers=2, width=16, seed=11).train()
    batch = {"input_ids": IDS, "attention_mask": MASK, "labels": torch.tensor([0, 2])}
    _trainable(name, student, teacher, "classification", batch)


@pytest.mark.parametrize("name", ["kd", "minidisc", "minilmv2", "tinybert", "hidden_mse"])
def test_objectives_train_a_llama_gqa_student(name: str) -> None:
    teacher = tiny_llama(layers=2, seed=12)
    student = tiny_llama(layers=1, seed=13).train()
    labels = IDS.masked_fill(MASK == 0, -100)
    batch = {"input_ids": IDS, "attention_mask": MASK, "labels": labels}
    _trainable(name, student, teacher, "causal_lm", batch)


@pytest.mark.parametrize("name", ["minidisc", "tinybert", "minilm", "minilmv2", "pkd"])
def test_real_model_loss_ignores_right_padding(name: str) -> None:
    teacher, student = tiny_bert(layers=2, seed=20), tiny_bert(layers=2, seed=21)
    objective = build_objective(name, alpha=1.0) if name == "pkd" else build_objective(name)
    short = {"input_ids": IDS[1:, :4], "attention_mask": MASK[1:, :4]}
    padded = {"input_ids": IDS[1:], "attention_mask": MASK[1:]}  # same tokens + 2 pads
    with torch.no_grad():
        losses = []
        for batch in (short, padded):
            t = forward_with_signals(teacher, batch, objective.needs_qkv)
            s = forward_with_signals(student, batch, objective.needs_qkv)
            losses.append(objective(s, t, batch)[0].item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
