"""One loss-plot implementation behind the arm report and the study."""

from __future__ import annotations

import matplotlib.image as mpimg
import pytest

from minidisc.fileio import write_json
from minidisc.pretrain import plots, study
from minidisc.pretrain import report as arm_report
from minidisc.pretrain.report import plot_loss_curve
from minidisc.pretrain.study import plot_study

CURVE = [{"flops": 0, "tokens": 0, "loss": 10.0}, {"flops": 4e9, "tokens": 512, "loss": 7.5}]


@pytest.fixture
def captured(monkeypatch):
    calls = []

    def fake(curves, path, **kw):
        calls.append((curves, path, kw))

    for module in (arm_report, study):  # the modules that draw with it
        monkeypatch.setattr(module, "plot_loss_curves", fake)
    return calls


def test_plot_loss_curves_writes_a_two_panel_png(tmp_path):
    plots.plot_loss_curves({"kd": CURVE, "scratch": CURVE[:1]}, tmp_path / "x.png", reference=7.0, title="t")
    image = mpimg.imread(tmp_path / "x.png")
    assert image.shape[:2] == (400, 1100)  # figsize (11, 4) at 100 dpi
    assert [key for key, _ in plots.LOSS_AXES] == ["flops", "tokens"]


def test_arm_report_plot_uses_the_shared_function(tmp_path, captured):
    report = {"strategy": "kd", "curve": CURVE, "teacher": {"heldout_loss": 7.0}, "run": "r",
              "budget": {"kind": "flops", "value": 5e12}}
    plot_loss_curve(report, tmp_path / "loss.png")
    (curves, path, kw), = captured
    assert curves == {"kd": CURVE} and path == tmp_path / "loss.png"
    assert kw["reference"] == 7.0 and kw["title"] == "r: flops budget 5e+12"


def test_study_plot_leaves_out_arms_with_an_untrained_head(tmp_path, captured):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        write_json(tmp_path / name / "report.json", {"curve": CURVE})
    rows = [{"arm": "kd", "setting": "equal FLOPs", "run": str(tmp_path / "a"), "mlm_head_trained": True},
            {"arm": "minilm", "setting": "equal FLOPs", "run": str(tmp_path / "b"), "mlm_head_trained": False}]
    plot_study(rows, tmp_path / "s.png")
    (curves, _, kw), = captured
    assert curves == {"kd (equal FLOPs)": CURVE} and kw == {}
