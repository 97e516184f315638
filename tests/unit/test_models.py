"""Loading models for a task: heads sized for the task, GGUF teachers as float models."""

from __future__ import annotations

import pytest
import torch


def test_teacher_head_for_another_task_is_reinitialised_or_refused(tmp_path):
    """An SST-2-sized head loads for MNLI with a fresh 3-way head (fine-tuning trains it);
    as an already fine-tuned teacher (`require_head`) it is refused with what to do."""
    from minidisc.errors import ModelError
    from minidisc.models import ModelSource, load_for_task
    from minidisc.tasks import get_task
    from tests.helpers import write_tiny_bert

    source = ModelSource(str(write_tiny_bert(tmp_path / "sst2-sized")))
    model = load_for_task(source, get_task("mnli"))
    assert model.config.num_labels == 3 and model.classifier.weight.shape[0] == 3
    with pytest.raises(ModelError, match="teacher-finetuned"):
        load_for_task(source, get_task("mnli"), require_head=True)
    model.save_pretrained(tmp_path / "mnli-tuned")
    tuned = load_for_task(ModelSource(str(tmp_path / "mnli-tuned")), get_task("mnli"), require_head=True)
    assert torch.equal(tuned.classifier.weight, model.classifier.weight)
