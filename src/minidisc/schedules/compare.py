"""``minidisc compare``: every schedule to one target on one shared teacher.

Run directory::

    <out>/teacher/ sparsified/        fine-tuned + sparsified once (or linked from --teacher-run)
    <out>/direct/ takd/ maxidisc/ minidisc/   one resumable run per schedule, each linking
                                       the teacher from <out>
    <out>/teacher-cache/              teacher outputs shared by all schedules (when the
                                       teacher lives here; else in the teacher run)
    <out>/stage-registry.json         finished hops, reused across schedules and runs
    <out>/report.json report.md compare.png

Each schedule is a manifest stage of the comparison holding its table row; an
interrupted comparison resumes inside the schedule it was running.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.objectives import build_objective
from minidisc.report.compare import (
    assistant_student_correlation,
    model_size,
    schedule_row,
    write_compare_report,
)
from minidisc.runfolder.run import REPORT_FILES, RunDir
from minidisc.runtime import configure
from minidisc.schedules.baselines import largest_batch, run_distill, run_maxidisc, run_takd
from minidisc.schedules.config import CompareConfig
from minidisc.schedules.memo import StageMemo
from minidisc.schedules.minidisc import run_compress
from minidisc.schedules.stages import (
    check_run_data,
    level_specs,
    prepare_teacher,
    root_run,
    task_inputs,
)
from minidisc.training.data import prepare_run_data
from minidisc.training.records import StudentRecord
from minidisc.training.teacher_cache import MiB, TeacherCacheStore

if TYPE_CHECKING:
    from minidisc.tasks import TaskSpec


@dataclass(frozen=True)
class CacheOptions:
    """Teacher-output cache settings (run-time only: they do not change results).

    Attributes:
        enabled: use the cache.
        directory: where shards go; None: ``teacher-cache/`` in the run holding the teacher.
        max_memory_mb: memory budget (LRU beyond), MiB.
        max_disk_gb: disk budget, GiB (None: unlimited).
    """

    enabled: bool = True
    directory: str | None = None
    max_memory_mb: int = 512
    max_disk_gb: float | None = 20.0


def open_cache(options: CacheOptions | None, root: Path) -> Any:
    """A :class:`~minidisc.training.teacher_cache.TeacherCacheStore`, or None when off."""
    if options is None or not options.enabled:
        return None

    directory = Path(options.directory) if options.directory else Path(root) / "teacher-cache"
    disk = int(options.max_disk_gb * 1024 * MiB) if options.max_disk_gb is not None else None
    return TeacherCacheStore(directory, max_memory_bytes=options.max_memory_mb * MiB, max_disk_bytes=disk)


def cache_root(output: str | Path, teacher_run: str | Path | None) -> Path:
    """The run that holds (or will hold) the teacher: where the shared cache lives."""
    if teacher_run is not None and (Path(teacher_run) / "sparsified").exists():
        return root_run(Path(teacher_run))
    return Path(output)


def run_compare(
    cfg: CompareConfig, output: str | Path, *, overwrite: bool = False, cache: CacheOptions | None = CacheOptions()
) -> RunDir:
    """Run (or resume) every schedule of ``cfg`` into ``output`` and write the table.

    Everything that can be checked before training is checked first (every schedule's
    configuration, the objective, the shared teacher run, the data, the specs of every
    level), so a bad option fails before the first schedule trains.

    Raises:
        RunExistsError: ``output`` holds another run and ``overwrite`` is False.
        ConfigError, DataError, ModelError: invalid options, data or teacher.
    """
    configure(cfg.precision)  # an impossible precision stops here, before anything is written
    cfg.schedule_configs("")  # validation only: the shared teacher folder is known below
    task_type = check_run_data(cfg.data, cfg.teacher, teacher_finetuned=cfg.teacher_finetuned,
                               teacher_run=cfg.teacher_run, seed=cfg.finetune.seed, batch_size=largest_batch(cfg),
                               selection=cfg)
    _check_objective(cfg, task_type)
    run = RunDir(output, cfg, "compare", overwrite=overwrite)
    source, tokenizer = task_inputs(cfg.teacher, cfg.teacher_run)
    data = prepare_run_data(cfg.data, tokenizer, cfg.finetune.seed, cfg.select_on, cfg.selection_examples)
    prepare_teacher(run, cfg.teacher_run, source, data, cfg.finetune, cfg.teacher_finetuned, cfg.levels())
    level_specs(run.path / "sparsified", cfg.levels())  # every schedule's levels; completes a shared map
    root = root_run(run.path)
    store = open_cache(cache, root)
    shared = str(run.path.resolve())
    for name in cfg.schedules:
        run.stage(name, lambda _root, name=name: _run_schedule(cfg, name, shared, run.path / name, store),
                  folder=False, outputs=(name,))

    run.stage("report", lambda _root: compare_report(cfg, run, data.task, data.sizes), folder=False, outputs=REPORT_FILES)
    run.finish()
    return run


def compare_report(cfg: CompareConfig, run: RunDir, task: TaskSpec, sizes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the comparison's report.json, report.md and plots from its finished
    schedule runs; return the rows for the manifest.

    Args:
        sizes: the data sizes, when the teacher stage's entry lacks them.
    """
    rows = [schedule_row(name, run.path / name) for name in cfg.schedules]
    correlation = None
    if "maxidisc" in cfg.schedules:
        mini = run.path / "minidisc" if "minidisc" in cfg.schedules else None
        correlation = assistant_student_correlation(run.path / "maxidisc", mini, cfg.lam)
    written = write_compare_report(run.path, _info(cfg, run, task, sizes), rows, correlation)
    return {"rows": [{k: r[k] for k in ("schedule", "dev_main", "cost_train_flops", "cost_multiple")} for r in written["rows"]]}


