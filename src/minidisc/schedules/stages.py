"""Stages every schedule shares: the teacher, its sparsification, the student export.

``teacher``     fine-tune the teacher on the task (or only evaluate it when it is already
                fine-tuned); keep the best dev checkpoint.
``sparsified``  score heads/neurons on a training subset, reorder them by importance,
                build the nested sparsity map.
``student``     save the final student (safetensors + config) and re-evaluate the saved
                copy, so the reported numbers are those of the files.

A schedule either runs ``teacher`` and ``sparsified`` itself or *links* them from
another run (``teacher_run``): the folders become relative symlinks and the manifest
entries are copied with ``linked_from``, so all schedules of a comparison distil the
very same teacher and the shared cost is counted once (as preparation, not as part of
any schedule).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.compute.flops import forward_flops
from minidisc.compute.meter import ComputeTotals
from minidisc.config import DataConfig, TrainConfig, WithSelectionSlice
from minidisc.elastic.estimators import GRADIENT, ImportanceCost, estimate_importance
from minidisc.elastic.importance import Importance
from minidisc.elastic.io import load_student, loads_with_plain_transformers, save_student
from minidisc.elastic.levels import check_levels, find_level, level
from minidisc.elastic.model import ElasticModel
from minidisc.elastic.sparsity_map import (
    load_sparsity_map,
    model_sparsity_map,
    save_extra_levels,
    save_sparsity_map,
)
from minidisc.errors import ConfigError, ModelError
from minidisc.fileio import is_main_process, read_json
from minidisc.models import (
    ModelSource,
    check_head_labels,
    head_looks_untrained,
    load_task_model,
    load_tokenizer,
    resolve_model,
)
from minidisc.report.card import model_card, write_model_card
from minidisc.runfolder.run import MANIFEST
from minidisc.runtime import autocast, place
from minidisc.seeding import seed_everything
from minidisc.training.data import collator_for
from minidisc.training.finetune import evaluate_model, finetune
from minidisc.training.records import StudentRecord

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from minidisc.elastic.spec import SubnetSpec
    from minidisc.report.card import CardFacts
    from minidisc.runfolder.run import RunDir
    from minidisc.training.data import TaskData

SHARED_STAGES = ("teacher", "sparsified")


# --- the data, checked before anything is written ------------------------------------


def check_run_data(
    data_cfg: DataConfig, teacher: str | None, *, teacher_finetuned: bool, teacher_run: str | Path | None,
    seed: int, batch_size: int, selection: WithSelectionSlice,
) -> str:
    """Check the run's data before anything is written and return the task type.

    A named task is only looked up (its data are checked when loaded); your own data
    (``train_file``/``dataset``) are read and checked whole
    (:func:`~minidisc.tasks.custom.check_custom_data`), and a teacher given as already
    fine-tuned must agree with their label names (a head without names: a warning).

    ``selection`` says where the run chooses: on a slice with a ``teacher_run``, that run's
    teacher must have been fine-tuned with the same slice held out (:func:`check_slice_unseen`).

    Raises:
        ConfigError: an unknown task; a selection slice the teacher run's teacher trained
            on. DataError: bad own data (file, row and column named), or fewer training
            rows than ``batch_size``. ModelError: a fine-tuned teacher whose label names differ.
    """
    import warnings

    from minidisc.tasks import get_task
    from minidisc.tasks.custom import check_custom_data

    check_slice_unseen(teacher_run, selection, seed)
    custom = check_custom_data(data_cfg, seed=seed, batch_size=batch_size)
    if custom is None:
        return get_task(data_cfg.task).task_type
    if teacher_finetuned and teacher_run is None and custom.spec.label_names:
        note = check_head_labels(resolve_model(teacher), custom.spec.label_names)
        if note:
            warnings.warn(note, UserWarning, stacklevel=3)
    return custom.spec.task_type


def check_slice_unseen(teacher_run: str | Path | None, selection: WithSelectionSlice, seed: int) -> None:
    """Refuse to select on a slice that the teacher of ``teacher_run`` was fine-tuned on.

    A slice is clean only when it was held out before the teacher trained: the teacher
    run must have selected on a slice of the same size with the same seed (hence the same
    rows of the same data), or have taken its teacher as already fine-tuned.

    Raises:
        ConfigError: the teacher run fine-tuned its teacher on those examples.
    """
    if teacher_run is None or selection.select_on != "slice" or not (Path(teacher_run) / MANIFEST).is_file():
        return  # a missing teacher run is named when its stages are linked
    theirs = read_json(Path(teacher_run) / MANIFEST).get("config") or {}
    if theirs.get("teacher_finetuned"):
        return
    same = (theirs.get("select_on", "dev") == "slice" and theirs.get("selection_examples") == selection.selection_examples
            and (theirs.get("finetune") or {}).get("seed") == seed)
    if not same:
        raise ConfigError(
            f"--select-on slice holds out training examples the teacher of {teacher_run} was fine-tuned on (that run "
            "selected on dev, or on another slice): give --select-on dev, or a --teacher-run made with the same "
            "--select-on slice, --selection-examples and --seed"
        )


# --- the teacher and its sparsification ----------------------------------------------


def teacher_stage(
    source: ModelSource, data: TaskData, finetune_cfg: TrainConfig, already_finetuned: bool, out: Path
) -> dict[str, Any]:
    """Fine-tune (or, if ``already_finetuned``, evaluate) the teacher; save it to ``out``
    (with the training logs in ``out/logs``). Seeded with ``finetune_cfg.seed`` before the
    new task head is drawn. The best checkpoint is chosen on ``data.selection_set`` (the
    selection slice when ``data`` holds one, then evaluated on dev for the report; else dev).

    Returns the manifest entry: dev metrics (and ``test`` metrics with held-out test
    data), fine-tuning compute, source, data sizes and ``head_initialised`` (why the task
    head was newly initialised, or None).

    Raises:
        DivergenceError: fine-tuning diverged (non-finite loss, gradient norm or weight).
        ModelError: the teacher's weights do not match its config; or
            ``already_finetuned`` and its task head is missing, sized for another task,
            or still as initialised (never trained).
    """
    seed_everything(finetune_cfg.seed)
    loaded = load_task_model(source, data.task, require_head=already_finetuned)
    model = loaded.model
    if already_finetuned and head_looks_untrained(model):
        raise ModelError(
            f"{source.label or source.path} was given as fine-tuned on {data.task.name}, but its task head "
            "was never trained (every bias is exactly zero, as initialised): drop --teacher-finetuned "
            "to fine-tune it, or pass a checkpoint tuned on this task"
        )
    if already_finetuned:
        dev, compute = evaluate_model(model, data, finetune_cfg, out / "scratch")[0], None
    else:
        result = finetune(
            model, data.tokenizer, data.task, data.train, data.selection_set, finetune_cfg, out / "scratch",
            stage="teacher", log_dir=out / "logs",
        )
        model, dev, compute = result.model, result.dev_metrics, result.compute.to_dict()
        if data.selection is not None:  # the checkpoint was chosen on the selection slice: report dev
            dev = evaluate_model(model, data, finetune_cfg, out / "scratch")[0]
    test = evaluate_model(model, data, finetune_cfg, out / "scratch", split="test")[0] if data.test is not None else None
    if is_main_process():  # every process trained the same weights; one writes them
        shutil.rmtree(out / "scratch", ignore_errors=True)
        model.save_pretrained(out)
        data.tokenizer.save_pretrained(out)
    return {"dev": dev, **({"test": test} if test is not None else {}), "compute": compute, "source": source.label, "data": data.sizes,
            "head_initialised": loaded.head_initialised}


@dataclass(frozen=True)
class MapShape:
    """How a sparsified stage shapes its map (``--layer-shapes``, ``--drop-layers``,
    ``--align``; :meth:`minidisc.elastic.ElasticModel.sparsity_map`).

    Attributes:
        layer_shapes: ``"global"``, ``"uniform"`` or ``"depth"``; ``None``: the family's default.
        drop_layers: whole layers removed at every level above 0 (uniform shapes).
        align: kept sizes rounded down to multiples of this (1: none).
    """

    layer_shapes: str | None = None
    drop_layers: int = 0
    align: int = 1

    @classmethod
    def of_entry(cls, entry: dict[str, Any]) -> MapShape:
        """The shape a ``sparsified`` stage's manifest entry records (the default when none)."""
        return cls(**entry.get("shape", {}))

    def check(self, config: Any, levels: Iterable[float]) -> None:
        """Refuse, from the teacher's ``config`` and before any work, a shape its map
        cannot take: a depth level that would remove every layer, or ``drop_layers`` not
        below the number of layers.

        Raises:
            ConfigError: as said, naming the option to change.
        """
        from minidisc.elastic.depth_map import check_depth_levels
        from minidisc.elastic.families import family_for

        num_layers = family_for(config).geometry(config).num_layers
        if self.layer_shapes == "depth":
            check_depth_levels(num_layers, levels)
        if self.drop_layers >= num_layers:
            raise ConfigError(f"--drop-layers {self.drop_layers} would remove all {num_layers} layers of the "
                              f"teacher; drop between 0 and {num_layers - 1}")

    @property
    def scores_hidden(self) -> bool:
        """Whether the map cuts the width, so the gradient importance scores channels."""
        return self.layer_shapes == "uniform"

    @property
    def scores_layers(self) -> bool:
        """Whether the map drops layers, so the gradient importance scores them."""
        return self.drop_layers > 0 or self.layer_shapes == "depth"


