"""``minidisc compare --task lm`` on a tiny random LLaMA (4 query heads over 2 key/value
heads, tied embeddings) and toy text: the arms' configurations, the depth cut, the fixed
TAKD assistant, the from-scratch arm's exact shape, the refusals, and the command end to
end in a fresh process (table, plot, resume, the Python API's reading of it)."""

from __future__ import annotations

import json

import pytest

from minidisc.errors import ConfigError
from tests.helpers import run_minidisc

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _base(**changes):
    from minidisc.schedules.lm_config import LMCompressConfig

    return LMCompressConfig(corpus={"train": ["x.txt"], "block_size": 16}, grid=(0.0, 0.25, 0.375, 0.5),
                            target_sparsity=0.5, **changes)


def _teacher_config(tmp_path, layers=4):
    from minidisc.models import ModelSource, load_config
    from tests.pretrain_helpers import write_decoder_teacher

    write_decoder_teacher(tmp_path / "teacher", layers=layers)
    return load_config(ModelSource(str(tmp_path / "teacher")))


# --- the arms ------------------------------------------------------------------------------


def test_each_arm_is_the_base_with_what_makes_it_that_arm(tmp_path):
    from minidisc.schedules.lm_compare_config import LMCompareConfig

    base = _base(budget_tokens=640, final_budget_tokens=320, lam=0.1)
    cfg = LMCompareConfig(base=base)
    teacher = _teacher_config(tmp_path)
    arms = {name: cfg.arm_config(name, teacher) for name in ("direct", "random", "takd", "minidisc", "depth")}
    assert arms["minidisc"] == base
    assert arms["direct"].iterations == 1 and arms["direct"].importance == "activation"
    assert arms["random"] == arms["direct"].model_copy(update={"importance": "random"})
    # TAKD: the grid level nearest half the target (0.25 of 0.25 / 0.375), two iterations
    assert (arms["takd"].assistant, arms["takd"].iterations) == (0.25, 2)
    assert LMCompareConfig(base=base, takd_assistant=0.375).arm_config("takd").assistant == 0.375
    # every arm keeps the corpus, budgets, seed and objective of the base
    for arm in arms.values():
        assert (arm.corpus, arm.budget_tokens, arm.final_budget_tokens, arm.sandwich.seed, arm.objective) == (
            base.corpus, 640, 320, base.sandwich.seed, base.objective)
    depth = arms["depth"]  # 4 layers, target 0.5: 2 dropped, the target is that cut's own sparsity
    assert (depth.drop_layers, depth.iterations, depth.grid) == (2, 1, (0.0,))
    assert 0.49 < depth.target_sparsity <= 0.5


def test_arms_share_the_stages_they_would_compute_alike(tmp_path):
    """One teacher stage for every arm; one sparsified stage per estimator, levels and
    depth cut; nothing shared between runs whose inputs differ."""
    from pathlib import Path

    from minidisc.schedules.lm_compare import shared_stages
    from minidisc.schedules.lm_compare_config import LMCompareConfig

    cfg = LMCompareConfig(base=_base(), schedules=("direct", "depth", "random", "takd", "minidisc", "maxidisc"))
    teacher = _teacher_config(tmp_path)
    runs = [(Path(n), cfg.arm_config(n, teacher)) for n in ("direct", "depth", "random", "takd", "minidisc")]
    runs += [(Path(f"s{a:g}"), cfg.takd_config(a)) for a in cfg.maxidisc_assistants()]
    shared = shared_stages(runs)
    direct = Path("direct")
    assert shared[direct] == {}
    assert shared[Path("depth")] == shared[Path("random")] == {"teacher": direct}  # own depth cut, own estimator
    for name in ("takd", "minidisc", "s0.25", "s0.375"):  # the same estimator and levels as direct
        assert shared[Path(name)] == {"teacher": direct, "sparsified": direct}, name

    first = runs[0][1]
    other = first.model_copy(update={"corpus": first.corpus.model_copy(update={"eval": ("y.txt",)})})  # other held-out text
    assert shared_stages([(direct, first), (Path("other"), other)])[Path("other")] == {}


