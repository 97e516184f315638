"""``minidisc finetune``: fine-tune a teacher or any student checkpoint on a task, or on a
suite of GLUE tasks (``--glue-suite sst2,mrpc,cola``) with a results table.

Any checkpoint loads with a fresh task head: a masked-LM student from ``minidisc
pretrain`` (``BertForMaskedLM``) becomes a ``BertForSequenceClassification`` whose
pooler and classifier are newly initialised.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ConfigDict

from minidisc.cli.options import (
    DataDir,
    DataFileOptions,
    LowMemory,
    MaxEval,
    MaxTrain,
    Output,
    Overwrite,
    Precision,
    Task,
    apply_low_memory,
    data_command,
    merge,
)
from minidisc.config import DataConfig, TrainConfig, WithPrecision, parse_config
from minidisc.errors import ConfigError
from minidisc.fileio import read_json, write_json, write_text
from minidisc.models import load_task_model, load_tokenizer, resolve_model
from minidisc.runfolder.run import RunDir, check_output
from minidisc.runtime import configure
from minidisc.seeding import seed_everything
from minidisc.tasks import get_task
from minidisc.tasks.custom import check_custom_data
from minidisc.training.data import prepare_task_data

if TYPE_CHECKING:
    from minidisc.models import ModelSource


class FinetuneConfig(WithPrecision):
    """What a one-task fine-tuning run directory was made with (compared on resume)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str | None
    data: DataConfig
    train: TrainConfig
    save_model: bool


