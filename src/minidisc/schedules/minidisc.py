"""The MiniDisc schedule (``minidisc compress``): teacher → assistant → student.

Stages, each resumable from the run directory (:class:`~minidisc.schedules.run.RunDir`):

``teacher``      fine-tune the teacher on the task (or only evaluate it with
                 ``teacher_finetuned``); keep the best dev checkpoint.
``sparsified``   score heads/neurons, reorder them by importance, build the nested
                 sparsity map over the grid (∪ the target).
``iter1..K``     sandwich-train every candidate at or above the current teacher's level
                 and the truncation level; select the assistant by the λ-tradeoff.
                 The assistant becomes the next iteration's teacher *and* its
                 initialisation. The final iteration (or a selection equal to the target)
                 trains the target student alone.
``student``      export the student (safetensors + config) and re-evaluate the
                 exported copy.
``report``       report.json, report.md, tradeoff.png; the schedule's cost
                 (:mod:`minidisc.schedules.cost`) is also stored in the manifest.

``teacher`` and ``sparsified`` are shared with the baseline schedules
(:mod:`minidisc.schedules.stages`); with ``teacher_run`` they are linked from another
run. With a stage registry (``memo``), iteration 1 — whose training does not depend on
the target when early stopping is off — is reused from an earlier run on the same
teacher and only its selection is recomputed for this run's target and λ.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.config import CompressConfig, TrainConfig
from minidisc.fileio import is_main_process, process_state
from minidisc.schedules.run import REPORT_FILES, RunDir
from minidisc.schedules.stages import export_stage, load_sparsity_map, sparsify_stage, teacher_stage

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from minidisc.elastic.spec import SubnetSpec
    from minidisc.schedules.inputs import TaskData
    from minidisc.schedules.memo import StageMemo
    from minidisc.training.teacher_cache import TeacherCacheStore

__all__ = ["load_sparsity_map", "run_compress", "train_sandwich"]


def run_compress(
    cfg: CompressConfig,
    output: str | Path,
    *,
    overwrite: bool = False,
    teacher_run: str | Path | None = None,
    teacher_cache: TeacherCacheStore | None = None,
    memo: StageMemo | None = None,
) -> RunDir:
    """Run (or resume) the MiniDisc pipeline into ``output``; return the run.

    Args:
        teacher_run: link ``teacher/`` and ``sparsified/`` from this finished run instead
            of fine-tuning and sparsifying again (it must hold every level needed).
        teacher_cache: serve teacher outputs from this store (see
            :mod:`minidisc.training.teacher_cache`).
        memo: registry of finished stages on the same teacher (reuse of iteration 1).

    Raises:
        RunExistsError: ``output`` holds another run and ``overwrite`` is False.
        ConfigError, DataError, ModelError: invalid options, data or teacher.
    """
    from minidisc.schedules.inputs import prepare_task_data
    from minidisc.schedules.stages import prepare_teacher, task_inputs

    run = RunDir(output, cfg, "compress", overwrite=overwrite)
    with process_state().main_process_first():  # hub downloads and dataset caches: filled once
        source, tokenizer = task_inputs(cfg.teacher, teacher_run)
        data = prepare_task_data(cfg.data, tokenizer, seed=cfg.finetune.seed)

    prepare_teacher(
        run,
        teacher_run,
        lambda tmp: _teacher_stage(cfg, source, data, tmp),
        lambda tmp: _sparsify_stage(cfg, run.path / "teacher", data, tmp),
    )
    spec_map = _spec_map(run, cfg)

    teacher_dir, level = run.path / "sparsified" / "model", 0.0
    for k in range(1, cfg.iterations + 1):
        final = k == cfg.iterations
        entry = _iteration(run, cfg, k, final, teacher_dir, level, spec_map, data, teacher_cache, memo)
        teacher_dir, level = run.path / f"iter{k}" / "model", entry["selected"]
        if final or _same(level, cfg.target_sparsity):
            break
    run.stage("student", lambda tmp: _export_stage(run, teacher_dir, spec_map[_key(spec_map, cfg.target_sparsity)], data, tmp))
    run.set("cost", _cost(run, cfg, spec_map))
    run.stage("report", lambda root: _report_stage(run, data), folder=False, main_only=True, outputs=REPORT_FILES)
    run.finish()
    return run


# --- stages -----------------------------------------------------------------------------


def _teacher_stage(cfg: CompressConfig, source: Any, data: TaskData, out: Path) -> dict[str, Any]:
    return teacher_stage(source, data, cfg.finetune, cfg.teacher_finetuned, out)


def _sparsify_stage(cfg: CompressConfig, teacher_dir: Path, data: TaskData, out: Path) -> dict[str, Any]:
    return sparsify_stage(teacher_dir, data, cfg.levels(), cfg.finetune.eval_batch_size, out, seed=cfg.finetune.seed)


def _iteration(
    run: RunDir,
    cfg: CompressConfig,
    k: int,
    final: bool,
    teacher_dir: Path,
    level: float,
    spec_map: dict[float, SubnetSpec],
    data: TaskData,
    teacher_cache: TeacherCacheStore | None,
    memo: StageMemo | None,
) -> dict[str, Any]:
    """Stage ``iter{k}``: trained here, or (iteration 1 with a registry) reused."""
    name = f"iter{k}"

    def work(tmp: Path) -> dict[str, Any]:
        return _iteration_stage(
            cfg, k, final, teacher_dir, level, spec_map, data, tmp,
            teacher_cache=teacher_cache, keep_candidates=memo is not None,
        )

    # Iteration 1's training is independent of target and λ only without early stopping.
    if memo is None or k != 1 or final or _may_stop_early(cfg.sandwich, len(data.train)) or run.done(name):
        return run.stage(name, work)
    from minidisc.schedules.memo import fingerprint
    from minidisc.schedules.stages import root_run

    key = fingerprint({
        "stage": "minidisc-iteration-1", "root": str(root_run(run.path)),
        "root_finished": run.record("sparsified").get("finished"),
        "candidates": cfg.candidate_levels(0.0), "sandwich": cfg.sandwich.model_dump(mode="json"),
        "data": cfg.data.model_dump(mode="json"), "data_seed": cfg.finetune.seed,
    })
    hit = memo.find(key)
    if hit is not None:
        folder, original = hit
        return run.stage(name, lambda tmp: _reselect(cfg, folder, original, run.path / name, tmp), main_only=True)
    entry = run.stage(name, lambda tmp: {**work(tmp), "fingerprint": key})
    memo.remember(key, run.path / name, entry)
    return entry


def _iteration_stage(
    cfg: CompressConfig,
    k: int,
    final: bool,
    teacher_dir: Path,
    level: float,
    spec_map: dict[float, SubnetSpec],
    data: TaskData,
    out: Path,
    *,
    teacher_cache: TeacherCacheStore | None = None,
    keep_candidates: bool = False,
) -> dict[str, Any]:
    from minidisc.elastic.io import save_student
    from minidisc.fileio import write_json
    from minidisc.models import ModelSource, load_for_task
    from minidisc.seeding import seed_everything
    from minidisc.training.tracker import CandidateTracker

    train_cfg = cfg.final if final else cfg.sandwich
    seed_everything(train_cfg.seed)
    teacher = load_for_task(ModelSource(str(teacher_dir)), data.task)
    student = load_for_task(ModelSource(str(teacher_dir)), data.task)
    target = _key(spec_map, cfg.target_sparsity)
    levels = [target] if final else [_key(spec_map, s) for s in cfg.candidate_levels(level)]
    tracker = CandidateTracker(levels, cfg.lam, target, final=final)
    compute = train_sandwich(
        teacher, student, {s: spec_map[s] for s in levels}, tracker, data, train_cfg, out / "scratch",
        teacher_cache=teacher_cache, stage=f"iter{k}", log_dir=out / "logs",
    )
    if is_main_process():
        shutil.rmtree(out / "scratch", ignore_errors=True)
    chosen = tracker.selection.sparsity
    save_student(tracker.chosen(), out / "model", spec_map[chosen], tokenizer=data.tokenizer)
    if cfg.save_candidates or keep_candidates:
        for s, snapshot in tracker.snapshots.items():
            save_student(snapshot, out / "candidates" / f"s{s:g}", spec_map[s], tokenizer=data.tokenizer)
    summary = tracker.summary()
    if is_main_process():  # every process holds the same tracker (metrics gathered across them)
        write_json(out / "candidates.json", summary)
    return {
        "iteration": k,
        "final": final,
        "teacher_level": level,
        "selected": chosen,
        "selected_metric": tracker.best[chosen],
        "candidates": summary["candidates"],
        "compute": compute,
    }


def _reselect(cfg: CompressConfig, folder: Path, original: dict[str, Any], final_path: Path, out: Path) -> dict[str, Any]:
    """Iteration 1 from an identical earlier run: replay its evaluations through a
    tracker with this run's target and λ, and take the snapshot it selects."""
    from minidisc.fileio import read_json, write_json
    from minidisc.training.tracker import CandidateTracker

    saved = read_json(folder / "candidates.json")
    levels = [c["sparsity"] for c in saved["candidates"]]
    target = next(s for s in levels if _same(s, cfg.target_sparsity))
    tracker = CandidateTracker(levels, cfg.lam, target, final=False)
    for record in saved["history"]:
        metrics = {next(s for s in levels if _same(s, float(k))): v for k, v in record["metrics"].items()}
        tracker.update(record["step"], metrics, lambda s: s)
    chosen = tracker.selection.sparsity
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(folder / "candidates" / f"s{chosen:g}", out / "model")
    os.symlink(os.path.relpath(folder / "candidates", final_path.resolve()), out / "candidates", target_is_directory=True)
    summary = tracker.summary()
    write_json(out / "candidates.json", summary)
    return {
        "iteration": 1,
        "final": False,
        "teacher_level": 0.0,
        "selected": chosen,
        "selected_metric": tracker.best[chosen],
        "candidates": summary["candidates"],
        "compute": original["compute"],
        "wall_time_s": original.get("wall_time_s"),
        "reused_from": str(folder),
    }


