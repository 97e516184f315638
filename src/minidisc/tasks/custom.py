"""A task built from the user's own labelled data (``--train-file`` ... or ``--dataset``):
the custom :class:`~minidisc.tasks.registry.TaskSpec` and its train/dev(/test) splits, in
the same columns as :func:`~minidisc.tasks.loading.load_split` returns, so every later
stage works unchanged.

Files are read with ``datasets`` (CSV, TSV, JSON lines, JSON, Parquet, by extension); a
data set given in memory from Python stands in a file's place under a key
(:mod:`minidisc.tasks.memory`), and ``--dataset`` names one that ``datasets`` loads (a hub
id, a folder of data files, or a folder written by ``Dataset(Dict).save_to_disk``, read
with ``load_from_disk``); each split gets a file's checks.
Everything is checked before any work: a bad file stops the run with one line naming the
file, the row (1-based, header not counted) and the column.

**Task type.** Inferred from the training labels unless given: strings (or integers with
at most :data:`MAX_INT_CLASSES` distinct values) are classes, floats are scores
(regression), lists are the tags of token classification (the text column then holds
the token lists, one tag per token; entity F1 with ``seqeval`` is the default metric). **Labels.** The class names are the distinct training labels, sorted
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
    "entity_f1": (TOKEN_CLASSIFICATION, ("f1",)),
}
DEFAULT_METRIC = {CLASSIFICATION: "accuracy", REGRESSION: "pearson_spearman", TOKEN_CLASSIFICATION: "entity_f1"}

DEFAULT_TEXT_COLUMNS = ("text",)
DEFAULT_LABEL_COLUMN = "label"
#: The default columns of token classification: token lists and tag lists.
DEFAULT_TOKEN_COLUMNS = ("tokens",)
DEFAULT_TAG_COLUMN = "tags"
DEFAULT_VALIDATION_FRACTION = 0.1
#: ``--dataset`` split names read as validation when ``--split-names`` does not say, in order.
VALIDATION_SPLITS = ("validation", "dev", "valid", "val")


def metric_key(name: str) -> str:
    """``"macro-F1"`` → ``"macro_f1"``.

    Raises:
        ConfigError: not one of :data:`METRICS`.
    """
    key = name.strip().lower().replace("-", "_").replace("/", "_")
    key = {"f1_macro": "macro_f1", "matthews": "mcc", "pearson": "pearson_spearman",
           "spearman": "pearson_spearman", "acc": "accuracy", "seqeval": "entity_f1"}.get(key, key)
    if key not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; choose one of: accuracy, macro-f1, mcc (classification), "
                          "pearson-spearman (regression: their mean), entity-f1 (token classification)")
    return key


@dataclass(frozen=True)
class CustomData:
    """A task read from files: its spec, the raw splits and what the run records.

    Attributes:
        spec: ``name`` ``"custom"``, the text columns, sorted class (or tag) names
            (``None`` for regression), the metric.
        train, dev, test: columns ``text_a``, ``text_b`` (``None`` for single texts),
            ``label`` (class id, or float score), ``idx`` (0-based row of the file it came
            from); token classification: ``tokens``, ``tags`` (tag ids), ``idx``.
            ``test`` is None without test data.
        record: what reports and the run manifest hold (files, columns, labels, metric,
            where the validation and test rows came from).
    """

    spec: TaskSpec
    train: datasets.Dataset
    dev: datasets.Dataset
    record: dict[str, Any]
    test: datasets.Dataset | None = None


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


@dataclass(frozen=True)
class Source:
    """One split's table and how errors name it: a file path, an in-memory key, or
    ``dataset NAME, split SPLIT``; ``builder`` is the reader (``csv``: untyped cells)."""

    name: str
    table: Any
    builder: str


def open_source(path: str) -> Source:
    """A data file, or the in-memory data set registered under the key ``path``.

    Raises:
        DataError: from :func:`read_table`; ConfigError: an unregistered key.
    """
    if memory.is_key(path):  # a DataFrame or Dataset given from Python: the same checks as a file
        return Source(path, memory.table(path), "memory")
    return Source(path, read_table(path), _fmt(path)[0])


@functools.lru_cache(maxsize=2)
def load_dataset_splits(name: str, config: str | None) -> dict[str, Any]:
    """The splits of ``--dataset NAME`` as ``{split: datasets.Dataset}``.

    The rule: a local folder written by ``Dataset.save_to_disk`` or
    ``DatasetDict.save_to_disk`` (it holds ``dataset_dict.json`` or ``state.json``) is read
    with ``datasets.load_from_disk`` (a single ``Dataset`` is the ``train`` split);
    anything else (a hub id, a folder of data files such as ``train.csv`` and
    ``validation.csv``) with ``datasets.load_dataset(NAME, CONFIG)``.

    Raises:
        DataError: a local path that does not exist, or a data set that cannot be loaded.
        ConfigError: ``--dataset-config`` with a ``save_to_disk`` folder.
    """
    from datasets import load_dataset, load_from_disk
    from datasets.exceptions import DatasetsError
    from datasets.utils.logging import disable_progress_bar

    from minidisc.models import looks_local

    disable_progress_bar()
    folder = Path(name).expanduser()
    if looks_local(name) and not folder.exists():  # never sent to the hub
        raise DataError(f"--dataset {name}: the folder does not exist; check the path, or give a hub id org/name")
    saved = folder.is_dir() and ((folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file())
    if saved and config is not None:
        raise ConfigError(f"--dataset {name} is a save_to_disk folder, which has no configurations: "
                          "drop --dataset-config")
    try:
        loaded = load_from_disk(str(folder)) if saved else load_dataset(name, config)
    except (DatasetsError, OSError, ValueError, FileNotFoundError) as err:  # not found, offline, unreadable
        raise DataError(f"--dataset {name}: cannot load it ({str(err).splitlines()[0][:200]}); give a hub id, "
                        "a local data set folder, or --train-file") from None
    if type(loaded).__name__ == "Dataset":
        return {"train": loaded}
    return dict(loaded)


def _dataset_sources(cfg: DataConfig) -> tuple[Source, Source | None, Source | None]:
    """The train, validation (None: split off train) and test (None: none) splits of
    ``cfg.dataset``: the roles of ``cfg.split_names``; by default ``train``, the first of
    :data:`VALIDATION_SPLITS` present, and no test.

    Raises:
        DataError: a split that is named (or, for train, needed) but absent.
    """
    assert cfg.dataset is not None
    splits = load_dataset_splits(cfg.dataset, cfg.dataset_config)
    roles = dict(cfg.split_names or {})
    what = f"dataset {cfg.dataset}" + (f" ({cfg.dataset_config})" if cfg.dataset_config else "")
    if "validation" not in roles and cfg.validation_fraction is None:
        found = next((s for s in VALIDATION_SPLITS if s in splits), None)
        if found is not None:
            roles["validation"] = found
    out: dict[str, Source | None] = {}
    for role in ("train", "validation", "test"):
        split = roles.get(role, "train" if role == "train" else None)
        if split is None:
            out[role] = None
            continue
        if split not in splits:
            raise DataError(f"{what}: no split {split!r} for {role} (it has {', '.join(splits) or 'none'}); "
                            f"set --split-names {role}=NAME")
        label = f"{what}, split {split}"
        out[role] = Source(label, memory.dataset_table(label, splits[split]), "memory")
    return out["train"], out["validation"], out["test"]  # type: ignore[return-value]


def _check_column(path: str, table: Any, column: str, option: str) -> None:
    if column in table.column_names:
        return
    close = difflib.get_close_matches(column, table.column_names, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DataError(f"{path}, column {column!r}: no such column{hint}; the data have "
                    f"{', '.join(table.column_names)}; set {option}")


def _texts(path: str, table: Any, column: str) -> list[str]:
    out = []
    for row, value in enumerate(table[column], start=1):
        if isinstance(value, (list, dict)):
            raise DataError(f"{path}, row {row}, column {column!r}: a {type(value).__name__}, not a text "
                            "(token lists go with a label column of tag lists: token classification)")
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
    if isinstance(value, (list, tuple, np.ndarray)):
        return "list"
    return type(value).__name__


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _raw_labels(path: str, table: Any, column: str, builder: str) -> tuple[list[Any], str]:
    """The label of every row and their kind (``text``, ``int``, ``float``, or ``list``:
    tag lists).

    Raises:
        DataError: an empty label, a value that is no label, or mixed kinds.
    """
    values = table[column]
    kinds = []
    for row, value in enumerate(values, start=1):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(f"{path}, row {row}, column {column!r}: empty label")
        if isinstance(value, float) and not math.isfinite(value):
            raise DataError(f"{path}, row {row}, column {column!r}: label {value} is not a finite number")
        kind = _kind(value)
        if kind not in ("text", "int", "float", "list"):
            raise DataError(f"{path}, row {row}, column {column!r}: a {kind} is not a label")
        kinds.append(kind)
    if builder == "csv" and kinds and kinds[0] == "text":
        # CSV has no types: a text column whose values are partly numbers mixes the two
        kinds = ["float" if _looks_numeric(str(v)) else "text" for v in values]
    numeric = {"int", "float"}

    def family(kind: str) -> str:
        return {"int": "number", "float": "number", "text": "text", "list": "list of tags"}[kind]

    first = kinds[0]
    for row, kind in enumerate(kinds, start=1):
        if family(kind) != family(first):
            raise DataError(f"{path}, row {row}, column {column!r}: label {values[row - 1]!r} is a "
                            f"{family(kind)}, row 1's is a {family(first)}; use one type for every label")
    if first == "list":
        return [list(v) for v in values], "list"
    if first in numeric:
        return values, ("float" if "float" in kinds else "int")
    return [str(v) for v in values], "text"


def _task_type(path: str, column: str, labels: list[Any], kind: str, given: str | None) -> str:
    if kind == "list":
        if given not in (None, TOKEN_CLASSIFICATION):
            raise DataError(f"{path}, row 1, column {column!r}: a list of tags, which {given} cannot use; "
                            "drop --task-type or set --task-type token-classification")
        return TOKEN_CLASSIFICATION
    if given is not None:
        if given == TOKEN_CLASSIFICATION:
            raise DataError(f"{path}, row 1, column {column!r}: token classification needs a list of tags per "
                            f"row, got {labels[0]!r}; set --label-column to the tag lists")
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
    if kind == "list":  # tags: every tag of every row
        values = [tag for tags in values for tag in tags]
        kind = "text" if any(isinstance(v, str) for v in values) else "int"
    distinct = sorted(set(values), key=(lambda v: (float(v), str(v))) if kind != "text" else str)
    return [_name(v) for v in distinct]


def _name(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class _Read:
    """One split's texts (token lists for tags) and labels, checked."""

    path: str
    texts: tuple[list[Any], ...]
    labels: list[Any]
    kind: str


