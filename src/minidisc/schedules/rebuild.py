"""``minidisc report RUN_DIR``: rebuild a run's report files from its folder alone.

The reports are built from the manifest and the saved files only (configs, sparsity
map, the schedule runs of a comparison) by the same code the run used, so a rebuilt
report equals the one the run wrote. Nothing is trained, evaluated or changed besides
the report files: ``report.json``, ``report.md`` and the plots (``tradeoff.png`` of a
compress run, ``correlation.png`` of a MaxiDisc run, ``compare.png`` of a comparison).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minidisc.config import parse_config
from minidisc.errors import ConfigError
from minidisc.fileio import read_json
from minidisc.report.compare import write_schedule_report
from minidisc.report.compress import write_compress_report
from minidisc.report.compress_lm import write_lm_report
from minidisc.runfolder.run import MANIFEST, is_run_dir
from minidisc.schedules.compare import compare_report
from minidisc.schedules.config import CompareConfig
from minidisc.tasks import TaskSpec, get_task
from minidisc.tasks.custom import spec_from_record

#: The commands whose runs have a report.
REPORTED = ("compress", "distill", "takd", "maxidisc", "compare")
_REPORTED_TEXT = "compress (and demo), distill, takd, maxidisc or compare"
_PLOTS = ("tradeoff.png", "correlation.png", "compare.png")


@dataclass(frozen=True)
class SavedRun:
    """A run folder read back: what the report builders read of a
    :class:`~minidisc.runfolder.run.RunDir` (its ``path`` and ``manifest``), without
    opening it for writing."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> SavedRun:
        """Read the run in ``path``.

        Raises:
            ConfigError: ``path`` is not a folder, or holds no readable minidisc manifest.
        """
        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"{path} is not a folder; pass the --output folder of a minidisc run")
        if not is_run_dir(path):
            raise ConfigError(
                f"{path} is not a minidisc run folder (no readable {MANIFEST}); pass the --output folder of a "
                f"{_REPORTED_TEXT} run"
            )
        return cls(path, read_json(path / MANIFEST))

    def done(self, stage: str) -> bool:
        return self.manifest["stages"].get(stage, {}).get("status") == "done"


def rebuild_report(path: str | Path) -> list[Path]:
    """Rewrite the report files of the run in ``path`` from its manifest and files.

    A compress run needs its teacher stage finished (an unfinished run gets a report of
    what it has so far); the baseline schedules need their student, a comparison every
    schedule.

    Returns:
        The report files now in the folder.

    Raises:
        ConfigError: not a minidisc run, a command without a report, or a run that has
            not got far enough (the message says what to run).
    """
    run = SavedRun.open(path)
    command = run.manifest.get("command")
    if command not in REPORTED:
        raise ConfigError(
            f"{run.path} holds a {command} run; minidisc report rebuilds the reports of {_REPORTED_TEXT} runs only"
        )
    lm_compare = command == "compare" and "base" in run.manifest["config"]  # compare --task lm: no shared teacher
    needed = {"compress": ["teacher"], "compare": [] if lm_compare else ["teacher"]}.get(command, ["teacher", "student"])
    if command == "compare":
        needed += list(run.manifest["config"].get("schedules", []))
    missing = [name for name in needed if not run.done(name)]
    if missing:
        raise ConfigError(
            f"the {command} run in {run.path} has not finished {', '.join(missing)} yet, so there is nothing to "
            "report; rerun its command to continue it, then minidisc report"
        )
    _write(run, command)
    names = ("report.json", "report.md", *_PLOTS)
    return [run.path / name for name in names if (run.path / name).is_file()]


def _write(run: SavedRun, command: str) -> None:
    if command == "compress" and run.manifest["config"].get("task") == "lm":
        write_lm_report(run)  # type: ignore[arg-type]
    elif command == "compress":
        write_compress_report(run)  # type: ignore[arg-type]
    elif command == "compare" and "base" in run.manifest["config"]:
        from minidisc.report.compare_lm import write_lm_compare_report

        write_lm_compare_report(run)  # type: ignore[arg-type]
    elif command == "compare":
        cfg = parse_config(CompareConfig, run.manifest["config"], str(run.path / "manifest.json"))
        compare_report(cfg, run, run_task(cfg.data.task, run.manifest))  # type: ignore[arg-type]
    else:
        write_schedule_report(run)  # type: ignore[arg-type]


def run_task(task: str, manifest: dict[str, Any]) -> TaskSpec:
    """The task of a finished run: a named task's spec, or (task ``custom``) the spec of
    the data its teacher stage recorded."""
    if task == "custom":
        return spec_from_record(manifest["stages"]["teacher"]["data"]["custom"])
    return get_task(task)
