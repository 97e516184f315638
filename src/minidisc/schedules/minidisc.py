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
``report``       report.json, report.md, tradeoff.png.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.config import CompressConfig, TrainConfig
from minidisc.schedules.run import RunDir

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from minidisc.elastic.spec import SubnetSpec
    from minidisc.schedules.inputs import TaskData


def run_compress(cfg: CompressConfig, output: str | Path, *, overwrite: bool = False) -> RunDir:
    """Run (or resume) the MiniDisc pipeline into ``output``; return the run.

    Raises:
        RunExistsError: ``output`` holds another run and ``overwrite`` is False.
        ConfigError, DataError, ModelError: invalid options, data or teacher.
    """
    from minidisc.models import load_tokenizer, resolve_model
    from minidisc.schedules.inputs import prepare_task_data

    run = RunDir(output, cfg, "compress", overwrite=overwrite)
    source = resolve_model(cfg.teacher)
    tokenizer = load_tokenizer(source)
    data = prepare_task_data(cfg.data, tokenizer, seed=cfg.finetune.seed)

    run.stage("teacher", lambda tmp: _teacher_stage(cfg, source, data, tmp))
    run.stage("sparsified", lambda tmp: _sparsify_stage(cfg, run.path / "teacher", data, tmp))
    spec_map = load_sparsity_map(run.path / "sparsified")

    teacher_dir, level = run.path / "sparsified" / "model", 0.0
    for k in range(1, cfg.iterations + 1):
        final = k == cfg.iterations
        entry = run.stage(
            f"iter{k}", lambda tmp: _iteration_stage(cfg, k, final, teacher_dir, level, spec_map, data, tmp)
        )
        teacher_dir, level = run.path / f"iter{k}" / "model", entry["selected"]
        if final or _same(level, cfg.target_sparsity):
            break
    run.stage("student", lambda tmp: _export_stage(teacher_dir, spec_map[_key(spec_map, cfg.target_sparsity)], data, tmp))
    run.stage("report", lambda root: _report_stage(run, data), folder=False)
    run.finish()
    return run


# --- stages -----------------------------------------------------------------------------


def _teacher_stage(cfg: CompressConfig, source: Any, data: TaskData, out: Path) -> dict[str, Any]:
    from minidisc.models import load_for_task
    from minidisc.training.finetune import evaluate_model, finetune

    model = load_for_task(source, data.task)
    if cfg.teacher_finetuned:
        dev, compute = evaluate_model(model, data, cfg.finetune, out / "scratch"), None
    else:
        result = finetune(model, data.tokenizer, data.task, data.train, data.dev, cfg.finetune, out / "scratch")
        model, dev, compute = result.model, result.dev_metrics, result.compute.to_dict()
    shutil.rmtree(out / "scratch", ignore_errors=True)
    model.save_pretrained(out)
    data.tokenizer.save_pretrained(out)
    return {"dev": dev, "compute": compute, "source": source.label, "data": data.sizes}


def _sparsify_stage(cfg: CompressConfig, teacher_dir: Path, data: TaskData, out: Path) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    from minidisc.elastic.model import ElasticModel
    from minidisc.fileio import write_json
    from minidisc.models import ModelSource, load_for_task
    from minidisc.training.data import collator_for

    elastic = ElasticModel(load_for_task(ModelSource(str(teacher_dir)), data.task))
    loader = DataLoader(
        data.importance, batch_size=cfg.finetune.eval_batch_size, collate_fn=collator_for(data.task, data.tokenizer)
    )
    importance = elastic.reorder(elastic.importance(loader))
    levels = sorted(set(cfg.grid) | {round(cfg.target_sparsity, 6)})
    spec_map = elastic.sparsity_map(importance, levels)
    elastic.model.save_pretrained(out / "model")
    data.tokenizer.save_pretrained(out / "model")
    importance.save(out / "importance.safetensors")
    write_json(out / "sparsity_map.json", {f"{s:g}": spec.to_dict() for s, spec in spec_map.items()})
    return {"levels": levels}


