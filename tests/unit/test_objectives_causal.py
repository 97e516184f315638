"""Next-token divergences (forward/reverse KL, JSD(β), DistiLLM's skew KL / skew reverse KL).

Hand values use two-word vocabularies whose softmaxes are written in closed form:
teacher ``p = (1/2, 1/2)`` (logits ``(0, 0)``), student ``q = (3/4, 1/4)`` (logits
``(ln 3, 0)``). Every other expectation is a property the divergences must have.
"""

from __future__ import annotations

import math

import pytest
import torch

from minidisc.errors import ConfigError
from minidisc.objectives import Signals, build_objective, forward_with_signals, objective_options
from minidisc.objectives.base import LOGIT_POSITIONS
from minidisc.objectives.causal import (
    DIVERGENCES,
    generalized_jsd,
    lm_divergence,
    next_token_positions,
    skew_kl,
    skew_reverse_kl,
)

LN2, LN3 = math.log(2.0), math.log(3.0)
NAMES = DIVERGENCES  # objective names equal the divergence kinds

# p = (1/2, 1/2), q = (3/4, 1/4): every divergence by hand
P_LOGITS, Q_LOGITS = [0.0, 0.0], [LN3, 0.0]
FKL = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # = ½ ln(4/3)
RKL = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # = ¾ ln 3 − ln 2
# β = 0.5: m = (5/8, 3/8)
JSD = 0.5 * (0.5 * math.log(0.5 / 0.625) + 0.5 * math.log(0.5 / 0.375)) + 0.5 * (
    0.75 * math.log(0.75 / 0.625) + 0.25 * math.log(0.25 / 0.375)
)
# α = 0.25: skew KL mixes 0.25·p + 0.75·q = (11/16, 5/16); skew RKL 0.75·p + 0.25·q = (9/16, 7/16)
SKL = 0.5 * math.log(0.5 / (11 / 16)) + 0.5 * math.log(0.5 / (5 / 16))
SRKL = 0.75 * math.log(0.75 / (9 / 16)) + 0.25 * math.log(0.25 / (7 / 16))
HAND = {"forward_kl": FKL, "reverse_kl": RKL, "jsd": JSD, "skew_kl": SKL, "skew_reverse_kl": SRKL}
WEIGHTS = {"jsd": {"beta": 0.5}, "skew_kl": {"alpha": 0.25}, "skew_reverse_kl": {"alpha": 0.25}}


