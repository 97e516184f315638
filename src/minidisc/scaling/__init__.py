"""Distillation scaling laws (Busbridge et al., "Distillation Scaling Laws", ICML 2025).

Modules, one concept each:

* :mod:`~minidisc.scaling.params` — law coefficients as frozen dataclasses (Table 6
  defaults), JSON load/save;
* :mod:`~minidisc.scaling.laws` — the supervised (Eq. 1) and distillation (Eq. 8) laws;
* :mod:`~minidisc.scaling.compute` — F(N) (Eq. 69), total cost (Eq. 9), scenarios (Table 2);
* :mod:`~minidisc.scaling.records` — the runs-file format written by training commands;
* :mod:`~minidisc.scaling.fit` — App. F fitting with bootstrap intervals;
* :mod:`~minidisc.scaling.plan` — compute-optimal planning (Eq. 10, Eq. 27), crossover;
* :mod:`~minidisc.scaling.plots` — figures; :mod:`~minidisc.scaling.synthetic` — fake runs.

Names below are imported lazily so that ``import minidisc.scaling`` stays cheap (SciPy
and matplotlib load only when fitting, planning or plotting).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SupervisedParams": "params",
    "DistillationParams": "params",
    "ScalingLawParams": "params",
    "load_params": "params",
    "load_flops_model": "params",
    "save_params": "params",
    "supervised_loss": "laws",
    "supervised_log_loss": "laws",
    "supervised_loss_infinite_data": "laws",
    "distillation_loss": "laws",
    "distillation_log_loss": "laws",
    "capacity_gap_factor": "laws",
    "FlopsModel": "compute",
    "Scenario": "compute",
    "SCENARIOS": "compute",
    "get_scenario": "compute",
    "forward_flops_per_token": "compute",
    "supervised_flops": "compute",
    "distillation_flops": "compute",
    "non_embedding_params": "compute",
    "RunRecord": "records",
    "append_run_record": "records",
    "read_run_records": "records",
    "write_run_records": "records",
    "FitOptions": "fit",
    "FitResult": "fit",
    "RecordsFit": "fit",
    "fit_supervised": "fit",
    "fit_distillation": "fit",
    "fit_records": "fit",
    "DistillationPlan": "plan",
    "CandidateTeacher": "plan",
    "TeacherChoice": "plan",
    "Crossover": "plan",
    "plan_distillation": "plan",
    "plan_with_teachers": "plan",
    "find_crossover": "plan",
    "supervised_baseline": "plan",
    "compute_optimal_teacher": "plan",
    "student_loss_for_teacher": "plan",
    "synthetic_records": "synthetic",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'minidisc.scaling' has no attribute {name!r}")
    return getattr(importlib.import_module(f"minidisc.scaling.{module}"), name)


def __dir__() -> list[str]:
    return __all__
