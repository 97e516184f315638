"""The real GLUE / CoNLL files in ../shared/data load with the published row counts.

Expected counts come from /work/shared/data/PROVENANCE.md (and the GLUE paper's table).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from minidisc.tasks import load_split


def shared_data() -> Path:
    """``../shared/data`` next to the repository root, or skip the test."""
    data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not (data / "glue").is_dir():
        pytest.skip(f"real data not found at {data} (expected ../shared/data beside the repo)")
    return data


pytestmark = pytest.mark.usefixtures("no_data_dir_env")


@pytest.mark.parametrize(
    ("task", "split", "rows", "label_counts"),
    [
        ("sst2", "train", 67349, {0: 29780, 1: 37569}),
        ("sst2", "dev", 872, {0: 428, 1: 444}),
        ("sst2", "test", 1821, {-1: 1821}),
        ("sst2", "test_labeled", 1821, {0: 917, 1: 904}),  # CRLF line ends
        ("mrpc", "train", 3668, {0: 1194, 1: 2474}),  # UTF-8 BOM before the header
        ("mrpc", "dev", 408, {0: 129, 1: 279}),
        ("mrpc", "test_labeled", 1725, {0: 578, 1: 1147}),
        ("cola", "train", 8551, {0: 2528, 1: 6023}),  # no header
        ("cola", "dev", 1043, {0: 322, 1: 721}),
        ("cola", "test", 1063, {-1: 1063}),  # header: index, sentence
        ("wnli", "train", 635, {0: 323, 1: 312}),
        ("wnli", "dev", 71, {0: 40, 1: 31}),
        # QNLI: entailment -> 0, not_entailment -> 1 (hub order)
        ("qnli", "dev", 5463, {0: 2702, 1: 2761}),
    ],
)
def test_real_glue_files_load_with_published_counts(task, split, rows, label_counts):
    data = load_split(task, split, shared_data() / "glue")
    assert len(data) == rows
    assert dict(Counter(data["label"])) == label_counts


def test_mrpc_bom_header_and_quotes_are_read_verbatim():
    dev = load_split("mrpc", "dev", shared_data() / "glue")
    first = dev[0]
    # Line 2 of MRPC/dev.tsv; its second sentence starts with a bare quote character.
    assert first["text_a"].startswith("He said the foodservice pie business doesn 't fit")
    assert first["text_b"].startswith('" The foodservice pie business does not fit')
    assert first["label"] == 1


def test_single_sentence_tasks_have_no_text_b():
    cola = load_split("cola", "dev", shared_data() / "glue", max_samples=3)
    assert cola["text_b"] == [None, None, None]
    assert load_split("cola", "dev", shared_data() / "glue")[0]["text_a"] == (
        "The sailors rode the breeze clear of the rocks."
    )


def test_env_variable_is_used_when_no_dir_is_passed(monkeypatch):
    monkeypatch.setenv("MINIDISC_DATA_DIR", str(shared_data() / "glue"))
    assert len(load_split("wnli", "validation")) == 71


def test_conll_found_beside_the_glue_folder():
    glue = shared_data() / "glue"
    counts = {"train": (14041, 203621), "dev": (3250, 51362), "test": (3453, 46435)}
    for split, (sentences, tokens) in counts.items():
        data = load_split("conll2003", split, glue)
        assert len(data) == sentences
        assert sum(len(t) for t in data["tokens"]) == tokens
    train = load_split("ner", "train", shared_data())  # the parent works too
    assert train[0]["tokens"] == ["EU", "rejects", "German", "call", "to", "boycott",
                                  "British", "lamb", "."]
    # B-ORG=3, O=0, B-MISC=7 in the hub's tag order
    assert train[0]["tags"] == [3, 0, 7, 0, 0, 0, 7, 0, 0]


def test_dev_b_entity_counts_match_provenance():
    dev = load_split("conll2003", "dev", shared_data() / "conll2003")
    names = dev.features["tags"].feature.names
    begins = Counter(names[t] for row in dev["tags"] for t in row if names[t].startswith("B-"))
    assert begins == {"B-LOC": 1837, "B-MISC": 922, "B-ORG": 1341, "B-PER": 1842}