def _tokens(path: str, table: Any, column: str, tags: list[list[Any]], tag_column: str) -> list[list[str]]:
    """The token list of every row, one token per tag.

    Raises:
        DataError: not a list of texts, an empty list or token, or a length unlike the tags'.
    """
    out = []
    for row, (value, row_tags) in enumerate(zip(table[column], tags), start=1):
        if not isinstance(value, (list, tuple, np.ndarray)):
            raise DataError(f"{path}, row {row}, column {column!r}: {type(value).__name__}, not a list of tokens "
                            f"(column {tag_column!r} holds tag lists: token classification)")
        tokens = [str(t) for t in value]
        if not tokens or any(not t.strip() for t in tokens):
            raise DataError(f"{path}, row {row}, column {column!r}: an empty token list or token")
        if len(tokens) != len(row_tags):
            raise DataError(f"{path}, row {row}, column {tag_column!r}: {len(row_tags)} tags for {len(tokens)} "
                            f"tokens of column {column!r}; give one tag per token")
        out.append(tokens)
    return out


def _read(source: Source, text_columns: tuple[str, ...], label_column: str) -> _Read:
    path, table = source.name, source.table
    for column in text_columns:
        _check_column(path, table, column, "--text-column")
    _check_column(path, table, label_column, "--label-column")
    labels, kind = _raw_labels(path, table, label_column, source.builder)
    if kind == "list":
        if len(text_columns) != 1:
            raise DataError(f"{path}, column {label_column!r}: tag lists go with one token column, "
                            f"got {len(text_columns)} text columns; give --text-column once")
        for row, tags in enumerate(labels, start=1):
            if any(t is None or (isinstance(t, str) and not t.strip()) for t in tags):
                raise DataError(f"{path}, row {row}, column {label_column!r}: an empty tag")
        return _Read(path, (_tokens(path, table, text_columns[0], labels, label_column),), labels, kind)
    return _Read(path, tuple(_texts(path, table, c) for c in text_columns), labels, kind)


