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

from minidisc.compute.allocator import LOW_MEMORY_MMAP_THRESHOLD
from minidisc.config import CompressConfig, config_base, parse_config

Teacher = Annotated[
    str | None,
    typer.Option("--teacher", help="Hub id, local folder or .gguf file; default: the packaged all-MiniLM-L6-v2."),
]
Task = Annotated[
    str | None,
    typer.Option("--task", help="cola, sst2, mrpc, stsb, qqp, mnli, mnli-mm, qnli, rte, wnli, conll2003; or your own data: --train-file or --dataset."),
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
TestFile = Annotated[Path | None, typer.Option("--test-file", help="Held-out test data in the same columns: teacher and student are evaluated on it once, at the end (reported as test; never used for selection).", rich_help_panel=DATA_PANEL)]
DatasetOption = Annotated[str | None, typer.Option("--dataset", help="A data set read with datasets.load_dataset instead of --train-file: a hub id (org/name) or a local folder of data files or of Dataset.save_to_disk output.", rich_help_panel=DATA_PANEL)]
DatasetConfigOption = Annotated[str | None, typer.Option("--dataset-config", help="--dataset: its configuration (subset) name.", rich_help_panel=DATA_PANEL)]
SplitNames = Annotated[str | None, typer.Option("--split-names", help="--dataset: which splits to use, e.g. train=train,validation=dev,test=test (default: train; validation, dev, valid or val if there is one; no test).", rich_help_panel=DATA_PANEL)]
TextColumn = Annotated[list[str] | None, typer.Option("--text-column", help="Text column (default text); give it twice for sentence pairs; token classification: the column of token lists (default tokens).", rich_help_panel=DATA_PANEL)]
LabelColumn = Annotated[str | None, typer.Option("--label-column", help="Label column (default label; token classification: the column of tag lists, default tags).", rich_help_panel=DATA_PANEL)]
TaskType = Annotated[str | None, typer.Option("--task-type", help="classification, regression or token-classification (default: inferred: texts or a few integers are classes, floats scores, lists of tags token classification).", rich_help_panel=DATA_PANEL)]
Metric = Annotated[str | None, typer.Option("--metric", help="Main metric: accuracy (default), macro-f1, mcc; regression: pearson-spearman (their mean); token classification: entity-f1 (seqeval, the default).", rich_help_panel=DATA_PANEL)]
ValidationFraction = Annotated[float | None, typer.Option("--validation-fraction", help="Share of --train-file held out when no --validation-file (default 0.1).", rich_help_panel=DATA_PANEL)]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML config; command-line options override it.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing run in --output.")]
Output = Annotated[Path, typer.Option("--output", "-o", help="Run directory (resumed if it holds this run).")]
TeacherFinetuned = Annotated[bool, typer.Option("--teacher-finetuned", help="The teacher is already tuned on the task: skip fine-tuning.")]
MaxLength = Annotated[int | None, typer.Option(help="Maximum tokens per example (default 128).")]
LowMemory = Annotated[
    bool | None,
    typer.Option("--low-memory/--no-low-memory", help=f"Give freed tensor memory back to the system at once (glibc's mmap threshold fixed at {LOW_MEMORY_MMAP_THRESHOLD >> 20} MiB; Linux): a lower peak RSS for more page faults, the same weights. Default: on for demo (SST-2), off elsewhere (demo --llm included); see docs/minidisc.md."),
]
Precision = Annotated[
    str | None,
    typer.Option("--precision", help="auto (default: bf16 on a GPU that supports it, else fp32), bf16, fp16 (CUDA), tf32 (Ampere+ CUDA) or fp32; see docs/gpu.md."),
]

# --- the options every schedule command (distill, takd, maxidisc, compare) shares ----------

def parse_sandwich_samples(value: str | int) -> str | int:
    """``--sandwich-samples``: ``all`` or a count ≥ 0 (a typer parser).

    Raises:
        typer.BadParameter: anything else.
    """
    if isinstance(value, int) or value == "all":
        return value
    if not value.isdigit():
        raise typer.BadParameter(f"{value!r} is not a count of candidates: give an integer ≥ 0, or all")
    return int(value)


SandwichSamples = Annotated[str | None, typer.Option(parser=parse_sandwich_samples, metavar="K|all", help="MiniDisc's sandwich rule: each sandwich step trains the least and the most sparse candidate and K others drawn at random, with candidates from --truncation (default 0.3 below the target) up to the target and none beyond it; default 0 (about 2.3× one direct-KD run, as good as every candidate over six seeds: docs/results.md). all: every candidate every step on the whole grid above --truncation (default 0.5), the paper's code, about 4.9×. --task lm: default all.")]
SelectOn = Annotated[str | None, typer.Option(help="Where checkpoints and the assistant are chosen: slice (default: a seeded, stratified selection slice held out of the training data before anything trains, so dev stays a clean report) or dev (the paper's protocol: dev chooses and reports). See docs/minidisc.md.")]
SelectionExamples = Annotated[int | None, typer.Option(help="Training examples held out as the selection slice (with --select-on slice; default 10 % of them, at most 1000).")]
CandidateScore = Annotated[str | None, typer.Option(help="MiniDisc: a candidate's selection metric: last_mean (default: the mean of its last --score-window evaluations, its latest weights kept; less biased by noise) or best (its running maximum, the paper's).")]
ScoreWindow = Annotated[int | None, typer.Option(help="Evaluations averaged by --candidate-score last_mean (default 3).")]
SkipCollapsed = Annotated[bool | None, typer.Option("--skip-collapsed/--keep-collapsed", help="MiniDisc's λ-tradeoff passes over candidates at the task's constant-prediction score (flagged ⚠ constant in the report; default), or keeps them in the argmax as the paper does. See docs/minidisc.md.")]
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
class DataFileOptions:
    """The own-data options (``--train-file``, ``--dataset`` ...) of every command that
    takes ``--task``, declared once; :func:`data_command` adds them to a command.

    The same names, without dashes, are the ``data:`` keys of the YAML config
    (``text_column`` → ``text_columns``, ``split_names`` a mapping there).
    """

    train_file: TrainFile = None
    validation_file: ValidationFile = None
    test_file: TestFile = None
    dataset: DatasetOption = None
    dataset_config: DatasetConfigOption = None
    split_names: SplitNames = None
    text_column: TextColumn = None
    label_column: LabelColumn = None
    task_type: TaskType = None
    metric: Metric = None
    validation_fraction: ValidationFraction = None

    def given(self) -> list[str]:
        """The flags set on the command line (``["--train-file", ...]``), e.g. to refuse
        them where they do not apply."""
        return [f"--{f.name.replace('_', '-')}" for f in fields(DataFileOptions)
                if getattr(self, f.name) not in (None, [], ())]

    @property
    def own_data(self) -> bool:
        """Whether the data are the user's (a file or a data set), not a named task."""
        return self.train_file is not None or self.dataset is not None

    def data_fields(self, task: str | None) -> dict[str, Any]:
        """The ``data`` config fields these options set, ``task`` included (``custom``
        with a file or a data set; None: keep the YAML's or the default).

        Raises:
            typer.BadParameter: ``--task`` with ``--train-file``/``--dataset``, or a
                malformed ``--split-names``.
        """
        if self.own_data and task is not None and task.strip().lower() != "custom":
            flag = "--train-file" if self.train_file is not None else "--dataset"
            raise typer.BadParameter(f"--task {task} and {flag} exclude each other: your data are the task",
                                     param_hint="--task")
        return {
            "task": "custom" if self.own_data else task,
            "train_file": _text(self.train_file), "validation_file": _text(self.validation_file),
            "test_file": _text(self.test_file), "dataset": self.dataset, "dataset_config": self.dataset_config,
            "split_names": parse_split_names(self.split_names),
            "text_columns": list(self.text_column) if self.text_column else None,
            "label_column": self.label_column,
            "task_type": self.task_type.strip().lower().replace("-", "_") if self.task_type else None,
            "metric": self.metric, "validation_fraction": self.validation_fraction,
        }


def _text(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def parse_split_names(text: str | None) -> dict[str, str] | None:
    """``"train=train,validation=dev"`` → ``{"train": "train", "validation": "dev"}``.

    Raises:
        typer.BadParameter: an item without ``=``, or a role other than train,
            validation, test.
    """
    if text is None:
        return None
    roles = ("train", "validation", "test")
    out: dict[str, str] = {}
    for item in (i.strip() for i in text.split(",") if i.strip()):
        role, sep, split = (part.strip() for part in item.partition("="))
        if not sep or not split or role not in roles:
            raise typer.BadParameter(f"--split-names expects role=split with roles {', '.join(roles)}, "
                                     f"e.g. train=train,validation=dev; got {item!r}", param_hint="--split-names")
        out[role] = split
    return out or None


def with_options(options: type, keyword: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator that gives a command every field of the dataclass ``options`` as a
    flag, after its own options, and hands them to it as one ``keyword`` argument.

    The decorated function declares its own options and a keyword-only ``keyword``; the
    command has both (what Typer reads from its signature) and calls
    ``func(..., keyword=options(...))``.
    """
    hints = get_type_hints(options, include_extras=True)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(func, eval_str=True)
        shared = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
                  for f in fields(options)]
        params = [p for p in own.parameters.values() if p.name != keyword] + shared

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            bundle = options(**{f.name: kwargs.pop(f.name) for f in fields(options)})
            return func(**kwargs, **{keyword: bundle})

        command.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


#: Gives a command the own-data options as ``files: DataFileOptions`` (compress, finetune, sparsify).
data_command = with_options(DataFileOptions, "files")


@dataclass(frozen=True)
class ScheduleOptions(DataFileOptions):
    """The command-line options every schedule command shares, declared once (the
    own-data options of :class:`DataFileOptions` first).

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
    select_on: SelectOn = None
    selection_examples: SelectionExamples = None
    objective: Objective = None
    alpha: Alpha = None
    temperature: Temperature = None
    beta: Beta = None
    option: ObjectiveOption = None
    no_teacher_cache: NoCache = False
    cache_dir: CacheDir = None
    cache_memory_mb: CacheMemoryMb = 512
    precision: Precision = None
    low_memory: LowMemory = None
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
            "data": {**self.data_fields(self.task), "data_dir": str(self.data_dir) if self.data_dir else None,
                     "max_train_samples": self.max_train_samples, "max_eval_samples": self.max_eval_samples,
                     "max_length": self.max_length, "importance_samples": self.importance_samples},
            "grid": parse_grid(self.grid),
            "finetune": {**stage, "epochs": self.finetune_epochs if self.finetune_epochs is not None else self.epochs},
            "train": stage,
            "objective": self.objective,
            "objective_options": parse_objective_options(self.alpha, self.temperature, self.beta, self.option),
            "precision": self.precision,
            "select_on": self.select_on,
            "selection_examples": self.selection_examples,
        }

    def build(self, model: type, **specific: Any) -> Any:
        """Defaults ← ``--config`` YAML ← these options ← the command's own ``specific``
        fields, validated as ``model``; ``--patience 0`` disables early stopping.

        Raises:
            ConfigError: an invalid field (every bad one is named).
        """
        base = config_base(self.config, model) if self.config else {}
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
    """Gives a schedule command (distill, takd, maxidisc, compare) every
    :class:`ScheduleOptions` flag as ``opts``, and applies ``--low-memory`` before it runs."""

    @functools.wraps(func)
    def applied(**kwargs: Any) -> Any:
        apply_low_memory(kwargs["opts"].low_memory)
        return func(**kwargs)

    return with_options(ScheduleOptions, "opts")(applied)


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
    base = config_base(config_file, CompressConfig) if config_file else {}
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


def apply_low_memory(enabled: bool | None) -> None:
    """``--low-memory``: fix the allocator's mmap threshold for the rest of the process
    (:func:`minidisc.compute.allocator.use_low_memory_allocator`); say so on stderr where
    the C library is not glibc and nothing changed."""
    from minidisc.compute.allocator import use_low_memory_allocator

    if enabled and not use_low_memory_allocator():
        typer.echo("--low-memory: this C library is not glibc; the allocator is left as it is", err=True)
