"""The Python API: every schedule command as a function, with the command line's options.

``minidisc.compress(teacher=..., train_file=frame, text_column="text", ...)`` runs what
``minidisc compress --teacher ... --train-file ...`` runs: the keyword arguments are the
command's options with underscores (``--target-sparsity`` → ``target_sparsity``; a
repeatable option takes a list or one value; ``config`` takes a YAML path or its content
as a dict), validated, defaulted and resumed the same way, because each function calls the
command's own code. Python adds:

* data in memory: ``train_file`` / ``validation_file`` / ``test_file`` as a pandas
  ``DataFrame`` or a ``datasets.Dataset``; ``dataset`` as a ``DatasetDict`` (its
  ``train`` split, ``validation``/``dev``/``valid``/``val`` if there is one, or the splits
  ``split_names`` names, a dict or ``"train=..,validation=..,test=.."``). They get a
  file's checks and errors; the run records a content fingerprint, so the same data
  resume a run and other data are refused without ``overwrite=True``. A hub id or a
  local data set folder as ``dataset`` is the command line's ``--dataset``.
* a loaded model: ``teacher`` (``model`` for finetune) as a ``PreTrainedModel`` with
  ``tokenizer=``, saved as safetensors into ``<output>/inputs/`` and used from there.

Each returns a :class:`RunResult` (student folder, chosen assistants, metrics per model,
cost, report). Errors are the command line's: :class:`~minidisc.errors.MinidiscError`
subclasses with one sentence that says what to change. See docs/python-api.md.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from typing import Any

from minidisc.api.result import RunResult, read_result

__all__ = ["RunResult", "compare", "compress", "distill", "finetune", "maxidisc", "read_result", "sparsify", "takd"]


def run_command(command: str, options: dict[str, Any]) -> RunResult:
    """Run ``minidisc <command>`` with ``options`` (keyword arguments of the API) and
    return its result. Data and models in memory are resolved first; see the module doc.

    Raises:
        MinidiscError: as the command line (bad options, data, model, output folder).
        TypeError: an option the command does not have.
    """
    import typer

    from minidisc.api.arguments import prepare
    from minidisc.errors import ConfigError
    from minidisc.runfolder.inputs import prune_inputs
    from minidisc.tasks import memory

    func = command_function(command)
    prepared = prepare(command, func, options)
    bound = inspect.signature(func, eval_str=True).bind(**prepared.kwargs)
    bound.apply_defaults()  # the schedule commands expect every shared option, as Typer passes them
    with memory.registered(prepared.tables):
        try:
            run_dir = func(**bound.arguments)
        except typer.BadParameter as err:  # the command line's usage errors, as the API's
            raise ConfigError(err.message) from None
    if prepared.saved_model is not None:
        prune_inputs(run_dir, keep=prepared.saved_model)  # a replaced run's model
    return read_result(run_dir)


def finetune(**options: Any) -> RunResult:
    """``minidisc finetune``: fine-tune ``model`` (or ``teacher``) on a task, your data
    (``train_file``, ``dataset``) or a GLUE suite. ``result.student`` is the model folder."""
    return run_command("finetune", options)


def compress(**options: Any) -> RunResult:
    """``minidisc compress``: the MiniDisc pipeline (``task="lm"``: a decoder on text,
    with ``corpus=[...]``). ``result.student`` is the exported student."""
    return run_command("compress", options)


def sparsify(**options: Any) -> RunResult:
    """``minidisc sparsify``: importance, reordering and the sparsity map of a fine-tuned
    ``teacher``. ``result.student`` is the reordered teacher."""
    return run_command("sparsify", options)


def distill(**options: Any) -> RunResult:
    """``minidisc distill``: direct KD into the teacher sliced at ``sparsity`` or cut to ``layers``."""
    return run_command("distill", options)


def takd(**options: Any) -> RunResult:
    """``minidisc takd``: distillation along a fixed teacher-assistant ``path``."""
    return run_command("takd", options)


def maxidisc(**options: Any) -> RunResult:
    """``minidisc maxidisc``: TAKD through every candidate assistant, the best kept."""
    return run_command("maxidisc", options)


def compare(**options: Any) -> RunResult:
    """``minidisc compare``: every schedule on one teacher; ``result.metrics`` per schedule."""
    return run_command("compare", options)


def _signature(command: str) -> inspect.Signature:
    """The command's options as keyword-only parameters (for ``help()`` and editors), with
    the types Python adds: data and models in memory, ``dataset``, ``tokenizer``."""
    params = inspect.signature(command_function(command), eval_str=True).parameters
    wider = {"train_file": "str | Path | DataFrame | Dataset | None",
             "validation_file": "str | Path | DataFrame | Dataset | None",
             "test_file": "str | Path | DataFrame | Dataset | None",
             "dataset": "str | Path | DatasetDict | None", "split_names": "str | dict[str, str] | None",
             "teacher": "str | Path | PreTrainedModel | None", "model": "str | Path | PreTrainedModel | None"}
    extra = {"tokenizer": ("PreTrainedTokenizerBase | None", None)}
    out = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=p.default,
                             annotation=wider.get(name, _plain(p.annotation)))
           for name, p in params.items()]
    out += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
            for name, (kind, default) in extra.items()]
    return inspect.Signature(out, return_annotation=RunResult)


def _plain(annotation: Any) -> Any:
    """``Annotated[float | None, typer.Option(...)]`` → ``float | None``."""
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation


def command_function(command: str) -> Any:
    """The function behind ``minidisc <command>`` (``minidisc.cli.<command>.<command>``)."""
    return getattr(importlib.import_module(f"minidisc.cli.{command}"), command)


for _function in (finetune, compress, sparsify, distill, takd, maxidisc, compare):
    _function.__signature__ = _signature(_function.__name__)  # type: ignore[attr-defined]
