"""Plain-text corpus files: folders, UTF-8, line ends, Project Gutenberg headers and footers."""

from __future__ import annotations

from pathlib import Path

import pytest

from minidisc.errors import DataError
from minidisc.tasks.corpus import load_text_corpus
from minidisc.tasks.plaintext import (
    corpus_files,
    normalise_newlines,
    read_document,
    read_documents,
    strip_gutenberg,
)
from tests.helpers import SHARED_DATA

BOOK = (
    "The Project Gutenberg EBook of A Tiny Book, by Nobody\r\n"
    "\r\n"
    "This eBook is for the use of anyone anywhere at no cost.\r\n"
    "\r\n"
    "*** START OF THIS PROJECT GUTENBERG EBOOK A TINY BOOK ***\r\n"
    "\r\n"
    "\r\n"
    "Produced by Someone Kind\r\n"
    "and Friends\r\n"
    "\r\n"
    "\r\n"
    "CHAPTER I.\r\n"
    "\r\n"
    "  It was a caf\u00e9 \u2014 small.\r\n"
    "The end.\r\n"
    "\r\n"
    "\r\n"
    "End of the Project Gutenberg EBook of A Tiny Book, by Nobody\r\n"
    "\r\n"
    "*** END OF THIS PROJECT GUTENBERG EBOOK A TINY BOOK ***\r\n"
    "\r\n"
    "Section 1. General Terms of Use of Project Gutenberg-tm electronic works\r\n"
)
BODY = "CHAPTER I.\n\n  It was a caf\u00e9 \u2014 small.\nThe end."


def test_newlines() -> None:
    assert normalise_newlines("a\r\nb\rc\nd\r\n\r\n") == "a\nb\nc\nd\n\n"


def test_gutenberg_header_footer_and_notes_are_removed() -> None:
    text, stripped = strip_gutenberg(normalise_newlines(BOOK))
    assert stripped and text == BODY
    # a file without the markers is left as it is
    plain = "Produced by nobody: an ordinary first line.\nEnd of Project Gutenberg talk.\n"
    assert strip_gutenberg(plain) == (plain, False)
    # the older marker spelling (no space, THE) and a missing END marker
    older = "header\n***START OF THE PROJECT GUTENBERG EBOOK X***\nbody line\n"
    assert strip_gutenberg(older) == ("body line", True)
    # a mention of "End of the Project Gutenberg" far from the end stays
    long_body = "*** START OF THIS PROJECT GUTENBERG EBOOK X ***\nEnd of the Project Gutenberg era.\n" + "words " * 100
    assert strip_gutenberg(long_body)[0].startswith("End of the Project Gutenberg era.")


def test_read_document_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "b.txt").write_bytes(BOOK.encode("utf-8"))
    (folder / "a.txt").write_bytes("\ufeffplain\r\ntext\r\n".encode())
    (folder / "notes.md").write_text("not a corpus file")
    assert corpus_files([folder]) == [folder / "a.txt", folder / "b.txt"]  # .txt only, by name
    docs = read_documents([folder])
    assert [d.text for d in docs] == ["plain\ntext\n", BODY]
    assert [d.gutenberg for d in docs] == [False, True]
    # load_text_corpus takes folders too, and strips Gutenberg books the same way
    assert load_text_corpus(folder)["text"] == ["plain", "text", "CHAPTER I.", "  It was a caf\u00e9 \u2014 small.", "The end."]


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        corpus_files([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \.txt files"):
        corpus_files([tmp_path / "empty"])
    with pytest.raises(DataError, match="no corpus"):
        corpus_files([])
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nfine\nbad \xff byte\n")
    with pytest.raises(DataError, match=r"bad\.txt, line 3: not valid UTF-8"):
        read_document(bad)
    (tmp_path / "blank.txt").write_text("\n\n")
    with pytest.raises(DataError, match="no text"):
        read_documents([tmp_path / "blank.txt"])


def test_real_gutenberg_books() -> None:
    folder = SHARED_DATA / "gutenberg"
    if not folder.is_dir():
        pytest.skip(f"real data not found at {folder}")
    for path in corpus_files([folder]):
        doc = read_document(path)
        assert doc.gutenberg, path
        assert "\r" not in doc.text
        # header (licence note, title page data) and footer (licence) gone, markers too
        for gone in ("for the use of anyone anywhere", "PROJECT GUTENBERG EBOOK", "General Terms of Use"):
            assert gone.lower() not in doc.text.lower(), (path, gone)
        assert "Project Gutenberg" not in doc.text[-500:], path  # the closing note too
        assert len(doc.text) > 0.8 * (path.stat().st_size - 25_000), path  # the book itself is kept
    alice = read_document(folder / "pg11_Alice_s_Adventures_in_Wonderland.txt").text
    assert alice.startswith("ALICE\u2019S ADVENTURES IN WONDERLAND")
    assert alice.rstrip().endswith("THE END")
