"""Malformed files stop with a DataError naming the file, the line and the problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from minidisc.errors import DataError
from minidisc.tasks import load_split

pytestmark = pytest.mark.usefixtures("no_data_dir_env")


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def expect_error(task: str, split: str, root: Path, file: Path, line: int, what: str) -> None:
    with pytest.raises(DataError) as info:
        load_split(task, split, root)
    message = str(info.value)
    assert str(file) in message
    assert f"line {line}:" in message
    assert re.search(what, message), message


def test_row_with_wrong_column_count(tmp_path):
    f = write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\ngood\t1\nbad\t0\textra\n")
    expect_error("sst2", "train", tmp_path, f, 3, "found 3 tab-separated columns, the header has 2")


def test_missing_column_in_header(tmp_path):
    f = write(tmp_path / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\tgold\n0\ta\tb\tentailment\n")
    expect_error("rte", "dev", tmp_path, f, 1, "missing column 'label'")


def test_unknown_label(tmp_path):
    f = write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\na\t1\nb\t0\nc\t2\n")
    expect_error("sst2", "dev", tmp_path, f, 4, r"unknown label '2'.*\['0', '1'\]")


def test_mnli_dash_gold_label_is_unknown(tmp_path):
    header = "\t".join(["c"] * 8 + ["sentence1", "sentence2", "label1", "gold_label"])
    f = write(tmp_path / "MNLI" / "train.tsv", header + "\n" + "\t".join(["x"] * 10 + ["-", "-"]))
    expect_error("mnli", "train", tmp_path, f, 2, "unknown label '-'")


def test_empty_file(tmp_path):
    f = write(tmp_path / "WNLI" / "dev.tsv", "")
    expect_error("wnli", "dev", tmp_path, f, 1, "is empty")


def test_header_without_rows(tmp_path):
    f = write(tmp_path / "WNLI" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n")
    expect_error("wnli", "dev", tmp_path, f, 1, "header but no rows")


def test_non_numeric_score(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    row = "0\tg\tf\t2012\t1\tnone\tnone\ta\tb\thigh"
    f = write(tmp_path / "STS-B" / "dev.tsv", f"{header}\n{row}\n")
    expect_error("stsb", "dev", tmp_path, f, 2, "'high' is not a finite number")


def test_blank_line_between_rows(tmp_path):
    f = write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\na\t1\n\nb\t0\n")
    expect_error("sst2", "dev", tmp_path, f, 3, "blank line")


def test_trailing_blank_lines_are_fine(tmp_path):
    write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\r\na\t1\r\n\n\n")
    assert load_split("sst2", "dev", tmp_path)["text_a"] == ["a"]


def test_headerless_cola_row_with_three_columns(tmp_path):
    f = write(tmp_path / "CoLA" / "train.tsv", "gj04\t1\t\tFine.\ngj04\t0\tBad\n")
    expect_error("cola", "train", tmp_path, f, 2, "found 3 tab-separated columns, expected 4")


def test_invalid_utf8_names_its_line(tmp_path):
    f = write(tmp_path / "SST-2" / "dev.tsv", b"sentence\tlabel\na\t1\nb\xff\t0\n")
    expect_error("sst2", "dev", tmp_path, f, 3, "not valid UTF-8")


def test_conll_unknown_tag(tmp_path):
    f = write(tmp_path / "conll2003" / "dev.txt",
              "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PERSON\n")
    expect_error("conll2003", "dev", tmp_path, f, 4, "unknown NER tag 'B-PERSON'")


def test_conll_wrong_column_count(tmp_path):
    f = write(tmp_path / "conll2003" / "train.txt", "EU NNP B-NP B-ORG\nrejects O\n")
    expect_error("conll2003", "train", tmp_path, f, 2, "found 2 columns, expected 4")


def test_conll_empty_file(tmp_path):
    f = write(tmp_path / "conll2003" / "test.txt", "\n\n")
    expect_error("ner", "test", tmp_path, f, 1, "is empty")


def test_conll_docstart_lines_and_two_column_files(tmp_path):
    write(tmp_path / "conll2003" / "dev.txt",
          "-DOCSTART- O\n\nEU B-ORG\nrejects O\n\n\nPeter B-PER\nBlackburn I-PER\n")
    data = load_split("conll2003", "dev", tmp_path)
    assert data["tokens"] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert data["tags"] == [[3, 0], [1, 2]]
