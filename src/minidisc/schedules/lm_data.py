"""The text of ``compress --task lm``: training stream, selection slice, calibration blocks.

The training corpus is packed into blocks of ``block_size`` tokens (local files:
:func:`pack_documents`, whole documents read clean, Gutenberg headers stripped, joined by
EOS; a hub corpus: :func:`minidisc.pretrain.data.pack`; each block framed by the
tokenizer's special tokens). Then, with
one seeded permutation of the blocks:

* the first ``selection_blocks`` are the **selection slice** (``TaskData.dev``): the
  λ-tradeoff's metric ``m = PPL_T / PPL_c`` is measured there, and they are never
  trained on (the cross-benchmark rule: selection uses a held-out slice of the training
  data; the user's ``--eval-corpus`` files are for the report only);
* the remaining blocks are the training blocks; the first ``calibration_blocks`` of
  them (in the permuted order) score importance (``TaskData.importance``);
* every distillation stage reads a :class:`~minidisc.pretrain.data.CausalStream` of its
  own token budget over the training blocks (a seeded order, reshuffled per pass, the
  last row cut so the budget is met exactly): :func:`training_stream`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from minidisc.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from minidisc.schedules.lm_config import LMCompressConfig
    from minidisc.training.data import TaskData


def pack_documents(paths: Sequence[str], tokenizer: PreTrainedTokenizerBase, block_size: int) -> np.ndarray:
    """Pack local text into blocks, one **document** (file) at a time.

    Each file is read clean (:func:`minidisc.tasks.plaintext.read_documents`), tokenized
    whole -- its line breaks kept as text, so hard-wrapped prose (Gutenberg books wrap at
    about 70 characters) reads as the running text it is -- and followed by the EOS
    token; the stream is cut into pieces framed as the tokenizer frames one sequence
    (as :func:`minidisc.tasks.corpus.group_texts` does for line-per-row corpora, which
    would put an EOS after every wrapped line). The incomplete tail is dropped.

    Returns:
        ``(n_blocks, block_size)`` int64 token ids.

    Raises:
        DataError: missing or unreadable files, or less text than one block.
        ConfigError: a block size that leaves no room beside the special tokens.
    """
    from minidisc.errors import ConfigError
    from minidisc.tasks.corpus import special_token_frame
    from minidisc.tasks.plaintext import read_documents

    prefix, suffix = special_token_frame(tokenizer)
    piece = block_size - len(prefix) - len(suffix)
    if piece < 1:
        raise ConfigError(f"--block-size {block_size} leaves no room for text beside the special tokens")
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    for doc in read_documents(paths):
        if doc.text.strip():
            stream += list(tokenizer(doc.text, add_special_tokens=False, verbose=False)["input_ids"]) + eos
    n = len(stream) // piece
    if n == 0:
        raise DataError(f"the corpus {list(paths)} has {len(stream)} tokens, fewer than one block of {piece}")
    body = np.asarray(stream[: n * piece], dtype=np.int64).reshape(n, piece)
    return np.concatenate(
        [np.tile(np.asarray(prefix, np.int64), (n, 1)), body, np.tile(np.asarray(suffix, np.int64), (n, 1))], axis=1
    )


def split_blocks(blocks: np.ndarray, selection: int, calibration: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train, selection, calibration)`` blocks (module doc); calibration ⊂ train.

    Raises:
        DataError: fewer blocks than the selection slice plus one training block.
    """
    n = len(blocks)
    if n <= selection:
        raise DataError(
            f"the training corpus packs into {n} blocks of {blocks.shape[1] if blocks.ndim == 2 else '?'} tokens, "
            f"not enough to hold out {selection} selection blocks and train on the rest; add text, lower "
            "--selection-blocks or --block-size"
        )
    order = np.random.default_rng([int(seed) & 0xFFFFFFFF, 11]).permutation(n)
    held, kept = np.sort(order[:selection]), order[selection:]
    train = blocks[np.sort(kept)]
    calibration_idx = kept[: min(calibration, len(kept))]
    return train, blocks[held], blocks[np.sort(calibration_idx)]


def training_stream(data: TaskData, blocks: np.ndarray, tokens: int, seed: int) -> Any:
    """A :class:`~minidisc.pretrain.data.CausalStream` of exactly ``tokens`` tokens over
    ``blocks`` (seeded order; the last row cut to meet the budget)."""
    from minidisc.pretrain.data import CausalStream

    block = blocks.shape[1]
    rows = math.ceil(tokens / block)
    last = tokens - (rows - 1) * block
    return CausalStream(blocks, data.tokenizer, seed, rows=rows, last_tokens=0 if last == block else last)


def prepare_lm_data(cfg: LMCompressConfig, tokenizer: PreTrainedTokenizerBase, seed: int) -> tuple[TaskData, np.ndarray]:
    """Pack the corpus and carve its slices; return the task data (``train``: the first
    sandwich stage's stream) and the training blocks (every stage's stream reads them).

    Raises:
        DataError / ConfigError: missing files, no text, an unreachable hub corpus, too
            little text for the selection slice.
    """
    from minidisc.pretrain.data import CausalStream, pack
    from minidisc.tasks.lm import LM_TASK
    from minidisc.training.data import TaskData

    c = cfg.corpus
    if all(Path(p).exists() for p in c.train):
        blocks = pack_documents(c.train, tokenizer, c.block_size)
    else:
        blocks = pack(c.train, tokenizer, c.block_size, hub_config=c.hub_config, split=c.split, text_column=c.text_column)
    train, selection, calibration = split_blocks(blocks, c.selection_blocks, c.calibration_blocks, seed)
    dev = CausalStream(selection, tokenizer, seed, rows=len(selection), shuffle=False)
    importance = CausalStream(calibration, tokenizer, seed, rows=len(calibration), shuffle=False)
    sizes = {
        "block_size": c.block_size,
        "corpus_blocks": len(blocks),
        "train_blocks": len(train),
        "train_tokens_per_pass": int(train.size),
        "selection_blocks": len(selection),
        "calibration_blocks": len(calibration),
        "data_source": ", ".join(c.train),
        "subsampled": False,
    }
    data = TaskData(LM_TASK, tokenizer, None, dev, importance, sizes)  # type: ignore[arg-type]
    return data, train
