"""``minidisc report RUN_DIR``: rebuild a run's report from its folder, training nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minidisc.cli.options import help_text


def register(app: typer.Typer) -> None:
    app.command("report", help=help_text(report.__doc__))(report)


def report(
    run_dir: Annotated[Path, typer.Argument(help="The --output folder of a compress, demo, distill, takd, maxidisc or compare run.")],
) -> None:
    """Rebuild report.md, report.json and the plots of a run folder.

    Reads the run's manifest and saved files only: nothing is trained or evaluated. Works on a finished run and, for compress, on an unfinished one (what it has so far).
    """
    # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
    from minidisc.schedules.rebuild import rebuild_report

    for path in rebuild_report(run_dir):
        typer.echo(f"wrote {path}")
