"""Config validation and the run directory's resume / overwrite rules."""

import pytest

from minidisc.config import CompressConfig, load_yaml, parse_config, save_yaml
from minidisc.errors import ConfigError, RunExistsError
from minidisc.runfolder.run import RunDir


def test_candidate_levels_respect_truncation_teacher_level_and_target():
    every = CompressConfig(target_sparsity=0.92, sandwich_samples="all")  # the paper's: 0.5 and up
    assert every.candidate_levels() == [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.95]
    assert every.candidate_levels(teacher_level=0.8) == [0.8, 0.85, 0.9, 0.92, 0.95]
    sampled = CompressConfig(target_sparsity=0.92)  # the sandwich rule: 0.3 below the target, up to it
    assert sampled.truncation == 0.62
    assert sampled.candidate_levels() == [0.7, 0.8, 0.85, 0.9, 0.92]
    assert sampled.candidate_levels(teacher_level=0.8) == [0.8, 0.85, 0.9, 0.92]


def test_bad_values_name_the_field():
    with pytest.raises(ConfigError, match="lam"):
        parse_config(CompressConfig, {"lam": -1}, "cli")
    with pytest.raises(ConfigError, match="grid"):
        parse_config(CompressConfig, {"grid": [0.5, 1.5]}, "cli")
    with pytest.raises(ConfigError, match="below truncation 0.5; lower --truncation"):
        parse_config(CompressConfig, {"target_sparsity": 0.3, "sandwich_samples": "all"}, "cli")
    with pytest.raises(ConfigError, match="below truncation 0.6"):
        parse_config(CompressConfig, {"target_sparsity": 0.3, "truncation": 0.6}, "cli")
    with pytest.raises(ConfigError, match="lamda: Extra inputs"):
        parse_config(CompressConfig, {"lamda": 0.3}, "cli")


def test_yaml_round_trip(tmp_path):
    cfg = CompressConfig(lam=0.35, grid=(0.5, 0.9))
    save_yaml(tmp_path / "c.yaml", cfg)
    assert load_yaml(tmp_path / "c.yaml", CompressConfig) == cfg
    # the paper's protocol: values the manifest leaves out (older runs resume) are still saved
    paper = CompressConfig(select_on="dev", candidate_score="best", sandwich_samples="all", skip_collapsed=False)
    save_yaml(tmp_path / "paper.yaml", paper)
    assert load_yaml(tmp_path / "paper.yaml", CompressConfig) == paper
    assert "select_on" not in paper.model_dump(mode="json")


def test_a_config_file_is_the_base_that_options_overlay(tmp_path):
    from minidisc.cli.options import build_compress_config

    (tmp_path / "c.yaml").write_text("select_on: dev\ncandidate_score: best\nsandwich_samples: all\n")
    cfg = build_compress_config(tmp_path / "c.yaml", {"lam": 0.3})
    assert (cfg.select_on, cfg.candidate_score, cfg.sandwich_samples, cfg.lam) == ("dev", "best", None, 0.3)
    # what the file leaves out follows the options: truncation of the rule the command line sets
    (tmp_path / "lam.yaml").write_text("lam: 0.3\n")
    assert build_compress_config(tmp_path / "lam.yaml", {}).truncation == 0.6
    assert build_compress_config(tmp_path / "lam.yaml", {"sandwich_samples": "all"}).truncation == 0.5
    (tmp_path / "bad.yaml").write_text("lam: -1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: lam"):
        build_compress_config(tmp_path / "bad.yaml", {})


def _work(calls, fail=False):
    def work(tmp):
        calls.append(tmp)
        (tmp / "out.txt").write_text("x")
        if fail:
            raise KeyboardInterrupt  # an interrupted stage
        return {"metric": 1.0}

    return work


def test_resume_skips_finished_stages_and_reruns_interrupted_one(tmp_path):
    cfg = CompressConfig()
    run = RunDir(tmp_path / "r", cfg, "compress")
    calls = []
    run.stage("a", _work(calls))
    with pytest.raises(KeyboardInterrupt):
        run.stage("b", _work(calls, fail=True))
    assert not (tmp_path / "r" / "b").exists()  # no half-written stage output
    resumed = RunDir(tmp_path / "r", cfg, "compress")
    assert resumed.done("a") and not resumed.done("b")
    resumed.stage("a", _work(calls))
    resumed.stage("b", _work(calls))
    assert len(calls) == 3  # a once, b twice (interrupted + resumed)
    assert (tmp_path / "r" / "b" / "out.txt").read_text() == "x"
    assert resumed.record("b")["metric"] == 1.0


def test_other_config_is_not_overwritten_without_flag(tmp_path):
    RunDir(tmp_path / "r", CompressConfig(), "compress").stage("a", _work([]))
    with pytest.raises(RunExistsError, match="--overwrite"):
        RunDir(tmp_path / "r", CompressConfig(lam=0.5), "compress")
    fresh = RunDir(tmp_path / "r", CompressConfig(lam=0.5), "compress", overwrite=True)
    assert not fresh.done("a")


def test_foreign_folder_is_not_overwritten(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.txt").write_text("mine")
    with pytest.raises(RunExistsError):
        RunDir(tmp_path / "r", CompressConfig(), "compress")


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("precious")
    with pytest.raises(RunExistsError, match="not a minidisc run directory.*even with --overwrite"):
        RunDir(foreign, CompressConfig(), "compress", overwrite=True)
    assert (foreign / "chapter1.tex").read_text() == "precious"

    # a manifest.json of some other tool does not make it a run either
    (foreign / "manifest.json").write_text('{"name": "my-app"}')
    with pytest.raises(RunExistsError, match="not a minidisc run directory"):
        RunDir(foreign, CompressConfig(), "compress", overwrite=True)
    assert (foreign / "chapter1.tex").is_file()

    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(RunExistsError):
        RunDir(a_file, CompressConfig(), "compress", overwrite=True)
    assert a_file.read_text() == "mine"


def test_overwrite_replaces_a_run_and_accepts_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert not RunDir(tmp_path / "empty", CompressConfig(), "compress", overwrite=True).done("a")

    other = tmp_path / "other-run"
    RunDir(other, CompressConfig(), "compress").stage("a", _work([]))
    (other / "teacher").symlink_to(tmp_path / "empty", target_is_directory=True)  # a linked stage
    fresh = RunDir(other, CompressConfig(lam=0.5), "compress", overwrite=True)
    assert not fresh.done("a") and not (other / "a").exists() and not (other / "teacher").exists()
    assert (tmp_path / "empty").is_dir()  # the link was removed, not followed


def test_a_symlinked_run_resumes_and_is_overwritten_in_place(tmp_path):
    real = tmp_path / "real"
    RunDir(real, CompressConfig(), "compress").stage("a", _work([]))
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert RunDir(link, CompressConfig(), "compress").done("a")
    RunDir(link, CompressConfig(lam=0.5), "compress", overwrite=True)
    assert link.is_symlink() and not (real / "a").exists() and (real / "manifest.json").is_file()
