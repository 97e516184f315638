"""The MiniDisc schedule (``minidisc compress``): teacher → assistant → student.

Stages, each resumable from the run directory (:class:`~minidisc.runfolder.run.RunDir`):

``teacher``      fine-tune the teacher on the task (or only evaluate it with
                 ``teacher_finetuned``); keep the best dev checkpoint.
``sparsified``   score heads/neurons, reorder them by importance, build the nested
                 sparsity map over the grid (∪ the target).
``iter1..K``     sandwich-train the candidates at or above the current teacher's level
                 and the truncation level (by default under the sandwich rule, K = 0,
                 from 0.3 below the target up to it: :class:`~minidisc.config.MiniDiscRules`;
                 :class:`~minidisc.training.distill.Distiller`);
                 select the assistant by the λ-tradeoff
                 (:mod:`minidisc.training.selection`).
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
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.config import CompressConfig, TrainConfig
from minidisc.elastic.levels import level_key, same_level
from minidisc.errors import ConfigError
from minidisc.evaluation.constant import at_constant_score, collapse_floor, constant_prediction
from minidisc.fileio import is_main_process, process_state, read_json, write_json
from minidisc.models import load_config, resolve_model
from minidisc.report.card import CardFacts, model_card
from minidisc.report.compress import teacher_collapse_warning, write_compress_report
from minidisc.runfolder.run import REPORT_FILES, RunDir
from minidisc.runtime import configure
from minidisc.schedules.cost import estimate_direct_kd, schedule_cost
from minidisc.schedules.memo import memo_stage, stage_key
from minidisc.schedules.speed import latency_costs, latency_stage, speed_stage
from minidisc.schedules.stages import (
    MapShape,
    check_run_data,
    export_stage,
    level_specs,
    prepare_teacher,
    task_inputs,
)
from minidisc.training.data import prepare_run_data
from minidisc.training.distill import Distiller
from minidisc.training.records import CandidatesRecord, IterationRecord, iteration_names
from minidisc.training.sandwich import inclusion_probabilities
from minidisc.training.selection import BEST, DEFAULT_SCORE_WINDOW, ScoreRule
from minidisc.training.tracker import CandidateTracker

if TYPE_CHECKING:
    from minidisc.elastic.spec import SubnetSpec
    from minidisc.schedules.lm_config import LMCompressConfig
    from minidisc.schedules.memo import StageMemo
    from minidisc.training.data import TaskData
    from minidisc.training.teacher_cache import TeacherCacheStore

__all__ = ["IterationContext", "run_compress", "run_iterations"]


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
    configure(cfg.precision)  # an impossible precision stops here, before anything is written
    train_batches = [cfg.sandwich.batch_size, cfg.final.batch_size] + ([] if cfg.teacher_finetuned else [cfg.finetune.batch_size])
    check_run_data(cfg.data, cfg.teacher, teacher_finetuned=cfg.teacher_finetuned, teacher_run=teacher_run,
                   seed=cfg.finetune.seed, batch_size=max(train_batches), selection=cfg)  # before anything is written
    shape = MapShape(cfg.layer_shapes, cfg.drop_layers, cfg.align)
    if teacher_run is None and (shape.layer_shapes == "depth" or shape.drop_layers):  # a linked map: checked below
        shape.check(load_config(resolve_model(cfg.teacher)), cfg.levels())
    run = RunDir(output, cfg, "compress", overwrite=overwrite)
    with process_state().main_process_first():  # hub downloads and dataset caches: filled once
        source, tokenizer = task_inputs(cfg.teacher, teacher_run)
        data = prepare_run_data(cfg.data, tokenizer, cfg.finetune.seed, cfg.select_on, cfg.selection_examples)

    prepare_teacher(run, teacher_run, source, data, cfg.finetune, cfg.teacher_finetuned, cfg.levels(), shape)
    linked = MapShape.of_entry(run.record("sparsified"))
    if linked != shape:  # a --teacher-run map of other shapes would silently win
        raise ConfigError(
            f"the sparsity map of {teacher_run} was made with {linked}, this run asks for {shape}; "
            "give the same --layer-shapes, --drop-layers and --align, or drop --teacher-run"
        )
    floor = _constant_scores(run, data)  # stored for the report's flags whatever the rule
    # every level this run trains or reports (grid ∪ target), as the baseline schedules look them up
    spec_map = level_specs(run.path / "sparsified", cfg.levels())
    reordered, tokens = run.path / "sparsified" / "model", cfg.data.max_length

    costs = None
    if cfg.cost == "latency":  # each candidate timed once, before any selection
        levels = [level_key(spec_map, s) for s in cfg.candidate_levels(0.0)]
        entry = run.stage("latency", lambda tmp: latency_stage(reordered, spec_map, levels, tokens=tokens),
                          folder=False, main_only=True)
        costs = latency_costs(entry)
    ctx = IterationContext(cfg, spec_map, data, teacher_cache, memo, costs=costs,
                           score=cfg.candidate_score, score_window=cfg.score_window,
                           sandwich_samples=cfg.sandwich_samples, floor=floor if cfg.skip_collapsed else None)
    teacher_dir = run_iterations(run, ctx)
    target = spec_map[level_key(spec_map, cfg.target_sparsity)]
    run.stage("student", lambda tmp: _export_stage(run, teacher_dir, target, data, tmp))
    run.stage("speed", lambda tmp: speed_stage(reordered, run.path / "student", tokens=tokens),
              folder=False, main_only=True)
    run.set("cost", _cost(run, cfg, spec_map))
    run.stage("report", lambda root: _report_stage(run, data), folder=False, main_only=True, outputs=REPORT_FILES)
    run.finish()
    return run


def run_iterations(run: RunDir, ctx: IterationContext) -> Path:
    """Run (or resume) iterations ``iter1..K`` from ``sparsified/model``: each distils the
    current teacher into the candidates and selects the next one; stop after the final
    iteration or once the selection is the target. Returns the last iteration's model
    folder (the student to export). Shared by the GLUE and the text (``--task lm``) paths."""
    cfg = ctx.cfg
    teacher_dir, teacher_level = run.path / "sparsified" / "model", 0.0
    for k in range(1, cfg.iterations + 1):
        final = k == cfg.iterations
        record = _iteration(run, ctx, k, final, teacher_dir, teacher_level)
        teacher_dir, teacher_level = run.path / f"iter{k}" / "model", record.selected
        if final or same_level(teacher_level, cfg.target_sparsity):
            break
    return teacher_dir


# --- stages -----------------------------------------------------------------------------


@dataclass
class IterationContext:
    """What every iteration of a run needs: the config, the specs of every level, the
    task data, the teacher cache and the registry of finished stages.

    The text path (``compress --task lm``, :mod:`minidisc.schedules.lm`) also sets the
    distillation objective and two hooks: ``stage_data(final)`` (the task data whose
    ``train`` is a stream of that stage's token budget) and ``stage_train(final)`` (the
    stage's training settings); unset, a stage trains on ``data`` with
    ``cfg.sandwich``/``cfg.final`` and the MiniDisc loss, as for GLUE.

    ``sandwich_samples``: the sandwich rule's random candidates per step
    (:mod:`minidisc.training.sandwich`; both paths pass ``--sandwich-samples``);
    None: every candidate every step.

    ``floor``: the collapse floor on the selection set
    (:func:`~minidisc.evaluation.constant.collapse_floor`): candidates at or below it are
    passed over by the λ-tradeoff; None (the text path, ``--keep-collapsed``): none is.

    ``score`` and ``score_window`` are the candidates' scoring rule
    (:func:`~minidisc.training.selection.candidate_metric`): the GLUE path passes
    ``--candidate-score``/``--score-window``; the text path keeps ``best`` (its metric is
    measured on a held-out slice already, and its few evaluations per stage only improve).
    """

    cfg: CompressConfig | LMCompressConfig
    spec_map: dict[float, SubnetSpec]
    data: TaskData
    teacher_cache: TeacherCacheStore | None = None
    memo: StageMemo | None = None
    objective: str = "minidisc"
    objective_options: Mapping[str, Any] = field(default_factory=dict)
    stage_data: Callable[[bool], TaskData] | None = None
    stage_train: Callable[[bool], TrainConfig] | None = None
    costs: dict[float, float] | None = None
    score: ScoreRule = BEST
    score_window: int = DEFAULT_SCORE_WINDOW
    sandwich_samples: int | None = None
    floor: float | None = None

    def distiller(self, final: bool) -> Distiller:
        """The engine of one iteration (the final one: ``final``, which trains the target alone)."""
        data = self.stage_data(final) if self.stage_data else self.data
        train = self.stage_train(final) if self.stage_train else (self.cfg.final if final else self.cfg.sandwich)
        return Distiller(data, train, objective=self.objective, objective_options=dict(self.objective_options),
                         teacher_cache=self.teacher_cache, card=model_card,
                         sandwich_samples=None if final else self.sandwich_samples)


def _iteration(
    run: RunDir, ctx: IterationContext, k: int, final: bool, teacher_dir: Path, teacher_level: float
) -> IterationRecord:
    """Stage ``iter{k}``: trained here, or (iteration 1 with a registry) reused."""
    name, cfg = f"iter{k}", ctx.cfg

    def work(tmp: Path) -> dict[str, Any]:
        return _iteration_stage(ctx, k, final, teacher_dir, teacher_level, tmp)

    # Iteration 1's training is independent of target and λ only without early stopping.
    if ctx.memo is None or k != 1 or final or _may_stop_early(cfg.sandwich, len(ctx.data.train)):
        return IterationRecord.from_dict(run.stage(name, work))
    facts = {
        "stage": "minidisc-iteration-1", "candidates": cfg.candidate_levels(0.0),
        "sandwich": cfg.sandwich.model_dump(mode="json"), "data": cfg.data.model_dump(mode="json"),
        "data_seed": cfg.finetune.seed,
        # what is trained on and evaluated, and which snapshots were saved for reuse
        "selection": {"select_on": cfg.select_on, "selection_examples": cfg.selection_examples,
                      "candidate_score": cfg.candidate_score, "score_window": cfg.score_window},
    }
    if cfg.sandwich_samples is not None:  # absent by default: earlier runs' keys stay valid
        facts["sandwich_samples"] = cfg.sandwich_samples
    key = stage_key(run, facts)

    def reselect(folder: Path, original: dict[str, Any], tmp: Path) -> dict[str, Any]:
        return _reselect(cfg, folder, original, run.path / name, tmp, ctx.costs, ctx.floor)

    return IterationRecord.from_dict(memo_stage(run, name, key, ctx.memo, work, reuse=reselect))


def _iteration_stage(
    ctx: IterationContext, k: int, final: bool, teacher_dir: Path, teacher_level: float, out: Path
) -> dict[str, Any]:
    """Distil the model in ``teacher_dir`` into every candidate at once (the final
    iteration: the target alone); write ``out/model`` (the selection at its best),
    ``out/candidates.json`` and, when asked, ``out/candidates/``; return the manifest entry."""
    cfg, spec_map = ctx.cfg, ctx.spec_map
    distiller = ctx.distiller(final)
    teacher, student = distiller.load(teacher_dir)
    target = level_key(spec_map, cfg.target_sparsity)
    levels = [target] if final else [level_key(spec_map, s) for s in cfg.candidate_levels(teacher_level)]
    if any(same_level(s, target) for s in levels):
        tracker = CandidateTracker(levels, cfg.lam, target, final=final, costs=ctx.costs,
                                   score=ctx.score, window=ctx.score_window, floor=ctx.floor)
    else:  # a fixed assistant (``--task lm`` with ``assistant``, TAKD): plain distillation into it
        tracker = CandidateTracker.single(levels[0])
    keep = cfg.save_candidates or ctx.memo is not None  # with a registry: kept for a later run's reuse
    compute = distiller.run(teacher, student, {s: spec_map[s] for s in levels}, tracker, out, stage=f"iter{k}",
                            candidates_dir=out / "candidates" if keep else None)
    summary = tracker.summary()
    if is_main_process():  # every process holds the same tracker (metrics gathered across them)
        write_json(out / "candidates.json", summary.to_dict())
    return _record(k, final, teacher_level, summary, compute).to_dict()


def _reselect(
    cfg: CompressConfig, folder: Path, original: dict[str, Any], final_path: Path, out: Path,
    costs: dict[float, float] | None = None, floor: float | None = None,
) -> dict[str, Any]:
    """Iteration 1 from an identical earlier run: replay its evaluations through a
    tracker with this run's target, λ and collapse floor, and take the snapshot it selects."""
    saved = CandidatesRecord.from_dict(read_json(folder / "candidates.json"))
    levels = [c.sparsity for c in saved.candidates]
    tracker = CandidateTracker(levels, cfg.lam, level_key(levels, cfg.target_sparsity), final=False, costs=costs,
                               score=cfg.candidate_score, window=cfg.score_window, floor=floor)
    for evaluation in saved.history:
        metrics = {level_key(levels, s): m for s, m in evaluation.metrics.items()}
        tracker.update(evaluation.step, metrics, lambda s: s)
    chosen = tracker.selection.sparsity  # type: ignore[union-attr]
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(folder / "candidates" / f"s{chosen:g}", out / "model")
    os.symlink(os.path.relpath(folder / "candidates", final_path.resolve()), out / "candidates", target_is_directory=True)
    summary = tracker.summary()
    write_json(out / "candidates.json", summary.to_dict())
    record = _record(1, False, 0.0, summary, original["compute"])
    return record.to_dict() | {"wall_time_s": original.get("wall_time_s"), "reused_from": str(folder)}


def _record(k: int, final: bool, teacher_level: float, summary: CandidatesRecord, compute: dict[str, Any]) -> IterationRecord:
    """The manifest entry of iteration ``k`` from its candidate run."""
    selected = next(c for c in summary.candidates if c.sparsity == summary.selected)
    return IterationRecord(k, final, teacher_level, selected.sparsity, selected.selection_metric, summary.candidates,
                           compute, summary.passed_over)


def _constant_scores(run: RunDir, data: TaskData) -> float:
    """Store the constant-prediction scores (:mod:`minidisc.evaluation.constant`) on dev and
    on the selection set in the manifest (``constant_prediction``), for the report's
    collapse flags; warn when the teacher itself sits at the dev one. Returns the collapse
    floor on the selection set (the teacher's margin measured on dev, as the report's flags)."""
    train_labels = data.train["labels"]
    on_dev = constant_prediction(data.task, train_labels, data.dev["labels"])
    on_selection = on_dev if data.selection is None else constant_prediction(data.task, train_labels, data.selection["labels"])
    run.set("constant_prediction", {"dev": on_dev, "selection": on_selection})
    if data.selection is not None:  # the slice's size, also when the teacher entry is linked
        run.set("selection_slice", {"examples": len(data.selection), "train_examples": len(data.train)})
    teacher = run.record("teacher")["dev"]["main"]
    if at_constant_score(teacher, on_dev["main"], teacher):
        warnings.warn(teacher_collapse_warning(teacher, on_dev), UserWarning, stacklevel=3)
    return collapse_floor(on_selection["main"], teacher)


def _export_stage(run: RunDir, model_dir: Path, spec: SubnetSpec, data: TaskData, out: Path) -> dict[str, Any]:
    return export_stage(model_dir, data, out, spec, card=CardFacts.from_manifest(run.manifest))


def _report_stage(run: RunDir, data: TaskData) -> dict[str, Any]:
    write_compress_report(run, data)
    return {}


def _cost(run: RunDir, cfg: CompressConfig, spec_map: dict[float, SubnetSpec]) -> dict[str, Any]:
    """The schedule's cost: its iterations; direct KD estimated from iteration 1."""
    from transformers import AutoConfig

    stages = run.manifest["stages"]
    iterations = iteration_names(stages)
    first = IterationRecord.from_dict(stages[iterations[0]])
    teacher_config = AutoConfig.from_pretrained(run.path / "sparsified" / "model")
    levels = sorted(c.sparsity for c in first.candidates)
    trained = [spec_map[level_key(spec_map, s)] for s in levels]
    shares = inclusion_probabilities(levels, cfg.sandwich_samples).values()
    target = spec_map[level_key(spec_map, cfg.target_sparsity)]
    reference = estimate_direct_kd(stages[iterations[0]], teacher_config, target, trained, shares)
    return schedule_cost(stages, iterations, reference)


# --- helpers ------------------------------------------------------------------------------


def _may_stop_early(cfg: TrainConfig, n_train: int) -> bool:
    """Whether early stopping can end a stage: only with more evaluations than
    ``patience`` (the first evaluation always improves on nothing)."""
    import math

    if cfg.patience is None:
        return False
    steps = cfg.max_steps or math.ceil(n_train / cfg.batch_size) * cfg.epochs
    evaluations = math.floor(steps / cfg.eval_steps) if cfg.eval_steps else math.ceil(cfg.epochs)
    return evaluations > cfg.patience
