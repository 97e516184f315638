"""The task data every trainer consumes: the tokenized splits of a task
(:class:`TaskData`, read once by every schedule and command), and the batch collation
and metric functions the Trainer needs for the task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from minidisc.tasks import compute_metrics, get_task, load_split, resolve_data_dir, tokenize_split
from minidisc.tasks.custom import load_custom
from minidisc.tasks.demo_data import describe_packaged, is_packaged_demo_dir

if TYPE_CHECKING:
    from pathlib import Path

    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from minidisc.config import DataConfig
    from minidisc.tasks import TaskSpec
    from minidisc.tasks.lm import LMTask


@dataclass
class TaskData:
    """Tokenized train/dev splits of one task (labels included) and their sizes.

    ``importance`` is the training subset whose label-loss gradients score heads and
    neurons. ``selection`` is the selection slice held out of the training data
    (:func:`carve_selection_slice`), on which checkpoints and candidates are chosen; None:
    they are chosen on ``dev`` (:attr:`selection_set`). For a causal LM
    (:class:`~minidisc.tasks.lm.LMTask`, built by :mod:`minidisc.schedules.lm_data`) the
    splits are packed blocks: ``train`` the training stream, ``dev`` the selection slice
    held out of the training corpus, ``importance`` the calibration blocks. ``test`` is the
    held-out test data of your own data (``--test-file``), evaluated once at the end and
    never used for selection; None without them.
    """

    task: TaskSpec | LMTask
    tokenizer: PreTrainedTokenizerBase
    train: Dataset
    dev: Dataset
    importance: Dataset
    sizes: dict[str, Any]
    test: Dataset | None = None
    selection: Dataset | None = None

    @property
    def selection_set(self) -> Dataset:
        """The set that selects (checkpoints, candidates): the selection slice, else dev."""
        return self.dev if self.selection is None else self.selection


#: The selection slice's default share of the training examples, and its default cap.
SELECTION_FRACTION, SELECTION_MAX_EXAMPLES = 0.1, 1000


def carve_selection_slice(data: TaskData, examples: int | None, seed: int, importance_samples: int) -> TaskData:
    """Hold a **selection slice** out of ``data.train``: the examples candidates (and the
    teacher's checkpoints) are scored on, never trained on, so ``dev`` stays a clean report
    (the ``--task lm`` path holds its selection slice out of the training text the same way).

    The slice is a seeded draw (``seed``), stratified by class for classification
    (:func:`minidisc.tasks.custom.stratified_split`, a class of one is never held out);
    regression and token tagging draw from all rows. ``importance`` is redrawn from the
    remaining training rows (``importance_samples`` of them).

    Args:
        examples: slice size; None: 10 % of the training examples, at most 1000.

    Returns:
        A copy of ``data`` with ``train`` reduced, ``selection`` set and ``sizes``
        recording ``selection_examples`` and ``train_examples`` after the cut.

    Raises:
        DataError: the slice would be empty, or would leave no training example.
    """
    from minidisc.errors import DataError
    from minidisc.tasks.custom import stratified_split

    n = len(data.train)
    wanted = examples if examples is not None else min(round(SELECTION_FRACTION * n), SELECTION_MAX_EXAMPLES)
    if wanted >= n:
        raise DataError(f"--selection-examples {wanted} would hold out all {n} training examples; lower it, "
                        "or --select-on dev to select on the dev set")
    by_class = data.task.task_type == "classification"
    labels = data.train["labels"] if by_class else [0] * n
    keep, held = stratified_split(labels, wanted / n, seed, by_class=by_class)
    if len(held) == 0:
        raise DataError(f"{n} training examples leave no selection slice; pass --selection-examples, "
                        "or --select-on dev to select on the dev set")
    train = data.train.select(keep)
    importance = train.shuffle(seed=seed).select(range(min(importance_samples, len(train))))
    sizes = {**data.sizes, "train_examples": len(train), "selection_examples": len(held),
             "importance_examples": len(importance)}
    return TaskData(data.task, data.tokenizer, train, data.dev, importance, sizes, test=data.test,
                    selection=data.train.select(held))


def prepare_run_data(
    cfg: DataConfig, tokenizer: PreTrainedTokenizerBase, seed: int, select_on: str = "dev",
    selection_examples: int | None = None,
) -> TaskData:
    """The task data of a run that trains: :func:`prepare_task_data`, then, with
    ``select_on == "slice"``, the selection slice held out (:func:`carve_selection_slice`)
    before anything trains, so the teacher never sees it. Every schedule of a comparison
    calls this with the same values, so all of them train on the same examples.

    Raises:
        DataError: as :func:`prepare_task_data` and :func:`carve_selection_slice`.
    """
    data = prepare_task_data(cfg, tokenizer, seed=seed)
    if select_on == "slice":
        data = carve_selection_slice(data, selection_examples, seed, cfg.importance_samples)
    return data


def prepare_task_data(cfg: DataConfig, tokenizer: PreTrainedTokenizerBase, seed: int) -> TaskData:
    """Load, subsample (seeded) and tokenize the task's train and dev splits: a named
    task's, or those of the user's files (``cfg.train_file``: task ``custom``, whose
    ``sizes["custom"]`` records the label set, columns, metric and validation source).

    Raises:
        DataError / ConfigError: from :mod:`minidisc.tasks` on bad data or names.
    """
    custom = load_custom(cfg, seed) if cfg.own_data else None
    if custom is not None:
        task, data_dir, train_raw, dev_raw = custom.spec, None, custom.train, custom.dev
    else:
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
        "data_source": data_source(task, data_dir) if custom is None else custom.record["train_file"],
    }
    test = None
    if custom is not None:  # the label set and where validation came from, in reports and the manifest
        sizes["custom"] = custom.record
        if custom.test is not None:
            test = tokenize_split(custom.test, tokenizer, task, max_length=cfg.max_length)
            sizes["test_examples"] = len(test)
    return TaskData(task, tokenizer, train, dev, importance, sizes, test)


def data_source(task: TaskSpec, data_dir: Path | None) -> str:
    """Where the task's examples came from, for reports: the subset packaged for the
    demo (named as such), the local folder, else the task's own hub dataset
    (``hub:nyu-mll/glue (sst2)``, ``hub:eriktks/conll2003``)."""
    if is_packaged_demo_dir(data_dir):
        return describe_packaged()
    if data_dir is not None:
        return str(data_dir)
    return f"hub:{task.hub_name}" + (f" ({task.hub_config})" if task.hub_config else "")


def collator_for(task: TaskSpec | LMTask, tokenizer: PreTrainedTokenizerBase) -> Any:
    """Dynamic padding to the longest sequence of each batch (labels padded with -100
    for token classification); causal-LM rows are packed blocks of one length (padding
    already in place, labels -100 there), stacked as they are."""
    from transformers import (
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        default_data_collator,
    )

    if task.task_type == "causal_lm":
        return default_data_collator
    if task.task_type == "token_classification":
        return DataCollatorForTokenClassification(tokenizer)
    return DataCollatorWithPadding(tokenizer)


def metrics_fn(task: TaskSpec | LMTask) -> Callable[[Any], dict[str, float]]:
    """``compute_metrics`` for the Trainer: the task's official metrics plus ``main``
    (causal LM: :func:`lm_metrics_fn`)."""
    if task.task_type == "causal_lm":
        return lm_metrics_fn(task)  # type: ignore[arg-type]

    def compute(prediction: Any) -> dict[str, float]:
        logits = prediction.predictions
        if isinstance(logits, tuple):  # extra outputs (hidden states) come after the logits
            logits = logits[0]
        return compute_metrics(task, logits, prediction.label_ids)

    return compute


def preprocess_fn(task: TaskSpec | LMTask) -> Callable[[Any, Any], Any] | None:
    """``preprocess_logits_for_metrics`` for the Trainer: None (keep the logits) for
    classification tasks; for a causal LM, :func:`next_token_scores` (the ``(B, L, V)``
    logits would not fit in memory across an evaluation set)."""
    return next_token_scores if task.task_type == "causal_lm" else None


def next_token_scores(logits: Any, labels: Any) -> Any:
    """Per-position next-token scores of a causal LM, computed batch by batch.

    Position ``t`` predicts ``labels[t + 1]`` (the causal shift ``transformers`` applies
    in its own loss).

    Args:
        logits: ``(B, L, V)`` (or a tuple starting with them).
        labels: ``(B, L)``, ``-100`` where a token is not a target.

    Returns:
        ``(B, L, 2)`` float32: ``[..., 0]`` the negative log-likelihood (nats) of the next
        token, ``[..., 1]`` 1.0 where the argmax predicted it; both 0 where position
        ``t + 1`` is not a target (and at the last position, which has none).
    """
    import torch

    if isinstance(logits, tuple):
        logits = logits[0]
    out = torch.zeros(*labels.shape, 2, dtype=torch.float32, device=logits.device)
    targets = labels[:, 1:]
    valid = targets != -100
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    safe = targets.clamp(min=0)
    nll = -log_probs.gather(-1, safe[..., None]).squeeze(-1)
    correct = (log_probs.argmax(-1) == safe).float()
    out[:, :-1, 0] = torch.where(valid, nll, torch.zeros_like(nll))
    out[:, :-1, 1] = torch.where(valid, correct, torch.zeros_like(correct))
    return out


def lm_metrics_fn(task: LMTask) -> Callable[[Any], dict[str, float]]:
    """``compute_metrics`` of a causal LM from :func:`next_token_scores`' outputs: ``main``
    = ``m = exp(L_T − L_c)`` against ``task.reference_loss``, ``nll``, ``perplexity`` and
    next-token ``accuracy`` (:func:`minidisc.tasks.lm.lm_metrics`), token-weighted over
    the whole evaluation set."""
    import numpy as np

    from minidisc.tasks.lm import lm_metrics

    def compute(prediction: Any) -> dict[str, float]:
        scores = np.asarray(prediction.predictions, dtype=np.float64)
        labels = np.asarray(prediction.label_ids)
        valid = np.zeros(labels.shape, dtype=bool)
        valid[:, :-1] = labels[:, 1:] != -100
        nll = float(scores[..., 0][valid].sum())
        correct = round(float(scores[..., 1][valid].sum()))
        return lm_metrics(nll, int(valid.sum()), correct, task.reference_loss)

    return compute