def test_the_sandwich_rule_is_the_minidisc_arms_alone(tmp_path):
    from minidisc.schedules.lm_compare_config import LMCompareConfig

    cfg = LMCompareConfig(base=_base(sandwich_samples=0))
    teacher = _teacher_config(tmp_path)
    assert cfg.arm_config("minidisc").sandwich_samples == 0
    # the one-candidate arms read as they do without the rule (their runs and keys unchanged)
    plain = LMCompareConfig(base=_base())
    for name in ("direct", "random", "takd", "depth"):
        assert cfg.arm_config(name, teacher) == plain.arm_config(name, teacher)


def test_depth_cut_is_the_sparsity_of_the_dropped_layers_rounded_down(tmp_path):
    from minidisc.compute.flops import non_embedding_params
    from minidisc.schedules.lm_compare_config import depth_cut

    teacher = _teacher_config(tmp_path, layers=3)
    full = non_embedding_params(teacher)
    shallower = teacher.__class__.from_dict({**teacher.to_dict(), "num_hidden_layers": 2})
    n, sparsity = depth_cut(teacher, 0.3)  # round(0.9) = 1 layer
    exact = 1 - non_embedding_params(shallower) / full
    assert n == 1 and exact - 1e-6 <= sparsity <= exact  # never above the cut: the map's level is the cut alone
    assert depth_cut(teacher, 0.05)[0] == 1 and depth_cut(teacher, 0.95)[0] == 2  # at least one, one stays



@pytest.mark.parametrize("shapes", ["global", "depth"])
def test_the_depth_arm_is_minitrons_cut_whatever_the_bases_shapes(shapes, tmp_path):
    from minidisc.schedules.lm_compare_config import LMCompareConfig

    teacher = _teacher_config(tmp_path)
    plain = LMCompareConfig(base=_base()).arm_config("depth", teacher)
    cfg = LMCompareConfig(base=_base(layer_shapes=shapes), schedules=("direct", "depth", "takd", "minidisc"))
    depth = cfg.arm_config("depth", teacher)
    assert depth == plain.model_copy(update={"layer_shapes": "uniform"}) and depth.drop_layers == 2
    # under depth shapes the other arms keep them: direct prunes to the target's depth
    assert cfg.arm_config("direct", teacher).layer_shapes == cfg.arm_config("takd").layer_shapes == shapes

def test_a_fixed_assistant_is_the_teachers_only_candidate():
    from minidisc.config import parse_config
    from minidisc.schedules.lm_config import LMCompressConfig

    cfg = _base(assistant=0.25, iterations=2)
    assert cfg.candidate_levels(0.0) == [0.25]  # teacher → assistant alone, no λ-selection
    assert cfg.candidate_levels(0.25) == _base().candidate_levels(0.25) and 0.25 in cfg.levels()  # then as usual
    assert "assistant" not in _base().model_dump()  # unset: configs (and old runs) read as before
    for bad, says in (({"assistant": 0.5, "iterations": 2}, "less sparse"), ({"assistant": 0.25, "iterations": 1}, "iterations 2")):
        with pytest.raises(ConfigError, match=says):
            parse_config(LMCompressConfig, {"corpus": {"train": ["x.txt"]}, **bad}, "test")


def test_comparisons_that_cannot_run_are_refused():
    from minidisc.config import parse_config
    from minidisc.schedules.lm_compare_config import LMCompareConfig

    base = _base().model_dump(mode="json")
    cases = [
        ({"schedules": ["pretrain"]}, "add direct"),
        ({"schedules": ["direct", "depht"]}, "unknown arm"),
        ({"schedules": ["direct", "direct"]}, "named twice"),
        ({"base": {**base, "layer_shapes": "global"}}, "layer_shapes uniform or depth"),
        ({"base": {**base, "drop_layers": 1}}, "depth arm"),
        ({"base": {**base, "grid": [0.0, 0.5]}}, "no level between"),
        ({"takd_assistant": 0.5}, "less sparse"),
    ]
    for changes, says in cases:
        with pytest.raises(ConfigError, match=says):
            parse_config(LMCompareConfig, {"base": base, **changes}, "test")
    ordered = parse_config(LMCompareConfig, {"base": base, "schedules": ["pretrain", "direct"]}, "test")
    assert ordered.schedules == ("direct", "pretrain")  # pretrain runs after the run it takes its FLOPs from


