"""The teacher-output cache: exact equality with the online teacher, what it computes,
its memory bound and disk spill, and its bookkeeping inside the trainer."""

from __future__ import annotations

import pytest
import torch

from minidisc.objectives import build_objective, forward_with_signals
from minidisc.training.teacher_cache import TeacherCacheStore, example_keys


def tiny_bert(layers: int = 2, hidden: int = 32, heads: int = 4, intermediate: int = 64, seed: int = 0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=intermediate, max_position_embeddings=32, num_labels=3)
    return BertForSequenceClassification(config).eval()


def batch_of(rows: list[list[int]], labels: list[int]) -> dict[str, torch.Tensor]:
    """Right-padded batch (pad id 0) of the given token rows."""
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
            "labels": torch.tensor(labels)}


ROWS = [[2, 15, 16, 17, 3], [2, 20, 21, 3], [2, 30, 31, 32, 33, 34, 3], [2, 40, 3]]


class Counting:
    """The online teacher, counting the examples (rows) it computes."""

    def __init__(self, teacher, hidden: bool) -> None:
        self.teacher, self.hidden, self.rows = teacher, hidden, 0

    def __call__(self, inputs):
        self.rows += inputs["input_ids"].shape[0]
        with torch.no_grad():
            return forward_with_signals(self.teacher, inputs, need_hidden_states=self.hidden)


@pytest.mark.parametrize("objective", ["minidisc", "kd", "pkd"])
def test_cached_loss_is_bit_identical_and_the_teacher_runs_once(objective):
    teacher, student = tiny_bert(seed=0), tiny_bert(seed=1).train()
    loss_fn = build_objective(objective, task_type="classification")
    batch = batch_of(ROWS, [0, 1, 2, 1])
    online = Counting(teacher, loss_fn.needs_hidden_states)
    cache = TeacherCacheStore().view(teacher)

    def loss(teacher_signals):
        torch.manual_seed(3)  # the same student dropout in both calls
        s = forward_with_signals(student, batch, need_hidden_states=loss_fn.needs_hidden_states)
        return loss_fn(s, teacher_signals, batch)[0]

    reference = loss(online(batch))
    first = loss(cache.signals(batch, online, need_hidden_states=loss_fn.needs_hidden_states))
    second = loss(cache.signals(batch, online, need_hidden_states=loss_fn.needs_hidden_states))
    assert torch.equal(first, reference) and torch.equal(second, reference)
    assert online.rows == 4 + 4  # the reference call + the cache's single miss pass; the hit computed nothing
    assert (cache.stats.hits, cache.stats.misses) == (4, 4)


def test_partial_hit_computes_only_the_new_examples():
    teacher = tiny_bert()
    online = Counting(teacher, hidden=True)
    cache = TeacherCacheStore().view(teacher)
    cache.signals(batch_of(ROWS[:2], [0, 1]), online, need_hidden_states=True)
    mixed = batch_of([ROWS[1], ROWS[2], ROWS[0]], [1, 2, 0])
    got = cache.signals(mixed, online, need_hidden_states=True)
    assert online.rows == 2 + 1  # only ROWS[2] was new
    want = Counting(teacher, hidden=True)(mixed)
    mask = mixed["attention_mask"].bool()
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-5, atol=1e-6)
    for g, w in zip(got.hidden_states, want.hidden_states):
        torch.testing.assert_close(g[mask], w[mask], rtol=1e-5, atol=1e-5)
        assert torch.all(g[~mask] == 0)  # padded positions are zeros (never read by objectives)


def test_hit_saves_the_teacher_forward_flops_of_the_batch():
    teacher = tiny_bert(layers=2, hidden=32, heads=4, intermediate=64)
    cache = TeacherCacheStore().view(teacher)
    batch = batch_of(ROWS, [0, 1, 2, 1])
    online = Counting(teacher, hidden=False)
    cache.signals(batch, online, need_hidden_states=False)
    cache.signals(batch, online, need_hidden_states=False)
    B, S, h, H, d, n = 4, 7, 32, 4, 8, 64  # by hand: 2 layers of QKV + O + scores/context + FFN
    per_layer = 2 * B * S * h * d * 3 * H + 2 * B * S * H * d * h + 4 * B * S * S * H * d + 2 * B * S * h * n * 2
    assert cache.stats.flops_saved == 2 * per_layer


