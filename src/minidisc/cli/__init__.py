"""The ``minidisc`` command line.

Each command lives in its own module of this package and exposes ``register(app)``.
Command modules import torch/transformers inside the command body so that
``minidisc --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

from minidisc.errors import MinidiscError

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
)

for _name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"minidisc.cli.{_name}")
    except ModuleNotFoundError as _err:  # a command not built yet
        if _err.name != f"minidisc.cli.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    """Console-script entry point: user errors print one line and exit with status 2."""
    try:
        app()
    except MinidiscError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)
