"""``minidisc maxidisc``: TAKD through every candidate assistant; keep the best student."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minidisc.cli.distill import (
    Alpha,
    BatchSize,
    Beta,
    CacheDir,
    CacheMemoryMb,
    Epochs,
    EvalSteps,
    FinetuneEpochs,
    Grid,
    ImportanceSamples,
    LearningRate,
    MaxLength,
    NoCache,
    Objective,
    ObjectiveOption,
    Patience,
    Seed,
    TeacherFinetuned,
    TeacherRun,
    Temperature,
    build_config,
    cache_options,
    common_overrides,
    objective_overrides,
    open_schedule_cache,
    stage_overrides,
    summarize,
)
from minidisc.cli.options import (
    ConfigFile,
    DataDir,
    MaxEval,
    MaxTrain,
    Output,
    Overwrite,
    Task,
    Teacher,
    parse_grid,
)


def register(app: typer.Typer) -> None:
    app.command("maxidisc")(maxidisc)


def maxidisc(
    target: Annotated[float | None, typer.Option("--target", help="Student sparsity, e.g. 0.9 (a 10 % student).")] = None,
    candidates: Annotated[str | None, typer.Option(help="Assistant sparsities to try (default: MiniDisc's candidates: grid levels ≥ --truncation below the target).")] = None,
    truncation: Annotated[float | None, typer.Option(help="Default candidates are at least this sparse (default 0.5).")] = None,
    max_assistants: Annotated[int | None, typer.Option(help="Also try paths through up to this many assistants (default 1).")] = None,
    output: Output = Path("runs/maxidisc"),
    teacher: Teacher = None,
    teacher_run: TeacherRun = None,
    teacher_finetuned: TeacherFinetuned = False,
    task: Task = None,
    data_dir: DataDir = None,
    max_train_samples: MaxTrain = None,
    max_eval_samples: MaxEval = None,
    max_length: MaxLength = None,
    importance_samples: ImportanceSamples = None,
    grid: Grid = None,
    epochs: Epochs = None,
    finetune_epochs: FinetuneEpochs = None,
    batch_size: BatchSize = None,
    learning_rate: LearningRate = None,
    eval_steps: EvalSteps = None,
    patience: Patience = None,
    seed: Seed = None,
    objective: Objective = None,
    alpha: Alpha = None,
    temperature: Temperature = None,
    beta: Beta = None,
    option: ObjectiveOption = None,
    no_teacher_cache: NoCache = False,
    cache_dir: CacheDir = None,
    cache_memory_mb: CacheMemoryMb = 512,
    config: ConfigFile = None,
    overwrite: Overwrite = False,
) -> None:
    """MaxiDisc: TAKD through every candidate teacher assistant (shared hops computed
    once); the student with the best dev metric is kept."""
    from minidisc.schedules.baselines import run_maxidisc
    from minidisc.schedules.config import MaxiDiscConfig

    stage = stage_overrides(epochs, batch_size, learning_rate, eval_steps, patience, seed)
    overrides = {
        **common_overrides(teacher=teacher, teacher_finetuned=teacher_finetuned, teacher_run=teacher_run, task=task,
                           data_dir=data_dir, max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
                           max_length=max_length, importance_samples=importance_samples, grid=grid, stage=stage,
                           finetune_epochs=finetune_epochs),
        **objective_overrides(objective, alpha, temperature, beta, option),
        "target_sparsity": target, "candidates": parse_grid(candidates), "truncation": truncation,
        "max_assistants": max_assistants,
    }
    cfg = build_config(MaxiDiscConfig, config, overrides, patience)
    store = open_schedule_cache(cache_options(no_teacher_cache, cache_dir, cache_memory_mb), output, cfg.teacher_run)
    run = run_maxidisc(cfg, output, overwrite=overwrite, teacher_cache=store)
    summarize(run.path)
