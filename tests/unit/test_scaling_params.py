"""Law coefficients as plain data: Table 6 defaults, JSON round trip, validation."""

from __future__ import annotations

import json

import pytest

from minidisc.errors import ConfigError
from minidisc.scaling.compute import FlopsModel
from minidisc.scaling.params import (
    DistillationParams,
    ScalingLawParams,
    SupervisedParams,
    load_flops_model,
    load_params,
    save_params,
)


def test_defaults_are_table_6():
    s, d = SupervisedParams(), DistillationParams()
    assert (s.E, s.A, s.B, s.alpha, s.beta, s.gamma) == (1.220, 3355, 18186, 0.408, 0.431, 0.452)
    assert (d.A, d.B, d.alpha, d.beta, d.gamma) == (2243, 24181, 0.321, 0.637, 0.764)
    assert (d.c0, d.c1, d.f1, d.d1) == (2.549, 522.6, 0.090, 1.315)
    a, b = s.compute_optimal_exponents
    # The paper's a = 0.513, b = 0.486 (from unrounded exponents; 0.431/0.839 = 0.5137).
    assert a == pytest.approx(0.513, abs=1e-3) and b == pytest.approx(0.486, abs=1e-3)
    assert a + b == pytest.approx(1.0)


def test_frozen():
    with pytest.raises(AttributeError):
        SupervisedParams().E = 2.0  # type: ignore[misc]


def test_json_round_trip(tmp_path):
    p = ScalingLawParams(SupervisedParams(E=1.5, gamma=0.5), DistillationParams(c1=3.0))
    path = tmp_path / "p.json"
    save_params(path, p, extra={"fit": {"note": "kept"}})
    assert load_params(path) == p
    data = json.loads(path.read_text())
    assert data["fit"] == {"note": "kept"} and data["supervised"]["E"] == 1.5


def test_missing_sections_take_paper_values(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"supervised": {"E": 1.3}}))
    p = load_params(path)
    assert p.supervised == SupervisedParams(E=1.3)
    assert p.distillation == DistillationParams()


@pytest.mark.parametrize("payload,match", [
    ({"supervised": {"E0": 1.0}}, "unknown supervised parameter"),
    ({"supervised": {"E": -1.0}}, "E must be > 0"),
    ({"distillation": {"f1": "x"}}, "must be a number"),
    ({"distillation": [1, 2]}, "JSON object"),
    ([1, 2], "JSON object"),
])
def test_invalid_files_name_the_problem(tmp_path, payload, match):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match=match):
        load_params(path)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_params(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_params(bad)


def test_flops_model_is_stored_with_the_parameters(tmp_path):
    path = tmp_path / "fit.json"
    model = FlopsModel(rho=32.0, omega=12.1, n_ctx=256, n_vocab=4505.5)
    fitted = ScalingLawParams(SupervisedParams(E=2.0))
    save_params(path, fitted, extra={"fit": {"n_runs": 9}}, flops_model=model)
    assert load_flops_model(path) == model
    assert load_params(path) == fitted  # the laws ignore the section
    save_params(path, fitted)
    assert load_flops_model(path) is None


def test_flops_model_section_is_validated(tmp_path):
    assert FlopsModel.from_dict({"n_ctx": 256}) == FlopsModel(n_ctx=256)
    path = tmp_path / "bad.json"
    for section in ({"n_ctx": 256, "vocab": 1}, {"rho": "wide"}, {"n_vocab": -1}, [1, 2]):
        path.write_text(json.dumps({"flops_model": section}))
        with pytest.raises(ConfigError, match="bad.json"):
            load_flops_model(path)