class GlueSuiteConfig(WithPrecision):
    """What a GLUE-suite run directory was made with (compared on resume)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str | None
    tasks: tuple[str, ...]
    data: dict[str, Any]
    train: TrainConfig
    save_model: bool


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)


@data_command
def finetune(
    model: Annotated[str | None, typer.Option("--model", "--teacher", help="Hub id, folder (incl. minidisc students) or .gguf; default: the packaged all-MiniLM-L6-v2.")] = None,
    task: Task = None,
    output: Output = Path("runs/finetune"),
    glue_suite: Annotated[str | None, typer.Option("--glue-suite", help="Comma-separated tasks, e.g. sst2,mrpc,cola: fine-tune on each (into OUTPUT/<task>/, resumable) and write glue_suite.md/.json; replaces --task.")] = None,
    save_model: Annotated[bool, typer.Option("--save-model/--no-save-model", help="Keep the fine-tuned weights (--glue-suite: one model per task).")] = True,
    data_dir: DataDir = None,
    max_train_samples: MaxTrain = None,
    max_eval_samples: MaxEval = None,
    max_length: Annotated[int, typer.Option(help="Maximum tokens per example.")] = 128,
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 3.0,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 32,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = 5e-5,
    eval_steps: Annotated[int | None, typer.Option(help="Evaluate every N steps (default: every epoch).")] = None,
    patience: Annotated[int, typer.Option(help="Evaluations without improvement before stopping.")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 776,
    precision: Precision = None,
    low_memory: LowMemory = None,
    overwrite: Overwrite = False,
    *,
    files: DataFileOptions,
) -> Path:
    """Fine-tune a model on one task or a suite of GLUE tasks.

    One task (GLUE or CoNLL-2003, default sst2; or your own labelled files with
    --train-file or --dataset, see docs/your-data.md): keeps the best dev checkpoint; the output folder
    is the model folder (and a run directory: rerunning resumes). --glue-suite: one
    resumable fine-tuning per task and a table of the dev metrics.
    """
    own = files.data_fields(task)
    apply_low_memory(low_memory)
    data = {"data_dir": str(data_dir) if data_dir else None, "max_train_samples": max_train_samples,
            "max_eval_samples": max_eval_samples, "max_length": max_length}
    train_cfg = parse_config(TrainConfig, {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                             "eval_steps": eval_steps, "patience": patience, "seed": seed}, "the command line")
    check_output(output, overwrite)  # before any model is loaded
    if glue_suite is not None:
        if files.given():
            raise typer.BadParameter(f"--glue-suite and {files.given()[0]} exclude each other", param_hint="--glue-suite")
        tasks = parse_suite(glue_suite)
        run_glue_suite(model, tasks, output, data, train_cfg, save_model=save_model, overwrite=overwrite,
                       precision=precision or "auto")
        return output
    data_cfg = parse_config(DataConfig, merge({}, {**data, **own}), "the command line")
    result = run_finetune_task(model, data_cfg, train_cfg, output, save_model=save_model, overwrite=overwrite,
                               precision=precision or "auto")
    if result.get("head_initialised"):
        typer.echo(f"classifier head initialised: {result['head_initialised']}")
    if result.get("data", {}).get("custom"):
        from minidisc.tasks.custom import describe_record

        typer.echo(f"data: {describe_record(result['data']['custom'])}")
    typer.echo(f"dev {', '.join(f'{k} {100 * v:.2f}' for k, v in result['dev'].items())}")
    if result.get("test"):
        typer.echo(f"test {', '.join(f'{k} {100 * v:.2f}' for k, v in result['test'].items())}")
    typer.echo(f"model: {output}")
    return output


def run_finetune_task(
    model: str | None, data_cfg: DataConfig, train_cfg: TrainConfig, output: Path,
    *, save_model: bool = True, overwrite: bool = False, precision: str = "auto",
) -> dict[str, Any]:
    """Fine-tune ``model`` on one task into the run directory ``output``, which is also
    the model folder (model, tokenizer and ``finetune.json`` at its top; see
    :func:`finetune_one`). Rerunning with the same settings resumes (a no-op once done).

    Returns:
        The ``finetune.json`` content (dev metrics as fractions, data sizes, compute).

    Raises:
        RunExistsError: ``output`` holds another run and ``overwrite`` is False, or is
            not a minidisc run (never replaced).
    """
    source = resolve_model(model)  # a wrong --model fails before the run folder is made (and before torch loads)
    check_custom_data(data_cfg, seed=train_cfg.seed, batch_size=train_cfg.batch_size)  # before anything is written
    configure(precision)  # an impossible precision stops here (:mod:`minidisc.runtime`)
    cfg = FinetuneConfig(model=model, data=data_cfg, train=train_cfg, save_model=save_model, precision=precision)
    run = RunDir(output, cfg, "finetune", overwrite=overwrite)

    def work(tmp: Path) -> dict[str, Any]:
        return finetune_one(source, load_tokenizer(source), data_cfg, train_cfg, tmp, save_model=save_model)

    entry = run.stage("finetune", work, at_root=True)
    run.finish()
    return {k: v for k, v in entry.items() if k in ("model", "task", "dev", "test", "data", "compute", "head_initialised")}


def finetune_one(
    source: ModelSource, tokenizer: Any, data_cfg: DataConfig, train_cfg: TrainConfig, output: Path,
    *, save_model: bool = True, stage: str = "finetune",
) -> dict[str, Any]:
    """Fine-tune ``source`` on ``data_cfg.task`` and write into the folder ``output``:
    ``finetune.json`` (dev metrics as fractions, data sizes, compute, and
    ``head_initialised``: why the task head was newly initialised, or None), the training
    logs in ``logs/`` and, with ``save_model``, the model and tokenizer. Seeded with
    ``train_cfg.seed`` before the task head is drawn; ``stage`` names it in errors.
    Callers make the write atomic. Returns the ``finetune.json`` content.

    Raises:
        DivergenceError: training diverged (non-finite loss, gradient norm or weight).
        ModelError: the model's weights do not match its config.
    """
    import shutil

    # lazy: pulls in torch + transformers (~5 s CPU); keeps `minidisc --help` fast
    from minidisc.training.finetune import finetune as run_finetune

    data = prepare_task_data(data_cfg, tokenizer, seed=train_cfg.seed)
    output.mkdir(parents=True, exist_ok=True)
    seed_everything(train_cfg.seed)
    loaded = load_task_model(source, data.task)
    result = run_finetune(
        loaded.model, tokenizer, data.task, data.train, data.dev, train_cfg, output / "scratch",
        stage=stage, log_dir=output / "logs",
    )
    test = None
    if data.test is not None:  # held out: evaluated once, after training
        from minidisc.training.finetune import evaluate_model

        test = evaluate_model(result.model, data, train_cfg, output / "scratch", split="test")[0]
    shutil.rmtree(output / "scratch", ignore_errors=True)
    if save_model:
        result.model.save_pretrained(output)
        tokenizer.save_pretrained(output)
    summary = {"model": source.label, "task": data.task.name, "dev": result.dev_metrics,
               **({"test": test} if test is not None else {}), "data": data.sizes, "compute": result.compute.to_dict(), "head_initialised": loaded.head_initialised}
    write_json(output / "finetune.json", summary)
    return summary


# --- GLUE suite ------------------------------------------------------------------------


def parse_suite(text: str) -> list[str]:
    """``"sst2, mrpc,cola"`` → canonical task names ``["sst2", "mrpc", "cola"]``.

    Raises:
        ConfigError: unknown or repeated task, or an empty list.
    """
    names = [get_task(t.strip()).name for t in text.split(",") if t.strip()]
    if not names:
        raise ConfigError("--glue-suite needs at least one task, e.g. sst2,mrpc,cola")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--glue-suite lists {', '.join(repeated)} more than once")
    return names


def run_glue_suite(
    model: str | None, tasks: list[str], output: Path, data: dict[str, Any], train_cfg: TrainConfig,
    *, save_model: bool = True, overwrite: bool = False, precision: str = "auto",
) -> dict[str, Any]:
    """Fine-tune ``model`` on every task of ``tasks`` (one resumable stage per task in the
    run directory ``output``) and write ``glue_suite.json`` / ``glue_suite.md``.

    Args:
        model: model name or path (see :func:`minidisc.models.resolve_model`).
        tasks: canonical task names.
        data: ``data_dir``, ``max_train_samples``, ``max_eval_samples``, ``max_length``
            applied to every task.
        train_cfg: fine-tuning settings of every task.

    Returns:
        The suite summary (``tasks``: per-task dev metrics as fractions; ``average``:
        mean of the tasks' ``main`` metrics).

    Raises:
        RunExistsError: ``output`` holds another run and ``overwrite`` is False.
    """
    source = resolve_model(model)  # a wrong --model fails before the run folder is made
    configure(precision)  # an impossible precision stops here (:mod:`minidisc.runtime`)
    cfg = GlueSuiteConfig(model=model, tasks=tuple(tasks), data=data, train=train_cfg, save_model=save_model,
                          precision=precision)
    run = RunDir(output, cfg, "finetune --glue-suite", overwrite=overwrite)
    tokenizer = load_tokenizer(source)
    for name in tasks:
        data_cfg = parse_config(DataConfig, merge({}, {"task": name, **data}), "the command line")

        def work(tmp: Path, data_cfg: DataConfig = data_cfg, name: str = name) -> dict[str, Any]:
            result = finetune_one(source, tokenizer, data_cfg, train_cfg, tmp, save_model=save_model, stage=name)
            return {"dev": result["dev"]}

        entry = run.stage(name, work)
        typer.echo(f"{name}: dev {', '.join(f'{k} {100 * v:.2f}' for k, v in entry['dev'].items())}")
    results = {name: read_json(run.path / name / "finetune.json") for name in tasks}
    summary = {
        "model": source.label,
        "tasks": {name: {"dev": r["dev"], "data": r["data"]} for name, r in results.items()},
        "average": sum(r["dev"]["main"] for r in results.values()) / len(results),
        "settings": {"data": data, "train": train_cfg.model_dump(mode="json")},
    }
    write_json(run.path / "glue_suite.json", summary)
    write_text(run.path / "glue_suite.md", render_suite(summary))
    run.finish()
    typer.echo(f"average of main metrics: {100 * summary['average']:.2f}  table: {run.path / 'glue_suite.md'}")
    return summary


def render_suite(summary: dict[str, Any]) -> str:
    """Markdown table of a GLUE suite: one row per task, dev metrics in percent."""
    lines = [
        f"# GLUE suite — {summary['model']}",
        "",
        "| task | dev metrics (%) | main (%) | train / dev examples |",
        "|---|---|---|---|",
    ]
    for name, r in summary["tasks"].items():
        metrics = ", ".join(f"{k} {100 * v:.2f}" for k, v in r["dev"].items() if k != "main")
        lines.append(
            f"| {name} | {metrics} | {100 * r['dev']['main']:.2f} | "
            f"{r['data']['train_examples']} / {r['data']['dev_examples']} |"
        )
    lines += [f"| **average** | | **{100 * summary['average']:.2f}** | |", ""]
    return "\n".join(lines)