def sparsify_stage(
    teacher_dir: Path | ModelSource, data: TaskData, levels: Iterable[float], batch_size: int, out: Path,
    *, seed: int, allow_untrained_head: bool = False, importance: str = "gradient",
    shape: MapShape | None = None,
) -> dict[str, Any]:
    """Importance (default |∂ label loss / ∂ mask| on ``data.importance``), reorder,
    sparsity map (of ``shape``: layer shapes, dropped layers, alignment; default: the
    family's map, as always).

    Writes ``model/`` (the reordered teacher, same outputs), ``importance.safetensors``
    and ``sparsity_map.json`` into ``out``. The entry's ``compute`` counts the importance
    pass as training FLOPs (gradient: one forward and one backward per batch, 3 ×
    forward; activation: the forwards; magnitude and random: nothing), and its
    ``importance`` records the method and its cost
    (:class:`~minidisc.elastic.estimators.ImportanceCost`). Seeded with ``seed`` first
    (the seed of the ``random`` method; the others draw nothing).

    ``importance`` is one of :data:`minidisc.elastic.estimators.METHODS`. The gradient
    method (the default, heads and neurons only, as always) is the gradient of the task
    loss through the teacher's head, so a head that was never trained would rank heads
    and neurons at random: it is refused unless ``allow_untrained_head``, and the entry's
    ``untrained_head`` then says why the head is untrained (None for a trained head). The
    other methods do not read the head.

    Raises:
        ModelError: the teacher's head is missing, sized for another task, or never
            trained, and ``allow_untrained_head`` is False.
    """
    import time

    from torch.utils.data import DataLoader

    shape = shape or MapShape()
    seed_everything(seed)
    source = teacher_dir if isinstance(teacher_dir, ModelSource) else ModelSource(str(teacher_dir))
    loaded = load_task_model(source, data.task)
    untrained = loaded.head_initialised or (
        "its head is as initialised (every bias exactly zero)" if head_looks_untrained(loaded.model) else None
    )
    if untrained and not allow_untrained_head and importance == GRADIENT:
        raise ModelError(
            f"importance needs a teacher fine-tuned on {data.task.name}, but the head of "
            f"{source.label or source.path} was never trained ({untrained}), so the scores would be "
            "random: pass a fine-tuned teacher (e.g. minidisc finetune's output), or --allow-untrained-head "
            "to score through the untrained head anyway"
        )
    elastic = ElasticModel(place(loaded.model))  # the importance pass computes where training does
    loader = DataLoader(data.importance, batch_size=batch_size, collate_fn=collator_for(data.task, data.tokenizer))
    totals = ComputeTotals()
    if importance == GRADIENT:  # heads and neurons, exactly as before the other methods existed
        positions = 0
        for batch in loader:  # the shapes the importance pass computes on
            b, s = batch["input_ids"].shape
            positions += b * s
            totals.student_train_flops += 3.0 * forward_flops(elastic.model.config, None, seq_len=s, batch=b)
            totals.tokens += int(batch["attention_mask"].sum())
            totals.sequences += b
        started = time.perf_counter()
        with autocast():  # channels and layers scored only where the map cuts them
            scores = elastic.importance(loader, hidden=shape.scores_hidden, layers=shape.scores_layers)
        cost = ImportanceCost(
            GRADIENT, batches=len(loader), sequences=totals.sequences,
            tokens=totals.tokens, positions=positions,
            forward_flops=totals.student_train_flops / 3.0, backward_flops=totals.student_train_flops * 2.0 / 3.0,
            wall_time_s=time.perf_counter() - started,
        )
    else:
        with elastic.active(None), autocast():
            scores, cost = estimate_importance(elastic.model, elastic.family, loader, importance, seed=seed)
        totals.student_train_flops += cost.flops
        totals.tokens += cost.tokens
        totals.sequences += cost.sequences
    importance_scores = elastic.reorder(scores)
    levels = list(check_levels(levels))
    spec_map = elastic.sparsity_map(importance_scores, levels, layer_shapes=shape.layer_shapes,  # type: ignore[arg-type]
                                    drop_layers=shape.drop_layers, align=shape.align)
    elastic.model.save_pretrained(out / "model")
    data.tokenizer.save_pretrained(out / "model")
    importance_scores.save(out / "importance.safetensors")
    save_sparsity_map(out, spec_map)
    entry = {"levels": levels, "compute": totals.to_dict(), "untrained_head": untrained,
             "importance": cost.to_dict()}
    if shape != MapShape():  # recorded only when asked, so earlier entries read as the default
        entry["shape"] = asdict(shape)
    return entry


