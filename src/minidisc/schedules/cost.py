"""What a schedule costs, from its manifest, in FLOPs and in multiples of direct KD.

Every training stage stores the :class:`~minidisc.compute.meter.ComputeTotals` it
measured (``entry["compute"]``): student training FLOPs (3 × forward, per active
sub-network), teacher forward FLOPs, evaluation FLOPs, tokens, sequences, steps, wall
time. Two views of a schedule:

*cost* (nominal)
    What the schedule needs: the sum over its training stages, with teacher forwards
    served by the teacher cache counted as if computed (``compute.teacher_cache.
    flops_saved`` is added back) and reused stages counted in full. This is what the
    paper's cost column compares; it does not depend on what ran before.
*spent*
    What this run actually computed: cache hits and reused stages cost nothing.

The shared preparation (teacher fine-tuning and sparsification) is reported apart: the
paper's cost column leaves it out, since every schedule needs it.

Cost multiple = cost(schedule).train_flops / cost(direct KD teacher → target with the
same training settings).train_flops, where ``train_flops`` = student training +
teacher forward FLOPs. A comparison measures the denominator (it runs direct KD); a
standalone run *estimates* it from its own first stage, which distils the same teacher
on the same batches: teacher forward FLOPs as measured, plus the first stage's
student FLOPs scaled by ``F(target) / Σ F(students of the first stage)`` (analytic
forward FLOPs at the stage's mean tokens per sequence). The estimate assumes direct KD
would train as many steps as that first stage.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from minidisc.compute.flops import forward_flops
from minidisc.compute.meter import ComputeTotals

if TYPE_CHECKING:
    from minidisc.elastic.spec import SubnetSpec


def nominal_compute(entry: dict[str, Any]) -> ComputeTotals:
    """A stage's nominal compute: measured, plus teacher FLOPs the cache saved."""
    return ComputeTotals.nominal(entry.get("compute") or {})


def spent_compute(entry: dict[str, Any]) -> ComputeTotals:
    """What a stage computed in this run (nothing when it was reused or linked)."""
    if entry.get("reused_from") or entry.get("linked_from"):
        return ComputeTotals()
    return ComputeTotals.from_dict(entry.get("compute") or {})


def schedule_cost(
    stages: dict[str, dict[str, Any]],
    schedule_stages: Iterable[str],
    reference: dict[str, Any] | None,
    preparation_stages: Iterable[str] = ("teacher", "sparsified"),
) -> dict[str, Any]:
    """The cost record of a run (stored as ``manifest["cost"]`` and in the report).

    Args:
        stages: the manifest's stage entries.
        schedule_stages: the training stages that make up the schedule.
        reference: ``{"train_flops": D, "source": ...}`` of direct KD to the same target,
            or None (no multiple).
        preparation_stages: shared stages reported apart.

    Returns:
        ``per_stage`` (nominal totals + stage wall time + reused flag), ``total``
        (nominal sum), ``spent`` (actual sum), ``preparation``, ``training_runs``,
        ``direct_kd`` and ``multiple``.
    """
    names = [n for n in schedule_stages if n in stages]
    total, spent, per_stage = ComputeTotals(), ComputeTotals(), {}
    for name in names:
        entry = stages[name]
        nominal = nominal_compute(entry)
        total = total.add(nominal)
        spent = spent.add(spent_compute(entry))
        per_stage[name] = {
            **nominal.to_dict(),
            "stage_wall_time_s": entry.get("wall_time_s"),
            "reused": bool(entry.get("reused_from")),
            "teacher_cache": (entry.get("compute") or {}).get("teacher_cache"),
        }
    preparation = ComputeTotals()
    for name in preparation_stages:
        if name in stages:
            preparation = preparation.add(nominal_compute(stages[name]))
    multiple = None
    if reference and reference.get("train_flops"):
        multiple = total.train_flops / float(reference["train_flops"])
    return {
        "per_stage": per_stage,
        "total": total.to_dict(),
        "spent": spent.to_dict(),
        "preparation": preparation.to_dict(),
        "training_runs": len(names),
        "direct_kd": reference,
        "multiple": multiple,
    }


def estimate_direct_kd(
    first_stage: dict[str, Any], teacher_config: Any, target: SubnetSpec, first_students: Iterable[SubnetSpec],
    shares: Iterable[float] | None = None,
) -> dict[str, Any]:
    """Estimate direct KD's ``train_flops`` from a stage that distilled the same teacher.

    Args:
        first_stage: manifest entry of a stage whose teacher is the schedule's teacher.
        teacher_config: HF config of the (sparsified) teacher.
        target: the target student's spec.
        first_students: the specs trained in that stage (one per candidate).
        shares: the fraction of steps that trained each of them (the sandwich rule's
            inclusion probabilities, :mod:`minidisc.training.sandwich`); None: every step.
    """
    nominal = nominal_compute(first_stage)
    seq = max(1, round(nominal.tokens / max(nominal.sequences, 1)))
    students = list(first_students)
    weights = [1.0] * len(students) if shares is None else list(shares)
    trained = sum(w * forward_flops(teacher_config, s, seq_len=seq) for s, w in zip(students, weights, strict=True))
    ratio = forward_flops(teacher_config, target, seq_len=seq) / trained if trained else 0.0
    flops = nominal.teacher_forward_flops + nominal.student_train_flops * ratio
    return {
        "train_flops": flops,
        "source": "estimated from the first stage (same teacher and batches; student FLOPs scaled to the target)",
        "student_flop_ratio": ratio,
        "mean_tokens_per_sequence": seq,
    }


def measured_direct_kd(cost: dict[str, Any], run_path: str) -> dict[str, Any]:
    """The reference record of a measured direct-KD run (its own nominal cost)."""
    return {"train_flops": cost["total"]["train_flops"], "source": f"measured: direct KD run {run_path}"}