def _encode(read: _Read, spec: TaskSpec, label_column: str, train_path: str) -> dict[str, list]:
    """Columns ``text_a``/``text_b``/``label``/``idx`` (tags: ``tokens``/``tags``/``idx``)
    of one split.

    Raises:
        DataError: a label or tag never seen in training; a non-number for regression;
            tags where training had single labels or the reverse.
    """
    if (read.kind == "list") != (spec.task_type == TOKEN_CLASSIFICATION):
        raise DataError(f"{read.path}, row 1, column {label_column!r}: "
                        + ("tag lists, but" if read.kind == "list" else "single labels, but")
                        + f" {train_path} has {'tag lists' if spec.task_type == TOKEN_CLASSIFICATION else 'single labels'}")
    if spec.is_regression:
        if read.kind == "text":
            raise DataError(f"{read.path}, row 1, column {label_column!r}: regression needs numbers, "
                            f"got {read.labels[0]!r}")
        labels: list[Any] = [float(v) for v in read.labels]
    else:
        ids = {name: i for i, name in enumerate(spec.label_names or ())}

        def class_id(row: int, value: Any) -> int:
            name = _name(value)
            if name not in ids:
                shown = ", ".join(list(ids)[:10]) + (" ..." if len(ids) > 10 else "")
                what = "tag" if read.kind == "list" else "label"
                raise DataError(f"{read.path}, row {row}, column {label_column!r}: {what} {name!r} never occurs in "
                                f"{train_path} (its {what}s: {shown})")
            return ids[name]

        if read.kind == "list":
            labels = [[class_id(row, t) for t in tags] for row, tags in enumerate(read.labels, start=1)]
        else:
            labels = [class_id(row, v) for row, v in enumerate(read.labels, start=1)]
    n = len(labels)
    if read.kind == "list":
        return {"tokens": read.texts[0], "tags": labels, "idx": list(range(n))}
    return {"text_a": read.texts[0], "text_b": read.texts[1] if len(read.texts) > 1 else [None] * n,
            "label": labels, "idx": list(range(n))}