def t64(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def random_logits(seed: int, shape: tuple[int, ...] = (2, 4, 7), scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g, dtype=torch.float64)


def test_hand_values_constants() -> None:
    # the closed forms in the comments agree with the sums above
    assert FKL == pytest.approx(0.5 * math.log(4 / 3))
    assert RKL == pytest.approx(0.75 * LN3 - LN2)
    assert SKL == pytest.approx(0.5 * math.log(8 / 11) + 0.5 * math.log(8 / 5))
    assert SRKL == pytest.approx(0.75 * math.log(4 / 3) + 0.25 * math.log(4 / 7))


@pytest.mark.parametrize("kind", DIVERGENCES)
def test_hand_value_token_weighted_with_masked_garbage(kind: str) -> None:
    # Row 0: the (p, q) pair at positions 0 and 2, garbage at the masked position 1.
    # Row 1: student == teacher at position 0 (divergence 0), garbage masked at 1 and 2.
    # Token-weighted mean over the 3 selected positions: (D + D + 0)/3 = 2D/3
    # (a mean of per-row means would give (D + 0)/2 instead).
    garbage_s, garbage_t = [40.0, -40.0], [-40.0, 40.0]
    student = t64([[Q_LOGITS, garbage_s, Q_LOGITS], [[1.0, 2.0], garbage_s, garbage_s]])
    teacher = t64([[P_LOGITS, garbage_t, P_LOGITS], [[1.0, 2.0], garbage_t, garbage_t]])
    mask = torch.tensor([[True, False, True], [True, False, False]])
    loss = lm_divergence(student, teacher, mask, kind=kind, **WEIGHTS.get(kind, {}))
    assert loss.item() == pytest.approx(2 * HAND[kind] / 3, abs=1e-12)
    # the named functions agree with the dispatcher
    named = {"jsd": generalized_jsd, "skew_kl": skew_kl, "skew_reverse_kl": skew_reverse_kl}
    if kind in named:
        assert named[kind](student, teacher, mask, 1.0, *WEIGHTS[kind].values()).item() == pytest.approx(loss.item())


@pytest.mark.parametrize("kind", DIVERGENCES)
def test_zero_at_identity_with_zero_gradient(kind: str) -> None:
    teacher = random_logits(1)
    student = teacher.clone().requires_grad_(True)
    loss = lm_divergence(student, teacher, kind=kind, temperature=2.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    loss.backward()
    assert torch.allclose(student.grad, torch.zeros_like(student.grad), atol=1e-12)


@pytest.mark.parametrize("kind", DIVERGENCES)
def test_non_negative_and_positive_when_different(kind: str) -> None:
    for seed in range(20):
        student, teacher = random_logits(2 * seed), random_logits(2 * seed + 1)
        for weights in ({}, {"beta": 0.1}, {"beta": 0.9}, {"alpha": 0.0}, {"alpha": 0.9}):
            if ("beta" in weights and kind != "jsd") or ("alpha" in weights and "skew" not in kind):
                continue
            assert lm_divergence(student, teacher, kind=kind, **weights).item() > 0.0


@pytest.mark.parametrize("kind", DIVERGENCES)
def test_masked_positions_do_not_count(kind: str) -> None:
    student, teacher = random_logits(3), random_logits(4)
    mask = torch.tensor([[True, True, False, False], [True, False, True, False]])
    base = lm_divergence(student, teacher, mask, kind=kind)
    # anything at masked positions, even inf/nan, leaves the loss unchanged
    s2, t2 = student.clone(), teacher.clone()
    s2[~mask] = float("nan")
    t2[~mask] = 1e6
    assert lm_divergence(s2, t2, mask, kind=kind).item() == pytest.approx(base.item(), abs=1e-12)
    # same as the loss over the selected rows alone
    rows = lm_divergence(student[mask], teacher[mask], kind=kind)
    assert rows.item() == pytest.approx(base.item(), abs=1e-12)
    # nothing selected: 0, still on the graph
    leaf = student.clone().requires_grad_(True)
    empty = lm_divergence(leaf, teacher, torch.zeros(2, 4, dtype=torch.bool), kind=kind)
    assert empty.item() == 0.0 and empty.requires_grad


def test_jsd_symmetry() -> None:
    student, teacher = random_logits(5), random_logits(6)
    half = generalized_jsd(student, teacher, beta=0.5).item()
    assert generalized_jsd(teacher, student, beta=0.5).item() == pytest.approx(half, rel=1e-12)
    assert half <= LN2  # the symmetric JSD is at most ln 2
    # JSD(β)(p ‖ q) = JSD(1−β)(q ‖ p); and it is not symmetric for β ≠ 0.5
    skewed = generalized_jsd(student, teacher, beta=0.2).item()
    assert generalized_jsd(teacher, student, beta=0.8).item() == pytest.approx(skewed, rel=1e-12)
    assert generalized_jsd(teacher, student, beta=0.2).item() != pytest.approx(skewed, rel=1e-3)


def test_limits_of_jsd_and_skew() -> None:
    student, teacher = random_logits(7), random_logits(8)
    fkl = lm_divergence(student, teacher, kind="forward_kl").item()
    rkl = lm_divergence(student, teacher, kind="reverse_kl").item()
    # JSD(β) ≈ β·FKL as β → 0 and ≈ (1−β)·RKL as β → 1
    eps = 1e-7  # the next-order term is O(β · Σ p²/q): tiny β for a 0.1 % match
    assert generalized_jsd(student, teacher, beta=eps).item() / eps == pytest.approx(fkl, rel=1e-3)
    assert generalized_jsd(student, teacher, beta=1 - eps).item() / eps == pytest.approx(rkl, rel=1e-3)
    # α = 0 is the unskewed divergence; skew KL is bounded by ln(1/α)
    assert skew_kl(student, teacher, alpha=0.0).item() == pytest.approx(fkl, rel=1e-12)
    assert skew_reverse_kl(student, teacher, alpha=0.0).item() == pytest.approx(rkl, rel=1e-12)
    far = lm_divergence(100 * student, 100 * teacher, kind="forward_kl").item()
    assert far > math.log(10) and skew_kl(100 * student, 100 * teacher, alpha=0.1).item() <= math.log(10)


@pytest.mark.parametrize("kind", DIVERGENCES)
def test_temperature_softens_and_scales_by_tau_squared(kind: str) -> None:
    student, teacher = random_logits(9), random_logits(10)
    plain = lm_divergence(student, teacher, kind=kind).item()
    # logits multiplied by τ and divided by τ again: the same distributions, times τ²
    for tau in (0.5, 2.0, 4.0):
        scaled = lm_divergence(tau * student, tau * teacher, kind=kind, temperature=tau).item()
        assert scaled == pytest.approx(tau**2 * plain, rel=1e-10)
    # a very high temperature flattens both distributions: the divergence itself → 0
    hot = lm_divergence(student, teacher, kind=kind, temperature=1e3).item() / 1e6
    assert hot < 1e-5 * plain
    with pytest.raises(ValueError, match="temperature"):
        lm_divergence(student, teacher, kind=kind, temperature=0.0)


@pytest.mark.parametrize("kind", DIVERGENCES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_half_precision_is_upcast_and_gradients_are_finite(kind: str, dtype: torch.dtype) -> None:
    student64, teacher64 = random_logits(11, scale=20.0), random_logits(12, scale=20.0)
    student = student64.to(dtype).requires_grad_(True)
    loss = lm_divergence(student, teacher64.to(dtype), kind=kind)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # computed in fp32 from the rounded inputs
    reference = lm_divergence(student.detach().double(), teacher64.to(dtype).double(), kind=kind)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(student.grad.float()).all() and student.grad.float().abs().sum() > 0


@pytest.mark.parametrize("kind", DIVERGENCES)
@pytest.mark.parametrize("side", ["teacher", "student"])
def test_words_ruled_out_give_no_nan(kind: str, side: str) -> None:
    # -inf logits: probability exactly 0 for two words on one side
    leaf = random_logits(13).requires_grad_(True)
    ruled_out = torch.arange(7) < 2
    student = leaf.masked_fill(ruled_out, float("-inf")) if side == "student" else leaf
    teacher = random_logits(14)
    teacher = teacher.masked_fill(ruled_out, float("-inf")) if side == "teacher" else teacher
    loss = lm_divergence(student, teacher, kind=kind, alpha=0.1)
    assert not torch.isnan(loss)
    # KL(a ‖ b) is +inf where only b is 0: forward KL with a student zero, reverse KL with a
    # teacher zero; the mixtures of JSD and the skewed forms keep everything finite
    infinite = (kind, side) in (("forward_kl", "student"), ("reverse_kl", "teacher"))
    assert torch.isinf(loss) == infinite
    if not infinite:
        loss.backward()
        assert torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0


def test_bad_weights_and_shapes() -> None:
    student, teacher = random_logits(15), random_logits(16)
    with pytest.raises(ValueError, match="beta"):
        generalized_jsd(student, teacher, beta=1.0)
    with pytest.raises(ValueError, match="alpha"):
        skew_kl(student, teacher, alpha=1.0)
    with pytest.raises(ValueError, match="vocabulary"):
        lm_divergence(student, teacher[..., :5])
    with pytest.raises(ValueError, match="unknown divergence"):
        lm_divergence(student, teacher, kind="kl")


# ---------------------------------------------------------------------------
# positions and objectives


def test_next_token_positions() -> None:
    like = torch.zeros(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    labels = torch.tensor([[5, 6, -100, 8], [5, 6, 7, -100]])
    batch = {"attention_mask": mask, "labels": labels}
    # position t counts when labels[t + 1] is a target; the last position never (no target)
    assert next_token_positions(batch, like).tolist() == [[True, False, True, False], [True, True, False, False]]
    assert next_token_positions(batch, like, "all").tolist() == mask.bool().tolist()
    assert next_token_positions({"attention_mask": mask}, like).tolist() == mask.bool().tolist()
    distill = torch.tensor([[False, True, True, True], [True, True, True, True]])
    assert next_token_positions({**batch, "distill_mask": distill}, like).tolist() == (distill & mask.bool()).tolist()


@pytest.mark.parametrize("name", NAMES)
def test_objective_hand_value_on_next_token_positions(name: str) -> None:
    # 1 row, 3 positions; labels[2] = -100, so position 1 (which predicts it) and position 2
    # (no next label) are out: only position 0 counts, where (p, q) give HAND[name].
    garbage = [30.0, -30.0]
    student = Signals(logits=t64([[Q_LOGITS, garbage, garbage]]))
    teacher = Signals(logits=t64([[P_LOGITS, [-5.0, 5.0], [-5.0, 5.0]]]))
    batch = {"attention_mask": torch.ones(1, 3, dtype=torch.long), "labels": torch.tensor([[1, 0, -100]])}
    objective = build_objective(name, task_type="causal_lm", **WEIGHTS.get(name, {}))
    loss, parts = objective(student, teacher, batch)
    assert loss.item() == pytest.approx(HAND[name], abs=1e-12)
    assert parts == {name: pytest.approx(HAND[name], abs=1e-12)}
    # temperature 2 on doubled logits: the same distributions, times 4
    hot = build_objective(name, task_type="causal_lm", temperature=2.0, **WEIGHTS.get(name, {}))
    doubled, _ = hot(Signals(logits=2 * student.logits), Signals(logits=2 * teacher.logits), batch)
    assert doubled.item() == pytest.approx(4 * HAND[name], abs=1e-12)
    # positions="all" counts the garbage too
    every = build_objective(name, task_type="causal_lm", positions="all", **WEIGHTS.get(name, {}))
    assert every(student, teacher, batch)[0].item() > loss.item() + 0.1


def test_objective_options_and_errors() -> None:
    assert set(objective_options("forward_kl")) == {"temperature", "positions"}
    assert set(objective_options("jsd")) == {"temperature", "beta", "positions"}
    assert set(objective_options("skew_kl")) == set(objective_options("skew_reverse_kl")) == {
        "temperature", "alpha", "positions"
    }
    assert build_objective("skew_kl").alpha == 0.1 and build_objective("jsd").beta == 0.5
    for name in NAMES:
        obj = build_objective(name, task_type="causal_lm")
        assert obj.needs_logits and not obj.needs_hidden_states and not obj.needs_qkv
        with pytest.raises(ConfigError, match="regression"):
            build_objective(name, task_type="regression")
        with pytest.raises(ConfigError, match="temperature"):
            build_objective(name, task_type="causal_lm", temperature=0.0)
    with pytest.raises(ConfigError, match="beta"):
        build_objective("jsd", task_type="causal_lm", beta=0.0)
    with pytest.raises(ConfigError, match="alpha"):
        build_objective("skew_reverse_kl", task_type="causal_lm", alpha=1.0)
    with pytest.raises(ConfigError, match="unknown option"):
        build_objective("forward_kl", task_type="causal_lm", alpha=0.5)
    logits = Signals(logits=random_logits(17, (1, 3, 5)))
    gathered = {"attention_mask": torch.ones(1, 3), LOGIT_POSITIONS: torch.ones(1, 3, dtype=torch.bool)}
    with pytest.raises(ConfigError, match="gathered"):
        build_objective("reverse_kl", task_type="causal_lm")(logits, logits, gathered)
    with pytest.raises(ConfigError, match="vocabulary"):
        build_objective("reverse_kl", task_type="causal_lm")(
            Signals(logits=random_logits(18, (1, 3, 4))), logits, {}
        )


def test_sequence_classification_rows() -> None:
    # one distribution per example; same hand value as a single position
    objective = build_objective("skew_kl", task_type="classification", alpha=0.25)
    loss, _ = objective(Signals(logits=t64([Q_LOGITS, P_LOGITS])), Signals(logits=t64([P_LOGITS, P_LOGITS])), {})
    assert loss.item() == pytest.approx(SKL / 2, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_one_step_on_a_tiny_llama_lowers_the_loss(name: str) -> None:
    from tests.elastic_helpers import tiny_llama

    teacher = tiny_llama(seed=1)
    student = tiny_llama(seed=2, num_hidden_layers=1).train()
    ids = torch.randint(1, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    batch = {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    objective = build_objective(name, task_type="causal_lm", temperature=2.0)
    optimizer = torch.optim.SGD(student.parameters(), lr=1.0)
    with torch.no_grad():
        t = forward_with_signals(teacher, batch, False, need_hidden_states=False)
    losses = []
    for _ in range(2):
        loss, _ = objective(forward_with_signals(student, batch, False, need_hidden_states=False), t, batch)
        optimizer.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)
        assert all(p.grad is None for p in teacher.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[1] < losses[0]