def _check_objective(cfg: CompareConfig, task_type: str) -> None:
    """Build the baselines' objective once, so unknown options fail before training."""
    if set(cfg.schedules) - {"minidisc"}:
        build_objective(cfg.objective, task_type=task_type, **cfg.objective_options)


def _run_schedule(cfg: CompareConfig, name: str, shared: str, out: Path, store: Any) -> dict[str, Any]:
    sub_cfg = cfg.schedule_configs(shared)[name]
    if name == "minidisc":
        memo = StageMemo(root_run(Path(shared)))
        sub = run_compress(sub_cfg, out, teacher_run=shared, teacher_cache=store, memo=memo)  # type: ignore[arg-type]
    else:
        runner = {"direct": run_distill, "takd": run_takd, "maxidisc": run_maxidisc}[name]
        sub = runner(sub_cfg, out, teacher_cache=store)  # type: ignore[operator]
    cost = sub.manifest["cost"]
    return {
        "run": str(out),
        "dev_main": StudentRecord.from_dict(sub.record("student")).dev["main"],
        "cost_train_flops": cost["total"]["train_flops"],
        "spent_train_flops": cost["spent"]["train_flops"],
    }


def _info(cfg: CompareConfig, run: RunDir, task: TaskSpec, sizes: dict[str, Any] | None) -> dict[str, Any]:
    teacher = run.manifest["stages"]["teacher"]
    t = cfg.train
    return {
        "task": cfg.data.task,
        "metric": "main (" + "/".join(task.metric_names) + ")",
        "target_sparsity": cfg.target_sparsity,
        "teacher_dev_main": teacher["dev"]["main"],
        "teacher_flops_per_128_tokens": model_size(run.path / "teacher")["flops_per_128_tokens"],
        "data": teacher.get("data") or sizes,
        "seed": cfg.finetune.seed,
        "select_on": cfg.select_on,
        "train_summary": f"{t.epochs:g} epoch(s), batch {t.batch_size}, lr {t.learning_rate:g}, seed {t.seed}, "
        f"objective {cfg.objective} (MiniDisc: its own loss)",
        "schedules": list(cfg.schedules),
        "takd_path": list(cfg.takd_path or cfg.default_takd_path()) if "takd" in cfg.schedules else None,
    }
