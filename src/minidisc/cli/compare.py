"""``minidisc compare``: every schedule to one target on one shared teacher, as a table."""

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
    stage_overrides,
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
    app.command("compare")(compare)


def compare(
    target: Annotated[float | None, typer.Option("--target", help="Student sparsity, e.g. 0.9 (a 10 % student).")] = None,
    schedules: Annotated[str, typer.Option(help="Comma-separated: direct, takd, maxidisc, minidisc.")] = "direct,takd,maxidisc,minidisc",
    takd_path: Annotated[str | None, typer.Option(help="TAKD path (default: the candidate nearest target/2, then the target).")] = None,
    truncation: Annotated[float | None, typer.Option(help="MiniDisc/MaxiDisc candidates are at least this sparse (default 0.5).")] = None,
    lam: Annotated[float | None, typer.Option("--lam", help="MiniDisc's λ (default 0.2).")] = None,
    iterations: Annotated[int | None, typer.Option(help="MiniDisc sandwich iterations (default 2 = one assistant).")] = None,
    max_assistants: Annotated[int | None, typer.Option(help="MaxiDisc paths through up to this many assistants (default 1).")] = None,
    output: Output = Path("runs/compare"),
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
    note: Annotated[str | None, typer.Option(help="Free text shown in the reports.")] = None,
    config: ConfigFile = None,
    overwrite: Overwrite = False,
) -> None:
    """Run (or resume) direct KD, TAKD, MaxiDisc and MiniDisc on the same fine-tuned and
    sparsified teacher and data; write the paper-style table (report.md/json) and a plot
    of student metric against cost (compare.png)."""
    from minidisc.fileio import read_json
    from minidisc.schedules.compare import run_compare
    from minidisc.schedules.config import CompareConfig

    stage = stage_overrides(epochs, batch_size, learning_rate, eval_steps, patience, seed)
    overrides = {
        **common_overrides(teacher=teacher, teacher_finetuned=teacher_finetuned, teacher_run=teacher_run, task=task,
                           data_dir=data_dir, max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
                           max_length=max_length, importance_samples=importance_samples, grid=grid, stage=stage,
                           finetune_epochs=finetune_epochs),
        **objective_overrides(objective, alpha, temperature, beta, option),
        "target_sparsity": target, "schedules": [s.strip() for s in schedules.split(",") if s.strip()],
        "takd_path": parse_grid(takd_path), "truncation": truncation, "lam": lam, "iterations": iterations,
        "max_assistants": max_assistants, "note": note,
    }
    cfg = build_config(CompareConfig, config, overrides, patience)
    run = run_compare(cfg, output, overwrite=overwrite, cache=cache_options(no_teacher_cache, cache_dir, cache_memory_mb))
    report = read_json(run.path / "report.json")
    for row in report["rows"]:
        multiple = f"{row['cost_multiple']:.2f}×" if row.get("cost_multiple") is not None else "–"
        typer.echo(f"{row['schedule']:>9}: dev {100 * row['dev_main']:.2f} | cost {row['cost_train_flops']:.3e} FLOPs ({multiple})")
    typer.echo(f"report: {run.path / 'report.md'}")