def test_memory_bound_disk_spill_and_reuse_by_a_new_process(tmp_path):
    teacher = tiny_bert()
    online = Counting(teacher, hidden=True)
    rows = [[2, 10 + i, 11 + i, 3] for i in range(24)]
    batches = [batch_of(rows[i : i + 4], [0] * 4) for i in range(0, 24, 4)]
    store = TeacherCacheStore(tmp_path, max_memory_bytes=4_000)
    view = store.view(teacher)
    reference = [view.signals(b, online, need_hidden_states=True) for b in batches]
    assert store.memory_bytes <= 4_000
    assert any(tmp_path.rglob("shard-*.safetensors"))  # evicted entries went to disk
    view.flush()

    fresh = TeacherCacheStore(tmp_path, max_memory_bytes=4_000).view(teacher)  # e.g. the next stage's process
    before = online.rows
    for b, ref in zip(batches, reference):
        got = fresh.signals(b, online, need_hidden_states=True)
        assert torch.equal(got.logits, ref.logits)
        mask = b["attention_mask"].bool()
        assert all(torch.equal(g[mask], r[mask]) for g, r in zip(got.hidden_states, ref.hidden_states))
    assert online.rows == before  # everything came from memory or disk
    assert fresh.stats.hits == 24


def test_disk_budget_drops_instead_of_writing(tmp_path):
    teacher = tiny_bert()
    store = TeacherCacheStore(tmp_path, max_memory_bytes=2_000, max_disk_bytes=0)
    view = store.view(teacher)
    view.signals(batch_of(ROWS, [0] * 4), Counting(teacher, True), need_hidden_states=True)
    view.flush()
    assert not list(tmp_path.rglob("shard-*.safetensors"))


def test_another_teacher_or_left_padding_never_hits():
    a, b = tiny_bert(seed=0), tiny_bert(seed=5)
    store = TeacherCacheStore()
    batch = batch_of(ROWS, [0] * 4)
    store.view(a).signals(batch, Counting(a, False), need_hidden_states=False)
    other = store.view(b)
    other.signals(batch, Counting(b, False), need_hidden_states=False)
    assert other.stats.hits == 0  # the namespace is the teacher's fingerprint
    left = {k: v.flip(1) if v.dim() == 2 else v for k, v in batch.items()}  # padding on the left
    assert example_keys(left) is None
    view = store.view(a)
    view.signals(left, Counting(a, False), need_hidden_states=False)
    assert view.stats.bypassed == 4 and view.stats.hits == 0


def test_hidden_states_are_required_when_the_objective_needs_them():
    teacher = tiny_bert()
    online = Counting(teacher, hidden=True)
    view = TeacherCacheStore().view(teacher)
    batch = batch_of(ROWS, [0] * 4)
    view.signals(batch, Counting(teacher, hidden=False), need_hidden_states=False)  # logits only stored
    got = view.signals(batch, online, need_hidden_states=True)
    assert online.rows == 4 and got.hidden_states is not None and len(got.hidden_states) == 3


