"""``minidisc compress``: the whole MiniDisc pipeline in one resumable run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    Prompt,
    SandwichBudgetTokens,
    SelectionBlocks,
    corpus_overrides,
    teacher_cache_setting,
)
from minidisc.cli.options import (
    CandidateScore,
    ConfigFile,
    DataDir,
    DataFileOptions,
    LowMemory,
    MaxEval,
    MaxLength,
    MaxTrain,
    Output,
    Overwrite,
    Precision,
    SandwichSamples,
    ScoreWindow,
    SelectionExamples,
    SelectOn,
    SkipCollapsed,
    Teacher,
    TeacherFinetuned,
    apply_low_memory,
    build_compress_config,
    data_command,
    help_text,
    parse_grid,
)
from minidisc.fileio import read_json

CompressTask = Annotated[
    str | None,
    typer.Option("--task", help="cola, sst2, mrpc, stsb, qqp, mnli, mnli-mm, qnli, rte, wnli, conll2003; or lm: a "
                 "LLaMA-family decoder compressed on plain text (--corpus)."),
]


def register(app: typer.Typer) -> None:
    app.command("compress", help=help_text(compress.__doc__))(compress)


@data_command
def compress(
    output: Output = Path("runs/compress"),
    teacher: Teacher = None,
    task: CompressTask = None,
    target_sparsity: Annotated[float | None, typer.Option(help="Fraction of heads/neurons removed, e.g. 0.9 (a 10 % student).")] = None,
    lam: Annotated[float | None, typer.Option("--lam", help="λ of the tradeoff t = metric + λ·sparsity (default 0.2).")] = None,
    iterations: Annotated[int | None, typer.Option(help="Sandwich iterations; 2 = one teacher assistant.")] = None,
    truncation: Annotated[float | None, typer.Option(help="Least sparse candidate trained (default: 0.3 below the target under the sandwich rule, 0.5 with --sandwich-samples all; --task lm 0.25).")] = None,
    grid: Annotated[str | None, typer.Option(help="Candidate sparsities, comma-separated (default 0,.1,…,.9,.85,.95).")] = None,
    teacher_finetuned: TeacherFinetuned = False,
    data_dir: DataDir = None,
    max_train_samples: MaxTrain = None,
    max_eval_samples: MaxEval = None,
    max_length: MaxLength = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs of every training stage (finetune, sandwich, final).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size of every stage.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate of every stage.")] = None,
    eval_steps: Annotated[int | None, typer.Option(help="Evaluate every N steps (default: every epoch).")] = None,
    patience: Annotated[int | None, typer.Option(help="Evaluations without improvement before stopping.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed of every stage (default 776).")] = None,
    save_candidates: Annotated[bool, typer.Option("--save-candidates", help="Also save each candidate's best sub-network.")] = False,
    select_on: SelectOn = None,
    selection_examples: SelectionExamples = None,
    candidate_score: CandidateScore = None,
    score_window: ScoreWindow = None,
    sandwich_samples: SandwichSamples = None,
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
    objective: Annotated[str | None, typer.Option(help="--task lm: distillation loss: forward_kl (default), reverse_kl, jsd, skew_kl, skew_reverse_kl.", rich_help_panel=LM_PANEL)] = None,
    temperature: Annotated[float | None, typer.Option(help="--task lm: softmax temperature of the distillation loss (default 1).", rich_help_panel=LM_PANEL)] = None,
    importance: Importance = None,
    layer_shapes: Annotated[str | None, typer.Option(help="uniform (every layer the same sizes, the hidden width cut too; the default of --task lm), global (per-layer heads and FFN units, full width; the default of encoders) or depth (every candidate removes whole layers of least block importance, full width: MiniDisc over depths).")] = None,
    drop_layers: Annotated[int | None, typer.Option(help="Remove this many whole layers (least block importance, Minitron's depth pruning) from every candidate and the student; needs --layer-shapes uniform (default 0).")] = None,
    align: Annotated[int | None, typer.Option(help="Round every layer's kept heads (as heads × head size), FFN units and the kept width down to multiples of N, so GPU matrix shapes stay tensor-core friendly: 8 (fp16/bf16 minimum) or 64 (full tiles). Default 1: no rounding. The report counts the rounded sizes.")] = None,
    cost: Annotated[str | None, typer.Option(help="What the λ-tradeoff weighs against quality: flops (default: the sparsity) or latency (each candidate's measured time saved vs the teacher on this device, batch 32 × --max-length tokens, the run's precision; measured once per candidate). Not for --task lm.")] = None,
    prompt: Prompt = None,
    teacher_cache: Annotated[bool | None, typer.Option("--teacher-cache/--no-teacher-cache", help="--task lm: distil from the teacher's top-k log-probabilities + sampled tail words (--cache-tail-samples), computed once per training block and reused by every stage and run on the same teacher (default off; see docs/lm.md).", rich_help_panel=LM_PANEL)] = None,
    cache_top_k: CacheTopK = None,
    cache_tail_samples: CacheTailSamples = None,
    cache_dir: Annotated[Path | None, typer.Option(help="--task lm: teacher-logit cache folder (default: teacher-cache/ in the run); runs on the same teacher may share one.", rich_help_panel=LM_PANEL)] = None,
    precision: Precision = None,
    low_memory: LowMemory = None,
    config: ConfigFile = None,
    overwrite: Overwrite = False,
    *,
    files: DataFileOptions,
) -> Path:
    """Compress a teacher with MiniDisc to a target sparsity.

    Fine-tunes the teacher, sparsifies it, picks a teacher assistant by the λ-tradeoff in
    one sandwich run, distils the target student and exports it with a report.

    Your own labelled data instead of a GLUE task: --train-file (CSV, TSV, JSON lines,
    JSON, Parquet) or --dataset (datasets.load_dataset) with --text-column and
    --label-column, and an optional --test-file; see docs/your-data.md.

    With --task lm a LLaMA-family decoder (e.g. --teacher smollm2) is compressed on plain
    text (--corpus): no fine-tuning, token budgets instead of epochs (--budget-tokens),
    causal-LM distillation, selection on m = PPL_teacher / PPL_candidate on a slice held
    out of the training text; --eval-corpus files are for the report. See docs/lm.md.
    """
    # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
    from minidisc.schedules.minidisc import run_compress

    apply_low_memory(low_memory)

    lm_options = {
        "--corpus": corpus, "--eval-corpus": eval_corpus, "--corpus-config": corpus_config, "--block-size": block_size,
        "--budget-tokens": budget_tokens, "--sandwich-budget-tokens": sandwich_budget_tokens,
        "--final-budget-tokens": final_budget_tokens, "--selection-blocks": selection_blocks,
        "--calibration-blocks": calibration_blocks, "--eval-max-tokens": eval_max_tokens, "--objective": objective,
        "--temperature": temperature, "--importance": importance, "--prompt": prompt,
        "--teacher-cache": teacher_cache, "--cache-top-k": cache_top_k,
        "--cache-tail-samples": cache_tail_samples, "--cache-dir": cache_dir,
    }
    if task == "lm" or (task is None and config is not None and _yaml_task(config) == "lm"):
        glue_only = {"--teacher-finetuned": teacher_finetuned or None, "--data-dir": data_dir,
                     **dict.fromkeys(files.given(), True),
                     "--max-train-samples": max_train_samples, "--max-eval-samples": max_eval_samples,
                     "--max-length": max_length, "--epochs": epochs, "--align": align, "--cost": cost,
                     "--select-on": select_on, "--selection-examples": selection_examples,
                     "--candidate-score": candidate_score, "--score-window": score_window,
                     "--skip-collapsed/--keep-collapsed": skip_collapsed}
        given = [k for k, v in glue_only.items() if v is not None]
        if given:
            raise typer.BadParameter(f"{', '.join(given)} do not apply to --task lm (a decoder compressed on text with token budgets)")
        stage = {"batch_size": batch_size, "learning_rate": learning_rate, "eval_steps": eval_steps,
                 "patience": patience, "seed": seed}
        overrides = {
            "teacher": teacher,
            "corpus": corpus_overrides(corpus, eval_corpus, corpus_config, block_size, selection_blocks,
                                       calibration_blocks, eval_max_tokens),
            "target_sparsity": target_sparsity, "lam": lam, "iterations": iterations, "truncation": truncation,
            "sandwich_samples": sandwich_samples, "grid": parse_grid(grid), "save_candidates": save_candidates or None,
            "importance": importance, "layer_shapes": layer_shapes, "drop_layers": drop_layers, "objective": objective,
            "objective_options": {"temperature": temperature} if temperature is not None else None,
            "budget_tokens": budget_tokens, "sandwich_budget_tokens": sandwich_budget_tokens,
            "final_budget_tokens": final_budget_tokens, "prompt": prompt, "sandwich": stage, "final": stage,
            "precision": precision,
        }
        cache = (teacher_cache, cache_top_k, cache_tail_samples)
        return _compress_lm(config, overrides, output, overwrite, cache, cache_dir)
    given = [k for k, v in lm_options.items() if v is not None]
    if given:
        raise typer.BadParameter(f"{', '.join(given)} apply only to --task lm (compressing a decoder on text)")

    stage = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
             "eval_steps": eval_steps, "patience": patience, "seed": seed}
    overrides = {
        "teacher": teacher,
        "teacher_finetuned": teacher_finetuned or None,
        "data": {"data_dir": str(data_dir) if data_dir else None, "max_train_samples": max_train_samples,
                 "max_eval_samples": max_eval_samples, "max_length": max_length,
                 **files.data_fields(task)},
        "target_sparsity": target_sparsity, "lam": lam, "iterations": iterations, "truncation": truncation,
        "grid": parse_grid(grid), "save_candidates": save_candidates or None,
        "finetune": stage, "sandwich": stage, "final": stage, "precision": precision,
        "layer_shapes": layer_shapes, "drop_layers": drop_layers, "align": align, "cost": cost,
        "select_on": select_on, "selection_examples": selection_examples, "candidate_score": candidate_score,
        "score_window": score_window, "sandwich_samples": sandwich_samples, "skip_collapsed": skip_collapsed,
    }
    cfg = build_compress_config(config, overrides)
    run = run_compress(cfg, output, overwrite=overwrite)
    summarize(run.path)
    return run.path


def summarize(path: Path) -> None:
    """Print where the student and the report are, and the headline numbers."""
    report = read_json(path / "report.json")
    teacher, student = report["teacher"], report["student"]
    typer.echo(
        f"teacher dev {100 * teacher['dev']['main']:.2f} | student ({100 * student['sparsity']:g} % sparse) "
        f"dev {100 * student['dev']['main']:.2f} | FLOPs/128 tok {teacher['flops_per_128_tokens'] / 1e9:.2f}G → "
        f"{student['flops_per_128_tokens'] / 1e9:.3f}G"
    )
    if student.get("test"):
        typer.echo(f"held-out test: teacher {100 * teacher['test']['main']:.2f} | student {100 * student['test']['main']:.2f}")
    typer.echo(f"student: {path / 'student'}  (load with minidisc.load_student)")
    typer.echo(f"report:  {path / 'report.md'}")


def _yaml_task(path: Path | dict) -> str | None:
    """The top-level ``task`` of a YAML config (``lm`` marks a decoder run), if any."""
    from minidisc.config import yaml_mapping
    from minidisc.errors import ConfigError

    try:
        data = yaml_mapping(path)
    except ConfigError:
        return None  # config_base reports the problem
    return data.get("task") if isinstance(data, dict) else None


def _compress_lm(
    config: Path | None, overrides: dict, output: Path, overwrite: bool,
    cache: tuple[bool | None, int | None, int | None] = (None, None, None), cache_dir: Path | None = None,
) -> Path:
    """``compress --task lm``: build the config, run, summarise. ``cache``: the
    ``--teacher-cache``, ``--cache-top-k`` and ``--cache-tail-samples`` options
    (:func:`~minidisc.cli.lm_options.teacher_cache_setting`) over the YAML's setting."""
    from minidisc.cli.options import merge
    from minidisc.config import config_base, parse_config
    from minidisc.schedules.lm import run_compress_lm
    from minidisc.schedules.lm_config import LMCompressConfig

    base = config_base(config, LMCompressConfig) if config else {}
    merged = merge(base, overrides)
    merged["teacher_cache"] = teacher_cache_setting(merged.get("teacher_cache"), *cache)
    if not merged.get("corpus", {}).get("train"):
        raise typer.BadParameter("--task lm needs training text: pass --corpus FILE_OR_FOLDER (repeatable)", param_hint="--corpus")
    cfg = parse_config(LMCompressConfig, merged, "the command line")
    run = run_compress_lm(cfg, output, overwrite=overwrite, cache_dir=cache_dir)
    summarize_lm(run.path)
    return run.path


