"""Measured inference speed inside a ``compress`` run (issue 15, part 4).

Two stages, both timed with :func:`minidisc.compute.latency.measure` on the run's device
and precision, once (a finished stage is never measured again):

``latency``  (``--cost latency`` only, after ``sparsified``) the teacher and every
             candidate level extracted from the reordered teacher; the λ-tradeoff's cost
             of a candidate is the time it saves, ``1 − 1/speed-up``
             (:func:`minidisc.compute.latency.latency_cost`).
``speed``    (every run, after ``student``) the teacher and the exported student, for
             the report: milliseconds, speed-up and the FLOPs ratio beside it.

Entries record the setting (device, precision, batch × tokens, repeats), so a report
states where its times were measured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from minidisc.compute.flops import forward_flops
from minidisc.compute.latency import BATCH, REPEATS, latency_cost, measure, speedups
from minidisc.elastic.spec import SubnetSpec

TEACHER = "teacher"


def latency_stage(
    teacher_dir: Path, spec_map: Mapping[float, SubnetSpec], levels: Iterable[float], *, tokens: int,
    batch: int = BATCH, repeats: int = REPEATS,
) -> dict[str, Any]:
    """Time the teacher in ``teacher_dir`` and the sub-network of every level in ``levels``
    (keys of ``spec_map``), each extracted as a standalone model.

    Returns:
        The manifest entry: ``setting``, ``teacher_ms``, and per level (``f"{s:g}"``)
        ``ms``, ``speedup`` and ``cost`` (the time saved, a fraction).
    """
    from minidisc.elastic.io import load_student
    from minidisc.elastic.model import ElasticModel

    teacher = load_student(teacher_dir)
    elastic = ElasticModel(teacher)
    models: dict[Any, Any] = {TEACHER: teacher}
    models |= {float(s): elastic.extract(spec_map[s]) for s in levels}
    ms, setting = measure(models, batch=batch, tokens=tokens, repeats=repeats)
    up = speedups(ms, TEACHER)
    return {
        "setting": setting.to_dict(),
        "teacher_ms": ms[TEACHER],
        "levels": {f"{s:g}": {"ms": ms[s], "speedup": up[s], "cost": latency_cost(up[s])}
                   for s in models if s != TEACHER},
    }


def latency_costs(entry: Mapping[str, Any]) -> dict[float, float]:
    """``{sparsity: cost}`` from a ``latency`` stage's entry."""
    return {float(s): row["cost"] for s, row in entry["levels"].items()}


def speed_stage(
    teacher_dir: Path, student_dir: Path, *, tokens: int, batch: int = BATCH, repeats: int = REPEATS,
) -> dict[str, Any]:
    """Time the teacher in ``teacher_dir`` and the exported student in ``student_dir``.

    Returns:
        The manifest entry: ``setting``, ``teacher_ms``, ``student_ms``, ``speedup``
        (teacher time / student time) and ``flops_ratio`` (teacher / student forward
        FLOPs at ``tokens`` tokens, :func:`minidisc.compute.flops.forward_flops`).
    """
    from minidisc.elastic.io import load_student

    teacher, student = load_student(teacher_dir), load_student(student_dir)
    ms, setting = measure({TEACHER: teacher, "student": student}, batch=batch, tokens=tokens, repeats=repeats)
    flops = forward_flops(teacher.config, None, setting.tokens) / forward_flops(student.config, None, setting.tokens)
    return {"setting": setting.to_dict(), "teacher_ms": ms[TEACHER], "student_ms": ms["student"],
            "speedup": ms[TEACHER] / ms["student"], "flops_ratio": flops}
