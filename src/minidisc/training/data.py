"""The task data every trainer consumes: the tokenized splits of a task
(:class:`TaskData`, read once by every schedule and command), and the batch collation
and metric functions the Trainer needs for the task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from minidisc.tasks import compute_metrics, get_task, load_split, resolve_data_dir, tokenize_split
from minidisc.tasks.demo_data import describe_packaged, is_packaged_demo_dir

if TYPE_CHECKING:
    from pathlib import Path

    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from minidisc.config import DataConfig
    from minidisc.tasks import TaskSpec


@dataclass
class TaskData:
    """Tokenized train/dev splits of one task (labels included) and their sizes.

    ``importance`` is the training subset whose label-loss gradients score heads and
    neurons (the dev set stays the selection set).
    """

    task: TaskSpec
    tokenizer: PreTrainedTokenizerBase
    train: Dataset
    dev: Dataset
    importance: Dataset
    sizes: dict[str, Any]


def prepare_task_data(cfg: DataConfig, tokenizer: PreTrainedTokenizerBase, seed: int) -> TaskData:
    """Load, subsample (seeded) and tokenize the task's train and dev splits.

    Raises:
        DataError / ConfigError: from :mod:`minidisc.tasks` on bad data or names.
    """
    task = get_task(cfg.task)
    data_dir = resolve_data_dir(cfg.data_dir)
    dev_split = task.dev_split if hasattr(task, "dev_split") else "dev"
    train_raw = load_split(task, "train", data_dir=data_dir, max_samples=cfg.max_train_samples, seed=seed)
    dev_raw = load_split(task, dev_split, data_dir=data_dir, max_samples=cfg.max_eval_samples, seed=seed)
    train = tokenize_split(train_raw, tokenizer, task, max_length=cfg.max_length)
    dev = tokenize_split(dev_raw, tokenizer, task, max_length=cfg.max_length)
    n_imp = min(cfg.importance_samples, len(train))
    importance = train.shuffle(seed=seed).select(range(n_imp))
    sizes = {
        "train_examples": len(train),
        "dev_examples": len(dev),
        "importance_examples": n_imp,
        "subsampled": cfg.max_train_samples is not None or cfg.max_eval_samples is not None,
        "data_source": data_source(task, data_dir),
    }
    return TaskData(task, tokenizer, train, dev, importance, sizes)


def data_source(task: TaskSpec, data_dir: Path | None) -> str:
    """Where the task's examples came from, for reports: the subset packaged for the
    demo (named as such), the local folder, else the task's own hub dataset
    (``hub:nyu-mll/glue (sst2)``, ``hub:eriktks/conll2003``)."""
    if is_packaged_demo_dir(data_dir):
        return describe_packaged()
    if data_dir is not None:
        return str(data_dir)
    return f"hub:{task.hub_name}" + (f" ({task.hub_config})" if task.hub_config else "")


def collator_for(task: TaskSpec, tokenizer: PreTrainedTokenizerBase) -> Any:
    """Dynamic padding to the longest sequence of each batch (labels padded with -100
    for token classification)."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    if task.task_type == "token_classification":
        return DataCollatorForTokenClassification(tokenizer)
    return DataCollatorWithPadding(tokenizer)


def metrics_fn(task: TaskSpec) -> Callable[[Any], dict[str, float]]:
    """``compute_metrics`` for the Trainer: the task's official metrics plus ``main``."""
    def compute(prediction: Any) -> dict[str, float]:
        logits = prediction.predictions
        if isinstance(logits, tuple):  # extra outputs (hidden states) come after the logits
            logits = logits[0]
        return compute_metrics(task, logits, prediction.label_ids)

    return compute