def _export_stage(run: RunDir, model_dir: Path, spec: SubnetSpec, data: TaskData, out: Path) -> dict[str, Any]:
    from minidisc.report.card import CardFacts

    return export_stage(model_dir, data, out, spec, card=CardFacts.from_manifest(run.manifest))


def _report_stage(run: RunDir, data: TaskData) -> dict[str, Any]:
    from minidisc.report.compress import write_compress_report

    write_compress_report(run, data)
    return {}


def _cost(run: RunDir, cfg: CompressConfig, spec_map: dict[float, SubnetSpec]) -> dict[str, Any]:
    """The schedule's cost: its iterations; direct KD estimated from iteration 1."""
    from transformers import AutoConfig

    from minidisc.schedules.cost import estimate_direct_kd, schedule_cost

    stages = run.manifest["stages"]
    iterations = sorted((n for n in stages if n.startswith("iter")), key=lambda n: int(n[4:]))
    first = stages[iterations[0]]
    teacher_config = AutoConfig.from_pretrained(run.path / "sparsified" / "model")
    trained = [spec_map[_key(spec_map, c["sparsity"])] for c in first["candidates"]]
    target = spec_map[_key(spec_map, cfg.target_sparsity)]
    reference = estimate_direct_kd(first, teacher_config, target, trained)
    return schedule_cost(stages, iterations, reference)


