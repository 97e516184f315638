"""``minidisc compare``: every schedule to one target on one shared teacher, as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from minidisc.cli.lm_options import (
    LM_PANEL,
    BlockSize,
    BudgetTokens,
    CacheTailSamples,
    CacheTopK,
    CalibrationBlocks,
    Corpus,
    CorpusHubConfig,
    EvalCorpus,
    EvalMaxTokens,
    FinalBudgetTokens,
    Importance,
    LayerShapes,
    Prompt,
    SandwichBudgetTokens,
    SelectionBlocks,
    corpus_overrides,
    teacher_cache_setting,
)
from minidisc.cli.options import (
    CandidateScore,
    Output,
    SandwichSamples,
    ScheduleOptions,
    ScoreWindow,
    SkipCollapsed,
    help_text,
    parse_grid,
    schedule_command,
)
from minidisc.fileio import read_json
from minidisc.schedules.config import CompareConfig

GLUE_SCHEDULES = "direct,takd,maxidisc,minidisc"


def register(app: typer.Typer) -> None:
    app.command("compare", help=help_text(compare.__doc__))(compare)


@schedule_command
def compare(
    target: Annotated[float | None, typer.Option("--target", help="Student sparsity, e.g. 0.9 (a 10 % student).")] = None,
    schedules: Annotated[str | None, typer.Option(help=f"Comma-separated: {GLUE_SCHEDULES.replace(',', ', ')} (default all); --task lm: direct, depth, random, takd, minidisc, pretrain (default all) and maxidisc (the selection check: TAKD through every MiniDisc candidate, Spearman correlation of λ-tradeoff and student).")] = None,
    takd_path: Annotated[str | None, typer.Option(help="TAKD path (default: the candidate nearest target/2, then the target); --task lm: the one assistant (optionally then the target).")] = None,
    truncation: Annotated[float | None, typer.Option(help="MiniDisc/MaxiDisc candidates are at least this sparse (default: 0.3 below the target under the sandwich rule, 0.5 with --sandwich-samples all; --task lm 0.25).")] = None,
    lam: Annotated[float | None, typer.Option("--lam", help="MiniDisc's λ (default 0.2).")] = None,
    iterations: Annotated[int | None, typer.Option(help="MiniDisc sandwich iterations (default 2 = one assistant).")] = None,
    max_assistants: Annotated[int | None, typer.Option(help="MaxiDisc paths through up to this many assistants (default 1).")] = None,
    note: Annotated[str | None, typer.Option(help="Free text shown in the reports.")] = None,
    sandwich_samples: SandwichSamples = None,
    candidate_score: CandidateScore = None,
    score_window: ScoreWindow = None,
    skip_collapsed: SkipCollapsed = None,
    corpus: Corpus = None,
    eval_corpus: EvalCorpus = None,
    corpus_config: CorpusHubConfig = None,
    block_size: BlockSize = None,
    budget_tokens: BudgetTokens = None,
    sandwich_budget_tokens: SandwichBudgetTokens = None,
    final_budget_tokens: FinalBudgetTokens = None,
    selection_blocks: SelectionBlocks = None,
    calibration_blocks: CalibrationBlocks = None,
    eval_max_tokens: EvalMaxTokens = None,
    importance: Importance = None,
    layer_shapes: LayerShapes = None,
    prompt: Prompt = None,
    teacher_cache: Annotated[bool, typer.Option("--teacher-cache", help="--task lm: every arm distils from the teacher's top-k log-probabilities + sampled tail words (--cache-tail-samples), from one cache in the comparison (or --cache-dir); default off, see docs/lm.md.", rich_help_panel=LM_PANEL)] = False,
    cache_top_k: CacheTopK = None,
    cache_tail_samples: CacheTailSamples = None,
    pretrain_learning_rate: Annotated[float | None, typer.Option(help="--task lm: peak learning rate of the from-scratch arm (default 5e-4).", rich_help_panel=LM_PANEL)] = None,
    output: Output = Path("runs/compare"),
    *,
    opts: ScheduleOptions,
) -> Path:
    """Compare all four schedules on one teacher: table and plot.

    Runs (or resumes) direct KD, TAKD, MaxiDisc and MiniDisc on the same fine-tuned and sparsified teacher and
    data; writes the paper-style table (report.md/json) and a plot of student metric
    against cost (compare.png).

    With --task lm (a LLaMA-family decoder on plain text, the options of compress --task lm): direct KD, depth
    pruning, random-importance pruning, TAKD through a fixed assistant, MiniDisc and pretraining the direct-KD
    student's shape from scratch with the same FLOPs, on the same corpus, block size, seed and token budgets;
    the table gives perplexity per corpus, tokens, FLOPs, wall time and the multiple of one direct-KD run, the
    plot perplexity against cost. See docs/lm.md.
    """
    lm = {"--corpus": corpus, "--eval-corpus": eval_corpus, "--corpus-config": corpus_config, "--block-size": block_size,
          "--budget-tokens": budget_tokens, "--sandwich-budget-tokens": sandwich_budget_tokens,
          "--final-budget-tokens": final_budget_tokens, "--selection-blocks": selection_blocks,
          "--calibration-blocks": calibration_blocks, "--eval-max-tokens": eval_max_tokens, "--importance": importance,
          "--layer-shapes": layer_shapes, "--prompt": prompt, "--teacher-cache": teacher_cache or None,
          "--cache-top-k": cache_top_k, "--cache-tail-samples": cache_tail_samples,
          "--pretrain-learning-rate": pretrain_learning_rate}
    if opts.task == "lm":
        minidisc_rules = {"--skip-collapsed/--keep-collapsed": skip_collapsed,
                          "--candidate-score": candidate_score, "--score-window": score_window}
        given = [k for k, v in minidisc_rules.items() if v is not None]
        if given:
            raise typer.BadParameter(f"{', '.join(given)} do not apply to --task lm (its candidates are scored "
                                     "on held-out text by their best perplexity ratio)")
        return _compare_lm(
            opts, target=target, schedules=schedules, takd_path=takd_path, truncation=truncation, lam=lam,
            iterations=iterations, max_assistants=max_assistants, note=note, output=output,
            corpus=corpus_overrides(corpus, eval_corpus, corpus_config, block_size, selection_blocks,
                                    calibration_blocks, eval_max_tokens),
            budget_tokens=budget_tokens, sandwich_budget_tokens=sandwich_budget_tokens,
            final_budget_tokens=final_budget_tokens, importance=importance, layer_shapes=layer_shapes, prompt=prompt,
            cache=(teacher_cache or None, cache_top_k, cache_tail_samples), pretrain_learning_rate=pretrain_learning_rate,
            sandwich_samples=sandwich_samples,
        )
    given = [k for k, v in lm.items() if v is not None]
    if given:
        raise typer.BadParameter(f"{', '.join(given)} apply only to --task lm (comparing decoder compressions on text)")
    # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
    from minidisc.schedules.compare import run_compare

    cfg = opts.build(
        CompareConfig, target_sparsity=target, schedules=_names(schedules or GLUE_SCHEDULES),
        takd_path=parse_grid(takd_path), truncation=truncation, lam=lam, iterations=iterations,
        max_assistants=max_assistants, note=note, sandwich_samples=sandwich_samples,
        skip_collapsed=skip_collapsed, candidate_score=candidate_score, score_window=score_window,
    )
    run = run_compare(cfg, output, overwrite=opts.overwrite, cache=opts.cache_options())
    report = read_json(run.path / "report.json")
    for row in report["rows"]:
        multiple = f"{row['cost_multiple']:.2f}×" if row.get("cost_multiple") is not None else "–"
        typer.echo(f"{row['schedule']:>9}: dev {100 * row['dev_main']:.2f} | cost {row['cost_train_flops']:.3e} FLOPs ({multiple})")
    typer.echo(f"report: {run.path / 'report.md'}")
    return run.path


def _names(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _compare_lm(opts: ScheduleOptions, *, target: float | None, schedules: str | None, takd_path: str | None,
                max_assistants: int | None, output: Path, corpus: dict[str, Any],
                cache: tuple[bool | None, int | None, int | None], pretrain_learning_rate: float | None, **fields: Any) -> Path:
    """``compare --task lm``: the shared ``compress --task lm`` config (``--config`` is
    its YAML) with these options over it, the arms, the run, the table's headline."""
    from minidisc.cli.options import merge
    from minidisc.config import config_base, parse_config
    from minidisc.schedules.lm_compare import run_compare_lm
    from minidisc.schedules.lm_compare_config import LMCompareConfig
    from minidisc.schedules.lm_config import LMCompressConfig

    glue_only = {"--teacher-run": opts.teacher_run, "--teacher-finetuned": opts.teacher_finetuned or None,
                 "--data-dir": opts.data_dir, "--max-train-samples": opts.max_train_samples,
                 "--max-eval-samples": opts.max_eval_samples, "--max-length": opts.max_length,
                 "--importance-samples": opts.importance_samples, "--epochs": opts.epochs,
                 "--finetune-epochs": opts.finetune_epochs, "--alpha": opts.alpha, "--beta": opts.beta,
                 "--option": opts.option, "--max-assistants": max_assistants, "--select-on": opts.select_on,
                 "--selection-examples": opts.selection_examples}
    given = [k for k, v in glue_only.items() if v is not None]
    if given:
        raise typer.BadParameter(f"{', '.join(given)} do not apply to --task lm (decoders compressed on text with token budgets)")
    stage = {"batch_size": opts.batch_size, "learning_rate": opts.learning_rate, "eval_steps": opts.eval_steps,
             "patience": opts.patience or None, "seed": opts.seed}
    overrides = {
        "teacher": opts.teacher, "corpus": corpus, "target_sparsity": target, "grid": parse_grid(opts.grid),
        "objective": opts.objective,
        "objective_options": {"temperature": opts.temperature} if opts.temperature is not None else None,
        "sandwich": stage, "final": stage, "precision": opts.precision, **fields,
    }
    base = merge(config_base(opts.config, LMCompressConfig) if opts.config else {}, overrides)
    base["teacher_cache"] = teacher_cache_setting(base.get("teacher_cache"), *cache)
    if not base.get("corpus", {}).get("train"):
        raise typer.BadParameter("--task lm needs training text: pass --corpus FILE_OR_FOLDER (repeatable)", param_hint="--corpus")
    path = parse_grid(takd_path) or []
    if len(path) > 2 or (len(path) == 2 and target is not None and abs(path[1] - target) > 1e-9):
        raise typer.BadParameter("--task lm: --takd-path is one assistant, optionally followed by the target", param_hint="--takd-path")
    specific = {"schedules": _names(schedules) if schedules else None, "takd_assistant": path[0] if path else None,
                "pretrain_learning_rate": pretrain_learning_rate}
    cfg = parse_config(LMCompareConfig, {"base": base, **{k: v for k, v in specific.items() if v is not None}},
                       "the command line")
    run = run_compare_lm(cfg, output, overwrite=opts.overwrite, cache_dir=opts.cache_dir)
    report = read_json(run.path / "report.json")
    corpus_name = report["corpora"][0] if report["corpora"] else None
    for row in report["rows"]:
        ppl = row["heldout"][corpus_name]["perplexity"] if corpus_name else row["dev"]["perplexity"]
        multiple = f"{row['cost_multiple']:.2f}×" if row.get("cost_multiple") is not None else "–"
        typer.echo(f"{row['schedule']:>9}: PPL {ppl:.2f} ({corpus_name or 'selection slice'}) | "
                   f"cost {row['cost_train_flops']:.3e} FLOPs ({multiple})")
    typer.echo(f"report: {run.path / 'report.md'}")
    return run.path
