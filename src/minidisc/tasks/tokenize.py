"""Turn a loaded split into model inputs for dynamic padding.

Rows are tokenized without padding (the collator pads each batch to its own longest
row: ``transformers.DataCollatorWithPadding``, or for NER
``DataCollatorForTokenClassification`` — see :func:`data_collator`) and truncated to
``max_length`` tokens including special tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from minidisc.errors import ConfigError, DataError
from minidisc.tasks.registry import TOKEN_CLASSIFICATION, TaskSpec, get_task
from minidisc.tasks.tsv import NO_LABEL

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

#: Label value ignored by PyTorch's cross-entropy and by :func:`compute_metrics` for NER.
IGNORE_INDEX = -100


def _check_columns(dataset: datasets.Dataset, needed: tuple[str, ...], spec: TaskSpec) -> None:
    missing = [c for c in needed if c not in dataset.column_names]
    if missing:
        raise DataError(
            f"dataset for task {spec.name} lacks columns {missing} (has {dataset.column_names}); "
            "pass the output of minidisc.tasks.load_split for the same task"
        )


def _is_unlabelled(labels: list[Any]) -> bool:
    return len(labels) > 0 and all(value == NO_LABEL for value in labels)


def align_word_labels(word_ids: list[int | None], word_tags: list[int]) -> list[int]:
    """Labels per sub-token: the word's tag on its first sub-token, -100 elsewhere.

    Args:
        word_ids: for each token of one encoded sentence, the index of the word it came
            from (``None`` for special tokens), as ``BatchEncoding.word_ids()`` gives.
        word_tags: tag id per word.

    Returns:
        One label per token (same length as ``word_ids``); -100 on special tokens and on
        continuation sub-tokens, so each word is scored exactly once.
    """
    labels: list[int] = []
    previous: int | None = None
    for word in word_ids:
        labels.append(IGNORE_INDEX if word is None or word == previous else word_tags[word])
        previous = word
    return labels


def tokenize_split(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    task: str | TaskSpec,
    max_length: int = 128,
) -> datasets.Dataset:
    """Tokenize a split from :func:`~minidisc.tasks.load_split`.

    Args:
        dataset: GLUE columns ``text_a``/``text_b``/``label`` or NER ``tokens``/``tags``.
        tokenizer: a Hugging Face tokenizer (NER needs a fast one, for ``word_ids``;
            byte-level BPE tokenizers need ``add_prefix_space=True`` for pre-split words).
        task: task name or spec.
        max_length: maximum tokens per example, special tokens included; pairs are
            truncated longest-first.

    Returns:
        Only model inputs: ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when
        the tokenizer makes them) as unpadded int lists, plus ``labels``: class id (int),
        score (float, regression) or, for NER, one id per token with -100 on special
        tokens and non-first sub-tokens. ``labels`` is left out when every label is -1
        (an unlabelled test split), so prediction runs without a loss.

    Raises:
        ConfigError: ``max_length`` < 2, or NER with a slow tokenizer.
        DataError: the dataset lacks the task's columns.
    """
    spec = get_task(task)
    if max_length < 2:
        raise ConfigError(f"max_length must be at least 2 tokens (got {max_length})")
    if spec.task_type == TOKEN_CLASSIFICATION:
        return _tokenize_words(dataset, tokenizer, spec, max_length)
    _check_columns(dataset, ("text_a", "text_b", "label"), spec)
    labelled = not _is_unlabelled(dataset["label"])

    def encode(batch: dict[str, list]) -> dict[str, list]:
        pair = (batch["text_b"],) if spec.is_pair else ()
        encoded = dict(tokenizer(batch["text_a"], *pair, truncation=True, max_length=max_length))
        if labelled:
            encoded["labels"] = batch["label"]
        return encoded

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names)


def data_collator(tokenizer: PreTrainedTokenizerBase, task: str | TaskSpec) -> Any:
    """The batch collator for :func:`tokenize_split`'s output: dynamic padding to the
    longest row of each batch.

    Returns:
        ``DataCollatorWithPadding`` for sentence(-pair) tasks;
        ``DataCollatorForTokenClassification`` for NER, which also pads ``labels`` with -100.
    """
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    if get_task(task).task_type == TOKEN_CLASSIFICATION:
        return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX)
    return DataCollatorWithPadding(tokenizer)


def _tokenize_words(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    spec: TaskSpec,
    max_length: int,
) -> datasets.Dataset:
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"task {spec.name} needs a fast tokenizer (word_ids for label alignment); "
            f"{type(tokenizer).__name__} is not one"
        )
    _check_columns(dataset, ("tokens", "tags"), spec)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(
            batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length
        )
        out = dict(encoded)
        out["labels"] = [
            align_word_labels(encoded.word_ids(batch_index=i), tags)
            for i, tags in enumerate(batch["tags"])
        ]
        return out

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names)
