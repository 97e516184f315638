"""``minidisc compress --task lm`` on a tiny random LLaMA (grouped-query attention: 4 query
heads over 2 key/value heads; tied embeddings) and toy text: the selection metric and its
pieces by hand, the data slices, the validation, and the command end to end in a fresh
process (stages, report, export, resume after a finished stage, refusals)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from minidisc.errors import ConfigError
from tests.helpers import run_minidisc

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- the metric ------------------------------------------------------------------------


def test_selection_metric_is_the_perplexity_ratio():
    from minidisc.tasks.lm import lm_metrics, selection_metric

    assert selection_metric(2.0, 2.0) == 1.0
    # twice the teacher's perplexity: m = 1/2
    assert selection_metric(1.5 + math.log(2), 1.5) == pytest.approx(0.5)
    # better than the teacher: above 1, not clipped
    assert selection_metric(1.0, 1.5) == pytest.approx(math.exp(0.5))
    m = lm_metrics(nll=30.0, tokens=10, correct=4, reference_loss=2.0)
    assert m == pytest.approx({"main": math.exp(-1.0), "nll": 3.0, "perplexity": math.exp(3.0), "accuracy": 0.4})
    with pytest.raises(ValueError):
        selection_metric(float("nan"), 1.0)


def test_next_token_scores_match_the_models_own_loss():
    from types import SimpleNamespace

    from minidisc.tasks.lm import LMTask
    from minidisc.training.data import lm_metrics_fn, next_token_scores

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.randint(0, 7, (2, 5))
    labels[1, 3:] = -100  # padding of a cut last row
    scores = next_token_scores(logits, labels)
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1), ignore_index=-100)
    valid = labels[:, 1:] != -100
    assert scores.shape == (2, 5, 2)
    assert scores[:, :-1, 0][valid].mean() == pytest.approx(float(ref), rel=1e-5)
    assert scores[:, -1].abs().sum() == 0 and scores[1, 2:, 0].abs().sum() == 0  # no target: 0
    hits = (logits[:, :-1].argmax(-1) == labels[:, 1:].clamp(min=0)) & valid
    metrics = lm_metrics_fn(LMTask(reference_loss=float(ref)))(
        SimpleNamespace(predictions=scores.numpy(), label_ids=labels.numpy())
    )
    assert metrics["nll"] == pytest.approx(float(ref), rel=1e-5)
    assert metrics["main"] == pytest.approx(1.0, rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(float(hits.sum()) / float(valid.sum()))


# --- data slices ---------------------------------------------------------------------------


def test_selection_slice_is_held_out_and_calibration_is_training_data():
    from minidisc.errors import DataError
    from minidisc.schedules.lm_data import split_blocks

    blocks = np.arange(40 * 4).reshape(40, 4)
    train, sel, cal = split_blocks(blocks, selection=6, calibration=5, seed=3)
    rows = lambda a: {tuple(r) for r in a}
    assert len(sel) == 6 and len(train) == 34 and len(cal) == 5
    assert not rows(sel) & rows(train) and rows(cal) <= rows(train)
    assert rows(sel) | rows(train) == rows(blocks)
    again = split_blocks(blocks, selection=6, calibration=5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, sel, cal), again))  # seeded
    assert not np.array_equal(split_blocks(blocks, 6, 5, seed=4)[1], sel)
    with pytest.raises(DataError, match="selection blocks"):
        split_blocks(blocks[:6], selection=6, calibration=5, seed=3)


def test_training_stream_meets_the_token_budget_exactly():
    from types import SimpleNamespace

    from minidisc.schedules.lm_data import training_stream
    from tests.pretrain_helpers import tiny_decoder_tokenizer

    blocks = np.arange(5 * 16).reshape(5, 16)
    data = SimpleNamespace(tokenizer=tiny_decoder_tokenizer())
    stream = training_stream(data, blocks, tokens=100, seed=0)
    assert len(stream) == 7  # 6 full rows of 16 + 4 tokens
    assert sum(int(stream[i]["attention_mask"].sum()) for i in range(len(stream))) == 100


# --- configuration --------------------------------------------------------------------------


def test_config_validates_and_budgets_per_stage():
    from minidisc.config import parse_config
    from minidisc.schedules.lm_config import LMCompressConfig

    cfg = LMCompressConfig(corpus={"train": ["x.txt"], "block_size": 64}, budget_tokens=6400, final_budget_tokens=640)
    assert cfg.stage_tokens(False) == 6400 and cfg.stage_tokens(True) == 640
    sandwich = cfg.stage_train_config(False)  # 100 blocks in batches of 8: 13 steps, 4 evaluations
    assert sandwich.eval_steps == 4 and sandwich.epochs == 1.0
    for bad in ({"objective": "minidisc"}, {"importance": "fisher"}, {"layer_shapes": "ragged"},
                {"target_sparsity": 0.1, "truncation": 0.25}):
        with pytest.raises(ConfigError):
            parse_config(LMCompressConfig, {"corpus": {"train": ["x.txt"]}, **bad}, "test")
    assert (cfg.importance, cfg.layer_shapes) == ("activation", "uniform")  # the decoder defaults
    # a partial stage (YAML, or the command line's few stage options) overlays the text defaults
    from minidisc.schedules.lm_config import LM_STAGE

    partial = parse_config(LMCompressConfig, {"corpus": {"train": ["x.txt"]}, "sandwich": {"learning_rate": 3e-4}}, "t")
    assert partial.sandwich == LM_STAGE.model_copy(update={"learning_rate": 3e-4}) and partial.final == LM_STAGE


# --- the command ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished ``compress --task lm`` run (λ = 0, so iteration 1 picks an assistant)."""
    from tests.pretrain_helpers import write_corpus, write_decoder_teacher

    root = tmp_path_factory.mktemp("lm")
    write_decoder_teacher(root / "teacher", layers=2)
    write_corpus(root / "train.txt", lines=120)
    write_corpus(root / "eval.txt", lines=20, seed=1)
    args = ["compress", "--task", "lm", "--teacher", "teacher", "--corpus", "train.txt", "--eval-corpus", "eval.txt",
            "--block-size", "16", "--selection-blocks", "4", "--calibration-blocks", "4", "--grid", "0,0.25,0.5,0.75",
            "--truncation", "0.25", "--target-sparsity", "0.5", "--lam", "0", "--budget-tokens", "128",
            "--final-budget-tokens", "64", "--batch-size", "4", "--eval-steps", "2", "--learning-rate", "1e-3",
            "--prompt", "the cat", "-o", "run"]
    p = run_minidisc(*args, cwd=root, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return root, args, p


def test_command_runs_every_stage_and_reports(finished):
    from minidisc.elastic.io import load_student
    from minidisc.fileio import read_json

    root, _, p = finished
    run = root / "run"
    manifest = read_json(run / "manifest.json")
    stages = list(manifest["stages"])
    from minidisc.schedules.lm_config import LM_STAGE

    # options not given on the command line keep the text defaults (not the GLUE stage's)
    given = {"batch_size": 4, "eval_steps": 2, "learning_rate": 1e-3}
    assert manifest["config"]["sandwich"] == LM_STAGE.model_copy(update=given).model_dump(mode="json")
    assert manifest["finished"] and stages[:3] == ["teacher", "sparsified", "iter1"] and stages[-2:] == ["student", "report"]
    iter1 = manifest["stages"]["iter1"]
    assert [c["sparsity"] for c in iter1["candidates"]] == [0.25, 0.5]  # none sparser than the target
    if iter1["selected"] != 0.5:  # an assistant: evaluated, then the final iteration trains the target
        assert f"assistant{iter1['iteration']}" in stages and manifest["stages"]["iter2"]["final"]
    best = max(c["best_metric"] for c in iter1["candidates"])
    assert iter1["selected_metric"] == best or iter1["selected"] == 0.5  # λ = 0: the best m (or clipped)

    report = read_json(run / "report.json")
    teacher, student = report["models"][0], report["models"][-1]
    assert teacher["selection"]["main"] == 1.0 and student["name"] == "student (exported)"
    assert student["params"]["non_embedding"] < teacher["params"]["non_embedding"]
    assert student["flops_per_token"] < teacher["flops_per_token"]
    # the selection metric is the perplexity ratio, teacher over student
    ratio = teacher["selection"]["perplexity"] / student["selection"]["perplexity"]
    assert student["selection"]["main"] == pytest.approx(ratio, rel=1e-6)
    assert set(student["heldout"]) == {"eval.txt"} and student["tied_embeddings"] is True
    assert isinstance(student["continuation"], str) and report["compute"]["iter1"]["teacher_forward_flops"] > 0
    assert (run / "report.md").is_file() and (run / "tradeoff.png").is_file()
    assert "PPL eval.txt" in (run / "report.md").read_text() and "student (" in p.stdout

    # the exported files: tied head, sizes of the target, the reported held-out perplexity
    from minidisc.evaluation.perplexity import LoadedLM, evaluate_perplexity
    from minidisc.models import ModelSource, load_tokenizer

    model = load_student(run / "student")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    subnet = model.config.minidisc_subnet  # uniform: one size per axis; the cut is in width or FFN units
    assert len(set(subnet["heads"])) == 1 and len(set(subnet["neurons"])) == 1
    assert subnet.get("hidden", 32) < 32 or subnet["neurons"][0] < 64  # the teacher: hidden 32, 64 units
    again = evaluate_perplexity(LoadedLM(model, load_tokenizer(ModelSource(str(run / "student"))), "s"), [root / "eval.txt"])
    assert again.perplexity == pytest.approx(student["heldout"]["eval.txt"]["perplexity"], rel=1e-5)

    # the default layer shapes are uniform: plain transformers loads the student, same logits, and it generates
    import torch
    from transformers import AutoModelForCausalLM

    assert student["loads_with_plain_transformers"] is True
    plain = AutoModelForCausalLM.from_pretrained(run / "student").eval()
    ids = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, model.eval()(ids).logits)
    assert plain.generate(ids, max_new_tokens=4, do_sample=False).shape == (1, 9)


