"""What a run of the Python API returns: :class:`RunResult`, read from the run folder's
report (``report.json``; ``finetune.json``, ``glue_suite.json`` or ``sparsify.json`` for
the commands that write no report), so a finished run read again gives the same result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minidisc.fileio import read_json


@dataclass(frozen=True)
class RunResult:
    """The outcome of one command run from Python.

    Attributes:
        command: ``compress``, ``finetune``, ``distill``, ``takd``, ``maxidisc``,
            ``compare`` or ``sparsify``.
        run_dir: the run folder (rerunning the same call resumes it).
        student: the exported model folder (``load_student`` loads it): the student; for
            ``finetune`` the fine-tuned model (the run folder itself), for ``sparsify``
            the reordered teacher; None for ``compare`` (one student per schedule, under
            ``run_dir``) and a GLUE suite.
        assistants: sparsities (fractions) of the teacher assistants the student was
            distilled through, in order; empty for direct KD.
        metrics: dev metrics (fractions, ``main`` first-class) per model of the run:
            ``teacher``, each assistant, ``student`` (``compare``: per schedule;
            ``finetune``: ``finetune``; ``compress(task="lm")``: the selection-slice
            perplexity metrics of each model).
        cost: the schedule's compute as in ``report.json``: FLOPs, tokens, wall time per
            stage and in total, and the multiple of direct KD (``compress(task="lm")``:
            ``per_stage`` only; ``finetune``, ``sparsify``: their one stage's compute).
        report: ``report.md`` (``finetune``: ``finetune.json``, ``sparsify``:
            ``sparsify.json``, a GLUE suite: ``glue_suite.md``).
        details: the whole ``report.json`` (or the JSON file above).
    """

    command: str
    run_dir: Path
    student: Path | None
    assistants: tuple[float, ...]
    metrics: dict[str, dict[str, float]]
    cost: dict[str, Any] | None
    report: Path | None
    details: dict[str, Any] = field(repr=False)


def read_result(run_dir: str | Path) -> RunResult:
    """The :class:`RunResult` of the finished run in ``run_dir``, from its report.

    Raises:
        FileNotFoundError: ``run_dir`` holds no finished run's report.
    """
    run_dir = Path(run_dir)
    command = read_json(run_dir / "manifest.json")["command"]
    if (run_dir / "report.json").is_file():
        return _from_report(command, run_dir, read_json(run_dir / "report.json"))
    for name, report in (("finetune.json", "finetune.json"), ("glue_suite.json", "glue_suite.md"),
                         ("sparsify.json", "sparsify.json")):
        if (run_dir / name).is_file():
            summary = read_json(run_dir / name)
            return _from_summary(command, run_dir, name, summary, run_dir / report)
    raise FileNotFoundError(f"{run_dir} holds no report of a finished run (report.json, finetune.json ...)")


def _from_report(command: str, run_dir: Path, r: dict[str, Any]) -> RunResult:
    """compress (encoders or ``lm``), distill, takd, maxidisc, compare."""
    student: Path | None = run_dir / "student"
    if "rows" in r:  # compare: one student per schedule
        metrics = {row["schedule"]: row["dev"] for row in r["rows"]}
        cost = {row["schedule"]: {"train_flops": row["cost_train_flops"], "multiple": row.get("cost_multiple"),
                                  "wall_time_s": row["cost_wall_time_s"]} for row in r["rows"]}
        minidisc = next((row for row in r["rows"] if row["schedule"] == "minidisc"), None)
        assistants = tuple(minidisc["route"][:-1]) if minidisc else ()
        return RunResult(command, run_dir, None, assistants, metrics, cost, run_dir / "report.md", r)
    if "models" in r:  # compress --task lm
        metrics = {m["name"].removesuffix(" (exported)"): m["selection"] for m in r["models"]}
        assistants = tuple(m["sparsity"] for m in r["models"] if m["name"].startswith("assistant"))
    elif "assistants" in r:  # compress
        metrics = {"teacher": r["teacher"]["dev"],
                   **{f"assistant (iter {a['iteration']})": {"main": a.get("selection_main", a["dev_main"])}
                      for a in r["assistants"]}}
        metrics["student"] = r["student"]["dev"]
        assistants = tuple(a["sparsity"] for a in r["assistants"])
    else:  # distill, takd, maxidisc: the student's hops, e.g. hop-s0.5-s0.9
        metrics = {"teacher": r["teacher"]["dev"], **{h["stage"]: {"main": h["dev_main"]} for h in r["hops"]},
                   "student": r["student"]["dev"]}
        route = (r["student"].get("from") or "").removeprefix("hop-").split("-")
        assistants = tuple(float(s[1:]) for s in route if s.startswith("s"))[:-1]
    cost = r.get("cost") or {"per_stage": r.get("compute")}  # the lm report keeps its compute per stage only
    return RunResult(command, run_dir, student, assistants, metrics, cost, run_dir / "report.md", r)


def _from_summary(command: str, run_dir: Path, name: str, s: dict[str, Any], report: Path) -> RunResult:
    """finetune (one task or a GLUE suite) and sparsify, which write a JSON summary."""
    if name == "glue_suite.json":
        metrics = {task: t["dev"] for task, t in s["tasks"].items()}
        return RunResult(command, run_dir, None, (), metrics, None, report, s)
    if name == "sparsify.json":
        return RunResult(command, run_dir, run_dir / "model", (), {}, s.get("compute"), report, s)
    student = run_dir if (run_dir / "config.json").is_file() else None  # --no-save-model keeps no weights
    return RunResult(command, run_dir, student, (), {"finetune": s["dev"]}, s.get("compute"), report, s)
