"""The training stream: packed blocks in a seeded order, masked deterministically (MLM)
or left as they are (causal LM).

Every arm with the same seed reads the same stream: position ``i`` holds block
``perm_e[i mod n]`` of epoch ``e = i // n`` (one seeded permutation per epoch, so data
repeated within a budget is reshuffled). A :class:`MaskedStream` masks it with
:func:`minidisc.tasks.corpus.mlm_collator` (15 %, 80/10/10) seeded from ``(seed, i)``:
masks are a function of the stream position alone, identical across arms, across
resumes, and known before training -- which is what lets
:mod:`minidisc.pretrain.budget` plan an exact FLOPs budget when the MLM head runs only
on masked positions. A :class:`CausalStream` serves the same rows unmasked, with labels
= the tokens themselves (the loss shifts them: position ``t`` predicts token ``t + 1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from minidisc.errors import DataError
from minidisc.tasks.corpus import group_texts, load_text_corpus, mlm_collator

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
        mlm_collator(tokenizer, mlm_probability)  # validates: mask token, probability
        self.tokenizer = tokenizer
        self.mlm_probability = mlm_probability
        self.seed = seed

    def __call__(self, ids: np.ndarray, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(masked input ids, labels)``, each ``(len(ids),)`` long; labels are
        ``-100`` except at the chosen positions."""
        collator = mlm_collator(self.tokenizer, self.mlm_probability, seed=row_seed(self.seed, position))
        out = collator([ids.tolist()])
        return out["input_ids"][0], out["labels"][0]


class BlockStream:
    """Map-style dataset of the first ``rows`` stream positions (see the module doc).

    Each item is ``{"input_ids", "attention_mask", "labels"}``, tensors of shape
    ``(block_size,)``. With ``last_tokens`` > 0 the final row keeps only its first
    ``last_tokens`` tokens (the rest is padding with ``attention_mask = 0`` and label
    ``-100``), so a token budget is met exactly. Subclasses say what a row's inputs and
    labels are (:meth:`inputs_and_labels`).

    Args:
        blocks: ``(n, L)`` packed training blocks.
        tokenizer: gives the pad token.
        seed: data-order seed.
        rows: number of stream positions served (``len(self)``).
        last_tokens: real tokens of the last row, ``0`` = the whole block.
        shuffle: permute the blocks per epoch (False: corpus order, for held-out data).

    Raises:
        DataError: no blocks.
    """

    def __init__(
        self,
        blocks: np.ndarray,
        tokenizer: PreTrainedTokenizerBase,
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

    def inputs_and_labels(self, ids: np.ndarray, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input ids, labels)`` of the real tokens ``ids`` of row ``position``, each
        ``(len(ids),)`` long."""
        raise NotImplementedError

    def row(self, position: int, length: int) -> dict[str, torch.Tensor]:
        """Stream row ``position`` cut to its first ``length`` tokens, padded to the block
        size; its contents depend on ``(seed, position, length)`` only."""
        import torch

        ids = self.blocks[self.block_index(position)][:length]
        inputs, labels = self.inputs_and_labels(ids, position)
        full = self.block_size
        input_ids = torch.full((full,), self.pad_id, dtype=torch.long)
        out_labels = torch.full((full,), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros(full, dtype=torch.long)
        input_ids[:length], out_labels[:length], attention[:length] = inputs, labels, 1
        return {"input_ids": input_ids, "attention_mask": attention, "labels": out_labels}

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        if not 0 <= position < self.rows:
            raise IndexError(position)
        return self.row(position, self.row_length(position))


class MaskedStream(BlockStream):
    """The masked-LM stream: BERT masking per row, seeded from ``(seed, position)``;
    labels are ``-100`` except at the masked positions (padding is never masked).

    Args:
        blocks, tokenizer, seed, rows, last_tokens, shuffle: as :class:`BlockStream`
            (``seed`` also seeds the masks; the tokenizer gives the mask token).
        mlm_probability: masking rate.

    Raises:
        ConfigError: the tokenizer has no mask token (a decoder: use :class:`CausalStream`).
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
        super().__init__(blocks, tokenizer, seed, rows, last_tokens, shuffle)
        self.masker = Masker(tokenizer, mlm_probability, seed)

    def inputs_and_labels(self, ids: np.ndarray, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.masker(ids, position)

    def masked_count(self, position: int, length: int | None = None) -> int:
        """Masked (predicted) positions of row ``position`` cut to ``length`` tokens
        (default: its length in this stream)."""
        length = self.row_length(position) if length is None else length
        return int((self.row(position, length)["labels"] != IGNORE_INDEX).sum())


class CausalStream(BlockStream):
    """The causal-LM stream: rows unmasked, ``labels`` = ``input_ids`` on real tokens and
    ``-100`` on padding (the loss shifts them by one: no label is ever the pad token,
    even where the tokenizer pads with its EOS token, as LLaMA tokenizers do).

    Args: as :class:`BlockStream`.
    """

    def inputs_and_labels(self, ids: np.ndarray, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        tokens = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        return tokens, tokens.clone()


def stack_rows(stream: BlockStream) -> dict[str, torch.Tensor]:
    """Every row of ``stream`` as one batch: tensors ``(len(stream), L)``."""
    import torch

    rows = [stream[i] for i in range(len(stream))]
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def heldout_batch(
    blocks: np.ndarray, tokenizer: PreTrainedTokenizerBase, mlm_probability: float, eval_seed: int
) -> dict[str, torch.Tensor]:
    """The held-out blocks, masked once with ``eval_seed``: every arm is scored on the
    same masked positions. Tensors ``(n_blocks, L)``."""
    return stack_rows(MaskedStream(blocks, tokenizer, mlm_probability, eval_seed, rows=len(blocks), shuffle=False))


def causal_heldout_batch(blocks: np.ndarray, tokenizer: PreTrainedTokenizerBase) -> dict[str, torch.Tensor]:
    """The held-out blocks for a causal LM, in corpus order, unmasked: every arm is scored
    on every next-token prediction of the same blocks. Tensors ``(n_blocks, L)``."""
    return stack_rows(CausalStream(blocks, tokenizer, seed=0, rows=len(blocks), shuffle=False))
