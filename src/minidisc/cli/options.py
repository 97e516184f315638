"""Options shared by several commands, and building validated configs from them.

An option left unset keeps the value from ``--config FILE`` (YAML) or the default, so
a command line only says what differs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

from minidisc.config import CompressConfig, load_yaml, parse_config

Teacher = Annotated[
    str | None,
    typer.Option("--teacher", help="Hub id, local folder or .gguf file; default: the packaged all-MiniLM-L6-v2."),
]
Task = Annotated[
    str | None,
    typer.Option("--task", help="cola, sst2, mrpc, stsb, qqp, mnli, mnli-mm, qnli, rte, wnli, conll2003."),
]
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Parent of GLUE task folders (SST-2/, MRPC/ ...); else $MINIDISC_DATA_DIR, else the hub."),
]
MaxTrain = Annotated[int | None, typer.Option("--max-train-samples", help="Seeded random subsample of the training set.")]
MaxEval = Annotated[int | None, typer.Option("--max-eval-samples", help="Seeded random subsample of the dev set.")]
DATA_PANEL = "Your own data (instead of --task)"
TrainFile = Annotated[Path | None, typer.Option("--train-file", help="Your labelled training data: .csv, .tsv, .jsonl, .json or .parquet (task 'custom'; see docs/your-data.md).", rich_help_panel=DATA_PANEL)]
ValidationFile = Annotated[Path | None, typer.Option("--validation-file", help="Validation data in the same columns; default: a seeded stratified split of --train-file.", rich_help_panel=DATA_PANEL)]
TextColumn = Annotated[list[str] | None, typer.Option("--text-column", help="Text column (default text); give it twice for sentence pairs.", rich_help_panel=DATA_PANEL)]
LabelColumn = Annotated[str | None, typer.Option("--label-column", help="Label column (default label).", rich_help_panel=DATA_PANEL)]
TaskType = Annotated[str | None, typer.Option("--task-type", help="classification or regression (default: inferred: texts or a few integers are classes, floats scores).", rich_help_panel=DATA_PANEL)]
Metric = Annotated[str | None, typer.Option("--metric", help="Main metric: accuracy (default), macro-f1, mcc; regression: pearson-spearman (their mean).", rich_help_panel=DATA_PANEL)]
ValidationFraction = Annotated[float | None, typer.Option("--validation-fraction", help="Share of --train-file held out when no --validation-file (default 0.1).", rich_help_panel=DATA_PANEL)]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML config; command-line options override it.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing run in --output.")]
Output = Annotated[Path, typer.Option("--output", "-o", help="Run directory (resumed if it holds this run).")]
TeacherFinetuned = Annotated[bool, typer.Option("--teacher-finetuned", help="The teacher is already tuned on the task: skip fine-tuning.")]
MaxLength = Annotated[int | None, typer.Option(help="Maximum tokens per example (default 128).")]
Precision = Annotated[
    str | None,
    typer.Option("--precision", help="auto (default: bf16 on a GPU that supports it, else fp32), bf16, fp16 (CUDA), tf32 (Ampere+ CUDA) or fp32; see docs/gpu.md."),
]

# --- the options every schedule command (distill, takd, maxidisc, compare) shares ----------

TeacherRun = Annotated[Path | None, typer.Option("--teacher-run", help="Reuse teacher/ and sparsified/ of this finished run (e.g. an earlier compare).")]
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


@dataclass(frozen=True)
class ScheduleOptions:
    """The command-line options every schedule command shares, declared once.

    :func:`schedule_command` adds them to a command's signature (so each is a
    ``--flag`` of it) and hands them to the command as one ``opts`` argument.
    """

    teacher: Teacher = None
    teacher_run: TeacherRun = None
    teacher_finetuned: TeacherFinetuned = False
    task: Task = None
    data_dir: DataDir = None
    max_train_samples: MaxTrain = None
    max_eval_samples: MaxEval = None
    max_length: MaxLength = None
    importance_samples: ImportanceSamples = None
    grid: Grid = None
    epochs: Epochs = None
    finetune_epochs: FinetuneEpochs = None
    batch_size: BatchSize = None
    learning_rate: LearningRate = None
    eval_steps: EvalSteps = None
    patience: Patience = None
    seed: Seed = None
    objective: Objective = None
    alpha: Alpha = None
    temperature: Temperature = None
    beta: Beta = None
    option: ObjectiveOption = None
    no_teacher_cache: NoCache = False
    cache_dir: CacheDir = None
    cache_memory_mb: CacheMemoryMb = 512
    precision: Precision = None
    config: ConfigFile = None
    overwrite: Overwrite = False

    def overrides(self) -> dict[str, Any]:
        """The config fields these options set (None: keep the YAML's or the default)."""
        stage = {"epochs": self.epochs, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                 "eval_steps": self.eval_steps, "patience": self.patience or None, "seed": self.seed}
        return {
            "teacher": self.teacher,
            "teacher_finetuned": self.teacher_finetuned or None,
            "teacher_run": str(self.teacher_run.resolve()) if self.teacher_run else None,
            "data": {"task": self.task, "data_dir": str(self.data_dir) if self.data_dir else None,
                     "max_train_samples": self.max_train_samples, "max_eval_samples": self.max_eval_samples,
                     "max_length": self.max_length, "importance_samples": self.importance_samples},
            "grid": parse_grid(self.grid),
            "finetune": {**stage, "epochs": self.finetune_epochs if self.finetune_epochs is not None else self.epochs},
            "train": stage,
            "objective": self.objective,
            "objective_options": parse_objective_options(self.alpha, self.temperature, self.beta, self.option),
            "precision": self.precision,
        }

    def build(self, model: type, **specific: Any) -> Any:
        """Defaults ← ``--config`` YAML ← these options ← the command's own ``specific``
        fields, validated as ``model``; ``--patience 0`` disables early stopping.

        Raises:
            ConfigError: an invalid field (every bad one is named).
        """
        base = load_yaml(self.config, model).model_dump(mode="json") if self.config else {}
        data = merge(base, {**self.overrides(), **specific})
        if self.patience == 0:
            for name in ("finetune", "train"):
                if name in model.model_fields:
                    data.setdefault(name, {})["patience"] = None
        return parse_config(model, data, "the command line")

    def cache_options(self) -> Any:
        """The :class:`~minidisc.schedules.compare.CacheOptions` these flags say."""
        # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
        from minidisc.schedules.compare import CacheOptions

        return CacheOptions(enabled=not self.no_teacher_cache, directory=str(self.cache_dir) if self.cache_dir else None,
                            max_memory_mb=self.cache_memory_mb)

    def teacher_cache(self, output: Path, teacher_run: str | None) -> Any:
        """The teacher-output store of a baseline run into ``output`` (None: off)."""
        # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
        from minidisc.schedules.compare import cache_root, open_cache

        return open_cache(self.cache_options(), cache_root(output, teacher_run))


def schedule_command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command every :class:`ScheduleOptions` flag after its own options.

    ``func`` declares its own options and a keyword ``opts``; the returned command has
    ``func``'s options plus the shared ones (what Typer reads from its signature) and
    calls ``func(..., opts=ScheduleOptions(...))``.
    """
    own = inspect.signature(func, eval_str=True)
    hints = get_type_hints(ScheduleOptions, include_extras=True)
    shared = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in fields(ScheduleOptions)
    ]
    params = [p for p in own.parameters.values() if p.name != "opts"] + shared

    @functools.wraps(func)
    def command(**kwargs: Any) -> Any:
        opts = ScheduleOptions(**{f.name: kwargs.pop(f.name) for f in fields(ScheduleOptions)})
        return func(**kwargs, opts=opts)

    command.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def help_text(doc: str | None) -> str:
    """A command's docstring as ``--help`` text: paragraphs kept, their source line breaks
    dropped (Typer would print them, breaking its own wrapping)."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def merge(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """Recursively overlay the non-None values of ``updates`` on ``base``."""
    out = dict(base)
    for key, value in updates.items():
        if isinstance(value, dict):
            out[key] = merge(out.get(key) or {}, value)
        elif value is not None:
            out[key] = value
    return out


def build_compress_config(config_file: Path | None, overrides: dict[str, Any]) -> CompressConfig:
    """Defaults ← YAML file ← command-line overrides, validated."""
    base = load_yaml(config_file, CompressConfig).model_dump(mode="json") if config_file else {}
    return parse_config(CompressConfig, merge(base, overrides), "the command line")


def parse_grid(text: str | None) -> list[float] | None:
    """``"0.5,0.6,0.9"`` → ``[0.5, 0.6, 0.9]`` (fractions)."""
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated fractions like 0.5,0.9, got {text!r}") from None


def parse_objective_options(
    alpha: float | None, temperature: float | None, beta: float | None, options: list[str] | None
) -> dict[str, Any] | None:
    """``--alpha/--temperature/--beta`` and ``--option key=value`` → the objective's options.

    Raises:
        typer.BadParameter: an ``--option`` without ``=``.
    """
    parsed: dict[str, Any] = {k: v for k, v in (("alpha", alpha), ("temperature", temperature), ("beta", beta)) if v is not None}
    for item in options or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--option expects key=value, got {item!r}")
        parsed[key.strip()] = _scalar(value.strip())
    return parsed or None


def _scalar(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def file_data_options(
    task: str | None, train_file: Path | None, validation_file: Path | None, text_column: list[str] | None,
    label_column: str | None, task_type: str | None, metric: str | None, validation_fraction: float | None,
) -> dict[str, Any]:
    """The ``data`` config fields of the own-data options (``--train-file`` ...); with a
    training file the task is ``custom``.

    Raises:
        typer.BadParameter: ``--task`` together with ``--train-file``.
    """
    if train_file is not None and task is not None and task.strip().lower() != "custom":
        raise typer.BadParameter(f"--task {task} and --train-file exclude each other: your files are the task",
                                 param_hint="--task")
    return {
        "task": "custom" if train_file is not None else task,
        "train_file": str(train_file) if train_file else None,
        "validation_file": str(validation_file) if validation_file else None,
        "text_columns": list(text_column) if text_column else None,
        "label_column": label_column, "task_type": task_type.strip().lower() if task_type else None,
        "metric": metric, "validation_fraction": validation_fraction,
    }
