"""Candidate snapshots on disk (training/snapshots.py): the round trip is exact, a file
that does not fit its shape is refused, and a stage leaves no snapshot files behind."""

from __future__ import annotations

import pytest
import torch

from minidisc.elastic import SubnetSpec, make_elastic
from minidisc.training.snapshots import MemorySnapshot, SnapshotStore
from tests.elastic_helpers import random_batch, randomize_, tiny_bert, tiny_llama

SPECS = {
    "bert": SubnetSpec((0, 3, 1), (16, 0, 40), sparsity=0.5),  # a layer without heads, one without units
    "llama": SubnetSpec((0, 2, 4), (16, 0, 32), sparsity=0.5),  # tied embeddings, GQA
}


def _model(kind: str):
    return randomize_(tiny_bert() if kind == "bert" else tiny_llama())


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_snapshot_round_trip_is_bit_identical(kind, tmp_path):
    em = make_elastic(_model(kind))
    spec = SPECS[kind]
    taken = em.extract(spec)
    store = SnapshotStore(tmp_path / "snapshots", rank=0)
    snapshot = store.save("s0.5", taken, rebuild=lambda: em.extract(spec))

    with torch.no_grad():  # the elastic model trains on after the snapshot: the snapshot must not follow
        for p in em.model.parameters():
            p.add_(1.0)
    loaded = snapshot.load()
    expected, got = taken.state_dict(), loaded.state_dict()
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, got[name]), name
    batch = random_batch()
    taken.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(taken(**batch).logits, loaded(**batch).logits)


def test_snapshot_of_another_shape_is_refused_and_each_process_clears_its_own(tmp_path):
    em = make_elastic(_model("bert"))
    store = SnapshotStore(tmp_path / "snapshots", rank=1)
    snapshot = store.save("s0.5", em.extract(SPECS["bert"]), rebuild=lambda: em.extract(SubnetSpec.uniform(3, 4, 48)))
    assert snapshot.path.name == "s0.5.rank1.safetensors"
    with pytest.raises(RuntimeError):
        snapshot.load()
    other = SnapshotStore(tmp_path / "snapshots", rank=0)  # another process of the launch
    other.save("s0.5", em.extract(SPECS["bert"]), rebuild=lambda: em.extract(SPECS["bert"]))
    store.clear()  # its own file only: the other process may still be reading its own
    assert [p.name for p in (tmp_path / "snapshots").iterdir()] == ["s0.5.rank0.safetensors"]
    other.clear()  # the last one out removes the folder
    assert not (tmp_path / "snapshots").exists()


def test_memory_snapshot_returns_its_model():
    model = tiny_bert()
    assert MemorySnapshot(model).load() is model
