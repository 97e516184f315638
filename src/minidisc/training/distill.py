"""The distillation engine: a teacher distilled into one or many sub-networks of an elastic
copy of itself.

Every distillation stage of every schedule runs here: MiniDisc's iterations (the
sandwich: all candidate sub-networks trained at once) and every hop of direct KD, TAKD
and MaxiDisc (plain knowledge distillation: the one-candidate case, tracked by
:meth:`CandidateTracker.single <minidisc.training.tracker.CandidateTracker.single>`).
One stage is

1. :meth:`Distiller.load`: seed with the stage's seed, then load the teacher and a second
   copy of it, the student (a caller may cut the student further, e.g. drop layers);
2. :meth:`Distiller.run`: train the candidates with
   :class:`~minidisc.training.subnets.SubnetTrainer`, every evaluation feeding the
   :class:`~minidisc.training.tracker.CandidateTracker` (running bests, snapshots, the
   λ-selection); then save the selected candidate's best snapshot to ``out/model``, with
   the training logs in ``out/logs``. Snapshots wait on disk in ``out/snapshots``
   (:mod:`minidisc.training.snapshots`), removed when the stage has saved what it keeps.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.elastic.io import save_student
from minidisc.elastic.model import ElasticModel
from minidisc.fileio import is_main_process, process_state
from minidisc.models import ModelSource, load_for_task
from minidisc.objectives import build_objective
from minidisc.seeding import seed_everything
from minidisc.training.arguments import training_arguments
from minidisc.training.data import collator_for, metrics_fn, preprocess_fn
from minidisc.training.snapshots import SnapshotStore
from minidisc.training.subnets import SubnetTrainer

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from minidisc.config import TrainConfig
    from minidisc.elastic.spec import SubnetSpec
    from minidisc.training.data import TaskData
    from minidisc.training.snapshots import MemorySnapshot, Snapshot
    from minidisc.training.teacher_cache import TeacherCacheStore
    from minidisc.training.tracker import CandidateTracker


@dataclass
class Distiller:
    """Distillation with fixed task data, training settings and objective.

    Attributes:
        data: the task's tokenized splits (train: training; evaluations and selection on
            ``data.selection_set``: the selection slice when one is held out, else dev).
        cfg: the stage's training settings (seed, optimisation, evaluation, patience).
        objective: the distillation objective's name (:mod:`minidisc.objectives`);
            default: the MiniDisc loss.
        objective_options: its options.
        teacher_cache: serve teacher outputs from this store (see
            :mod:`minidisc.training.teacher_cache`); None: the teacher runs every batch.
        card: renders the saved model's card (``out/model/README.md``) from the model,
            e.g. :func:`minidisc.report.card.model_card`; None: no card.
        sandwich_samples: with several candidates, train the least and the most sparse
            and this many others drawn at random per step (the sandwich rule:
            :mod:`minidisc.training.sandwich`); None: every candidate every step.
    """

    data: TaskData
    cfg: TrainConfig
    objective: str = "minidisc"
    objective_options: Mapping[str, Any] = field(default_factory=dict)
    teacher_cache: TeacherCacheStore | None = None
    card: Callable[[Any], str] | None = None
    sandwich_samples: int | None = None

    def load(self, teacher_dir: Path) -> tuple[PreTrainedModel, PreTrainedModel]:
        """Seed with ``cfg.seed``, then load the teacher saved in ``teacher_dir`` and a second
        copy of it, the student, both with the task's head.

        Raises:
            ModelError: the folder holds no loadable model for the task.
        """
        seed_everything(self.cfg.seed)
        teacher = load_for_task(ModelSource(str(teacher_dir)), self.data.task)
        student = load_for_task(ModelSource(str(teacher_dir)), self.data.task)
        return teacher, student

    def trainer(
        self,
        teacher: PreTrainedModel,
        student: PreTrainedModel,
        candidates: dict[float, SubnetSpec],
        tracker: CandidateTracker,
        out: Path,
        *,
        stage: str = "distillation",
    ) -> SubnetTrainer:
        """The stage's Trainer, not yet trained: ``teacher`` distilled into the ``candidates``
        (sparsity → spec) of an elastic copy of ``student``, with ``out/scratch`` as its
        scratch folder, ``out/snapshots`` for the candidates' snapshots and ``out/logs``
        for its logs. :meth:`run` trains it; the benchmarks
        time its steps (``benchmarks/steps.py``), so a benchmark's sandwich step is the
        stage's own."""
        elastic = ElasticModel(student)
        loss = build_objective(
            self.objective, task_type=self.data.task.task_type, student_config=student.config,
            teacher_config=teacher.config, **dict(self.objective_options),
        )
        return SubnetTrainer(
            model=elastic.model,
            args=training_arguments(self.cfg, out / "scratch", keep_best_checkpoint=False),
            train_dataset=self.data.train,
            eval_dataset=self.data.selection_set,
            data_collator=collator_for(self.data.task, self.data.tokenizer),
            processing_class=self.data.tokenizer,
            compute_metrics=metrics_fn(self.data.task),
            preprocess_logits_for_metrics=preprocess_fn(self.data.task),
            teacher=teacher,
            objective=loss,
            elastic=elastic,
            candidates=candidates,
            tracker=tracker,
            patience=self.cfg.patience,
            samples=self.sandwich_samples,
            snapshots=SnapshotStore(out / "snapshots", rank=process_state().process_index),
            teacher_cache=self.teacher_cache,
            stage=stage,
            log_dir=out / "logs",
        )

    def run(
        self,
        teacher: PreTrainedModel,
        student: PreTrainedModel,
        candidates: dict[float, SubnetSpec],
        tracker: CandidateTracker,
        out: Path,
        *,
        stage: str = "distillation",
        candidates_dir: Path | None = None,
    ) -> dict[str, Any]:
        """Distil ``teacher`` into the ``candidates`` (sparsity → spec) of an elastic copy of
        ``student``, as one stage writing into ``out``; return the stage's compute totals.

        Every evaluation scores each candidate on ``data.selection_set`` and updates
        ``tracker`` (which keeps the snapshot of each candidate its scoring rule keeps); training ends after ``cfg.patience``
        evaluations without a better selection score. The selected candidate at its best
        evaluation is saved to ``out/model`` (safetensors, config, tokenizer, model card), the training
        logs to ``out/logs`` (:mod:`minidisc.training.logs`); the Trainer's scratch files
        in ``out/scratch`` are deleted. With a teacher cache the totals also hold
        ``teacher_cache`` statistics (hits, misses, teacher FLOPs saved), and the store is
        flushed to disk. ``stage`` names the stage in errors. With ``candidates_dir``
        every candidate's kept snapshot is saved too, as ``candidates_dir/s<sparsity>``.

        Raises:
            DivergenceError: a non-finite loss, gradient norm or weight during training.
        """
        trainer = self.trainer(teacher, student, candidates, tracker, out, stage=stage)
        try:
            trainer.train()
            if not tracker.history:  # training ended between evaluations: evaluate once
                trainer.evaluate()
            compute = trainer.meter.stop().to_dict()
            if trainer.teacher_cache is not None:
                compute["teacher_cache"] = trainer.teacher_cache.stats.to_dict()
                trainer.teacher_cache.flush()
            if is_main_process():
                shutil.rmtree(out / "scratch", ignore_errors=True)
            chosen = tracker.selection.sparsity  # type: ignore[union-attr]  # evaluated at least once
            self._save(tracker.chosen(), out / "model", candidates[chosen])
            if candidates_dir is not None:
                for s, snapshot in tracker.snapshots.items():
                    self._save(snapshot, candidates_dir / f"s{s:g}", candidates[s])
        finally:
            if trainer.snapshots is not None:
                trainer.snapshots.clear()
        return compute

    def _save(self, snapshot: Snapshot | MemorySnapshot, folder: Path, spec: SubnetSpec) -> None:
        save_student(snapshot.load(), folder, spec, tokenizer=self.data.tokenizer, card=self.card)
