"""A task built from the user's own labelled files (``--train-file`` ...): the custom
:class:`~minidisc.tasks.registry.TaskSpec` and its train/dev splits, in the same columns
as :func:`~minidisc.tasks.loading.load_split` returns, so every later stage works unchanged.

Files are read with ``datasets`` (CSV, TSV, JSON lines, JSON, Parquet, by extension); a
data set given in memory from Python stands in a file's place under a key
(:mod:`minidisc.tasks.memory`) and gets the same checks.
Everything is checked before any work: a bad file stops the run with one line naming the
file, the row (1-based, header not counted) and the column.

**Task type.** Inferred from the training labels unless given: strings (or integers with
at most :data:`MAX_INT_CLASSES` distinct values) are classes, floats are scores
(regression). **Labels.** The class names are the distinct training labels, sorted
(numerically for integers), so class ids are the same on every run; a validation label
never seen in training is an error. **Validation.** Without a validation file, a seeded
split of the training file, stratified by class, is held out (``validation_fraction``).
"""

from __future__ import annotations

import difflib
import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from minidisc.errors import ConfigError, DataError
from minidisc.tasks import memory
from minidisc.tasks.registry import CLASSIFICATION, REGRESSION, TOKEN_CLASSIFICATION, TaskSpec

if TYPE_CHECKING:
    import datasets

    from minidisc.config import DataConfig

#: The task name of data given as files.
CUSTOM_TASK = "custom"

#: File extensions read, and the ``datasets`` builder (with its options) for each.
FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("csv", {"na_filter": False}),
    ".tsv": ("csv", {"na_filter": False, "delimiter": "\t"}),
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".parquet": ("parquet", {}),
}

#: Integer labels with more distinct values than this are ambiguous (classes or scores?).
MAX_INT_CLASSES = 20

#: ``--metric`` names, the task type each suits, and the official metrics whose mean is ``main``.
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "accuracy": (CLASSIFICATION, ("accuracy",)),
    "macro_f1": (CLASSIFICATION, ("macro_f1",)),
    "mcc": (CLASSIFICATION, ("mcc",)),
    "pearson_spearman": (REGRESSION, ("pearson", "spearman")),
}
DEFAULT_METRIC = {CLASSIFICATION: "accuracy", REGRESSION: "pearson_spearman"}

DEFAULT_TEXT_COLUMNS = ("text",)
DEFAULT_LABEL_COLUMN = "label"
DEFAULT_VALIDATION_FRACTION = 0.1


def metric_key(name: str) -> str:
    """``"macro-F1"`` → ``"macro_f1"``.

    Raises:
        ConfigError: not one of :data:`METRICS`.
    """
    key = name.strip().lower().replace("-", "_").replace("/", "_")
    key = {"f1_macro": "macro_f1", "matthews": "mcc", "pearson": "pearson_spearman",
           "spearman": "pearson_spearman", "acc": "accuracy"}.get(key, key)
    if key not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; choose one of: accuracy, macro-f1, mcc (classification), "
                          "pearson-spearman (regression: their mean)")
    return key


@dataclass(frozen=True)
class CustomData:
    """A task read from files: its spec, the raw splits and what the run records.

    Attributes:
        spec: ``name`` ``"custom"``, the text columns, sorted class names (``None`` for
            regression), the metric.
        train, dev: columns ``text_a``, ``text_b`` (``None`` for single texts), ``label``
            (class id, or float score), ``idx`` (0-based row of the file it came from).
        record: what reports and the run manifest hold (files, columns, labels, metric,
            where the validation rows came from).
    """

    spec: TaskSpec
    train: datasets.Dataset
    dev: datasets.Dataset
    record: dict[str, Any]


def _fmt(path: str) -> tuple[str, dict[str, Any]]:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: unknown file type {suffix or '(no extension)'!r}; use one of "
                        f"{', '.join(FORMATS)} (CSV, TSV, JSON lines, JSON, Parquet)")
    return FORMATS[suffix]


def _check_utf8(path: str, builder: str, options: dict[str, Any]) -> None:
    """Text files must be UTF-8: name the row and column of the first bad byte."""
    if builder == "parquet":
        return
    data = Path(path).read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        where = f"line {line}"
        if builder == "csv" and line > 1:
            sep = options.get("delimiter", ",").encode()
            header = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip().split(sep.decode())
            column = data[data.rfind(b"\n", 0, err.start) + 1 : err.start].count(sep)
            name = header[column] if column < len(header) else str(column)
            where = f"row {line - 1}, column {name!r}"
        raise DataError(f"{path}, {where}: not UTF-8 text (byte 0x{data[err.start]:02x}); "
                        "save the file as UTF-8") from None