def summarize_lm(path: Path) -> None:
    """Print the headline numbers of a finished ``--task lm`` run."""
    from minidisc.fileio import read_json

    report = read_json(path / "report.json")
    models = {m["name"].split(" ")[0]: m for m in report["models"]}
    t, s = models["teacher"], models["student"]
    typer.echo(
        f"teacher selection PPL {t['selection']['perplexity']:.2f} | student ({100 * s['sparsity']:g} % sparse) "
        f"PPL {s['selection']['perplexity']:.2f} (m = {s['selection']['main']:.3f}) | non-emb. params "
        f"{t['params']['non_embedding'] / 1e6:.1f}M → {s['params']['non_embedding'] / 1e6:.1f}M"
    )
    for corpus, h in s["heldout"].items():
        typer.echo(f"  {corpus}: PPL {t['heldout'][corpus]['perplexity']:.2f} → {h['perplexity']:.2f}, "
                   f"bits/byte {t['heldout'][corpus]['bits_per_byte']:.4f} → {h['bits_per_byte']:.4f}")
    loader = "AutoModelForCausalLM.from_pretrained" if s.get("loads_with_plain_transformers") else "minidisc.load_student"
    typer.echo(f"student: {path / 'student'}  (load with {loader})")
    typer.echo(f"report:  {path / 'report.md'}")
