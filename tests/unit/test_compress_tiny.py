"""The MiniDisc pipeline end to end on a tiny random BERT and a toy GLUE folder:
stages, outputs, resume after an interrupted stage, and the overwrite rule."""

from __future__ import annotations

import pytest

from minidisc.config import CompressConfig, TrainConfig
from minidisc.errors import ConfigError, RunExistsError
from tests.helpers import tiny_sst2_data, write_tiny_bert, write_tiny_sst2

STAGE = TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, eval_steps=3, patience=None, seed=1)


@pytest.fixture()
def cfg(tmp_path):
    teacher = write_tiny_bert(tmp_path / "teacher")
    return CompressConfig(
        teacher=str(teacher),
        data=tiny_sst2_data(tmp_path / "glue"),
        target_sparsity=0.75, truncation=0.25, grid=(0.0, 0.25, 0.5, 0.75),
        finetune=STAGE, sandwich=STAGE, final=STAGE,
    )


def test_pipeline_stages_resume_and_outputs(cfg, tmp_path, monkeypatch):
    import minidisc.schedules.minidisc as md
    from minidisc.elastic.io import load_student
    from minidisc.elastic.sparsity_map import load_sparsity_map
    from minidisc.fileio import read_json
    from minidisc.schedules import stages

    calls = {"teacher": 0}
    real_teacher, real_iteration = stages.teacher_stage, md._iteration_stage

    def counting_teacher(*args, **kwargs):
        calls["teacher"] += 1
        return real_teacher(*args, **kwargs)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "teacher_stage", counting_teacher)
    monkeypatch.setattr(md, "_iteration_stage", interrupted)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        md.run_compress(cfg, out)
    assert (out / "sparsified" / "sparsity_map.json").is_file()
    assert not (out / "iter1").exists()  # the interrupted stage left nothing behind

    monkeypatch.setattr(md, "_iteration_stage", real_iteration)
    run = md.run_compress(cfg, out)
    assert calls["teacher"] == 1  # resumed after the finished stages
    assert run.finished

    manifest = read_json(out / "manifest.json")
    iters = [k for k in manifest["stages"] if k.startswith("iter")]
    for name in iters:  # the candidates' snapshots waited on disk and were removed with the stage's end
        assert not (out / name / "snapshots").exists()
    first = manifest["stages"]["iter1"]
    assert [c["sparsity"] for c in first["candidates"]] == [0.25, 0.5, 0.75]
    for c in first["candidates"]:  # the tradeoff is metric + λ·sparsity
        assert c["tradeoff"] == pytest.approx(c["best_metric"] + cfg.lam * c["sparsity"])
    # either the first selection hit the target (one iteration) or a final iteration ran
    assert iters == ["iter1"] if first["selected"] == 0.75 else iters == ["iter1", "iter2"]

    student = load_student(out / "student")
    spec = load_sparsity_map(out / "sparsified")[0.75]
    for layer, heads, neurons in zip(student.bert.encoder.layer, spec.heads, spec.neurons):
        assert layer.attention.self.query.out_features == heads * 8
        assert layer.intermediate.dense.out_features == neurons
    report = read_json(out / "report.json")
    assert report["student"]["flops_per_128_tokens"] < report["teacher"]["flops_per_128_tokens"]
    assert 0.0 <= report["student"]["dev"]["main"] <= 1.0
    assert "| student (exported) | 75.00 |" in (out / "report.md").read_text()
    # by default a selection slice of the training set selects, by the mean of the last evaluations
    held = manifest["selection_slice"]
    assert held["examples"] > 0 and held["examples"] + held["train_examples"] == 48
    assert manifest["stages"]["teacher"]["data"]["train_examples"] == held["train_examples"]
    assert read_json(out / "iter1" / "candidates.json")["score_rule"] == "last_mean"
    text = (out / "report.md").read_text()
    assert "- selected on: the selection slice" in text
    assert "| best slice main % | mean of last 3 % |" in text  # the window, left out of the dump at its default
    assert set(report["constant_prediction"]) == {"dev", "selection"} and "candidates" in report["collapse"]
    assert (out / "tradeoff.png").stat().st_size > 1000

    # a finished run resumes to a no-op; a different config is refused without --overwrite
    md.run_compress(cfg, out)
    assert calls["teacher"] == 1
    with pytest.raises(RunExistsError):
        md.run_compress(cfg.model_copy(update={"lam": 0.5}), out)

    # the paper's protocol: dev selects, by each candidate's running best
    paper = tmp_path / "paper"
    md.run_compress(cfg.model_copy(update={"select_on": "dev", "candidate_score": "best", "skip_collapsed": False}), paper)
    manifest = read_json(paper / "manifest.json")
    assert "selection_slice" not in manifest and manifest["stages"]["teacher"]["data"]["train_examples"] == 48
    assert "constant_prediction" in manifest  # the collapse flags stay when the rule is off
    assert read_json(paper / "iter1" / "candidates.json")["score_rule"] == "best"
    assert "- selected on: the dev set (the paper's protocol" in (paper / "report.md").read_text()
    # a slice the teacher of --teacher-run trained on is refused before anything is written
    with pytest.raises(ConfigError, match="holds out training examples the teacher of"):
        md.run_compress(cfg, tmp_path / "leaky", teacher_run=paper)
    assert not (tmp_path / "leaky").exists()



