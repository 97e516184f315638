"""Next-token divergences against a top-k + tail teacher (``minidisc.objectives.topk``):
hand values on a three-word vocabulary, zero at identity, the full-vocabulary loss at
k = V (values and gradients, every divergence, with a temperature and a mask), the
bucketed KL below the full one, the objectives' dispatch, and the refusals."""

from __future__ import annotations

import math

import pytest
import torch

from minidisc.objectives import Signals, build_objective
from minidisc.objectives.causal import DIVERGENCES, lm_divergence, next_token_positions
from minidisc.objectives.topk import TopKTeacher, student_buckets, teacher_topk, topk_divergence

pytestmark = pytest.mark.usefixtures("one_torch_thread")

P = [0.5, 0.3, 0.2]  # teacher; top-1 = word 0, tail 0.5
Q = [0.25, 0.25, 0.5]  # student; buckets (0.25, 0.75)


def _logits(probs: list[float]) -> torch.Tensor:
    return torch.tensor([probs], dtype=torch.float64).log()


def _kl(a: list[float], b: list[float]) -> float:
    return sum(x * math.log(x / y) for x, y in zip(a, b) if x > 0)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("forward_kl", _kl([0.5, 0.5], [0.25, 0.75])),
        ("reverse_kl", _kl([0.25, 0.75], [0.5, 0.5])),
        ("jsd", 0.5 * _kl([0.5, 0.5], [0.375, 0.625]) + 0.5 * _kl([0.25, 0.75], [0.375, 0.625])),
        ("skew_kl", _kl([0.5, 0.5], [0.1 * 0.5 + 0.9 * 0.25, 0.1 * 0.5 + 0.9 * 0.75])),
        ("skew_reverse_kl", _kl([0.25, 0.75], [0.9 * 0.5 + 0.1 * 0.25, 0.9 * 0.5 + 0.1 * 0.75])),
    ],
)
def test_hand_values_on_two_buckets(kind, expected):
    teacher = teacher_topk(_logits(P), k=1)
    assert teacher.index.tolist() == [[0]] and teacher.tail.exp().item() == pytest.approx(0.5)
    loss = topk_divergence(_logits(Q), teacher, kind=kind)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_student_tail_is_exact_when_the_top_k_hold_almost_everything():
    # 1 - Σ q_I = 1e-12: log1p(-sum) in float32 would give log 0
    logits = torch.tensor([[30.0, 30.0, 30.0 + math.log(2e-12)]])
    buckets = student_buckets(logits, torch.tensor([[0, 1]]), 1.0, with_tail=True)
    assert torch.isfinite(buckets).all() and buckets.exp().sum().item() == pytest.approx(1.0)
    assert buckets[0, 2].item() == pytest.approx(math.log(1e-12), abs=1e-3)


@pytest.mark.parametrize("kind", DIVERGENCES)
def test_zero_at_identity(kind):
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    loss = topk_divergence(logits, teacher_topk(logits, k=4, temperature=2.0), kind=kind, temperature=2.0)
    assert abs(loss.item()) < 1e-6


@pytest.mark.parametrize("kind", DIVERGENCES)
def test_k_equal_to_the_vocabulary_is_the_online_loss(kind):
    torch.manual_seed(1)
    teacher = torch.randn(2, 6, 9, dtype=torch.float64)
    student = torch.randn(2, 6, 9, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 6) > 0.3
    online = lm_divergence(student, teacher, mask, kind=kind, temperature=1.5)
    cached = topk_divergence(student, teacher_topk(teacher, k=9, temperature=1.5), mask, kind=kind, temperature=1.5)
    assert cached.item() == pytest.approx(online.item(), rel=1e-5, abs=1e-7)
    (g_online,) = torch.autograd.grad(online, student)
    (g_cached,) = torch.autograd.grad(cached, student)
    torch.testing.assert_close(g_cached, g_online, rtol=1e-4, atol=1e-6)


def test_bucketed_forward_kl_is_a_lower_bound_and_grows_with_k():
    torch.manual_seed(2)
    teacher, student = torch.randn(64, 50), torch.randn(64, 50)
    full = lm_divergence(student, teacher).item()
    values = [topk_divergence(student, teacher_topk(teacher, k=k)).item() for k in (1, 8, 32, 50)]
    assert all(v <= full + 1e-6 for v in values) and values[-1] == pytest.approx(full, rel=1e-5)
    assert values == sorted(values)  # merging fewer words loses less


def test_stored_rounding_is_renormalised():
    torch.manual_seed(3)
    logits = torch.randn(4, 30)
    exact = teacher_topk(logits, k=5)
    rounded = TopKTeacher(exact.logp.half(), exact.index.to(torch.int32), exact.tail, 30)
    assert rounded.buckets().exp().sum(-1).tolist() == pytest.approx([1.0] * 4, abs=1e-6)
    loss = topk_divergence(torch.randn(4, 30), rounded)
    assert math.isfinite(loss.item()) and loss.item() >= 0


