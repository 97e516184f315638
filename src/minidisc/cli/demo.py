"""``minidisc demo``: the MiniDisc pipeline on SST-2 with the packaged teacher, sized for
a laptop CPU (about 15 minutes on 2 cores)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from minidisc.cli.compress import summarize
from minidisc.cli.options import DataDir, Output, Overwrite, build_compress_config, help_text
from minidisc.tasks.demo_data import DEMO_TASK_FOLDER, DEMO_TRAIN_SAMPLES, packaged_demo_dir

if TYPE_CHECKING:
    from minidisc.config import CompressConfig

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


def register(app: typer.Typer) -> None:
    app.command("demo", help=help_text(demo.__doc__))(demo)


def demo(output: Output = Path("runs/demo"), data_dir: DataDir = None, overwrite: Overwrite = False) -> None:
    """Demo: MiniDisc on SST-2, a 10 % student in ~10 min on a CPU.

    Uses the packaged teacher: fine-tunes all-MiniLM-L6-v2, sparsifies it, sandwich-trains the candidate teacher
    assistants, distils the student at sparsity 0.9, exports it and writes the report.
    """
    # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
    from minidisc.schedules.minidisc import run_compress

    run = run_compress(demo_config(data_dir), output, overwrite=overwrite)
    summarize(run.path)
