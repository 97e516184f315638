"""The runs file: one record per finished training run, to be fitted by the scaling laws.

``minidisc pretrain`` (and anyone else) appends one record per run; ``minidisc scaling
fit --runs FILE`` reads them back. Two encodings, chosen by the file suffix:

* ``.csv``: a header row then one row per run, columns below (empty cell = absent);
* anything else (``.jsonl`` recommended): JSON Lines, one object per line.

Fields (units matter: the laws are fitted in these units):

=================  ==========  ==========================================================
field              required    meaning
=================  ==========  ==========================================================
kind               always      ``"supervised"`` or ``"distillation"``
student_params     always      N_S: non-embedding parameters of the trained model (> 0)
student_tokens     always      D_S: training/distillation tokens seen (> 0)
student_loss       always      validation cross-entropy of the trained model, nats (> 0)
teacher_params     optional    N_T: teacher non-embedding parameters (> 0)
teacher_tokens     optional    D_T: tokens the teacher was trained on (> 0)
teacher_loss       distill.    L_T: teacher validation cross-entropy, nats (> 0), on the
                               same validation data as ``student_loss``
label              optional    free text (run name, config hash)
=================  ==========  ==========================================================

For ``kind = "supervised"`` the run trained N_S on D_S tokens from the data alone; the
teacher fields must then be empty. For ``"distillation"`` ``teacher_loss`` is required
(the law depends on the teacher only through it); N_T and D_T are kept for costing.
Blank lines are skipped; unknown fields/columns are ignored, so the format can grow.

Appending is safe from concurrent writers: each record is one ``write`` of one line to
a file opened with ``O_APPEND`` (POSIX appends of a single small write do not
interleave), and the CSV header is only written into an empty file (should two writers
create the file at the same moment, the reader skips the repeated header row).
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from minidisc.errors import DataError
from minidisc.fileio import write_text

__all__ = ["FIELDS", "RunRecord", "append_run_record", "read_run_records", "write_run_records"]

FIELDS = (
    "kind",
    "student_params",
    "student_tokens",
    "student_loss",
    "teacher_params",
    "teacher_tokens",
    "teacher_loss",
    "label",
)
_KINDS = ("supervised", "distillation")
_NUMBERS = ("student_params", "student_tokens", "student_loss",
            "teacher_params", "teacher_tokens", "teacher_loss")


@dataclass(frozen=True)
class RunRecord:
    """One finished run (see the module docstring for units and required fields).

    Raises:
        DataError: on construction, if a field is missing, non-positive or inconsistent
            with ``kind``.
    """

    kind: Literal["supervised", "distillation"]
    student_params: float
    student_tokens: float
    student_loss: float
    teacher_params: float | None = None
    teacher_tokens: float | None = None
    teacher_loss: float | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise DataError(f"kind must be 'supervised' or 'distillation', got {self.kind!r}")
        for name in _NUMBERS:
            value = getattr(self, name)
            if value is None:
                if name.startswith("student_"):
                    raise DataError(f"{name} is required")
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise DataError(f"{name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise DataError(f"{name} must be finite and > 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        teacher = [n for n in ("teacher_params", "teacher_tokens", "teacher_loss")
                   if getattr(self, n) is not None]
        if self.kind == "distillation" and self.teacher_loss is None:
            raise DataError("teacher_loss is required when kind is 'distillation'")
        if self.kind == "supervised" and teacher:
            raise DataError(
                f"a supervised run has no teacher, but {', '.join(teacher)} is set; "
                "use kind 'distillation' or leave the teacher fields empty"
            )
        if self.label is not None and not isinstance(self.label, str):
            object.__setattr__(self, "label", str(self.label))

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (absent optional fields omitted)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """Build from a mapping; unknown keys are ignored, ``None``/"" mean absent.

        Raises:
            DataError: if a field is missing or invalid.
        """
        values: dict[str, Any] = {}
        for name in FIELDS:
            value = data.get(name)
            if value is None or (isinstance(value, str) and value.strip() == ""):
                continue
            if name in _NUMBERS and isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise DataError(f"{name} must be a number, got {value!r}") from None
            values[name] = value
        if "kind" not in values:
            raise DataError("kind is required ('supervised' or 'distillation')")
        missing = [n for n in ("student_params", "student_tokens", "student_loss")
                   if n not in values]
        if missing:
            raise DataError(f"missing required field(s): {', '.join(missing)}")
        return cls(**values)


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def _csv_line(row: Iterable[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def append_run_record(path: str | os.PathLike[str], record: RunRecord) -> None:
    """Append one record to a runs file (created if missing), as one line.

    The encoding follows the suffix (``.csv`` → CSV row, header written into an empty
    file; otherwise one JSON object per line). The line is written with a single
    ``os.write`` on an ``O_APPEND`` descriptor, so concurrent appenders never
    interleave partial lines.

    Raises:
        DataError: if ``record`` is not a :class:`RunRecord`.
    """
    if not isinstance(record, RunRecord):
        raise DataError(f"expected a RunRecord, got {type(record).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if _is_csv(path):
            line = _csv_line(getattr(record, f) for f in FIELDS)
            if os.fstat(fd).st_size == 0:
                line = _csv_line(FIELDS) + line
        else:
            line = json.dumps(record.to_dict(), sort_keys=False) + "\n"
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def write_run_records(path: str | os.PathLike[str], records: Iterable[RunRecord]) -> None:
    """Write a whole runs file atomically (replacing it), encoding by suffix."""
    path = Path(path)
    if _is_csv(path):
        text = _csv_line(FIELDS) + "".join(
            _csv_line(getattr(r, f) for f in FIELDS) for r in records
        )
    else:
        text = "".join(json.dumps(r.to_dict()) + "\n" for r in records)
    write_text(path, text)


def read_run_records(path: str | os.PathLike[str]) -> list[RunRecord]:
    """Read every record of a runs file (CSV by ``.csv`` suffix, else JSON Lines).

    Returns:
        The records in file order.

    Raises:
        DataError: if the file is missing, or a row is malformed — the message names
            the file and the 1-based line number and says what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"runs file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:  # e.g. a binary file passed by mistake
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text ({err.reason}); a runs file is JSON Lines or CSV, "
            "e.g. written by minidisc pretrain --log-runs or minidisc scaling simulate"
        ) from None
    return _read_csv(path, text) if _is_csv(path) else _read_jsonl(path, text)


def _read_jsonl(path: Path, text: str) -> list[RunRecord]:
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(data, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(data).__name__}")
        try:
            records.append(RunRecord.from_dict(data))
        except DataError as err:
            raise DataError(f"{path}:{lineno}: {err}") from None
    return records


def _read_csv(path: Path, text: str) -> list[RunRecord]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in ("kind", "student_params", "student_tokens", "student_loss")
               if c not in header]
    if missing:
        raise DataError(
            f"{path}:1: CSV header lacks column(s) {', '.join(missing)}; "
            f"expected columns {', '.join(FIELDS)}"
        )
    records = []
    for row in reader:
        lineno = reader.line_num
        if not any((v or "").strip() for k, v in row.items() if k is not None):
            continue
        if all((row.get(k) or "").strip() == k for k in header):
            continue  # a repeated header (two writers created the file at once)
        if None in row:  # more cells than header columns
            raise DataError(f"{path}:{lineno}: row has more cells than the header has columns")
        try:
            records.append(RunRecord.from_dict(row))
        except DataError as err:
            raise DataError(f"{path}:{lineno}: {err}") from None
    return records
