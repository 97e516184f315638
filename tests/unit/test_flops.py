"""Analytic parameter / FLOP counts against hand computation and the MiniDisc paper table."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, LlamaConfig

from minidisc.compute.flops import forward_flops, non_embedding_params, paper_flops, train_flops
from minidisc.elastic import Importance, SubnetSpec, make_elastic
from minidisc.elastic.sparsity_map import sparsity_map
from tests.elastic_helpers import tiny_bert, tiny_llama

BERT_BASE = BertConfig()  # defaults: hidden 768, 12 layers, 12 heads, FFN 3072


def test_bert_base_non_embedding_params_and_paper_flops():
    h, ffn = 768, 3072
    per_layer = (
        4 * (h * h + h) + (h * ffn + ffn) + (ffn * h + h) + 2 * 2 * h
    )  # Q,K,V,O; FFN; 2 LayerNorms
    assert per_layer * 12 == 85_054_464
    assert non_embedding_params(BERT_BASE) == 85_054_464
    assert round(paper_flops(BERT_BASE) / 1e9, 1) == 10.9  # paper: BERT-base 10.9G


@pytest.mark.parametrize("sparsity, paper_gflops", [(0.85, 1.6), (0.9, 1.1), (0.95, 0.5)])
def test_student_paper_flops_match_the_table(sparsity, paper_gflops):
    # Any importance gives the same totals up to the per-layer rounding to multiples of 8.
    gen = torch.Generator().manual_seed(0)
    imp = Importance(
        torch.rand(12, 12, generator=gen), torch.rand(12, 3072, generator=gen)
    ).normalize()
    spec = sparsity_map(imp, [sparsity])[sparsity]
    assert round(paper_flops(BERT_BASE, spec) / 1e9, 1) == paper_gflops


def test_forward_flops_by_hand_bert():
    config = BertConfig(
        hidden_size=8, num_attention_heads=2, num_hidden_layers=1, intermediate_size=16
    )
    # B=2, S=4, T=8: Q,K,V,O 4·(2·8·8·8)=4096; scores+context 4·2·4²·2·4=1024; FFN 2·(2·8·8·16)=4096
    assert forward_flops(config, seq_len=4, batch=2) == 4096 + 1024 + 4096
    assert train_flops(config, seq_len=4, batch=2) == 3 * 9216
    # keep 1 head (d=4) and 4 units: Q,K,V 3·2·8·8·4=1536, O 512, attn 512, FFN 2·2·8·8·4=1024
    assert (
        forward_flops(config, SubnetSpec((1,), (4,)), seq_len=4, batch=2) == 1536 + 512 + 512 + 1024
    )
    assert forward_flops(config, SubnetSpec((0,), (0,)), seq_len=4, batch=2) == 0


def test_llama_gqa_by_hand():
    config = LlamaConfig(
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        intermediate_size=40,
        num_hidden_layers=1,
        vocab_size=100,
    )
    # T=4: Q 2·4·32·32=8192, K=V 2·4·32·16=4096 each, O 8192, attn 4·16·4·8=2048, FFN 3·2·4·32·40=30720
    assert forward_flops(config, seq_len=4) == 8192 + 2 * 4096 + 8192 + 2048 + 30720
    assert forward_flops(config, seq_len=4, lm_head=True) == 57344 + 2 * 4 * 32 * 100
    # params: q 1024, k 512, v 512, o 1024, mlp 3840, 2 RMSNorms 64, final norm 32
    assert non_embedding_params(config) == 7008
    # one KV group (2 query heads) and 8 units: q 512, k 256, v 256, o 512, mlp 768, norms 96
    assert non_embedding_params(config, SubnetSpec((2,), (8,))) == 2400


def _count(params) -> int:
    return sum(p.numel() for p in params)


@pytest.mark.parametrize("kind", ["bert", "roberta", "llama", "mistral", "qwen2"])
def test_param_count_matches_real_extracted_models(kind):
    if kind in ("mistral", "qwen2"):
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.for_model(
            kind,
            vocab_size=64,
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            intermediate_size=40,
        )
        model = AutoModelForCausalLM.from_config(config)
    else:
        model = tiny_llama() if kind == "llama" else tiny_bert(kind)
    em = make_elastic(model)
    group = em.geometry.group_size
    spec = SubnetSpec((0, 2 * group, 4), (16, 0, 32))
    student = em.extract(spec)
    base = student.base_model
    if em.family.name == "bert":
        real = _count(base.encoder.parameters())
    else:
        real = _count(base.layers.parameters()) + _count(base.norm.parameters())
    assert non_embedding_params(model.config, spec) == real
    # with no spec, the student's config (minidisc_subnet) gives its own size
    assert non_embedding_params(student.config) == real
    assert non_embedding_params(model.config) == (
        _count(model.base_model.encoder.parameters())
        if em.family.name == "bert"
        else _count(model.base_model.layers.parameters())
        + _count(model.base_model.norm.parameters())
    )
