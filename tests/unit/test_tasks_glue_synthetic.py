"""Tasks not staged in ../shared/data, from small files written in the official GLUE layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from minidisc.errors import ConfigError, DataError
from minidisc.tasks import load_split, resolve_data_dir

MNLI_PREFIX = [
    "index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
    "sentence1_parse", "sentence2_parse", "sentence1", "sentence2",
]


def write_tsv(path: Path, rows: list[list[str]], bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join("\t".join(row) + "\n" for row in rows)
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def mnli_row(i: int, s1: str, s2: str, tail: list[str]) -> list[str]:
    return [str(i), "31193", f"{i}n", "government", "( ( x ) )", "( y )", "(ROOT x)", "(ROOT y)",
            s1, s2, *tail]


pytestmark = pytest.mark.usefixtures("no_data_dir_env")


@pytest.fixture
def glue(tmp_path: Path) -> Path:
    """A GLUE-layout folder with STS-B, QQP, MNLI, RTE and QNLI files."""
    stsb_header = ["index", "genre", "filename", "year", "old_index", "source1", "source2",
                   "sentence1", "sentence2", "score"]
    write_tsv(tmp_path / "STS-B" / "train.tsv", [
        stsb_header,
        ["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none",
         "A plane is taking off.", "An air plane is taking off.", "5.000"],
        ["1", "main-captions", "MSRvid", "2012test", "0004", "none", "none",
         "A man is playing a large flute.", "A man is playing a flute.", "3.800"],
        ["2", "main-news", "headlines", "2014", "0193", "none", "none",
         'He said "no".', "Nothing was said.", "0.000"],
    ])
    write_tsv(tmp_path / "STS-B" / "test.tsv", [
        stsb_header[:-1],
        ["0", "main-captions", "MSRvid", "2012test", "0000", "none", "none", "A girl.", "A boy."],
    ])
    # STS-benchmark file (no header): genre filename year id score s1 s2 [sources]
    write_tsv(tmp_path / "STS-B" / "original" / "sts-test.tsv", [
        ["main-captions", "MSRvid", "2012test", "0000", "2.500", "A girl is styling her hair.",
         "A girl is brushing her hair."],
        ["main-forums", "deft-forum", "2014", "0001", "0.800", "Tell me.", "Tell you.",
         "src-a", "src-b"],
    ])
    write_tsv(tmp_path / "QQP" / "dev.tsv", [
        ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        ["201359", "303345", "303346", 'Why are "big" tits better?', "Which is better?", "0"],
        ["263843", "69383", "380476", "What's a \"good\" laptop?", 'What is a "good" laptop?',
         "1"],
        ["172974", "266948", "175089", '"Quote', "no closing quote", "1"],
    ])
    write_tsv(tmp_path / "QQP" / "test.tsv", [
        ["id", "question1", "question2"], ["0", "Why?", '"Why not?"'],
    ])
    train_tail, dev_tail = ["label1", "gold_label"], [f"label{i}" for i in range(1, 6)] + [
        "gold_label"]
    write_tsv(tmp_path / "MNLI" / "train.tsv", [
        MNLI_PREFIX + train_tail,
        mnli_row(0, "Conceptually cream skimming has two dimensions.",
                 "Product and geography are what make cream skimming work.",
                 ["neutral", "neutral"]),
        mnli_row(1, 'He said "yes".', "He agreed.", ["entailment", "entailment"]),
    ])
    write_tsv(tmp_path / "MNLI" / "dev_matched.tsv", [
        MNLI_PREFIX + dev_tail,
        mnli_row(0, "The new rights are nice enough", "Everyone really likes the newest benefits",
                 ["neutral", "entailment", "neutral", "neutral", "neutral", "neutral"]),
        mnli_row(1, "This site includes a list", "The Government Executive articles",
                 ["contradiction"] * 6),
    ])
    write_tsv(tmp_path / "MNLI" / "dev_mismatched.tsv", [
        MNLI_PREFIX + dev_tail,
        mnli_row(0, "Your contribution helped make it possible", "Your contributions were of no help",
                 ["contradiction"] * 5 + ["contradiction"]),
        mnli_row(1, "A", "B", ["entailment"] * 6),
        mnli_row(2, 'C "quoted', "D", ["neutral"] * 6),
    ])
    write_tsv(tmp_path / "MNLI" / "test_matched.tsv", [
        MNLI_PREFIX, mnli_row(0, "Hierbas, ans seco", "This is a bar", []),
    ])
    write_tsv(tmp_path / "RTE" / "train.tsv", [
        ["index", "sentence1", "sentence2", "label"],
        ["0", "No Weapons of Mass Destruction Found in Iraq Yet.",
         "Weapons of Mass Destruction Found in Iraq.", "not_entailment"],
        ["1", "A place of sorrow.", "Pope Benedict XVI is the new leader.", "entailment"],
    ])
    write_tsv(tmp_path / "QNLI" / "train.tsv", [
        ["index", "question", "sentence", "label"],
        ["0", "When did the third Digimon series begin?",
         "Unlike the two seasons before it, Tamers takes a darker tone.", "not_entailment"],
        ["1", "Which missile batteries often have individual launchers?",
         "When MANPADS is operated by specialists, batteries may have several launchers.",
         "entailment"],
    ])
    return tmp_path


def test_stsb_reads_scores_as_floats(glue):
    data = load_split("STS-B", "train", glue)
    assert data["text_a"] == ["A plane is taking off.", "A man is playing a large flute.",
                              'He said "no".']
    assert data["text_b"][1] == "A man is playing a flute."
    assert np.allclose(data["label"], [5.0, 3.8, 0.0])
    test = load_split("stsb", "test", glue)
    assert test["label"] == [-1.0] and test["text_b"] == ["A boy."]


def test_stsb_labelled_test_from_the_sts_benchmark_file(glue):
    data = load_split("stsb", "test_labeled", glue)
    assert data["text_a"] == ["A girl is styling her hair.", "Tell me."]
    assert data["text_b"] == ["A girl is brushing her hair.", "Tell you."]
    assert np.allclose(data["label"], [2.5, 0.8])


def test_qqp_quotes_are_plain_characters(glue):
    data = load_split("qqp", "validation", glue)
    assert data["text_a"] == ['Why are "big" tits better?', 'What\'s a "good" laptop?', '"Quote']
    assert data["text_b"][2] == "no closing quote"
    assert data["label"] == [0, 1, 1]
    test = load_split("qqp", "test", glue)
    assert (test["text_b"], test["label"]) == (['"Why not?"'], [-1])


def test_mnli_matched_and_mismatched_by_task_name(glue):
    matched = load_split("mnli", "dev", glue)
    assert matched["text_a"][0] == "The new rights are nice enough"
    assert matched["text_b"][0] == "Everyone really likes the newest benefits"
    # gold_label is the last column; entailment=0, neutral=1, contradiction=2
    assert matched["label"] == [1, 2]
    mismatched = load_split("MNLI-MM", "dev", glue)
    assert mismatched["label"] == [2, 0, 1]
    assert mismatched["text_a"][2] == 'C "quoted'
    assert load_split("mnli-m", "dev_matched", glue)["label"] == [1, 2]
    train = load_split("mnli", "train", glue)  # 12-column train layout
    assert train["label"] == [1, 0] and train["text_a"][1] == 'He said "yes".'
    test = load_split("mnli", "test", glue)
    assert test["label"] == [-1] and test["text_b"] == ["This is a bar"]


def test_rte_and_qnli_string_labels(glue):
    rte = load_split("rte", "train", glue)
    assert rte["label"] == [1, 0]  # entailment=0, not_entailment=1
    assert rte.features["label"].names == ["entailment", "not_entailment"]
    qnli = load_split("qnli", "train", glue)
    assert qnli["text_a"][0] == "When did the third Digimon series begin?"
    assert qnli["label"] == [1, 0]


def test_subsampling_is_seeded_deterministic_and_keeps_file_order(tmp_path):
    rows = [["sentence", "label"]] + [[f"s{i}", str(i % 2)] for i in range(50)]
    write_tsv(tmp_path / "SST-2" / "train.tsv", rows)
    first = load_split("sst2", "train", tmp_path, max_samples=10, seed=3)
    again = load_split("sst2", "train", tmp_path, max_samples=10, seed=3)
    other = load_split("sst2", "train", tmp_path, max_samples=10, seed=4)
    assert len(first) == 10
    assert first["idx"] == again["idx"]
    assert first["idx"] != other["idx"]
    assert first["idx"] == sorted(set(first["idx"]))  # no duplicates, file order
    assert first["text_a"] == [f"s{i}" for i in first["idx"]]  # rows stay aligned
    assert len(load_split("sst2", "train", tmp_path, max_samples=500)) == 50
    with pytest.raises(ConfigError, match="at least 1"):
        load_split("sst2", "train", tmp_path, max_samples=0)


def test_max_samples_equal_to_size_keeps_every_row_in_order(tmp_path):
    rows = [["sentence", "label"]] + [[f"s{i}", "1"] for i in range(7)]
    write_tsv(tmp_path / "SST-2" / "dev.tsv", rows)
    assert load_split("sst2", "dev", tmp_path, max_samples=7)["idx"] == list(range(7))


def test_resolve_data_dir_precedence(tmp_path, monkeypatch, glue):
    other = tmp_path / "other"
    other.mkdir()
    assert resolve_data_dir(None) is None
    monkeypatch.setenv("MINIDISC_DATA_DIR", str(other))
    assert resolve_data_dir(None) == other
    assert resolve_data_dir(str(glue)) == glue  # the CLI value wins
    assert resolve_data_dir(str(glue), task="rte") == glue
    with pytest.raises(ConfigError, match="--data-dir"):
        resolve_data_dir(str(tmp_path / "missing"))
    monkeypatch.setenv("MINIDISC_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="MINIDISC_DATA_DIR"):
        resolve_data_dir(None)


def test_missing_task_folder_names_what_is_expected(tmp_path, glue):
    with pytest.raises(ConfigError, match=r"no folder WNLI/.*train\.tsv"):
        resolve_data_dir(str(glue), task="wnli")
    with pytest.raises(ConfigError, match="no folder SST-2/"):
        load_split("sst2", "dev", glue)
    # Pointing at the parent of glue/ gets a hint.
    (tmp_path / "up" / "glue" / "RTE").mkdir(parents=True)
    with pytest.raises(ConfigError, match="pass that folder instead"):
        resolve_data_dir(str(tmp_path / "up"), task="rte")


def test_missing_split_file_is_a_data_error(glue):
    with pytest.raises(DataError, match=r"RTE/dev\.tsv not found"):
        load_split("rte", "dev", glue)