def test_pretrain_student_keeps_a_pruned_decoders_head_width(tmp_path):
    from minidisc.pretrain.config import StudentConfig
    from minidisc.pretrain.student import student_config

    teacher = _teacher_config(tmp_path, layers=2)  # hidden 32, 4 heads of 8
    pruned, _ = student_config(teacher, StudentConfig(layers=2, hidden=20, heads=4, kv_heads=2, head_dim=8, ffn=40))
    assert (pruned.hidden_size, pruned.head_dim, pruned.intermediate_size) == (20, 8, 40)
    default, _ = student_config(teacher, StudentConfig(hidden=20, heads=4))
    assert default.head_dim == 5  # width / heads, as before
    assert "head_dim" not in StudentConfig().model_dump()  # unset: older pretrain runs resume


# --- the command --------------------------------------------------------------------------------

ARGS = ["compare", "--task", "lm", "--teacher", "teacher", "--corpus", "train.txt", "--eval-corpus", "eval.txt",
        "--block-size", "16", "--selection-blocks", "4", "--calibration-blocks", "4", "--grid", "0,0.25,0.5",
        "--target", "0.5", "--truncation", "0.25", "--budget-tokens", "64", "--final-budget-tokens", "48",
        "--batch-size", "4", "--eval-steps", "2", "--learning-rate", "1e-3", "--prompt", "the cat",
        "--schedules", "direct,depth,takd,pretrain", "-o", "run"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from tests.pretrain_helpers import write_corpus, write_decoder_teacher

    root = tmp_path_factory.mktemp("lmcompare")
    write_decoder_teacher(root / "teacher", layers=2)
    write_corpus(root / "train.txt", lines=120)
    write_corpus(root / "eval.txt", lines=20, seed=1)
    p = run_minidisc(*ARGS, cwd=root, timeout=1200)
    assert p.returncode == 0, p.stderr[-3000:]
    return root, p


def test_command_runs_every_arm_into_one_table(finished):
    from minidisc.fileio import read_json

    root, p = finished
    run = root / "run"
    manifest = read_json(run / "manifest.json")
    assert manifest["finished"] and list(manifest["stages"]) == ["direct", "depth", "takd", "pretrain", "report"]
    report = read_json(run / "report.json")
    rows = {r["schedule"]: r for r in report["rows"]}
    assert list(rows) == ["direct", "depth", "takd", "pretrain"]
    direct, depth, takd, scratch = rows["direct"], rows["depth"], rows["takd"], rows["pretrain"]

    # the same token budget per stage: TAKD trains two stages (sandwich budget, then final)
    assert (direct["tokens"], depth["tokens"], takd["tokens"]) == (48, 48, 64 + 48)
    assert takd["route"] == [0.25, 0.5] and report["takd_assistant"] == 0.25
    assert direct["cost_multiple"] == 1.0 and takd["cost_multiple"] > 1.5  # two stages, the first one denser
    for row in (direct, depth, takd):
        assert 0 < row["teacher_forward_flops"] < row["cost_train_flops"]  # teacher forwards counted
        assert set(row["heldout"]) == {"eval.txt"} and row["heldout"]["eval.txt"]["perplexity"] > 1

    # one saved teacher for every arm; one sparsified stage for direct and TAKD (depth prunes its own)
    for arm in ("depth", "takd", "pretrain"):
        assert not (run / arm / "teacher").exists() or (run / arm / "teacher").resolve() == run / "direct" / "teacher"
    assert (run / "takd" / "sparsified").resolve() == run / "direct" / "sparsified"
    assert not (run / "depth" / "sparsified").is_symlink()
    assert read_json(run / "takd" / "manifest.json")["stages"]["teacher"]["linked_from"] == str(run / "direct" / "teacher")

    # depth: one of the two layers gone, the width and FFN whole
    depth_config = json.loads((run / "depth" / "student" / "config.json").read_text())
    assert (depth["layers"], depth_config["hidden_size"], depth_config["intermediate_size"]) == (1, 32, 64)
    assert report["depth_dropped_layers"] == 1 and depth["sparsity"] == pytest.approx(0.5, abs=0.01)

    # from scratch: the direct-KD student's exact shape, no teacher, at most the direct-KD FLOPs
    shape = ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
             "intermediate_size", "tie_word_embeddings")
    mine = json.loads((run / "pretrain" / "student" / "config.json").read_text())
    theirs = json.loads((run / "direct" / "student" / "config.json").read_text())
    assert {k: mine[k] for k in shape} == {k: theirs[k] for k in shape}
    assert scratch["params"] == direct["params"] and scratch["teacher_forward_flops"] == 0
    assert scratch["budget_flops"] == direct["cost_train_flops"]
    assert 0.5 * direct["cost_train_flops"] < scratch["cost_train_flops"] <= direct["cost_train_flops"]
    assert scratch["tokens"] > direct["tokens"]  # no teacher forwards: more tokens for the same FLOPs

    # its perplexity is evaluate-lm's on the saved files
    from transformers import AutoModelForCausalLM

    from minidisc.evaluation.perplexity import LoadedLM, evaluate_perplexity
    from minidisc.models import ModelSource, load_tokenizer

    folder = run / "pretrain" / "student"
    again = evaluate_perplexity(
        LoadedLM(AutoModelForCausalLM.from_pretrained(folder), load_tokenizer(ModelSource(str(folder))), "s"),
        [root / "eval.txt"])
    assert again.perplexity == pytest.approx(scratch["heldout"]["eval.txt"]["perplexity"], rel=1e-5)

    text = (run / "report.md").read_text()
    for title in ("Direct KD", "Depth pruning + KD", "TA (TAKD)", "From scratch", "PPL eval.txt", "cost multiple",
                  "layer shapes uniform"):
        assert title in text
    assert (run / "compare.png").stat().st_size > 0
    assert "direct: PPL" in p.stdout and "report:" in p.stdout


