"""``minidisc takd``: sequential distillation along a fixed teacher-assistant path."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minidisc.cli.distill import summarize
from minidisc.cli.options import Output, ScheduleOptions, help_text, parse_grid, schedule_command
from minidisc.schedules.config import TakdConfig


def register(app: typer.Typer) -> None:
    app.command("takd", help=help_text(takd.__doc__))(takd)


@schedule_command
def takd(
    path: Annotated[str, typer.Option("--path", help="Sparsities after the teacher, comma-separated; the last is the student (e.g. 0.5,0.9).")] = "0.5,0.9",
    output: Output = Path("runs/takd"),
    *,
    opts: ScheduleOptions,
) -> Path:
    """TAKD: distil along a fixed teacher-assistant path (--path).

    Mirzadeh et al. 2020: each hop distils the previous checkpoint into a copy cut to
    the next sparsity of --path.
    """
    # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
    from minidisc.schedules.baselines import run_takd

    cfg = opts.build(TakdConfig, path=parse_grid(path))
    run = run_takd(cfg, output, overwrite=opts.overwrite, teacher_cache=opts.teacher_cache(output, cfg.teacher_run))
    summarize(run.path)
    return run.path
