"""Data sets given in memory from Python (a pandas ``DataFrame``, a ``datasets.Dataset``,
a split of a ``DatasetDict`` or of a hub data set) where a command takes a file.

Each is named by a *key*, a string that stands where a file path would (``train_file``
of :class:`~minidisc.config.DataConfig`) and ends with a fingerprint of the content:
``in-memory DataFrame (3f2a9c1b7d4e5f60)``. The key is what a run folder records, so a
run resumes with the same data and refuses other data (another key: another
configuration). :func:`registered` makes the table behind a key readable while a run
uses it; :mod:`minidisc.tasks.custom` reads it with the checks a file gets, through
:func:`table`, whose columns are plain Python lists as a file's would be.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from minidisc.errors import ConfigError, DataError

#: A key: what it is, then the content fingerprint (16 hex digits) in parentheses.
_KEY = re.compile(r"^(in-memory|hub dataset) .+ \(([0-9a-f]{16})\)$")

_REGISTRY: dict[str, Any] = {}


@dataclass(frozen=True)
class Table:
    """The columns of an in-memory data set, as :mod:`minidisc.tasks.custom` reads a file's:
    ``table[column]`` is the column as a list of Python values (``None`` where missing),
    class ids of a ``datasets.ClassLabel`` column as their names."""

    column_names: list[str]
    rows: int
    column: Callable[[str], list[Any]]

    def __getitem__(self, name: str) -> list[Any]:
        return self.column(name)

    def __len__(self) -> int:
        return self.rows


def is_key(text: str | None) -> bool:
    """Whether ``text`` names an in-memory data set rather than a file."""
    return bool(text) and _KEY.match(str(text)) is not None


def is_in_memory(data: Any) -> bool:
    """Whether ``data`` is a pandas ``DataFrame`` or a ``datasets.Dataset`` (without
    importing either library when it is a path)."""
    kind = type(data)
    return (kind.__module__.split(".")[0], kind.__name__) in {("pandas", "DataFrame"), ("datasets", "Dataset")}


def key_for(data: Any, what: str | None = None) -> str:
    """The key of ``data`` (a ``DataFrame`` or ``Dataset``), e.g.
    ``in-memory DataFrame (3f2a9c1b7d4e5f60)``; ``what`` replaces the middle part
    (``hub dataset org/name, split train``).

    Raises:
        ConfigError: ``data`` is neither.
    """
    if not is_in_memory(data):
        raise ConfigError(f"expected a pandas DataFrame or a datasets.Dataset, got a {type(data).__name__}")
    return f"{what or 'in-memory ' + type(data).__name__} ({fingerprint(data)})"


def fingerprint(data: Any) -> str:
    """16 hex digits that change with the content: column names, types and every value.

    A ``Dataset`` has its own (``datasets`` hashes an in-memory table's content and a
    loaded one's source; transforms chain it); a ``DataFrame`` is hashed row by row with
    ``pandas.util.hash_pandas_object`` (index included), with its column names and dtypes.
    """
    if type(data).__name__ == "Dataset":
        return hashlib.sha256(f"dataset:{data._fingerprint}".encode()).hexdigest()[:16]
    import pandas as pd

    digest = hashlib.sha256(repr([(str(c), str(t)) for c, t in data.dtypes.items()]).encode())
    try:
        rows = pd.util.hash_pandas_object(data, index=True).to_numpy()
        digest.update(rows.tobytes())
    except TypeError:  # unhashable cells (lists): their text
        digest.update(data.to_json(orient="split", default_handler=str).encode())
    return digest.hexdigest()[:16]


@contextmanager
def registered(tables: dict[str, Any]) -> Iterator[None]:
    """Make every ``key → DataFrame/Dataset`` of ``tables`` readable by :func:`table`
    for the duration of the block (a run that uses them)."""
    added = [k for k in tables if k not in _REGISTRY]
    _REGISTRY.update(tables)
    try:
        yield
    finally:
        for key in added:
            _REGISTRY.pop(key, None)


def table(key: str) -> Table:
    """The columns of the data set registered under ``key``.

    Raises:
        ConfigError: nothing is registered under it (a config that names in-memory data,
            read outside the Python call that gave them).
        DataError: the data set has no rows, or repeats a column name.
    """
    data = _REGISTRY.get(key)
    if data is None:
        raise ConfigError(f"{key} was given from Python (minidisc.compress(train_file=...) and the like) and only "
                          "exists in that call: pass the data again from Python, or save it to a file for --train-file")
    return dataset_table(key, data) if type(data).__name__ == "Dataset" else _frame_table(key, data)


def _frame_table(key: str, frame: Any) -> Table:
    names = [str(c) for c in frame.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{key}, column {repeated[0]!r}: the column name occurs more than once; rename one")
    if len(frame) == 0:
        raise DataError(f"{key}: no rows")
    by_name = dict(zip(names, frame.columns))

    def column(name: str) -> list[Any]:
        return [_missing_as_none(v) for v in frame[by_name[name]].tolist()]

    return Table(names, len(frame), column)


def _missing_as_none(value: Any) -> Any:
    # pandas marks a missing cell NaN, None, NaT or NA; a file's reader gives None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def dataset_table(key: str, data: Any) -> Table:
    """The columns of a ``datasets.Dataset`` (named ``key`` in errors) as a file's:
    class ids of a ``ClassLabel`` column (or of a list of them: tags) as their names.

    Raises:
        DataError: the data set has no rows.
    """
    from datasets import ClassLabel

    if len(data) == 0:
        raise DataError(f"{key}: no rows")

    def name_of(feature: Any, value: Any) -> Any:
        return feature.int2str(value) if value is not None and value >= 0 else None

    def column(name: str) -> list[Any]:
        values = data[name]
        feature = data.features.get(name)
        if isinstance(feature, ClassLabel):  # class ids → their names, as a file would hold them
            return [name_of(feature, v) for v in values]
        inner = getattr(feature, "feature", None)
        if isinstance(inner, ClassLabel):  # tag ids (a list of ClassLabel) → tag names
            return [None if v is None else [name_of(inner, t) for t in v] for v in values]
        return list(values)

    return Table(list(data.column_names), len(data), column)
