"""The data that ships inside the package, so ``minidisc demo`` and ``minidisc demo --llm``
run offline: an SST-2 subset, and two public-domain Gutenberg texts (:data:`PACKAGED_LM`).

``minidisc/data/demo/glue/SST-2/`` holds, in the GLUE layout, the 3,000 training
sentences the demo selects from GLUE SST-2 ``train.tsv`` (the seeded subsample of
:func:`minidisc.tasks.loading.subsample_indices`, seed = the default training seed, in
file order) and the full 872-sentence ``dev.tsv``; every line is a byte copy of the GLUE
file's line. Loading the packaged folder with the demo's own options
(``max_train_samples=3000``, the same seed) therefore keeps every row, in the same
order: the demo trains on the same data whichever folder it reads. ``PROVENANCE.md``
beside the files says where they come from and under which terms.
"""

from __future__ import annotations

from pathlib import Path

from minidisc.tasks.loading import load_split, subsample_indices

#: Training sentences of the demo (its ``max_train_samples``).
DEMO_TRAIN_SAMPLES = 3000
#: GLUE task folder of the demo.
DEMO_TASK_FOLDER = "SST-2"
#: The packaged data dir: the parent of ``SST-2/``, as ``--data-dir`` expects.
PACKAGED_GLUE = Path(__file__).resolve().parents[1] / "data" / "demo" / "glue"


def packaged_demo_dir() -> Path:
    """The packaged data dir (the folder holding ``SST-2/train.tsv`` and ``dev.tsv``)."""
    return PACKAGED_GLUE


def is_packaged_demo_dir(data_dir: str | Path | None) -> bool:
    """Whether ``data_dir`` is the packaged demo data dir (for reports: say so, not a
    site-packages path)."""
    return data_dir is not None and Path(data_dir).resolve() == PACKAGED_GLUE


def describe_packaged() -> str:
    """One phrase for reports and model cards: what the packaged data is."""
    return (
        f"the SST-2 demo subset packaged with minidisc ({DEMO_TRAIN_SAMPLES:,} GLUE SST-2 training "
        "sentences, seeded subsample; the full dev set)"
    )


def build_demo_subset(glue_dir: Path, out_dir: Path, seed: int, n_train: int = DEMO_TRAIN_SAMPLES) -> Path:
    """Write the packaged subset from a full GLUE folder (how the shipped files were made).

    Args:
        glue_dir: parent of the GLUE ``SST-2/`` folder (e.g. ``../shared/data/glue``).
        out_dir: the new data dir; ``out_dir/SST-2/{train,dev}.tsv`` are written.
        seed: the subsample's seed (the demo's training seed).
        n_train: training sentences kept.

    Returns:
        ``out_dir``.

    Raises:
        DataError / ConfigError: as :func:`minidisc.tasks.load_split` on the source files.
    """
    source = glue_dir / DEMO_TASK_FOLDER
    target = out_dir / DEMO_TASK_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    n_rows = len(load_split("sst2", "train", data_dir=glue_dir))  # validates the file first
    keep = subsample_indices(n_rows, n_train, seed)
    rows = list(range(n_rows)) if keep is None else [int(i) for i in keep]
    lines = (source / "train.tsv").read_bytes().splitlines(keepends=True)
    header, data = lines[0], [line for line in lines[1:] if line.rstrip(b"\r\n")]  # blank lines: only at the end
    (target / "train.tsv").write_bytes(header + b"".join(data[i] for i in rows))
    (target / "dev.tsv").write_bytes((source / "dev.tsv").read_bytes())
    return out_dir


#: The packaged text of ``minidisc demo --llm``: ``train.txt`` (the first 30 chapters of
#: *Pride and Prejudice*, 73,559 SmolLM2 tokens) and ``heldout.txt`` (*A Christmas Carol*,
#: another author: held-out prose), both Project Gutenberg e-books reduced to the book
#: itself (:func:`minidisc.tasks.plaintext.read_document`), LF line endings.
PACKAGED_LM = Path(__file__).resolve().parents[1] / "data" / "demo" / "lm"
#: Gutenberg files the LM demo text is cut from, and the chapter the training text stops before.
LM_DEMO_SOURCES = {"train.txt": "pg1342_Pride_and_Prejudice.txt", "heldout.txt": "pg24022_A_Christmas_Carol.txt"}
LM_DEMO_TRAIN_STOP = "\nChapter 31\n"


def build_lm_demo_text(gutenberg_dir: Path, out_dir: Path) -> Path:
    """Write the packaged LM demo text from the Gutenberg folder (how the shipped files
    were made): each source reduced to the book, the training text cut before
    :data:`LM_DEMO_TRAIN_STOP`.

    Raises:
        DataError: a source file is missing or not UTF-8 (:func:`read_document`).
        ValueError: the training book has no :data:`LM_DEMO_TRAIN_STOP`.
    """
    from minidisc.tasks.plaintext import read_document

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, source in LM_DEMO_SOURCES.items():
        text = read_document(gutenberg_dir / source).text
        if name == "train.txt":
            text = text[: text.index(LM_DEMO_TRAIN_STOP) + 1]
        (out_dir / name).write_text(text, encoding="utf-8", newline="\n")
    return out_dir

