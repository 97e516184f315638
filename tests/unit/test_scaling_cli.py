"""`minidisc scaling ...` through typer's CliRunner on the real app."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from minidisc.cli import app
from minidisc.errors import ConfigError, DataError
from minidisc.scaling.compute import FlopsModel, forward_flops_per_token
from minidisc.scaling.laws import distillation_loss, supervised_loss
from minidisc.scaling.params import load_flops_model, load_params
from minidisc.scaling.records import read_run_records, write_run_records
from minidisc.scaling.synthetic import synthetic_records

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["scaling", *args])


def run_json(*args):
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("command", ["predict", "fit", "plan", "crossover", "plot", "simulate"])
def test_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_predict_distillation_and_supervised():
    out = run_json("predict", "--student-params", "1e9", "--student-tokens", "2e10",
                   "--teacher-loss", "2.0")
    assert out["student_loss"] == pytest.approx(distillation_loss(1e9, 2e10, 2.0))
    assert out["supervised_loss"] == pytest.approx(supervised_loss(1e9, 2e10))
    assert out["mode"] == "distillation"
    sup = run_json("predict", "--student-params", "1e9", "--student-tokens", "2e10")
    assert sup["mode"] == "supervised"
    assert sup["student_loss"] == sup["supervised_loss"]
    assert sup["supervised_loss"] == pytest.approx(supervised_loss(1e9, 2e10))


def test_predict_teacher_from_size_and_tokens_and_text_output():
    out = run_json("predict", "--student-params", "5.46e8", "--student-tokens", "1.092e10",
                   "--teacher-params", "1.82e9", "--teacher-tokens", "3.64e10")
    assert out["teacher_loss"] == pytest.approx(supervised_loss(1.82e9, 3.64e10))
    assert out["student_loss"] == pytest.approx(2.42, abs=0.01)  # Table 7
    text = invoke("predict", "--student-params", "1e9", "--student-tokens", "2e10",
                  "--teacher-loss", "2.0")
    assert text.exit_code == 0 and "student loss (distilled)" in text.output


@pytest.mark.parametrize("args", [
    ("predict", "--student-params", "1e9", "--student-tokens", "2e10", "--teacher-loss", "0.5"),
    ("plan", "--student-params", "1e9", "--compute", "1e21", "--teacher", "T=1e10:0.3"),
])
def test_teachers_below_the_irreducible_loss_are_refused_in_a_fresh_process(args):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "minidisc.cli", "scaling", *args],
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "irreducible loss E = 1.22 nats" in result.stderr and "nats" not in result.stdout


def test_predict_errors():
    result = invoke("predict", "--student-params", "1e9", "--student-tokens", "2e10",
                    "--teacher-params", "1e10")
    assert isinstance(result.exception, ConfigError)
    result = invoke("predict", "--student-params", "-1", "--student-tokens", "2e10")
    assert isinstance(result.exception, ConfigError)


def test_simulate_fit_and_use_the_fit(tmp_path):
    runs = tmp_path / "runs.jsonl"
    result = invoke("simulate", "--out", str(runs), "--noise", "0.001", "--seed", "1")
    assert result.exit_code == 0, result.output
    records = read_run_records(runs)
    assert len(records) == 320
    out_json = tmp_path / "fit.json"
    out = run_json("fit", "--runs", str(runs), "--grid", "small", "--starts", "4",
                   "--bootstrap", "0", "--jobs", "1", "--out", str(out_json))
    assert out["fit"]["supervised"]["n_runs"] == 20
    assert out["fit"]["distillation"]["n_runs"] == 300
    assert out["fit"]["supervised_source"] == "fit"
    assert out["fit"]["distillation"]["mean_abs_rel_error"] < 0.003
    params = load_params(out_json)
    # The fitted laws reproduce the generating ones on an in-range point.
    assert supervised_loss(1e9, 2e10, params.supervised) == pytest.approx(
        supervised_loss(1e9, 2e10), rel=0.005)
    pred = run_json("predict", "--student-params", "1e9", "--student-tokens", "2e10",
                    "--teacher-loss", "2.1", "--params", str(out_json))
    assert pred["student_loss"] == pytest.approx(distillation_loss(1e9, 2e10, 2.1), rel=0.01)


def test_fit_csv_with_only_distillation_runs_uses_given_supervised_law(tmp_path):
    runs = tmp_path / "runs.csv"
    invoke("simulate", "--out", str(runs), "--noise", "0.0")
    kd_only = tmp_path / "kd.csv"
    lines = runs.read_text().splitlines()
    kd_only.write_text("\n".join([lines[0], *(ln for ln in lines[1:] if ln.startswith("dist"))]))
    out = run_json("fit", "--runs", str(kd_only), "--grid", "small", "--starts", "2",
                   "--bootstrap", "0")
    assert out["fit"]["supervised"] is None
    assert out["fit"]["supervised_source"] == "paper"



def test_fit_bad_runs_file(tmp_path):
    runs = tmp_path / "runs.jsonl"
    runs.write_text('{"kind": "distillation", "student_params": 1e8, "student_tokens": 1e9, '
                    '"student_loss": 3.0}\n')
    result = invoke("fit", "--runs", str(runs))
    assert isinstance(result.exception, DataError)
    assert f"{runs}:1" in str(result.exception)


def test_plan_scenarios_and_teachers():
    out = run_json("plan", "--student-params", "1e9", "--compute", "1e21",
                   "--scenario", "best-case", "--scenario", "teacher-pretraining")
    assert [p["scenario"] for p in out["plans"]] == ["best-case", "teacher-pretraining"]
    for p in out["plans"]:
        assert p["flops"]["total"] == pytest.approx(1e21, rel=1e-6)
        assert p["supervised_loss"] == pytest.approx(out["supervised"]["loss"])
    every = run_json("plan", "--student-params", "1e9", "--compute", "1e21")
    assert len(every["plans"]) == 4
    teachers = run_json("plan", "--student-params", "1e9", "--compute", "1e21",
                        "--teacher", "big=7.75e9:1.95", "--teacher", "1.82e9:2.2")
    assert teachers["teachers"]["best_teacher"] in {"big", "1.82e+09"}
    assert len(teachers["teachers"]["options"]) == 2
    bad = invoke("plan", "--student-params", "1e9", "--compute", "1e21", "--scenario", "nope")
    assert isinstance(bad.exception, ConfigError)


def test_crossover(tmp_path):
    png = tmp_path / "cross.png"
    out = run_json("crossover", "--student-params", "1e9", "--scenario", "best-case",
                   "--points", "7", "--plot", str(png))
    (cr,) = out["crossovers"]
    assert cr["status"] == "crossover" and cr["compute"] > 0
    assert "L(N_S, C/(3F(N_S)))" in out["definition"]
    assert png.stat().st_size > 1000
    fixed = run_json("crossover", "--student-params", "1e9", "--teacher", "7.75e9:1.95",
                     "--points", "5")
    assert fixed["crossovers"][0]["scenario"] == "fixed-teacher"


@pytest.mark.parametrize("kind,extra", [
    ("teacher", []),
    ("isoflop", ["--compute", "1e20", "--compute", "1e21", "--scenario", "teacher-pretraining"]),
    ("map", ["--resolution", "3"]),
])
def test_plot_subcommand(tmp_path, kind, extra):
    png = tmp_path / f"{kind}.png"
    result = invoke("plot", kind, "--out", str(png), *extra)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 1000 < png.stat().st_size < 200_000


def test_plot_errors(tmp_path):
    result = invoke("plot", "pie", "--out", str(tmp_path / "x.png"))
    assert isinstance(result.exception, ConfigError)
    result = invoke("plot", "teacher", "--out", str(tmp_path / "x.jpg"))
    assert isinstance(result.exception, ConfigError)


# A BERT-scale masked LM: 32 wide per layer, 128-token blocks scored both ways (n_ctx =
# 2*128), MLM head on ~15 % of the tokens (n_vocab = 0.147 * (30522 + d)).
SMALL = FlopsModel(rho=32.0, omega=12.1, n_ctx=256.0, n_vocab=4505.0)
SMALL_OPTS = ["--rho", "32", "--omega", "12.1", "--n-ctx", "256", "--n-vocab", "4505"]


def test_flops_options_reach_predict_plan_and_crossover():
    n, d, c = 1e7, 2e8, 1e16
    f_small, f_paper = forward_flops_per_token(n, SMALL), forward_flops_per_token(n)
    assert abs(f_small / f_paper - 1) > 0.2  # the paper's constants would be far off here
    pred = run_json("predict", "--student-params", "1e7", "--student-tokens", "2e8", *SMALL_OPTS)
    assert pred["student_training_flops"] == pytest.approx(3 * f_small * d, rel=1e-12)
    assert FlopsModel.from_dict(pred["flops_model"]) == SMALL
    plan = run_json("plan", "--student-params", "1e7", "--compute", "1e16",
                    "--scenario", "teacher-inference", *SMALL_OPTS)
    assert plan["supervised"]["tokens"] == pytest.approx(c / (3 * f_small), rel=1e-12)
    (p,) = plan["plans"]
    assert p["flops"]["total"] == pytest.approx(c, rel=1e-6)
    assert p["flops"]["student"] == pytest.approx(3 * f_small * p["student_tokens"], rel=1e-9)
    assert p["flops"]["teacher_inference"] == pytest.approx(
        forward_flops_per_token(p["teacher_params"], SMALL) * p["student_tokens"], rel=1e-9)
    teachers = run_json("plan", "--student-params", "1e7", "--compute", "1e16",
                        "--teacher", "3e7:3.0", *SMALL_OPTS)
    (o,) = teachers["teachers"]["options"]
    assert o["student_tokens"] == pytest.approx(
        c / (3 * f_small + forward_flops_per_token(3e7, SMALL)), rel=1e-12)
    cross = run_json("crossover", "--student-params", "1e7", "--teacher", "3e7:3.0",
                     "--points", "3", *SMALL_OPTS)
    grid = cross["crossovers"][0]["compute_grid"]
    assert grid[0] == pytest.approx(3 * f_small * n, rel=1e-12)  # 1 token per parameter


def test_fit_stores_flops_model_and_params_supply_it(tmp_path):
    runs = tmp_path / "runs.jsonl"
    write_run_records(runs, [r for r in synthetic_records(noise=0.0) if r.kind == "supervised"])
    fit_json = tmp_path / "fit.json"
    out = run_json("fit", "--runs", str(runs), "--grid", "small", "--starts", "2",
                   "--bootstrap", "0", "--jobs", "1", "--out", str(fit_json), *SMALL_OPTS)
    assert FlopsModel.from_dict(out["flops_model"]) == SMALL
    assert load_flops_model(fit_json) == SMALL
    used = run_json("predict", "--student-params", "1e7", "--student-tokens", "2e8",
                    "--params", str(fit_json))
    assert FlopsModel.from_dict(used["flops_model"]) == SMALL
    # An option overrides the stored value of that constant only.
    over = run_json("predict", "--student-params", "1e7", "--student-tokens", "2e8",
                    "--params", str(fit_json), "--n-ctx", "512")
    assert over["flops_model"] == {**SMALL.to_dict(), "n_ctx": 512.0}
    # Without F(N) options (and none in --params) nothing is stored: the paper's constants.
    plain = tmp_path / "plain.json"
    run_json("fit", "--runs", str(runs), "--grid", "small", "--starts", "2", "--bootstrap", "0",
             "--jobs", "1", "--out", str(plain))
    assert load_flops_model(plain) is None
    paper = run_json("predict", "--student-params", "1e7", "--student-tokens", "2e8",
                     "--params", str(plain))
    assert FlopsModel.from_dict(paper["flops_model"]) == FlopsModel()
    bad = invoke("predict", "--student-params", "1e7", "--student-tokens", "2e8", "--n-ctx", "0")
    assert isinstance(bad.exception, ConfigError)


def test_bounds_option_lets_small_models_be_planned():
    args = ["--student-params", "3e5", "--compute", "5e11", "--scenario", "teacher-inference",
            *SMALL_OPTS]
    too_small = invoke("plan", *args)  # 5e11 FLOPs buy ~1e5 tokens: below the paper's 1e6
    assert isinstance(too_small.exception, ConfigError) and "too small" in str(too_small.exception)
    (p,) = run_json("plan", *args, "--bounds", "1e3", "1e17")["plans"]
    assert 1e3 <= p["student_tokens"] < 1e6 and p["teacher_params"] >= 1e3
    assert p["flops"]["total"] == pytest.approx(5e11, rel=1e-6)
    cross = run_json("crossover", "--student-params", "3e5", "--scenario", "best-case",
                     "--points", "3", "--bounds", "1e3", "1e17", "--min-compute", "1e11",
                     "--max-compute", "1e13", *SMALL_OPTS)
    assert cross["crossovers"][0]["compute_grid"][0] == pytest.approx(1e11)
    bad = invoke("plan", *args, "--bounds", "1e6", "1e3")
    assert isinstance(bad.exception, ConfigError)
