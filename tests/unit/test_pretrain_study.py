"""The study table over several arms (report.json + glue_suite.json)."""

from __future__ import annotations

import pytest

from minidisc.errors import DataError
from minidisc.fileio import read_json, write_json
from minidisc.pretrain.study import main, parse_spec, render_study, study_row


def fake_arm(folder, strategy, flops, teacher_share, tokens, loss, trained=True):
    write_json(folder / "report.json", {
        "strategy": strategy,
        "budget": {"kind": "flops", "value": 5e12},
        "compute": {"train_flops": flops, "teacher_share": teacher_share, "tokens": tokens, "epochs": tokens / 1000,
                    "steps": tokens // 100, "wall_time_s": 12.4, "teacher_time_s": 3.0},
        "heldout": {"final_loss": loss, "mlm_head_trained": trained},
        "optim": {"seed": 7},
        "curve": [{"flops": 0, "tokens": 0, "loss": 10.0}, {"flops": flops, "tokens": tokens, "loss": loss}],
    })
    return folder


def fake_suite(folder, sst2, cola):
    write_json(folder / "glue_suite.json", {
        "tasks": {"sst2": {"dev": {"accuracy": sst2, "main": sst2}}, "cola": {"dev": {"mcc": cola, "main": cola}}},
        "average": (sst2 + cola) / 2,
        "settings": {"train": {"seed": 3}},
    })
    return folder


def test_rows_and_table(tmp_path):
    for name in ("a", "b", "ga"):
        (tmp_path / name).mkdir()
    a = study_row("equal FLOPs", fake_arm(tmp_path / "a", "scratch", 5e12, 0.0, 2000, 7.25),
                  fake_suite(tmp_path / "ga", 0.5, 0.125))
    b = study_row("equal FLOPs", fake_arm(tmp_path / "b", "minilm", 4.9e12, 0.4, 1500, 10.1, trained=False))
    assert a["glue"]["sst2"]["main"] == 0.5 and a["glue_average"] == pytest.approx(0.3125) and a["glue_seed"] == 3
    assert b["glue"] is None
    text = render_study([a, b])
    assert "| equal FLOPs | scratch | 5e+12 | 0 % | 2,000 | 2.00 | 20 | 12 (3) | 7.250 | 50.0 | 12.5 | 31.2 |" in text
    assert "| equal FLOPs | minilm | 4.9e+12 | 40 % | 1,500 | 1.50 | 15 | 12 (3) | 10.100 † | – | – | – |" in text
    assert "† the objective has no MLM/logit term" in text


def test_command_line_and_errors(tmp_path):
    (tmp_path / "a").mkdir()
    fake_arm(tmp_path / "a", "kd", 5e12, 0.37, 1800, 7.3)
    main([f"equal data={tmp_path / 'a'}", "--markdown", str(tmp_path / "t.md"), "--json", str(tmp_path / "t.json"),
          "--plot", str(tmp_path / "t.png")])
    assert "| equal data | kd |" in (tmp_path / "t.md").read_text()
    assert read_json(tmp_path / "t.json")[0]["tokens"] == 1800
    assert (tmp_path / "t.png").stat().st_size > 1000
    assert parse_spec("x = r , g") == ("x", "r", "g")
    assert parse_spec("equal data (D = D_KD)=r") == ("equal data (D = D_KD)", "r", None)
    with pytest.raises(DataError):
        parse_spec("no-equals-sign")
    with pytest.raises(DataError, match="report.json"):
        study_row("x", tmp_path / "missing")
    with pytest.raises(DataError, match="glue_suite.json"):
        study_row("x", tmp_path / "a", tmp_path / "missing")
