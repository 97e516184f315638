"""``minidisc demo``: the MiniDisc pipeline on SST-2 with the packaged teacher, sized for
a laptop CPU (about 15 minutes on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import typer

from minidisc.cli.options import DataDir, Output, Overwrite

# Subsampled so the whole run fits in ~15 minutes on 2 CPU cores; the report says so.
DEMO = {
    "data": {"task": "sst2", "max_train_samples": 2000, "max_eval_samples": 400, "max_length": 64,
             "importance_samples": 512},
    "target_sparsity": 0.9,
    "lam": 0.2,
    "iterations": 2,
    "finetune": {"epochs": 2, "batch_size": 32, "learning_rate": 1e-4, "eval_steps": 30, "patience": 3},
    "sandwich": {"epochs": 2, "batch_size": 32, "learning_rate": 1e-4, "eval_steps": 30, "patience": 3},
    "final": {"epochs": 2, "batch_size": 32, "learning_rate": 1e-4, "eval_steps": 30, "patience": 3},
    "note": "demo: SST-2 subsampled to 2,000 training and 400 dev sentences, 64 tokens, 2 epochs per stage",
}


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(output: Output = Path("runs/demo"), data_dir: DataDir = None, overwrite: Overwrite = False) -> None:
    """Compress the packaged all-MiniLM-L6-v2 on SST-2 to a 10 % student (sparsity 0.9):
    fine-tune, sparsify, sandwich-train the assistants, distil, export, report."""
    from minidisc.cli.compress import summarize
    from minidisc.cli.options import build_compress_config
    from minidisc.schedules.minidisc import run_compress

    cfg = build_compress_config(None, {**DEMO, "data": {**DEMO["data"], "data_dir": str(data_dir) if data_dir else None}})
    run = run_compress(cfg, output, overwrite=overwrite)
    summarize(run.path)
