"""Objectives of minidisc.objectives on synthetic signals.

Expected values come from hand computation (commented) or from straightforward loop
implementations below that work on each example's *unpadded* slice — an independent way
of handling padding from the masks the library uses.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from minidisc.errors import ConfigError
from minidisc.objectives import OBJECTIVE_DESCRIPTIONS, Signals, build_objective, objective_options
from minidisc.objectives.registry import OBJECTIVES

LN2, LN3 = math.log(2.0), math.log(3.0)
TOKEN_TASKS = ("token_classification", "masked_lm", "causal_lm")


# ---------------------------------------------------------------------------
# synthetic signals


def make_signals(
    *,
    seed: int,
    task_type: str = "classification",
    batch: int = 2,
    length: int = 5,
    layers: int = 2,
    width: int = 8,
    heads: int = 2,
    kv_heads: int | None = None,
    head_dim: int = 4,
    classes: int = 3,
    causal: bool = False,
    grad: bool = False,
) -> Signals:
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(grad)

    kv = kv_heads or heads
    if task_type == "regression":
        logits = rand(batch, 1)
    elif task_type == "classification":
        logits = rand(batch, classes)
    else:
        logits = rand(batch, length, classes)
    return Signals(
        logits=logits,
        hidden_states=tuple(rand(batch, length, width) for _ in range(layers + 1)),
        queries=tuple(rand(batch, heads, length, head_dim) for _ in range(layers)),
        keys=tuple(rand(batch, kv, length, head_dim) for _ in range(layers)),
        values=tuple(rand(batch, kv, length, head_dim) for _ in range(layers)),
        attention_scaling=tuple(head_dim**-0.5 for _ in range(layers)),
        is_causal=causal,
    )


def make_batch(
    task_type: str, lengths: list[int], length: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.tensor([[1] * n + [0] * (length - n) for n in lengths])
    if task_type == "regression":
        labels = torch.randn(len(lengths), generator=g)
    elif task_type == "classification":
        labels = torch.randint(0, 3, (len(lengths),), generator=g)
    else:
        labels = torch.randint(0, 3, (len(lengths), length), generator=g).masked_fill(
            mask == 0, -100
        )
        if task_type == "masked_lm":  # only some positions are masked-LM targets
            labels[:, 1::2] = -100
    return {"attention_mask": mask, "labels": labels}


def pad_signals(signals: Signals, extra: int, seed: int = 99) -> Signals:
    """Append ``extra`` garbage positions along the sequence axis."""
    g = torch.Generator().manual_seed(seed)

    def pad(x: torch.Tensor, dim: int) -> torch.Tensor:
        shape = list(x.shape)
        shape[dim] = extra
        return torch.cat(
            [x.detach(), 50 * torch.randn(*shape, generator=g, dtype=x.dtype)], dim=dim
        )

    logits = signals.logits if signals.logits.dim() == 2 else pad(signals.logits, 1)
    return replace(
        signals,
        logits=logits,
        hidden_states=tuple(pad(h, 1) for h in signals.hidden_states),
        queries=tuple(pad(x, 2) for x in signals.queries),
        keys=tuple(pad(x, 2) for x in signals.keys),
        values=tuple(pad(x, 2) for x in signals.values),
    )


def pad_batch(batch: dict[str, torch.Tensor], extra: int) -> dict[str, torch.Tensor]:
    out = dict(batch)
    bsz = batch["attention_mask"].shape[0]
    out["attention_mask"] = torch.cat(
        [batch["attention_mask"], torch.zeros(bsz, extra, dtype=torch.long)], 1
    )
    if batch["labels"].dim() == 2:
        out["labels"] = torch.cat([batch["labels"], torch.full((bsz, extra), -100)], 1)
    if "distill_mask" in batch:
        out["distill_mask"] = torch.cat(
            [batch["distill_mask"], torch.zeros(bsz, extra, dtype=torch.bool)], 1
        )
    return out


def clone_signals(signals: Signals, grad: bool) -> Signals:
    def c(x: torch.Tensor) -> torch.Tensor:
        return x.detach().clone().requires_grad_(grad)

    return replace(
        signals,
        logits=c(signals.logits),
        hidden_states=tuple(c(h) for h in signals.hidden_states),
        queries=tuple(c(x) for x in signals.queries),
        keys=tuple(c(x) for x in signals.keys),
        values=tuple(c(x) for x in signals.values),
    )


def leaves(signals: Signals) -> list[torch.Tensor]:
    return [
        signals.logits,
        *signals.hidden_states,
        *signals.queries,
        *signals.keys,
        *signals.values,
    ]


# Objectives with options that switch the label terms off (zero-when-equal needs that).
LABEL_FREE = {
    "kd": {"alpha": 1.0},
    "minidisc": {},
    "pkd": {"alpha": 1.0},
    "hidden_mse": {},
    "cosine": {},
    "tinybert": {},
    "minilm": {},
    "minilmv2": {"relation_heads": 2},
    "distilbert": {"alpha_mlm": 0.0},
    # next-token divergences (tests/unit/test_objectives_causal.py): no regression
    "forward_kl": {},
    "reverse_kl": {},
    "jsd": {},
    "skew_kl": {},
    "skew_reverse_kl": {},
}
DISTRIBUTION_ONLY = ("forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl")
TASKS_OF = {
    name: ("classification", "regression", "token_classification", "masked_lm", "causal_lm")
    if name not in DISTRIBUTION_ONLY
    else ("classification", "token_classification", "masked_lm", "causal_lm")
    for name in LABEL_FREE
}


def skip_unless_applies(name: str, task_type: str) -> None:
    if task_type not in TASKS_OF[name]:
        pytest.skip(f"{name} has no {task_type} form (refused at construction)")


def entropy(logits: torch.Tensor, mask: torch.Tensor | None, temperature: float = 1.0) -> float:
    """Mean entropy of softmax(logits/T) over rows (or selected positions)."""
    rows = logits.detach() if mask is None else logits.detach()[mask]
    p = torch.softmax(rows / temperature, dim=-1)
    return float(-(p * torch.log(p)).sum(-1).mean())


def positions_for(task_type: str, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    if task_type in ("classification", "regression"):
        return None
    if task_type == "causal_lm":
        return batch["attention_mask"].bool()
    return batch["labels"] != -100


def test_every_objective_is_tested() -> None:
    assert set(LABEL_FREE) == set(OBJECTIVES) == set(OBJECTIVE_DESCRIPTIONS)


# ---------------------------------------------------------------------------
# generic properties of every objective


@pytest.mark.parametrize(
    "task_type", ["classification", "regression", "token_classification", "masked_lm", "causal_lm"]
)
@pytest.mark.parametrize("name", sorted(LABEL_FREE))
def test_minimum_when_student_equals_teacher(name: str, task_type: str) -> None:
    skip_unless_applies(name, task_type)
    causal = task_type == "causal_lm"
    teacher = make_signals(seed=1, task_type=task_type, causal=causal)
    student = clone_signals(teacher, grad=True)
    batch = make_batch(task_type, [5, 3], 5)
    objective = build_objective(name, task_type=task_type, **LABEL_FREE[name])
    loss, parts = objective(student, teacher, batch)
    # Soft-CE terms bottom out at the teacher's entropy, every other term at 0.
    expected = 0.0
    soft_ce = task_type != "regression"
    if name == "minidisc" and soft_ce:
        expected = entropy(teacher.logits, positions_for(task_type, batch)) / 2
    if name == "pkd" and soft_ce:
        expected = entropy(teacher.logits, positions_for(task_type, batch), temperature=5.0)
    if name == "tinybert" and soft_ce and task_type not in ("masked_lm", "causal_lm"):
        expected = entropy(teacher.logits, positions_for(task_type, batch))
    assert loss.item() == pytest.approx(expected, abs=1e-9)
    assert set(parts) and all(isinstance(v, float) for v in parts.values())
    loss.backward()
    for x in leaves(student):
        assert x.grad is None or torch.allclose(x.grad, torch.zeros_like(x.grad), atol=1e-9)


@pytest.mark.parametrize(
    "task_type", ["classification", "regression", "token_classification", "masked_lm", "causal_lm"]
)
@pytest.mark.parametrize("name", sorted(LABEL_FREE))
def test_padding_does_not_change_the_loss(name: str, task_type: str) -> None:
    skip_unless_applies(name, task_type)
    causal = task_type == "causal_lm"
    teacher = make_signals(seed=1, task_type=task_type, causal=causal)
    student = make_signals(seed=2, task_type=task_type, causal=causal)
    batch = make_batch(task_type, [5, 3], 5)
    options = {
        k: v for k, v in LABEL_FREE[name].items() if k not in ("alpha", "alpha_mlm")
    }  # with labels
    objective = build_objective(name, task_type=task_type, **options)
    base, _ = objective(student, teacher, batch)
    padded, _ = objective(
        pad_signals(student, 3, seed=7), pad_signals(teacher, 3, seed=8), pad_batch(batch, 3)
    )
    assert padded.item() == pytest.approx(base.item(), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", sorted(LABEL_FREE))
def test_gradient_reaches_the_student_only(name: str) -> None:
    teacher = make_signals(seed=1, grad=True)
    student = make_signals(seed=2, grad=True)
    batch = make_batch("classification", [5, 3], 5)
    options = {k: v for k, v in LABEL_FREE[name].items() if k not in ("alpha", "alpha_mlm")}
    objective = build_objective(name, task_type="classification", **options)
    loss, _ = objective(student, teacher, batch)
    loss.backward()
    assert all(x.grad is None for x in leaves(teacher))
    assert sum(float(x.grad.abs().sum()) for x in leaves(student) if x.grad is not None) > 0


# ---------------------------------------------------------------------------
# hand-computed values

TEACHER_2X3 = torch.tensor(
    [[0.0, LN2, LN3], [0.0, 0.0, LN2]], dtype=torch.float64
)  # p = (1,2,3)/6, (1,1,2)/4
STUDENT_2X3 = torch.tensor(
    [[0.0, 0.0, 0.0], [LN2, 0.0, 0.0]], dtype=torch.float64
)  # q = (1,1,1)/3, (2,1,1)/4
KL_2X3 = ((-LN2 / 6 + 0.5 * math.log(1.5)) + 0.25 * LN2) / 2
SOFT_CE_2X3 = (LN3 + 1.75 * LN2) / 2


def test_kd_classification_hand_value() -> None:
    batch = {"attention_mask": torch.ones(2, 1, dtype=torch.long), "labels": torch.tensor([0, 0])}
    # label CE: row 0 -ln(1/3) = ln 3, row 1 -ln(1/2) = ln 2
    expected = 0.5 * KL_2X3 + 0.5 * (LN3 + LN2) / 2
    loss, parts = build_objective("kd")(
        Signals(logits=STUDENT_2X3), Signals(logits=TEACHER_2X3), batch
    )
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert parts["kd"] == pytest.approx(KL_2X3) and parts["label"] == pytest.approx((LN3 + LN2) / 2)
    # alpha and tau: 0.8 * tau^2 * KL(tau) with doubled logits and tau = 2 is 0.8 * 4 * KL
    loss, _ = build_objective("kd", alpha=0.8, temperature=2.0)(
        Signals(logits=2 * STUDENT_2X3), Signals(logits=2 * TEACHER_2X3), batch
    )
    ce_doubled = (LN3 + (math.log(6) - 2 * LN2)) / 2  # student row 1 logits 2*ln2,0,0 -> q0 = 4/6
    assert loss.item() == pytest.approx(0.8 * 4 * KL_2X3 + 0.2 * ce_doubled, abs=1e-12)


def test_kd_regression_hand_value() -> None:
    # KD term MSE((1, 2), (0, 0)) = 2.5; label term MSE((1, 2), (1, 1)) = 0.5
    batch = {"labels": torch.tensor([1.0, 1.0])}
    student = Signals(logits=torch.tensor([[1.0], [2.0]]))
    teacher = Signals(logits=torch.zeros(2, 1))
    loss, _ = build_objective("kd", task_type="regression")(student, teacher, batch)
    assert loss.item() == pytest.approx(0.5 * 2.5 + 0.5 * 0.5)


def test_kd_token_level_uses_explicit_distill_mask() -> None:
    # (1, 3, 3): positions 0 and 2 carry the 2x3 example; position 1 is excluded by distill_mask
    student = torch.stack(
        [STUDENT_2X3[0], torch.tensor([5.0, 0.0, 0.0], dtype=torch.float64), STUDENT_2X3[1]]
    )[None]
    teacher = torch.stack(
        [TEACHER_2X3[0], torch.tensor([0.0, 5.0, 0.0], dtype=torch.float64), TEACHER_2X3[1]]
    )[None]
    batch = {
        "attention_mask": torch.ones(1, 3, dtype=torch.long),
        "distill_mask": torch.tensor([[True, False, True]]),
    }
    objective = build_objective("kd", task_type="masked_lm", alpha=1.0)
    loss, _ = objective(Signals(logits=student), Signals(logits=teacher), batch)
    assert loss.item() == pytest.approx(KL_2X3, abs=1e-12)
    # positions="all" ignores the selection and averages over every real token
    all_positions = build_objective("kd", task_type="masked_lm", alpha=1.0, positions="all")
    loss_all, _ = all_positions(Signals(logits=student), Signals(logits=teacher), batch)
    assert loss_all.item() > loss.item()


def test_kd_needs_labels_unless_alpha_is_one() -> None:
    objective = build_objective("kd", alpha=0.5)
    with pytest.raises(ConfigError, match="labels"):
        objective(Signals(logits=STUDENT_2X3), Signals(logits=TEACHER_2X3), {})


def _hidden(values: list[list[list[float]]]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_minidisc_hand_value_two_layers() -> None:
    # L = 2 -> hidden indices 0, 1, 2. One example of 2 tokens, the second padded (garbage).
    # Teacher states are 0; student real-token states: (1, 1), (2, 0), (0, 3)
    # -> per-layer MSE 1, 2, 4.5 -> mean 2.5.  Logits: teacher log(1,2,3), student 0 -> soft CE ln 3.
    student = Signals(
        logits=torch.zeros(1, 3, dtype=torch.float64),
        hidden_states=(
            _hidden([[[1, 1], [9, 9]]]),
            _hidden([[[2, 0], [9, 9]]]),
            _hidden([[[0, 3], [9, 9]]]),
        ),
    )
    teacher = Signals(
        logits=TEACHER_2X3[:1],
        hidden_states=tuple(torch.zeros(1, 2, 2, dtype=torch.float64) for _ in range(3)),
    )
    loss, parts = build_objective("minidisc")(
        student, teacher, {"attention_mask": torch.tensor([[1, 0]])}
    )
    assert parts["hidden_mse"] == pytest.approx(2.5)
    assert parts["logit"] == pytest.approx(LN3)
    assert loss.item() == pytest.approx((2.5 + LN3) / 2)


def test_minidisc_uses_every_sixth_layer_only() -> None:
    # L = 12: only indices 0, 2, ..., 12 count; odd layers carry large errors that must be ignored.
    teacher_states = tuple(torch.zeros(1, 1, 2, dtype=torch.float64) for _ in range(13))
    student_states = tuple(
        torch.full((1, 1, 2), 100.0 if i % 2 else 1.0, dtype=torch.float64) for i in range(13)
    )
    logits = torch.zeros(1, 1, dtype=torch.float64)
    loss, parts = build_objective("minidisc", task_type="regression")(
        Signals(logits=logits, hidden_states=student_states),
        Signals(logits=logits, hidden_states=teacher_states),
        {},
    )
    assert parts["hidden_mse"] == pytest.approx(1.0) and loss.item() == pytest.approx(0.5)


def test_minidisc_regression_and_ner_logit_terms() -> None:
    states = (torch.zeros(2, 3, 2, dtype=torch.float64),) * 2
    # regression: MSE((1, 2), (0, 0)) = 2.5
    _, parts = build_objective("minidisc", task_type="regression")(
        Signals(logits=torch.tensor([[1.0], [2.0]], dtype=torch.float64), hidden_states=states),
        Signals(logits=torch.zeros(2, 1, dtype=torch.float64), hidden_states=states),
        {"attention_mask": torch.ones(2, 3, dtype=torch.long)},
    )
    assert parts["logit"] == pytest.approx(2.5)
    # NER: soft CE over first sub-tokens only (labels != -100); other positions hold garbage
    student = torch.zeros(1, 3, 3, dtype=torch.float64)
    student[0, 0], student[0, 1], student[0, 2] = (
        STUDENT_2X3[0],
        torch.tensor([7.0, 0, 0]),
        STUDENT_2X3[1],
    )
    teacher = torch.zeros(1, 3, 3, dtype=torch.float64)
    teacher[0, 0], teacher[0, 1], teacher[0, 2] = (
        TEACHER_2X3[0],
        torch.tensor([0, 7.0, 0]),
        TEACHER_2X3[1],
    )
    states = (torch.zeros(1, 3, 2, dtype=torch.float64),) * 2
    batch = {
        "attention_mask": torch.ones(1, 3, dtype=torch.long),
        "labels": torch.tensor([[2, -100, 1]]),
    }
    _, parts = build_objective("minidisc", task_type="token_classification")(
        Signals(logits=student, hidden_states=states),
        Signals(logits=teacher, hidden_states=states),
        batch,
    )
    assert parts["logit"] == pytest.approx(SOFT_CE_2X3, abs=1e-12)


def test_pkd_hand_value() -> None:
    # 2-layer student, 4-layer teacher: PKD-skip matches student layer 1 with teacher layer 2.
    # [CLS] (position 0): student (3, 4) -> (.6, .8); teacher (5, 0) -> (1, 0);
    # squared distance .16 + .64 = .8 (summed over features, Sun et al. 2019 eq. 4).
    # The second (padded) position and the other layers hold garbage.
    zeros = torch.zeros(1, 2, 2, dtype=torch.float64)
    student_states = (zeros, _hidden([[[3, 4], [9, -9]]]), 7 + zeros)
    teacher_states = (zeros, -5 + zeros, _hidden([[[5, 0], [1, 1]]]), 3 + zeros, zeros)
    batch = {"attention_mask": torch.tensor([[1, 0]]), "labels": torch.tensor([0])}
    student = Signals(logits=STUDENT_2X3[:1], hidden_states=student_states)
    teacher = Signals(logits=TEACHER_2X3[:1], hidden_states=teacher_states)
    objective = build_objective("pkd", alpha=0.5, beta=10.0, temperature=1.0)
    loss, parts = objective(student, teacher, batch)
    # distill = soft CE (T = 1) = ln 3; label CE = -ln(1/3) = ln 3
    assert parts["patient"] == pytest.approx(0.8)
    assert loss.item() == pytest.approx(0.5 * LN3 + 10 * 0.8 + 0.5 * LN3)


def test_pkd_patient_term_sums_layers_and_averages_examples() -> None:
    # 3-layer student and teacher: PKD-skip pairs (1, 1) and (2, 2). Two examples, one position.
    # example 0: layer 1 (1, 0) vs (0, 1) -> 2; layer 2 (1, 1) vs (2, 2) -> 0;    sum 2
    # example 1: layer 1 (3, 4) vs (5, 0) -> .8; layer 2 (0, 3) vs (0, -1) -> 4; sum 4.8
    # patient = mean over examples (2 + 4.8) / 2 = 3.4
    zeros = torch.zeros(2, 1, 2, dtype=torch.float64)
    student_states = (zeros, _hidden([[[1, 0]], [[3, 4]]]), _hidden([[[1, 1]], [[0, 3]]]), zeros)
    teacher_states = (zeros, _hidden([[[0, 1]], [[5, 0]]]), _hidden([[[2, 2]], [[0, -1]]]), zeros)
    logits = torch.zeros(2, 3, dtype=torch.float64)
    _, parts = build_objective("pkd", alpha=1.0)(
        Signals(logits=logits, hidden_states=student_states),
        Signals(logits=logits, hidden_states=teacher_states),
        {"attention_mask": torch.ones(2, 1, dtype=torch.long)},
    )
    assert parts["patient"] == pytest.approx(3.4)


def test_pkd_causal_model_uses_last_real_token() -> None:
    zeros = torch.zeros(1, 3, 2, dtype=torch.float64)
    student_states = (zeros, _hidden([[[1, 0], [3, 4], [9, 9]]]), zeros)
    teacher_states = (zeros, _hidden([[[0, 1], [5, 0], [9, -9]]]), zeros)
    batch = {"attention_mask": torch.tensor([[1, 1, 0]])}
    student = Signals(logits=STUDENT_2X3[:1], hidden_states=student_states, is_causal=True)
    teacher = Signals(logits=STUDENT_2X3[:1], hidden_states=teacher_states, is_causal=True)
    _, parts = build_objective("pkd", alpha=1.0)(student, teacher, batch)
    assert parts["patient"] == pytest.approx(0.8)  # token 1 is the last real one


def test_distilbert_hand_value() -> None:
    # Masked-LM logits (1, 2, 3) = the 2x3 example at two masked positions; tau = 1 for hand values.
    # KD = KL_2X3; MLM CE with labels (0, 0) = (ln 3 + ln 2)/2; cosine of last states
    # (1, 0) vs (0, 1) -> 1 and (1, 1) vs (2, 2) -> 0, mean .5.
    first = torch.zeros(1, 2, 2, dtype=torch.float64)
    student = Signals(logits=STUDENT_2X3[None], hidden_states=(first, _hidden([[[1, 0], [1, 1]]])))
    teacher = Signals(logits=TEACHER_2X3[None], hidden_states=(first, _hidden([[[0, 1], [2, 2]]])))
    batch = {"attention_mask": torch.ones(1, 2, dtype=torch.long), "labels": torch.tensor([[0, 0]])}
    loss, parts = build_objective("distilbert", task_type="masked_lm", temperature=1.0)(
        student, teacher, batch
    )
    assert parts["cos"] == pytest.approx(0.5)
    assert loss.item() == pytest.approx(5 * KL_2X3 + 2 * (LN3 + LN2) / 2 + 0.5, abs=1e-12)


def test_hidden_mse_and_cosine_layer_maps() -> None:
    # student 1 layer, teacher 2 layers; uniform map pairs (0, 0), (1, 2)
    t_states = (_hidden([[[0, 0]]]), _hidden([[[5, 5]]]), _hidden([[[1, 1]]]))
    s_states = (_hidden([[[1, 1]]]), _hidden([[[2, 3]]]))
    s, t = Signals(hidden_states=s_states), Signals(hidden_states=t_states)
    loss, _ = build_objective("hidden_mse")(s, t, {})
    assert loss.item() == pytest.approx((1.0 + (1 + 4) / 2) / 2)
    loss, _ = build_objective("hidden_mse", include_embeddings=False)(s, t, {})
    assert loss.item() == pytest.approx(2.5)
    loss, _ = build_objective("hidden_mse", layer_map=[[1, 1]])(s, t, {})
    assert loss.item() == pytest.approx((9 + 4) / 2)
    loss, _ = build_objective("cosine", layer_map=[[0, 1]])(s, t, {})
    assert loss.item() == pytest.approx(0.0, abs=1e-12)  # (1, 1) and (5, 5) are parallel
    with pytest.raises(ConfigError):
        build_objective("hidden_mse", layer_map=[[3, 0]])(s, t, {})


# ---------------------------------------------------------------------------
# attention objectives against loop implementations on unpadded slices


def _softmax(row: torch.Tensor) -> torch.Tensor:
    e = torch.exp(row - row.max())
    return e / e.sum()


def _ref_scores(q: torch.Tensor, k: torch.Tensor, n: int) -> torch.Tensor:
    """(H, n, n) scores of one example's first n tokens; K heads shared by query groups."""
    group = q.shape[0] // k.shape[0]
    return torch.stack(
        [q[h, :n] @ k[h // group, :n].T / math.sqrt(q.shape[-1]) for h in range(q.shape[0])]
    )


def _ref_kl_rows(t_logits: torch.Tensor, s_logits: torch.Tensor, causal: bool) -> tuple[float, int]:
    """Summed row KLs and the number of rows for (heads, n, n) logits."""
    total, rows = 0.0, 0
    for h in range(t_logits.shape[0]):
        for i in range(t_logits.shape[1]):
            end = i + 1 if causal else t_logits.shape[2]
            p, q = _softmax(t_logits[h, i, :end]), _softmax(s_logits[h, i, :end])
            total += float((p * torch.log(p / q)).sum())
            rows += 1
    return total, rows


def _ref_relation_kl(
    s: torch.Tensor, t: torch.Tensor, lengths: list[int], heads: int | None, causal: bool
) -> float:
    """MiniLM(v2) relation KL; s, t (B, H, L, d)."""
    total, rows = 0.0, 0
    for b, n in enumerate(lengths):
        xs, xt = s[b, :, :n], t[b, :, :n]  # (H, n, d)
        if heads is not None:  # concatenate model heads, split into relation heads
            xs = xs.transpose(0, 1).reshape(n, -1).reshape(n, heads, -1).transpose(0, 1)
            xt = xt.transpose(0, 1).reshape(n, -1).reshape(n, heads, -1).transpose(0, 1)
        ls = xs @ xs.transpose(1, 2) / math.sqrt(xs.shape[-1])
        lt = xt @ xt.transpose(1, 2) / math.sqrt(xt.shape[-1])
        part, r = _ref_kl_rows(lt, ls, causal)
        total, rows = total + part, rows + r
    return total / rows


@pytest.mark.parametrize("causal", [False, True])
def test_minilm_matches_loop_reference(causal: bool) -> None:
    lengths = [5, 3]
    teacher = make_signals(seed=3, heads=4, kv_heads=2, head_dim=4, layers=3, causal=causal)
    student = make_signals(seed=4, heads=4, kv_heads=2, head_dim=2, layers=2, causal=causal)
    batch = make_batch("masked_lm", lengths, 5)
    loss, parts = build_objective("minilm", task_type="masked_lm")(student, teacher, batch)
    total, rows = 0.0, 0
    for b, n in enumerate(lengths):
        part, r = _ref_kl_rows(
            _ref_scores(teacher.queries[-1][b].detach(), teacher.keys[-1][b].detach(), n),
            _ref_scores(student.queries[-1][b].detach(), student.keys[-1][b].detach(), n),
            causal,
        )
        total, rows = total + part, rows + r
    assert parts["attention"] == pytest.approx(total / rows, rel=1e-9)
    value = _ref_relation_kl(
        student.values[-1].detach(), teacher.values[-1].detach(), lengths, None, causal
    )
    assert parts["value_relation"] == pytest.approx(value, rel=1e-9)
    assert loss.item() == pytest.approx(total / rows + value, rel=1e-9)


def test_minilm_rejects_different_head_counts() -> None:
    teacher = make_signals(seed=3, heads=4)
    student = make_signals(seed=4, heads=2)
    with pytest.raises(ConfigError, match="head"):
        build_objective("minilm")(student, teacher, make_batch("masked_lm", [5, 5], 5))


@pytest.mark.parametrize("causal", [False, True])
def test_minilmv2_matches_loop_reference_with_different_shapes(causal: bool) -> None:
    # student: 2 heads x 6 = 12 wide; teacher: 4 heads x 6 = 24 wide, GQA keys/values 2 x 6 = 12.
    lengths = [5, 2]
    teacher = make_signals(seed=5, heads=4, kv_heads=2, head_dim=6, layers=3, causal=causal)
    student = make_signals(seed=6, heads=2, head_dim=6, layers=2, causal=causal)
    batch = make_batch("masked_lm", lengths, 5)
    objective = build_objective(
        "minilmv2", task_type="masked_lm", relation_heads=3, teacher_layer=1
    )
    loss, parts = objective(student, teacher, batch)
    expected = {}
    for kind, s_all, t_all in (
        ("qq", student.queries, teacher.queries),
        ("kk", student.keys, teacher.keys),
        ("vv", student.values, teacher.values),
    ):
        expected[kind] = _ref_relation_kl(s_all[-1].detach(), t_all[1].detach(), lengths, 3, causal)
        assert parts[kind] == pytest.approx(expected[kind], rel=1e-9)
    assert loss.item() == pytest.approx(sum(expected.values()), rel=1e-9)


def test_minilmv2_relation_heads_must_divide_widths() -> None:
    teacher = make_signals(seed=5, heads=4, head_dim=6)
    student = make_signals(seed=6, heads=2, head_dim=6)
    with pytest.raises(ConfigError, match="relation_heads"):
        build_objective("minilmv2", relation_heads=5)(
            student, teacher, make_batch("masked_lm", [5, 5], 5)
        )
    # default: 48 does not divide 12/24, the teacher's 4 heads do
    objective = build_objective("minilmv2")
    assert objective.resolve_relation_heads([student.queries[0]] * 3, [teacher.queries[0]] * 3) == 4


@pytest.mark.parametrize("causal", [False, True])
def test_tinybert_matches_loop_reference(causal: bool) -> None:
    lengths = [4, 2]
    # student 2 layers, teacher 4 layers: g(1) = 2, g(2) = 4; equal heads (2), GQA teacher keys.
    teacher = make_signals(
        seed=7, layers=4, heads=2, kv_heads=1, head_dim=4, causal=causal, length=4
    )
    student = make_signals(seed=8, layers=2, heads=2, head_dim=3, causal=causal, length=4)
    batch = make_batch("classification", lengths, 4)
    loss, parts = build_objective("tinybert")(student, teacher, batch)

    def mse_real(s: torch.Tensor, t: torch.Tensor) -> float:
        diffs = torch.cat([(s[b, :n] - t[b, :n]).reshape(-1) for b, n in enumerate(lengths)])
        return float(diffs.pow(2).mean())

    hs, ht = (
        [h.detach() for h in student.hidden_states],
        [h.detach() for h in teacher.hidden_states],
    )
    embedding = mse_real(hs[0], ht[0])
    hidden = mse_real(hs[1], ht[2]) + mse_real(hs[2], ht[4])
    attention = 0.0
    for m, g in ((1, 2), (2, 4)):
        diffs = []
        for b, n in enumerate(lengths):
            s_sc = _ref_scores(
                student.queries[m - 1][b].detach(), student.keys[m - 1][b].detach(), n
            )
            t_sc = _ref_scores(
                teacher.queries[g - 1][b].detach(), teacher.keys[g - 1][b].detach(), n
            )
            keep = (
                torch.ones(n, n, dtype=torch.bool).tril()
                if causal
                else torch.ones(n, n, dtype=torch.bool)
            )
            diffs.append((s_sc - t_sc)[:, keep].reshape(-1))
        attention += float(torch.cat(diffs).pow(2).mean())
    prediction = entropy(teacher.logits, None) + float(
        (
            torch.softmax(teacher.logits.detach(), -1)
            * (
                torch.log_softmax(teacher.logits.detach(), -1)
                - torch.log_softmax(student.logits.detach(), -1)
            )
        )
        .sum(-1)
        .mean()
    )  # soft CE = entropy + KL
    assert parts["embedding"] == pytest.approx(embedding, rel=1e-9)
    assert parts["hidden"] == pytest.approx(hidden, rel=1e-9)
    assert parts["attention"] == pytest.approx(attention, rel=1e-9)
    assert parts["prediction"] == pytest.approx(prediction, rel=1e-9)
    assert loss.item() == pytest.approx(embedding + hidden + attention + prediction, rel=1e-9)


def test_tinybert_general_distillation_has_no_prediction_loss() -> None:
    teacher, student = (
        make_signals(seed=1, task_type="masked_lm"),
        make_signals(seed=2, task_type="masked_lm"),
    )
    objective = build_objective("tinybert", task_type="masked_lm")
    _, parts = objective(student, teacher, make_batch("masked_lm", [5, 4], 5))
    assert "prediction" not in parts and not objective.needs_logits


# ---------------------------------------------------------------------------
# registry


def test_registry_flags_and_descriptions() -> None:
    for name, cls in OBJECTIVES.items():
        assert cls.description == OBJECTIVE_DESCRIPTIONS[name] and cls.description
    assert build_objective("minilmv2").needs_qkv and not build_objective("kd").needs_qkv
    assert (
        build_objective("minidisc").needs_hidden_states
        and not build_objective("kd").needs_hidden_states
    )
    assert set(objective_options("kd")) == {"alpha", "temperature", "positions"}


def test_registry_errors_list_valid_choices() -> None:
    with pytest.raises(ConfigError, match="minilmv2"):
        build_objective("nope")
    with pytest.raises(ConfigError, match="alpha, temperature, positions"):
        build_objective("kd", beta=1.0)
    with pytest.raises(ConfigError, match="causal_lm"):
        build_objective("kd", task_type="summarization")
    with pytest.raises(ConfigError):
        build_objective("kd", alpha=1.5)
    with pytest.raises(ConfigError):
        build_objective("kd", temperature=0.0)
    with pytest.raises(ConfigError):
        build_objective("kd", positions="some")
    with pytest.raises(ConfigError):
        build_objective("pkd", strategy="middle")
    with pytest.raises(ConfigError):
        build_objective("hidden_mse", layer_map="every")


def test_mismatched_logits_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="label set"):
        build_objective("kd", alpha=1.0)(
            Signals(logits=torch.zeros(2, 3)), Signals(logits=torch.zeros(2, 4)), {}
        )


def test_a_narrower_student_without_configs_is_compared_with_the_teachers_first_channels() -> None:
    # a width-cut sub-network keeps the first d_S channels of the reordered residual stream
    torch.manual_seed(0)
    wide = tuple(torch.randn(1, 2, 8) for _ in range(2))
    logits = torch.randn(1, 2)
    teacher = Signals(logits=logits, hidden_states=wide)
    cut = Signals(logits=logits, hidden_states=tuple(h[..., :4] for h in wide))
    student = Signals(logits=logits, hidden_states=tuple(h[..., :4] + 0.5 for h in wide))
    objective = build_objective("minidisc")
    (loss, parts), (on_cut, cut_parts) = objective(student, teacher, {}), objective(student, cut, {})
    assert torch.equal(loss, on_cut) and parts == cut_parts
    assert parts["hidden_mse"] == pytest.approx(0.25) and objective(cut, teacher, {})[1]["hidden_mse"] == 0


def test_missing_signals_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="need_qkv"):
        build_objective("minilm")(
            Signals(logits=torch.zeros(1, 2)), Signals(logits=torch.zeros(1, 2)), {}
        )
    with pytest.raises(ValueError, match="need_hidden_states"):
        build_objective("minidisc")(
            Signals(logits=torch.zeros(1, 2)), Signals(logits=torch.zeros(1, 2)), {}
        )