def stratified_split(labels: list[Any], fraction: float, seed: int, by_class: bool) -> tuple[np.ndarray, np.ndarray]:
    """Seeded hold-out of about ``fraction`` of the rows, per class when ``by_class``.

    Each class gives ``round(fraction · n_c)`` rows (at least one row stays in training,
    so a class of one is never held out); regression and tag lists draw from all rows
    at once.

    Returns:
        Sorted row indices of (train, validation).
    """
    rng = np.random.default_rng(seed)
    if by_class:
        labels_arr = np.asarray(labels)
        groups = [np.flatnonzero(labels_arr == c) for c in np.unique(labels_arr)]
    else:
        groups = [np.arange(len(labels))]
    held = []
    for rows in groups:
        take = min(round(fraction * len(rows)), len(rows) - 1)
        held.extend(rng.permutation(rows)[:take].tolist())
    dev = np.sort(np.asarray(held, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(labels)), dev)
    return train, dev


def _columns(cfg: DataConfig, train: Source) -> tuple[tuple[str, ...], str]:
    """The text and label columns: as given; else ``text``/``label``, or ``tokens``/``tags``
    for token classification (given, or inferred: the data have ``tokens`` and ``tags``
    and no ``text``)."""
    names = train.table.column_names
    tagged = cfg.task_type == TOKEN_CLASSIFICATION or (
        cfg.task_type is None and "text" not in names and {"tokens", "tags"} <= set(names))
    texts = tuple(cfg.text_columns or (DEFAULT_TOKEN_COLUMNS if tagged else DEFAULT_TEXT_COLUMNS))
    return texts, cfg.label_column or (DEFAULT_TAG_COLUMN if tagged else DEFAULT_LABEL_COLUMN)


