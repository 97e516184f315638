"""Load one split of a task as a :class:`datasets.Dataset`, from local files or the hub.

Where the data comes from (the issue's precedence): the ``--data-dir`` value, else the
environment variable ``MINIDISC_DATA_DIR``, else the Hugging Face hub. The data dir is
the *parent* of the GLUE task folders (``DIR/SST-2/train.tsv``, ``DIR/MRPC/dev.tsv``,
...). CoNLL-2003 is looked for in ``DIR/conll2003/`` and, so that one setting serves
both, in the sibling ``DIR/../conll2003/`` (the layout of ``shared/data``: ``glue/`` next
to ``conll2003/``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from minidisc.errors import ConfigError, DataError
from minidisc.tasks.conll import read_conll
from minidisc.tasks.hub import load_from_hub
from minidisc.tasks.layouts import file_layouts
from minidisc.tasks.registry import TOKEN_CLASSIFICATION, TaskSpec, get_task, normalize_split
from minidisc.tasks.tsv import read_glue_tsv

if TYPE_CHECKING:
    import datasets

#: Environment variable naming the data dir when ``--data-dir`` is not given.
DATA_DIR_ENV = "MINIDISC_DATA_DIR"

_CONLL_FILES = {"train": "train.txt", "dev": "dev.txt", "test": "test.txt"}


def _child_dir(parent: Path, name: str) -> Path | None:
    """``parent/name`` if it is a folder, matching the name case-insensitively."""
    exact = parent / name
    if exact.is_dir():
        return exact
    if parent.is_dir():
        for child in sorted(parent.iterdir()):
            if child.is_dir() and child.name.lower() == name.lower():
                return child
    return None


def task_dir(spec: TaskSpec, data_dir: Path) -> Path:
    """The folder holding a task's files under ``data_dir``.

    Raises:
        ConfigError: no such folder; the message names the folder expected and, when
            ``data_dir/glue`` holds it, suggests that path.
    """
    found = _child_dir(data_dir, spec.glue_folder)
    if found is None and spec.task_type == TOKEN_CLASSIFICATION:
        found = _child_dir(data_dir.parent, spec.glue_folder)
    if found is not None:
        return found
    expected = (
        "train.txt, dev.txt, test.txt"
        if spec.task_type == TOKEN_CLASSIFICATION
        else ("train.tsv, dev.tsv, test.tsv in the GLUE TSV layout")
    )
    hint = ""
    if _child_dir(data_dir / "glue", spec.glue_folder) is not None:
        hint = f" (found it under {data_dir / 'glue'}: pass that folder instead)"
    raise ConfigError(
        f"data dir {data_dir} has no folder {spec.glue_folder}/ for task {spec.name}; "
        f"expected {data_dir / spec.glue_folder}/ holding {expected}. The data dir is the "
        f"parent of the task folders (e.g. .../glue){hint}"
    )


def resolve_data_dir(
    cli_value: str | os.PathLike[str] | None, task: str | TaskSpec | None = None
) -> Path | None:
    """Decide where task data comes from.

    Args:
        cli_value: the ``--data-dir`` option (``None`` or ``""`` when not given).
        task: name or spec; if given, also check that the folder holds its sub-folder.

    Returns:
        The data dir (absolute) from ``cli_value``, else from ``MINIDISC_DATA_DIR``; ``None``
        when neither is set, meaning "load from the Hugging Face hub".

    Raises:
        ConfigError: the folder does not exist, or lacks the task's folder.
    """
    source = "--data-dir"
    value = os.fspath(cli_value) if cli_value not in (None, "") else None
    if value is None:
        value = os.environ.get(DATA_DIR_ENV) or None
        source = DATA_DIR_ENV
    if value is None:
        return None
    path = Path(value).expanduser().absolute()
    if not path.is_dir():
        raise ConfigError(
            f"{source}={value!r} is not a folder; point it at the parent of the GLUE task "
            "folders (the folder holding SST-2/, MRPC/, ...)"
        )
    if task is not None:
        task_dir(get_task(task), path)
    return path


def split_features(spec: TaskSpec) -> datasets.Features:
    """The features of a loaded split: ``text_a``/``text_b``/``label`` (``ClassLabel`` with
    the task's names, or float32 for regression)/``idx``; NER ``tokens``/``tags``/``idx``."""
    from datasets import ClassLabel, Features, List, Value

    if spec.task_type == TOKEN_CLASSIFICATION:
        assert spec.label_names is not None
        return Features(
            {
                "tokens": List(Value("string")),
                "tags": List(ClassLabel(names=list(spec.label_names))),
                "idx": Value("int64"),
            }
        )
    label = (
        Value("float32") if spec.is_regression else ClassLabel(names=list(spec.label_names or ()))
    )
    return Features(
        {
            "text_a": Value("string"),
            "text_b": Value("string"),
            "label": label,
            "idx": Value("int64"),
        }
    )


def _read_local(spec: TaskSpec, split: str, folder: Path) -> dict[str, list]:
    if spec.task_type == TOKEN_CLASSIFICATION:
        path = folder / _CONLL_FILES[split]
        if path.exists() and not path.is_file():
            raise DataError(f"{path} is not a file but a folder; put the CoNLL-2003 {split} file there")
        if not path.is_file():
            raise DataError(
                f"{path} not found; task {spec.name} needs {', '.join(_CONLL_FILES.values())} "
                f"in {folder}"
            )
        return read_conll(path, spec.label_names or ())
    layouts = file_layouts(spec, split)
    for layout in layouts:
        path = folder / layout.relpath
        if path.is_file():
            return read_glue_tsv(path, layout, spec)
        if path.exists():  # e.g. a folder named train.tsv: "not found" would mislead
            raise DataError(f"{path} is not a file but a {'folder' if path.is_dir() else 'special file'}; "
                            f"put the {split} split of {spec.name} there as a tab-separated text file")
    tried = " or ".join(str(folder / layout.relpath) for layout in layouts)
    present = sorted(p.name for p in folder.iterdir())
    raise DataError(
        f"no file for split {split!r} of task {spec.name}: {tried} not found "
        f"(the folder holds {present})"
    )


def subsample_indices(n: int, max_samples: int | None, seed: int) -> np.ndarray | None:
    """Rows kept when subsampling ``n`` rows to ``max_samples``: a seeded uniform sample
    without replacement, returned sorted so the file order is kept.

    Returns:
        ``None`` when nothing needs to be dropped (``max_samples`` is ``None`` or >= ``n``).

    Raises:
        ConfigError: ``max_samples`` < 1.
    """
    if max_samples is None:
        return None
    if max_samples < 1:
        raise ConfigError(f"max samples must be at least 1 (got {max_samples})")
    if max_samples >= n:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_samples, replace=False))