def test_divergence_objectives_read_a_top_k_teacher_at_the_next_token_positions():
    torch.manual_seed(4)
    t_logits, s_logits = torch.randn(2, 5, 12), torch.randn(2, 5, 12)
    labels = torch.randint(0, 12, (2, 5))
    labels[1, 3:] = -100
    batch = {"attention_mask": torch.ones(2, 5, dtype=torch.long), "labels": labels}
    objective = build_objective("jsd", task_type="causal_lm", beta=0.3)
    teacher = teacher_topk(t_logits, k=3)
    loss, parts = objective(Signals(logits=s_logits), Signals(topk=teacher), batch)
    mask = next_token_positions(batch, s_logits)
    assert loss.item() == pytest.approx(topk_divergence(s_logits, teacher, mask, kind="jsd", beta=0.3).item())
    assert set(parts) >= {"jsd"}
    # with k = V the objective gives its online loss
    full, _ = objective(Signals(logits=s_logits), Signals(topk=teacher_topk(t_logits, k=12)), batch)
    online, _ = objective(Signals(logits=s_logits), Signals(logits=t_logits), batch)
    assert full.item() == pytest.approx(online.item(), rel=1e-5)


def test_refusals():
    teacher = teacher_topk(torch.randn(3, 7), k=2)
    with pytest.raises(ValueError, match="temperature"):
        topk_divergence(torch.randn(3, 7), teacher, temperature=2.0)
    with pytest.raises(ValueError, match="vocabulary"):
        topk_divergence(torch.randn(3, 8), teacher)
    with pytest.raises(ValueError, match="top-k"):
        teacher_topk(torch.randn(3, 7), k=8)


# ---- the sampled tail (an unbiased forward KL) ---------------------------------------------


def _full_and_sampled(draws: int, m: int, k: int = 3):
    """Full-vocabulary forward KL and its gradient on 2 random rows (V = 12), and the
    sampled-tail estimate and gradient for ``draws`` independent seeds of each row."""
    g = torch.Generator().manual_seed(3)
    t_logits = torch.randn(2, 12, generator=g, dtype=torch.float64) * 2
    s_logits = torch.randn(2, 12, generator=g, dtype=torch.float64)
    full_s = s_logits.clone().requires_grad_(True)
    full = lm_divergence(full_s, t_logits, kind="forward_kl")
    full.backward()
    topk = teacher_topk(t_logits.expand(draws, 2, 12), k, tail_samples=m, seeds=range(draws))
    sampled_s = s_logits.expand(draws, 2, 12).clone().requires_grad_(True)
    estimate = topk_divergence(sampled_s, topk, kind="forward_kl")
    estimate.backward()
    bucket_s = s_logits.clone().requires_grad_(True)
    bucket = topk_divergence(bucket_s, teacher_topk(t_logits, k), kind="forward_kl")
    bucket.backward()
    return (full, full_s.grad), (estimate, sampled_s.grad.sum(0)), (bucket, bucket_s.grad)


def test_sampled_tail_is_unbiased_in_value_and_gradient():
    (full, full_grad), (estimate, grad), (bucket, bucket_grad) = _full_and_sampled(draws=4000, m=4)
    # the mean over independent draws converges to the full-vocabulary loss and gradient ...
    assert estimate.item() == pytest.approx(full.item(), rel=0.02)
    torch.testing.assert_close(grad, full_grad, rtol=0, atol=0.01)
    # ... which the single tail bucket does not reach: its gradient on the tail is the student's own shape
    assert bucket.item() < full.item() - 0.05
    assert (bucket_grad - full_grad).abs().max() > 0.05


def test_sampled_tail_draws_are_seeded_per_row_and_stay_in_the_tail():
    logits = torch.randn(3, 5, 40, generator=torch.Generator().manual_seed(0))
    a = teacher_topk(logits, 6, tail_samples=16, seeds=[7, 8, 9])
    b = teacher_topk(logits[1:2], 6, tail_samples=16, seeds=[8])
    assert a.sample_index.shape == (3, 5, 16) and a.tail_samples == 16
    assert torch.equal(a.sample_index[1:2], b.sample_index)  # a row's draws do not depend on its batch
    assert not torch.equal(a.sample_index[0], a.sample_index[2])
    assert not (a.sample_index.unsqueeze(-1) == a.index.unsqueeze(-2)).any()  # never a top-k word
    logp = torch.log_softmax(logits, -1)
    torch.testing.assert_close(a.sample_logp, logp.gather(-1, a.sample_index))
    with pytest.raises(ValueError, match="seeds"):
        teacher_topk(logits, 6, tail_samples=4, seeds=[1])


def test_sampled_tail_with_an_empty_tail_is_finite():
    logits = torch.full((1, 2, 10), -200.0)
    logits[..., :3] = 0.0  # the 7 tail words underflow to probability 0 in float32
    topk = teacher_topk(logits, 3, tail_samples=5)
    student = torch.randn(1, 2, 10, requires_grad=True)
    loss = topk_divergence(student, topk)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()
    assert loss.item() == pytest.approx(lm_divergence(student.detach(), logits, kind="forward_kl").item(), abs=1e-5)


@pytest.mark.parametrize("kind", [k for k in DIVERGENCES if k != "forward_kl"])
def test_sampled_tail_refuses_other_divergences(kind):
    topk = teacher_topk(torch.randn(1, 2, 10), 3, tail_samples=2)
    with pytest.raises(ValueError, match="forward KL only"):
        topk_divergence(torch.randn(1, 2, 10), topk, kind=kind)
