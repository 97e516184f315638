"""Task fine-tuning of a teacher (or of any student checkpoint) with the HF Trainer.

The best dev checkpoint (by the task's ``main`` metric) is kept; training stops early
after ``patience`` evaluations without improvement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.training.arguments import training_arguments
from minidisc.training.data import collator_for, metrics_fn, preprocess_fn
from minidisc.training.trainers import MeteredTrainer

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from minidisc.compute.meter import ComputeTotals
    from minidisc.config import TrainConfig
    from minidisc.tasks import TaskSpec
    from minidisc.training.data import TaskData


@dataclass
class FinetuneResult:
    """The fine-tuned model (best dev checkpoint loaded) and its dev metrics
    (fractions, keyed by metric name, ``main`` included)."""

    model: PreTrainedModel
    dev_metrics: dict[str, float]
    log_history: list[dict[str, Any]]
    compute: ComputeTotals


def finetune_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec,
    train_set: Dataset,
    dev_set: Dataset,
    cfg: TrainConfig,
    workdir: str | Path,
    *,
    stage: str = "finetune",
    log_dir: str | Path | None = None,
) -> MeteredTrainer:
    """The fine-tuning stage's Trainer, not yet trained (arguments as :func:`finetune`);
    the benchmarks time its steps, so a benchmark's fine-tune step is the stage's own."""
    from transformers import EarlyStoppingCallback

    return MeteredTrainer(
        model=model,
        args=training_arguments(cfg, workdir, keep_best_checkpoint=True),
        train_dataset=train_set,
        eval_dataset=dev_set,
        data_collator=collator_for(task, tokenizer),
        processing_class=tokenizer,
        compute_metrics=metrics_fn(task),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience)] if cfg.patience else None,
        stage=stage,
        log_dir=log_dir,
    )


def finetune(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: TaskSpec,
    train_set: Dataset,
    dev_set: Dataset,
    cfg: TrainConfig,
    workdir: str | Path,
    *,
    stage: str = "finetune",
    log_dir: str | Path | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` on tokenized ``train_set``, selecting on ``dev_set``.

    Args:
        train_set, dev_set: outputs of :func:`minidisc.tasks.tokenize_split`.
        workdir: scratch folder for the Trainer's checkpoints (the caller deletes it).
        stage: the stage's name in errors.
        log_dir: folder of the training logs (:mod:`minidisc.training.logs`); None: none.

    Raises:
        DivergenceError: a non-finite loss, gradient norm or weight during training.
    """
    trainer = finetune_trainer(model, tokenizer, task, train_set, dev_set, cfg, workdir, stage=stage, log_dir=log_dir)
    trainer.train()
    dev = dev_metrics(trainer.evaluate())
    return FinetuneResult(trainer.model, dev, trainer.state.log_history, trainer.meter.stop())


def evaluate_model(
    model: PreTrainedModel, data: TaskData, cfg: TrainConfig, workdir: str | Path, split: str = "dev"
) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics (fractions, ``main`` included) of ``model`` on ``data``'s dev split (or
    ``split="test"``: the held-out test data, which must exist) and the evaluation's cost."""
    trainer = MeteredTrainer(
        model=model,
        args=training_arguments(cfg, workdir, keep_best_checkpoint=False),
        eval_dataset=data.test if split == "test" else data.dev,
        data_collator=collator_for(data.task, data.tokenizer),
        processing_class=data.tokenizer,
        compute_metrics=metrics_fn(data.task),
        preprocess_logits_for_metrics=preprocess_fn(data.task),
    )
    return dev_metrics(trainer.evaluate()), trainer.meter.totals.to_dict()


def dev_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Strip the Trainer's ``eval_`` prefix and its timing entries."""
    skip = ("_runtime", "_per_second", "_loss", "_epoch", "_preparation_time")
    return {
        k.removeprefix("eval_"): float(v)
        for k, v in metrics.items()
        if k.startswith("eval_") and not k.endswith(skip)
    }
