"""``minidisc sparsify``: score a fine-tuned teacher's heads and FFN neurons, reorder them
by importance and write the nested sparsity map (the ``sparsified`` stage of
``minidisc compress``, on its own).

The output folder holds ``model/`` (the reordered teacher: same outputs, heads and
neurons sorted by importance, descending), ``importance.safetensors`` (per-layer
normalised scores, in the reordered order), ``sparsity_map.json`` (per level: kept heads
and neurons per layer; nested across levels) and ``sparsify.json`` (what was done). It is
also a run directory (``config.yaml``, ``manifest.json``): rerunning resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

import typer
from pydantic import ConfigDict

from minidisc.cli.options import (
    DataDir,
    DataFileOptions,
    LowMemory,
    MaxTrain,
    Overwrite,
    Precision,
    Task,
    apply_low_memory,
    data_command,
    merge,
    parse_grid,
)
from minidisc.config import DataConfig, WithPrecision, parse_config
from minidisc.elastic.levels import check_levels
from minidisc.elastic.spec import DEFAULT_GRID
from minidisc.errors import ConfigError
from minidisc.fileio import read_json, write_json
from minidisc.models import load_config, load_tokenizer, resolve_model
from minidisc.runfolder.run import RunDir, check_output
from minidisc.runtime import configure
from minidisc.tasks.custom import check_custom_data
from minidisc.training.data import prepare_task_data

MAP_FILE = "sparsity_map.json"
# Required: importance is the gradient of the task loss, meaningless with an untrained head.
FinetunedTeacher = Annotated[
    str, typer.Option("--teacher", help="Hub id or folder of a teacher fine-tuned on --task (e.g. minidisc finetune's output).")
]
SparsifyOutput = Annotated[
    Path, typer.Option("--output", "-o", help="Folder for model/, importance.safetensors and sparsity_map.json.")
]


class SparsifyConfig(WithPrecision):
    """What a sparsify run directory was made with (compared on resume)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    teacher: str
    data: DataConfig
    levels: tuple[float, ...]
    batch_size: int
    seed: int
    allow_untrained_head: bool = False
    importance: str = "gradient"
    layer_shapes: str | None = None
    drop_layers: int = 0
    align: int = 1

    # added after runs existed: their defaults stay out of the dump, so older runs resume
    omitted_in_dump: ClassVar[dict[str, Any]] = {
        **WithPrecision.omitted_in_dump, "layer_shapes": None, "drop_layers": 0, "align": 1,
    }


def register(app: typer.Typer) -> None:
    app.command("sparsify")(sparsify)


