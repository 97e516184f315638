"""Direct KD, TAKD and MaxiDisc on a tiny random BERT and a toy GLUE folder: stages,
resume after an interrupted hop, hop sharing and reuse, and cost bookkeeping."""

from __future__ import annotations

import pytest

from minidisc.config import TrainConfig
from minidisc.schedules.config import DistillConfig, MaxiDiscConfig, TakdConfig
from tests.helpers import tiny_sst2_data, write_tiny_bert

STAGE = TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, patience=None, seed=1)
GRID = (0.0, 0.25, 0.5, 0.75)


def sum_of(cost: dict, field: str) -> float:
    return sum(stage[field] for stage in cost["per_stage"].values())


@pytest.fixture(scope="module")
def direct(tmp_path_factory):
    """A standalone direct-KD run: it fine-tunes and sparsifies the teacher the others share."""
    from minidisc.schedules.baselines import run_distill

    root = tmp_path_factory.mktemp("baselines")
    cfg = DistillConfig(
        teacher=str(write_tiny_bert(root / "teacher")),
        data=tiny_sst2_data(root / "glue", n_train=24, n_dev=8),
        grid=GRID, finetune=STAGE, train=STAGE, target_sparsity=0.75,
    )
    return cfg, run_distill(cfg, root / "direct")


def shared(cfg: DistillConfig, run, model=TakdConfig, **fields):
    common = cfg.model_dump(exclude={"target_sparsity", "layers", "teacher_run"})
    return model(**{**common, "teacher_run": str(run.path), **fields})


def test_direct_kd_stages_outputs_and_multiple_one(direct):
    from minidisc.elastic.io import load_student
    from minidisc.elastic.sparsity_map import load_sparsity_map

    _, run = direct
    stages = run.manifest["stages"]
    assert list(stages) == ["teacher", "sparsified", "hop-s0.75", "student", "report"]
    assert stages["hop-s0.75"]["teacher"] == "sparsified"
    spec = load_sparsity_map(run.path / "sparsified")[0.75]
    student = load_student(run.path / "student")
    for layer, heads, neurons in zip(student.bert.encoder.layer, spec.heads, spec.neurons):
        assert layer.attention.self.query.out_features == heads * 8
        assert layer.intermediate.dense.out_features == neurons
    cost = run.manifest["cost"]
    assert cost["multiple"] == pytest.approx(1.0)
    assert cost["total"]["train_flops"] == pytest.approx(sum_of(cost, "train_flops"))
    # training FLOPs = 3 × forward of the student + 1 × forward of the teacher, both > 0
    hop = cost["per_stage"]["hop-s0.75"]
    assert hop["train_flops"] == pytest.approx(hop["student_train_flops"] + hop["teacher_forward_flops"])
    assert 0 < hop["student_train_flops"] < 3 * hop["teacher_forward_flops"]  # a 25 % student is cheaper
    # one epoch over the training examples left after the selection slice (the default)
    sizes = stages["teacher"]["data"]
    assert sizes["train_examples"] + sizes["selection_examples"] == 24 and sizes["selection_examples"] > 0
    assert hop["tokens"] > 0 and hop["sequences"] == sizes["train_examples"]
    assert "chosen on the selection slice" in (run.path / "report.md").read_text()
    report = (run.path / "report.md").read_text()
    assert "1.00×" in report and "minidisc" in report


def test_layer_dropped_student_keeps_the_bottom_layers(direct, tmp_path):
    from minidisc.elastic.io import load_student
    from minidisc.schedules.baselines import run_distill

    cfg, run = direct
    dropped = run_distill(shared(cfg, run, DistillConfig, layers=(0,), objective="kd",
                                 objective_options={"alpha": 0.7, "temperature": 2.0}), tmp_path / "nl")
    student = load_student(dropped.path / "student")
    assert student.config.num_hidden_layers == 1 and len(student.bert.encoder.layer) == 1
    assert dropped.manifest["stages"]["hop-L0"]["objective"] == "kd"
    assert dropped.manifest["config"]["objective_options"] == {"alpha": 0.7, "temperature": 2.0}
    assert dropped.manifest["cost"]["multiple"] == pytest.approx(1.0)
    assert dropped.manifest["stages"]["teacher"]["linked_from"]  # the shared teacher, not a new one
    assert "compute" in dropped.manifest["stages"]["teacher"]
    assert dropped.manifest["cost"]["spent"]["train_flops"] == pytest.approx(dropped.manifest["cost"]["total"]["train_flops"])


