"""Tiny random models of each supported family, for unit tests (seconds on a CPU).

Dropout is off so train-mode and eval-mode forwards are comparable.
"""

from __future__ import annotations

from typing import Any

import torch

VOCAB = 64


def tiny_bert(kind: str = "bert", num_labels: int = 3, seed: int = 0, **overrides: Any) -> Any:
    """A ``{Bert,Roberta}ForSequenceClassification``: 3 layers, hidden 32, 4 heads of 8, FFN 48."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    kwargs: dict[str, Any] = {
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "intermediate_size": 48,
        "max_position_embeddings": 40,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "num_labels": num_labels,
    }
    kwargs.update(overrides)
    torch.manual_seed(seed)
    if kind == "roberta":
        return RobertaForSequenceClassification(RobertaConfig(pad_token_id=1, **kwargs)).eval()
    return BertForSequenceClassification(BertConfig(**kwargs)).eval()


#: The sizes of every tiny decoder: GQA with 4 query heads of 8 over 2 KV heads.
_TINY_DECODER_SIZES: dict[str, Any] = {
    "vocab_size": VOCAB,
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "intermediate_size": 40,
    "max_position_embeddings": 64,
    "pad_token_id": 0,
}


def tiny_llama(head: str = "causal_lm", seed: int = 0, **overrides: Any) -> Any:
    """A LLaMA with GQA: 3 layers, hidden 32, 4 query heads of 8 over 2 KV heads, FFN 40."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    kwargs: dict[str, Any] = dict(_TINY_DECODER_SIZES)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    if head == "classification":
        return LlamaForSequenceClassification(LlamaConfig(num_labels=3, **kwargs)).eval()
    return LlamaForCausalLM(LlamaConfig(**kwargs)).eval()


#: Model types of the LLaMA-like decoder families (:mod:`minidisc.elastic.families`).
DECODERS = ("llama", "mistral", "qwen2", "qwen3")


def tiny_decoder(model_type: str = "llama", head: str = "causal_lm", seed: int = 0, **overrides: Any) -> Any:
    """A decoder of one of :data:`DECODERS` with :func:`tiny_llama`'s sizes (GQA: 4 query
    heads of 8 over 2 KV heads, 3 layers, hidden 32, FFN 40), built from its own config
    class (Qwen2: Q/K/V biases; Qwen3: per-head Q/K norms)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    if model_type == "llama":
        return tiny_llama(head, seed, **overrides)
    kwargs: dict[str, Any] = dict(_TINY_DECODER_SIZES)
    kwargs.update(overrides)
    if head == "classification":
        kwargs["num_labels"] = 3
    config = AutoConfig.for_model(model_type, **kwargs)
    torch.manual_seed(seed)
    auto = AutoModelForSequenceClassification if head == "classification" else AutoModelForCausalLM
    return auto.from_config(config).eval()


def randomize_(model: Any, scale: float = 0.2, seed: int = 0) -> Any:
    """Overwrite every parameter with N(0, scale²) noise (LayerNorm/RMSNorm weights near 1).

    Freshly initialised HF models have zero biases and tiny weights, which would hide
    bugs in bias slicing and make outputs nearly input-independent.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * scale
            p.copy_(1.0 + noise if "norm" in name.lower() and name.endswith("weight") else noise)
    return model


def random_batch(
    batch: int = 3, length: int = 9, seed: int = 0, labels: torch.Tensor | None = None
) -> dict:
    """Input ids in [2, VOCAB) with the last two positions of row 0 padded (mask 0)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (batch, length), generator=gen)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, -2:] = 0
    out = {"input_ids": ids, "attention_mask": mask}
    if labels is not None:
        out["labels"] = labels
    return out


def mask_heads_and_units(model: Any, family: Any, spec: Any, head_dim: int) -> list[Any]:
    """Reference masking on the full model, written independently of minidisc's hooks:
    every layer's pruned heads (context channels ``heads * head_dim:`` entering the
    output projection) and pruned FFN units (``units:`` entering the down projection)
    are zeroed. Returns the hook handles; the caller removes them."""
    handles = []
    for layer, heads, units in zip(family.layers(model), spec.heads, spec.neurons):

        def head_hook(_m: Any, args: tuple, heads: int = heads) -> tuple:
            x = args[0].clone()
            x[..., heads * head_dim :] = 0
            return (x,)

        def unit_hook(_m: Any, args: tuple, units: int = units) -> tuple:
            x = args[0].clone()
            x[..., units:] = 0
            return (x,)

        handles.append(layer.get_submodule(family.o_path).register_forward_pre_hook(head_hook))
        handles.append(layer.get_submodule(family.ffn_out_path).register_forward_pre_hook(unit_hook))
    return handles
