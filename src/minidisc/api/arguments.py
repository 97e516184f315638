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

#: API-only keywords: the data set as a whole, and the tokenizer of a loaded model.
DATASET, DATASET_CONFIG, TOKENIZER = "dataset", "dataset_config", "tokenizer"
#: Split names read as validation, in order of preference (``datasets``' and GLUE's).
VALIDATION_SPLITS = ("validation", "dev", "valid", "val")


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
        ConfigError: own data for a command that does not read it yet (the command
            line's error), a loaded model without ``tokenizer``, data given twice.
        DataError: a hub data set that cannot be loaded, or without a train split.
        RunExistsError: a loaded model for an output folder the run may not use.
    """
    params = inspect.signature(func, eval_str=True).parameters
    options = dict(options)
    if command == "finetune" and "teacher" in options:  # --teacher is an alias of --model there
        options["model"] = options.pop("teacher")
    if "train_file" not in params and any(k in options for k in ("train_file", "validation_file", DATASET)):
        from minidisc.tasks import get_task
        from minidisc.tasks.custom import CUSTOM_TASK

        get_task(CUSTOM_TASK)  # raises the command line's own error for commands without files
    known = set(params) | ({DATASET, DATASET_CONFIG} if "train_file" in params else set()) | {TOKENIZER}
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
    """In-memory data (``train_file``/``validation_file`` as a DataFrame or Dataset,
    ``dataset`` as a DatasetDict, a hub id or a local data set folder) → keys."""
    dataset, config = options.pop(DATASET, None), options.pop(DATASET_CONFIG, None)
    if dataset is not None:
        if options.get("train_file") is not None:
            raise ConfigError("dataset and train_file exclude each other: give the data once")
        train, validation = _splits(dataset, config)
        options["train_file"] = train
        if options.get("validation_file") is None and validation is not None:
            options["validation_file"] = validation
    elif config is not None:
        raise ConfigError("dataset_config applies only with dataset (a hub data set)")
    for name in ("train_file", "validation_file"):
        value = options.get(name)
        if isinstance(value, tuple):  # (key, table) of a DatasetDict split
            options[name], prepared.tables[value[0]] = value
        elif memory.is_in_memory(value):
            key = memory.key_for(value)
            options[name], prepared.tables[key] = key, value


def _splits(dataset: Any, config: str | None) -> tuple[tuple[str, Any], tuple[str, Any] | None]:
    """The ``(key, Dataset)`` of the train and (if there is one) validation split."""
    if isinstance(dataset, (str, os.PathLike)):
        from datasets import load_dataset
        from datasets.exceptions import DatasetsError

        from minidisc.models import looks_local

        name = str(dataset)
        if looks_local(name) and not Path(name).expanduser().exists():  # never sent to the hub
            raise DataError(f"data set folder {name} does not exist; check the path, or give a hub id org/name")
        try:
            splits = load_dataset(name, config)
        except (DatasetsError, OSError, ValueError) as err:  # not found, offline, unreadable files
            raise DataError(f"dataset {name}: cannot load it ({str(err).splitlines()[0][:200]}); give a hub id, "
                            "a local data set folder, or train_file") from None
        what = f"hub dataset {name}" + (f" ({config})" if config else "")
    elif type(dataset).__name__ == "DatasetDict":
        splits, what = dataset, "in-memory DatasetDict"
    else:
        raise ConfigError(f"dataset takes a hub id, a data set folder or a datasets.DatasetDict, got a "
                          f"{type(dataset).__name__}; give a DataFrame or Dataset as train_file")
    if "train" not in splits:
        raise DataError(f"{what}: no train split (it has {', '.join(splits) or 'none'})")
    validation = next((s for s in VALIDATION_SPLITS if s in splits), None)
    pick = [("train", splits["train"])] + ([(validation, splits[validation])] if validation else [])
    keys = [(memory.key_for(table, f"{what}, split {split}"), table) for split, table in pick]
    return keys[0], keys[1] if validation else None


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
