"""``minidisc finetune``: fine-tune a teacher or any student checkpoint on a task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minidisc.cli.options import DataDir, MaxEval, MaxTrain, Output, Overwrite, Task, merge


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)


def finetune(
    model: Annotated[str | None, typer.Option("--model", "--teacher", help="Hub id, folder (incl. minidisc students) or .gguf; default: the packaged all-MiniLM-L6-v2.")] = None,
    task: Task = "sst2",
    output: Output = Path("runs/finetune"),
    data_dir: DataDir = None,
    max_train_samples: MaxTrain = None,
    max_eval_samples: MaxEval = None,
    max_length: Annotated[int, typer.Option(help="Maximum tokens per example.")] = 128,
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 3.0,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 32,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = 5e-5,
    eval_steps: Annotated[int | None, typer.Option(help="Evaluate every N steps (default: every epoch).")] = None,
    patience: Annotated[int, typer.Option(help="Evaluations without improvement before stopping.")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 776,
    overwrite: Overwrite = False,
) -> None:
    """Fine-tune a model on a GLUE task (or CoNLL-2003); keep the best dev checkpoint."""
    import shutil

    from minidisc.config import DataConfig, TrainConfig, parse_config
    from minidisc.errors import RunExistsError
    from minidisc.fileio import atomic_path, write_json
    from minidisc.models import load_for_task, load_tokenizer, resolve_model
    from minidisc.schedules.inputs import prepare_task_data
    from minidisc.training.finetune import finetune as run_finetune

    if output.exists() and any(output.iterdir()) and not overwrite:
        raise RunExistsError(f"{output} exists; pass --overwrite to replace it or choose another --output")
    data_cfg = parse_config(DataConfig, merge({}, {"task": task, "data_dir": str(data_dir) if data_dir else None,
                            "max_train_samples": max_train_samples, "max_eval_samples": max_eval_samples,
                            "max_length": max_length}), "the command line")
    train_cfg = parse_config(TrainConfig, {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                             "eval_steps": eval_steps, "patience": patience, "seed": seed}, "the command line")
    source = resolve_model(model)
    tokenizer = load_tokenizer(source)
    data = prepare_task_data(data_cfg, tokenizer, seed=seed)
    with atomic_path(output) as tmp:
        result = run_finetune(load_for_task(source, data.task), tokenizer, data.task, data.train, data.dev, train_cfg, tmp / "scratch")
        shutil.rmtree(tmp / "scratch", ignore_errors=True)
        result.model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "finetune.json", {"model": source.label, "task": data.task.name, "dev": result.dev_metrics,
                                           "data": data.sizes, "compute": result.compute.to_dict()})
    typer.echo(f"dev {', '.join(f'{k} {100 * v:.2f}' for k, v in result.dev_metrics.items())}")
    typer.echo(f"model: {output}")
