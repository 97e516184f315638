"""Causal-LM pretraining of LLaMA-family students (tiny random decoders with grouped-query
attention): exact budgets with the lm_head on every position, scratch and KD losses,
refusal of encoder-only strategies, resume, runs-file records.

Expected FLOPs are computed here by hand from the tiny configs (not with the library's
counters): per layer and row of L tokens with width h = 32, head size 8, 4 query and 2
key/value heads, FFN 64 (3 matrices): Q/K/V 2·L·h·8·(4 + 2·2), O 2·L·32·h, scores and
context 4·L²·32, FFN 2·L·h·64·3; the lm_head 2·h·V per position (no transform).
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from minidisc.cli import app
from minidisc.errors import ConfigError
from minidisc.fileio import read_json
from minidisc.models import resolve_model
from minidisc.objectives import Signals, build_objective, label_loss
from minidisc.pretrain.config import StudentConfig
from minidisc.pretrain.data import CausalStream, causal_heldout_batch
from minidisc.pretrain.evaluate import heldout_lm_loss
from minidisc.pretrain.forward import causal_view, lm_signals, next_token_positions
from minidisc.pretrain.run import prepare_arm, run_pretrain
from minidisc.pretrain.student import build_student, load_teacher
from minidisc.scaling.records import read_run_records
from minidisc.tasks.lm_types import CAUSAL_LM, MASKED_LM, lm_type_of
from tests.helpers import interrupt_at_step
from tests.pretrain_helpers import (
    tiny_config,
    tiny_decoder_tokenizer,
    write_corpus,
    write_decoder_teacher,
    write_teacher,
)

L, H, V = 16, 32, len(tiny_decoder_tokenizer())
runner = CliRunner()


def layer_flops(length: int = L) -> int:
    qkv = 2 * length * H * 8 * (4 + 2 * 2)
    out = 2 * length * 32 * H
    attention = 4 * length * length * 32
    ffn = 2 * length * H * 64 * 3
    return qkv + out + attention + ffn


HEAD = 2 * H * V  # per position, every position of the padded row
STUDENT_ROW = 3 * (2 * layer_flops() + L * HEAD)  # 2-layer student, forward + backward
TEACHER_ROW = 4 * layer_flops() + L * HEAD  # 4-layer teacher, forward


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoder")
    return root, write_decoder_teacher(root / "teacher"), write_corpus(root / "corpus.txt")


def run(files, name, strategy, **changes):
    root, teacher, corpus = files
    out = run_pretrain(tiny_config(teacher, corpus, strategy, **changes), root / name)
    return read_json(out.path / "report.json")


@pytest.fixture(scope="module")
def token_runs(files):
    """scratch and kd on the same 200-token budget (12 whole rows + 8 tokens)."""
    return {s: run(files, f"tokens-{s}", s) for s in ("scratch", "kd")}


# --- the LM type and the student ---------------------------------------------------------


def test_lm_type_follows_the_architecture(files):
    from minidisc.models import load_config

    _, teacher, _ = files
    bert = write_teacher(files[0] / "bert")
    assert lm_type_of(load_config(resolve_model(str(teacher)))) is CAUSAL_LM
    assert lm_type_of(load_config(resolve_model(str(bert)))) is MASKED_LM


def test_default_student_keeps_the_teachers_kv_grouping(files):
    t = load_teacher(resolve_model(str(files[1])), seed=0).model.config
    student, layers = build_student(t, StudentConfig(), seed=0)
    c = student.config
    assert type(student).__name__ == "LlamaForCausalLM" and layers is None
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads) == (2, 32, 4, 2)
    assert c.head_dim == 8 and c.vocab_size == V
    wide, _ = build_student(t, StudentConfig(hidden=48, heads=6), seed=0)  # 6 heads in groups of 2
    assert (wide.config.num_key_value_heads, wide.config.head_dim, wide.config.intermediate_size) == (3, 8, 96)
    odd, _ = build_student(t, StudentConfig(hidden=24, heads=3), seed=0)  # 2 does not divide 3: one KV per head
    assert odd.config.num_key_value_heads == 3
    mqa, _ = build_student(t, StudentConfig(kv_heads=1), seed=0)
    assert mqa.model.layers[0].self_attn.k_proj.weight.shape == (8, 32)  # one key head of size 8
    with pytest.raises(ConfigError, match="do not divide the 4 query heads"):
        build_student(t, StudentConfig(kv_heads=3), seed=0)


def test_kv_heads_are_refused_for_an_encoder(files):
    bert = load_teacher(resolve_model(str(write_teacher(files[0] / "bert-kv"))), seed=0).model.config
    with pytest.raises(ConfigError, match="drop it"):
        build_student(bert, StudentConfig(kv_heads=2), seed=0)


def test_init_from_teacher_copies_layers_embeddings_norm_and_head(files):
    teacher = load_teacher(resolve_model(str(files[1])), seed=0).model
    student, layers = build_student(teacher.config, StudentConfig(init_from_teacher="uniform"), seed=0,
                                    teacher=teacher)
    assert layers == [0, 2]
    s_state, t_state = student.state_dict(), teacher.state_dict()
    for s_index, t_index in enumerate(layers):
        names = [k for k in t_state if k.startswith(f"model.layers.{t_index}.")]
        assert names
        for name in names:
            assert torch.equal(s_state[name.replace(f".{t_index}.", f".{s_index}.", 1)], t_state[name]), name
    for name in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert torch.equal(s_state[name], t_state[name]), name
    assert student.lm_head.weight is student.model.embed_tokens.weight  # still tied
    with pytest.raises(ConfigError, match="kv-heads 1 differs"):
        build_student(teacher.config, StudentConfig(init_from_teacher="all", kv_heads=1), seed=0, teacher=teacher)


def test_an_untied_teacher_gives_an_untied_student_with_both_matrices_copied(files, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(files[1])
    config.tie_word_embeddings = False
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "untied")
    teacher = load_teacher(resolve_model(str(tmp_path / "untied")), seed=0).model
    assert not torch.equal(teacher.lm_head.weight, teacher.model.embed_tokens.weight)
    copied, _ = build_student(teacher.config, StudentConfig(init_from_teacher="0,3"), seed=0, teacher=teacher)
    assert copied.lm_head.weight is not copied.model.embed_tokens.weight
    assert torch.equal(copied.lm_head.weight, teacher.lm_head.weight)
    assert torch.equal(copied.model.embed_tokens.weight, teacher.model.embed_tokens.weight)


# --- data, forward, losses ---------------------------------------------------------------


def test_causal_stream_labels_every_real_token_even_when_pad_is_eos():
    tok = tiny_decoder_tokenizer()
    tok.pad_token = tok.eos_token  # as minidisc.models.load_tokenizer does for decoders
    blocks = torch.randint(2, V, (5, 10)).numpy()
    blocks[:, 4] = tok.eos_token_id  # a document boundary inside the block
    stream = CausalStream(blocks, tok, seed=3, rows=4, last_tokens=6)
    whole, cut = stream[0], stream[3]
    assert torch.equal(whole["input_ids"], whole["labels"]) and int(whole["attention_mask"].sum()) == 10
    assert cut["attention_mask"].tolist() == [1] * 6 + [0] * 4
    assert (cut["labels"][6:] == -100).all() and (cut["input_ids"][6:] == tok.eos_token_id).all()
    assert cut["labels"][4] == tok.eos_token_id  # the real EOS keeps its label; only padding is ignored
    assert next_token_positions(cut["attention_mask"][None]).tolist() == [[True] * 5 + [False] * 5]
    held = causal_heldout_batch(blocks, tok)
    assert torch.equal(held["input_ids"], torch.as_tensor(blocks)) and (held["labels"] != -100).all()


@pytest.fixture(scope="module")
def decoder_batch(files):
    tok = tiny_decoder_tokenizer()
    blocks = torch.randint(2, V, (6, 12)).numpy()
    stream = CausalStream(blocks, tok, seed=3, rows=4, last_tokens=7)  # last row padded
    rows = [stream[i] for i in range(4)]
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def test_scratch_loss_and_heldout_loss_equal_the_models_own(files, decoder_batch):
    model = AutoModelForCausalLM.from_pretrained(files[1]).eval()
    with torch.no_grad():
        reference = model(**decoder_batch)  # LlamaForCausalLM: shifted CE over labels != -100
        signals = lm_signals(model, decoder_batch, "all")
        ours = label_loss(signals.logits, causal_view(decoder_batch), "causal_lm")
    torch.testing.assert_close(signals.logits, reference.logits)
    torch.testing.assert_close(ours, reference.loss)
    held = heldout_lm_loss(model, decoder_batch, batch_size=3, lm=CAUSAL_LM)  # two chunks
    assert held == pytest.approx(float(reference.loss), rel=1e-5)


def test_kd_is_zero_when_the_student_is_the_teacher(files, decoder_batch):
    model = AutoModelForCausalLM.from_pretrained(files[1]).eval()
    other = build_student(model.config, StudentConfig(), seed=5)[0].eval()
    objective = build_objective("kd", task_type="causal_lm", alpha=0.5)
    view = causal_view(decoder_batch)
    with torch.no_grad():
        t = lm_signals(model, decoder_batch, "all")
        same, same_parts = objective(lm_signals(model, decoder_batch, "all"), t, view)
        diff, diff_parts = objective(lm_signals(other, decoder_batch, "all"), t, view)
    assert t.logits.shape == (4, 12, V)
    assert same_parts["kd"] == pytest.approx(0.0, abs=1e-6)
    assert float(same) == pytest.approx(0.5 * same_parts["label"], abs=1e-6)
    assert diff_parts["kd"] > 1e-4 and torch.isfinite(diff)


def test_kd_averages_over_next_token_positions(files, decoder_batch):
    model = AutoModelForCausalLM.from_pretrained(files[1]).eval()
    other = build_student(model.config, StudentConfig(), seed=5)[0].eval()
    with torch.no_grad():
        s, t = (m(**{k: decoder_batch[k] for k in ("input_ids", "attention_mask")}).logits for m in (other, model))
    kd = build_objective("kd", task_type="causal_lm", alpha=1.0)
    loss, _ = kd(Signals(logits=s), Signals(logits=t), causal_view(decoder_batch))
    chosen = next_token_positions(decoder_batch["attention_mask"])
    log_t, log_s = t.log_softmax(-1)[chosen], s.log_softmax(-1)[chosen]
    by_hand = (log_t.exp() * (log_t - log_s)).sum(-1).mean()
    assert int(chosen.sum()) == 3 * 11 + 6
    torch.testing.assert_close(loss, by_hand)


# --- budgets -----------------------------------------------------------------------------


def test_token_budget_is_exact_and_flops_match_the_hand_count(token_runs):
    scratch, kd = token_runs["scratch"], token_runs["kd"]
    for report in (scratch, kd):
        c = report["compute"]
        assert report["lm_type"] == "causal_lm"
        assert (c["tokens"], c["sequences"], c["steps"], c["matches_plan"]) == (200, 13, 4, True)
        assert c["student_flops"] == 13 * STUDENT_ROW  # the cut row is padded: full cost
    assert scratch["compute"]["teacher_flops"] == 0
    assert kd["compute"]["teacher_flops"] == 13 * TEACHER_ROW
    assert kd["head_modes"] == {"student": "all", "teacher": "all"}
    assert scratch["head_modes"] == {"student": "all", "teacher": "none"}
    assert kd["compute"]["teacher_share"] == pytest.approx(TEACHER_ROW / (STUDENT_ROW + TEACHER_ROW))
    assert kd["heldout"]["heldout_scored_tokens"] == 2 * (L - 1)  # two held-out blocks
    assert kd["teacher"]["kv_heads"] == 2 and kd["student"]["kv_heads"] == 2


def test_flops_budget_stops_within_one_row(files):
    budget = 10 * (STUDENT_ROW + TEACHER_ROW) + (STUDENT_ROW + TEACHER_ROW) // 2
    report = run(files, "flops-kd", "kd", budget={"flops": float(budget)})
    c = report["compute"]
    assert (c["sequences"], c["tokens"], c["steps"]) == (10, 10 * L, 3)
    assert c["train_flops"] == 10 * (STUDENT_ROW + TEACHER_ROW) <= budget
    assert budget - c["train_flops"] < report["plan"]["next_row_flops"] == STUDENT_ROW + TEACHER_ROW
    assert c["matches_plan"] is True


def test_eval_flops_count_the_head_on_the_scored_positions(token_runs):
    c, curve = token_runs["scratch"]["compute"], token_runs["scratch"]["curve"]
    each = 2 * 2 * layer_flops() + 2 * (L - 1) * HEAD  # two held-out rows, head on 15 positions each
    assert c["eval_flops"] == len(curve) * each


# --- training ----------------------------------------------------------------------------


def test_scratch_and_kd_train_losses_decrease(files):
    common = {"optim": {"learning_rate": 1e-2, "batch_size": 4}, "budget": {"tokens": 1600},
              "eval_every_tokens": 320}
    for strategy, options in (("scratch", {}), ("kd", {"objective_options": {"alpha": 1.0}})):
        curve = run(files, f"long-{strategy}", strategy, **common, **options)["curve"]
        losses = [p["train_loss"] for p in curve[1:]]
        assert all(torch.isfinite(torch.tensor(p["loss"])) for p in curve)
        assert losses[-1] < losses[0], (strategy, losses)


def test_a_copy_of_the_teacher_starts_with_zero_kd_loss(files):
    report = run(files, "copy", "kd", student={"init_from_teacher": "all"}, objective_options={"alpha": 1.0},
                 eval_every_tokens=64)
    first = report["curve"][1]
    assert report["student"]["layers"] == 4 and report["student"]["init_from_teacher_layers"] == [0, 1, 2, 3]
    assert first["step"] == 1 and first["train_loss"] == pytest.approx(0.0, abs=1e-7)
    assert report["curve"][0]["loss"] == pytest.approx(report["teacher"]["heldout_loss"], abs=1e-6)


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["distilbert", "tinybert", "minilm", "minilmv2", "pkd"])
def test_encoder_only_strategies_are_refused_before_writing_anything(files, strategy):
    root, teacher, corpus = files
    with pytest.raises(ConfigError, match="encoder \\(masked-LM\\) strategy") as err:
        run_pretrain(tiny_config(teacher, corpus, strategy), root / f"refused-{strategy}")
    assert "scratch or kd" in str(err.value)
    assert not (root / f"refused-{strategy}").exists()


@pytest.mark.parametrize("student", [{"init_from_teacher": "all", "freeze_encoder": True},
                                     {"head_bias_from_corpus": True}])
def test_mlm_head_options_are_refused_for_decoders(files, student):
    _, teacher, corpus = files
    with pytest.raises(ConfigError, match="MLM head"):
        prepare_arm(tiny_config(teacher, corpus, "scratch", student=student))


def test_a_bare_untied_decoder_is_refused_for_kd(files, tmp_path):
    from transformers import LlamaConfig, LlamaModel

    _, teacher, corpus = files
    config = LlamaConfig.from_pretrained(teacher)
    config.tie_word_embeddings = False
    LlamaModel(config).save_pretrained(tmp_path / "bare")
    tiny_decoder_tokenizer().save_pretrained(tmp_path / "bare")
    with pytest.raises(ConfigError, match="no trained causal-LM head"):
        run_pretrain(tiny_config(tmp_path / "bare", corpus, "kd"), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    run_pretrain(tiny_config(tmp_path / "bare", corpus, "scratch", budget={"tokens": 32}), tmp_path / "scratch")


# --- resume and runs file ----------------------------------------------------------------


def test_interrupted_decoder_kd_resumes_to_the_same_student(files):
    root, teacher, corpus = files
    cfg = tiny_config(teacher, corpus, "kd", checkpoint_steps=2, eval_every_tokens=64)
    with pytest.raises(KeyboardInterrupt):
        run_pretrain(cfg, root / "resumed", callbacks=[interrupt_at_step(3)])
    assert (root / "resumed" / "checkpoints" / "checkpoint-2").is_dir()
    resumed = read_json(run_pretrain(cfg, root / "resumed").path / "report.json")
    reference = read_json(run_pretrain(cfg, root / "reference").path / "report.json")
    assert resumed["compute"]["resumed_from"] == "checkpoint-2"
    for key in ("tokens", "train_flops", "student_flops", "teacher_flops"):
        assert resumed["compute"][key] == reference["compute"][key]
    assert resumed["heldout"]["final_loss"] == pytest.approx(reference["heldout"]["final_loss"], abs=1e-6)
    a = load_file(root / "resumed" / "student" / "model.safetensors")
    b = load_file(root / "reference" / "student" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name])
    assert type(AutoModelForCausalLM.from_pretrained(root / "resumed" / "student")).__name__ == "LlamaForCausalLM"


def test_log_runs_records_decoder_arms(files):
    root, teacher, corpus = files
    runs = root / "decoder-runs.jsonl"
    base = ["pretrain", "--teacher", str(teacher), "--corpus", str(corpus), "--eval-blocks", "2",
            "--block-size", "16", "--batch-size", "4", "--budget-tokens", "96", "--log-runs", str(runs)]
    for strategy in ("scratch", "kd"):
        result = runner.invoke(app, [*base, "--strategy", strategy, "--student-kv-heads", "1",
                                     "--output", str(root / f"log-{strategy}")])
        assert result.exit_code == 0, result.output
        assert "held-out causal-LM loss" in result.output
    sup, dist = read_run_records(runs)
    s, k = (read_json(root / f"log-{x}" / "report.json") for x in ("scratch", "kd"))
    # 2 layers: Q,K,V,O 32·8·(4 + 2) + 32·32 + FFN 3·32·64 + 2 RMSNorms 64, plus the final norm 32
    params = 2 * (32 * 8 * 6 + 32 * 32 + 3 * 32 * 64 + 64) + 32
    assert (sup.kind, sup.student_params, sup.student_tokens) == ("supervised", params, 96)
    assert sup.student_loss == pytest.approx(s["heldout"]["final_loss"])
    assert (dist.kind, dist.student_tokens) == ("distillation", 96)
    assert dist.teacher_loss == pytest.approx(k["teacher"]["heldout_loss"])
    assert dist.teacher_params == 4 * (32 * 8 * 8 + 32 * 32 + 3 * 32 * 64 + 64) + 32
    assert k["student"]["kv_heads"] == 1


def test_a_padding_token_that_is_also_eos_trains_like_any_word(files):
    """Packed text writes EOS between documents and SmolLM2 pads with EOS: a zero, frozen
    padding row gave a block starting with it a zero residual stream and, 30 layers deep,
    NaN gradients at the second step of a from-scratch run."""
    import torch

    t = load_teacher(resolve_model(str(files[1])), seed=0).model.config
    t.pad_token_id = t.eos_token_id = 1
    student, _ = build_student(t, StudentConfig(layers=30), seed=0)
    embedding = student.get_input_embeddings()
    assert embedding.padding_idx is None and embedding.weight[1].abs().sum() > 0
    ids = torch.tensor([[1, 5, 6, 7, 8, 9, 10, 11]])
    student(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    assert embedding.weight.grad[1].abs().sum() > 0
