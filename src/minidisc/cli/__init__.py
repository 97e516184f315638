"""The ``minidisc`` command line.

Each command lives in its own module of this package and exposes ``register(app)``;
every module listed in ``_COMMAND_MODULES`` must exist.
Command modules import torch/transformers inside the command body so that
``minidisc --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

from minidisc.errors import MinidiscError
from minidisc.fileio import disk_error
from minidisc.report.card import record_invocation

app = typer.Typer(
    name="minidisc",
    help="Compress language models by knowledge distillation, at a known cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Order here is the order in `minidisc --help`.
_COMMAND_MODULES = (
    "demo",
    "compress",
    "finetune",
    "sparsify",
    "distill",
    "takd",
    "maxidisc",
    "compare",
    "pretrain",
    "scaling",
    "evaluate_lm",
    "report",
)


def register_commands(target: typer.Typer, names: tuple[str, ...]) -> None:
    """Add the command of every module ``minidisc.cli.<name>`` to ``target``, in order.

    Raises:
        ImportError: a listed command module is missing or fails to import (a listed
            command must exist: remove it from ``_COMMAND_MODULES`` otherwise).
    """
    for name in names:
        importlib.import_module(f"minidisc.cli.{name}").register(target)


register_commands(app, _COMMAND_MODULES)


def main() -> None:
    """Console-script entry point: user errors print one line and exit with status 2,
    and so do a full disk or a read-only file system met anywhere."""
    record_invocation(sys.argv)  # model cards name the command that made a student
    try:
        app()
    except MinidiscError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except OSError as err:
        converted = disk_error(err)
        if converted is None:
            raise
        typer.secho(f"error: {converted}", fg=typer.colors.RED, err=True)
        sys.exit(2)
