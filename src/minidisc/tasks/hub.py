"""Tasks from the Hugging Face hub, mapped to the same columns as the local files.

Used when neither ``--data-dir`` nor ``MINIDISC_DATA_DIR`` is set. GLUE comes from
``nyu-mll/glue`` (columns per config below, ``label`` already a class id, ``-1`` on test
splits), CoNLL-2003 from ``eriktks/conll2003`` (``tokens``, ``ner_tags``). The column
mapping is the pure function :func:`map_hub_batch` so it can be tested without network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from minidisc.errors import ConfigError, DataError
from minidisc.tasks.registry import TOKEN_CLASSIFICATION, TaskSpec

if TYPE_CHECKING:
    import datasets

#: Text columns of each ``nyu-mll/glue`` config (task name -> columns).
HUB_TEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    "cola": ("sentence",),
    "sst2": ("sentence",),
    "mrpc": ("sentence1", "sentence2"),
    "stsb": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "mnli": ("premise", "hypothesis"),
    "mnli-mm": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}


def hub_split(spec: TaskSpec, split: str) -> str:
    """Hub split name for a canonical split (``dev`` -> ``validation``; MNLI's matched or
    mismatched variant by task).

    Raises:
        ConfigError: ``test_labeled`` (not on the hub).
    """
    if split == "test_labeled":
        raise ConfigError(
            f"{spec.hub_name} has no labelled test split for {spec.name}; put the "
            "test_labeled.tsv file in a local GLUE folder and pass --data-dir"
        )
    name = {"train": "train", "dev": "validation", "test": "test"}[split]
    if spec.glue_folder == "MNLI" and split != "train":
        name += "_mismatched" if spec.name == "mnli-mm" else "_matched"
    return name


def _column(batch: Mapping[str, Sequence[Any]], name: str, source: str) -> list[Any]:
    if name not in batch:
        raise DataError(f"{source}: missing column {name!r}; the dataset has {sorted(batch)}")
    return list(batch[name])


def map_hub_batch(spec: TaskSpec, batch: Mapping[str, Sequence[Any]]) -> dict[str, list]:
    """Map a batch of hub rows (column name -> values) to minidisc's columns.

    Args:
        spec: the task.
        batch: columns in the hub layout, e.g. ``{"sentence": [...], "label": [...],
            "idx": [...]}`` for ``nyu-mll/glue`` sst2.

    Returns:
        GLUE: ``text_a``, ``text_b`` (``None`` for single-sentence tasks), ``label``
        (class id, float score for STS-B, -1 unlabelled), ``idx``.
        NER: ``tokens``, ``tags``, ``idx``.

    Raises:
        DataError: a column is missing or a label is out of range.
    """
    source = f"hub dataset {spec.hub_name}" + (f" ({spec.hub_config})" if spec.hub_config else "")
    if spec.task_type == TOKEN_CLASSIFICATION:
        tokens = _column(batch, "tokens", source)
        tags = [list(map(int, row)) for row in _column(batch, "ner_tags", source)]
        for row in tags:
            if any(not 0 <= tag < spec.num_labels for tag in row):
                raise DataError(f"{source}: NER tag id outside 0..{spec.num_labels - 1}: {row}")
        idx = list(batch["id"]) if "id" in batch else list(range(len(tokens)))
        return {"tokens": [list(t) for t in tokens], "tags": tags, "idx": [int(i) for i in idx]}
    text_cols = HUB_TEXT_COLUMNS[spec.name]
    text_a = _column(batch, text_cols[0], source)
    text_b = _column(batch, text_cols[1], source) if len(text_cols) == 2 else [None] * len(text_a)
    labels: list[int | float] = []
    for value in _column(batch, "label", source):
        if spec.is_regression:
            labels.append(float(value))
            if not math.isfinite(labels[-1]):
                raise DataError(f"{source}: label {value!r} is not a finite number")
        else:
            if not -1 <= int(value) < spec.num_labels:
                raise DataError(f"{source}: label {value!r} is outside -1..{spec.num_labels - 1}")
            labels.append(int(value))
    idx = list(batch["idx"]) if "idx" in batch else list(range(len(text_a)))
    return {"text_a": text_a, "text_b": text_b, "label": labels, "idx": [int(i) for i in idx]}


def load_from_hub(spec: TaskSpec, split: str, features: datasets.Features) -> datasets.Dataset:
    """Download (or read from the local HF cache) one split and map its columns.

    Args:
        spec: the task.
        split: canonical split name.
        features: the output schema (from :mod:`minidisc.tasks.loading`).

    Raises:
        ConfigError: the hub cannot be reached or the dataset cannot be loaded; the
            message says to pass ``--data-dir`` or set ``MINIDISC_DATA_DIR``.
    """
    import datasets

    name = hub_split(spec, split)
    try:
        raw = datasets.load_dataset(spec.hub_name, spec.hub_config, split=name)
    except Exception as exc:  # network, auth, missing dataset: all need the same fix
        raise ConfigError(
            f"could not load {spec.hub_name}"
            + (f" config {spec.hub_config}" if spec.hub_config else "")
            + f" split {name} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            f"Pass --data-dir DIR or set MINIDISC_DATA_DIR to a folder holding "
            f"{spec.glue_folder}/ in the GLUE TSV layout"
        ) from exc
    return raw.map(
        lambda batch: map_hub_batch(spec, batch),
        batched=True,
        remove_columns=raw.column_names,
        features=features,
    )
