"""``minidisc takd``: sequential distillation along a fixed teacher-assistant path."""

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
    app.command("takd")(takd)


def takd(
    path: Annotated[str, typer.Option("--path", help="Sparsities after the teacher, comma-separated; the last is the student (e.g. 0.5,0.9).")] = "0.5,0.9",
    output: Output = Path("runs/takd"),
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
    """TAKD (Mirzadeh et al. 2020): each hop distils the previous checkpoint into a copy
    cut to the next sparsity of --path."""
    from minidisc.schedules.baselines import run_takd
    from minidisc.schedules.config import TakdConfig

    stage = stage_overrides(epochs, batch_size, learning_rate, eval_steps, patience, seed)
    overrides = {
        **common_overrides(teacher=teacher, teacher_finetuned=teacher_finetuned, teacher_run=teacher_run, task=task,
                           data_dir=data_dir, max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
                           max_length=max_length, importance_samples=importance_samples, grid=grid, stage=stage,
                           finetune_epochs=finetune_epochs),
        **objective_overrides(objective, alpha, temperature, beta, option),
        "path": parse_grid(path),
    }
    cfg = build_config(TakdConfig, config, overrides, patience)
    store = open_schedule_cache(cache_options(no_teacher_cache, cache_dir, cache_memory_mb), output, cfg.teacher_run)
    run = run_takd(cfg, output, overwrite=overwrite, teacher_cache=store)
    summarize(run.path)
