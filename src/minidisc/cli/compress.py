"""``minidisc compress``: the whole MiniDisc pipeline in one resumable run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minidisc.cli.options import (
    ConfigFile,
    DataDir,
    MaxEval,
    MaxLength,
    MaxTrain,
    Output,
    Overwrite,
    Task,
    Teacher,
    TeacherFinetuned,
    build_compress_config,
    help_text,
    parse_grid,
)
from minidisc.fileio import read_json


def register(app: typer.Typer) -> None:
    app.command("compress", help=help_text(compress.__doc__))(compress)


def compress(
    output: Output = Path("runs/compress"),
    teacher: Teacher = None,
    task: Task = None,
    target_sparsity: Annotated[float | None, typer.Option(help="Fraction of heads/neurons removed, e.g. 0.9 (a 10 % student).")] = None,
    lam: Annotated[float | None, typer.Option("--lam", help="λ of the tradeoff t = metric + λ·sparsity (default 0.2).")] = None,
    iterations: Annotated[int | None, typer.Option(help="Sandwich iterations; 2 = one teacher assistant.")] = None,
    truncation: Annotated[float | None, typer.Option(help="Candidates sparser than this only (default 0.5).")] = None,
    grid: Annotated[str | None, typer.Option(help="Candidate sparsities, comma-separated (default 0,.1,…,.9,.85,.95).")] = None,
    teacher_finetuned: TeacherFinetuned = False,
    data_dir: DataDir = None,
    max_train_samples: MaxTrain = None,
    max_eval_samples: MaxEval = None,
    max_length: MaxLength = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs of every training stage (finetune, sandwich, final).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size of every stage.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate of every stage.")] = None,
    eval_steps: Annotated[int | None, typer.Option(help="Evaluate every N steps (default: every epoch).")] = None,
    patience: Annotated[int | None, typer.Option(help="Evaluations without improvement before stopping.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed of every stage (default 776).")] = None,
    save_candidates: Annotated[bool, typer.Option("--save-candidates", help="Also save each candidate's best sub-network.")] = False,
    config: ConfigFile = None,
    overwrite: Overwrite = False,
) -> None:
    """Compress a teacher with MiniDisc to a target sparsity.

    Fine-tunes the teacher, sparsifies it, picks a teacher assistant by the λ-tradeoff in
    one sandwich run, distils the target student and exports it with a report.
    """
    # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
    from minidisc.schedules.minidisc import run_compress

    stage = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
             "eval_steps": eval_steps, "patience": patience, "seed": seed}
    overrides = {
        "teacher": teacher,
        "teacher_finetuned": teacher_finetuned or None,
        "data": {"task": task, "data_dir": str(data_dir) if data_dir else None, "max_train_samples": max_train_samples,
                 "max_eval_samples": max_eval_samples, "max_length": max_length},
        "target_sparsity": target_sparsity, "lam": lam, "iterations": iterations, "truncation": truncation,
        "grid": parse_grid(grid), "save_candidates": save_candidates or None,
        "finetune": stage, "sandwich": stage, "final": stage,
    }
    cfg = build_compress_config(config, overrides)
    run = run_compress(cfg, output, overwrite=overwrite)
    summarize(run.path)


def summarize(path: Path) -> None:
    """Print where the student and the report are, and the headline numbers."""
    report = read_json(path / "report.json")
    teacher, student = report["teacher"], report["student"]
    typer.echo(
        f"teacher dev {100 * teacher['dev']['main']:.2f} | student ({100 * student['sparsity']:g} % sparse) "
        f"dev {100 * student['dev']['main']:.2f} | FLOPs/128 tok {teacher['flops_per_128_tokens'] / 1e9:.2f}G → "
        f"{student['flops_per_128_tokens'] / 1e9:.3f}G"
    )
    typer.echo(f"student: {path / 'student'}  (load with minidisc.load_student)")
    typer.echo(f"report:  {path / 'report.md'}")
