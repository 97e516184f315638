"""λ-tradeoff selection of the teacher assistant (MiniDisc, Zhang et al., EACL 2024, §3.3).

The student's quality correlates with the assistant's *scale-performance tradeoff*

    t(s) = m(s) + λ · s

where ``m(s)`` is the assistant's dev metric (a fraction) and ``s`` its sparsity w.r.t.
the teacher (a fraction in [0, 1), i.e. ``1 − scale``). The assistant is the candidate
with the largest ``t``; a choice beyond the target sparsity is clipped to the target.

The cost term is the sparsity by default (``--cost flops``: the fraction of non-embedding
parameters, hence of FLOPs, removed). With ``--cost latency`` it is the fraction of the
teacher's measured inference time a candidate saves, ``1 − 1/speed-up`` on the run's
device (:func:`minidisc.compute.latency.latency_cost`), measured once per candidate; where
time follows FLOPs the two agree, so λ keeps its meaning.

Unlike the reference implementation, λ is a real number, sparsities are compared as
levels (:mod:`minidisc.elastic.levels`), and a clipped choice keeps its λ bonus
(``t(target) = m(target) + λ·target``), so every score compared is of the same form.

The metric ``m(s)`` of a candidate comes from its evaluations by a *scoring rule*
(:func:`candidate_metric`): the paper's running maximum (``best``), or by default the
mean of its last ``k`` evaluations (``last_mean``). The running maximum of many noisy
evaluations is biased upwards, the more so the noisier the candidate, and the same
demo command chose different assistants in two runs because of it (issue 13).

A candidate at its task's constant-prediction score (:mod:`minidisc.evaluation.constant`:
a *collapsed* sub-network, one output for every input) is passed over when the run gives
a ``floor``: its metric carries no information, only its sparsity bonus, which is largest
for the sparsest (most often collapsed) candidates. On MRPC, λ = 0.2 otherwise ranks a
target at the constant score (74.80 + 18) above a 70 % candidate at 78.11 (+ 14), and the
student is the collapsed target (docs/results.md). When every candidate sits at the floor
the rule has nothing to prefer and the plain argmax stands.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from minidisc.elastic.levels import find_level
from minidisc.errors import ConfigError

#: The scoring rules of :func:`candidate_metric` (``--candidate-score``).
LAST_MEAN, BEST = "last_mean", "best"
ScoreRule = Literal["last_mean", "best"]
#: Evaluations ``last_mean`` averages by default (``--score-window``).
DEFAULT_SCORE_WINDOW = 3


def candidate_metric(evaluations: Sequence[float], rule: ScoreRule, window: int = DEFAULT_SCORE_WINDOW) -> float:
    """A candidate's selection metric ``m(s)`` from its evaluations so far (fractions, in order).

    * ``best``: the running maximum (the paper's and the reference code's rule). Its
      expectation exceeds the candidate's true quality by the noise of the evaluations
      it maximises over, so noisier candidates are favoured.
    * ``last_mean``: the mean of the last ``window`` evaluations (all of them while there
      are fewer): an estimate of the candidate at the end of training, the weights the
      tracker keeps under this rule, averaged over ``window`` evaluations of noise.

    Returns:
        the metric; −inf with no evaluation.

    Raises:
        ConfigError: an unknown rule or a window below 1.
    """
    if rule not in (LAST_MEAN, BEST):
        raise ConfigError(f"unknown candidate score {rule!r}; choose {LAST_MEAN} or {BEST}")
    if window < 1:
        raise ConfigError(f"the score window must be at least 1 evaluation, got {window}")
    if not evaluations:
        return -math.inf
    if rule == BEST:
        return max(evaluations)
    recent = evaluations[-window:]
    return sum(recent) / len(recent)


@dataclass(frozen=True)
class Selection:
    """The outcome of one selection.

    Attributes:
        sparsity: the chosen sparsity s* (a fraction).
        score: its λ-tradeoff t(s*).
        clipped: True when the unclipped argmax lay beyond the target.
        tradeoffs: t(s) of every candidate, keyed by sparsity.
        passed_over: the candidates at or below the collapse floor whose tradeoff beat the choice's.
    """

    sparsity: float
    score: float
    clipped: bool
    tradeoffs: dict[float, float]
    passed_over: tuple[float, ...] = ()


#: What the λ-tradeoff weighs (``--cost``): ``flops`` (the sparsity) or ``latency``.
COSTS: tuple[str, ...] = ("flops", "latency")


def tradeoff(metric: float, sparsity: float, lam: float) -> float:
    """λ-tradeoff ``t = m + λ·s`` (metric and sparsity -- or, with ``--cost latency``, the
    time saved -- both fractions), the one place it is computed: the selection, the
    iteration records and the reports' correlations."""
    return metric + lam * sparsity


def select_assistant(
    best_metrics: Mapping[float, float], lam: float, target: float, *, final: bool = False,
    costs: Mapping[float, float] | None = None, floor: float | None = None,
) -> Selection:
    """Pick the teacher assistant from the candidates' selection metrics.

    Args:
        best_metrics: selection metric so far (a fraction; :func:`candidate_metric`) per
            candidate sparsity.
        lam: λ ≥ 0, the weight of sparsity in the tradeoff.
        target: the target sparsity; it must be one of the candidates.
        final: in the final iteration the choice is the target itself.
        costs: the cost term of every candidate (``--cost latency``: the time it saves,
            a fraction); ``None``: its sparsity.
        floor: the collapse floor (:func:`minidisc.evaluation.constant.collapse_floor`, a
            fraction of the metric): candidates whose metric is at or below it are passed
            over unless every candidate is; ``None``: none is.

    Raises:
        ConfigError: no candidates, λ negative or not finite, the target missing, or a
            candidate without a cost.
    """
    if not best_metrics:
        raise ConfigError("no candidate sub-networks to select from")
    if not math.isfinite(lam) or lam < 0:
        raise ConfigError(f"λ must be a finite number >= 0, got {lam}")
    target_key = _find(best_metrics, target)
    cost = {s: s for s in best_metrics} if costs is None else {s: _cost(costs, s) for s in best_metrics}
    scores = {s: tradeoff(m, cost[s], lam) for s, m in best_metrics.items()}
    if final:
        return Selection(target_key, scores[target_key], False, scores)
    collapsed = () if floor is None else tuple(s for s, m in best_metrics.items() if m <= floor)
    eligible = [s for s in scores if s not in collapsed] or list(scores)
    best = max(eligible, key=lambda s: (scores[s], -s))  # ties go to the denser candidate
    passed_over = tuple(s for s in collapsed if scores[s] > scores[best])  # only those that would have won
    if best > target_key:
        return Selection(target_key, scores[target_key], True, scores, passed_over)
    return Selection(best, scores[best], False, scores, passed_over)


def _find(candidates: Mapping[float, float], sparsity: float) -> float:
    key = find_level(candidates, sparsity)
    if key is None:
        raise ConfigError(f"the target sparsity {sparsity} is not among the candidates {sorted(candidates)}")
    return key


def _cost(costs: Mapping[float, float], sparsity: float) -> float:
    key = find_level(costs, sparsity)
    if key is None:
        raise ConfigError(f"no measured cost for the candidate at sparsity {sparsity}; measured: {sorted(costs)}")
    return costs[key]
