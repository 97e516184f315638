"""The training stream: packed blocks in a seeded order, masked deterministically.

Every arm with the same seed reads the same stream: position ``i`` holds block
``perm_e[i mod n]`` of epoch ``e = i // n`` (one seeded permutation per epoch, so data
repeated within a budget is reshuffled), masked by :func:`minidisc.tasks.corpus.mlm_collator`
(15 %, 80/10/10) seeded from ``(seed, i)``. Masks are thus a function of the stream
position alone: identical across arms, across resumes, and known before training --
which is what lets :mod:`minidisc.pretrain.budget` plan an exact FLOPs budget when the
MLM head runs only on masked positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from minidisc.errors import DataError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from minidisc.pretrain.config import CorpusConfig

IGNORE_INDEX = -100


def row_seed(seed: int, position: int) -> int:
    """A 32-bit seed for stream position ``position`` (independent streams per position)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(position)]).generate_state(1)[0])


def pack(
    files_or_hub: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    block_size: int,
    *,
    hub_config: str | None = None,
    split: str | None = None,
    text_column: str = "text",
) -> np.ndarray:
    """Load a corpus and pack it into blocks (:func:`~minidisc.tasks.corpus.group_texts`).

    Returns:
        ``(n_blocks, block_size)`` int64 token ids, each block framed by the tokenizer's
        special tokens.

    Raises:
        DataError / ConfigError: missing files, empty corpus, unreachable hub dataset.
    """
    from minidisc.tasks.corpus import group_texts, load_text_corpus

    source: Any = list(files_or_hub) if len(files_or_hub) > 1 else files_or_hub[0]
    corpus = load_text_corpus(source, split, config=hub_config, text_column=text_column)
    blocks = group_texts(corpus, tokenizer, block_size)
    return np.asarray(blocks.with_format("numpy")["input_ids"], dtype=np.int64)


@dataclass
class Corpora:
    """Training blocks and held-out blocks (disjoint)."""

    train: np.ndarray
    heldout: np.ndarray

    @property
    def train_tokens(self) -> int:
        """Tokens of one pass over the training blocks (special tokens included)."""
        return int(self.train.size)


def load_corpora(cfg: CorpusConfig, tokenizer: PreTrainedTokenizerBase) -> Corpora:
    """Pack the training and held-out corpora of ``cfg``.

    Without ``cfg.eval`` the last ``eval_blocks`` training blocks are held out (and never
    trained on). ``max_train_blocks`` then keeps the first N remaining blocks.

    Raises:
        DataError: too little text for the held-out set plus one training block.
    """
    train = pack(cfg.train, tokenizer, cfg.block_size, hub_config=cfg.hub_config, split=cfg.split,
                 text_column=cfg.text_column)
    if cfg.eval:
        heldout = pack(cfg.eval, tokenizer, cfg.block_size, hub_config=cfg.hub_config,
                       split=cfg.eval_split or "validation", text_column=cfg.text_column)
        if len(heldout) < cfg.eval_blocks:
            raise DataError(
                f"the held-out corpus has {len(heldout)} blocks of {cfg.block_size} tokens, fewer than "
                f"eval_blocks={cfg.eval_blocks}; lower --eval-blocks or add held-out text"
            )
        heldout = heldout[: cfg.eval_blocks]
    else:
        if len(train) <= cfg.eval_blocks:
            raise DataError(
                f"the corpus has {len(train)} blocks, not enough to hold out {cfg.eval_blocks} and train on the "
                "rest; pass --eval-corpus, lower --eval-blocks or add text"
            )
        train, heldout = train[: -cfg.eval_blocks], train[-cfg.eval_blocks :]
    if cfg.max_train_blocks is not None:
        train = train[: cfg.max_train_blocks]
    return Corpora(train, heldout)


class Masker:
    """BERT masking of one row, seeded per row (wraps :func:`mlm_collator`)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, mlm_probability: float, seed: int) -> None:
        from minidisc.tasks.corpus import mlm_collator

        mlm_collator(tokenizer, mlm_probability)  # validates: mask token, probability
        self.tokenizer = tokenizer
        self.mlm_probability = mlm_probability
        self.seed = seed

    def __call__(self, ids: np.ndarray, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(masked input ids, labels)``, each ``(len(ids),)`` long; labels are
        ``-100`` except at the chosen positions."""
        from minidisc.tasks.corpus import mlm_collator

        collator = mlm_collator(self.tokenizer, self.mlm_probability, seed=row_seed(self.seed, position))
        out = collator([ids.tolist()])
        return out["input_ids"][0], out["labels"][0]


