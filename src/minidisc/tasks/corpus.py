"""Raw-text corpora for masked-LM / causal-LM pretraining and task-agnostic distillation.

A corpus is a :class:`datasets.Dataset` with one ``text`` column, one document (for
plain text files: one line) per row. :func:`group_texts` tokenizes it, concatenates the
token stream and cuts it into fixed-length blocks (the packing of BERT/RoBERTa
pretraining, Devlin et al. 2019; Liu et al. 2019), each framed by the tokenizer's own
special tokens; :func:`mlm_collator` then masks 15% of tokens with BERT's 80/10/10 rule.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from minidisc.errors import ConfigError, DataError
from minidisc.tasks.plaintext import corpus_files, read_document

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

_TEXT_SUFFIXES = {".txt", ".raw", ".tokens", ".text"}


def _looks_like_path(value: str) -> bool:
    return (
        value.startswith(("/", "./", "../", "~"))
        or Path(value).suffix in _TEXT_SUFFIXES
        or os.sep in value
        and Path(value).parent.exists()
    )


def _read_lines(path: Path) -> list[str]:
    """The non-blank lines of a corpus file read clean (UTF-8, ``\\n`` line ends, a Project
    Gutenberg header/footer removed: :func:`minidisc.tasks.plaintext.read_document`)."""
    return [line for line in read_document(path).text.split("\n") if line.strip()]


def load_text_corpus(
    paths_or_hub_name: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    split: str | None = None,
    *,
    config: str | None = None,
    text_column: str = "text",
) -> datasets.Dataset:
    """Load plain-text files or a hub dataset as a one-column (``text``) dataset.

    Args:
        paths_or_hub_name: one text file or folder or a list of them (UTF-8, one line per
            row, e.g. ``wikitext-2-raw/wiki.valid.raw``; a folder stands for its ``*.txt``
            files in name order; a Project Gutenberg header and footer are removed, see
            :mod:`minidisc.tasks.plaintext`), or a Hugging Face hub dataset name (e.g.
            ``"Salesforce/wikitext"`` with ``config="wikitext-103-raw-v1"``).
        split: hub split (default ``"train"``); ignored for local files.
        config: hub dataset configuration.
        text_column: the hub dataset's text column.

    Returns:
        Dataset with column ``text``: local files give one row per non-blank line (line
        ends -- ``\\n``, ``\\r\\n`` or ``\\r`` -- removed; other whitespace kept), in file
        order; hub datasets one row per non-blank document.

    Raises:
        DataError: a file is missing or not UTF-8, the corpus has no text, or the hub
            dataset lacks ``text_column``.
        ConfigError: the hub dataset cannot be loaded (no network, unknown name).
    """
    from datasets import Dataset, Features, Value

    many = not isinstance(paths_or_hub_name, (str, os.PathLike))
    items = list(paths_or_hub_name) if many else [paths_or_hub_name]  # type: ignore[list-item]
    if not items:
        raise ConfigError("no corpus given: pass text files or a hub dataset name")
    local = many or Path(items[0]).exists() or _looks_like_path(os.fspath(items[0]))
    if not local:
        return _load_hub_corpus(os.fspath(items[0]), split, config, text_column)

    texts: list[str] = []
    for path in corpus_files(items):
        texts.extend(_read_lines(path))
    if not texts:
        raise DataError(f"corpus {[os.fspath(i) for i in items]} holds no non-blank lines")
    return Dataset.from_dict({"text": texts}, features=Features({"text": Value("string")}))


def _load_hub_corpus(
    name: str, split: str | None, config: str | None, text_column: str
) -> datasets.Dataset:
    import datasets

    try:
        raw = datasets.load_dataset(name, config, split=split or "train")
    except Exception as exc:  # network, auth, unknown dataset: all need the same fix
        raise ConfigError(
            f"could not load corpus {name!r} from the Hugging Face hub "
            f"({type(exc).__name__}: {exc}); pass local text files instead"
        ) from exc
    if text_column not in raw.column_names:
        raise DataError(
            f"hub corpus {name!r} has no column {text_column!r} (has {raw.column_names}); "
            "pass the right text column"
        )
    raw = raw.select_columns([text_column])
    if text_column != "text":
        raw = raw.rename_column(text_column, "text")
    return raw.filter(lambda batch: [bool(t and t.strip()) for t in batch["text"]], batched=True)


def special_token_frame(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """Token ids the tokenizer puts before and after one sequence.

    BERT: ``([CLS], [SEP])``; LLaMA-style with BOS: ``([<s>], [])``; GPT-2: ``([], [])``.
    Found by encoding a probe text with and without special tokens, which works for
    any tokenizer family through the public API.

    Raises:
        ConfigError: the plain encoding is not a contiguous part of the framed one.
    """
    probe = "hello world"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    framed = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for start in range(len(framed) - len(plain) + 1):
        if framed[start : start + len(plain)] == plain:
            return framed[:start], framed[start + len(plain) :]
    raise ConfigError(
        f"cannot tell where {type(tokenizer).__name__} puts its special tokens; "
        "use a standard Hugging Face tokenizer"
    )


def group_texts(
    dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, block_size: int
) -> datasets.Dataset:
    """Pack a ``text`` corpus into fixed-length blocks of token ids.

    Each row is tokenized without special tokens; rows are concatenated in order (with
    the tokenizer's EOS token after each row when it has one, e.g. causal LMs; BERT has
    none, so its rows are joined directly); the stream is cut into pieces of
    ``block_size - len(prefix) - len(suffix)`` tokens, dropping the incomplete tail; each
    piece is framed as the tokenizer frames one sequence (BERT: ``[CLS] … [SEP]``).
    Deterministic: same corpus and tokenizer, same blocks.

    Args:
        dataset: a corpus with column ``text`` (see :func:`load_text_corpus`).
        tokenizer: the model's tokenizer.
        block_size: tokens per block, special tokens included.

    Returns:
        Dataset with ``input_ids`` and ``attention_mask`` (all ones), each a list of
        ``block_size`` ints per row; ``len = floor(stream_tokens / piece_length)``.

    Raises:
        ConfigError: ``block_size`` leaves no room besides the special tokens.
        DataError: no ``text`` column, or fewer tokens than one block.
    """
    import pyarrow.compute as pc
    from datasets import Dataset, Features, List, Value

    if "text" not in dataset.column_names:
        raise DataError(f"corpus needs a 'text' column (has {dataset.column_names})")
    prefix, suffix = special_token_frame(tokenizer)
    piece = block_size - len(prefix) - len(suffix)
    if piece < 1:
        raise ConfigError(
            f"block_size {block_size} leaves no room for text next to the "
            f"{len(prefix) + len(suffix)} special tokens; use a larger block size"
        )
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def encode(batch: dict[str, list]) -> dict[str, list]:
        ids = tokenizer(batch["text"], add_special_tokens=False, verbose=False)["input_ids"]
        return {"ids": [row + eos for row in ids]}

    tokenized = dataset.map(encode, batched=True, remove_columns=dataset.column_names)
    chunks = [
        pc.list_flatten(table["ids"]).to_numpy(zero_copy_only=False)
        for table in tokenized.with_format("arrow").iter(batch_size=10_000)
    ]
    stream = np.concatenate(chunks).astype(np.int32) if chunks else np.zeros(0, np.int32)
    n_blocks = len(stream) // piece
    if n_blocks == 0:
        raise DataError(
            f"corpus has {len(stream)} tokens, fewer than one block of {piece} text tokens; "
            "add text or lower block_size"
        )
    body = stream[: n_blocks * piece].reshape(n_blocks, piece)
    prefix_columns = np.tile(np.asarray(prefix, np.int32), (n_blocks, 1))  # (n_blocks, |prefix|)
    suffix_columns = np.tile(np.asarray(suffix, np.int32), (n_blocks, 1))
    blocks = np.concatenate([prefix_columns, body, suffix_columns], axis=1)
    features = Features({"input_ids": List(Value("int32")), "attention_mask": List(Value("int8"))})
    return Dataset.from_dict(
        {"input_ids": blocks, "attention_mask": np.ones_like(blocks, dtype=np.int8)},
        features=features,
    )


def mlm_collator(
    tokenizer: PreTrainedTokenizerBase, mlm_probability: float = 0.15, seed: int | None = None
) -> Any:
    """Masked-LM collator (Devlin et al., 2019, §3.1): each non-special token is chosen
    with probability ``mlm_probability``; chosen tokens become [MASK] 80%, a random token
    10%, unchanged 10%; ``labels`` are -100 except at chosen positions.

    Args:
        tokenizer: needs a mask token (BERT-style).
        mlm_probability: masking rate, a fraction in (0, 1).
        seed: seeds the collator's own generator (reproducible masks); ``None`` uses
            torch's global RNG.

    Returns:
        ``transformers.DataCollatorForLanguageModeling(mlm=True)``.

    Raises:
        ConfigError: no mask token, or ``mlm_probability`` outside (0, 1).
    """
    from transformers import DataCollatorForLanguageModeling

    if tokenizer.mask_token is None:
        raise ConfigError(
            f"{type(tokenizer).__name__} has no mask token, so it cannot do masked-LM; "
            "use causal-LM pretraining for this model"
        )
    if not 0.0 < mlm_probability < 1.0:
        raise ConfigError(f"mlm_probability must be in (0, 1) (got {mlm_probability})")
    return DataCollatorForLanguageModeling(
        tokenizer, mlm=True, mlm_probability=mlm_probability, seed=seed
    )


def clm_collator(tokenizer: PreTrainedTokenizerBase) -> Any:
    """Causal-LM collator: ``labels`` = ``input_ids`` (the model shifts them), for
    fixed-length blocks from :func:`group_texts`."""
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(tokenizer, mlm=False)
