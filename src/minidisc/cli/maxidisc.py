"""``minidisc maxidisc``: TAKD through every candidate assistant; keep the best student."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minidisc.cli.distill import summarize
from minidisc.cli.options import Output, ScheduleOptions, help_text, parse_grid, schedule_command
from minidisc.schedules.config import MaxiDiscConfig


def register(app: typer.Typer) -> None:
    app.command("maxidisc", help=help_text(maxidisc.__doc__))(maxidisc)


@schedule_command
def maxidisc(
    target: Annotated[float | None, typer.Option("--target", help="Student sparsity, e.g. 0.9 (a 10 % student).")] = None,
    candidates: Annotated[str | None, typer.Option(help="Assistant sparsities to try (default: MiniDisc's candidates: grid levels ≥ --truncation below the target).")] = None,
    truncation: Annotated[float | None, typer.Option(help="Default candidates are at least this sparse (default 0.5).")] = None,
    max_assistants: Annotated[int | None, typer.Option(help="Also try paths through up to this many assistants (default 1).")] = None,
    output: Output = Path("runs/maxidisc"),
    *,
    opts: ScheduleOptions,
) -> Path:
    """MaxiDisc: TAKD through every candidate assistant, best kept.

    Hops shared by several paths are computed once; the student with the best dev
    metric is kept.
    """
    # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
    from minidisc.schedules.baselines import run_maxidisc

    cfg = opts.build(MaxiDiscConfig, target_sparsity=target, candidates=parse_grid(candidates), truncation=truncation,
                     max_assistants=max_assistants)
    run = run_maxidisc(cfg, output, overwrite=opts.overwrite, teacher_cache=opts.teacher_cache(output, cfg.teacher_run))
    summarize(run.path)
    return run.path