def level_specs(sparsified_dir: Path, levels: Iterable[float]) -> dict[float, SubnetSpec]:
    """Specs of ``levels`` (keyed by :func:`~minidisc.elastic.levels.level`), the one level
    lookup of every schedule.

    Levels the saved map lacks (a shared teacher sparsified with another grid) are
    rebuilt from the saved, reordered importance — the same global ranking, so the sets
    stay nested and equal what sparsifying with them would have given — and saved beside
    ``sparsified_dir`` (:func:`~minidisc.elastic.sparsity_map.save_extra_levels`), so every
    later reader of this run (e.g. the compress report, through
    :func:`~minidisc.elastic.sparsity_map.load_sparsity_map`) sees them too.

    Raises:
        ConfigError: a level outside [0, 1).
    """
    saved = load_sparsity_map(sparsified_dir)
    wanted = sorted({level(s) for s in levels})
    missing = [s for s in wanted if find_level(saved, s) is None]
    if missing:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(ModelSource(str(sparsified_dir / "model")).path)
        added = model_sparsity_map(config, Importance.load(sparsified_dir / "importance.safetensors"), missing)
        saved.update(added)
        if is_main_process():  # every process rebuilt the same levels
            save_extra_levels(sparsified_dir, added)
    return {s: saved[find_level(saved, s)] for s in wanted}  # type: ignore[index]


