"""Tiny teachers (a BERT masked LM, a LLaMA causal LM with grouped-query attention) with
word-level tokenizers and a toy corpus, for unit tests.

Everything is written into a folder so it loads through the same paths as a real
teacher (:func:`minidisc.models.resolve_model`), in well under a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "rug", "big", "small", "red", "blue", "and", "then", "it", "was", "happy", "sad", "quick", "slow", "bird", "tree", "saw", "near", "far", "old", "new", "sun", "moon"]
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def tiny_tokenizer() -> Any:
    """A BERT-style ([CLS] … [SEP], [MASK]) word-level fast tokenizer over :data:`WORDS`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate((*SPECIALS, *WORDS))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )


def write_teacher(folder: str | Path, seed: int = 0, layers: int = 4, with_head: bool = True) -> Path:
    """Save a random tiny BERT masked LM (hidden 32, 4 heads, FFN 64, dropout off) and its
    tokenizer to ``folder``; ``with_head=False`` saves a bare ``BertModel`` (like
    all-MiniLM-L6-v2: no MLM head weights)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertModel

    folder = Path(folder)
    tokenizer = tiny_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = BertForMaskedLM(config) if with_head else BertModel(config, add_pooling_layer=False)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


DECODER_SPECIALS = ("<unk>", "<eos>")


def tiny_decoder_tokenizer() -> Any:
    """A LLaMA-style word-level fast tokenizer over :data:`WORDS`: no special tokens around
    a sequence, an EOS token and no pad or mask token (loading pads with EOS, as
    :func:`minidisc.models.load_tokenizer` does for SmolLM2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate((*DECODER_SPECIALS, *WORDS))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<eos>")


def write_decoder_teacher(folder: str | Path, seed: int = 0, layers: int = 4) -> Path:
    """Save a random tiny LLaMA causal LM (hidden 32, 4 query heads in 2 key/value groups,
    FFN 64, tied embeddings) and its tokenizer to ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tokenizer = tiny_decoder_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_corpus(path: str | Path, lines: int = 60, seed: int = 0) -> Path:
    """A toy text file: ``lines`` lines of 5–12 words from :data:`WORDS` (≈ 500 words)."""
    import random

    rng = random.Random(seed)
    path = Path(path)
    path.write_text(
        "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))) for _ in range(lines)) + "\n",
        encoding="utf-8",
    )
    return path


def tiny_config(teacher: str | Path, text: str | Path, strategy: str = "scratch", **changes: Any) -> Any:
    """A :class:`~minidisc.pretrain.config.PretrainConfig` for ``teacher`` trained on the
    text file ``text``: blocks of 16 tokens, 2 held-out blocks, batches of 4, a 200-token
    budget; ``changes`` override top-level fields (nested ones as dicts, merged)."""
    from minidisc.cli.options import merge
    from minidisc.pretrain.config import PretrainConfig

    base: dict[str, Any] = {
        "teacher": str(teacher),
        "strategy": strategy,
        "corpus": {"train": [str(text)], "eval_blocks": 2, "block_size": 16},
        "budget": {"tokens": 200},
        "optim": {"batch_size": 4},
        "checkpoint_steps": 1000,
    }
    if "budget" in changes:  # a budget replaces the default one (exactly one kind allowed)
        base["budget"] = changes.pop("budget")
    return PretrainConfig.model_validate(merge(base, changes))