def test_resume_reruns_only_the_stages_whose_files_are_gone(finished):
    import shutil

    from minidisc.fileio import read_json

    root, args, _ = finished
    run = root / "run"
    before = read_json(run / "manifest.json")["stages"]
    shutil.rmtree(run / "student")
    p = run_minidisc(*args, cwd=root, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    after = read_json(run / "manifest.json")["stages"]
    assert "stage 'student'" in p.stderr and "running it again" in p.stderr
    for name in ("teacher", "sparsified", "iter1"):
        assert after[name]["finished"] == before[name]["finished"]  # not rerun
    assert after["student"]["finished"] >= before["student"]["finished"] and (run / "student" / "config.json").is_file()
    assert after["student"]["selection"] == before["student"]["selection"]  # same files, same numbers


def test_refusals_before_any_work(tmp_path):
    from tests.helpers import write_tiny_bert
    from tests.pretrain_helpers import write_corpus

    write_tiny_bert(tmp_path / "bert")
    write_corpus(tmp_path / "train.txt")
    p = run_minidisc("compress", "--task", "lm", "--teacher", "bert", "--corpus", "train.txt", "-o", "a", cwd=tmp_path)
    assert p.returncode != 0 and "LLaMA family" in p.stderr and "'bert'" in p.stderr
    p = run_minidisc("compress", "--task", "lm", "--teacher", "bert", "--corpus", "missing.txt", "--data-dir", "x",
                     "-o", "b", cwd=tmp_path)
    assert p.returncode != 0 and "--data-dir" in p.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_missing_corpus_is_refused(tmp_path):
    from tests.pretrain_helpers import write_decoder_teacher

    write_decoder_teacher(tmp_path / "teacher", layers=2)
    p = run_minidisc("compress", "--task", "lm", "--teacher", "teacher", "--corpus", "missing.txt",
                     "--block-size", "16", "-o", "a", cwd=tmp_path)
    assert p.returncode != 0 and "missing.txt" in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "a").exists()
    p = run_minidisc("compress", "--task", "lm", "--teacher", "teacher", "--corpus", "missing.txt",
                     "--block-size", "128", "-o", "a", cwd=tmp_path)
    assert p.returncode != 0 and "block-size" in p.stderr  # the tiny model has 64 positions