def _iteration_stage(
    cfg: CompressConfig,
    k: int,
    final: bool,
    teacher_dir: Path,
    level: float,
    spec_map: dict[float, SubnetSpec],
    data: TaskData,
    out: Path,
) -> dict[str, Any]:
    from minidisc.elastic.io import save_student
    from minidisc.fileio import write_json
    from minidisc.models import ModelSource, load_for_task
    from minidisc.training.tracker import CandidateTracker

    teacher = load_for_task(ModelSource(str(teacher_dir)), data.task)
    student = load_for_task(ModelSource(str(teacher_dir)), data.task)
    target = _key(spec_map, cfg.target_sparsity)
    levels = [target] if final else [_key(spec_map, s) for s in cfg.candidate_levels(level)]
    tracker = CandidateTracker(levels, cfg.lam, target, final=final)
    train_cfg = cfg.final if final else cfg.sandwich
    compute = train_sandwich(teacher, student, {s: spec_map[s] for s in levels}, tracker, data, train_cfg, out / "scratch")
    shutil.rmtree(out / "scratch", ignore_errors=True)
    chosen = tracker.selection.sparsity
    save_student(tracker.chosen(), out / "model", spec_map[chosen], tokenizer=data.tokenizer)
    if cfg.save_candidates:
        for s, snapshot in tracker.snapshots.items():
            save_student(snapshot, out / "candidates" / f"s{s:g}", spec_map[s], tokenizer=data.tokenizer)
    summary = tracker.summary()
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


def _export_stage(model_dir: Path, spec: SubnetSpec, data: TaskData, out: Path) -> dict[str, Any]:
    from minidisc.elastic.io import load_student, save_student
    from minidisc.training.finetune import evaluate_model

    model = load_student(model_dir)
    save_student(model, out, spec, tokenizer=data.tokenizer)
    exported = load_student(out)  # the numbers reported are those of the exported files
    dev, _ = evaluate_model(exported, data, TrainConfig(), out.parent / ".export-eval")
    shutil.rmtree(out.parent / ".export-eval", ignore_errors=True)
    return {"dev": dev, "plain_hf_loadable": spec.is_uniform and _all_heads(exported, spec)}


def _report_stage(run: RunDir, data: TaskData) -> dict[str, Any]:
    from minidisc.report.compress import write_compress_report

    write_compress_report(run, data)
    return {}


# --- helpers ------------------------------------------------------------------------------


def train_sandwich(
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    candidates: dict[float, SubnetSpec],
    tracker: Any,
    data: TaskData,
    cfg: TrainConfig,
    workdir: Path,
) -> dict[str, Any]:
    """Sandwich-train ``candidates`` of an elastic copy of ``student`` against ``teacher``
    with the MiniDisc loss; return the stage's compute totals."""
    from minidisc.elastic.model import ElasticModel
    from minidisc.objectives import build_objective
    from minidisc.training.arguments import training_arguments
    from minidisc.training.data import collator_for, metrics_fn
    from minidisc.training.sandwich import SandwichTrainer

    elastic = ElasticModel(student)
    objective = build_objective("minidisc", task_type=data.task.task_type, student_config=student.config, teacher_config=teacher.config)
    trainer = SandwichTrainer(
        model=elastic.model,
        args=training_arguments(cfg, workdir, keep_best_checkpoint=False),
        train_dataset=data.train,
        eval_dataset=data.dev,
        data_collator=collator_for(data.task, data.tokenizer),
        processing_class=data.tokenizer,
        compute_metrics=metrics_fn(data.task),
        teacher=teacher,
        objective=objective,
        elastic=elastic,
        candidates=candidates,
        tracker=tracker,
        patience=cfg.patience,
    )
    trainer.train()
    if not tracker.history:  # training ended between evaluations: evaluate once
        trainer.evaluate()
    return trainer.meter.stop().to_dict()


def load_sparsity_map(sparsified_dir: Path) -> dict[float, SubnetSpec]:
    """The nested sparsity map saved by the ``sparsified`` stage."""
    from minidisc.elastic.spec import SubnetSpec
    from minidisc.fileio import read_json

    raw = read_json(sparsified_dir / "sparsity_map.json")
    return {float(s): SubnetSpec.from_dict(spec) for s, spec in raw.items()}


def _key(spec_map: dict[float, Any], sparsity: float) -> float:
    return next(s for s in spec_map if _same(s, sparsity))


def _same(a: float, b: float) -> bool:
    return abs(a - b) < 1e-6


def _all_heads(model: PreTrainedModel, spec: SubnetSpec) -> bool:
    return all(h == model.config.num_attention_heads for h in spec.heads)
