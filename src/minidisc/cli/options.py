"""Options shared by several commands, and building validated configs from them.

An option left unset keeps the value from ``--config FILE`` (YAML) or the default, so
a command line only says what differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from minidisc.config import CompressConfig, load_yaml, parse_config

Teacher = Annotated[
    str | None,
    typer.Option("--teacher", help="Hub id, local folder or .gguf file; default: the packaged all-MiniLM-L6-v2."),
]
Task = Annotated[
    str | None,
    typer.Option("--task", help="cola, sst2, mrpc, stsb, qqp, mnli, mnli-mm, qnli, rte, wnli, conll2003."),
]
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Parent of GLUE task folders (SST-2/, MRPC/ ...); else $MINIDISC_DATA_DIR, else the hub."),
]
MaxTrain = Annotated[int | None, typer.Option("--max-train-samples", help="Seeded random subsample of the training set.")]
MaxEval = Annotated[int | None, typer.Option("--max-eval-samples", help="Seeded random subsample of the dev set.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML config; command-line options override it.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing run in --output.")]
Output = Annotated[Path, typer.Option("--output", "-o", help="Run directory (resumed if it holds this run).")]


def merge(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """Recursively overlay the non-None values of ``updates`` on ``base``."""
    out = dict(base)
    for key, value in updates.items():
        if isinstance(value, dict):
            out[key] = merge(out.get(key) or {}, value)
        elif value is not None:
            out[key] = value
    return out


def build_compress_config(config_file: Path | None, overrides: dict[str, Any]) -> CompressConfig:
    """Defaults ← YAML file ← command-line overrides, validated."""
    base = load_yaml(config_file, CompressConfig).model_dump(mode="json") if config_file else {}
    return parse_config(CompressConfig, merge(base, overrides), "the command line")


def parse_grid(text: str | None) -> list[float] | None:
    """``"0.5,0.6,0.9"`` → ``[0.5, 0.6, 0.9]`` (fractions)."""
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated fractions like 0.5,0.9, got {text!r}") from None