def test_local_text_is_packed_by_document_not_by_line(tmp_path):
    from minidisc.schedules.lm_data import pack_documents
    from tests.pretrain_helpers import tiny_decoder_tokenizer

    tok = tiny_decoder_tokenizer()
    (tmp_path / "a.txt").write_text("the cat\nsat on\nthe mat\n", encoding="utf-8")  # 6 words over 3 wrapped lines
    (tmp_path / "b.txt").write_text("a dog ran\n", encoding="utf-8")
    blocks = pack_documents([str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], tok, block_size=5)
    stream = blocks.reshape(-1).tolist()  # 6 + EOS + 3 + EOS = 11 tokens: two blocks of 5, tail dropped
    assert blocks.shape == (2, 5) and stream.count(tok.eos_token_id) == 1 and stream[6] == tok.eos_token_id


def test_drop_layers_exports_a_shallower_plain_llama(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from minidisc.compute.flops import non_embedding_params
    from minidisc.fileio import read_json
    from tests.pretrain_helpers import write_corpus, write_decoder_teacher

    write_decoder_teacher(tmp_path / "teacher", layers=3)
    write_corpus(tmp_path / "train.txt", lines=80)
    args = ["compress", "--task", "lm", "--teacher", "teacher", "--corpus", "train.txt", "--block-size", "16",
            "--selection-blocks", "4", "--calibration-blocks", "4", "--grid", "0,0.5", "--truncation", "0.5",
            "--target-sparsity", "0.5", "--budget-tokens", "64", "--batch-size", "4", "--drop-layers", "1", "-o", "run"]
    p = run_minidisc(*args, cwd=tmp_path, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    manifest = read_json(tmp_path / "run" / "manifest.json")
    dropped = manifest["stages"]["sparsified"]["dropped_layers"]
    block = manifest["stages"]["sparsified"]["block_importance"]
    assert len(dropped) == 1 and block[dropped[0]] == min(block)  # the layer of least block importance
    report = read_json(tmp_path / "run" / "report.json")
    teacher, student = report["models"][0], report["models"][-1]
    assert (teacher["layers"], student["layers"]) == (3, 2) and report["dropped_layers"] == dropped
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "student")
    assert plain.config.num_hidden_layers == 2 and student["loads_with_plain_transformers"]
    assert non_embedding_params(plain.config) == student["params"]["non_embedding"]
    assert student["params"]["non_embedding"] <= 0.5 * teacher["params"]["non_embedding"]  # at or above the target
    assert plain.generate(torch.tensor([[1, 5, 9]]), max_new_tokens=3, do_sample=False).shape == (1, 6)

    p = run_minidisc(*args[:-2], "--layer-shapes", "global", "-o", "other", cwd=tmp_path)
    assert p.returncode != 0 and "drop_layers needs layer_shapes uniform" in p.stderr
    assert not (tmp_path / "other").exists()


def test_depth_shapes_train_shallower_candidates_and_export_a_plain_llama(tmp_path):
    """``--layer-shapes depth``: every candidate removes whole layers (the weakest first),
    the sandwich trains them together, and the student is a shallower plain LLaMA."""
    from transformers import AutoModelForCausalLM

    from minidisc.fileio import read_json
    from tests.pretrain_helpers import write_corpus, write_decoder_teacher

    write_decoder_teacher(tmp_path / "teacher", layers=4)
    write_corpus(tmp_path / "train.txt", lines=80)
    args = ["compress", "--task", "lm", "--teacher", "teacher", "--corpus", "train.txt", "--block-size", "16",
            "--selection-blocks", "4", "--calibration-blocks", "4", "--grid", "0,0.25,0.5", "--truncation", "0.25",
            "--target-sparsity", "0.5", "--budget-tokens", "64", "--batch-size", "4", "--lam", "0"]
    p = run_minidisc(*args, "--layer-shapes", "depth", "-o", "run", cwd=tmp_path, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    stages = read_json(tmp_path / "run" / "manifest.json")["stages"]
    spec_map = read_json(tmp_path / "run" / "sparsified" / "sparsity_map.json")
    block = stages["sparsified"]["block_importance"]
    weakest = sorted(range(4), key=lambda i: (block[i], -i))
    for level, layers in (("0.25", 1), ("0.5", 2)):  # ⌈s·L⌉ layers of least block importance, full width
        spec = spec_map[level]
        assert [i for i, h in enumerate(spec["heads"]) if h == 0] == sorted(weakest[:layers])
        assert {h for h in spec["heads"] if h} == {4} and {n for n in spec["neurons"] if n} == {64}
        assert "hidden" not in spec
    assert [c["sparsity"] for c in stages["iter1"]["candidates"]] == [0.25, 0.5]  # both depths in one sandwich
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "student")
    assert plain.config.num_hidden_layers == 2 and plain.config.hidden_size == 32
    assert plain.config.intermediate_size == 64 and plain.config.num_attention_heads == 4
    assert stages["student"]["dropped_layers"] == sorted(weakest[:2])

    for extra, says in ((["--drop-layers", "1"], "drop_layers needs layer_shapes uniform"),
                        (["--target-sparsity", "0.8"], "no depth cut reaches sparsity 0.8")):  # 4 of 4 layers
        p = run_minidisc(*args, "--layer-shapes", "depth", *extra, "-o", "other", cwd=tmp_path)
        assert p.returncode != 0 and says in p.stderr, p.stderr[-2000:]
        assert not (tmp_path / "other").exists()  # refused before anything is written
