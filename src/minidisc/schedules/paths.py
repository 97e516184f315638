"""Distillation along paths of models: the engine of direct KD, TAKD and MaxiDisc.

A *path* lists the models after the teacher, e.g. ``(s0.5, s0.9)``: teacher → 50 %
sparse assistant → 90 % sparse student. Each arrow is a *hop*: the previous model
(teacher or saved student) distils into a copy of itself cut to the next level (a
sub-network of the reordered teacher, or a layer-dropped copy), with one candidate in
the sandwich trainer (:func:`minidisc.schedules.minidisc.train_sandwich`), keeping the
snapshot with the best dev metric.

Direct KD is a path of one hop, TAKD one path, MaxiDisc many paths. Hops form a prefix
tree: a hop is identified by its chain of levels from the teacher (stage name
``hop-s0.5-s0.9``), so paths sharing a prefix share its hops (computed once per run),
and identical hops of other runs on the same teacher are reused
(:mod:`minidisc.schedules.memo`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from minidisc.elastic.spec import SubnetSpec
    from minidisc.schedules.config import ScheduleConfig
    from minidisc.schedules.inputs import TaskData
    from minidisc.schedules.memo import StageMemo
    from minidisc.schedules.run import RunDir
    from minidisc.training.teacher_cache import TeacherCacheStore


@dataclass(frozen=True)
class Level:
    """One model along a path: a sparsity of the reordered teacher, or kept layers."""

    sparsity: float | None = None
    layers: tuple[int, ...] | None = None

    @property
    def label(self) -> str:
        if self.sparsity is not None:
            return f"s{self.sparsity:g}"
        return "L" + "_".join(str(i) for i in self.layers or ())

    def to_dict(self) -> dict[str, Any]:
        return {"sparsity": self.sparsity, "layers": list(self.layers) if self.layers is not None else None}


Path_ = tuple[Level, ...]


def sparsity_path(levels: Iterable[float]) -> Path_:
    """A path of sparsity levels (fractions)."""
    return tuple(Level(sparsity=round(float(s), 6)) for s in levels)


def stage_name(chain: Sequence[Level]) -> str:
    """The stage (and folder) name of the hop ending a chain: ``hop-s0.5-s0.9``."""
    return "hop-" + "-".join(level.label for level in chain)


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
    from minidisc.schedules.memo import fingerprint, memo_stage
    from minidisc.schedules.stages import root_run

    run, cfg = ctx.run, ctx.cfg
    parent = stage_name(chain[:-1]) if len(chain) > 1 else "sparsified"
    teacher_dir = run.path / parent / "model"
    level = chain[-1]
    key = fingerprint({
        "stage": "hop", "root": str(root_run(run.path)), "root_finished": run.record("sparsified").get("finished"),
        "chain": [lv.to_dict() for lv in chain], "objective": cfg.objective, "options": cfg.objective_options,
        "train": cfg.train.model_dump(mode="json"), "data": cfg.data.model_dump(mode="json"),
        "data_seed": cfg.finetune.seed,
    })

    def work(tmp: Path) -> dict[str, Any]:
        entry = hop_stage(teacher_dir, level, ctx.specs, ctx.data, cfg, ctx.cache, tmp, stage=stage_name(chain))
        return entry | {"teacher": parent}

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
) -> dict[str, Any]:
    """Distil the model in ``teacher_dir`` into a copy of it cut to ``level``.

    Writes ``out/model`` (the student at its best dev evaluation) and ``out/logs`` (the
    training logs), and returns the manifest entry: level, spec, best dev metric,
    evaluation history, compute. Seeded with ``cfg.train.seed`` first; ``stage`` names
    the stage in errors.

    Raises:
        DivergenceError: a non-finite loss, gradient norm or weight during training.
    """
    from minidisc.elastic.extract import physical_spec
    from minidisc.elastic.io import save_student
    from minidisc.models import ModelSource, load_for_task
    from minidisc.schedules.minidisc import train_sandwich
    from minidisc.schedules.stages import level_key
    from minidisc.schedules.students import drop_layers
    from minidisc.seeding import seed_everything
    from minidisc.training.tracker import CandidateTracker

    seed_everything(cfg.train.seed)
    teacher = load_for_task(ModelSource(str(teacher_dir)), data.task)
    student = load_for_task(ModelSource(str(teacher_dir)), data.task)
    if level.layers is not None:
        student = drop_layers(student, level.layers)
        spec = physical_spec(student)
        key = _layer_drop_sparsity(teacher, student)
    else:
        spec = specs[level_key(specs, level.sparsity)]  # type: ignore[arg-type]
        key = spec.sparsity if spec.sparsity is not None else float(level.sparsity)  # type: ignore[arg-type]
    tracker = CandidateTracker([key], 0.0, key, final=True)
    compute = train_sandwich(
        teacher, student, {key: spec}, tracker, data, cfg.train, out / "scratch",
        objective=cfg.objective, objective_options=dict(cfg.objective_options), teacher_cache=cache,
        stage=stage, log_dir=out / "logs",
    )
    shutil.rmtree(out / "scratch", ignore_errors=True)
    save_student(tracker.chosen(), out / "model", spec, tokenizer=data.tokenizer)
    return {
        "level": level.to_dict(),
        "spec": spec.to_dict(),
        "dev_main": tracker.best[key],
        "best_step": tracker.best_step.get(key),
        "history": [{"step": h["step"], "main": h["metrics"][key]} for h in tracker.history],
        "objective": cfg.objective,
        "compute": compute,
    }


def _layer_drop_sparsity(teacher: Any, student: Any) -> float:
    """1 − (student / teacher) non-embedding parameters: the tracker's key for a
    layer-dropped student (sizes it on the same axis as sliced students)."""
    from minidisc.compute.flops import non_embedding_params
    from minidisc.elastic.extract import physical_spec

    kept = non_embedding_params(student.config, physical_spec(student))
    return round(1.0 - kept / non_embedding_params(teacher.config, physical_spec(teacher)), 6)


def best_final(stages: dict[str, dict[str, Any]], finals: Sequence[str]) -> str:
    """The final hop with the best dev metric (ties: the earlier path)."""
    return max(finals, key=lambda name: (stages[name]["dev_main"], -finals.index(name)))