@data_command
def sparsify(
    teacher: FinetunedTeacher,
    output: SparsifyOutput = Path("runs/sparsify"),
    task: Task = None,
    grid: Annotated[str | None, typer.Option(help="Sparsity levels of the map, comma-separated (default 0,.1,…,.9,.85,.95).")] = None,
    target_sparsity: Annotated[float | None, typer.Option(help="A level added to the grid, e.g. 0.93.")] = None,
    data_dir: DataDir = None,
    max_train_samples: MaxTrain = None,
    max_length: Annotated[int, typer.Option(help="Maximum tokens per example.")] = 128,
    importance_samples: Annotated[int, typer.Option(help="Training examples whose label-loss gradients score heads/neurons.")] = 2048,
    batch_size: Annotated[int, typer.Option(help="Batch size of the importance pass.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of subsampling and of the importance subset.")] = 776,
    allow_untrained_head: Annotated[bool, typer.Option(
        "--allow-untrained-head",
        help="Score importance even through a task head that was never trained (random scores; recorded in sparsify.json).",
    )] = False,
    importance: Annotated[str, typer.Option(
        "--importance",
        help="How heads and neurons are scored: gradient (|dL/dmask| through the task head; default), "
             "activation (Minitron: forward passes only), magnitude (weight norms, no data) or random "
             "(seeded baseline). See docs/minidisc.md.",
    )] = "gradient",
    layer_shapes: Annotated[str | None, typer.Option(help="uniform (every layer the same sizes, the hidden width cut too), global (per-layer heads and FFN units; the default of encoders) or depth (whole layers of least block importance removed, full width).")] = None,
    drop_layers: Annotated[int, typer.Option(help="Remove this many whole layers (least block importance) at every level above 0; needs --layer-shapes uniform.")] = 0,
    align: Annotated[int, typer.Option(help="Round kept heads (× head size), FFN units and width down to multiples of N for GPU tensor cores (8 or 64); 1: none.")] = 1,
    precision: Precision = None,
    low_memory: LowMemory = None,
    overwrite: Overwrite = False,
    *,
    files: DataFileOptions,
) -> Path:
    """Score, reorder and map the heads/neurons of a teacher already fine-tuned on the task.

    Writes the reordered model, importance.safetensors and sparsity_map.json into --output.
    The task is --task (default sst2) or your own data (--train-file or --dataset; the
    teacher fine-tuned on them, e.g. by minidisc finetune --train-file; see docs/your-data.md).
    """
    check_importance(importance)
    check_output(output, overwrite)  # before any model is loaded
    apply_low_memory(low_memory)
    data_cfg = parse_config(DataConfig, merge({}, {
        **files.data_fields(task), "data_dir": str(data_dir) if data_dir else None, "max_train_samples": max_train_samples,
        "max_length": max_length, "importance_samples": importance_samples,
    }), "the command line")
    levels = _levels(parse_grid(grid), target_sparsity)
    summary = run_sparsify(teacher, data_cfg, levels, batch_size, seed, output, overwrite=overwrite,
                           allow_untrained_head=allow_untrained_head, importance=importance,
                           precision=precision or "auto", shape=_shape(layer_shapes, drop_layers, align))
    if summary["untrained_head"]:
        typer.echo(f"warning: importance scored through an untrained head ({summary['untrained_head']})", err=True)
    typer.echo(render_levels(output / MAP_FILE))
    cost = summary["importance"]
    typer.echo(f"reordered model: {output / 'model'}  ({summary['data']['importance_examples']} scoring examples)")
    typer.echo(f"importance: {cost['method']}, {cost['batches']} batches, {cost['tokens']} tokens, "
               f"{cost['flops']:.3g} FLOPs, {cost['wall_time_s']:.1f} s")
    return output


