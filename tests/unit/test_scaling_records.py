"""The runs-file format: append, read back, and helpful errors."""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from minidisc.errors import DataError
from minidisc.scaling.records import (
    FIELDS,
    RunRecord,
    append_run_record,
    read_run_records,
    write_run_records,
)

SUP = RunRecord("supervised", 1e8, 2e9, 3.1, label="s1")
KD = RunRecord("distillation", 1e8, 2e9, 3.0, teacher_params=1e9, teacher_tokens=2e10,
               teacher_loss=2.4)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_append_and_read_round_trip(tmp_path, suffix):
    path = tmp_path / f"runs{suffix}"
    append_run_record(path, SUP)
    append_run_record(path, KD)
    assert read_run_records(path) == [SUP, KD]
    lines = path.read_text().splitlines()
    if suffix == ".csv":
        assert lines[0] == ",".join(FIELDS)  # header written once
        assert len(lines) == 3
    else:
        assert json.loads(lines[0]) == {"kind": "supervised", "student_params": 1e8,
                                        "student_tokens": 2e9, "student_loss": 3.1, "label": "s1"}


def test_write_run_records_replaces_file(tmp_path):
    path = tmp_path / "runs.csv"
    write_run_records(path, [KD, SUP])
    write_run_records(path, [SUP])
    assert read_run_records(path) == [SUP]


def test_blank_lines_and_unknown_fields_are_ignored(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text(
        '{"kind": "supervised", "student_params": 1e8, "student_tokens": 2e9, '
        '"student_loss": 3.1, "wall_time_s": 12}\n\n'
    )
    (rec,) = read_run_records(path)
    assert rec.student_loss == 3.1 and rec.teacher_loss is None


@pytest.mark.parametrize("lines,bad_line,match", [
    (['{"kind": "supervised", "student_params": 1e8, "student_tokens": 2e9, "student_loss": 3}',
      '{"kind": "supervised", "student_params": 1e8,'], 2, "not valid JSON"),
    ([('{"kind": "distillation", "student_params": 1e8, "student_tokens": 2e9, '
      '"student_loss": 3}')], 1, "teacher_loss is required"),
    ([('{"kind": "supervised", "student_params": 1e8, "student_tokens": 2e9, '
      '"student_loss": -3}')], 1, "student_loss must be finite and > 0"),
    (['{"kind": "sup", "student_params": 1e8, "student_tokens": 2e9, "student_loss": 3}'],
     1, "kind must be"),
    (['{"kind": "supervised", "student_tokens": 2e9, "student_loss": 3}'], 1, "student_params"),
    ([('{"kind": "supervised", "student_params": 1e8, "student_tokens": 2e9, '
      '"student_loss": 3, "teacher_loss": 2}')], 1, "has no teacher"),
    (['[1, 2]'], 1, "expected a JSON object"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, lines, bad_line, match):
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=match) as err:
        read_run_records(path)
    assert f"{path}:{bad_line}:" in str(err.value)


def test_csv_errors_name_file_and_line(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text(
        "kind,student_params,student_tokens,student_loss,teacher_loss\n"
        "supervised,1e8,2e9,3.1,\n"
        "distillation,1e8,2e9,three,2.4\n"
    )
    with pytest.raises(DataError, match="student_loss must be a number") as err:
        read_run_records(path)
    assert f"{path}:3:" in str(err.value)
    path.write_text("kind,student_params,student_loss\nsupervised,1e8,3\n")
    with pytest.raises(DataError, match="lacks column"):
        read_run_records(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_run_records(tmp_path / "runs.jsonl")


def _writer(path: str, worker: int, count: int) -> None:
    for i in range(count):
        append_run_record(path, RunRecord("supervised", 1e8 + worker, 2e9 + i, 3.0,
                                          label="x" * 500))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_concurrent_appends_do_not_interleave(tmp_path, suffix):
    path = str(tmp_path / f"runs{suffix}")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w, 50)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    records = read_run_records(path)
    assert len(records) == 150
    assert sorted({r.student_params for r in records}) == [1e8, 1e8 + 1, 1e8 + 2]
