"""Report of a pretraining arm (report.json, report.md, loss.png) and its runs-file record.

Everything here reads the run directory's manifest only, so a finished run can be
re-reported without loading models or data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minidisc.errors import ConfigError
from minidisc.fileio import read_json, write_json, write_text
from minidisc.pretrain.plots import plot_loss_curves
from minidisc.runfolder.run import RunDir
from minidisc.runtime import stage_runtimes
from minidisc.scaling.records import RunRecord


def build_report(run: RunDir) -> dict[str, Any]:
    """The report dict of a run whose ``student`` stage is finished.

    FLOPs are floating-point operations; times are seconds; losses are nats per scored
    token on the held-out blocks (masked tokens for MLM, next-token predictions for a
    causal LM: ``lm_type``); ``epochs`` = training tokens / tokens of one pass over the
    training blocks. ``heldout.mlm_head_trained`` says whether the objective trains the
    LM head (the key keeps its name for older reports).
    """
    cfg = run.manifest["config"]
    student = run.record("student")
    teacher_stage = run.record("teacher") if run.done("teacher") else None
    arm, compute = student["arm"], dict(student["compute"])
    flops, tokens = compute["train_flops"], compute["tokens"]
    compute["teacher_share"] = compute["teacher_flops"] / flops if flops else 0.0
    compute["flops_per_token"] = flops / tokens if tokens else 0.0
    teacher = dict(arm["teacher"])
    if teacher_stage is not None:
        teacher.update(heldout_loss=teacher_stage["heldout_loss"], head_fresh=teacher_stage["head_fresh"])
    data = arm["data"]
    scored = data.get("heldout_scored_tokens", data.get("heldout_masked_tokens"))  # older runs: MLM only
    heldout = {"final_loss": student["final_loss"], "mlm_head_trained": arm["mlm_head_trained"],
               "heldout_blocks": data["heldout_blocks"], "heldout_scored_tokens": scored}
    if "heldout_masked_tokens" in data:
        heldout["heldout_masked_tokens"] = data["heldout_masked_tokens"]
    return {
        "command": "pretrain",
        "run": run.path.name,
        "strategy": arm["strategy"],
        "lm_type": arm.get("lm_type", "masked_lm"),
        "objective_name": arm.get("objective_name"),
        "objective": arm["objective"],
        "budget": {"kind": "flops" if cfg["budget"]["flops"] is not None else "tokens",
                   "value": cfg["budget"]["flops"] or cfg["budget"]["tokens"]},
        "student": arm["student"],
        "teacher": teacher,
        "head_modes": arm["head_modes"],
        "compute": compute,
        "plan": student["plan"],
        "heldout": heldout,
        "data": data,
        "optim": cfg["optim"],
        "curve": student["curve"],
        "runtime": stage_runtimes(run.manifest["stages"]),
    }


def write_report(run: RunDir) -> dict[str, Any]:
    """Write ``report.json``, ``report.md`` and ``loss.png`` into the run; return the report."""
    report = build_report(run)
    write_json(run.path / "report.json", report)
    write_text(run.path / "report.md", render_markdown(report))
    plot_loss_curve(report, run.path / "loss.png")
    return report


def _g(x: float) -> str:
    return f"{x:.3g}"


def loss_label(report: dict[str, Any]) -> str:
    """How the report's held-out loss is named: ``"MLM"`` or ``"causal-LM"``."""
    return "causal-LM" if report.get("lm_type") == "causal_lm" else "MLM"


def _attention(model: dict[str, Any]) -> str:
    kv = model.get("kv_heads")
    return f"{model['heads']} heads" + (f" ({kv} key/value heads)" if kv is not None and kv != model["heads"] else "")


def render_markdown(report: dict[str, Any]) -> str:
    """``report.md``: the arm, what it cost, where its held-out loss went."""
    c, s, t = report["compute"], report["student"], report["teacher"]
    h, budget, name = report["heldout"], report["budget"], loss_label(report)
    scored = "next-token predictions" if report.get("lm_type") == "causal_lm" else "masked tokens"
    init = (f"initialised from teacher layers {s['init_from_teacher_layers']}"
            if s["init_from_teacher_layers"] else "random init")
    student = (f"Student: {s['layers']} layers, hidden {s['hidden']}, {_attention(s)}, FFN {s['ffn']} "
               f"({s['non_embedding_params']:,} non-embedding parameters; {init}"
               f"{', encoder frozen' if s['frozen_encoder'] else ''}).")
    trained_on = (f", trained on {t['pretrain_tokens']:,} tokens" if t.get("pretrain_tokens") is not None else "")
    teacher = (f"Teacher: {t['source']} ({t['layers']} layers, hidden {t['hidden']}, {_attention(t)}, "
               f"{t['non_embedding_params']:,} non-embedding parameters{trained_on})"
               f"{'' if t['used'] else ' — used for the tokenizer and architecture only'}.")
    untrained = "" if h["mlm_head_trained"] else f" ({name} head not trained by this objective)"
    lines = [
        f"# minidisc pretrain — {report['strategy']} ({report['run']})",
        "",
        student,
        teacher,
        (f"Budget: {_g(budget['value'])} {budget['kind']}. {name} heads run on: student "
         f"{report['head_modes']['student']}, teacher {report['head_modes']['teacher']} positions."),
        "",
        "| quantity | value |",
        "|---|---|",
        f"| training FLOPs (student + teacher) | {_g(c['train_flops'])} |",
        f"| student FLOPs (3 × forward) | {_g(c['student_flops'])} |",
        f"| teacher FLOPs (1 × forward) | {_g(c['teacher_flops'])} ({100 * c['teacher_share']:.1f} %) |",
        f"| FLOPs per training token | {_g(c['flops_per_token'])} |",
        f"| tokens seen | {c['tokens']:,} |",
        f"| sequences / optimiser steps | {c['sequences']:,} / {c['steps']:,} |",
        f"| epochs over the training data | {c['epochs']:.3f} (corpus: {c['corpus_tokens']:,} tokens) |",
        (f"| wall time: total / student / teacher / held-out eval | {c['wall_time_s']:.1f} s / "
         f"{c['student_time_s']:.1f} s / {c['teacher_time_s']:.1f} s / {c['eval_time_s']:.1f} s |"),
        f"| spent exactly as planned | {'yes' if c['matches_plan'] else 'NO'} |",
        (f"| held-out {name} loss (nats, {h['heldout_scored_tokens']} {scored}) | "
         f"{h['final_loss']:.4f}{untrained} |"),
    ]
    if t.get("heldout_loss") is not None:
        lines.append(
            f"| teacher held-out {name} loss | {t['heldout_loss']:.4f}"
            + (f" ({name} head freshly initialised: not a trained teacher head)" if t.get("head_fresh") else "")
            + " |"
        )
    lines += ["", "## Held-out loss curve", "", "| step | tokens | training FLOPs | held-out loss | train loss |",
              "|---|---|---|---|---|"]
    for p in report["curve"]:
        tl = "" if p["train_loss"] is None else f"{p['train_loss']:.4f}"
        lines.append(f"| {p['step']} | {p['tokens']:,} | {_g(p['flops'])} | {p['loss']:.4f} | {tl} |")
    lines += ["", "![loss](loss.png)", ""]
    return "\n".join(lines)


