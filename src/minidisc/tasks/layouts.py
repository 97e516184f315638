"""Where each GLUE task keeps each split, and which columns hold the text and the label.

This is the GLUE distribution's layout (the files ``download_glue_data.py`` produces):

=======  ==========================================  ===============================
task     train.tsv / dev.tsv columns                 test.tsv (unlabelled)
=======  ==========================================  ===============================
CoLA     no header: source, label, mark, sentence    header: index, sentence
SST-2    header: sentence, label                     index, sentence
MRPC     BOM + Quality, #1 ID, #2 ID, #1 String,     index, #1 ID, #2 ID, #1 String,
         #2 String                                   #2 String
STS-B    index, genre, filename, year, old_index,    same without score
         source1, source2, sentence1, sentence2,
         score
QQP      id, qid1, qid2, question1, question2,       id, question1, question2
         is_duplicate
MNLI     index, promptID, pairID, genre, 4 parse     first 10 columns
         columns, sentence1, sentence2, [label1..],  (test_matched.tsv /
         gold_label (dev_matched.tsv /               test_mismatched.tsv)
         dev_mismatched.tsv)
QNLI     index, question, sentence, label            index, question, sentence
RTE      index, sentence1, sentence2, label          index, sentence1, sentence2
WNLI     index, sentence1, sentence2, label          index, sentence1, sentence2
=======  ==========================================  ===============================

Files with a header are read by column name; CoLA's train/dev files have none and are
read by position. ``test_labeled.tsv`` (not a GLUE file; added where public test labels
exist) uses the train layout; for STS-B the STS-benchmark file ``original/sts-test.tsv``
(no header: genre, filename, year, id, score, sentence1, sentence2[, sources]) is used
when ``test_labeled.tsv`` is absent.
"""

from __future__ import annotations

from dataclasses import dataclass

from minidisc.tasks.registry import TaskSpec


@dataclass(frozen=True)
class FileLayout:
    """Column layout of one TSV file.

    Attributes:
        relpath: path of the file inside the task folder.
        has_header: whether line 1 names the columns.
        text_a / text_b: header name (``has_header``) or 0-based position of the text
            columns; ``text_b`` is ``None`` for single-sentence tasks.
        label: header name or position of the label column; ``None`` for unlabelled files.
        min_columns / max_columns: allowed number of fields per row in headerless files
            (files with a header must have exactly as many fields as the header).
    """

    relpath: str
    has_header: bool
    text_a: str | int
    text_b: str | int | None
    label: str | int | None
    min_columns: int = 0
    max_columns: int = 0


#: Raw label strings as written in the GLUE files, indexed by class id.
RAW_LABELS: dict[str, tuple[str, ...]] = {
    "cola": ("0", "1"),
    "sst2": ("0", "1"),
    "mrpc": ("0", "1"),
    "qqp": ("0", "1"),
    "mnli": ("entailment", "neutral", "contradiction"),
    "mnli-mm": ("entailment", "neutral", "contradiction"),
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
    "wnli": ("0", "1"),
}

#: Header name of the label column in train/dev files.
_LABEL_COLUMN = {
    "sst2": "label",
    "mrpc": "Quality",
    "stsb": "score",
    "qqp": "is_duplicate",
    "mnli": "gold_label",
    "mnli-mm": "gold_label",
    "qnli": "label",
    "rte": "label",
    "wnli": "label",
}


def _headed(spec: TaskSpec, relpath: str, labelled: bool) -> FileLayout:
    cols = spec.text_columns
    return FileLayout(
        relpath=relpath,
        has_header=True,
        text_a=cols[0],
        text_b=cols[1] if len(cols) == 2 else None,
        label=_LABEL_COLUMN[spec.name] if labelled else None,
    )


def file_layouts(spec: TaskSpec, split: str) -> tuple[FileLayout, ...]:
    """Candidate files for one split of a GLUE task, in order of preference.

    Args:
        spec: a GLUE task (not NER).
        split: a canonical split name (``train``, ``dev``, ``test``, ``test_labeled``).

    Returns:
        One or more layouts; the loader uses the first whose file exists.
    """
    if spec.name == "cola":
        if split == "test":
            return (FileLayout("test.tsv", True, "sentence", None, None),)
        # The raw CoLA files, no header: source, label, original author's mark, sentence.
        return (
            FileLayout(
                f"{split}.tsv", False, text_a=3, text_b=None, label=1, min_columns=4, max_columns=4
            ),
        )
    if spec.glue_folder == "MNLI":
        suffix = "mismatched" if spec.name == "mnli-mm" else "matched"
        relpath = {"train": "train.tsv", "dev": f"dev_{suffix}.tsv", "test": f"test_{suffix}.tsv"}
        return (_headed(spec, relpath[split], labelled=split != "test"),)
    if split == "test":
        return (_headed(spec, "test.tsv", labelled=False),)
    if split == "test_labeled":
        layouts = (_headed(spec, "test_labeled.tsv", labelled=True),)
        if spec.name == "stsb":
            sts_benchmark = FileLayout(
                "original/sts-test.tsv", False, 5, 6, 4, min_columns=7, max_columns=9
            )
            layouts += (sts_benchmark,)
        return layouts
    return (_headed(spec, f"{split}.tsv", labelled=True),)
