"""``minidisc demo``: the MiniDisc pipeline on SST-2 with the packaged teacher, sized for
a laptop CPU (about 15 minutes on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import typer

from minidisc.cli.options import DataDir, Output, Overwrite, help_text

# Subsampled so the whole run fits in 15 minutes on 2 CPU cores; the report says so.
DEMO = {
    "data": {"task": "sst2", "max_train_samples": 3000, "max_length": 64, "importance_samples": 512},
    "target_sparsity": 0.9,
    "lam": 0.2,
    "iterations": 2,
    "finetune": {"epochs": 2, "batch_size": 32, "learning_rate": 1e-4, "eval_steps": 40, "patience": 3},
    "sandwich": {"epochs": 2, "batch_size": 32, "learning_rate": 1e-4, "eval_steps": 40, "patience": 3},
    "final": {"epochs": 2, "batch_size": 32, "learning_rate": 1e-4, "eval_steps": 40, "patience": 3},
    "note": "demo: SST-2 training set subsampled to 3,000 sentences (full 872-sentence dev set), "
    "64 tokens, 2 epochs per stage",
}


def _local_glue() -> Path | None:
    """$MINIDISC_DATA_DIR, else a ``shared/data/glue`` folder beside the working directory or
    the source checkout (the layout of this project's CI), else None (the hub)."""
    import os

    if os.environ.get("MINIDISC_DATA_DIR"):
        return None  # resolve_data_dir reads it
    checkout = Path(__file__).resolve().parents[3]
    for base in (Path.cwd(), checkout):
        candidate = base.parent / "shared" / "data" / "glue"
        if (candidate / "SST-2").is_dir():
            return candidate
    return None


def register(app: typer.Typer) -> None:
    app.command("demo", help=help_text(demo.__doc__))(demo)


def demo(output: Output = Path("runs/demo"), data_dir: DataDir = None, overwrite: Overwrite = False) -> None:
    """Demo: MiniDisc on SST-2, a 10 % student in ~10 min on a CPU.

    Uses the packaged teacher: fine-tunes all-MiniLM-L6-v2, sparsifies it, sandwich-trains the candidate teacher
    assistants, distils the student at sparsity 0.9, exports it and writes the report.
    """
    from minidisc.cli.compress import summarize
    from minidisc.cli.options import build_compress_config
    from minidisc.schedules.minidisc import run_compress

    data_dir = data_dir or _local_glue()
    cfg = build_compress_config(None, {**DEMO, "data": {**DEMO["data"], "data_dir": str(data_dir) if data_dir else None}})
    run = run_compress(cfg, output, overwrite=overwrite)
    summarize(run.path)
