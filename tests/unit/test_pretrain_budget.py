"""Budgets stop exactly; the FLOPs split adds up; a KD arm pays the teacher's forward.

Expected FLOPs are computed here by hand from the tiny configs (not with the library's
counters): per layer and row of L tokens, Q/K/V/O 4·2·L·h², scores and context
4·L²·h, FFN 2·2·L·h·f; the MLM head 2·h² + 2·h·V per predicted position.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from transformers import BertConfig

from minidisc.compute.meter import ComputeMeter
from minidisc.errors import ConfigError
from minidisc.fileio import read_json
from minidisc.pretrain.budget import BudgetCallback, BudgetPlan, CostModel, plan_budget
from minidisc.pretrain.run import prepare_arm, run_pretrain
from tests.pretrain_helpers import tiny_config, tiny_tokenizer, write_corpus, write_teacher

L, H, F, V = 16, 32, 64, len(tiny_tokenizer())  # block, width, FFN, vocabulary of the tiny models


def layer_flops(length=L, h=H, f=F):
    return 4 * 2 * length * h * h + 4 * length * length * h + 2 * 2 * length * h * f


HEAD = 2 * H * H + 2 * H * V
STUDENT_ENC, TEACHER_ENC = 2 * layer_flops(), 4 * layer_flops()  # student 2 layers, teacher 4


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget")
    return root, write_teacher(root / "teacher"), write_corpus(root / "corpus.txt")


def masked_counts(cfg, rows):
    stream = prepare_arm(cfg).stream
    return [int((stream[i]["labels"] != -100).sum()) for i in range(rows)]


def run(files, name, strategy, **changes):
    root, teacher, corpus = files
    cfg = tiny_config(teacher, corpus, strategy, **changes)
    out = run_pretrain(cfg, root / name)
    return cfg, read_json(out.path / "report.json")


@pytest.fixture(scope="module")
def token_runs(files):
    """scratch, kd and tinybert on the same 200-token budget (12 whole rows + 8 tokens)."""
    return {s: run(files, f"tokens-{s}", s) for s in ("scratch", "kd", "tinybert")}


def test_token_budget_is_met_exactly_with_a_cut_last_row(token_runs):
    _, report = token_runs["scratch"]
    c = report["compute"]
    assert c["tokens"] == 200
    assert c["sequences"] == 13  # 12 × 16 + 8
    assert report["plan"]["last_tokens"] == 8
    assert c["steps"] == math.ceil(13 / 4)
    assert c["matches_plan"] is True
    assert c["epochs"] == pytest.approx(200 / c["corpus_tokens"])
    assert report["curve"][-1]["tokens"] == 200 and report["curve"][0]["tokens"] == 0


def test_scratch_flops_by_hand(token_runs):
    cfg, report = token_runs["scratch"]
    masked = masked_counts(cfg, 13)
    expected = sum(3 * (STUDENT_ENC + m * HEAD) for m in masked)  # the cut row is padded: full encoder cost
    assert report["compute"]["student_flops"] == expected
    assert report["compute"]["teacher_flops"] == 0
    assert report["compute"]["train_flops"] == expected


def test_kd_pays_exactly_the_teacher_forward_per_token(token_runs):
    cfg, scratch = token_runs["scratch"]
    _, kd = token_runs["kd"]
    masked = masked_counts(cfg, 13)
    teacher = sum(TEACHER_ENC + m * HEAD for m in masked)  # teacher head on the masked positions
    c, s = kd["compute"], scratch["compute"]
    assert c["student_flops"] == s["student_flops"]  # same rows, same masks
    assert c["teacher_flops"] == teacher
    assert c["student_flops"] + c["teacher_flops"] == c["train_flops"]
    assert c["flops_per_token"] - s["flops_per_token"] == pytest.approx(teacher / 200)
    assert c["teacher_share"] == pytest.approx(teacher / c["train_flops"])
    assert kd["head_modes"] == {"student": "masked", "teacher": "masked"}


def test_head_runs_where_the_objectives_positions_select(files, token_runs):
    cfg, scratch = token_runs["scratch"]
    _, kd = token_runs["kd"]
    masked = masked_counts(cfg, 13)
    # DistilBERT's KD and MLM terms average over the masked positions: heads there only
    _, distilbert = run(files, "tokens-distilbert", "distilbert")
    assert distilbert["head_modes"] == {"student": "masked", "teacher": "masked"}
    assert distilbert["compute"]["student_flops"] == scratch["compute"]["student_flops"]
    assert distilbert["compute"]["teacher_flops"] == kd["compute"]["teacher_flops"]
    # positions=all: both heads on every position of the 13 rows (the cut row is padded to L)
    _, every = run(files, "tokens-kd-all", "kd", objective_options={"positions": "all"})
    assert every["head_modes"] == {"student": "all", "teacher": "all"}
    assert every["compute"]["student_flops"] == 13 * 3 * (STUDENT_ENC + L * HEAD)
    assert every["compute"]["teacher_flops"] == 13 * (TEACHER_ENC + L * HEAD)
    assert every["compute"]["teacher_flops"] > sum(TEACHER_ENC + m * HEAD for m in masked)
    assert every["compute"]["matches_plan"] is True


def test_general_distillation_runs_no_mlm_head(token_runs):
    _, tiny = token_runs["tinybert"]
    c = tiny["compute"]
    assert tiny["head_modes"] == {"student": "none", "teacher": "none"}
    assert c["student_flops"] == 13 * 3 * STUDENT_ENC
    assert c["teacher_flops"] == 13 * TEACHER_ENC
    assert c["teacher_share"] == pytest.approx(TEACHER_ENC / (3 * STUDENT_ENC + TEACHER_ENC))
    assert tiny["heldout"]["mlm_head_trained"] is False


def test_flops_budget_stops_within_one_row(files):
    _, teacher, corpus = files
    whole_rows = tiny_config(teacher, corpus, "kd", budget={"tokens": 40 * L})  # 40 uncut rows
    masked = masked_counts(whole_rows, 40)
    rows_cost = [3 * (STUDENT_ENC + m * HEAD) + TEACHER_ENC + m * HEAD for m in masked]
    budget = sum(rows_cost[:10]) + rows_cost[10] // 2  # 10 rows fit, the 11th does not
    _, report = run(files, "flops-kd", "kd", budget={"flops": float(budget)})
    c = report["compute"]
    assert c["sequences"] == 10 and c["tokens"] == 10 * L
    assert c["train_flops"] == sum(rows_cost[:10]) <= budget
    assert budget - c["train_flops"] < rows_cost[10] == report["plan"]["next_row_flops"]
    assert c["steps"] == 3 and c["matches_plan"] is True  # 4 + 4 + 2 rows
    assert c["student_flops"] + c["teacher_flops"] == c["train_flops"]


def test_plan_with_constant_row_cost():
    config = BertConfig(hidden_size=8, num_attention_heads=2, num_hidden_layers=1, intermediate_size=16,
                        vocab_size=10)
    cost = CostModel(config, None, "all", "none")
    row = 3 * (layer_flops(4, 8, 16) + 4 * (2 * 8 * 8 + 2 * 8 * 10))
    plan = plan_budget(cost, lambda i, n: 0, kind="flops", budget=7.5 * row, block_size=4, batch_size=3)
    assert (plan.rows, plan.flops, plan.steps, plan.next_row_flops) == (7, 7 * row, 3, row)
    with pytest.raises(ConfigError, match="does not cover one sequence"):
        plan_budget(cost, lambda i, n: 0, kind="flops", budget=row - 1, block_size=4, batch_size=3)
    tokens = plan_budget(cost, lambda i, n: 0, kind="tokens", budget=9, block_size=4, batch_size=3)
    assert (tokens.rows, tokens.last_tokens, tokens.tokens, tokens.steps) == (3, 1, 9, 1)


def test_frozen_encoder_costs_one_forward():
    config = BertConfig(hidden_size=8, num_attention_heads=2, num_hidden_layers=1, intermediate_size=16,
                        vocab_size=10)
    head = 2 * 8 * 8 + 2 * 8 * 10
    frozen = CostModel(config, None, "masked", "none", frozen_encoder=True)
    assert frozen.student_train(1, 4, 2) == layer_flops(4, 8, 16) + 3 * 2 * head
    assert CostModel(config).student_train(1, 4, 2) == 3 * (layer_flops(4, 8, 16) + 2 * head)


def test_budget_callback_guards_and_stops():
    plan = BudgetPlan("tokens", 100.0, 10, 2, rows=10, last_tokens=0, tokens=100, student_flops=0, teacher_flops=0)
    meter = ComputeMeter()
    callback = BudgetCallback(plan, lambda: meter)
    control = SimpleNamespace(should_training_stop=False)
    meter.totals.tokens = 40
    callback.on_step_end(None, SimpleNamespace(global_step=2), control)
    assert control.should_training_stop is False
    meter.totals.tokens = 100
    callback.on_step_end(None, SimpleNamespace(global_step=5), control)
    assert control.should_training_stop is True
    meter.totals.tokens = 101
    with pytest.raises(RuntimeError, match="budget exceeded"):
        callback.on_step_end(None, SimpleNamespace(global_step=5), control)
