"""The live FLOP hooks count what a forward computes: a language model's vocabulary
projection included (a fifth of SmolLM2-135M's forward), a classifier's head not."""

from __future__ import annotations

import pytest
import torch

from minidisc.compute.flops import forward_flops
from minidisc.compute.meter import ComputeMeter
from minidisc.training.metering import attach_flop_hook
from tests.elastic_helpers import tiny_bert, tiny_decoder


@pytest.mark.parametrize(("model", "lm_head"), [
    (lambda: tiny_decoder("llama", head="causal_lm"), True),
    (lambda: tiny_decoder("llama", head="classification"), False),
    (lambda: tiny_bert("bert"), False),
])
def test_a_forward_is_counted_with_the_vocabulary_projection_of_a_language_model(model, lm_head):
    model = model().eval()
    meter = ComputeMeter()
    attach_flop_hook(model, meter, "teacher")
    ids = torch.randint(3, 60, (2, 12))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    expected = forward_flops(model.config, None, seq_len=12, batch=2, lm_head=lm_head)
    assert meter.totals.teacher_forward_flops == expected
    if lm_head:  # the projection is 2·h·V per token on top of the layers
        h, v = model.config.hidden_size, model.config.vocab_size
        assert expected - forward_flops(model.config, None, seq_len=12, batch=2) == 2 * 24 * h * v