def test_takd_hops_resume_and_reuse(direct, tmp_path, monkeypatch):
    from minidisc.elastic.io import load_student
    from minidisc.elastic.sparsity_map import load_sparsity_map
    from minidisc.schedules import paths
    from minidisc.schedules.baselines import run_takd

    cfg, run = direct
    takd_cfg = shared(cfg, run, path=(0.25, 0.75))
    calls = []
    real = paths.hop_stage

    def second_hop_interrupted(teacher_dir, level, *args, **kwargs):
        calls.append(level.label)
        if level.label == "s0.75" and calls.count("s0.75") == 1:
            raise KeyboardInterrupt
        return real(teacher_dir, level, *args, **kwargs)

    monkeypatch.setattr(paths, "hop_stage", second_hop_interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_takd(takd_cfg, tmp_path / "takd")
    assert (tmp_path / "takd" / "hop-s0.25" / "model").is_dir()
    assert not (tmp_path / "takd" / "hop-s0.25-s0.75").exists()
    takd = run_takd(takd_cfg, tmp_path / "takd")
    assert calls == ["s0.25", "s0.75", "s0.75"]  # the finished first hop was not redone
    stages = takd.manifest["stages"]
    assert stages["hop-s0.25-s0.75"]["teacher"] == "hop-s0.25"
    assert [n for n in stages if n.startswith("hop")] == ["hop-s0.25", "hop-s0.25-s0.75"]
    spec = load_sparsity_map(run.path / "sparsified")[0.75]
    student = load_student(takd.path / "student")
    assert [layer.intermediate.dense.out_features for layer in student.bert.encoder.layer] == list(spec.neurons)
    cost = takd.manifest["cost"]
    assert cost["training_runs"] == 2
    assert cost["total"]["train_flops"] == pytest.approx(sum_of(cost, "train_flops"))
    # direct KD estimated from the first hop: its teacher FLOPs + its student FLOPs scaled to 25 %
    first = cost["per_stage"]["hop-s0.25"]
    ref = cost["direct_kd"]
    assert ref["train_flops"] == pytest.approx(first["teacher_forward_flops"] + ref["student_flop_ratio"] * first["student_train_flops"])
    assert 0 < ref["student_flop_ratio"] < 1
    assert cost["multiple"] > 1.0  # two hops cost more than one

    # another run on the same teacher reuses the identical hops instead of recomputing them
    calls.clear()
    again = run_takd(takd_cfg, tmp_path / "takd-again")
    assert calls == []
    assert all(again.manifest["stages"][n]["reused_from"] for n in ("hop-s0.25", "hop-s0.25-s0.75"))
    assert again.manifest["cost"]["total"]["train_flops"] == pytest.approx(cost["total"]["train_flops"])
    assert again.manifest["cost"]["spent"]["train_flops"] == 0.0
    assert again.manifest["stages"]["student"]["dev"] == stages["student"]["dev"]


def test_maxidisc_shares_first_hops_and_picks_the_best(direct, tmp_path):
    from minidisc.schedules.baselines import run_maxidisc

    cfg, run = direct
    maxi_cfg = shared(cfg, run, MaxiDiscConfig, target_sparsity=0.75, candidates=(0.25, 0.5), max_assistants=2)
    assert maxi_cfg.paths() == [(0.25, 0.75), (0.5, 0.75), (0.25, 0.5, 0.75)]
    maxi = run_maxidisc(maxi_cfg, tmp_path / "maxi", reuse=False)
    stages = maxi.manifest["stages"]
    hops = [n for n in stages if n.startswith("hop")]
    # 3 paths with 7 hops in all, of which hop-s0.25 is shared by two: 6 distinct hops
    assert sorted(hops) == sorted(["hop-s0.25", "hop-s0.25-s0.75", "hop-s0.5", "hop-s0.5-s0.75",
                                   "hop-s0.25-s0.5", "hop-s0.25-s0.5-s0.75"])
    cost = maxi.manifest["cost"]
    assert cost["training_runs"] == 6
    assert cost["total"]["train_flops"] == pytest.approx(sum(cost["per_stage"][h]["train_flops"] for h in hops))
    finals = ["hop-s0.25-s0.75", "hop-s0.5-s0.75", "hop-s0.25-s0.5-s0.75"]
    best = max(stages[f]["dev_main"] for f in finals)
    assert stages[stages["student"]["from"]]["dev_main"] == best
    assert stages["hop-s0.25-s0.5"]["teacher"] == "hop-s0.25"


def test_configs_reject_bad_paths():
    from minidisc.config import parse_config
    from minidisc.errors import ConfigError

    with pytest.raises(ConfigError, match="strictly increasing"):
        parse_config(TakdConfig, {"path": [0.9, 0.5]}, "test")
    with pytest.raises(ConfigError, match="exactly one"):
        parse_config(DistillConfig, {"target_sparsity": 0.9, "layers": [0, 1]}, "test")
    with pytest.raises(ConfigError, match="no candidate"):
        parse_config(MaxiDiscConfig, {"target_sparsity": 0.3, "truncation": 0.5}, "test")
    default = MaxiDiscConfig(target_sparsity=0.9)
    assert default.assistant_levels() == [0.5, 0.6, 0.7, 0.8, 0.85]  # MiniDisc's candidates below the target


def test_cli_takd_on_a_shared_teacher(direct, tmp_path):
    from typer.testing import CliRunner

    from minidisc.cli import app
    from minidisc.fileio import read_json

    cfg, run = direct
    args = ["takd", "--path", "0.5,0.75", "--teacher-run", str(run.path), "--task", "sst2",
            "--data-dir", cfg.data.data_dir, "--max-length", "16", "--epochs", "1", "--batch-size", "8",
            "--seed", "1", "--patience", "0", "--objective", "kd", "--alpha", "0.9", "--temperature", "2",
            "--cache-dir", str(tmp_path / "cache"), "-o", str(tmp_path / "cli-takd")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "× direct KD" in result.output
    manifest = read_json(tmp_path / "cli-takd" / "manifest.json")
    assert manifest["config"]["objective"] == "kd"
    assert manifest["config"]["objective_options"] == {"alpha": 0.9, "temperature": 2.0}
    assert manifest["config"]["train"]["patience"] is None
    assert list((tmp_path / "cache").iterdir())  # the teacher outputs went to the given cache folder
    assert "kd" in (tmp_path / "cli-takd" / "report.md").read_text()


def test_levels_missing_from_the_saved_map_are_rebuilt_nested(direct):
    from minidisc.elastic.sparsity_map import load_sparsity_map
    from minidisc.schedules.stages import level_specs

    _, run = direct
    saved = load_sparsity_map(run.path / "sparsified")
    assert 0.6 not in saved
    specs = level_specs(run.path / "sparsified", [0.5, 0.6, 0.75])
    assert specs[0.5] == saved[0.5] and specs[0.75] == saved[0.75]
    assert specs[0.75].fits_in(specs[0.6]) and specs[0.6].fits_in(specs[0.5])
    assert specs[0.6] != specs[0.5] or specs[0.6] != specs[0.75]


def test_layer_indices_are_checked_against_the_teacher_before_fine_tuning(direct, tmp_path, monkeypatch):
    from minidisc.errors import ConfigError
    from minidisc.schedules import stages
    from minidisc.schedules.baselines import run_distill

    cfg, run = direct

    def no_training(*args, **kwargs):
        raise AssertionError("the teacher was fine-tuned before the layers were checked")

    monkeypatch.setattr(stages, "teacher_stage", no_training)
    fresh = cfg.model_copy(update={"target_sparsity": None, "layers": (0, 2)})  # the tiny teacher has 2 layers
    with pytest.raises(ConfigError, match=r"0\.\.1 \(the teacher has 2 layers\)"):
        run_distill(fresh, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    with pytest.raises(ConfigError, match="the teacher has 2 layers"):  # bottom 3 of a shared 2-layer teacher
        run_distill(shared(cfg, run, DistillConfig, layers=(0, 1, 2)), tmp_path / "linked")
    assert not (tmp_path / "linked").exists()


COUNTED = ("train_flops", "student_train_flops", "teacher_forward_flops", "tokens", "sequences", "steps")


def test_maxidisc_interrupted_mid_way_resumes_to_the_same_result(direct, tmp_path, monkeypatch):
    from minidisc.schedules import paths
    from minidisc.schedules.baselines import run_maxidisc

    cfg, run = direct
    maxi_cfg = shared(cfg, run, MaxiDiscConfig, target_sparsity=0.75, candidates=(0.25, 0.5))
    reference = run_maxidisc(maxi_cfg, tmp_path / "reference", reuse=False)

    calls: list[str] = []
    real = paths.hop_stage

    def second_path_fails_once(teacher_dir, level, *args, **kwargs):
        name = f"{teacher_dir.parent.name}->{level.label}"
        calls.append(name)
        if name == "sparsified->s0.5" and calls.count(name) == 1:
            raise RuntimeError("killed mid-way")
        return real(teacher_dir, level, *args, **kwargs)

    monkeypatch.setattr(paths, "hop_stage", second_path_fails_once)
    with pytest.raises(RuntimeError, match="mid-way"):
        run_maxidisc(maxi_cfg, tmp_path / "maxi", reuse=False)
    assert calls == ["sparsified->s0.25", "hop-s0.25->s0.75", "sparsified->s0.5"]
    resumed = run_maxidisc(maxi_cfg, tmp_path / "maxi", reuse=False)
    # only the failed hop and the one after it ran again
    assert calls[3:] == ["sparsified->s0.5", "hop-s0.5->s0.75"]

    got, want = resumed.manifest["stages"], reference.manifest["stages"]
    hops = ["hop-s0.25", "hop-s0.25-s0.75", "hop-s0.5", "hop-s0.5-s0.75"]
    assert [n for n in got if n.startswith("hop")] == hops
    for name in hops:
        assert got[name]["dev_main"] == want[name]["dev_main"], name
        assert got[name]["history"] == want[name]["history"], name
    assert got["student"]["from"] == want["student"]["from"]
    assert got["student"]["dev"] == want["student"]["dev"]

    cost, ref_cost = resumed.manifest["cost"], reference.manifest["cost"]
    assert cost["training_runs"] == 4 and sorted(cost["per_stage"]) == sorted(hops)
    for field in COUNTED:
        assert cost["total"][field] == pytest.approx(sum(s[field] for s in cost["per_stage"].values())), field
        assert cost["total"][field] == pytest.approx(ref_cost["total"][field]), field
    # nothing reused or cached: what the resumed run spent is its nominal cost, the
    # failed attempt is not counted, and training = 3 × student forward + teacher forward
    assert cost["spent"]["train_flops"] == pytest.approx(cost["total"]["train_flops"])
    for stage in cost["per_stage"].values():
        assert stage["train_flops"] == pytest.approx(stage["student_train_flops"] + stage["teacher_forward_flops"])
    assert cost["multiple"] == pytest.approx(ref_cost["multiple"]) and cost["multiple"] > 1.0


def test_a_schedule_with_the_pkd_objective(direct, tmp_path, monkeypatch):
    from minidisc.elastic.io import load_student
    from minidisc.objectives.pkd import PKDObjective
    from minidisc.schedules.baselines import run_distill

    cfg, run = direct
    patient_terms: list[float] = []
    real_forward = PKDObjective.forward

    def spy(self, student, teacher, batch):
        loss, parts = real_forward(self, student, teacher, batch)
        patient_terms.append(float(parts["patient"]))
        return loss, parts

    monkeypatch.setattr(PKDObjective, "forward", spy)
    pkd_cfg = shared(cfg, run, DistillConfig, target_sparsity=0.75, objective="pkd",
                     objective_options={"beta": 10.0, "alpha": 0.5})
    pkd = run_distill(pkd_cfg, tmp_path / "pkd")
    stages = pkd.manifest["stages"]
    # the 2-layer student matches the teacher's layer 1 [CLS] (a real patient term), every training step
    assert len(patient_terms) >= stages["hop-s0.75"]["compute"]["steps"] > 0
    assert any(p > 0 for p in patient_terms)
    assert stages["hop-s0.75"]["objective"] == "pkd" and not stages["hop-s0.75"].get("reused_from")
    assert stages["hop-s0.75"]["fingerprint"] != run.manifest["stages"]["hop-s0.75"]["fingerprint"]  # ≠ the MiniDisc-loss hop
    sd_pkd = load_student(pkd.path / "student").state_dict()
    sd_mini = load_student(run.path / "student").state_dict()
    assert any(not (sd_pkd[k] == sd_mini[k]).all() for k in sd_pkd)  # trained differently
    report = (pkd.path / "report.md").read_text()
    assert "pkd" in report and "beta" in report
    cost = pkd.manifest["cost"]
    assert cost["multiple"] == pytest.approx(1.0)
    assert cost["total"]["train_flops"] == pytest.approx(sum_of(cost, "train_flops"))
