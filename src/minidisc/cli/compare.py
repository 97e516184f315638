"""``minidisc compare``: every schedule to one target on one shared teacher, as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minidisc.cli.options import Output, ScheduleOptions, help_text, parse_grid, schedule_command
from minidisc.fileio import read_json
from minidisc.schedules.config import CompareConfig


def register(app: typer.Typer) -> None:
    app.command("compare", help=help_text(compare.__doc__))(compare)


@schedule_command
def compare(
    target: Annotated[float | None, typer.Option("--target", help="Student sparsity, e.g. 0.9 (a 10 % student).")] = None,
    schedules: Annotated[str, typer.Option(help="Comma-separated: direct, takd, maxidisc, minidisc.")] = "direct,takd,maxidisc,minidisc",
    takd_path: Annotated[str | None, typer.Option(help="TAKD path (default: the candidate nearest target/2, then the target).")] = None,
    truncation: Annotated[float | None, typer.Option(help="MiniDisc/MaxiDisc candidates are at least this sparse (default 0.5).")] = None,
    lam: Annotated[float | None, typer.Option("--lam", help="MiniDisc's λ (default 0.2).")] = None,
    iterations: Annotated[int | None, typer.Option(help="MiniDisc sandwich iterations (default 2 = one assistant).")] = None,
    max_assistants: Annotated[int | None, typer.Option(help="MaxiDisc paths through up to this many assistants (default 1).")] = None,
    note: Annotated[str | None, typer.Option(help="Free text shown in the reports.")] = None,
    output: Output = Path("runs/compare"),
    *,
    opts: ScheduleOptions,
) -> Path:
    """Compare all four schedules on one teacher: table and plot.

    Runs (or resumes) direct KD, TAKD, MaxiDisc and MiniDisc on the same fine-tuned and sparsified teacher and
    data; writes the paper-style table (report.md/json) and a plot of student metric
    against cost (compare.png).
    """
    # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
    from minidisc.schedules.compare import run_compare

    cfg = opts.build(
        CompareConfig, target_sparsity=target, schedules=[s.strip() for s in schedules.split(",") if s.strip()],
        takd_path=parse_grid(takd_path), truncation=truncation, lam=lam, iterations=iterations,
        max_assistants=max_assistants, note=note,
    )
    run = run_compare(cfg, output, overwrite=opts.overwrite, cache=opts.cache_options())
    report = read_json(run.path / "report.json")
    for row in report["rows"]:
        multiple = f"{row['cost_multiple']:.2f}×" if row.get("cost_multiple") is not None else "–"
        typer.echo(f"{row['schedule']:>9}: dev {100 * row['dev_main']:.2f} | cost {row['cost_train_flops']:.3e} FLOPs ({multiple})")
    typer.echo(f"report: {run.path / 'report.md'}")
    return run.path