def test_the_report_states_the_minidisc_arms_sandwich_rule(finished):
    from minidisc.fileio import read_json
    from minidisc.report.compare_lm import render_lm_compare_markdown

    root, _ = finished
    report = read_json(root / "run" / "report.json")
    assert report["sandwich_samples"] is None  # every candidate: the default
    minidisc = {**report["rows"][0], "schedule": "minidisc"}
    sampled = render_lm_compare_markdown({**report, "rows": [minidisc], "sandwich_samples": 0})
    assert "sandwich rule: the least and the most sparse candidate and 0 more per step" in sampled
    assert "sandwich rule" not in render_lm_compare_markdown({**report, "rows": [minidisc]})


def test_rerun_resumes_without_training_and_the_api_reads_the_table(finished):
    from minidisc.api import read_result
    from minidisc.fileio import read_json

    root, _ = finished
    before = read_json(root / "run" / "manifest.json")["stages"]
    p = run_minidisc(*ARGS, cwd=root, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    after = read_json(root / "run" / "manifest.json")["stages"]
    assert {k: v["finished"] for k, v in after.items()} == {k: v["finished"] for k, v in before.items()}

    result = read_result(root / "run")
    assert result.command == "compare" and set(result.metrics) == {"direct", "depth", "takd", "pretrain"}
    assert result.metrics["direct"]["perplexity"] > 1 and result.cost["direct"]["multiple"] == 1.0

    table = read_json(root / "run" / "report.json")["rows"]
    p = run_minidisc("report", "run", cwd=root)  # rebuilt from the folders alone
    assert p.returncode == 0, p.stderr[-3000:]
    assert read_json(root / "run" / "report.json")["rows"] == table

    p = run_minidisc(*ARGS[:-2], "--budget-tokens", "32", "-o", "run", cwd=root)  # other options, same folder
    assert p.returncode != 0 and "--overwrite" in p.stderr


def test_refusals_before_any_work(tmp_path):
    from tests.pretrain_helpers import write_corpus, write_decoder_teacher

    write_decoder_teacher(tmp_path / "teacher", layers=2)
    write_corpus(tmp_path / "train.txt", lines=40)
    common = ["compare", "--teacher", "teacher", "-o", "out"]
    for extra, says in (
        (["--task", "lm", "--corpus", "train.txt", "--epochs", "2"], "--epochs do not apply to --task lm"),
        (["--task", "sst2", "--corpus", "train.txt"], "--corpus apply only to --task lm"),
        (["--task", "lm", "--corpus", "train.txt", "--schedules", "pretrain"], "add direct"),
        (["--task", "lm", "--corpus", "train.txt", "--takd-path", "0.25,0.375,0.5"], "one assistant"),
        (["--task", "lm"], "--corpus"),
    ):
        p = run_minidisc(*common, *extra, cwd=tmp_path)
        said = " ".join(p.stderr.replace("│", " ").split())  # a usage error is wrapped in a box
        assert p.returncode != 0 and says in said, (extra, p.stderr[-1500:])
        assert "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()


def test_maxidisc_checks_the_selection_through_every_candidate(tmp_path):
    """The selection check from the Python API: TAKD through each candidate assistant, the
    Spearman correlation of λ-tradeoff and student, on ``m`` (so exactly the negative of
    the one on the students' perplexity)."""
    from scipy.stats import spearmanr

    import minidisc
    from minidisc.fileio import read_json
    from minidisc.training.records import distillation_compute
    from tests.pretrain_helpers import write_corpus, write_decoder_teacher

    write_decoder_teacher(tmp_path / "teacher", layers=2)
    write_corpus(tmp_path / "train.txt", lines=120)
    # batches of one block: 3 and 2 steps, so each stage trains past its warmup (a 1-step stage does not move)
    result = minidisc.compare(
        task="lm", teacher=str(tmp_path / "teacher"), corpus=[str(tmp_path / "train.txt")], block_size=16,
        selection_blocks=4, calibration_blocks=4, grid="0,0.125,0.25,0.375,0.5", truncation=0.125, target=0.5,
        lam=0.2, budget_tokens=48, final_budget_tokens=32, batch_size=1, eval_steps=2, learning_rate=1e-2,
        prompt="the cat", schedules="maxidisc", output=tmp_path / "run")
    report = result.details
    correlation = report["correlation"]
    rows = correlation["rows"]
    assert [r["sparsity"] for r in rows] == [0.125, 0.25, 0.375]  # every candidate but the target
    for r in rows:
        assert r["tradeoff"] == pytest.approx(r["assistant_metric"] + 0.2 * r["sparsity"])
        path = read_json(tmp_path / "run" / "maxidisc" / f"s{r['sparsity']:g}" / "manifest.json")["stages"]
        assert (path["iter1"]["selected"], path["iter2"]["final"]) == (r["sparsity"], True)
    rho = correlation["spearman_tradeoff_vs_student"]
    by_ppl = spearmanr([r["tradeoff"] for r in rows], [r["student_perplexity"] for r in rows]).statistic
    assert rho is not None and rho == pytest.approx(-by_ppl)

    (row,) = report["rows"]
    assert row["dev_main"] == max(r["student_metric"] for r in rows)  # the best student is the row's
    runs = [read_json(tmp_path / "run" / "maxidisc" / f"s{s:g}" / "manifest.json")["stages"] for s in (0.125, 0.25, 0.375)]
    assert row["tokens"] == 3 * (48 + 32)
    assert row["cost_train_flops"] == pytest.approx(sum(distillation_compute(s)["train_flops"] for s in runs))
    assert (tmp_path / "run" / "correlation.png").is_file()
    assert "Assistant-student correlation" in (tmp_path / "run" / "report.md").read_text()
