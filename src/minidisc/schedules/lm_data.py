"""The text of ``compress --task lm``: training stream, selection slice, calibration blocks.

The training corpus is packed into blocks of ``block_size`` tokens
(:func:`minidisc.pretrain.data.pack`: documents read clean, Gutenberg headers stripped,
concatenated and cut, each block framed by the tokenizer's special tokens). Then, with
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
from typing import TYPE_CHECKING, Any

import numpy as np

from minidisc.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from minidisc.schedules.lm_config import LMCompressConfig
    from minidisc.training.data import TaskData


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
    blocks = pack(c.train, tokenizer, c.block_size, hub_config=c.hub_config, split=c.split, text_column=c.text_column)
    train, selection, calibration = split_blocks(blocks, c.selection_blocks, c.calibration_blocks, seed)
    dev = CausalStream(selection, tokenizer, seed, rows=len(selection), shuffle=False)
    importance = CausalStream(calibration, tokenizer, seed, rows=len(calibration), shuffle=False)
    sizes = {
        "block_size": c.block_size,
        "corpus_blocks": int(len(blocks)),
        "train_blocks": int(len(train)),
        "train_tokens_per_pass": int(train.size),
        "selection_blocks": int(len(selection)),
        "calibration_blocks": int(len(calibration)),
        "data_source": ", ".join(c.train),
        "subsampled": False,
    }
    data = TaskData(LM_TASK, tokenizer, None, dev, importance, sizes)  # type: ignore[arg-type]
    return data, train