def test_report_orders_iterations_numerically(tmp_path):
    """iter10 comes after iter9, not after iter1 (as text sorting would put it)."""
    from types import SimpleNamespace

    from minidisc.fileio import write_json
    from minidisc.report.compress import build_compress_report
    from minidisc.training.records import iteration_names

    assert iteration_names(["teacher", "iter10", "iter2", "iter1", "iterate", "student"]) == ["iter1", "iter2", "iter10"]

    write_tiny_bert(tmp_path / "teacher")
    levels = [round(0.05 * k, 2) for k in range(1, 11)]
    specs = {f"{s:g}": {"heads": [4, 4], "neurons": [64 - 4 * k, 64 - 4 * k], "sparsity": s}
             for k, s in enumerate(levels, start=1)}
    write_json(tmp_path / "sparsified" / "sparsity_map.json", specs)

    def iteration(k):  # iteration k selects level k; the last one is final (the target)
        s = levels[k - 1]
        return {"iteration": k, "final": k == 10, "selected": s, "selected_metric": 0.5 + 0.01 * k,
                "candidates": [{"sparsity": s, "best_metric": 0.5, "tradeoff": 0.5}], "wall_time_s": 1.0}

    dev = {"main": 0.5}
    stages = {"teacher": {"dev": dev, "source": "tiny", "data": {}, "wall_time_s": 1.0},
              **{f"iter{k}": iteration(k) for k in range(1, 11)},
              "student": {"dev": dev, "plain_hf_loadable": False, "wall_time_s": 1.0}}
    stages = {name: {"status": "done", **entry} for name, entry in stages.items()}
    cfg = {"data": {"task": "sst2"}, "lam": 0.2, "target_sparsity": levels[-1]}
    run = SimpleNamespace(path=tmp_path, manifest={"config": cfg, "stages": stages})
    report = build_compress_report(run)
    assert [it["iteration"] for it in report["iterations"]] == list(range(1, 11))
    assert [a["iteration"] for a in report["assistants"]] == list(range(1, 10))


def test_finetuned_teacher_is_only_evaluated(cfg, tmp_path, monkeypatch):
    """teacher_finetuned: no fine-tuning, no training compute, the given weights kept,
    and the teacher's dev metric is the evaluation of the given model."""
    import torch
    from safetensors.torch import load_file

    import minidisc.schedules.minidisc as md
    import minidisc.training.finetune as ft
    from minidisc.fileio import read_json
    from minidisc.models import ModelSource, load_for_task, load_tokenizer
    from minidisc.schedules import stages
    from minidisc.training.data import prepare_task_data
    from tests.elastic_helpers import randomize_

    # input-dependent predictions, so the dev metric says something about the weights
    given = tmp_path / "tuned"
    source = ModelSource(cfg.teacher)
    randomize_(load_for_task(source, _task(cfg))).save_pretrained(given)
    load_tokenizer(source).save_pretrained(given)
    # 15 dev sentences (8 positive): any accuracy but 0.5 is possible, so equal metrics are telling
    data_cfg = cfg.data.model_copy(update={"data_dir": str(write_tiny_sst2(tmp_path / "glue15", n_dev=15))})
    cfg = cfg.model_copy(update={"teacher": str(given), "teacher_finetuned": True, "data": data_cfg})

    def no_finetuning(*args, **kwargs):
        raise AssertionError("teacher_finetuned must not fine-tune")

    def stop(*args, **kwargs):
        raise KeyboardInterrupt  # the teacher stage is all this test needs

    monkeypatch.setattr(stages, "finetune", no_finetuning)
    monkeypatch.setattr(stages, "sparsify_stage", stop)
    with pytest.raises(KeyboardInterrupt):
        md.run_compress(cfg, tmp_path / "run")

    entry = read_json(tmp_path / "run" / "manifest.json")["stages"]["teacher"]
    assert entry["status"] == "done" and entry["compute"] is None
    saved, original = load_file(tmp_path / "run" / "teacher" / "model.safetensors"), load_file(given / "model.safetensors")
    assert saved.keys() == original.keys()
    assert all(torch.equal(saved[k], original[k]) for k in saved)

    data = prepare_task_data(cfg.data, load_tokenizer(ModelSource(str(given))), seed=cfg.finetune.seed)
    expected, _ = ft.evaluate_model(load_for_task(ModelSource(str(given)), data.task), data, cfg.finetune, tmp_path / "eval")
    assert entry["dev"] == pytest.approx(expected)


def _task(cfg):
    from minidisc.tasks import get_task

    return get_task(cfg.data.task)
