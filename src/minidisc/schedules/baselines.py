"""The baseline schedules of MiniDisc: direct KD, TAKD and MaxiDisc.

Each is a run directory with the shared stages (``teacher``, ``sparsified``; linked
from ``teacher_run`` when given), its hops (:mod:`minidisc.schedules.paths`), then

``student``  the final student (for MaxiDisc: the best by dev metric among the paths'
             final students), saved and re-evaluated;
``report``   report.json / report.md with the schedule's cost
             (:mod:`minidisc.schedules.cost`), also stored as ``manifest["cost"]``.

Rerunning the same command resumes after the last finished stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.elastic.levels import level_key
from minidisc.elastic.spec import SubnetSpec
from minidisc.objectives import build_objective
from minidisc.report.card import CardFacts
from minidisc.report.compare import write_schedule_report
from minidisc.runfolder.run import REPORT_FILES, RunDir
from minidisc.runtime import configure
from minidisc.schedules.config import DistillConfig, MaxiDiscConfig, ScheduleConfig, TakdConfig
from minidisc.schedules.cost import estimate_direct_kd, measured_direct_kd, schedule_cost
from minidisc.schedules.memo import StageMemo
from minidisc.schedules.paths import (
    HopContext,
    Path_,
    best_final,
    run_paths,
    sparsity_path,
    stage_name,
)
from minidisc.schedules.stages import (
    check_run_data,
    export_stage,
    level_specs,
    prepare_teacher,
    root_run,
    task_inputs,
)
from minidisc.schedules.students import check_layers, teacher_depth
from minidisc.training.data import prepare_run_data
from minidisc.training.records import HopRecord, Level

if TYPE_CHECKING:
    from minidisc.models import ModelSource
    from minidisc.training.teacher_cache import TeacherCacheStore


def run_distill(
    cfg: DistillConfig, output: str | Path, *, overwrite: bool = False, teacher_cache: TeacherCacheStore | None = None,
    reuse: bool = True,
) -> RunDir:
    """Direct KD teacher → student (``minidisc distill``); see :func:`run_schedule`."""
    if cfg.layers is not None:
        path: Path_ = (Level(layers=tuple(cfg.layers)),)
    else:
        path = sparsity_path([cfg.target_sparsity])  # type: ignore[list-item]
    return run_schedule(cfg, output, "distill", [path], overwrite=overwrite, teacher_cache=teacher_cache, reuse=reuse)


def run_takd(
    cfg: TakdConfig, output: str | Path, *, overwrite: bool = False, teacher_cache: TeacherCacheStore | None = None,
    reuse: bool = True,
) -> RunDir:
    """TAKD along ``cfg.path`` (``minidisc takd``); see :func:`run_schedule`."""
    paths = [sparsity_path(cfg.path)]
    return run_schedule(cfg, output, "takd", paths, overwrite=overwrite, teacher_cache=teacher_cache, reuse=reuse)


def run_maxidisc(
    cfg: MaxiDiscConfig, output: str | Path, *, overwrite: bool = False, teacher_cache: TeacherCacheStore | None = None,
    reuse: bool = True,
) -> RunDir:
    """TAKD through every candidate assistant, keep the best student (``minidisc
    maxidisc``); see :func:`run_schedule`."""
    paths = [sparsity_path(p) for p in cfg.paths()]
    return run_schedule(cfg, output, "maxidisc", paths, overwrite=overwrite, teacher_cache=teacher_cache, reuse=reuse)


def run_schedule(
    cfg: ScheduleConfig,
    output: str | Path,
    command: str,
    paths: Sequence[Path_],
    *,
    overwrite: bool = False,
    teacher_cache: TeacherCacheStore | None = None,
    reuse: bool = True,
) -> RunDir:
    """Run (or resume) distillation along ``paths`` into the run directory ``output``.

    Args:
        cfg: the schedule's configuration (saved; a resumed run must match it).
        command: the command name recorded in the manifest.
        paths: the paths to distil along; the final student is the best path's.
        teacher_cache: serve teacher outputs from this store.
        reuse: reuse identical hops finished by other runs on the same teacher.

    Raises:
        RunExistsError: ``output`` holds another run and ``overwrite`` is False.
        ConfigError, DataError, ModelError: invalid options, data or teacher.
    """
    configure(cfg.precision)  # an impossible precision stops here, before anything is written
    task_type = check_run_data(cfg.data, cfg.teacher, teacher_finetuned=cfg.teacher_finetuned,
                               teacher_run=cfg.teacher_run, seed=cfg.finetune.seed, batch_size=largest_batch(cfg),
                               selection=cfg)
    build_objective(cfg.objective, task_type=task_type, **cfg.objective_options)  # fail early
    source, tokenizer = task_inputs(cfg.teacher, cfg.teacher_run)
    _check_layer_levels(paths, source)
    run = RunDir(output, cfg, command, overwrite=overwrite)
    data = prepare_run_data(cfg.data, tokenizer, cfg.finetune.seed, cfg.select_on, cfg.selection_examples)
    prepare_teacher(run, cfg.teacher_run, source, data, cfg.finetune, cfg.teacher_finetuned, cfg.levels())
    needed = {lv.sparsity for p in paths for lv in p if lv.sparsity is not None}
    specs = level_specs(run.path / "sparsified", needed)
    memo = StageMemo(root_run(run.path)) if reuse else None
    ctx = HopContext(run, cfg, data, specs, teacher_cache, memo)

    finals = run_paths(ctx, paths)
    best = best_final(run.manifest["stages"], finals)

    card = CardFacts.from_manifest(run.manifest, final_hop=best)
    run.stage("student", lambda tmp: export_stage(run.path / best / "model", data, tmp, card=card, source=best))
    hops = [stage_name(p[:k]) for p in paths for k in range(1, len(p) + 1)]
    run.set("cost", _cost(run, paths, specs, command, list(dict.fromkeys(hops))))
    run.set("paths", [{"path": [lv.to_dict() for lv in p], "final": stage_name(p)} for p in paths])

    def report(_root: Path) -> dict[str, Any]:
        write_schedule_report(run)
        return {}

    run.stage("report", report, folder=False, outputs=REPORT_FILES)
    run.finish()
    return run


def largest_batch(cfg: ScheduleConfig) -> int:
    """The largest training batch of the run (the own-data check needs one batch of rows)."""
    return max([cfg.train.batch_size] + ([] if cfg.teacher_finetuned or cfg.teacher_run else [cfg.finetune.batch_size]))


def _check_layer_levels(paths: Sequence[Path_], source: ModelSource) -> None:
    """Range-check layer-dropped levels against the teacher's depth before any training
    (the teacher's config is readable before it is fine-tuned)."""
    layered = [lv.layers for p in paths for lv in p if lv.layers is not None]
    if layered:
        depth = teacher_depth(source)
        for layers in layered:
            check_layers(layers, depth)


def _cost(run: RunDir, paths: Sequence[Path_], specs: dict, command: str, hops: list[str]) -> dict[str, Any]:
    """The run's cost record; direct KD is its own reference (multiple 1), the others
    estimate the direct-KD reference from their first hop."""
    from transformers import AutoConfig

    stages = run.manifest["stages"]
    if command == "distill":
        own = schedule_cost(stages, hops, None)
        return schedule_cost(stages, hops, measured_direct_kd(own, str(run.path)))
    first = stages[stage_name(paths[0][:1])]
    teacher_config = AutoConfig.from_pretrained(run.path / "sparsified" / "model")
    target = specs[level_key(specs, paths[0][-1].sparsity)]  # type: ignore[arg-type]
    trained = SubnetSpec.from_dict(HopRecord.from_dict(first).spec)
    reference = estimate_direct_kd(first, teacher_config, target, [trained])
    return schedule_cost(stages, hops, reference)