class MaskedStream:
    """Map-style dataset of the first ``rows`` stream positions (see the module doc).

    Each item is ``{"input_ids", "attention_mask", "labels"}``, tensors of shape
    ``(block_size,)``. With ``last_tokens`` > 0 the final row keeps only its first
    ``last_tokens`` tokens (the rest is padding with ``attention_mask = 0``, never
    masked), so a token budget is met exactly.

    Args:
        blocks: ``(n, L)`` packed training blocks.
        tokenizer: gives the pad and mask tokens.
        mlm_probability: masking rate.
        seed: data-order and masking seed.
        rows: number of stream positions served (``len(self)``).
        last_tokens: real tokens of the last row, ``0`` = the whole block.
        shuffle: permute the blocks per epoch (False: corpus order, for held-out data).
    """

    def __init__(
        self,
        blocks: np.ndarray,
        tokenizer: PreTrainedTokenizerBase,
        mlm_probability: float,
        seed: int,
        rows: int,
        last_tokens: int = 0,
        shuffle: bool = True,
    ) -> None:
        if len(blocks) == 0:
            raise DataError("no training blocks")
        if not 0 <= last_tokens <= blocks.shape[1]:
            raise ValueError(f"last_tokens must be in [0, {blocks.shape[1]}], got {last_tokens}")
        self.blocks = blocks
        self.seed = seed
        self.rows = int(rows)
        self.last_tokens = int(last_tokens)
        self.shuffle = shuffle
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.masker = Masker(tokenizer, mlm_probability, seed)
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.rows

    @property
    def block_size(self) -> int:
        return int(self.blocks.shape[1])

    def block_index(self, position: int) -> int:
        """Index of the block at stream ``position`` (epoch-wise seeded permutations)."""
        n = len(self.blocks)
        epoch, offset = divmod(int(position), n)
        if not self.shuffle:
            return offset
        perm = self._perms.get(epoch)
        if perm is None:
            perm = np.random.default_rng([int(self.seed) & 0xFFFFFFFF, epoch]).permutation(n)
            self._perms[epoch] = perm
        return int(perm[offset])

    def row_length(self, position: int) -> int:
        """Real (non-padding) tokens of the row at ``position``."""
        last = position == self.rows - 1 and self.last_tokens
        return self.last_tokens if last else self.block_size

    def row(self, position: int, length: int) -> dict[str, torch.Tensor]:
        """Stream row ``position`` cut to its first ``length`` tokens, padded to the block
        size; masks depend on ``(seed, position, length)`` only."""
        import torch

        ids = self.blocks[self.block_index(position)][:length]
        masked, labels = self.masker(ids, position)
        full = self.block_size
        input_ids = torch.full((full,), self.pad_id, dtype=torch.long)
        out_labels = torch.full((full,), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros(full, dtype=torch.long)
        input_ids[:length], out_labels[:length], attention[:length] = masked, labels, 1
        return {"input_ids": input_ids, "attention_mask": attention, "labels": out_labels}

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        if not 0 <= position < self.rows:
            raise IndexError(position)
        return self.row(position, self.row_length(position))

    def masked_count(self, position: int, length: int | None = None) -> int:
        """Masked (predicted) positions of row ``position`` cut to ``length`` tokens
        (default: its length in this stream)."""
        length = self.row_length(position) if length is None else length
        return int((self.row(position, length)["labels"] != IGNORE_INDEX).sum())


def heldout_batch(
    blocks: np.ndarray, tokenizer: PreTrainedTokenizerBase, mlm_probability: float, eval_seed: int
) -> dict[str, torch.Tensor]:
    """The held-out blocks, masked once with ``eval_seed``: every arm is scored on the
    same masked positions. Tensors ``(n_blocks, L)``."""
    import torch

    stream = MaskedStream(blocks, tokenizer, mlm_probability, eval_seed, rows=len(blocks), shuffle=False)
    rows = [stream[i] for i in range(len(blocks))]
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
