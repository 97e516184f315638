"""``minidisc pretrain``: masked-LM (encoder) or causal-LM (decoder) pretraining of a student,
from scratch or by distillation, under an exact FLOPs or token budget (Bui et al. 2024,
arXiv 2404.19319)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from minidisc.cli.options import (
    ConfigFile,
    LowMemory,
    Output,
    Overwrite,
    Precision,
    Teacher,
    apply_low_memory,
    merge,
)
from minidisc.config import config_base, parse_config
from minidisc.fileio import read_json
from minidisc.pretrain.config import STRATEGY_DESCRIPTIONS, PretrainConfig
from minidisc.pretrain.report import loss_label

_STRATEGY_HELP = "Training signal: " + "; ".join(f"{k}: {v}" for k, v in STRATEGY_DESCRIPTIONS.items())


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)


def parse_options(pairs: list[str] | None) -> dict[str, Any] | None:
    """``["alpha=0.5", "temperature=2"]`` → ``{"alpha": 0.5, "temperature": 2}`` (values
    parsed as JSON when they are JSON, else kept as strings)."""
    if not pairs:
        return None
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def pretrain(
    output: Output = Path("runs/pretrain"),
    teacher: Teacher = None,
    strategy: Annotated[str | None, typer.Option(help=_STRATEGY_HELP)] = None,
    objective_option: Annotated[list[str] | None, typer.Option("--objective-option", help="Objective option KEY=VALUE (repeatable), e.g. alpha=0.5.")] = None,
    corpus: Annotated[list[str] | None, typer.Option("--corpus", help="Training text file (repeatable) or one hub dataset name.")] = None,
    corpus_config: Annotated[str | None, typer.Option(help="Hub dataset configuration, e.g. wikitext-103-raw-v1.")] = None,
    corpus_split: Annotated[str | None, typer.Option(help="Hub split for training (default train).")] = None,
    text_column: Annotated[str | None, typer.Option(help="Text column of a hub dataset (default text).")] = None,
    eval_corpus: Annotated[list[str] | None, typer.Option("--eval-corpus", help="Held-out text file (repeatable) or hub name; default: hold out the last --eval-blocks training blocks.")] = None,
    eval_split: Annotated[str | None, typer.Option(help="Hub split of the held-out corpus (default validation).")] = None,
    eval_blocks: Annotated[int | None, typer.Option(help="Held-out blocks the LM loss is measured on (default 32).")] = None,
    max_train_blocks: Annotated[int | None, typer.Option(help="Train on the first N blocks only (data-limited setting).")] = None,
    block_size: Annotated[int | None, typer.Option(help="Tokens per sequence incl. special tokens (default 128).")] = None,
    mlm_probability: Annotated[float | None, typer.Option(help="Masking rate of masked-LM arms (default 0.15; unused by decoders).")] = None,
    student_layers: Annotated[int | None, typer.Option(help="Student layers (default: half the teacher's, rounded up).")] = None,
    student_hidden: Annotated[int | None, typer.Option(help="Student width (default: the teacher's).")] = None,
    student_heads: Annotated[int | None, typer.Option(help="Student attention heads (default: the teacher's).")] = None,
    student_kv_heads: Annotated[int | None, typer.Option(help="Key/value heads of a LLaMA-family student (grouped-query attention; default: the teacher's query heads per KV head, if that divides --student-heads).")] = None,
    student_ffn: Annotated[int | None, typer.Option(help="Student FFN units (default: the teacher's ratio).")] = None,
    init_from_teacher: Annotated[str | None, typer.Option(help="Initialise from teacher layers: uniform, all, or indices like 0,2,4 (embeddings, final norm and LM head are copied too).")] = None,
    freeze_encoder: Annotated[bool, typer.Option("--freeze-encoder", help="Train only the MLM head (with --init-from-teacher all: warm up a teacher's head).")] = False,
    head_bias_from_corpus: Annotated[bool, typer.Option("--head-bias-from-corpus", help="Initialise the MLM output bias to the corpus' log unigram frequencies (e.g. before a head warm-up).")] = False,
    budget_flops: Annotated[float | None, typer.Option(help="Training FLOPs: student 3x forward + teacher 1x forward, counted analytically.")] = None,
    budget_tokens: Annotated[int | None, typer.Option(help="Training tokens (non-padding, special tokens included).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sequences per step (default 32).")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate (default 5e-4).")] = None,
    warmup_ratio: Annotated[float | None, typer.Option(help="Warmup fraction of the steps (default 0.1).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay (default 0.01).")] = None,
    max_grad_norm: Annotated[float | None, typer.Option(help="Gradient clipping (default 1.0).")] = None,
    seed: Annotated[int | None, typer.Option(help="Student init, data order and masks (default 776).")] = None,
    eval_every_tokens: Annotated[int | None, typer.Option(help="Held-out evaluation interval in tokens (default: ~8 evaluations).")] = None,
    checkpoint_steps: Annotated[int | None, typer.Option(help="Resumable checkpoint every N steps (default 100).")] = None,
    allow_untrained_teacher_head: Annotated[bool, typer.Option("--allow-untrained-teacher-head", help="Let kd/distilbert/pkd distil from a teacher checkpoint without its LM head (the head is then random; refused otherwise: warm an MLM head up first, see docs/pretrain.md).")] = False,
    log_runs: Annotated[Path | None, typer.Option("--log-runs", help="Append this run's record (params, tokens, held-out loss) to a runs file (.jsonl or .csv) for `minidisc scaling fit`.")] = None,
    precision: Precision = None,
    low_memory: LowMemory = None,
    config: ConfigFile = None,
    overwrite: Overwrite = False,
) -> None:
    """Pretrain a student LM under a FLOPs or token budget.

    Masked LM for BERT-like teachers, causal LM for LLaMA-like decoders (scratch or kd).
    Trains from scratch or by distillation until the budget is spent exactly; reports
    FLOPs (student/teacher), tokens, epochs, wall time and the held-out loss curve.
    """
    # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
    from minidisc.pretrain.run import run_pretrain

    apply_low_memory(low_memory)
    overrides = {
        "teacher": teacher,
        "strategy": strategy,
        "objective_options": parse_options(objective_option),
        "student": {"layers": student_layers, "hidden": student_hidden, "heads": student_heads,
                    "kv_heads": student_kv_heads, "ffn": student_ffn, "init_from_teacher": init_from_teacher,
                    "freeze_encoder": freeze_encoder or None, "head_bias_from_corpus": head_bias_from_corpus or None},
        "corpus": {"train": corpus or None, "hub_config": corpus_config, "split": corpus_split,
                   "text_column": text_column, "eval": eval_corpus or None, "eval_split": eval_split,
                   "eval_blocks": eval_blocks, "max_train_blocks": max_train_blocks, "block_size": block_size,
                   "mlm_probability": mlm_probability},
        "budget": {"flops": budget_flops, "tokens": budget_tokens},
        "optim": {"batch_size": batch_size, "learning_rate": learning_rate, "warmup_ratio": warmup_ratio,
                  "weight_decay": weight_decay, "max_grad_norm": max_grad_norm, "seed": seed},
        "eval_every_tokens": eval_every_tokens,
        "checkpoint_steps": checkpoint_steps,
        "precision": precision,
    }
    base = config_base(config, PretrainConfig) if config else {}
    if budget_flops is not None or budget_tokens is not None:  # a command-line budget replaces the file's
        base.pop("budget", None)
    merged = merge(base, overrides)
    if not merged.get("corpus", {}).get("train"):
        raise typer.BadParameter("pass --corpus FILE (repeatable) or a hub dataset name", param_hint="--corpus")
    cfg = parse_config(PretrainConfig, merged, "the command line")
    run = run_pretrain(cfg, output, overwrite=overwrite, log_runs=log_runs,
                       allow_untrained_teacher_head=allow_untrained_teacher_head)
    summarize(run.path)


def summarize(path: Path) -> None:
    """Print the headline numbers of a finished arm."""
    r = read_json(path / "report.json")
    c, h = r["compute"], r["heldout"]
    typer.echo(
        f"{r['strategy']}: {c['train_flops']:.3g} FLOPs ({100 * c['teacher_share']:.1f} % teacher), "
        f"{c['tokens']:,} tokens ({c['epochs']:.2f} epochs), {c['steps']} steps, wall {c['wall_time_s']:.0f} s "
        f"(teacher {c['teacher_time_s']:.0f} s) | held-out {loss_label(r)} loss {h['final_loss']:.4f}"
        + ("" if h["mlm_head_trained"] else " (head untrained by this objective)")
    )
    typer.echo(f"student: {path / 'student'}")
    typer.echo(f"report:  {path / 'report.md'}")
