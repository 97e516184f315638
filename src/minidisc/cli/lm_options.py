"""The options of decoder LMs (``--task lm``) that ``compress`` and ``compare`` share,
declared once, and the config fields they set."""

from __future__ import annotations

from typing import Annotated, Any

import typer

LM_PANEL = "Decoder LMs (--task lm)"

Corpus = Annotated[list[str] | None, typer.Option("--corpus", help="--task lm: training text file or folder of .txt files (repeatable), or one hub dataset name.", rich_help_panel=LM_PANEL)]
EvalCorpus = Annotated[list[str] | None, typer.Option("--eval-corpus", help="--task lm: held-out text file or folder (repeatable), for the report only (perplexity, bits per byte).", rich_help_panel=LM_PANEL)]
CorpusHubConfig = Annotated[str | None, typer.Option(help="--task lm: hub dataset configuration of --corpus, e.g. wikitext-103-raw-v1.", rich_help_panel=LM_PANEL)]
BlockSize = Annotated[int | None, typer.Option(help="--task lm: tokens per training block (default 128).", rich_help_panel=LM_PANEL)]
BudgetTokens = Annotated[int | None, typer.Option(help="--task lm: training tokens of EVERY distillation stage (each sandwich iteration and the final one; default 200000).", rich_help_panel=LM_PANEL)]
SandwichBudgetTokens = Annotated[int | None, typer.Option(help="--task lm: training tokens of each sandwich iteration (default --budget-tokens).", rich_help_panel=LM_PANEL)]
FinalBudgetTokens = Annotated[int | None, typer.Option(help="--task lm: training tokens of the final distillation (default --budget-tokens).", rich_help_panel=LM_PANEL)]
SelectionBlocks = Annotated[int | None, typer.Option(help="--task lm: training blocks held out as the selection slice (default 16).", rich_help_panel=LM_PANEL)]
CalibrationBlocks = Annotated[int | None, typer.Option(help="--task lm: training blocks that score importance (default 32).", rich_help_panel=LM_PANEL)]
EvalMaxTokens = Annotated[int | None, typer.Option(help="--task lm: score only the first N tokens of each --eval-corpus file.", rich_help_panel=LM_PANEL)]
Importance = Annotated[str | None, typer.Option(help="--task lm: importance estimator: activation (default; Minitron, forward only), gradient, magnitude or random (baselines).", rich_help_panel=LM_PANEL)]
LayerShapes = Annotated[str | None, typer.Option(help="--task lm: uniform (default: every layer the same sizes, a plain LlamaConfig), global (per-layer sizes, loaded with minidisc.load_student) or depth (whole layers removed, full width, a plain LlamaConfig).", rich_help_panel=LM_PANEL)]
Prompt = Annotated[str | None, typer.Option(help="--task lm: prompt that teacher, assistant and student continue greedily in the report.", rich_help_panel=LM_PANEL)]
CacheTopK = Annotated[int | None, typer.Option(help="--task lm: words kept per position by --teacher-cache (default 64).", rich_help_panel=LM_PANEL)]
CacheTailSamples = Annotated[int | None, typer.Option(help="--task lm: words drawn from the teacher's tail per position by --teacher-cache, which makes the cached forward KL unbiased (default 64; 0: the tail is one bucket, needed by objectives other than forward_kl; see docs/lm.md).", rich_help_panel=LM_PANEL)]


def teacher_cache_setting(
    current: dict[str, Any] | None, on: bool | None, top_k: int | None, tail_samples: int | None,
) -> dict[str, Any] | None:
    """The config's ``teacher_cache`` after ``--teacher-cache/--no-teacher-cache``,
    ``--cache-top-k`` and ``--cache-tail-samples`` (either of the last two turns the
    cache on) over ``current`` (the YAML's; None: off).

    Raises:
        typer.BadParameter: ``--cache-top-k``/``--cache-tail-samples`` with ``--no-teacher-cache``.
    """
    given = {k: v for k, v in {"top_k": top_k, "tail_samples": tail_samples}.items() if v is not None}
    if on is False:
        if given:
            raise typer.BadParameter("--cache-top-k and --cache-tail-samples need the teacher-logit cache: drop "
                                     "--no-teacher-cache")
        return None
    if on or given:
        return {**(current or {}), **given}
    return current


def corpus_overrides(
    corpus: list[str] | None, eval_corpus: list[str] | None, corpus_config: str | None, block_size: int | None,
    selection_blocks: int | None, calibration_blocks: int | None, eval_max_tokens: int | None,
) -> dict[str, Any]:
    """The ``corpus`` fields of :class:`~minidisc.schedules.lm_config.LMCompressConfig`
    these options set (None: keep the YAML's or the default)."""
    return {"train": corpus or None, "hub_config": corpus_config, "eval": eval_corpus or None, "block_size": block_size,
            "selection_blocks": selection_blocks, "calibration_blocks": calibration_blocks,
            "eval_max_tokens": eval_max_tokens}
