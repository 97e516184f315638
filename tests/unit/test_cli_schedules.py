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
    assert len(shared) == 42 and {"--precision", "--low-memory", "--train-file", "--dataset", "--test-file", "--select-on"} <= shared
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


# --- the commands on a tiny 3-layer BERT and a toy SST-2 ----------------------------------


def _train_args(glue) -> list[str]:
    return ["--task", "sst2", "--data-dir", str(glue), "--max-length", "16", "--importance-samples", "16",
            "--grid", "0,0.25,0.5,0.75", "--epochs", "1", "--batch-size", "8", "--seed", "1", "--patience", "0",
            "--no-teacher-cache"]


def _invoke(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def sliced(tmp_path_factory):
    """``distill --sparsity``: fine-tunes and sparsifies the teacher the other commands share."""
    from tests.helpers import write_tiny_bert, write_tiny_sst2

    root = tmp_path_factory.mktemp("cli-schedules")
    teacher = write_tiny_bert(root / "teacher", layers=3)
    glue = write_tiny_sst2(root / "glue", n_train=24, n_dev=8)
    out = root / "sliced"
    result = _invoke(["distill", "--teacher", str(teacher), "--sparsity", "0.75", *_train_args(glue), "-o", str(out)])
    return root, glue, out, result


def test_distill_sparsity(sliced):
    from minidisc.elastic.io import load_student
    from minidisc.elastic.sparsity_map import load_sparsity_map
    from minidisc.fileio import read_json

    _, _, out, result = sliced
    assert "= 1.00× direct KD" in result.output and str(out / "report.md") in result.output
    manifest = read_json(out / "manifest.json")
    assert manifest["config"]["target_sparsity"] == 0.75 and manifest["config"]["grid"] == [0.0, 0.25, 0.5, 0.75]
    assert manifest["config"]["train"]["patience"] is None and manifest["config"]["finetune"]["patience"] is None
    spec = load_sparsity_map(out / "sparsified")[0.75]
    student = load_student(out / "student")
    assert [layer.intermediate.dense.out_features for layer in student.bert.encoder.layer] == list(spec.neurons)


@pytest.mark.parametrize(("flag", "kept"), [("2", (0, 1)), ("0,2", (0, 2)), ("keep:1", (1,))])
def test_distill_layers(sliced, tmp_path, flag, kept):
    import torch

    from minidisc.elastic.io import load_student
    from minidisc.fileio import read_json
    from minidisc.models import ModelSource, load_for_task
    from minidisc.tasks import get_task

    _, glue, shared, _ = sliced
    out = tmp_path / "layers"
    _invoke(["distill", "--layers", flag, "--teacher-run", str(shared), *_train_args(glue), "--epochs", "0.01",
             "-o", str(out)])
    manifest = read_json(out / "manifest.json")
    assert tuple(manifest["config"]["layers"]) == kept
    hop = "hop-L" + "_".join(map(str, kept))
    assert hop in manifest["stages"]
    student = load_student(out / hop / "model")  # the distilled copy, before export
    assert student.config.num_hidden_layers == len(kept)
    # each kept layer starts as the teacher's layer of that index: one training step moved it only a little
    teacher = load_for_task(ModelSource(str(shared / "sparsified" / "model")), get_task("sst2"))
    for new, old in enumerate(kept):
        a = student.bert.encoder.layer[new].attention.output.dense.weight
        b = teacher.bert.encoder.layer[old].attention.output.dense.weight
        others = [teacher.bert.encoder.layer[i].attention.output.dense.weight for i in range(3) if i != old]
        assert all(torch.dist(a, b) < torch.dist(a, o) for o in others)


def test_distill_layers_out_of_range_fails_before_training(sliced, tmp_path):
    from minidisc.errors import ConfigError

    _, glue, shared, _ = sliced
    result = runner.invoke(app, ["distill", "--layers", "keep:0,3", "--teacher-run", str(shared), *_train_args(glue),
                                 "-o", str(tmp_path / "bad")])
    assert isinstance(result.exception, ConfigError) and "the teacher has 3 layers" in str(result.exception)
    assert not (tmp_path / "bad").exists()


def test_maxidisc_command(sliced, tmp_path):
    from minidisc.fileio import read_json

    _, glue, shared, _ = sliced
    out = tmp_path / "maxi"
    result = _invoke(["maxidisc", "--target", "0.75", "--candidates", "0.25,0.5", "--teacher-run", str(shared),
                      *_train_args(glue), "-o", str(out)])
    manifest = read_json(out / "manifest.json")
    finals = [p["final"] for p in manifest["paths"]]
    assert finals == ["hop-s0.25-s0.75", "hop-s0.5-s0.75"]
    best = max(finals, key=lambda f: manifest["stages"][f]["dev_main"])
    assert manifest["stages"]["student"]["from"] == best
    assert f"{manifest['cost']['multiple']:.2f}× direct KD" in result.output
    assert manifest["cost"]["training_runs"] == 4 and (out / "correlation.png").is_file()


def test_compare_command_writes_the_table_and_the_plot(sliced, tmp_path):
    from minidisc.fileio import read_json

    _, glue, shared, _ = sliced
    out = tmp_path / "cmp"
    result = _invoke(["compare", "--target", "0.75", "--truncation", "0.5", "--teacher-run", str(shared),
                      "--note", "cli test", *_train_args(glue), "-o", str(out)])
    report = read_json(out / "report.json")
    rows = {r["schedule"]: r for r in report["rows"]}
    assert list(rows) == ["direct", "takd", "maxidisc", "minidisc"]
    for name, row in rows.items():
        assert f"{name:>9}: dev {100 * row['dev_main']:.2f}" in result.output
    assert rows["direct"]["cost_multiple"] == pytest.approx(1.0)
    table = (out / "report.md").read_text()
    assert "| method | route (sparsities) |" in table
    titles = {"direct": "Direct KD", "takd": "TA (TAKD)", "maxidisc": "MaxiDisc", "minidisc": "MiniDisc"}
    for name, row in rows.items():
        line = next(line for line in table.splitlines() if line.startswith(f"| {titles[name]} |"))
        assert f"{row['cost_train_flops']:.3e}" in line and f"{100 * row['dev_main']:.2f}" in line
    assert read_json(out / "manifest.json")["config"]["note"] == "cli test"
    assert (out / "compare.png").stat().st_size > 1000
