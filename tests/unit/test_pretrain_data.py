"""The training stream: seeded order shared by every arm, deterministic masks, cut rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minidisc.errors import DataError
from minidisc.pretrain.config import CorpusConfig
from minidisc.pretrain.data import MaskedStream, heldout_batch, load_corpora
from minidisc.pretrain.run import prepare_arm
from tests.pretrain_helpers import tiny_config, tiny_tokenizer, write_corpus, write_teacher


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return write_teacher(root / "teacher"), write_corpus(root / "corpus.txt")


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def blocks(n=5, length=10, seed=0):
    rng = np.random.default_rng(seed)
    out = rng.integers(5, 36, size=(n, length))
    out[:, 0], out[:, -1] = 2, 3  # [CLS] ... [SEP]
    return out


def test_every_epoch_visits_every_block_once_in_a_new_order(tok):
    stream = MaskedStream(blocks(), tok, 0.15, seed=7, rows=15)
    epochs = [[stream.block_index(e * 5 + i) for i in range(5)] for e in range(3)]
    for order in epochs:
        assert sorted(order) == [0, 1, 2, 3, 4]
    assert len({tuple(o) for o in epochs}) > 1  # reshuffled when data repeats


def test_rows_are_a_function_of_seed_and_position(tok):
    a = MaskedStream(blocks(), tok, 0.3, seed=7, rows=8)
    b = MaskedStream(blocks(), tok, 0.3, seed=7, rows=3)  # a different budget, same prefix
    c = MaskedStream(blocks(), tok, 0.3, seed=8, rows=8)
    for i in range(3):
        for key in ("input_ids", "labels"):
            assert torch.equal(a[i][key], b[i][key])
    assert any(not torch.equal(a[i]["labels"], c[i]["labels"]) for i in range(3))
    assert torch.equal(a[5]["labels"], a[5]["labels"])  # recomputed identically


def test_masks_skip_special_tokens_and_labels_hold_the_original_ids(tok):
    data = blocks(n=40, length=30)
    stream = MaskedStream(data, tok, 0.5, seed=1, rows=40)
    chosen = 0
    for i in range(40):
        row, original = stream[i], data[stream.block_index(i)]
        where = row["labels"] != -100
        assert not where[0] and not where[-1]  # [CLS] and [SEP] never masked
        assert torch.equal(row["labels"][where], torch.as_tensor(original)[where])
        replaced = where & (row["input_ids"] == tok.mask_token_id)
        chosen += int(where.sum())
        assert int(replaced.sum()) <= int(where.sum())
    assert 0.4 < chosen / (40 * 28) < 0.6  # ≈ the masking rate over maskable tokens


def test_cut_last_row_is_padding_after_its_tokens(tok):
    stream = MaskedStream(blocks(length=10), tok, 0.5, seed=1, rows=3, last_tokens=4)
    last = stream[2]
    assert last["attention_mask"].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert (last["input_ids"][4:] == tok.pad_token_id).all()
    assert (last["labels"][4:] == -100).all()
    assert stream[1]["attention_mask"].sum() == 10
    with pytest.raises(IndexError):
        stream[3]


def test_heldout_batch_does_not_depend_on_the_training_seed(tok):
    a = heldout_batch(blocks(), tok, 0.3, eval_seed=0)
    b = heldout_batch(blocks(), tok, 0.3, eval_seed=0)
    assert torch.equal(a["labels"], b["labels"]) and a["input_ids"].shape == (5, 10)
    assert torch.equal(a["attention_mask"], torch.ones(5, 10, dtype=torch.long))


def test_heldout_split_is_disjoint_from_training(files, tok):
    _, corpus = files
    cfg = CorpusConfig(train=(str(corpus),), eval_blocks=3, block_size=16)
    split = load_corpora(cfg, tok)
    whole = load_corpora(CorpusConfig(train=(str(corpus),), eval_blocks=1, block_size=16), tok)
    n = len(whole.train) + 1
    assert len(split.train) == n - 3 and len(split.heldout) == 3
    assert np.array_equal(split.heldout, whole.train[-2:].tolist() + whole.heldout.tolist())
    limited = load_corpora(CorpusConfig(train=(str(corpus),), eval_blocks=3, block_size=16, max_train_blocks=4), tok)
    assert np.array_equal(limited.train, split.train[:4])
    with pytest.raises(DataError, match="eval-blocks"):
        load_corpora(CorpusConfig(train=(str(corpus),), eval_blocks=n, block_size=16), tok)


def test_arms_with_the_same_seed_read_the_same_stream(files):
    teacher, corpus = files
    scratch = prepare_arm(tiny_config(teacher, corpus, "scratch"))
    kd = prepare_arm(tiny_config(teacher, corpus, "kd"))
    minilm = prepare_arm(tiny_config(teacher, corpus, "minilm", optim={"seed": 1}))
    for i in range(8):
        for key in ("input_ids", "labels", "attention_mask"):
            assert torch.equal(scratch.stream[i][key], kd.stream[i][key])
    assert any(not torch.equal(scratch.stream[i]["input_ids"], minilm.stream[i]["input_ids"]) for i in range(8))
    for key in ("input_ids", "labels"):  # the held-out set is the same for every arm and seed
        assert torch.equal(scratch.heldout[key], minilm.heldout[key])
