"""Pure tensor functions of minidisc.objectives, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from minidisc.objectives import functional as fn

LN2, LN3 = math.log(2.0), math.log(3.0)

# Two examples, three classes, chosen so the softmaxes are simple fractions:
#   teacher row 0 = log(1, 2, 3)      -> p = (1/6, 2/6, 3/6)
#   teacher row 1 = log(1, 1, 2)      -> p = (1/4, 1/4, 1/2)
#   student row 0 = (0, 0, 0)         -> q = (1/3, 1/3, 1/3)
#   student row 1 = log(2, 1, 1)      -> q = (1/2, 1/4, 1/4)
TEACHER = torch.tensor([[0.0, LN2, LN3], [0.0, 0.0, LN2]], dtype=torch.float64)
STUDENT = torch.tensor([[0.0, 0.0, 0.0], [LN2, 0.0, 0.0]], dtype=torch.float64)
# soft CE row 0: -sum p log(1/3) = ln 3
# soft CE row 1: -(1/4 ln 1/2 + 1/4 ln 1/4 + 1/2 ln 1/4) = (1/4 + 1/2 + 1) ln 2 = 1.75 ln 2
SOFT_CE = (LN3 + 1.75 * LN2) / 2
# KL row 0: sum p ln(p/q) = 1/6 ln(1/2) + 1/3 ln(1) + 1/2 ln(3/2)
# KL row 1: 1/4 ln(1/2) + 1/4 ln(1) + 1/2 ln(2) = 0.25 ln 2
KL = ((-LN2 / 6 + 0.5 * math.log(1.5)) + 0.25 * LN2) / 2


def test_soft_cross_entropy_hand_values() -> None:
    assert fn.soft_cross_entropy(STUDENT, TEACHER).item() == pytest.approx(SOFT_CE, abs=1e-12)


def test_kl_hand_values_and_zero_when_equal() -> None:
    assert fn.kl_div_with_temperature(STUDENT, TEACHER).item() == pytest.approx(KL, abs=1e-12)
    assert fn.kl_div_with_temperature(TEACHER, TEACHER).item() == pytest.approx(0.0, abs=1e-12)


def test_temperature_scales_logits_and_multiplies_by_t_squared() -> None:
    # logits doubled and T = 2 give the same distributions; the T^2 factor multiplies by 4.
    assert fn.kl_div_with_temperature(
        2 * STUDENT, 2 * TEACHER, temperature=2.0
    ).item() == pytest.approx(4 * KL)
    assert fn.soft_cross_entropy(2 * STUDENT, 2 * TEACHER, temperature=2.0).item() == pytest.approx(
        4 * SOFT_CE
    )


def test_kl_is_summed_over_classes_not_averaged() -> None:
    # Appending classes with -inf-like logits on both sides leaves the KL unchanged; a
    # mean over the (N, V) matrix would shrink it.
    pad = torch.full((2, 5), -1e9, dtype=torch.float64)
    wide = fn.kl_div_with_temperature(torch.cat([STUDENT, pad], 1), torch.cat([TEACHER, pad], 1))
    assert wide.item() == pytest.approx(KL, abs=1e-9)


def test_token_level_mask_selects_positions() -> None:
    # (B=1, L=3, C=3): positions 0 and 2 selected; position 1 holds garbage.
    student = torch.stack(
        [STUDENT[0], torch.tensor([9.0, -9.0, 3.0], dtype=torch.float64), STUDENT[1]]
    )[None]
    teacher = torch.stack(
        [TEACHER[0], torch.tensor([-5.0, 5.0, 0.0], dtype=torch.float64), TEACHER[1]]
    )[None]
    mask = torch.tensor([[True, False, True]])
    assert fn.kl_div_with_temperature(student, teacher, mask=mask).item() == pytest.approx(
        KL, abs=1e-12
    )
    assert fn.soft_cross_entropy(student, teacher, mask=mask).item() == pytest.approx(
        SOFT_CE, abs=1e-12
    )


def test_empty_selection_gives_zero_with_graph() -> None:
    student = STUDENT[None].clone().requires_grad_(True)
    loss = fn.kl_div_with_temperature(
        student, TEACHER[None], mask=torch.zeros(1, 2, dtype=torch.bool)
    )
    loss.backward()
    assert loss.item() == 0.0 and torch.all(student.grad == 0)


def test_masked_mse_ignores_padding() -> None:
    student = torch.tensor([[[1.0, 2.0], [100.0, 100.0]], [[0.0, 0.0], [3.0, 1.0]]])
    teacher = torch.zeros(2, 2, 2)
    mask = torch.tensor([[True, False], [True, True]])
    # squared errors of the real tokens: (1 + 4) + (0 + 0) + (9 + 1) = 15 over 3 tokens x 2 dims
    assert fn.masked_mse(student, teacher, mask).item() == pytest.approx(15 / 6)
    assert fn.masked_mse(student, student.clone(), mask).item() == 0.0


def test_cosine_distance_hand_values() -> None:
    student = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]]])
    teacher = torch.tensor([[[0.0, 1.0], [2.0, 2.0], [-1.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    # position 0: orthogonal -> 1; position 1: parallel -> 0; position 2 is padding
    assert fn.cosine_distance(student, teacher, mask).item() == pytest.approx(0.5)


def test_normalized_squared_distance_sums_over_features() -> None:
    # (3, 4)/5 = (.6, .8) vs (1, 0): differences (-.4, .8) -> squares (.16, .64), sum .8
    # (0, 2) -> (0, 1) vs (-1, 0) -> (-1, 0): differences (1, 1), sum 2
    distance = fn.normalized_squared_distance(
        torch.tensor([[3.0, 4.0], [0.0, 2.0]]), torch.tensor([[7.0, 0.0], [-1.0, 0.0]])
    )
    assert distance.shape == (2,)
    assert distance.tolist() == pytest.approx([0.8, 2.0])
    with pytest.raises(ValueError, match="shapes differ"):
        fn.normalized_squared_distance(torch.ones(1, 2), torch.ones(1, 3))


def test_key_and_entry_masks() -> None:
    attention_mask = torch.tensor([[1, 1, 0]])
    keys = fn.key_mask(attention_mask)[0, 0]
    expected = torch.tensor(
        [[1, 1, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool
    )  # pad row keeps its diagonal
    assert torch.equal(keys, expected)
    entries = fn.entry_mask(attention_mask)[0, 0]
    assert torch.equal(entries, torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=torch.bool))
    causal = fn.entry_mask(torch.tensor([[1, 1, 1]]), causal=True)[0, 0]
    assert torch.equal(causal, torch.ones(3, 3, dtype=torch.bool).tril())


def test_attention_kl_hand_values() -> None:
    # One head, L = 3 with the last token padded. Real-key scores:
    #   teacher rows: (ln 2, 0) -> (2/3, 1/3);  (0, 0) -> (1/2, 1/2)
    #   student rows: (0, 0)    -> (1/2, 1/2);  (0, ln 3) -> (1/4, 3/4)
    # The padded key (column 2) gets a huge score that must be excluded; the padded query
    # row (row 2) must not count.
    big = 50.0
    teacher = torch.tensor(
        [[[[LN2, 0.0, big], [0.0, 0.0, big], [1.0, 2.0, 3.0]]]], dtype=torch.float64
    )
    student = torch.tensor(
        [[[[0.0, 0.0, -big], [0.0, LN3, big], [3.0, 2.0, 1.0]]]], dtype=torch.float64
    )
    attention_mask = torch.tensor([[1, 1, 0]])
    allowed = fn.key_mask(attention_mask)
    kl = fn.attention_kl(
        fn.masked_log_softmax(student, allowed),
        fn.masked_log_softmax(teacher, allowed),
        attention_mask,
    )
    row0 = 2 / 3 * math.log((2 / 3) / 0.5) + 1 / 3 * math.log((1 / 3) / 0.5)
    row1 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl.item() == pytest.approx((row0 + row1) / 2, abs=1e-12)  # heads x real tokens = 2


def test_attention_kl_gradients_finite_with_padding_and_causal_left_padding() -> None:
    # Left padding + causal mask: the first (padded) query has no real key at all.
    scores = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    attention_mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    allowed = fn.key_mask(attention_mask, causal=True)
    teacher = fn.masked_log_softmax(torch.randn(2, 2, 4, 4, dtype=torch.float64), allowed)
    loss = fn.attention_kl(
        fn.masked_log_softmax(scores, allowed), teacher, attention_mask, causal=True
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(scores.grad).all()
    # no gradient reaches padded queries, padded keys or future keys
    assert torch.all(scores.grad[0, :, 0, :] == 0)
    assert torch.all(scores.grad[0, :, :, 0] == 0)
    assert torch.all(scores.grad.triu(diagonal=1) == 0)
    assert scores.grad[1].abs().sum() > 0


def test_attention_score_mse_excludes_masked_entries() -> None:
    # 1 example, 2 heads, L = 2 with token 1 padded: only entry (0, 0) of each head counts.
    student = torch.tensor([[[[1.0, 50.0], [60.0, 70.0]], [[-2.0, 5.0], [5.0, 5.0]]]])
    teacher = torch.tensor([[[[0.0, -1e4], [-1e4, -1e4]], [[1.0, 0.0], [0.0, 0.0]]]])
    mse = fn.attention_score_mse(student, teacher, torch.tensor([[1, 0]]))
    assert mse.item() == pytest.approx((1.0**2 + 3.0**2) / 2)


def test_split_and_merge_heads_round_trip() -> None:
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8)
    heads = fn.split_heads(x, 4)
    assert heads.shape == (2, 4, 3, 2)
    assert torch.equal(heads[1, 2, 0], x[1, 0, 4:6])
    assert torch.equal(fn.merge_heads(heads), x)
    with pytest.raises(ValueError):
        fn.split_heads(x, 3)


def test_relation_kl_hand_values() -> None:
    # One example, L = 2, width 2 split into A_r = 2 relation heads of width 1, so the
    # relation logits are x_i * x_j / sqrt(1).
    # teacher head 0: x = (ln 2, 1) -> rows (ln2*ln2, ln2), (ln2, 1); head 1: x = (0, 0) -> uniform
    # student: both heads x = (0, 0) -> uniform rows
    teacher = torch.tensor([[[LN2, 0.0], [1.0, 0.0]]], dtype=torch.float64)  # (B, L, width)
    student = torch.zeros(1, 2, 2, dtype=torch.float64)
    attention_mask = torch.ones(1, 2, dtype=torch.long)

    def kl_row(logits: list[float]) -> float:
        z = sum(math.exp(v) for v in logits)
        return sum(math.exp(v) / z * math.log(math.exp(v) / z / 0.5) for v in logits)

    expected = (kl_row([LN2 * LN2, LN2]) + kl_row([LN2, 1.0]) + 0.0 + 0.0) / 4  # 2 heads x 2 tokens
    got = fn.relation_kl(student[:, None], teacher[:, None], attention_mask, num_relation_heads=2)
    assert got.item() == pytest.approx(expected, abs=1e-12)


def test_relation_kl_is_padding_invariant() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(2, 4, 3, 8), torch.randn(2, 2, 3, 12)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    base = fn.relation_kl(s, t, mask, num_relation_heads=4)
    s_pad = torch.cat([s, 100 * torch.randn(2, 4, 2, 8)], dim=2)
    t_pad = torch.cat([t, 100 * torch.randn(2, 2, 2, 12)], dim=2)
    mask_pad = torch.cat([mask, torch.zeros(2, 2, dtype=torch.long)], dim=1)
    assert fn.relation_kl(s_pad, t_pad, mask_pad, num_relation_heads=4).item() == pytest.approx(
        base.item(), rel=1e-5
    )
