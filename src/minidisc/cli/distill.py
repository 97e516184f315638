"""``minidisc distill``: one direct distillation run teacher → student.

Also defines the options every schedule command shares (``takd``, ``maxidisc``,
``compare`` import them from here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

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

# --- shared options -----------------------------------------------------------------------

TeacherRun = Annotated[Path | None, typer.Option("--teacher-run", help="Reuse teacher/ and sparsified/ of this finished run (e.g. an earlier compare).")]
TeacherFinetuned = Annotated[bool, typer.Option("--teacher-finetuned", help="The teacher is already tuned on the task: skip fine-tuning.")]
MaxLength = Annotated[int | None, typer.Option(help="Maximum tokens per example (default 128).")]
ImportanceSamples = Annotated[int | None, typer.Option(help="Training examples that score heads/neurons (default 2048).")]
Grid = Annotated[str | None, typer.Option(help="Sparsity levels of the map, comma-separated (default 0,.1,…,.9,.85,.95).")]
Epochs = Annotated[float | None, typer.Option(help="Epochs of every training stage (default 3).")]
FinetuneEpochs = Annotated[float | None, typer.Option(help="Epochs of teacher fine-tuning (default: --epochs).")]
BatchSize = Annotated[int | None, typer.Option(help="Training batch size of every stage (default 32).")]
LearningRate = Annotated[float | None, typer.Option(help="Peak learning rate of every stage (default 5e-5).")]
EvalSteps = Annotated[int | None, typer.Option(help="Evaluate every N steps (default: every epoch).")]
Patience = Annotated[int | None, typer.Option(help="Evaluations without improvement before stopping; 0 = never stop early (default 5).")]
Seed = Annotated[int | None, typer.Option(help="Random seed of every stage and of subsampling (default 776).")]
Objective = Annotated[str | None, typer.Option(help="Distillation objective of every hop: kd (vanilla KD), minidisc (default), pkd, ...")]
Alpha = Annotated[float | None, typer.Option(help="kd/pkd: weight of the distillation term vs the label CE, a fraction (default 0.5).")]
Temperature = Annotated[float | None, typer.Option(help="Softmax temperature of the logit term (kd/minidisc default 1, pkd 5).")]
Beta = Annotated[float | None, typer.Option(help="pkd: weight of the patient [CLS] term (default 100).")]
ObjectiveOption = Annotated[list[str] | None, typer.Option("--option", help="Other objective option as key=value (repeatable).")]
NoCache = Annotated[bool, typer.Option("--no-teacher-cache", help="Always run the teacher (no output cache).")]
CacheDir = Annotated[Path | None, typer.Option(help="Teacher-output cache folder (default: teacher-cache/ in the run holding the teacher).")]
CacheMemoryMb = Annotated[int, typer.Option(help="Memory budget of the teacher cache in MiB (spills to disk beyond).")]


def stage_overrides(
    epochs: float | None, batch_size: int | None, learning_rate: float | None, eval_steps: int | None,
    patience: int | None, seed: int | None,
) -> dict[str, Any]:
    """Overrides of a TrainConfig from the shared options (``patience 0`` handled later)."""
    return {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "eval_steps": eval_steps,
            "patience": patience if patience else None, "seed": seed}


def common_overrides(
    *, teacher: str | None, teacher_finetuned: bool, teacher_run: Path | None, task: str | None,
    data_dir: Path | None, max_train_samples: int | None, max_eval_samples: int | None, max_length: int | None,
    importance_samples: int | None, grid: str | None, stage: dict[str, Any], finetune_epochs: float | None,
) -> dict[str, Any]:
    """The config fields every schedule command sets from its options."""
    return {
        "teacher": teacher,
        "teacher_finetuned": teacher_finetuned or None,
        "teacher_run": str(teacher_run.resolve()) if teacher_run else None,
        "data": {"task": task, "data_dir": str(data_dir) if data_dir else None, "max_train_samples": max_train_samples,
                 "max_eval_samples": max_eval_samples, "max_length": max_length, "importance_samples": importance_samples},
        "grid": parse_grid(grid),
        "finetune": {**stage, "epochs": finetune_epochs if finetune_epochs is not None else stage["epochs"]},
        "train": stage,
    }


def objective_overrides(
    objective: str | None, alpha: float | None, temperature: float | None, beta: float | None, options: list[str] | None
) -> dict[str, Any]:
    """``objective`` and ``objective_options`` from the flags."""
    parsed: dict[str, Any] = {k: v for k, v in (("alpha", alpha), ("temperature", temperature), ("beta", beta)) if v is not None}
    for item in options or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--option expects key=value, got {item!r}")
        parsed[key.strip()] = _scalar(value.strip())
    return {"objective": objective, "objective_options": parsed or None}


def _scalar(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def build_config(model: type, config_file: Path | None, overrides: dict[str, Any], patience: int | None) -> Any:
    """Defaults ← YAML ← command line, validated; ``--patience 0`` disables early stopping."""
    from minidisc.cli.options import merge
    from minidisc.config import load_yaml, parse_config

    base = load_yaml(config_file, model).model_dump(mode="json") if config_file else {}
    data = merge(base, overrides)
    if patience == 0:
        for name in ("finetune", "train"):
            if name in model.model_fields:
                data.setdefault(name, {})["patience"] = None
    return parse_config(model, data, "the command line")


def cache_options(no_cache: bool, cache_dir: Path | None, memory_mb: int) -> Any:
    from minidisc.schedules.compare import CacheOptions

    return CacheOptions(enabled=not no_cache, directory=str(cache_dir) if cache_dir else None, max_memory_mb=memory_mb)


def open_schedule_cache(options: Any, output: Path, teacher_run: str | None) -> Any:
    from minidisc.schedules.compare import cache_root, open_cache

    return open_cache(options, cache_root(output, teacher_run))


def summarize(path: Path) -> None:
    """Print the student's dev metric, the cost and where the report is."""
    from minidisc.fileio import read_json

    report = read_json(path / "report.json")
    cost = report.get("cost") or {}
    multiple = cost.get("multiple")
    typer.echo(
        f"teacher dev {100 * report['teacher']['dev']['main']:.2f} | student dev {100 * report['student']['dev']['main']:.2f} "
        f"| cost {cost.get('total', {}).get('train_flops', 0):.3e} FLOPs"
        + (f" = {multiple:.2f}× direct KD" if multiple is not None else "")
    )
    typer.echo(f"student: {path / 'student'}")
    typer.echo(f"report:  {path / 'report.md'}")


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """The ``--layers`` value → 0-based indices of the teacher layers the student keeps.

    ``"3"`` or ``"bottom:3"`` → the bottom 3 layers ``(0, 1, 2)``; ``"0,2,4"`` or
    ``"keep:0,2,4"`` → those layers; one layer: ``"keep:5"`` (or ``"5,"``).

    Raises:
        typer.BadParameter: not one of these forms.
    """
    if text is None:
        return None
    from minidisc.schedules.students import bottom_layers

    text = text.strip()
    prefix, sep, body = text.partition(":")
    kind = prefix.strip() if sep else ("keep" if "," in text else "bottom")
    body = body if sep else text
    usage = f"--layers expects N or bottom:N (the bottom N layers), or indices 0,2,4 or keep:5; got {text!r}"
    if kind not in ("bottom", "keep"):
        raise typer.BadParameter(f"--layers prefixes are bottom: and keep:, got {text!r}")
    try:
        values = [int(x) for x in body.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(usage) from None
    if kind == "bottom":
        if len(values) != 1 or "," in body:
            raise typer.BadParameter(usage)
        return bottom_layers(values[0])
    if not values:
        raise typer.BadParameter(usage)
    return tuple(values)


# --- the command ---------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    app.command("distill")(distill)


def distill(
    output: Output = Path("runs/distill"),
    sparsity: Annotated[float | None, typer.Option("--sparsity", help="Student = the teacher sliced at this sparsity (0.9 = a 10 % student).")] = None,
    layers: Annotated[str | None, typer.Option("--layers", help="Student = teacher layers: N or bottom:N = the bottom N; 0,2,4 or keep:0,2,4 = those 0-based indices; one layer: keep:5 (or 5,).")] = None,
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
    """Direct KD: distil the fine-tuned teacher into a sliced (--sparsity) or layer-dropped
    (--layers) student in one run, with a cost report."""
    from minidisc.schedules.baselines import run_distill
    from minidisc.schedules.config import DistillConfig

    stage = stage_overrides(epochs, batch_size, learning_rate, eval_steps, patience, seed)
    overrides = {
        **common_overrides(teacher=teacher, teacher_finetuned=teacher_finetuned, teacher_run=teacher_run, task=task,
                           data_dir=data_dir, max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
                           max_length=max_length, importance_samples=importance_samples, grid=grid, stage=stage,
                           finetune_epochs=finetune_epochs),
        **objective_overrides(objective, alpha, temperature, beta, option),
        "target_sparsity": sparsity,
        "layers": parse_layers(layers),
    }
    cfg = build_config(DistillConfig, config, overrides, patience)
    store = open_schedule_cache(cache_options(no_teacher_cache, cache_dir, cache_memory_mb), output, cfg.teacher_run)
    run = run_distill(cfg, output, overwrite=overwrite, teacher_cache=store)
    summarize(run.path)
