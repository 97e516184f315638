"""``compare`` on a tiny random BERT: one shared teacher, the four schedules, the table
and plot, resume after an interrupted schedule, and MiniDisc's reuse of iteration 1
by a comparison at another target."""

from __future__ import annotations

import pytest

from minidisc.config import TrainConfig
from minidisc.schedules.config import CompareConfig
from tests.helpers import tiny_sst2_data, write_tiny_bert

STAGE = TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, patience=None, seed=1)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    import minidisc.schedules.compare as cmp

    root = tmp_path_factory.mktemp("compare")
    cfg = CompareConfig(
        teacher=str(write_tiny_bert(root / "teacher")),
        data=tiny_sst2_data(root / "glue", n_train=24, n_dev=8),
        grid=(0.0, 0.25, 0.5, 0.75), truncation=0.25, target_sparsity=0.75, finetune=STAGE, train=STAGE,
        sandwich_samples="all",  # every candidate: iteration 1 is then the same at another target (reused)
    )
    calls: list[str] = []
    real = cmp._run_schedule

    def interrupted_once(cfg, name, *args, **kwargs):
        calls.append(name)
        if name == "maxidisc" and calls.count("maxidisc") == 1:
            raise KeyboardInterrupt
        return real(cfg, name, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(cmp, "_run_schedule", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        cmp.run_compare(cfg, root / "cmp")
    run = cmp.run_compare(cfg, root / "cmp")
    mp.undo()
    return cfg, run, calls


def test_schedules_share_one_teacher_and_resume(compared):
    cfg, run, calls = compared
    assert calls == ["direct", "takd", "maxidisc", "maxidisc", "minidisc"]  # finished ones not rerun
    assert list(run.manifest["stages"]) == ["teacher", "sparsified", "direct", "takd", "maxidisc", "minidisc", "report"]
    for name in cfg.schedules:
        sub = run.path / name
        assert (sub / "teacher").resolve() == (run.path / "teacher").resolve()
        assert (sub / "sparsified").resolve() == (run.path / "sparsified").resolve()
        assert (sub / "student" / "model.safetensors").is_file()


def test_table_plot_and_cost_multiples(compared):
    from minidisc.fileio import read_json

    _, run, _ = compared
    report = read_json(run.path / "report.json")
    rows = {r["schedule"]: r for r in report["rows"]}
    assert list(rows) == ["direct", "takd", "maxidisc", "minidisc"]
    assert rows["direct"]["cost_multiple"] == pytest.approx(1.0)
    for name, row in rows.items():
        manifest = read_json(run.path / name / "manifest.json")
        assert row["cost_train_flops"] == pytest.approx(manifest["cost"]["total"]["train_flops"])
        assert row["cost_multiple"] == pytest.approx(row["cost_train_flops"] / rows["direct"]["cost_train_flops"])
        assert row["student"]["sparsity"] == pytest.approx(0.75)
        assert 0.0 <= row["dev_main"] <= 1.0
    # the default TA path: the candidate nearest target/2 = 0.375 (tie → the denser 0.25)
    assert rows["takd"]["route"] == [0.25, 0.75]
    # MaxiDisc trains every path of TAKD and more: it costs more; two hops cost more than one
    assert rows["maxidisc"]["cost_multiple"] > rows["takd"]["cost_multiple"] > 1.0
    text = (run.path / "report.md").read_text()
    assert "| Direct KD |" in text and "| MiniDisc |" in text and "1.00×" in text
    assert (run.path / "compare.png").stat().st_size > 1000


def test_every_student_has_a_card_and_every_report_rebuilds_equal(compared, tmp_path):
    """Baseline students' cards name the assistants they were distilled through;
    ``minidisc report`` rebuilds the comparison and each schedule's run (compress,
    distill, takd, maxidisc) equal to what the runs wrote."""
    import json
    import shutil

    import yaml

    from minidisc.fileio import read_json
    from minidisc.schedules.rebuild import rebuild_report

    _, original, _ = compared
    takd = read_json(original.path / "takd" / "manifest.json")["stages"]
    card = (original.path / "takd" / "student" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "transformers" and meta["base_model"]
    assert f"| assistant (hop-s0.25) | 25.00 | – | {100 * takd['hop-s0.25']['dev_main']:.2f} |" in card
    assert "(`minidisc takd`)" in card

    copy = tmp_path / "cmp"
    shutil.copytree(original.path, copy, symlinks=True)
    for folder in (copy, *(copy / name for name in ("direct", "takd", "maxidisc", "minidisc"))):
        written = {p.name: p.read_bytes() for p in folder.glob("*") if p.name.startswith("report.") or p.suffix == ".png"}
        for name in written:
            (folder / name).unlink()
        rebuilt = rebuild_report(folder)
        assert sorted(p.name for p in rebuilt) == sorted(written), folder
        # reports name run folders (a comparison's rows: where the runs are now; a cost's
        # source: where the manifest says), so compare them with the run folder as <run>
        def normalised(text: str) -> dict:
            return json.loads(text.replace(str(copy), "<run>").replace(str(original.path), "<run>"))

        rebuilt_json = (folder / "report.json").read_text()
        assert normalised(rebuilt_json) == normalised(written["report.json"].decode()), folder
        assert (folder / "report.md").read_bytes() == written["report.md"], folder


def test_minidisc_cost_and_reuse_of_iteration_one_at_another_target(compared, tmp_path):
    from minidisc.evaluation.constant import collapse_floor
    from minidisc.fileio import read_json
    from minidisc.schedules.compare import run_compare
    from minidisc.training.selection import select_assistant

    cfg, run, _ = compared
    mini = read_json(run.path / "minidisc" / "manifest.json")
    cost = mini["cost"]
    iters = [n for n in mini["stages"] if n.startswith("iter")]
    assert cost["training_runs"] == len(iters)
    assert cost["total"]["train_flops"] == pytest.approx(sum(s["train_flops"] for s in cost["per_stage"].values()))
    assert "## Cost" in (run.path / "minidisc" / "report.md").read_text()

    other = cfg.model_copy(update={"target_sparsity": 0.5, "schedules": ("minidisc",), "teacher_run": str(run.path)})
    second = run_compare(other, tmp_path / "cmp-0.5")
    first_iter = mini["stages"]["iter1"]
    reused = read_json(second.path / "minidisc" / "manifest.json")["stages"]["iter1"]
    assert reused["reused_from"]
    assert reused["compute"] == first_iter["compute"]
    best = {c["sparsity"]: c["best_metric"] for c in reused["candidates"]}
    assert best == {c["sparsity"]: c["best_metric"] for c in first_iter["candidates"]}
    # re-selected for the new target, collapsed candidates passed over (the default)
    floor = collapse_floor(mini["constant_prediction"]["selection"]["main"], mini["stages"]["teacher"]["dev"]["main"])
    chosen = select_assistant(best, cfg.lam, 0.5, floor=floor)
    assert reused["selected"] == chosen.sparsity
    assert reused.get("passed_over", []) == list(chosen.passed_over)


def test_assistant_student_correlation_from_manifests(tmp_path):
    """Hand-made MaxiDisc/MiniDisc manifests: tradeoff = m + λ·s and Spearman by hand."""
    from minidisc.fileio import write_json
    from minidisc.report.compare import assistant_student_correlation
    from minidisc.training.records import CandidateRecord, HopRecord, IterationRecord, Level

    def hop(sparsity, metric):
        return HopRecord(Level(sparsity=sparsity), {}, metric, None, (), "kd").to_dict()

    assistants = {0.5: 0.90, 0.6: 0.85, 0.7: 0.84}
    students = {0.5: 0.80, 0.6: 0.78, 0.7: 0.79}
    stages = {f"hop-s{a:g}": hop(a, m) for a, m in assistants.items()}
    stages |= {f"hop-s{a:g}-s0.9": hop(0.9, students[a]) for a in assistants}
    paths = [{"path": [{"sparsity": a, "layers": None}, {"sparsity": 0.9, "layers": None}], "final": f"hop-s{a:g}-s0.9"}
             for a in assistants]
    write_json(tmp_path / "maxi" / "manifest.json", {"stages": stages, "paths": paths})
    sandwich = tuple(CandidateRecord(s, m) for s, m in ((0.5, 0.7), (0.6, 0.6), (0.7, 0.55), (0.9, 0.3)))
    iter1 = IterationRecord(1, False, 0.0, 0.5, 0.7, sandwich).to_dict()
    write_json(tmp_path / "mini" / "manifest.json", {"stages": {"iter1": iter1}})

    result = assistant_student_correlation(tmp_path / "maxi", tmp_path / "mini", lam=0.2)
    assert [r["tradeoff"] for r in result["rows"]] == pytest.approx([1.00, 0.97, 0.98])
    # ranks: tradeoff (3, 1, 2) and student (3, 1, 2) agree; assistant metric (3, 2, 1): d² = 0 + 1 + 1
    assert result["spearman_tradeoff_vs_student"] == pytest.approx(1.0)
    assert result["spearman_assistant_metric_vs_student"] == pytest.approx(1 - 6 * 2 / (3 * (9 - 1)))
    # sandwich tradeoffs 0.8, 0.72, 0.69: ranks (3, 2, 1) → also ρ = 0.5
    assert result["spearman_sandwich_tradeoff_vs_student"] == pytest.approx(0.5)
    assert result["best_student_at"] == 0.5 and result["max_tradeoff_at"] == 0.5


def test_levels_missing_from_a_shared_teacher_are_rebuilt_for_every_schedule(compared, tmp_path):
    """--teacher-run with a target the shared map lacks: MiniDisc uses the baselines'
    lookup (rebuilt from the importance) instead of failing after them."""
    from minidisc.elastic.io import load_student
    from minidisc.elastic.sparsity_map import load_sparsity_map
    from minidisc.fileio import read_json
    from minidisc.schedules.compare import run_compare
    from minidisc.schedules.stages import level_specs

    cfg, run, _ = compared
    assert 0.6 not in load_sparsity_map(run.path / "sparsified")
    shared_files = {p: p.read_bytes() for p in (run.path / "sparsified").iterdir() if p.is_file()}
    other = cfg.model_copy(update={"target_sparsity": 0.6, "schedules": ("direct", "minidisc"), "teacher_run": str(run.path)})
    second = run_compare(other, tmp_path / "cmp-0.6")
    # the shared run's finished stage is never written to: the levels live in the run that added them
    assert {p: p.read_bytes() for p in (run.path / "sparsified").iterdir() if p.is_file()} == shared_files
    completed = load_sparsity_map(second.path / "sparsified")
    assert 0.6 in completed and completed[0.75] == level_specs(run.path / "sparsified", [0.75])[0.75]
    spec = completed[0.6]
    assert spec.fits_in(completed[0.5]) and completed[0.75].fits_in(spec)  # still nested
    for name in ("direct", "minidisc"):
        student = load_student(second.path / name / "student")
        assert [layer.intermediate.dense.out_features for layer in student.bert.encoder.layer] == list(spec.neurons)
    mini = read_json(second.path / "minidisc" / "report.json")
    assert mini["student"]["non_embedding_params"] < mini["teacher"]["non_embedding_params"]


def test_compare_rejects_a_schedule_that_cannot_run_before_training(compared, tmp_path):
    from minidisc.errors import ConfigError
    from minidisc.schedules.compare import run_compare

    cfg, run, _ = compared
    # MaxiDisc (and the default TAKD path) need a candidate in [truncation, target): none here
    bad = cfg.model_copy(update={"truncation": 0.75, "teacher_run": str(run.path)})
    with pytest.raises(ConfigError, match="maxidisc|takd"):
        run_compare(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # nothing ran, not even the direct-KD schedule
    unknown = cfg.model_copy(update={"objective": "kd", "objective_options": {"no_such_option": 1}})
    with pytest.raises(ConfigError):
        run_compare(unknown, tmp_path / "bad-objective")
    assert not (tmp_path / "bad-objective").exists()


def test_a_comparison_on_a_selection_slice_holds_it_out_of_every_arm(tmp_path):
    """--select-on slice: carved once before the teacher trains; every arm trains on the
    rest and chooses on the slice; the reports say so and dev stays a clean report."""
    from minidisc.fileio import read_json
    from minidisc.schedules.compare import run_compare

    cfg = CompareConfig(
        teacher=str(write_tiny_bert(tmp_path / "teacher")), data=tiny_sst2_data(tmp_path / "glue", n_train=40, n_dev=8),
        grid=(0.0, 0.5, 0.75), truncation=0.5, target_sparsity=0.75, finetune=STAGE, train=STAGE,
        schedules=("direct", "minidisc"), select_on="slice", selection_examples=8,
    )
    run = run_compare(cfg, tmp_path / "cmp")
    teacher_data = run.manifest["stages"]["teacher"]["data"]
    assert (teacher_data["train_examples"], teacher_data["selection_examples"]) == (32, 8)
    for arm in ("direct", "minidisc"):
        sub = read_json(run.path / arm / "manifest.json")
        assert sub["config"]["select_on"] == "slice" and sub["config"]["selection_examples"] == 8
    assert read_json(run.path / "minidisc" / "manifest.json")["selection_slice"] == {"examples": 8, "train_examples": 32}
    direct = (run.path / "direct" / "report.md").read_text()
    assert "chosen on the selection slice (8 training examples" in direct and "| stage | teacher | slice main % |" in direct
    assert "every method chose on the selection slice (8 training examples" in (run.path / "report.md").read_text()