def test_trainer_with_cache_costs_the_same_nominally_and_spends_one_teacher_epoch(tmp_path):
    """Two epochs of distillation: with the cache the teacher runs in epoch 1 only, and the
    nominal teacher FLOPs (actual + saved) equal those of the run without cache."""
    from minidisc.config import DataConfig, TrainConfig
    from minidisc.elastic.model import ElasticModel
    from minidisc.models import ModelSource, load_tokenizer
    from minidisc.training.data import prepare_task_data
    from minidisc.training.distill import Distiller
    from minidisc.training.tracker import CandidateTracker
    from tests.helpers import write_tiny_bert, write_tiny_sst2

    folder = write_tiny_bert(tmp_path / "t")
    data = prepare_task_data(
        DataConfig(task="sst2", data_dir=str(write_tiny_sst2(tmp_path / "g", n_train=32, n_dev=8)), max_length=16),
        load_tokenizer(ModelSource(str(folder))), seed=1,
    )
    cfg = TrainConfig(epochs=2, batch_size=8, eval_batch_size=16, patience=None, seed=1)

    def run(cache):
        from minidisc.models import load_for_task

        teacher = load_for_task(ModelSource(str(folder)), data.task)
        student = load_for_task(ModelSource(str(folder)), data.task)
        spec = ElasticModel(load_for_task(ModelSource(str(folder)), data.task)).full_spec()
        out = tmp_path / ("cached" if cache is not None else "plain")
        return Distiller(data, cfg, teacher_cache=cache).run(teacher, student, {0.0: spec}, CandidateTracker.single(0.0), out)

    plain, cached = run(None), run(TeacherCacheStore())
    stats = cached["teacher_cache"]
    assert (stats["misses"], stats["hits"]) == (32, 32)
    assert cached["teacher_forward_flops"] + stats["flops_saved"] == pytest.approx(plain["teacher_forward_flops"])
    assert cached["teacher_forward_flops"] < 0.6 * plain["teacher_forward_flops"]
    assert cached["student_train_flops"] == plain["student_train_flops"]


def _shards(folder):
    return sorted(folder.rglob("shard-*.safetensors"))


def _example(seed: int, hidden: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {"logits": torch.randn(3, generator=g)}
    if hidden:
        out["hidden.0"] = torch.randn(5, 8, generator=g)
    return out


def test_put_of_an_entry_already_on_disk_writes_no_duplicate_shard(tmp_path):
    store = TeacherCacheStore(tmp_path)
    store.put("t", "a", _example(0))
    store.flush()
    assert len(_shards(tmp_path)) == 1
    store.put("t", "a", _example(0))  # again, in memory and on disk
    store.flush()
    assert len(_shards(tmp_path)) == 1

    # evicted from memory (a budget of 1.5 entries), then put again
    small = TeacherCacheStore(tmp_path / "small", max_memory_bytes=_nbytes_of(_example(0)) * 3 // 2)
    small.put("t", "a", _example(0))
    small.put("t", "b", _example(1))  # evicts "a" to disk
    written = len(_shards(tmp_path / "small"))
    assert written == 1 and ("t", "a") not in small._memory
    small.put("t", "a", _example(0))
    small.flush()
    assert len(_shards(tmp_path / "small")) == written + 1  # only "b" was new
    # another process (a fresh store on the same folder) puts what the index already has
    other = TeacherCacheStore(tmp_path / "small")
    other.put("t", "a", _example(0))
    other.put("t", "b", _example(1))
    other.flush()
    assert len(_shards(tmp_path / "small")) == written + 1


def test_put_with_a_new_field_rewrites_the_entry_and_keeps_the_old_fields(tmp_path):
    store = TeacherCacheStore(tmp_path)
    store.put("t", "a", _example(0, hidden=False))
    store.flush()
    store.put("t", "a", {"hidden.0": _example(0)["hidden.0"]})  # the objective now reads hidden states
    store.flush()
    assert len(_shards(tmp_path)) == 2
    fresh = TeacherCacheStore(tmp_path)
    [got] = fresh.get("t", ["a"], ("logits", "hidden.0"))
    assert got is not None
    assert torch.equal(got["logits"], _example(0)["logits"]) and torch.equal(got["hidden.0"], _example(0)["hidden.0"])


def _nbytes_of(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def test_fingerprint_names_a_precision_other_than_fp32(monkeypatch):
    """Outputs a bf16 run cached are never served to an fp32 run of the same teacher."""
    from minidisc import runtime
    from minidisc.training.teacher_cache import teacher_fingerprint

    model = torch.nn.Linear(3, 2)
    monkeypatch.setattr(runtime, "_current", runtime.resolve("fp32"))
    fp32 = teacher_fingerprint(model)
    monkeypatch.setattr(runtime, "_current", runtime.resolve("bf16"))
    assert teacher_fingerprint(model) != fp32
