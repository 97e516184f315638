"""Distillation along paths of models: the engine of direct KD, TAKD and MaxiDisc.

A *path* lists the models after the teacher, e.g. ``(s0.5, s0.9)``: teacher → 50 %
sparse assistant → 90 % sparse student. Each arrow is a *hop*: the previous model
(teacher or saved student) distils into a copy of itself cut to the next level (a
sub-network of the reordered teacher, or a layer-dropped copy): plain distillation, the
one-candidate case of the engine (:class:`~minidisc.training.distill.Distiller`), keeping
the snapshot with the best dev metric.

Direct KD is a path of one hop, TAKD one path, MaxiDisc many paths. Hops form a prefix
tree: a hop is identified by its chain of levels from the teacher (stage name
``hop-s0.5-s0.9``), so paths sharing a prefix share its hops (computed once per run),
and identical hops of other runs on the same teacher are reused
(:mod:`minidisc.schedules.memo`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.compute.flops import non_embedding_params
from minidisc.elastic.extract import physical_spec
from minidisc.elastic.levels import level, level_key
from minidisc.report.card import model_card
from minidisc.schedules.memo import memo_stage, stage_key
from minidisc.schedules.students import drop_layers
from minidisc.training.distill import Distiller
from minidisc.training.records import HopRecord, Level
from minidisc.training.tracker import CandidateTracker

if TYPE_CHECKING:
    from minidisc.elastic.spec import SubnetSpec
    from minidisc.runfolder.run import RunDir
    from minidisc.schedules.config import ScheduleConfig
    from minidisc.schedules.memo import StageMemo
    from minidisc.training.data import TaskData
    from minidisc.training.teacher_cache import TeacherCacheStore

Path_ = tuple[Level, ...]
"""The models after the teacher, the last one the student."""


def sparsity_path(levels: Iterable[float]) -> Path_:
    """A path of sparsity levels (fractions)."""
    return tuple(Level(sparsity=level(s)) for s in levels)


def stage_name(chain: Sequence[Level]) -> str:
    """The stage (and folder) name of the hop ending a chain: ``hop-s0.5-s0.9``."""
    return "hop-" + "-".join(lv.label for lv in chain)


@dataclass
class HopContext:
    """What every hop of a run needs."""

    run: RunDir
    cfg: ScheduleConfig
    data: TaskData
    specs: dict[float, SubnetSpec]
    cache: TeacherCacheStore | None = None
    memo: StageMemo | None = None


def run_paths(ctx: HopContext, paths: Sequence[Path_]) -> list[str]:
    """Run (or resume, or reuse) every hop of ``paths``; return each path's last stage."""
    finals = []
    for path in paths:
        for k in range(1, len(path) + 1):
            run_hop(ctx, path[:k])
        finals.append(stage_name(path))
    return finals


def run_hop(ctx: HopContext, chain: Sequence[Level]) -> dict[str, Any]:
    """The hop ending ``chain``: its parent is the model before it (or the teacher)."""
    run, cfg = ctx.run, ctx.cfg
    parent = stage_name(chain[:-1]) if len(chain) > 1 else "sparsified"
    teacher_dir = run.path / parent / "model"
    key = stage_key(run, {
        "stage": "hop", "chain": [lv.to_dict() for lv in chain], "objective": cfg.objective,
        "options": cfg.objective_options, "train": cfg.train.model_dump(mode="json"),
        "data": cfg.data.model_dump(mode="json"), "data_seed": cfg.finetune.seed,
    })

    def work(tmp: Path) -> dict[str, Any]:
        record = hop_stage(teacher_dir, chain[-1], ctx.specs, ctx.data, cfg, ctx.cache, tmp, stage=stage_name(chain))
        return replace(record, teacher=parent).to_dict()

    return memo_stage(run, stage_name(chain), key, ctx.memo, work)


def hop_stage(
    teacher_dir: Path,
    level: Level,
    specs: dict[float, SubnetSpec],
    data: TaskData,
    cfg: ScheduleConfig,
    cache: TeacherCacheStore | None,
    out: Path,
    *,
    stage: str = "hop",
) -> HopRecord:
    """Distil the model in ``teacher_dir`` into a copy of it cut to ``level``.

    Writes ``out/model`` (the student at its best dev evaluation) and ``out/logs`` (the
    training logs), and returns the hop's record: level, spec, best dev metric,
    evaluation history, compute. Seeded with ``cfg.train.seed`` first; ``stage`` names
    the stage in errors.

    Raises:
        DivergenceError: a non-finite loss, gradient norm or weight during training.
    """
    distiller = Distiller(
        data, cfg.train, objective=cfg.objective, objective_options=dict(cfg.objective_options), teacher_cache=cache,
        card=model_card,
    )
    teacher, student = distiller.load(teacher_dir)
    if level.layers is not None:
        student = drop_layers(student, level.layers)
        spec = physical_spec(student)
        key = _layer_drop_sparsity(teacher, student)
    else:
        spec = specs[level_key(specs, level.sparsity)]  # type: ignore[arg-type]
        key = spec.sparsity if spec.sparsity is not None else float(level.sparsity)  # type: ignore[arg-type]
    tracker = CandidateTracker.single(key)
    compute = distiller.run(teacher, student, {key: spec}, tracker, out, stage=stage)
    return HopRecord(
        level=level,
        spec=spec.to_dict(),
        dev_main=tracker.best[key],
        best_step=tracker.best_step.get(key),
        history=tuple({"step": e.step, "main": e.metrics[key]} for e in tracker.history),
        objective=cfg.objective,
        compute=compute,
    )


def _layer_drop_sparsity(teacher: Any, student: Any) -> float:
    """1 − (student / teacher) non-embedding parameters: the tracker's key for a
    layer-dropped student (sizes it on the same axis as sliced students)."""
    kept = non_embedding_params(student.config, physical_spec(student))
    return level(1.0 - kept / non_embedding_params(teacher.config, physical_spec(teacher)))


def best_final(stages: dict[str, dict[str, Any]], finals: Sequence[str]) -> str:
    """The final hop with the best dev metric (ties: the earlier path)."""
    return max(finals, key=lambda name: (HopRecord.from_dict(stages[name]).dev_main, -finals.index(name)))