def run_sparsify(
    teacher: str, data_cfg: DataConfig, levels: list[float], batch_size: int, seed: int, output: Path,
    *, overwrite: bool = False, allow_untrained_head: bool = False, importance: str = "gradient",
    precision: str = "auto", shape: Any = None,
) -> dict[str, Any]:
    """Sparsify ``teacher`` on ``data_cfg``'s training subset into the run directory
    ``output`` (its outputs at the top of it, written when the stage succeeds).
    Rerunning with the same settings resumes (a no-op once done).

    Args:
        teacher: hub id or model folder of a task-tuned teacher.
        data_cfg: the task and data.
        levels: sparsity fractions of the map.
        batch_size: batch size of the importance pass.
        seed: seed of subsampling and of the importance subset.
        overwrite: replace another sparsify run in ``output``.
        allow_untrained_head: score through a head that was never trained instead of
            refusing (``untrained_head`` in the summary says why it is untrained).
        importance: the estimator, one of :data:`minidisc.elastic.estimators.METHODS`
            (only ``gradient`` reads the head).
        precision: of the importance pass (:mod:`minidisc.runtime`; default ``auto``).
        shape: the map's :class:`~minidisc.schedules.stages.MapShape` (layer shapes,
            dropped layers, alignment); default: the family's map.

    Returns:
        The ``sparsify.json`` content (teacher, task, levels, data sizes, compute,
        ``untrained_head``: None for a trained head, ``importance``: the method and its
        calibration cost).

    Raises:
        ConfigError: a GGUF teacher (save it as a model folder first, e.g. with
            ``minidisc finetune``), or an unknown importance method. ModelError: from loading, or an untrained head
            without ``allow_untrained_head``. DataError: from loading the data.
        RunExistsError: ``output`` holds another run and ``overwrite`` is False, or is
            not a minidisc run (never replaced).
    """
    # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
    from minidisc.schedules.stages import MapShape, sparsify_stage

    shape = shape or MapShape()
    check_importance(importance)
    source = resolve_model(teacher)
    if source.gguf_file:  # sparsify_stage loads a folder or hub id only
        raise ConfigError(
            f"sparsify needs a fine-tuned teacher folder, not the GGUF file {source.label}; "
            "fine-tune it first (minidisc finetune --model ... --output DIR) and pass --teacher DIR"
        )
    check_custom_data(data_cfg, seed=seed, batch_size=1)  # your own data: checked before anything is written
    configure(precision)  # an impossible precision stops here, before anything is written
    shape.check(load_config(source), levels)  # a map the teacher cannot take, likewise
    cfg = SparsifyConfig(teacher=teacher, data=data_cfg, levels=tuple(levels), batch_size=batch_size, seed=seed,
                         allow_untrained_head=allow_untrained_head, importance=importance, precision=precision,
                         layer_shapes=shape.layer_shapes, drop_layers=shape.drop_layers, align=shape.align)
    run = RunDir(output, cfg, "sparsify", overwrite=overwrite)

    def work(tmp: Path) -> dict[str, Any]:
        data = prepare_task_data(data_cfg, load_tokenizer(source), seed=seed)
        entry = sparsify_stage(source, data, levels, batch_size, tmp, seed=seed,
                               allow_untrained_head=allow_untrained_head, importance=importance, shape=shape)
        summary = {"teacher": source.label, "task": data.task.name, "levels": entry["levels"],
                   "data": data.sizes, "compute": entry["compute"], "untrained_head": entry["untrained_head"],
                   "importance": entry["importance"]}
        write_json(tmp / "sparsify.json", summary)
        return summary

    entry = run.stage("sparsify", work, main_only=True, at_root=True)  # no training: one process
    run.finish()
    return {k: entry[k] for k in ("teacher", "task", "levels", "data", "compute", "untrained_head", "importance")}


def _shape(layer_shapes: str | None, drop_layers: int, align: int) -> Any:
    """The map's shape from the options, checked in one line each.

    Raises:
        ConfigError: unknown layer shapes, dropped layers without uniform shapes, an
            alignment below 1 or one with depth shapes.
    """
    from minidisc.elastic.align import check_align
    from minidisc.elastic.spec import shape_conflict
    from minidisc.schedules.stages import MapShape

    if problem := shape_conflict(layer_shapes, drop_layers, align):
        raise ConfigError(problem)
    return MapShape(layer_shapes, drop_layers, check_align(align))


def check_importance(method: str) -> None:
    """Refuse an unknown importance method in one line.

    Raises:
        ConfigError: ``method`` is not in :data:`minidisc.elastic.estimators.METHODS`.
    """
    # lazy: the estimators pull in torch; keeps `minidisc --help` fast
    from minidisc.elastic.estimators import METHODS

    if method not in METHODS:
        raise ConfigError(f"unknown --importance {method!r}; use one of {', '.join(METHODS)}")


def _levels(grid: list[float] | None, target: float | None) -> list[float]:
    """The map's levels: the grid (default: the reference grid) ∪ {target}, validated.

    Raises:
        ConfigError: a level outside [0, 1).
    """
    return list(check_levels([*(DEFAULT_GRID if grid is None else grid), *([target] if target is not None else [])]))


def render_levels(map_path: Path) -> str:
    """One line per level: kept heads and FFN neurons, summed over layers."""
    rows = [f"{'sparsity':>8}  {'heads':>6}  {'neurons':>8}"]
    for level, spec in sorted(read_json(map_path).items(), key=lambda kv: float(kv[0])):
        rows.append(f"{float(level):>8.2f}  {sum(spec['heads']):>6}  {sum(spec['neurons']):>8}")
    return "\n".join(rows)
