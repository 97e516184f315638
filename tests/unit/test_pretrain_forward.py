"""MLM head on masked positions only: same logits and losses as the full model."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForMaskedLM

from minidisc.errors import ConfigError
from minidisc.objectives import build_objective, label_loss
from minidisc.pretrain.data import MaskedStream
from minidisc.pretrain.forward import lm_signals, masked_view
from minidisc.pretrain.run import head_modes
from tests.elastic_helpers import randomize_
from tests.pretrain_helpers import tiny_tokenizer, write_teacher


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = write_teacher(tmp_path_factory.mktemp("teacher"))
    teacher = randomize_(AutoModelForMaskedLM.from_pretrained(folder), seed=1).eval()
    student = randomize_(AutoModelForMaskedLM.from_pretrained(folder), seed=2).eval()
    return teacher, student


@pytest.fixture(scope="module")
def batch():
    tok = tiny_tokenizer()
    blocks = torch.randint(5, len(tok), (6, 12)).numpy()
    blocks[:, 0], blocks[:, -1] = tok.cls_token_id, tok.sep_token_id
    stream = MaskedStream(blocks, tok, 0.3, seed=3, rows=4, last_tokens=7)  # last row padded
    rows = [stream[i] for i in range(4)]
    out = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
    assert (out["labels"] != -100).sum() > 3
    return out


def full_logits(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_masked_and_all_head_modes_match_the_full_model(models, batch):
    _, student = models
    with torch.no_grad():
        reference = full_logits(student, batch)
        masked = lm_signals(student, batch, "masked").logits
        everywhere = lm_signals(student, batch, "all").logits
        none = lm_signals(student, batch, "none")
    chosen = batch["labels"] != -100
    assert masked.shape == (1, int(chosen.sum()), reference.shape[-1])
    torch.testing.assert_close(masked[0], reference[chosen])
    torch.testing.assert_close(everywhere, reference)
    assert none.logits is None and len(none.hidden_states) == student.config.num_hidden_layers + 1


def test_scratch_loss_equals_the_models_own_mlm_loss(models, batch):
    _, student = models
    with torch.no_grad():
        reference = student(**batch).loss  # BertForMaskedLM's CE over labels != -100
        logits = lm_signals(student, batch, "masked").logits
    torch.testing.assert_close(label_loss(logits, masked_view(batch), "masked_lm"), reference)


@pytest.mark.parametrize("options", [{"alpha": 1.0, "temperature": 2.0}, {"alpha": 0.5}])
def test_kd_on_masked_view_equals_kd_on_full_logits(models, batch, options):
    teacher, student = models
    objective = build_objective("kd", task_type="masked_lm", **options)
    with torch.no_grad():
        s_sparse, t_sparse = (lm_signals(m, batch, "masked") for m in (student, teacher))
        s_full, t_full = (lm_signals(m, batch, "all") for m in (student, teacher))
    sparse, _ = objective(s_sparse, t_sparse, masked_view(batch))
    full, _ = objective(s_full, t_full, batch)  # positions: labels != -100
    torch.testing.assert_close(sparse, full)
    # hand check for alpha=1: tau² · mean over masked positions of KL(teacher || student)
    if options["alpha"] == 1.0:
        tau = options["temperature"]
        chosen = batch["labels"] != -100
        t_log = torch.log_softmax(t_full.logits[chosen] / tau, -1)
        s_log = torch.log_softmax(s_full.logits[chosen] / tau, -1)
        kl = (t_log.exp() * (t_log - s_log)).sum(-1).mean() * tau**2
        torch.testing.assert_close(sparse, kl)


@pytest.mark.parametrize(
    ("name", "options"),
    [("distilbert", {}), ("distilbert", {"temperature": 1.0, "alpha_mlm": 0.0}), ("pkd", {}), ("pkd", {"alpha": 1.0})],
)
def test_hidden_state_objectives_on_masked_view_equal_full_logits(models, batch, name, options):
    # DistilBERT's cosine term and PKD's [CLS] term read (B, L) hidden states while their
    # logit terms read (1, N, V) gathered logits: both must see the right positions.
    teacher, student = models
    objective = build_objective(name, task_type="masked_lm", **options)
    with torch.no_grad():
        s_sparse, t_sparse = (lm_signals(m, batch, "masked") for m in (student, teacher))
        s_full, t_full = (lm_signals(m, batch, "all") for m in (student, teacher))
    sparse, sparse_parts = objective(s_sparse, t_sparse, masked_view(batch))
    full, full_parts = objective(s_full, t_full, batch)
    torch.testing.assert_close(sparse, full)
    assert sparse_parts == pytest.approx(full_parts)
    assert ("cos" if name == "distilbert" else "patient") in full_parts


def test_positions_all_refuses_masked_position_logits(models, batch):
    teacher, student = models
    objective = build_objective("kd", task_type="masked_lm", positions="all")
    with torch.no_grad():
        s_sparse, t_sparse = (lm_signals(m, batch, "masked") for m in (student, teacher))
    with pytest.raises(ConfigError, match="did not run"):
        objective(s_sparse, t_sparse, masked_view(batch))


@pytest.mark.parametrize(
    ("strategy", "options", "modes"),
    [
        ("scratch", {}, ("masked", "none")),
        ("kd", {}, ("masked", "masked")),
        ("kd", {"positions": "all"}, ("all", "all")),
        ("distilbert", {}, ("masked", "masked")),
        ("distilbert", {"positions": "all"}, ("all", "all")),
        ("pkd", {}, ("masked", "masked")),
        ("pkd", {"positions": "all"}, ("all", "all")),
        ("tinybert", {}, ("none", "none")),
        ("minilm", {}, ("none", "none")),
        ("minilmv2", {}, ("none", "none")),
    ],
)
def test_head_mode_follows_the_objectives_positions(strategy, options, modes):
    objective = None if strategy == "scratch" else build_objective(strategy, task_type="masked_lm", **options)
    assert head_modes(objective) == modes
