"""``minidisc demo``: the MiniDisc pipeline on SST-2 with the packaged teacher, sized for
a laptop CPU (about 15 minutes on 2 cores); ``minidisc demo --llm``: SmolLM2-135M
compressed to a 50 % student on packaged Gutenberg text (``compress --task lm``), sized
the same way."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from minidisc.cli.compress import summarize
from minidisc.cli.options import (
    DataDir,
    LowMemory,
    Overwrite,
    Precision,
    apply_low_memory,
    build_compress_config,
    help_text,
)
from minidisc.tasks.demo_data import (
    DEMO_TASK_FOLDER,
    DEMO_TRAIN_SAMPLES,
    PACKAGED_LM,
    packaged_demo_dir,
)

if TYPE_CHECKING:
    from minidisc.config import CompressConfig
    from minidisc.schedules.lm_config import LMCompressConfig

# Subsampled so the whole run fits in 15 minutes on 2 CPU cores; the report says so.
DEMO = {
    "data": {"task": "sst2", "max_train_samples": DEMO_TRAIN_SAMPLES, "max_length": 64, "importance_samples": 512},
    "target_sparsity": 0.9,
    "lam": 0.2,
    "iterations": 2,
    "finetune": {"epochs": 2, "batch_size": 32, "learning_rate": 1e-4, "eval_steps": 40, "patience": 3},
    "sandwich": {"epochs": 2, "batch_size": 32, "learning_rate": 1e-4, "eval_steps": 40, "patience": 3},
    "final": {"epochs": 2, "batch_size": 32, "learning_rate": 1e-4, "eval_steps": 40, "patience": 3},
    "note": "demo: SST-2 training set subsampled to 3,000 sentences (full 872-sentence dev set), "
    "64 tokens, 2 epochs per stage",
}

# `demo --llm`: the decoder defaults of `compress --task lm` (block 128, batch 8, grid of
# eighths, activation importance, uniform layer shapes, forward KL), with token budgets
# and a held-out prefix sized by measurement to finish within 20 minutes on 2 CPU cores
# (one sandwich step of the 3 candidates ≈ 30 s, one final-KD step ≈ 10 s).
DEMO_LLM = {
    "teacher": "smollm2",
    "corpus": {"train": [str(PACKAGED_LM / "train.txt")], "eval": [str(PACKAGED_LM / "heldout.txt")],
               "eval_max_tokens": 16384},
    "target_sparsity": 0.5,
    "sandwich_budget_tokens": 8192,
    "final_budget_tokens": 65536,
    "note": "demo --llm: 8,192 training tokens per sandwich iteration and 65,536 for the final distillation, "
    "from the packaged text, Pride and Prejudice ch. 1-30 (73,559 tokens); held-out perplexity on the first "
    "16,384 tokens of A Christmas Carol",
}


# The source checkout's root: its sibling ``shared/data/glue`` is this project's CI layout.
_CHECKOUT = Path(__file__).resolve().parents[3]


def demo_data_dir(data_dir: Path | None) -> Path | None:
    """Where the demo reads SST-2: ``--data-dir``; else ``None`` when
    ``$MINIDISC_DATA_DIR`` is set (:func:`~minidisc.tasks.resolve_data_dir` reads it); else
    a ``shared/data/glue`` folder beside the working directory or the source checkout;
    else the subset packaged with minidisc (never the hub: the demo runs offline).

    Every choice gives the same rows: the packaged subset is the demo's subsample of
    the full file (see :mod:`minidisc.tasks.demo_data`).
    """
    import os

    if data_dir is not None:
        return data_dir
    if os.environ.get("MINIDISC_DATA_DIR"):
        return None
    for base in (Path.cwd(), _CHECKOUT):
        candidate = base.parent / "shared" / "data" / "glue"
        if (candidate / DEMO_TASK_FOLDER).is_dir():
            return candidate
    return packaged_demo_dir()


def demo_config(data_dir: Path | None = None) -> CompressConfig:
    """The demo's validated configuration, reading its data from :func:`demo_data_dir`."""
    folder = demo_data_dir(data_dir)
    return build_compress_config(None, {**DEMO, "data": {**DEMO["data"], "data_dir": str(folder) if folder else None}})


def demo_llm_config() -> LMCompressConfig:
    """The validated configuration of ``minidisc demo --llm``."""
    from minidisc.config import parse_config
    from minidisc.schedules.lm_config import LMCompressConfig

    return parse_config(LMCompressConfig, DEMO_LLM, "the LLM demo")


def register(app: typer.Typer) -> None:
    app.command("demo", help=help_text(demo.__doc__))(demo)


def demo(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run directory (resumed if it holds this run; default runs/demo, or runs/demo-llm with --llm).")] = None,
    data_dir: DataDir = None,
    overwrite: Overwrite = False,
    llm: Annotated[bool, typer.Option("--llm", help="Compress the decoder SmolLM2-135M to a 50 % student on packaged Gutenberg text instead (compress --task lm, ~15 min on 2 CPU cores).")] = False,
    precision: Precision = None,
    low_memory: LowMemory = None,
) -> None:
    """Demo: MiniDisc on SST-2 (--llm: SmolLM2 on text), on a CPU.

    Uses the packaged teacher: fine-tunes all-MiniLM-L6-v2, sparsifies it, sandwich-trains the candidate teacher
    assistants, distils the student at sparsity 0.9, exports it and writes the report. With --llm: scores
    SmolLM2-135M's heads, FFN units and hidden channels, sandwich-trains the candidate widths on text, distils
    the 50 % student and exports it as a plain LLaMA that AutoModelForCausalLM loads.
    """
    # The SST-2 demo is sized for a laptop: it keeps its peak RSS low unless told otherwise
    # (issue 13's bar); the LLM demo, like compress, keeps its speed unless asked.
    apply_low_memory(low_memory if llm else low_memory is not False)
    # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
    if llm:
        from minidisc.cli.compress import summarize_lm
        from minidisc.schedules.lm import run_compress_lm

        if data_dir is not None:
            raise typer.BadParameter("--data-dir is the SST-2 demo's; demo --llm reads its packaged text", param_hint="--data-dir")
        run = run_compress_lm(_with_precision(demo_llm_config(), precision), output or Path("runs/demo-llm"), overwrite=overwrite)
        summarize_lm(run.path)
        return
    from minidisc.schedules.minidisc import run_compress

    run = run_compress(_with_precision(demo_config(data_dir), precision), output or Path("runs/demo"), overwrite=overwrite)
    summarize(run.path)


def _with_precision(cfg: CompressConfig | LMCompressConfig, precision: str | None) -> CompressConfig | LMCompressConfig:
    """``cfg`` with ``--precision`` when given (validated as any config field)."""
    from minidisc.config import parse_config

    if precision is None:
        return cfg
    return parse_config(type(cfg), {**cfg.model_dump(mode="json"), "precision": precision}, "the command line")
