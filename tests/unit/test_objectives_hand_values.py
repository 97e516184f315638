"""TinyBERT, MiniLM, MiniLMv2 and hidden-state MSE on tensors small enough to compute by hand.

Every example has two real tokens and one padded token filled with garbage (9s), so the
values also check that padding is excluded. The expected numbers are worked out in the
comments; softmaxes of two entries are written in closed form.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from minidisc.objectives import Signals, build_objective

MASK = {"attention_mask": torch.tensor([[1, 1, 0]])}
LN2, LN3 = math.log(2.0), math.log(3.0)


def t(rows: list) -> torch.Tensor:
    """A float64 tensor."""
    return torch.tensor(rows, dtype=torch.float64)


def heads(*per_head: list[list[float]]) -> torch.Tensor:
    """``(1, H, L, d)`` from one ``L × d`` list per head."""
    return t([list(per_head)])


def config(width: int, heads_: int = 1, layers: int = 1) -> SimpleNamespace:
    """The config fields the objectives read."""
    return SimpleNamespace(hidden_size=width, num_attention_heads=heads_, num_hidden_layers=layers)


def kl_uniform_vs_softmax(a: float) -> float:
    """KL((1/2, 1/2) ‖ softmax([a, 0])) = ln((1 + e^a)/2) − a/2."""
    return math.log((1 + math.exp(a)) / 2) - a / 2


def kl_softmax_vs_uniform(a: float) -> float:
    """KL(softmax([a, 0]) ‖ (1/2, 1/2)) = ln 2 + Σ p ln p."""
    p = math.exp(a) / (1 + math.exp(a))
    return LN2 + p * math.log(p) + (1 - p) * math.log(1 - p)


def test_tinybert_hand_value_with_width_projections() -> None:
    # Student: 1 layer, width 1; teacher: 2 layers, width 2; uniform map g(1) = 2.
    # W_e = (1, 2), W_h = (1, -1) (d_S = 1 -> d_T = 2), one attention head each.
    objective = build_objective("tinybert", task_type="masked_lm",
                                student_config=config(1), teacher_config=config(2, layers=2)).double()
    with torch.no_grad():
        objective.embedding_projection.weight.copy_(t([[1.0], [2.0]]))
        objective.hidden_projection.weight.copy_(t([[1.0], [-1.0]]))
    student = Signals(
        hidden_states=(t([[[2.0], [-1.0], [9.0]]]), t([[[1.0], [3.0], [9.0]]])),
        queries=(heads([[1.0], [2.0], [9.0]]),),
        keys=(heads([[1.0], [-1.0], [9.0]]),),
        values=(heads([[0.0], [0.0], [9.0]]),),
        attention_scaling=(1.0,),
    )
    garbage = heads([[9.0, 9.0], [9.0, 9.0], [9.0, 9.0]])
    teacher = Signals(
        hidden_states=(t([[[1.0, 5.0], [0.0, 0.0], [7.0, 7.0]]]), t([[[9.0, 9.0]] * 3]),
                       t([[[2.0, 0.0], [1.0, 1.0], [5.0, 5.0]]])),
        queries=(garbage, heads([[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]])),
        keys=(garbage, heads([[1.0, 1.0], [2.0, 0.0], [9.0, 9.0]])),
        values=(garbage, garbage),
        attention_scaling=(0.5, 0.5),
    )
    loss, parts = objective(student, teacher, MASK)
    # embedding: E_S·W_e = (2, 4), (-1, -2) vs (1, 5), (0, 0): squares 1 + 1 + 1 + 4 = 7 over 4 -> 1.75
    assert parts["embedding"] == pytest.approx(1.75)
    # hidden: H_S·W_h = (1, -1), (3, -3) vs teacher layer 2 (2, 0), (1, 1): 1 + 1 + 4 + 16 = 22 over 4 -> 5.5
    assert parts["hidden"] == pytest.approx(5.5)
    # attention scores: student q·k = [[1, -1], [2, -2]]; teacher 0.5·q·k = [[0.5, 1], [0.5, 0]];
    # squared differences 0.25 + 4 + 2.25 + 4 = 10.5 over the 4 real entries -> 2.625
    assert parts["attention"] == pytest.approx(2.625)
    assert "prediction" not in parts
    assert loss.item() == pytest.approx(1.75 + 5.5 + 2.625)


def test_minilm_hand_value_each_model_with_its_own_scaling() -> None:
    # One head. Student head size 1 (scaling 1), teacher head size 4 (scaling 1/2).
    student = Signals(
        queries=(heads([[1.0], [1.0], [9.0]]),),
        keys=(heads([[0.0], [LN2], [9.0]]),),
        values=(heads([[0.0], [1.0], [9.0]]),),
        attention_scaling=(1.0,),
    )
    teacher = Signals(
        queries=(heads([[2, 0, 0, 0], [0, 0, 0, 0], [9, 9, 9, 9]]),),
        keys=(heads([[0, 0, 0, 0], [LN3, 0, 0, 0], [9, 9, 9, 9]]),),
        values=(heads([[2, 0, 0, 0], [0, 0, 0, 0], [9, 9, 9, 9]]),),
        attention_scaling=(0.5,),
    )
    loss, parts = build_objective("minilm", task_type="masked_lm")(student, teacher, MASK)
    # attention: student rows are softmax([0, ln 2]) = (1/3, 2/3); teacher row 0 = softmax(0.5·[0, 2 ln 3])
    # = (1/4, 3/4), row 1 = softmax([0, 0]) = (1/2, 1/2). Mean of the two row KLs.
    row0 = 0.25 * math.log(0.25 / (1 / 3)) + 0.75 * math.log(0.75 / (2 / 3))
    row1 = 0.5 * math.log(0.5 / (1 / 3)) + 0.5 * math.log(0.5 / (2 / 3))
    assert parts["attention"] == pytest.approx((row0 + row1) / 2)
    # value relation: teacher V·Vᵀ/√4 = [[2, 0], [0, 0]] -> rows softmax([2, 0]), uniform;
    # student V·Vᵀ/√1 = [[0, 0], [0, 1]] -> rows uniform, softmax([0, 1]).
    value = (kl_softmax_vs_uniform(2.0) + kl_uniform_vs_softmax(1.0)) / 2
    assert parts["value_relation"] == pytest.approx(value)
    assert loss.item() == pytest.approx((row0 + row1) / 2 + value)


def test_minilmv2_hand_value_merging_heads_into_one_relation_head() -> None:
    # Student: 2 heads of size 1, concatenated to width 2; teacher: 1 head of size 2. A_r = 1,
    # so d_r = 2 on both sides and relations are softmax(X·Xᵀ/√2).
    student = Signals(
        queries=(heads([[0.0], [1.0], [9.0]], [[0.0], [1.0], [9.0]]),),  # tokens (0, 0), (1, 1)
        keys=(heads([[1.0], [0.0], [9.0]], [[0.0], [0.0], [9.0]]),),  # tokens (1, 0), (0, 0)
        values=(heads([[0.0], [0.0], [9.0]], [[0.0], [0.0], [9.0]]),),  # tokens (0, 0), (0, 0)
    )
    zeros = heads([[0.0, 0.0], [0.0, 0.0], [9.0, 9.0]])
    teacher = Signals(queries=(zeros,), keys=(zeros,), values=(heads([[1.0, 1.0], [0.0, 0.0], [9.0, 9.0]]),))
    loss, parts = build_objective("minilmv2", task_type="masked_lm", relation_heads=1)(student, teacher, MASK)
    root2 = math.sqrt(2.0)
    # Q-Q: teacher uniform rows; student row 0 [0, 0]/√2 uniform, row 1 [0, 2]/√2 -> KL f(√2)
    assert parts["qq"] == pytest.approx(kl_uniform_vs_softmax(root2) / 2)
    # K-K: student row 0 [1, 0]/√2 -> KL f(1/√2), row 1 uniform
    assert parts["kk"] == pytest.approx(kl_uniform_vs_softmax(1 / root2) / 2)
    # V-V: teacher row 0 [2, 0]/√2 = [√2, 0], row 1 uniform; student uniform
    assert parts["vv"] == pytest.approx(kl_softmax_vs_uniform(root2) / 2)
    assert loss.item() == pytest.approx(
        (kl_uniform_vs_softmax(root2) + kl_uniform_vs_softmax(1 / root2) + kl_softmax_vs_uniform(root2)) / 2
    )


def test_hidden_mse_hand_value_and_gradient_through_a_width_projection() -> None:
    # Student width 1, teacher width 2, projection W = (1, 3); uniform map (0, 0), (1, 1).
    objective = build_objective("hidden_mse", student_config=config(1), teacher_config=config(2)).double()
    with torch.no_grad():
        objective.projection.weight.copy_(t([[1.0], [3.0]]))
    student = Signals(hidden_states=(t([[[1.0], [0.0], [9.0]]]), t([[[2.0], [-1.0], [9.0]]])))
    teacher = Signals(hidden_states=(t([[[1.0, 3.0], [0.0, 0.0], [7.0, 7.0]]]),
                                     t([[[1.0, 5.0], [0.0, -3.0], [7.0, 7.0]]])))
    loss, _ = objective(student, teacher, MASK)
    # layer 0: W·h = (1, 3), (0, 0) equals the teacher -> 0
    # layer 1: W·h = (2, 6), (-1, -3) vs (1, 5), (0, -3): squares 1 + 1 + 1 + 0 = 3 over 4 -> 0.75
    # mean over the two mapped layers -> 0.375
    assert loss.item() == pytest.approx(0.375)
    loss.backward()
    # L = [(w0-1)² + (w1-3)²]/8 + [(2w0-1)² + (2w1-5)² + w0² + (3-w1)²]/8 at w = (1, 3):
    # dL/dw0 = [0 + 4·1 + 2·1]/8 = 0.75, dL/dw1 = [0 + 4·1 + 0]/8 = 0.5
    torch.testing.assert_close(objective.projection.weight.grad, t([[0.75], [0.5]]))
