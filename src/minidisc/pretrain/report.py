"""Report of a pretraining arm (report.json, report.md, loss.png) and its runs-file record.

Everything here reads the run directory's manifest only, so a finished run can be
re-reported without loading models or data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minidisc.fileio import atomic_path, write_json, write_text
from minidisc.schedules.run import RunDir


def build_report(run: RunDir) -> dict[str, Any]:
    """The report dict of a run whose ``student`` stage is finished.

    FLOPs are floating-point operations; times are seconds; losses are nats per masked
    token on the held-out blocks; ``epochs`` = training tokens / tokens of one pass over
    the training blocks.
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
    return {
        "command": "pretrain",
        "run": run.path.name,
        "strategy": arm["strategy"],
        "objective": arm["objective"],
        "budget": {"kind": "flops" if cfg["budget"]["flops"] is not None else "tokens",
                   "value": cfg["budget"]["flops"] or cfg["budget"]["tokens"]},
        "student": arm["student"],
        "teacher": teacher,
        "head_modes": arm["head_modes"],
        "compute": compute,
        "plan": student["plan"],
        "heldout": {
            "final_loss": student["final_loss"],
            "mlm_head_trained": arm["mlm_head_trained"],
            **{k: arm["data"][k] for k in ("heldout_blocks", "heldout_masked_tokens")},
        },
        "data": arm["data"],
        "optim": cfg["optim"],
        "curve": student["curve"],
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


def render_markdown(report: dict[str, Any]) -> str:
    """``report.md``: the arm, what it cost, where its held-out loss went."""
    c, s, t = report["compute"], report["student"], report["teacher"]
    h, budget = report["heldout"], report["budget"]
    init = (f"initialised from teacher layers {s['init_from_teacher_layers']}"
            if s["init_from_teacher_layers"] else "random init")
    student = (f"Student: {s['layers']} layers, hidden {s['hidden']}, {s['heads']} heads, FFN {s['ffn']} "
               f"({s['non_embedding_params']:,} non-embedding parameters; {init}"
               f"{', encoder frozen' if s['frozen_encoder'] else ''}).")
    teacher = (f"Teacher: {t['source']} ({t['layers']} layers, hidden {t['hidden']}, "
               f"{t['non_embedding_params']:,} non-embedding parameters)"
               f"{'' if t['used'] else ' — used for the tokenizer and architecture only'}.")
    untrained = "" if h["mlm_head_trained"] else " (MLM head not trained by this objective)"
    lines = [
        f"# minidisc pretrain — {report['strategy']} ({report['run']})",
        "",
        student,
        teacher,
        (f"Budget: {_g(budget['value'])} {budget['kind']}. MLM heads run on: student "
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
        (f"| held-out MLM loss (nats, {h['heldout_masked_tokens']} masked tokens) | "
         f"{h['final_loss']:.4f}{untrained} |"),
    ]
    if t.get("heldout_loss") is not None:
        lines.append(
            f"| teacher held-out MLM loss | {t['heldout_loss']:.4f}"
            + (" (MLM head freshly initialised: not a trained teacher head)" if t.get("head_fresh") else "") + " |"
        )
    lines += ["", "## Held-out loss curve", "", "| step | tokens | training FLOPs | held-out loss | train loss |",
              "|---|---|---|---|---|"]
    for p in report["curve"]:
        tl = "" if p["train_loss"] is None else f"{p['train_loss']:.4f}"
        lines.append(f"| {p['step']} | {p['tokens']:,} | {_g(p['flops'])} | {p['loss']:.4f} | {tl} |")
    lines += ["", "![loss](loss.png)", ""]
    return "\n".join(lines)


def plot_loss_curve(report: dict[str, Any], path: str | Path) -> None:
    """Held-out MLM loss against training tokens and against training FLOPs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = report["curve"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in zip(axes, ("tokens", "flops"), ("training tokens", "training FLOPs")):
        ax.plot([p[key] for p in curve], [p["loss"] for p in curve], "o-", label=report["strategy"])
        teacher_loss = report["teacher"].get("heldout_loss")
        if teacher_loss is not None:
            ax.axhline(teacher_loss, color="grey", linestyle=":", label="teacher")
        ax.set_xlabel(label)
        ax.set_ylabel("held-out MLM loss (nats)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['run']}: {report['budget']['kind']} budget {_g(report['budget']['value'])}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def run_record(run: RunDir) -> Any:
    """The :class:`~minidisc.scaling.records.RunRecord` of a finished arm.

    ``supervised`` for scratch, ``distillation`` (with the teacher's non-embedding
    parameters and held-out loss on the same masked blocks) otherwise; student
    parameters are non-embedding, tokens are training tokens seen, losses in nats.
    """
    from minidisc.scaling.records import RunRecord

    report = build_report(run)
    common = {
        "student_params": report["student"]["non_embedding_params"],
        "student_tokens": report["compute"]["tokens"],
        "student_loss": report["heldout"]["final_loss"],
        "label": f"{report['strategy']} {run.path}",
    }
    if not report["teacher"]["used"]:
        return RunRecord(kind="supervised", **common)
    return RunRecord(
        kind="distillation",
        teacher_params=report["teacher"]["non_embedding_params"],
        teacher_loss=report["teacher"]["heldout_loss"],
        **common,
    )
