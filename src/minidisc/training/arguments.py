"""`transformers.TrainingArguments` from a :class:`~minidisc.config.TrainConfig`.

One place decides how every stage uses the Trainer, so fine-tuning, sandwich training
and plain distillation share optimiser (AdamW, weight decay off for bias/LayerNorm),
schedule (linear, warmup ratio), clipping, seeding, and the distributed engine
(``accelerate``: launch any command with ``accelerate launch -m minidisc.cli ...``; on
CPUs add ``ACCELERATE_USE_CPU=1``, which ``TrainingArguments`` reads to pick gloo).
Batch sizes are per process: N processes train on N× the batch, in 1/N the steps.
The precision flags (bf16 / fp16 autocast, TF32) are the current runtime's
(:func:`minidisc.runtime.current`), so Trainer stages and the loops outside a Trainer
compute alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from minidisc.config import TrainConfig


def training_arguments(
    cfg: TrainConfig,
    output_dir: str | Path,
    *,
    keep_best_checkpoint: bool,
    label_names: list[str] | None = None,
) -> TrainingArguments:
    """Build TrainingArguments for one stage.

    Args:
        cfg: optimisation settings of the stage.
        output_dir: where the Trainer may write checkpoints.
        keep_best_checkpoint: let the Trainer checkpoint at every evaluation and reload
            the best one (by the task's ``main`` dev metric) at the end; when False,
            the stage keeps its own best snapshots and the Trainer saves nothing.
        label_names: names of label fields in a batch (default ``["labels"]``).
    """
    import torch
    from transformers import TrainingArguments

    from minidisc.runtime import current

    strategy = "steps" if cfg.eval_steps else "epoch"
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of total steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        lr_scheduler_type="linear",
        eval_strategy=strategy,
        eval_steps=cfg.eval_steps,
        save_strategy=strategy if keep_best_checkpoint else "no",
        save_steps=cfg.eval_steps,
        save_total_limit=1 if keep_best_checkpoint else None,
        load_best_model_at_end=keep_best_checkpoint,
        metric_for_best_model="main" if keep_best_checkpoint else None,
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=max(1, min(50, cfg.eval_steps or 50)),
        # logs show a NaN loss as NaN (the default replaces it by an average of earlier ones)
        logging_nan_inf_filter=False,
        # MeteredTrainer attaches TensorBoard itself, with the stage's log folder
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        remove_unused_columns=False,
        label_names=label_names or ["labels"],
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        save_only_model=True,
        # small sub-networks leave weights unused in a step: DDP must not wait for them
        ddp_find_unused_parameters=True,
        **current().trainer_flags(),
    )
