"""The teacher-logit cache of causal LMs (``minidisc.training.lm_teacher_cache``) on a tiny
random LLaMA (4 query heads over 2 key/value heads, tied embeddings): a block computed
once and then read back gives the same loss; the reordered teacher is served, another
model is not; partial rows are not stored; disk per token; and every refusal (a
tampered meta.json, a stale probe, a missing shard, tokens that differ), with
``overwrite`` rebuilding."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from minidisc.errors import ModelError
from minidisc.objectives import build_objective, forward_with_signals
from minidisc.training.lm_teacher_cache import LMTeacherCacheStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BLOCK = 8


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.pretrain_helpers import tiny_decoder_tokenizer

    tokenizer = tiny_decoder_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, max_position_embeddings=64, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval(), tokenizer


def batch_of(rows: torch.Tensor, length: int | None = None) -> dict[str, torch.Tensor]:
    mask = torch.ones_like(rows)
    labels = rows.clone()
    if length is not None:  # the cut last row of a budget: right padding
        mask[-1, length:] = 0
        labels[-1, length:] = -100
    return {"input_ids": rows, "attention_mask": mask, "labels": labels}


@pytest.fixture
def setup(tmp_path):
    teacher, tokenizer = tiny_llama()
    store = LMTeacherCacheStore(tmp_path / "cache", teacher, tokenizer, block_size=BLOCK, top_k=5)
    blocks = torch.randint(2, len(tokenizer), (6, BLOCK), generator=torch.Generator().manual_seed(1))
    return tmp_path, teacher, tokenizer, store, blocks


def online(teacher):
    def compute(inputs):
        with torch.no_grad():
            return forward_with_signals(teacher, inputs, need_hidden_states=False)

    return compute


def test_computed_once_then_read_back_with_the_same_loss(setup):
    tmp_path, teacher, tokenizer, store, blocks = setup
    view = store.view(teacher)
    first = view.signals(batch_of(blocks[:4]), online(teacher))
    assert view.stats.served and view.stats.misses == 4 and view.stats.hits == 0
    view.flush()
    # a new store on the same folder (a later stage or run) finds the blocks, in another order
    again = LMTeacherCacheStore(tmp_path / "cache", teacher, tokenizer, block_size=BLOCK, top_k=5)
    assert again.folder == store.folder
    view2 = again.view(teacher)
    calls = []
    order = [2, 0, 3, 1]
    second = view2.signals(batch_of(blocks[order]), lambda b: calls.append(b))
    assert not calls and view2.stats.hits == 4 and view2.stats.flops_saved > 0
    assert second.topk.logp.dtype == torch.float16 and second.topk.index.dtype == torch.int64
    assert torch.equal(second.topk.logp, first.topk.logp[order]) and torch.equal(second.topk.index, first.topk.index[order])
    torch.testing.assert_close(second.topk.tail, first.topk.tail[order], rtol=0, atol=0)

    objective = build_objective("forward_kl", task_type="causal_lm")
    assert store.supports(objective) and not store.supports(build_objective("forward_kl", temperature=2.0))
    student, _ = tiny_llama(seed=5)
    s = forward_with_signals(student, batch_of(blocks[order]), need_hidden_states=False)
    loss_new, _ = objective(s, second, batch_of(blocks[order]))
    first_rows = type(first.topk)(first.topk.logp[order], first.topk.index[order], first.topk.tail[order], first.topk.vocab_size)
    loss_old, _ = objective(s, type(first)(topk=first_rows), batch_of(blocks[order]))
    assert loss_new.item() == loss_old.item() and loss_new.item() > 0
    # merging words into the tail bucket loses information: at most the full-vocabulary loss
    full, _ = objective(s, online(teacher)(batch_of(blocks[order])), batch_of(blocks[order]))
    assert loss_new.item() <= full.item() + 1e-6

    summary = again.summary()
    assert summary["blocks"] == 4 and summary["tokens"] == 4 * BLOCK and summary["index_dtype"] == "uint16"
    assert again.bytes_per_token == 5 * (2 + 2) + 8
    # measured on disk: the rows plus the shard's header
    assert again.bytes_per_token <= summary["bytes_per_token"] < again.bytes_per_token + 1024 / BLOCK


def test_partial_rows_and_mixed_batches_run_the_teacher(setup):
    _, teacher, _, store, blocks = setup
    view = store.view(teacher)
    out = view.signals(batch_of(blocks[:3], length=5), online(teacher))
    assert view.stats.misses == 2 and view.stats.bypassed == 1 and out.topk.logp.shape == (3, BLOCK, 5)
    view.flush()
    assert len(store.index) == 2  # the cut row is not stored
    out = view.signals(batch_of(blocks[1:4]), online(teacher))  # one stored, two new: the teacher runs
    assert view.stats.misses == 2 + 3 and view.stats.hits == 0
    view.flush()
    assert len(store.index) == 4


def test_the_reordered_teacher_is_served_and_another_model_is_not(setup):
    from minidisc.elastic import make_elastic
    from minidisc.elastic.estimators import estimate_importance

    _, teacher, _, store, blocks = setup
    import copy

    elastic = make_elastic(copy.deepcopy(teacher))
    batches = [batch_of(blocks[:4])]
    scores, _ = estimate_importance(elastic.model, elastic.family, batches, method="random", seed=0, progress=False)
    elastic.reorder(scores)
    assert store.view(elastic.model).stats.served
    other, _ = tiny_llama(seed=9)
    view = store.view(other)
    assert not view.stats.served
    out = view.signals(batch_of(blocks[:2]), online(other))
    assert out.topk is None and out.logits is not None and view.stats.bypassed == 2


def test_refusals_and_overwrite(setup):
    tmp_path, teacher, tokenizer, store, blocks = setup
    view = store.view(teacher)
    view.signals(batch_of(blocks[:2]), online(teacher))
    view.flush()
    folder = store.folder
    reopen = lambda **kw: LMTeacherCacheStore(tmp_path / "cache", teacher, tokenizer, block_size=BLOCK, top_k=5, **kw)

    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "top_k": 7}))
    with pytest.raises(ModelError, match="another top_k.*--overwrite.*--no-teacher-cache"):
        reopen()
    (folder / "meta.json").write_text(json.dumps(meta))

    from safetensors.torch import load_file, save_file

    probe = load_file(str(folder / "probe.safetensors"))
    save_file({**probe, "logp": probe["logp"] + 0.1}, str(folder / "probe.safetensors"))
    with pytest.raises(ModelError, match="stale"):
        reopen()
    rebuilt = reopen(overwrite=True)  # replaced: empty again
    assert rebuilt.index == {} and not list(folder.glob("shard-*"))

    view = rebuilt.view(teacher)
    view.signals(batch_of(blocks[:2]), online(teacher))
    view.flush()
    index = json.loads((folder / "index.json").read_text())
    keys = list(index["index"])
    swapped = {keys[0]: index["index"][keys[1]], keys[1]: index["index"][keys[0]]}
    (folder / "index.json").write_text(json.dumps({"index": swapped}))
    with pytest.raises(ModelError, match="stale.*other tokens"):
        reopen().view(teacher).signals(batch_of(blocks[:2]), online(teacher))

    shard = next(folder.glob("shard-*"))
    shard.unlink()
    with pytest.raises(ModelError, match="lacks its shard"):
        reopen()
    shutil.rmtree(folder)
    assert reopen().index == {}  # a deleted cache is rebuilt


def test_other_keys_get_their_own_folder(setup):
    tmp_path, teacher, tokenizer, store, _ = setup
    other_k = LMTeacherCacheStore(tmp_path / "cache", teacher, tokenizer, block_size=BLOCK, top_k=6)
    other_t = LMTeacherCacheStore(tmp_path / "cache", teacher, tokenizer, block_size=BLOCK, top_k=5, temperature=2.0)
    assert len({store.folder, other_k.folder, other_t.folder}) == 3
    from minidisc.errors import ConfigError

    with pytest.raises(ConfigError, match="cache-top-k"):
        LMTeacherCacheStore(tmp_path / "cache", teacher, tokenizer, block_size=BLOCK, top_k=1000)


def test_a_sampled_tail_is_stored_read_back_and_keyed(setup):
    tmp_path, teacher, tokenizer, store, blocks = setup
    sampled = LMTeacherCacheStore(tmp_path / "cache", teacher, tokenizer, block_size=BLOCK, top_k=5, tail_samples=3)
    assert sampled.folder != store.folder
    # the key of a cache without samples is the one it had before the option existed
    assert "tail_samples" not in json.loads((store.folder / "meta.json").read_text())
    assert json.loads((sampled.folder / "meta.json").read_text())["tail_samples"] == 3
    view = sampled.view(teacher)
    first = view.signals(batch_of(blocks[:3]), online(teacher))
    view.flush()
    again = LMTeacherCacheStore(tmp_path / "cache", teacher, tokenizer, block_size=BLOCK, top_k=5, tail_samples=3)
    second = again.view(teacher).signals(batch_of(blocks[[2, 0]]), lambda b: pytest.fail("read, not computed"))
    assert torch.equal(second.topk.sample_index, first.topk.sample_index[[2, 0]])
    assert torch.equal(second.topk.sample_logp, first.topk.sample_logp[[2, 0]])
    assert second.topk.sample_logp.dtype == torch.float16
    # a block's draws are its own: computing it in another batch draws the same words
    alone = sampled.view(teacher).signals(batch_of(blocks[[4, 2]]), online(teacher))
    assert torch.equal(alone.topk.sample_index[1], first.topk.sample_index[2])
    assert again.bytes_per_token == (5 + 3) * (2 + 2) + 8 and again.summary()["tail_samples"] == 3
    assert again.supports(build_objective("forward_kl", task_type="causal_lm"))
    assert not again.supports(build_objective("jsd", task_type="causal_lm"))
    assert store.supports(build_objective("jsd", task_type="causal_lm"))