def read_table(path: str) -> datasets.Dataset:
    """Read one data file with ``datasets`` (format by extension).

    Raises:
        DataError: unknown extension, missing file, not UTF-8, unreadable, or no rows.
    """
    from datasets import load_dataset
    from datasets.exceptions import DatasetsError
    from datasets.utils.logging import disable_progress_bar

    builder, options = _fmt(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    _check_utf8(path, builder, options)
    disable_progress_bar()
    try:
        table = load_dataset(builder, data_files={"train": os.path.abspath(path)}, split="train", **options)
    except (DatasetsError, ValueError, OSError) as err:  # datasets wraps the parsers' errors in its own
        cause = err.__cause__ or err
        raise DataError(f"{path}: cannot read it as {builder.upper()}: {str(cause).splitlines()[0][:200]}") from None
    if len(table) == 0:
        raise DataError(f"{path}: no rows (a header alone is not a data set)")
    return table


def _check_column(path: str, table: datasets.Dataset, column: str, option: str) -> None:
    if column in table.column_names:
        return
    close = difflib.get_close_matches(column, table.column_names, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DataError(f"{path}, column {column!r}: no such column{hint}; the file has "
                    f"{', '.join(table.column_names)}; set {option}")


def _texts(path: str, table: datasets.Dataset, column: str) -> list[str]:
    out = []
    for row, value in enumerate(table[column], start=1):
        if isinstance(value, (list, dict)):
            raise DataError(f"{path}, row {row}, column {column!r}: a {type(value).__name__}, not a text "
                            "(token tags from files are not supported yet)")
        text = "" if value is None else str(value)
        if not text.strip():
            raise DataError(f"{path}, row {row}, column {column!r}: empty text; remove the row or fill it in")
        out.append(text)
    return out


def _kind(value: Any) -> str:
    if isinstance(value, (bool, str)):
        return "text"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    return type(value).__name__


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _raw_labels(path: str, table: datasets.Dataset, column: str, builder: str) -> tuple[list[Any], str]:
    """The label of every row and their kind (``text``, ``int`` or ``float``).

    Raises:
        DataError: an empty label, a value that is no label (a list), or mixed kinds.
    """
    values = table[column]
    kinds = []
    for row, value in enumerate(values, start=1):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(f"{path}, row {row}, column {column!r}: empty label")
        if isinstance(value, float) and not math.isfinite(value):
            raise DataError(f"{path}, row {row}, column {column!r}: label {value} is not a finite number")
        kind = _kind(value)
        if kind not in ("text", "int", "float"):
            raise DataError(f"{path}, row {row}, column {column!r}: a {kind} is not a label "
                            "(token tags from files are not supported yet)")
        kinds.append(kind)
    if builder == "csv" and kinds and kinds[0] == "text":
        # CSV has no types: a text column whose values are partly numbers mixes the two
        kinds = ["float" if _looks_numeric(str(v)) else "text" for v in values]
    numeric = {"int", "float"}
    first = kinds[0]
    for row, kind in enumerate(kinds, start=1):
        if (kind in numeric) != (first in numeric):
            raise DataError(f"{path}, row {row}, column {column!r}: label {values[row - 1]!r} is a "
                            f"{'number' if kind in numeric else 'text'}, row 1's is a "
                            f"{'number' if first in numeric else 'text'}; use one type for every label")
    if first in numeric:
        return values, ("float" if "float" in kinds else "int")
    return [str(v) for v in values], "text"


def _task_type(path: str, column: str, labels: list[Any], kind: str, given: str | None) -> str:
    if given is not None:
        if given == TOKEN_CLASSIFICATION:
            raise ConfigError("task type token_classification is not supported from files yet; "
                              "use classification or regression")
        if given == REGRESSION and kind == "text":
            raise DataError(f"{path}, row 1, column {column!r}: regression needs numbers, the labels are texts; "
                            "drop --task-type regression")
        return given
    if kind == "float":
        return REGRESSION
    if kind == "int" and len(set(labels)) > MAX_INT_CLASSES:
        raise DataError(f"{path}, column {column!r}: {len(set(labels))} distinct integer labels: classes or scores? "
                        "set --task-type classification or --task-type regression")
    return CLASSIFICATION


def _names(values: list[Any], kind: str) -> list[str]:
    distinct = sorted(set(values), key=(lambda v: (float(v), str(v))) if kind != "text" else str)
    return [_name(v) for v in distinct]


def _name(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class _Read:
    """One file's texts and labels, checked."""

    path: str
    texts: tuple[list[str], ...]
    labels: list[Any]
    kind: str


def _read(path: str, text_columns: tuple[str, ...], label_column: str) -> _Read:
    if memory.is_key(path):  # a DataFrame or Dataset given from Python: the same checks as a file
        builder, table = "memory", memory.table(path)
    else:
        builder, table = _fmt(path)[0], read_table(path)
    for column in text_columns:
        _check_column(path, table, column, "--text-column")
    _check_column(path, table, label_column, "--label-column")
    texts = tuple(_texts(path, table, c) for c in text_columns)
    labels, kind = _raw_labels(path, table, label_column, builder)
    return _Read(path, texts, labels, kind)


def _encode(read: _Read, spec: TaskSpec, label_column: str, train_path: str) -> dict[str, list]:
    """Columns ``text_a``/``text_b``/``label``/``idx`` of one file.

    Raises:
        DataError: a label never seen in training; a non-number for regression.
    """
    if spec.is_regression:
        if read.kind == "text":
            raise DataError(f"{read.path}, row 1, column {label_column!r}: regression needs numbers, "
                            f"got {read.labels[0]!r}")
        labels = [float(v) for v in read.labels]
    else:
        ids = {name: i for i, name in enumerate(spec.label_names or ())}
        labels = []
        for row, value in enumerate(read.labels, start=1):
            name = _name(value)
            if name not in ids:
                shown = ", ".join(list(ids)[:10]) + (" ..." if len(ids) > 10 else "")
                raise DataError(f"{read.path}, row {row}, column {label_column!r}: label {name!r} never occurs in "
                                f"{train_path} (its labels: {shown})")
            labels.append(ids[name])
    n = len(labels)
    return {"text_a": read.texts[0], "text_b": read.texts[1] if len(read.texts) > 1 else [None] * n,
            "label": labels, "idx": list(range(n))}


def stratified_split(labels: list[Any], fraction: float, seed: int, by_class: bool) -> tuple[np.ndarray, np.ndarray]:
    """Seeded hold-out of about ``fraction`` of the rows, per class when ``by_class``.

    Each class gives ``round(fraction · n_c)`` rows (at least one row stays in training,
    so a class of one is never held out); regression draws from all rows at once.

    Returns:
        Sorted row indices of (train, validation).
    """
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    groups = [np.flatnonzero(labels_arr == c) for c in np.unique(labels_arr)] if by_class else [np.arange(len(labels))]
    held = []
    for rows in groups:
        take = min(round(fraction * len(rows)), len(rows) - 1)
        held.extend(rng.permutation(rows)[:take].tolist())
    dev = np.sort(np.asarray(held, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(labels)), dev)
    return train, dev


def _settings(cfg: DataConfig) -> tuple[tuple[str, ...], str, float]:
    text_columns = tuple(cfg.text_columns or DEFAULT_TEXT_COLUMNS)
    label_column = cfg.label_column or DEFAULT_LABEL_COLUMN
    fraction = cfg.validation_fraction if cfg.validation_fraction is not None else DEFAULT_VALIDATION_FRACTION
    return text_columns, label_column, fraction


def load_custom(cfg: DataConfig, seed: int) -> CustomData:
    """Read, check and convert the files of ``cfg`` (``cfg.train_file`` set); cached while
    the files are unchanged, so the check before a run and the run itself read them once.

    Raises:
        DataError: a bad file, row or column (named), a single class, a validation split
            left empty.
        ConfigError: a metric that does not suit the task type.
    """
    stamps = tuple(_stamp(p) for p in (cfg.train_file, cfg.validation_file) if p)
    return _load_custom(cfg, seed, stamps)


def _stamp(path: str) -> tuple[float, int] | None:
    """Modification time and size of a file (None: missing), so an edited file is read again."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime, info.st_size


@functools.lru_cache(maxsize=4)
def _load_custom(cfg: DataConfig, seed: int, stamps: tuple[Any, ...]) -> CustomData:
    from datasets import Dataset

    from minidisc.tasks.loading import split_features, subsample_indices

    del stamps  # part of the cache key only
    assert cfg.train_file is not None
    text_columns, label_column, fraction = _settings(cfg)
    train_read = _read(cfg.train_file, text_columns, label_column)
    task_type = _task_type(cfg.train_file, label_column, train_read.labels, train_read.kind, cfg.task_type)
    regression = task_type == REGRESSION
    names = None if regression else _names(train_read.labels, train_read.kind)
    if names is not None and len(names) < 2:
        raise DataError(f"{cfg.train_file}, column {label_column!r}: a single class ({names[0]!r}); "
                        "classification needs at least two labels")
    metric = metric_key(cfg.metric) if cfg.metric else DEFAULT_METRIC[task_type]
    if METRICS[metric][0] != task_type:
        raise ConfigError(f"metric {metric} does not suit {task_type}; choose "
                          f"{' or '.join(m for m, (t, _) in METRICS.items() if t == task_type)}")
    spec = custom_spec(text_columns, names, METRICS[metric][1])
    train_cols = _encode(train_read, spec, label_column, cfg.train_file)
    if cfg.validation_file:
        dev_cols = _encode(_read(cfg.validation_file, text_columns, label_column), spec, label_column, cfg.train_file)
        source = cfg.validation_file if memory.is_key(cfg.validation_file) else f"file {cfg.validation_file}"
    else:
        keep, held = stratified_split(train_cols["label"], fraction, seed, by_class=not regression)
        if len(held) == 0:
            raise DataError(f"{cfg.train_file}: {len(keep)} rows leave no validation rows at validation fraction "
                            f"{fraction:g}; raise --validation-fraction or pass --validation-file")
        dev_cols = {k: [v[i] for i in held] for k, v in train_cols.items()}
        train_cols = {k: [v[i] for i in keep] for k, v in train_cols.items()}
        source = (f"{100 * fraction:g} % of {cfg.train_file} held out ({'stratified by label, ' if not regression else ''}"
                  f"seed {seed})")
    features = split_features(spec)
    train, dev = Dataset.from_dict(train_cols, features=features), Dataset.from_dict(dev_cols, features=features)
    picks = [subsample_indices(len(d), m, seed) for d, m in ((train, cfg.max_train_samples), (dev, cfg.max_eval_samples))]
    train, dev = (d if keep is None else d.select(keep) for d, keep in zip((train, dev), picks))
    record = {"train_file": cfg.train_file, "validation": source, "text_columns": list(text_columns),
              "label_column": label_column, "task_type": task_type, "metric": metric,
              "labels": list(names) if names is not None else None}
    return CustomData(spec, train, dev, record)


def custom_spec(text_columns: tuple[str, ...], label_names: list[str] | None, metrics: tuple[str, ...]) -> TaskSpec:
    """The :class:`TaskSpec` of files with these text columns, classes (``None``:
    regression) and official metrics."""
    regression = label_names is None
    return TaskSpec(
        name=CUSTOM_TASK, glue_folder="", text_columns=tuple(text_columns),
        label_names=None if regression else tuple(label_names), num_labels=1 if regression else len(label_names),
        is_regression=regression, task_type=REGRESSION if regression else CLASSIFICATION,
        metric_names=metrics, hub_name="", hub_config=None,
    )


def spec_from_record(record: dict[str, Any]) -> TaskSpec:
    """The spec of a finished run, from the ``custom`` record its data sizes hold."""
    metric = record.get("metric") or DEFAULT_METRIC[record["task_type"]]
    return custom_spec(tuple(record["text_columns"]), record.get("labels"), METRICS[metric][1])


def describe_record(record: dict[str, Any]) -> str:
    """One line for reports: where validation came from, the labels, the metric."""
    labels = record.get("labels")
    if labels:
        shown = ", ".join(labels[:10]) + (f", ... ({len(labels)} in all)" if len(labels) > 10 else "")
        kind = f"{len(labels)} classes ({shown}; ids in this order)"
    else:
        kind = "regression"
    return (f"text column(s) {', '.join(record['text_columns'])}, label column {record['label_column']}: {kind}; "
            f"main metric {record['metric']}; validation: {record['validation']}")


def check_custom_data(cfg: DataConfig, seed: int, batch_size: int) -> CustomData | None:
    """Read and check the files of ``cfg`` before anything is written (``None`` for a
    named task: its data are checked when loaded).

    Raises:
        DataError: every problem :func:`load_custom` finds, or fewer training rows than
            one batch of ``batch_size``.
    """
    if cfg.train_file is None:
        return None
    data = load_custom(cfg, seed)
    if len(data.train) < batch_size:
        raise DataError(f"{cfg.train_file}: {len(data.train)} training rows, fewer than one batch of {batch_size}; "
                        "add rows or lower --batch-size")
    return data
