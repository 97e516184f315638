"""Strict reader for CoNLL-2003 style NER files.

Layout (Tjong Kim Sang & De Meulder, 2003): one token per line as whitespace-separated
columns ``token POS chunk NER`` (the NER tag is the last column), a blank line between
sentences, optional ``-DOCSTART-`` document separators (skipped). Files with only
``token NER`` columns are accepted too, as long as every line of a file has the same
number of columns.
"""

from __future__ import annotations

from pathlib import Path

from minidisc.errors import DataError
from minidisc.tasks.registry import CONLL_TAGS

_DOCSTART = "-DOCSTART-"


def read_conll(path: Path, tag_names: tuple[str, ...] = CONLL_TAGS) -> dict[str, list]:
    """Read a CoNLL file into sentences.

    Args:
        path: the file (e.g. ``conll2003/train.txt``).
        tag_names: the tag set, indexed by tag id.

    Returns:
        ``{"tokens": [[str, ...], ...], "tags": [[int, ...], ...], "idx": [int, ...]}`` with
        one entry per sentence; ``idx`` is the 0-based sentence number in the file.

    Raises:
        DataError: empty file, a line with a different column count than the file's
            first token line (or fewer than 2), an unknown tag, or invalid UTF-8 —
            naming the file and line.
    """
    tag_ids = {name: i for i, name in enumerate(tag_names)}
    sentences: dict[str, list] = {"tokens": [], "tags": [], "idx": []}
    tokens: list[str] = []
    tags: list[int] = []
    width: int | None = None

    def close_sentence() -> None:
        if tokens:
            sentences["tokens"].append(list(tokens))
            sentences["tags"].append(list(tags))
            sentences["idx"].append(len(sentences["idx"]))
            tokens.clear()
            tags.clear()

    with open(path, "rb") as handle:
        for line, raw in enumerate(handle, start=1):
            try:
                fields = raw.decode("utf-8").removeprefix("\ufeff").split()
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}, line {line}: not valid UTF-8 ({exc.reason})") from exc
            if not fields:
                close_sentence()
                continue
            if fields[0] == _DOCSTART:
                close_sentence()
                continue
            if width is None:
                if len(fields) < 2:
                    raise DataError(
                        f"{path}, line {line}: found 1 column; expected 'token POS chunk NER' "
                        "(or 'token NER') separated by spaces"
                    )
                width = len(fields)
            if len(fields) != width:
                raise DataError(
                    f"{path}, line {line}: found {len(fields)} columns, expected {width} "
                    "like the file's first token line (token ... NER-tag)"
                )
            tag = fields[-1]
            if tag not in tag_ids:
                raise DataError(
                    f"{path}, line {line}: unknown NER tag {tag!r}; expected one of "
                    f"{list(tag_names)}"
                )
            tokens.append(fields[0])
            tags.append(tag_ids[tag])
    close_sentence()
    if not sentences["idx"]:
        raise DataError(f"{path}, line 1: the file is empty; expected CoNLL token lines")
    return sentences
