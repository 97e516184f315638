"""Plain-text documents for language modelling: finding the files, reading them clean.

A corpus is named by text files and folders; a folder stands for the ``*.txt`` files
directly inside it, in name order (:func:`corpus_files`). Each file is one document,
read by :func:`read_document`:

* strict UTF-8 (a byte-order mark at the start is dropped);
* line ends normalised to ``\\n`` (``\\r\\n`` and a lone ``\\r`` alike:
  :func:`normalise_newlines`);
* a Project Gutenberg e-book reduced to the book itself (:func:`strip_gutenberg`):
  the licence header up to the ``*** START OF … PROJECT GUTENBERG EBOOK … ***`` line,
  the ``*** END OF …`` line with the licence footer after it, the closing "End of
  (the) Project Gutenberg EBook of …" note and an opening "Produced by …" credit are
  removed. Files without the markers are left as they are.

Gutenberg's own advice for users of its texts is to remove the header and footer;
``../shared/data/PROVENANCE.md`` gives it for the staged books.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from minidisc.errors import DataError

#: File name ending that a corpus folder is read for.
FOLDER_SUFFIX = ".txt"

_START = re.compile(r"^\*{3} ?START OF (?:THE|THIS) PROJECT GUTENBERG E(?:BOOK|TEXT)\b.*$", re.MULTILINE | re.IGNORECASE)
_END = re.compile(r"^\*{3} ?END OF (?:THE|THIS) PROJECT GUTENBERG E(?:BOOK|TEXT)\b.*$", re.MULTILINE | re.IGNORECASE)
_END_NOTE = re.compile(r"^End of (?:the )?Project Gutenberg", re.MULTILINE | re.IGNORECASE)
_PRODUCED_BY = re.compile(r"\A\s*Produced by\b.*?(?:\n[ \t]*\n|\Z)", re.DOTALL | re.IGNORECASE)
#: The closing note is a line or two; one found earlier in the body is left alone.
_END_NOTE_MAX_CHARS = 400


@dataclass(frozen=True)
class Document:
    """One corpus file, read clean (:func:`read_document`).

    Attributes:
        path: the file.
        text: its text after decoding, newline normalisation and Gutenberg stripping.
        gutenberg: whether Project Gutenberg header/footer markers were found and removed.
    """

    path: Path
    text: str
    gutenberg: bool = False


def normalise_newlines(text: str) -> str:
    """``\\r\\n`` and lone ``\\r`` become ``\\n``."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def strip_gutenberg(text: str) -> tuple[str, bool]:
    """The book inside a Project Gutenberg e-book file (see the module doc).

    Args:
        text: the file's text with ``\\n`` line ends (:func:`normalise_newlines`).

    Returns:
        ``(text, stripped)``: the body between the START and END marker lines (either
        side alone is cut when only one marker is there), without the closing "End of
        … Project Gutenberg …" note or an opening "Produced by" paragraph, blank lines
        at both ends removed; or ``(text, False)`` unchanged when no marker is found.
    """
    start = _START.search(text)
    end = _END.search(text, start.end() if start else 0)
    if start is None and end is None:
        return text, False
    body = text[start.end() if start else 0 : end.start() if end else len(text)]
    notes = list(_END_NOTE.finditer(body))
    if notes and len(body) - notes[-1].start() <= _END_NOTE_MAX_CHARS:
        body = body[: notes[-1].start()]
    body = _PRODUCED_BY.sub("", body, count=1)
    return body.strip("\n"), True


def corpus_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The text files a corpus is made of, in order: files as given, each folder replaced
    by the ``*.txt`` files directly inside it (sorted by name).

    Raises:
        DataError: a path does not exist, a folder holds no ``.txt`` file, or no path is
            given.
    """
    if not paths:
        raise DataError("no corpus given: pass one or more text files or folders of .txt files")
    files: list[Path] = []
    for item in paths:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix == FOLDER_SUFFIX and p.is_file())
            if not found:
                raise DataError(f"corpus folder {path} holds no {FOLDER_SUFFIX} files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"corpus file or folder {path} not found")
    return files


def read_document(path: str | os.PathLike[str]) -> Document:
    """Read one corpus file clean (see the module doc).

    Raises:
        DataError: the file cannot be read or is not valid UTF-8 (the message names the
            line).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read corpus file {path} ({err.strerror})") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not valid UTF-8 ({err.reason})") from err
    text, gutenberg = strip_gutenberg(normalise_newlines(text.removeprefix("\ufeff")))
    return Document(path, text, gutenberg)


def read_documents(paths: Sequence[str | os.PathLike[str]]) -> list[Document]:
    """:func:`read_document` of every file of :func:`corpus_files`.

    Raises:
        DataError: as those two, or every document is blank.
    """
    documents = [read_document(path) for path in corpus_files(paths)]
    if not any(doc.text.strip() for doc in documents):
        raise DataError(f"corpus {[os.fspath(p) for p in paths]} holds no text")
    return documents
