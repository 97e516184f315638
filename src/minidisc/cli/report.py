"""``minidisc report RUN_DIR``: rebuild a run's report from its folder, training nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minidisc.cli.options import help_text


def register(app: typer.Typer) -> None:
    app.command("report", help=help_text(report.__doc__))(report)


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="The --output folder of a compress, demo, distill, takd, maxidisc or compare run; or several compare runs that differ only in --seed (with -o).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Several compare runs: the folder that receives seeds.json and seeds.md.")] = None,
    reference: Annotated[str | None, typer.Option(help="Several compare runs: the arm every other arm is compared with, seed by seed (default minidisc when it ran, else direct).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a seeds summary already in --output.")] = False,
) -> None:
    """Rebuild report.md, report.json and the plots of a run folder; or summarise one comparison over seeds.

    Reads the run's manifest and saved files only: nothing is trained or evaluated. Works on a finished run and, for compress, on an unfinished one (what it has so far). Given several `minidisc compare` runs that differ only in --seed, writes seeds.md and seeds.json into -o: mean ± standard deviation per arm, and each arm's paired difference to the reference arm with the number of seeds it held in (docs/results-lm.md).
    """
    if len(run_dirs) > 1 or output is not None or reference is not None:
        from minidisc.errors import ConfigError
        from minidisc.report.seeds import write_seeds_summary

        if output is None:
            raise ConfigError("several runs are summarised over seeds: give -o FOLDER for seeds.md and seeds.json")
        for path in write_seeds_summary(run_dirs, output, reference, overwrite):
            typer.echo(f"wrote {path}")
        return
    # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
    from minidisc.schedules.rebuild import rebuild_report

    for path in rebuild_report(run_dirs[0]):
        typer.echo(f"wrote {path}")