def plot_loss_curve(report: dict[str, Any], path: str | Path) -> None:
    """``loss.png``: the arm's held-out LM loss against training FLOPs and tokens, with
    the teacher's held-out loss as a reference line when it was measured."""
    plot_loss_curves(
        {report["strategy"]: report["curve"]},
        path,
        reference=report["teacher"].get("heldout_loss"),
        title=f"{report['run']}: {report['budget']['kind']} budget {_g(report['budget']['value'])}",
        loss_name=loss_label(report),
    )


#: Strategies with a runs-file record: ``supervised`` (scratch) and ``distillation``
#: (vanilla KD). The distillation scaling law (Busbridge et al. 2025) models logit
#: distillation only, so objectives that add hidden-state or attention losses
#: (DistilBERT, PKD, TinyBERT, MiniLM, MiniLMv2) are not recorded.
RECORD_KINDS = {"scratch": "supervised", "kd": "distillation"}


def pretrain_tokens_of(model_dir: str | Path) -> tuple[int | None, str]:
    """Tokens a model was trained on, if it is the ``student/`` of a ``minidisc pretrain``
    run that trained every weight from a random initialisation.

    Returns:
        ``(tokens or None, how it was determined / why it is unknown)``.
    """
    model_dir = Path(model_dir)
    report_file = model_dir.parent / "report.json"
    if model_dir.name != "student" or not report_file.is_file():
        return None, "not a minidisc pretrain output: its training tokens are unknown"
    report = read_json(report_file)
    if report.get("command") != "pretrain":
        return None, f"{report_file} is not a minidisc pretrain report"
    student = report["student"]
    if student.get("frozen_encoder") or student.get("init_from_teacher_layers"):
        return None, (f"{model_dir.parent} started from another model's weights"
                      f"{' and trained only its MLM head' if student.get('frozen_encoder') else ''}: "
                      "the tokens behind those weights are unknown")
    return int(report["compute"]["tokens"]), f"training tokens of {report_file}"


def run_record(run: RunDir) -> Any:
    """The :class:`~minidisc.scaling.records.RunRecord` of a finished arm.

    ``supervised`` for scratch, ``distillation`` for vanilla KD (with the teacher's
    non-embedding parameters, its held-out loss on the same masked blocks and, where
    known, the tokens it was trained on); student parameters are non-embedding, tokens
    are training tokens seen, losses in nats. The label names the objective and its
    options (the record has no field for them).

    Raises:
        ConfigError: the arm's strategy has no record kind (:data:`RECORD_KINDS`).
    """
    report = build_report(run)
    strategy = report["strategy"]
    kind = RECORD_KINDS.get(strategy)
    if kind is None:
        raise ConfigError(unrecordable_message(strategy))
    options = run.manifest["config"].get("objective_options") or {}
    objective = strategy + (f"({', '.join(f'{k}={v}' for k, v in sorted(options.items()))})" if options else "")
    common = {
        "student_params": report["student"]["non_embedding_params"],
        "student_tokens": report["compute"]["tokens"],
        "student_loss": report["heldout"]["final_loss"],
        "label": f"objective={objective} run={run.path}",
    }
    if kind == "supervised":
        return RunRecord(kind=kind, **common)
    return RunRecord(
        kind=kind,
        teacher_params=report["teacher"]["non_embedding_params"],
        teacher_tokens=report["teacher"].get("pretrain_tokens"),
        teacher_loss=report["teacher"]["heldout_loss"],
        **common,
    )


def unrecordable_message(strategy: str) -> str:
    """Why ``strategy`` gets no runs-file record, and what to do instead."""
    if strategy in ("tinybert", "minilm", "minilmv2"):
        why = "has no MLM/logit term and leaves the MLM head untrained, so its held-out MLM loss means nothing"
    else:
        why = ("adds hidden-state losses to logit distillation, and the distillation scaling law of "
               "`minidisc scaling fit` models logit distillation only")
    return f"--log-runs: {strategy} {why}; log only {' and '.join(RECORD_KINDS)} arms (drop --log-runs here)"