# --- helpers ------------------------------------------------------------------------------


def train_sandwich(
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    candidates: dict[float, SubnetSpec],
    tracker: Any,
    data: TaskData,
    cfg: TrainConfig,
    workdir: Path,
    *,
    objective: str = "minidisc",
    objective_options: dict[str, Any] | None = None,
    teacher_cache: TeacherCacheStore | None = None,
    stage: str = "distillation",
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Sandwich-train ``candidates`` of an elastic copy of ``student`` against ``teacher``
    with ``objective`` (default: the MiniDisc loss); return the stage's compute totals.

    With a single candidate this is plain distillation into that sub-network, keeping
    the snapshot at its best dev evaluation (every hop of the baseline schedules).
    With ``teacher_cache`` the totals also hold ``teacher_cache`` statistics (hits,
    misses, teacher FLOPs saved); the store is flushed to disk at the end. ``stage``
    names the stage in errors; ``log_dir`` receives the training logs
    (:mod:`minidisc.training.logs`).

    Raises:
        DivergenceError: a non-finite loss, gradient norm or weight during training.
    """
    from minidisc.elastic.model import ElasticModel
    from minidisc.objectives import build_objective
    from minidisc.training.arguments import training_arguments
    from minidisc.training.data import collator_for, metrics_fn
    from minidisc.training.sandwich import SandwichTrainer

    elastic = ElasticModel(student)
    loss = build_objective(
        objective, task_type=data.task.task_type, student_config=student.config, teacher_config=teacher.config,
        **(objective_options or {}),
    )
    trainer = SandwichTrainer(
        model=elastic.model,
        args=training_arguments(cfg, workdir, keep_best_checkpoint=False),
        train_dataset=data.train,
        eval_dataset=data.dev,
        data_collator=collator_for(data.task, data.tokenizer),
        processing_class=data.tokenizer,
        compute_metrics=metrics_fn(data.task),
        teacher=teacher,
        objective=loss,
        elastic=elastic,
        candidates=candidates,
        tracker=tracker,
        patience=cfg.patience,
        teacher_cache=teacher_cache,
        stage=stage,
        log_dir=log_dir,
    )
    trainer.train()
    if not tracker.history:  # training ended between evaluations: evaluate once
        trainer.evaluate()
    compute = trainer.meter.stop().to_dict()
    if trainer.teacher_cache is not None:
        compute["teacher_cache"] = trainer.teacher_cache.stats.to_dict()
        trainer.teacher_cache.flush()
    return compute


def _spec_map(run: RunDir, cfg: CompressConfig) -> dict[float, SubnetSpec]:
    """Specs of every level this run trains or reports (grid ∪ target).

    The same lookup as the baseline schedules (:func:`~minidisc.schedules.stages.level_specs`):
    levels that a shared teacher's map lacks are rebuilt from its saved importance and
    added to its map.
    """
    from minidisc.schedules.stages import level_specs

    return level_specs(run.path / "sparsified", cfg.levels())


def _may_stop_early(cfg: TrainConfig, n_train: int) -> bool:
    """Whether early stopping can end a stage: only with more evaluations than
    ``patience`` (the first evaluation always improves on nothing)."""
    import math

    if cfg.patience is None:
        return False
    steps = cfg.max_steps or math.ceil(n_train / cfg.batch_size) * cfg.epochs
    evaluations = math.floor(steps / cfg.eval_steps) if cfg.eval_steps else math.ceil(cfg.epochs)
    return evaluations > cfg.patience


def _key(spec_map: dict[float, Any], sparsity: float) -> float:
    from minidisc.schedules.stages import level_key

    return level_key(spec_map, sparsity)


def _same(a: float, b: float) -> bool:
    from minidisc.schedules.stages import same_level

    return same_level(a, b)