# --- sharing the teacher between runs --------------------------------------------------


def prepare_teacher(
    run: RunDir,
    teacher_run: str | Path | None,
    source: ModelSource,
    data: TaskData,
    finetune: TrainConfig,
    teacher_finetuned: bool,
    levels: Iterable[float],
    shape: MapShape | None = None,
) -> None:
    """Run the ``teacher`` stage (fine-tune the teacher at ``source`` with ``finetune``, or
    only evaluate it when ``teacher_finetuned``) and the ``sparsified`` stage (its sparsity
    map over ``levels``, importance batches of ``finetune.eval_batch_size``, seeded with
    ``finetune.seed``); or link both from the finished run ``teacher_run``.

    Raises:
        ConfigError: ``teacher_run`` is not a run with both stages finished.
    """
    if teacher_run is None:
        run.stage("teacher", lambda tmp: teacher_stage(source, data, finetune, teacher_finetuned, tmp))
        run.stage(  # no training: one process
            "sparsified",
            lambda tmp: sparsify_stage(run.path / "teacher", data, levels, finetune.eval_batch_size, tmp,
                                       seed=finetune.seed, shape=shape),
            main_only=True,
        )
        return
    for name in SHARED_STAGES:
        link_stage(run, name, Path(teacher_run))


def link_stage(run: RunDir, name: str, source_run: Path) -> dict[str, Any]:
    """Make stage ``name`` of ``run`` a link to the same finished stage of ``source_run``."""
    if run.done(name):
        return run.record(name)
    manifest_path = source_run / MANIFEST
    entry = read_json(manifest_path).get("stages", {}).get(name) if manifest_path.is_file() else None
    if not entry or entry.get("status") != "done" or not (source_run / name).is_dir():
        raise ConfigError(
            f"{source_run} has no finished '{name}' stage to share; run a schedule there first "
            "(e.g. minidisc compare/distill with --output pointing at it) or drop --teacher-run"
        )
    target = (source_run / name).resolve()
    link = run.path / name

    def make_link(_root: Path) -> dict[str, Any]:
        if link.is_symlink() or link.exists():
            _remove(link)
        os.symlink(os.path.relpath(target, run.path.resolve()), link, target_is_directory=True)
        return {k: v for k, v in entry.items() if k != "status"} | {"linked_from": str(target)}

    # the link and the files it leads to: a resume notices when the shared stage was rerun
    return run.stage(name, make_link, folder=False, main_only=True, outputs=(name,))