def load_split(
    task: str | TaskSpec,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
) -> datasets.Dataset:
    """Load one split of a task.

    Args:
        task: task name or spec (see :data:`minidisc.tasks.TASK_NAMES`).
        split: ``train``, ``dev`` (alias ``validation``; MNLI: matched for task ``mnli``,
            mismatched for ``mnli-mm``), ``test`` (GLUE test, unlabelled) or
            ``test_labeled`` (where such a file exists).
        data_dir: parent of the task folders; ``None`` -> ``MINIDISC_DATA_DIR`` if set,
            else the Hugging Face hub (see :func:`resolve_data_dir`).
        max_samples: keep at most this many rows (``--max-train-samples`` /
            ``--max-eval-samples``): a uniform random sample without replacement,
            determined by ``seed`` alone, kept in file order.
        seed: seed of the subsample.

    Returns:
        GLUE: columns ``text_a`` (str), ``text_b`` (str, ``None`` for single-sentence
        tasks), ``label`` (class id as int — ``ClassLabel`` feature with the task's
        names — or float32 score for STS-B; ``-1`` on unlabelled test files) and ``idx``
        (row number in the file / hub index, kept through subsampling).
        NER: ``tokens`` (list[str]), ``tags`` (list[int], ids into ``label_names``), ``idx``.

    Raises:
        ConfigError: unknown task/split, missing data dir or task folder, hub unreachable.
        DataError: missing split file or malformed content (file and line named).
    """
    from datasets import Dataset

    spec = get_task(task)
    canonical = normalize_split(spec, split)
    if spec.task_type == TOKEN_CLASSIFICATION and canonical == "test_labeled":
        canonical = "test"  # CoNLL-2003 test is labelled
    folder_root = resolve_data_dir(data_dir)
    features = split_features(spec)
    if folder_root is None:
        dataset = load_from_hub(spec, canonical, features)
    else:
        columns = _read_local(spec, canonical, task_dir(spec, folder_root))
        dataset = Dataset.from_dict(columns, features=features)
    keep = subsample_indices(len(dataset), max_samples, seed)
    return dataset if keep is None else dataset.select(keep)
