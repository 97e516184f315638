"""Python values → the arguments a command takes on the command line.

The API calls each command's own function (``minidisc.cli.<command>``), so options,
defaults, validation and run-folder rules are the command line's. What Python adds is
turned into what that function takes: a data set in memory becomes a key naming it
(:mod:`minidisc.tasks.memory`), a loaded model a folder saved into the run folder
(:mod:`minidisc.runfolder.inputs`), a string a path where the option is a path, one text a
list where the option repeats.
"""

from __future__ import annotations

import difflib
import inspect
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minidisc.errors import ConfigError, DataError
from minidisc.tasks import memory

#: Keywords Python gives more to: the data set (a DatasetDict besides --dataset's hub id or
#: folder) and its configuration, and the tokenizer of a loaded model (API-only).
DATASET, DATASET_CONFIG, TOKENIZER = "dataset", "dataset_config", "tokenizer"


@dataclass
class Prepared:
    """A command's keyword arguments, the in-memory tables they name, and the folder a
    loaded model was saved into (None: none was given)."""

    kwargs: dict[str, Any]
    tables: dict[str, Any] = field(default_factory=dict)
    saved_model: Path | None = None


def prepare(command: str, func: Any, options: dict[str, Any]) -> Prepared:
    """Check ``options`` against the command's signature and convert them.

    Raises:
        TypeError: an option the command does not have (the closest is suggested).
        ConfigError: a loaded model without ``tokenizer``, data given twice.
        DataError: a DatasetDict without the splits asked for.
        RunExistsError: a loaded model for an output folder the run may not use.
    """
    params = inspect.signature(func, eval_str=True).parameters
    options = dict(options)
    if command == "finetune" and "teacher" in options:  # --teacher is an alias of --model there
        options["model"] = options.pop("teacher")
    known = set(params) | {TOKENIZER}
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; see minidisc {command.replace('_', '-')} --help"
            raise TypeError(f"minidisc.{command}() got an unexpected keyword argument {name!r}{hint}")
    prepared = Prepared({})
    _data(options, prepared)
    _model(command, params, options, prepared)
    prepared.kwargs = {name: _coerce(params[name].annotation, value) for name, value in options.items()}
    return prepared


def _data(options: dict[str, Any], prepared: Prepared) -> None:
    """In-memory data (``train_file``/``validation_file``/``test_file`` as a DataFrame or
    Dataset, ``dataset`` as a DatasetDict) → keys; ``split_names`` as a dict → the
    command line's text. A hub id or folder as ``dataset`` stays the ``--dataset`` option."""
    roles = options.get("split_names")
    if isinstance(roles, dict):
        options["split_names"] = roles = ",".join(f"{k}={v}" for k, v in roles.items())
    dataset = options.get(DATASET)
    if isinstance(dataset, os.PathLike):
        options[DATASET] = dataset = os.fspath(dataset)
    if dataset is not None and not isinstance(dataset, (str, os.PathLike)):
        if options.get("train_file") is not None:
            raise ConfigError("dataset and train_file exclude each other: give the data once")
        if options.get(DATASET_CONFIG) is not None:
            raise ConfigError("dataset_config applies only to a hub id or a data set folder as dataset")
        del options[DATASET]
        options.pop("split_names", None)
        for role, key_table in _splits(dataset, roles).items():
            if options.get(f"{role}_file") is None:
                options[f"{role}_file"] = key_table
    for name in ("train_file", "validation_file", "test_file"):
        value = options.get(name)
        if isinstance(value, tuple):  # (key, table) of a DatasetDict split
            options[name], prepared.tables[value[0]] = value
        elif memory.is_in_memory(value):
            key = memory.key_for(value)
            options[name], prepared.tables[key] = key, value


def _splits(dataset: Any, roles: str | None) -> dict[str, tuple[str, Any]]:
    """The ``(key, Dataset)`` of each role (``train``, ``validation``, ``test``) of a
    ``DatasetDict``: the splits ``roles`` names (``"train=a,test=b"``), by default
    ``train`` and the first of ``validation``, ``dev``, ``valid``, ``val`` present.

    Raises:
        ConfigError: not a DatasetDict, or a malformed ``roles``.
        DataError: a named (or the train) split is absent.
    """
    if type(dataset).__name__ != "DatasetDict":
        raise ConfigError(f"dataset takes a hub id, a data set folder or a datasets.DatasetDict, got a "
                          f"{type(dataset).__name__}; give a DataFrame or Dataset as train_file")
    import typer

    from minidisc.cli.options import parse_split_names
    from minidisc.tasks.custom import VALIDATION_SPLITS

    try:
        named = parse_split_names(roles) or {}
    except typer.BadParameter as err:  # the command line's message
        raise ConfigError(err.message) from None
    picks = {"train": named.get("train", "train")}
    validation = named.get("validation") or next((s for s in VALIDATION_SPLITS if s in dataset), None)
    if validation is not None:
        picks["validation"] = validation
    if "test" in named:
        picks["test"] = named["test"]
    out = {}
    for role, split in picks.items():
        if split not in dataset:
            raise DataError(f"in-memory DatasetDict: no split {split!r} for {role} (it has "
                            f"{', '.join(dataset) or 'none'}); set split_names={{'{role}': NAME}}")
        table = dataset[split]
        out[role] = (memory.key_for(table, f"in-memory DatasetDict, split {split}"), table)
    return out


def _model(command: str, params: Any, options: dict[str, Any], prepared: Prepared) -> None:
    """A loaded ``PreTrainedModel`` as teacher (``model`` for finetune) → the folder it
    is saved into, inside the run folder."""
    name = "model" if command == "finetune" else "teacher"
    model, tokenizer = options.get(name), options.pop(TOKENIZER, None)
    if model is None or isinstance(model, (str, os.PathLike)):
        if tokenizer is not None:
            raise ConfigError(f"tokenizer applies only with a loaded model as {name}")
        return
    from transformers import PreTrainedModel

    from minidisc.runfolder.inputs import save_model_input

    if not isinstance(model, PreTrainedModel):
        raise ConfigError(f"{name} takes a hub id, a folder or a transformers PreTrainedModel, "
                          f"got a {type(model).__name__}")
    if tokenizer is None:
        raise ConfigError(f"a loaded model as {name} needs its tokenizer: pass tokenizer=...")
    output = options.get("output", params["output"].default)
    prepared.saved_model = save_model_input(output, model, tokenizer, "teacher",
                                            overwrite=bool(options.get("overwrite")))
    options[name] = str(prepared.saved_model)


def _coerce(annotation: Any, value: Any) -> Any:
    """A string where the option is a path → a Path; one item where it repeats → a list;
    a list where the option is a comma-separated text (``grid``, ``path``) → that text."""
    kinds = _kinds(annotation)
    if value is None:
        return None
    if Path in kinds and isinstance(value, (str, os.PathLike)) and not memory.is_key(str(value)):
        return Path(value)
    if list in kinds and isinstance(value, (str, os.PathLike)):
        return [str(value)]
    if list in kinds and isinstance(value, tuple):
        return list(value)
    if str in kinds and list not in kinds and isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return value


def _kinds(annotation: Any) -> set[Any]:
    """The plain types an (``Annotated``, optional) annotation allows: ``{Path, NoneType}``."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    args = typing.get_args(annotation)
    members = args if args and typing.get_origin(annotation) not in (list,) else (annotation,)
    return {typing.get_origin(a) or a for a in members}