def root_run(run_path: Path) -> Path:
    """The run that physically holds the (possibly linked) ``sparsified`` stage."""
    return (run_path / "sparsified").resolve().parent


def task_inputs(teacher: str | None, teacher_run: str | Path | None) -> tuple[ModelSource, PreTrainedTokenizerBase]:
    """The teacher's source and tokenizer; from the shared run's teacher when sharing."""
    if teacher_run is not None:
        folder = Path(teacher_run) / "teacher"
        if not (folder / "config.json").is_file():
            raise ConfigError(f"{teacher_run} has no fine-tuned teacher (teacher/config.json); check --teacher-run")
        source = ModelSource(str(folder.resolve()), label=f"teacher of {teacher_run}")
    else:
        source = resolve_model(teacher)
    return source, load_tokenizer(source)


# --- export ----------------------------------------------------------------------------


def export_stage(
    model_dir: Path, data: TaskData, out: Path, spec: SubnetSpec | None = None, card: CardFacts | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Save the student in ``model_dir`` to ``out`` and re-evaluate the saved copy (on the
    dev split, and on the held-out test data if there are some); return the stage's entry
    (a :class:`~minidisc.training.records.StudentRecord`).

    Args:
        spec: the student's per-layer sizes (default: as recorded in its config).
        card: the run's facts for the student's model card (``out/README.md``), which
            is written with the exported copy's dev metrics; None keeps the card
            rendered from the weights alone (:func:`~minidisc.report.card.model_card`).
        source: the stage the student comes from, recorded as ``from`` (baseline
            schedules: the best final hop).
    """
    model = load_student(model_dir)
    save_student(model, out, spec, tokenizer=data.tokenizer, card=model_card)
    exported = load_student(out)  # the numbers reported are those of the exported files
    dev, _ = evaluate_model(exported, data, TrainConfig(), out.parent / ".export-eval")
    test = evaluate_model(exported, data, TrainConfig(), out.parent / ".export-eval", split="test")[0] \
        if data.test is not None else None
    if is_main_process():
        shutil.rmtree(out.parent / ".export-eval", ignore_errors=True)
        if card is not None:  # `out` is the stage's staging folder: the card lands with the weights
            write_model_card(out, exported, card, dev)
    return StudentRecord(dev, loads_with_plain_transformers(exported.config), source, test).to_dict()


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path)
