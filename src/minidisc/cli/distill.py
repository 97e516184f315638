"""``minidisc distill``: one direct distillation run teacher → student.

Also prints the summary of a baseline run (``takd`` and ``maxidisc`` use it too); the
options every schedule command shares are in :mod:`minidisc.cli.options`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minidisc.cli.options import Output, ScheduleOptions, help_text, schedule_command
from minidisc.fileio import read_json
from minidisc.schedules.config import DistillConfig


def summarize(path: Path) -> None:
    """Print the student's dev metric, the cost and where the report is."""
    report = read_json(path / "report.json")
    cost = report.get("cost") or {}
    multiple = cost.get("multiple")
    typer.echo(
        f"teacher dev {100 * report['teacher']['dev']['main']:.2f} | student dev {100 * report['student']['dev']['main']:.2f} "
        f"| cost {cost.get('total', {}).get('train_flops', 0):.3e} FLOPs"
        + (f" = {multiple:.2f}× direct KD" if multiple is not None else "")
    )
    teacher, student = report["teacher"], report["student"]
    if student.get("test"):
        typer.echo(f"held-out test: teacher {100 * teacher['test']['main']:.2f} | student {100 * student['test']['main']:.2f}")
    typer.echo(f"student: {path / 'student'}")
    typer.echo(f"report:  {path / 'report.md'}")


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """The ``--layers`` value → 0-based indices of the teacher layers the student keeps.

    ``"3"`` or ``"bottom:3"`` → the bottom 3 layers ``(0, 1, 2)``; ``"0,2,4"`` or
    ``"keep:0,2,4"`` → those layers; one layer: ``"keep:5"`` (or ``"5,"``).

    Raises:
        typer.BadParameter: not one of these forms.
    """
    if text is None:
        return None
    # lazy: pulls in torch (~1.2 s CPU); keeps `minidisc --help` fast
    from minidisc.schedules.students import bottom_layers

    text = text.strip()
    prefix, sep, body = text.partition(":")
    kind = prefix.strip() if sep else ("keep" if "," in text else "bottom")
    body = body if sep else text
    usage = f"--layers expects N or bottom:N (the bottom N layers), or indices 0,2,4 or keep:5; got {text!r}"
    if kind not in ("bottom", "keep"):
        raise typer.BadParameter(f"--layers prefixes are bottom: and keep:, got {text!r}")
    try:
        values = [int(x) for x in body.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(usage) from None
    if kind == "bottom":
        if len(values) != 1 or "," in body:
            raise typer.BadParameter(usage)
        return bottom_layers(values[0])
    if not values:
        raise typer.BadParameter(usage)
    return tuple(values)


# --- the command ---------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    app.command("distill", help=help_text(distill.__doc__))(distill)


@schedule_command
def distill(
    output: Output = Path("runs/distill"),
    sparsity: Annotated[float | None, typer.Option("--sparsity", help="Student = the teacher sliced at this sparsity (0.9 = a 10 % student).")] = None,
    layers: Annotated[str | None, typer.Option("--layers", help="Student = teacher layers: N or bottom:N = the bottom N; 0,2,4 or keep:0,2,4 = those 0-based indices; one layer: keep:5 (or 5,).")] = None,
    *,
    opts: ScheduleOptions,
) -> Path:
    """Direct KD: one teacher → student run, with its cost.

    The student is the teacher sliced at --sparsity or cut to --layers; one run.
    """
    # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
    from minidisc.schedules.baselines import run_distill

    cfg = opts.build(DistillConfig, target_sparsity=sparsity, layers=parse_layers(layers))
    run = run_distill(cfg, output, overwrite=opts.overwrite, teacher_cache=opts.teacher_cache(output, cfg.teacher_run))
    summarize(run.path)
    return run.path
