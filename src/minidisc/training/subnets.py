"""Distillation into nested weight-sharing sub-networks of one elastic student.

With several candidates this is MiniDisc's sandwich training (§3.2); with one it is
plain knowledge distillation into that sub-network (every hop of the baseline schedules).
Every step runs the teacher once (no grad) and then, for each candidate sub-network the
step trains, a student forward in train mode and a backward of ``loss_c / n_trained``;
the gradients of those candidates accumulate in the shared weights before one clipped
AdamW step. Without ``samples`` a step trains every candidate (as the reference
implementation does); with ``samples`` it follows the sandwich rule, the least and the
most sparse candidate plus ``samples`` drawn at random (:mod:`minidisc.training.sandwich`;
``compress`` passes 0 by default).

Every evaluation scores each candidate on the dev set, keeps each candidate's running
best and a snapshot of it at that best (on disk when a snapshot store is given:
:mod:`minidisc.training.snapshots`), and re-runs the λ-tradeoff selection; training
stops after ``patience`` evaluations without a better selection score.

Under DDP every process runs this evaluation: the Trainer's evaluation loop gathers the
predictions of all processes before ``compute_metrics``, so each one scores the whole
dev set; the per-candidate metrics are then checked equal on every process, so all of
them keep the same snapshots, select the same assistant and stop at the same step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from minidisc.training.sandwich import step_candidates
from minidisc.training.snapshots import MemorySnapshot, Snapshot
from minidisc.training.trainers import DistillationTrainer

if TYPE_CHECKING:
    from minidisc.elastic.model import ElasticModel
    from minidisc.elastic.spec import SubnetSpec
    from minidisc.training.snapshots import SnapshotStore
    from minidisc.training.tracker import CandidateTracker


class SubnetTrainer(DistillationTrainer):
    """Distil a teacher into all candidate sub-networks of one elastic student at once.

    Keyword Args:
        elastic: the elastic student (its ``.model`` is the Trainer's model).
        candidates: sparsity → spec of every candidate trained and evaluated.
        tracker: receives every evaluation (running bests, snapshots, selection).
        patience: evaluations without a better selection score before stopping
            (None: never stop early).
        samples: the sandwich rule's random candidates per step besides the least and
            the most sparse (:func:`~minidisc.training.sandwich.step_candidates`); None:
            every candidate every step.
        snapshots: where the candidates' snapshots go (freed from memory once written);
            None: kept in memory.
    """

    def __init__(
        self,
        *args: Any,
        elastic: ElasticModel,
        candidates: dict[float, SubnetSpec],
        tracker: CandidateTracker,
        patience: int | None,
        samples: int | None = None,
        snapshots: SnapshotStore | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, spec_fn=lambda: elastic.spec, **kwargs)
        self.elastic = elastic
        self.candidates = dict(sorted(candidates.items()))
        self.tracker = tracker
        self.patience = patience
        self.samples = samples
        self.snapshots = snapshots
        self._stale_evals = 0

    def compute_training_step(
        self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        model.train()
        inputs = self._prepare_inputs(inputs)
        teacher = self.teacher_signals(inputs)
        trained = step_candidates(list(self.candidates), self.samples, self.args.seed, self.state.global_step)
        scale = len(trained) * self.current_gradient_accumulation_steps
        total = torch.zeros((), device=self.args.device)
        for sparsity in trained:
            self.elastic.activate(self.candidates[sparsity])
            with self.compute_loss_context_manager():
                loss = self.distillation_loss(model, inputs, teacher) / scale
            self.accelerator.backward(loss)
            total += loss.detach()
        return total

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        dataloader = self.get_eval_dataloader(eval_dataset)
        metrics: dict[str, float] = {}
        per_candidate: dict[float, float] = {}
        for sparsity, spec in self.candidates.items():
            self.elastic.activate(spec)
            prefix = f"{metric_key_prefix}_s{sparsity:g}"
            out = self.evaluation_loop(
                dataloader, description=f"Evaluation s={sparsity:g}", ignore_keys=ignore_keys, metric_key_prefix=prefix
            )
            metrics.update(out.metrics)
            per_candidate[sparsity] = float(out.metrics[f"{prefix}_main"])
        self._check_agreement(per_candidate)
        improved = self.tracker.update(self.state.global_step, per_candidate, self._snapshot)
        self._stale_evals = 0 if improved else self._stale_evals + 1
        if self.patience and self._stale_evals >= self.patience:
            self.control.should_training_stop = True
        selection = self.tracker.selection
        metrics[f"{metric_key_prefix}_selected_sparsity"] = selection.sparsity
        metrics[f"{metric_key_prefix}_selection_score"] = selection.score
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _check_agreement(self, per_candidate: dict[float, float]) -> None:
        """Raise unless every process found the same metrics (a no-op for one process).

        They must: the metrics come from the gathered predictions of one model whose
        weights DDP keeps equal. If they differed, the processes would keep different
        snapshots and could select different assistants, so stop rather than go on.
        """
        if self.accelerator.num_processes == 1:
            return
        from accelerate.utils import gather_object

        seen = gather_object([per_candidate])
        if any(other != seen[0] for other in seen[1:]):
            raise RuntimeError(f"processes disagree on the dev metrics of the candidates: {seen}")

    def _snapshot(self, sparsity: float) -> Snapshot | MemorySnapshot:
        """A standalone CPU copy of the candidate's sub-network as it is now (written to
        the snapshot store when there is one; its shape is rebuilt from the same spec)."""
        spec = self.candidates[sparsity]

        def extract() -> Any:
            return self.elastic.extract(spec).to("cpu")

        if self.snapshots is None:
            return MemorySnapshot(extract())
        return self.snapshots.save(f"s{sparsity:g}", extract(), rebuild=extract)
