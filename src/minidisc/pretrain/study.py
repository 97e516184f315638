"""The comparison table of several pretraining arms and their GLUE suites.

Reads each arm's ``report.json`` (``minidisc pretrain``) and, if given, the
``glue_suite.json`` of ``minidisc finetune --glue-suite`` on its student, and renders one
markdown table (and a JSON list of rows)::

    python -m minidisc.pretrain.study \\
        "equal FLOPs=runs/study/flops/scratch,runs/study/glue/flops_scratch" \\
        "equal FLOPs=runs/study/flops/kd,runs/study/glue/flops_kd" \\
        --markdown table.md --json table.json
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from minidisc.errors import DataError
from minidisc.fileio import read_json, write_json, write_text
from minidisc.pretrain.plots import plot_loss_curves


def study_row(setting: str, run_dir: str | Path, glue_dir: str | Path | None = None) -> dict[str, Any]:
    """One table row: the arm's budget, compute split, data, held-out loss, GLUE dev scores
    (fractions; ``None`` without a suite).

    Raises:
        DataError: a report or suite file is missing.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "report.json").is_file():
        raise DataError(f"{run_dir} has no report.json (is it a finished minidisc pretrain run?)")
    r = read_json(run_dir / "report.json")
    c = r["compute"]
    row: dict[str, Any] = {
        "setting": setting,
        "arm": r["strategy"],
        "run": str(run_dir),
        "budget": f"{r['budget']['value']:.3g} {r['budget']['kind']}",
        "train_flops": c["train_flops"],
        "teacher_share": c["teacher_share"],
        "tokens": c["tokens"],
        "epochs": c["epochs"],
        "steps": c["steps"],
        "wall_time_s": c["wall_time_s"],
        "teacher_time_s": c["teacher_time_s"],
        "heldout_loss": r["heldout"]["final_loss"],
        "lm_type": r.get("lm_type", "masked_lm"),
        "mlm_head_trained": r["heldout"]["mlm_head_trained"],
        "seed": r["optim"]["seed"],
        "glue": None,
    }
    if glue_dir is not None:
        suite_file = Path(glue_dir) / "glue_suite.json"
        if not suite_file.is_file():
            raise DataError(f"{glue_dir} has no glue_suite.json (run minidisc finetune --glue-suite first)")
        suite = read_json(suite_file)
        row["glue"] = {task: v["dev"] for task, v in suite["tasks"].items()}
        row["glue_average"] = suite["average"]
        row["glue_seed"] = suite["settings"]["train"]["seed"]
    return row


def render_study(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table: one row per arm; GLUE columns are dev ``main`` metrics in percent
    (SST-2 accuracy, MRPC mean of accuracy and F1, CoLA Matthews correlation)."""
    tasks: list[str] = []
    for row in rows:
        for task in row["glue"] or {}:
            if task not in tasks:
                tasks.append(task)
    loss_names = sorted({"causal-LM" if row.get("lm_type") == "causal_lm" else "MLM" for row in rows})
    head = ["setting", "arm", "train FLOPs", "teacher FLOPs share", "tokens", "epochs", "steps",
            "wall s (teacher s)", f"held-out {'/'.join(loss_names)} loss", *tasks, *(["GLUE avg"] if tasks else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        loss = f"{row['heldout_loss']:.3f}" + ("" if row["mlm_head_trained"] else " †")
        cells = [
            row["setting"], row["arm"], f"{row['train_flops']:.3g}", f"{100 * row['teacher_share']:.0f} %",
            f"{row['tokens']:,}", f"{row['epochs']:.2f}", str(row["steps"]),
            f"{row['wall_time_s']:.0f} ({row['teacher_time_s']:.0f})", loss,
        ]
        glue = row["glue"] or {}
        cells += [f"{100 * glue[t]['main']:.1f}" if t in glue else "–" for t in tasks]
        if tasks:
            cells.append(f"{100 * row['glue_average']:.1f}" if row["glue"] else "–")
        lines.append("| " + " | ".join(cells) + " |")
    if any(not row["mlm_head_trained"] for row in rows):
        lines += ["", ("† the objective has no MLM/logit term: the student's MLM head is never trained, "
                       "so its MLM loss is not comparable.")]
    return "\n".join(lines) + "\n"


def plot_study(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Held-out MLM loss curves of every arm against training FLOPs and tokens (arms whose
    MLM head is untrained are left out: their MLM loss is not comparable)."""
    curves = {
        f"{row['arm']} ({row['setting']})": read_json(Path(row["run"]) / "report.json")["curve"]
        for row in rows
        if row["mlm_head_trained"]
    }
    plot_loss_curves(curves, path)


def parse_spec(spec: str) -> tuple[str, str, str | None]:
    """``"SETTING=RUN_DIR[,GLUE_DIR]"`` → ``(setting, run_dir, glue_dir or None)`` (the
    last ``=`` separates, so a setting may contain ``=``)."""
    setting, sep, rest = spec.rpartition("=")
    if not sep or not rest or not setting.strip():
        raise DataError(f"expected SETTING=RUN_DIR[,GLUE_DIR], got {spec!r}")
    run_dir, _, glue_dir = rest.partition(",")
    return setting.strip(), run_dir.strip(), glue_dir.strip() or None


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m minidisc.pretrain.study SPEC... [--markdown F] [--json F]``."""
    parser = argparse.ArgumentParser(description="Table of minidisc pretrain arms and their GLUE suites.")
    parser.add_argument("arms", nargs="+", help="SETTING=RUN_DIR[,GLUE_DIR], one per arm")
    parser.add_argument("--markdown", type=Path, help="write the table here (default: print it)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--plot", type=Path, help="also plot the held-out loss curves (.png)")
    args = parser.parse_args(argv)
    rows = [study_row(*parse_spec(spec)) for spec in args.arms]
    text = render_study(rows)
    if args.json:
        write_json(args.json, rows)
    if args.plot:
        plot_study(rows, args.plot)
    if args.markdown:
        write_text(args.markdown, text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