def load_custom(cfg: DataConfig, seed: int) -> CustomData:
    """Read, check and convert the data of ``cfg`` (``cfg.train_file`` or ``cfg.dataset``
    set); cached while the files are unchanged, so the check before a run and the run
    itself read them once.

    Raises:
        DataError: a bad file, row or column (named), a single class, a validation split
            left empty.
        ConfigError: a metric that does not suit the task type.
    """
    stamps = tuple(_stamp(p) for p in (cfg.train_file, cfg.validation_file, cfg.test_file) if p)
    return _load_custom(cfg.model_dump_json(), seed, stamps)


def _stamp(path: str) -> tuple[float, int] | None:
    """Modification time and size of a file (None: missing), so an edited file is read again."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime, info.st_size


def _sources(cfg: DataConfig) -> tuple[Source, Source | None, Source | None]:
    if cfg.dataset is not None:
        train, validation, test = _dataset_sources(cfg)
        if cfg.validation_file is not None:
            validation = open_source(cfg.validation_file)
        if cfg.test_file is not None:
            test = open_source(cfg.test_file)
        return train, validation, test
    assert cfg.train_file is not None
    return (open_source(cfg.train_file), open_source(cfg.validation_file) if cfg.validation_file else None,
            open_source(cfg.test_file) if cfg.test_file else None)


def _where(source: Source) -> str:
    return source.name if memory.is_key(source.name) or source.name.startswith("dataset ") else f"file {source.name}"


@functools.lru_cache(maxsize=4)
def _load_custom(key: str, seed: int, stamps: tuple[Any, ...]) -> CustomData:
    from datasets import Dataset

    from minidisc.config import DataConfig
    from minidisc.tasks.loading import split_features, subsample_indices

    del stamps  # part of the cache key only
    cfg = DataConfig.model_validate_json(key)
    fraction = cfg.validation_fraction if cfg.validation_fraction is not None else DEFAULT_VALIDATION_FRACTION
    train_source, validation_source, test_source = _sources(cfg)
    text_columns, label_column = _columns(cfg, train_source)
    train_read = _read(train_source, text_columns, label_column)
    train_path = train_source.name
    task_type = _task_type(train_path, label_column, train_read.labels, train_read.kind, cfg.task_type)
    regression = task_type == REGRESSION
    names = None if regression else _names(train_read.labels, train_read.kind)
    if names is not None and len(names) < 2 and task_type == CLASSIFICATION:
        raise DataError(f"{train_path}, column {label_column!r}: a single class ({names[0]!r}); "
                        "classification needs at least two labels")
    metric = metric_key(cfg.metric) if cfg.metric else DEFAULT_METRIC[task_type]
    if METRICS[metric][0] != task_type:
        raise ConfigError(f"metric {metric} does not suit {task_type}; choose "
                          f"{' or '.join(m for m, (t, _) in METRICS.items() if t == task_type)}")
    spec = custom_spec(text_columns, names, METRICS[metric][1], task_type)
    train_cols = _encode(train_read, spec, label_column, train_path)
    if validation_source is not None:
        dev_cols = _encode(_read(validation_source, text_columns, label_column), spec, label_column, train_path)
        source = _where(validation_source)
    else:
        keep, held = stratified_split(train_cols.get("label") or train_cols["idx"], fraction, seed,
                                      by_class=task_type == CLASSIFICATION)
        if len(held) == 0:
            raise DataError(f"{train_path}: {len(keep)} rows leave no validation rows at validation fraction "
                            f"{fraction:g}; raise --validation-fraction or pass --validation-file")
        dev_cols = {k: [v[i] for i in held] for k, v in train_cols.items()}
        train_cols = {k: [v[i] for i in keep] for k, v in train_cols.items()}
        source = (f"{100 * fraction:g} % of {train_path} held out "
                  f"({'stratified by label, ' if task_type == CLASSIFICATION else ''}seed {seed})")
    features = split_features(spec)
    train, dev = Dataset.from_dict(train_cols, features=features), Dataset.from_dict(dev_cols, features=features)
    picks = [subsample_indices(len(d), m, seed) for d, m in ((train, cfg.max_train_samples), (dev, cfg.max_eval_samples))]
    train, dev = (d if keep is None else d.select(keep) for d, keep in zip((train, dev), picks))
    test = None
    if test_source is not None:  # never subsampled: the held-out numbers are of the whole test data
        test_cols = _encode(_read(test_source, text_columns, label_column), spec, label_column, train_path)
        test = Dataset.from_dict(test_cols, features=features)
    record = {"train_file": train_path, "validation": source, "text_columns": list(text_columns),
              "label_column": label_column, "task_type": task_type, "metric": metric,
              "labels": list(names) if names is not None else None}
    if test_source is not None:
        record["test"] = _where(test_source)
    return CustomData(spec, train, dev, record, test)


def custom_spec(text_columns: tuple[str, ...], label_names: list[str] | None, metrics: tuple[str, ...],
                task_type: str | None = None) -> TaskSpec:
    """The :class:`TaskSpec` of data with these text columns, classes or tags (``None``:
    regression), official metrics and task type (default: classification, or regression
    without names)."""
    regression = label_names is None
    task_type = task_type or (REGRESSION if regression else CLASSIFICATION)
    return TaskSpec(
        name=CUSTOM_TASK, glue_folder="", text_columns=tuple(text_columns),
        label_names=None if regression else tuple(label_names), num_labels=1 if regression else len(label_names),
        is_regression=regression, task_type=task_type,
        metric_names=metrics, hub_name="", hub_config=None,
    )


def spec_from_record(record: dict[str, Any]) -> TaskSpec:
    """The spec of a finished run, from the ``custom`` record its data sizes hold."""
    metric = record.get("metric") or DEFAULT_METRIC[record["task_type"]]
    return custom_spec(tuple(record["text_columns"]), record.get("labels"), METRICS[metric][1], record["task_type"])


def describe_record(record: dict[str, Any]) -> str:
    """One line for reports: where validation (and test) came from, the labels, the metric."""
    labels = record.get("labels")
    if labels:
        shown = ", ".join(labels[:10]) + (f", ... ({len(labels)} in all)" if len(labels) > 10 else "")
        what = "tags" if record["task_type"] == TOKEN_CLASSIFICATION else "classes"
        kind = f"{len(labels)} {what} ({shown}; ids in this order)"
    else:
        kind = "regression"
    test = f"; test: {record['test']}" if record.get("test") else ""
    return (f"text column(s) {', '.join(record['text_columns'])}, label column {record['label_column']}: {kind}; "
            f"main metric {record['metric']}; validation: {record['validation']}{test}")


def check_custom_data(cfg: DataConfig, seed: int, batch_size: int) -> CustomData | None:
    """Read and check the data of ``cfg`` before anything is written (``None`` for a
    named task: its data are checked when loaded).

    Raises:
        DataError: every problem :func:`load_custom` finds, or fewer training rows than
            one batch of ``batch_size``.
    """
    if not cfg.own_data:
        return None
    data = load_custom(cfg, seed)
    if len(data.train) < batch_size:
        raise DataError(f"{data.record['train_file']}: {len(data.train)} training rows, fewer than one batch of "
                        f"{batch_size}; add rows or lower --batch-size")
    return data
