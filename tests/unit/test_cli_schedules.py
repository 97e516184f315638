"""The schedule commands from the command line (tiny BERT, toy SST-2): options shared
by every schedule command, help text, --layers syntax, distill, maxidisc and compare."""

from __future__ import annotations

import inspect

import pytest
import typer
from typer.testing import CliRunner

from minidisc.cli import app

runner = CliRunner()
SCHEDULE_COMMANDS = ("distill", "takd", "maxidisc", "compare")


def _command(name: str):
    return typer.main.get_command(app).commands[name]


@pytest.mark.parametrize("name", [*SCHEDULE_COMMANDS, "compress", "demo"])
def test_help_summary_is_one_short_line(name):
    command = _command(name)
    first, *_ = command.help.split("\n\n")
    assert "\n" not in first and len(first) <= 66, first
    assert all("\n" not in paragraph for paragraph in command.help.split("\n\n"))  # no hard wraps for Typer to print
    listing = runner.invoke(app, ["--help"], terminal_width=100).output
    assert first in listing


def test_schedule_commands_share_every_option():
    from dataclasses import fields

    from minidisc.cli.options import ScheduleOptions

    shared = {"--" + f.name.replace("_", "-") for f in fields(ScheduleOptions)}
    assert len(shared) == 27
    for name in SCHEDULE_COMMANDS:
        flags = {opt for param in _command(name).params for opt in param.opts}
        assert shared <= flags, (name, shared - flags)
    assert {"--sparsity", "--layers"} <= {o for p in _command("distill").params for o in p.opts}
    assert "--path" in {o for p in _command("takd").params for o in p.opts}
    assert "--lam" in {o for p in _command("compare").params for o in p.opts}


@pytest.mark.parametrize(
    ("text", "layers"),
    [("3", (0, 1, 2)), ("bottom:3", (0, 1, 2)), ("0,2,4", (0, 2, 4)), ("keep:0,2,4", (0, 2, 4)),
     ("keep:5", (5,)), ("5,", (5,)), (" keep: 1 ", (1,))],
)
def test_layers_syntax(text, layers):
    from minidisc.cli.distill import parse_layers

    assert parse_layers(text) == layers


@pytest.mark.parametrize("text", ["x", "bottom:1,2", "top:3", "keep:", "", "1,x"])
def test_layers_syntax_errors_say_what_is_accepted(text):
    from minidisc.cli.distill import parse_layers

    with pytest.raises(typer.BadParameter, match="bottom:|keep:"):
        parse_layers(text)


def test_bottom_zero_layers_points_at_the_single_layer_syntax():
    from minidisc.cli.distill import parse_layers
    from minidisc.errors import ConfigError

    with pytest.raises(ConfigError, match="keep:0"):
        parse_layers("0")


def test_help_text_unwraps_paragraphs():
    from minidisc.cli.options import help_text

    def f():
        """Summary line.

        Second paragraph
        wrapped in the source.
        """

    assert help_text(f.__doc__) == "Summary line.\n\nSecond paragraph wrapped in the source."
    assert inspect.cleandoc(f.__doc__) != help_text(f.__doc__)
