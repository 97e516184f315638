"""Downstream tasks: GLUE and CoNLL-2003 NER data, tokenization, official metrics.

Typical use (the trainers')::

    from minidisc.tasks import get_task, resolve_data_dir, load_split, tokenize_split
    spec = get_task("mrpc")
    data_dir = resolve_data_dir(args.data_dir)           # None -> Hugging Face hub
    train = load_split(spec, "train", data_dir, max_samples=args.max_train_samples)
    train = tokenize_split(train, tokenizer, spec, max_length=128)
    metrics = compute_metrics(spec, logits, labels)      # {"f1", "accuracy", "main"}

Raw-text LM corpora live in :mod:`minidisc.tasks.corpus`. Heavy libraries (datasets,
transformers, sklearn) are imported only when a function needs them.
"""

from __future__ import annotations

from minidisc.tasks.loading import DATA_DIR_ENV, load_split, resolve_data_dir
from minidisc.tasks.metrics import compute_metrics, trainer_metrics
from minidisc.tasks.registry import SPLITS, TASK_NAMES, TaskSpec, get_task
from minidisc.tasks.tokenize import IGNORE_INDEX, data_collator, tokenize_split

__all__ = [
    "DATA_DIR_ENV",
    "IGNORE_INDEX",
    "SPLITS",
    "TASK_NAMES",
    "TaskSpec",
    "compute_metrics",
    "data_collator",
    "get_task",
    "load_split",
    "resolve_data_dir",
    "tokenize_split",
    "trainer_metrics",
]
