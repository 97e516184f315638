"""Strict reader for GLUE TSV files.

GLUE files are tab-separated and *not* quoted: a ``"`` in QQP/MNLI/MRPC text is an
ordinary character. Each physical line is therefore one row, split on tabs with no
quote processing (the same as ``csv.reader(..., quoting=csv.QUOTE_NONE)``); reading the
lines ourselves keeps exact line numbers for error messages and avoids the csv module's
field-size limit on MNLI's long parse columns. A UTF-8 byte-order mark (MRPC) is dropped,
and CRLF line ends are accepted.

Every problem stops the load with a :class:`~minidisc.errors.DataError` that names the
file, the line and what is wrong; nothing is skipped silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from minidisc.errors import DataError
from minidisc.tasks.layouts import RAW_LABELS, FileLayout
from minidisc.tasks.registry import TaskSpec

#: Sentinel label of an unlabelled example (GLUE test files).
NO_LABEL = -1


def _where(path: Path, line: int) -> str:
    return f"{path}, line {line}"


def _lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for each line, 1-based; blank lines give ``[]``.

    Raises:
        DataError: the file is not valid UTF-8 (naming the line).
    """
    # Binary lines split on LF only (a stray CR inside text cannot split a row), and
    # decoding line by line makes the line number of a bad byte exact.
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{_where(path, number)}: not valid UTF-8 ({exc.reason}); "
                    "GLUE files are UTF-8 text"
                ) from exc
            if number == 1:
                text = text.removeprefix("\ufeff")  # MRPC's byte-order mark
            text = text.removesuffix("\n").removesuffix("\r")
            yield number, (text.split("\t") if text else [])


def _parse_label(spec: TaskSpec, raw: str, path: Path, line: int) -> int | float:
    value = raw.strip()
    if spec.is_regression:
        try:
            score = float(value)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise DataError(
                f"{_where(path, line)}: label {raw!r} is not a finite number; "
                f"task {spec.name} needs a similarity score"
            )
        return score
    allowed = RAW_LABELS[spec.name]
    if value not in allowed:
        raise DataError(
            f"{_where(path, line)}: unknown label {raw!r} for task {spec.name}; "
            f"expected one of {list(allowed)}"
        )
    return allowed.index(value)


def _header_positions(
    layout: FileLayout, header: list[str], path: Path
) -> tuple[int, int | None, int | None]:
    names = [name.strip() for name in header]

    def position(column: str | int | None) -> int | None:
        if column is None:
            return None
        if column not in names:
            raise DataError(
                f"{_where(path, 1)}: missing column {column!r}; the header has {names}. "
                "Is this file in the GLUE layout for this task?"
            )
        return names.index(column)

    text_a = position(layout.text_a)
    assert text_a is not None
    return text_a, position(layout.text_b), position(layout.label)


def read_glue_tsv(path: Path, layout: FileLayout, spec: TaskSpec) -> dict[str, list]:
    """Read one GLUE file into columns.

    Args:
        path: the TSV file.
        layout: its column layout (see :mod:`minidisc.tasks.layouts`).
        spec: the task (decides how labels are parsed).

    Returns:
        ``{"text_a": [...], "text_b": [...], "label": [...], "idx": [...]}``; ``text_b``
        holds ``None`` for single-sentence tasks; ``label`` holds class ids (int),
        scores (float) for regression, or ``-1`` for unlabelled files; ``idx`` is the
        0-based row number in the file.

    Raises:
        DataError: empty file, missing header column, a row with the wrong number of
            fields, a blank line between rows, an unknown or non-numeric label, or
            invalid UTF-8 — each naming the file and line.
    """
    columns: dict[str, list] = {"text_a": [], "text_b": [], "label": [], "idx": []}
    width: int | None = None
    pos_a, pos_b, pos_label = layout.text_a, layout.text_b, layout.label
    blank_line: int | None = None
    for line, fields in _lines(path):
        if not fields:
            blank_line = blank_line or line
            continue
        if blank_line is not None:  # blank lines are only tolerated at the end of a file
            raise DataError(
                f"{_where(path, blank_line)}: blank line between rows; every line must "
                "be one tab-separated example"
            )
        if layout.has_header and width is None:
            width = len(fields)
            pos_a, pos_b, pos_label = _header_positions(layout, fields, path)
            continue
        if layout.has_header:
            if len(fields) != width:
                raise DataError(
                    f"{_where(path, line)}: found {len(fields)} tab-separated columns, the "
                    f"header has {width}"
                )
        elif not layout.min_columns <= len(fields) <= layout.max_columns:
            expected = (
                str(layout.min_columns)
                if layout.min_columns == layout.max_columns
                else f"{layout.min_columns} to {layout.max_columns}"
            )
            raise DataError(
                f"{_where(path, line)}: found {len(fields)} tab-separated columns, "
                f"expected {expected} (this file has no header row)"
            )
        assert isinstance(pos_a, int)
        columns["text_a"].append(fields[pos_a])
        columns["text_b"].append(fields[pos_b] if isinstance(pos_b, int) else None)
        if isinstance(pos_label, int):
            columns["label"].append(_parse_label(spec, fields[pos_label], path, line))
        else:
            columns["label"].append(float(NO_LABEL) if spec.is_regression else NO_LABEL)
        columns["idx"].append(len(columns["idx"]))
    if not columns["idx"]:
        what = "has a header but no rows" if width is not None else "is empty"
        raise DataError(f"{_where(path, 1)}: the file {what}; expected GLUE examples")
    return columns
