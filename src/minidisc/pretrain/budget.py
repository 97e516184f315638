"""Analytic training cost of an arm, and the plan that spends a budget exactly.

Cost of one training batch (FLOPs = floating-point operations, a multiply-add is 2):

    student   3 × (F_enc(S) + P_S · c_head(S))      forward + backward ≈ 3 × forward
    teacher   1 × (F_enc(T) + P_T · c_head(T))      forward only, no grad

``F_enc`` is :func:`minidisc.compute.flops.forward_flops` of the transformer layers on
the batch's padded shape (projections, attention, FFN; embeddings lookups are free).
``forward_flops`` leaves out the LM head, so it is added here per predicted position:
``c_head = 2·d·d + 2·d·V`` for an MLM head (its transform dense layer and the vocabulary
projection) and ``c_head = 2·d·V`` for a decoder's ``lm_head`` (the projection alone;
:attr:`minidisc.tasks.lm_types.LMType.head_transform`); norms, activations and biases are
ignored, as in ``forward_flops``. ``P`` is the number of positions the head runs on,
which follows the objective's ``positions`` option (:func:`minidisc.pretrain.run.head_modes`):
the masked positions (``masked``: MLM scratch, and KD/DistilBERT/PKD with the default
``positions="auto"``, as in BERT's own pretraining code which gathers masked positions
before the head), every position (``all``: ``positions="all"``, and every causal-LM arm,
whose every position predicts the next token; padding included, since it is computed)
or none (``none``: TinyBERT/MiniLM/MiniLMv2 general distillation, which reads only
hidden states and attention). With a frozen encoder (warming up an MLM head) the
encoder costs 1 × its forward.

Budgets (:func:`plan_budget`), over the stream of :mod:`minidisc.pretrain.data`:

* tokens ``D``: ``floor(D / L)`` whole blocks plus, if ``D mod L > 0``, one block cut to
  its first ``D mod L`` tokens; the training tokens (non-padding, special tokens
  included) equal ``D`` exactly.
* FLOPs ``C``: the longest prefix of whole rows whose cost fits; the cost used ``U``
  satisfies ``U ≤ C`` and ``C − U <`` the cost of the next row of the stream (one
  sequence: at most ``3·(F_enc + L·c_head)`` of the student plus the teacher's share).

The last batch holds the remaining rows, so the optimiser's schedule (linear decay to
zero) ends exactly where the budget does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from minidisc.compute.flops import forward_flops
from minidisc.elastic.families import family_for
from minidisc.errors import ConfigError
from minidisc.tasks.lm_types import lm_type_of

if TYPE_CHECKING:
    from minidisc.compute.meter import ComputeMeter

HEAD_MODES = ("none", "masked", "all")


def head_flops_per_position(config: Any) -> int:
    """FLOPs of the LM head for one predicted position: ``2·d·d + 2·d·V`` (MLM head with
    its transform) or ``2·d·V`` (a decoder's ``lm_head``).

    Raises:
        ModelError: an architecture that is neither BERT-like nor LLaMA-like.
    """
    lm = lm_type_of(config)
    geo = family_for(config).geometry(config)
    d, vocab = int(geo.hidden_size), int(geo.vocab_size)
    transform = 2 * d * d if lm.head_transform else 0
    return transform + 2 * d * vocab


def encoder_flops(config: Any, rows: int, length: int) -> int:
    """Forward FLOPs of the transformer layers on ``rows × length`` (padded) tokens."""
    return int(forward_flops(config, seq_len=length, batch=rows))


def head_positions(mode: str, rows: int, length: int, masked: int) -> int:
    """Positions the MLM head runs on in ``mode`` (see the module doc)."""
    if mode == "masked":
        return masked
    if mode == "all":
        return rows * length
    if mode == "none":
        return 0
    raise ValueError(f"head mode must be one of {HEAD_MODES}, got {mode!r}")


@dataclass(frozen=True)
class CostModel:
    """Analytic FLOPs of one training batch of an arm.

    Args:
        student_config, teacher_config: ``transformers`` configs (teacher ``None`` for
            the scratch arm).
        student_head, teacher_head: head modes (:data:`HEAD_MODES`).
        frozen_encoder: the student's encoder is frozen (1× forward, no backward).
    """

    student_config: Any
    teacher_config: Any = None
    student_head: str = "masked"
    teacher_head: str = "none"
    frozen_encoder: bool = False

    def student_train(self, rows: int, length: int, masked: int) -> int:
        """Student forward + backward FLOPs of a ``(rows, length)`` batch with ``masked``
        MLM positions (ignored unless a head mode is ``masked``)."""
        enc = encoder_flops(self.student_config, rows, length)
        head = head_positions(self.student_head, rows, length, masked) * head_flops_per_position(
            self.student_config
        )
        return enc + 3 * head if self.frozen_encoder else 3 * (enc + head)

    def teacher_forward(self, rows: int, length: int, masked: int) -> int:
        """Teacher forward FLOPs of the same batch (0 without a teacher)."""
        if self.teacher_config is None:
            return 0
        enc = encoder_flops(self.teacher_config, rows, length)
        head = head_positions(self.teacher_head, rows, length, masked) * head_flops_per_position(
            self.teacher_config
        )
        return enc + head

    def batch(self, rows: int, length: int, masked: int) -> tuple[int, int]:
        """``(student train FLOPs, teacher forward FLOPs)`` of one batch."""
        return self.student_train(rows, length, masked), self.teacher_forward(rows, length, masked)

    def eval_forward(self, rows: int, length: int, predicted: int) -> int:
        """Student forward FLOPs of a held-out evaluation batch whose head runs on
        ``predicted`` positions (the masked ones for MLM, all ``rows·length`` for a causal
        LM)."""
        return encoder_flops(self.student_config, rows, length) + predicted * head_flops_per_position(
            self.student_config
        )

    def max_row(self, length: int) -> int:
        """Upper bound on the cost of one row (every position masked)."""
        return sum(self.batch(1, length, length))


@dataclass(frozen=True)
class BudgetPlan:
    """How a budget is spent: rows of the stream, tokens and FLOPs (exact integers).

    Attributes:
        kind: ``"flops"`` or ``"tokens"``; budget: its value.
        rows: stream rows trained on (the last one possibly cut, see ``last_tokens``).
        last_tokens: real tokens of the last row if cut (token budgets), else 0.
        tokens: training tokens (non-padding).
        student_flops, teacher_flops: planned FLOPs split.
        next_row_flops: cost of the first row that did not fit (FLOPs budgets).
        steps: optimiser steps, ``ceil(rows / batch_size)``.
    """

    kind: str
    budget: float
    block_size: int
    batch_size: int
    rows: int
    last_tokens: int
    tokens: int
    student_flops: int
    teacher_flops: int
    next_row_flops: int | None = None

    @property
    def flops(self) -> int:
        return self.student_flops + self.teacher_flops

    @property
    def steps(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(flops=self.flops, steps=self.steps)
        return out


def plan_budget(
    cost: CostModel,
    masked_count: Callable[[int, int], int] | None,
    *,
    kind: str,
    budget: float,
    block_size: int,
    batch_size: int,
    needs_masks: bool | None = None,
) -> BudgetPlan:
    """Plan the rows of the stream that spend ``budget`` (see the module doc).

    Args:
        cost: the arm's cost model.
        masked_count: ``(row i, real tokens) ->`` masked positions of that row (only
            called when a head runs on masked positions; ``None`` when none does, e.g.
            a causal LM).
        kind: ``"flops"`` or ``"tokens"``.
        budget: FLOPs or tokens.
        block_size: tokens per row ``L``.
        batch_size: rows per optimiser step.
        needs_masks: whether costs depend on ``masked_count`` (default: from ``cost``).

    Raises:
        ConfigError: the budget does not cover one row (FLOPs) or one token.
        ValueError: costs depend on masks but ``masked_count`` is ``None``.
    """
    if needs_masks is None:
        needs_masks = "masked" in (cost.student_head, cost.teacher_head if cost.teacher_config else "none")
    if needs_masks and masked_count is None:
        raise ValueError("a head runs on masked positions: plan_budget needs masked_count")

    def row_cost(i: int, length: int) -> tuple[int, int]:
        # a cut row is padded to the block size and padding is computed: a whole row's encoder cost
        return cost.batch(1, block_size, masked_count(i, length) if needs_masks else 0)  # type: ignore[misc]

    student = teacher = 0
    if kind == "tokens":
        total = int(budget)
        if total < 1:
            raise ConfigError(f"token budget must be at least 1, got {budget}")
        full, last = divmod(total, block_size)
        rows = full + (1 if last else 0)
        for i in range(rows):
            s, t = row_cost(i, last if (last and i == rows - 1) else block_size)
            student, teacher = student + s, teacher + t
        return BudgetPlan(kind, float(budget), block_size, batch_size, rows, last, total, student, teacher)
    if kind != "flops":
        raise ValueError(f"budget kind must be 'flops' or 'tokens', got {kind!r}")
    limit = int(budget)
    rows, next_cost = 0, None
    while True:
        s, t = row_cost(rows, block_size)
        if student + teacher + s + t > limit:
            next_cost = s + t
            break
        student, teacher, rows = student + s, teacher + t, rows + 1
    if rows == 0:
        raise ConfigError(
            f"a FLOPs budget of {budget:.4g} does not cover one sequence of {block_size} tokens "
            f"({next_cost:.4g} FLOPs); raise --budget-flops"
        )
    return BudgetPlan(kind, float(budget), block_size, batch_size, rows, 0, rows * block_size, student, teacher,
                      next_cost)


class BudgetCallback(TrainerCallback):
    """Stops training when the plan is spent and guards the budget.

    After every optimiser step it compares the meter with the plan: exceeding the budget
    raises ``RuntimeError`` (a bug, never a user error); reaching the planned step count
    stops training (without a last checkpoint). :attr:`matches_plan` tells afterwards whether tokens and FLOPs equal
    the plan exactly.
    """

    def __init__(self, plan: BudgetPlan, meter: Callable[[], ComputeMeter]) -> None:
        self.plan = plan
        self.meter = meter
        self.matches_plan: bool | None = None

    def _check(self) -> None:
        totals = self.meter().totals
        spent = totals.tokens if self.plan.kind == "tokens" else totals.train_flops
        if spent > self.plan.budget:
            raise RuntimeError(
                f"budget exceeded: {spent:.6g} > {self.plan.budget:.6g} {self.plan.kind} (planning bug)"
            )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._check()
        if state.global_step >= self.plan.steps:
            control.should_training_stop = True
            control.should_save = False  # the run saves the student itself; no checkpoint to resume
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        totals = self.meter().totals
        self.matches_plan = (
            totals.tokens == self.plan.tokens
            and int(totals.student_train_flops) == self.plan.student_flops
            and int(totals.teacher_forward_flops) == self.plan.teacher_flops
        )
