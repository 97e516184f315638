"""report.json / report.md / compare.png of ``minidisc compare --task lm``: one row per
arm (:mod:`minidisc.schedules.lm_compare`), read from the arms' manifests.

Per arm: the student's layers and parameters (total, non-embedding) and its actual
non-embedding sparsity; perplexity on the selection slice and on every
``--eval-corpus`` file (``minidisc evaluate-lm``'s protocol); training tokens, training
FLOPs (student 3× forward + teacher forwards) and wall time of its distillation stages
(the from-scratch arm: of its training); the cost multiple of one direct-KD run
(:func:`minidisc.report.compare.add_multiples`, the GLUE comparison's). Importance
calibration is listed apart (``preparation_flops``), as the GLUE table leaves the shared
preparation out. The plot is the GLUE comparison's (:func:`plot_against_cost`) with
perplexity on a log axis. With the ``maxidisc`` arm, the assistant-student correlation
of the GLUE comparison follows (its table and ``correlation.png``), on ``m``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.fileio import read_json, write_json, write_text
from minidisc.report.compare import (
    SCHEDULE_TITLES,
    add_multiples,
    correlation_markdown,
    correlation_summary,
    plot_against_cost,
    plot_correlation,
)
from minidisc.training.records import distillation_compute, iteration_names
from minidisc.training.selection import tradeoff

#: One line per arm of ``compare --task lm`` (:data:`minidisc.schedules.lm_compare_config.LM_ARMS`).
LM_ARM_DESCRIPTIONS: dict[str, str] = {
    "direct": "prune the teacher to the target by importance, distil at the final stage's token budget",
    "depth": "drop the layers of least block importance (no width pruning) to about the target's non-embedding "
    "parameters, distil",
    "random": "prune to the target by random importance, distil (the importance estimator's baseline)",
    "takd": "TAKD through a fixed assistant: teacher → assistant (sandwich budget) → target (final budget)",
    "minidisc": "compress --task lm: sandwich, λ-selected assistant, final distillation",
    "maxidisc": "TAKD through every candidate assistant of MiniDisc's first iteration, the best student kept; "
    "the selection check (Spearman correlation of λ-tradeoff and student)",
    "pretrain": "the direct-KD student's shape, randomly initialised, trained on the corpus alone with as many "
    "FLOPs as the direct-KD run (minidisc pretrain --strategy scratch)",
}

if TYPE_CHECKING:
    from minidisc.runfolder.run import RunDir

SELECTION = "selection slice"  # the plot's corpus when no --eval-corpus was given


def write_lm_compare_report(run: RunDir) -> dict[str, Any]:
    """Write report.json, report.md and compare.png of a finished comparison; return the report."""
    report = build_lm_compare_report(run)
    write_json(run.path / "report.json", report)
    text = render_lm_compare_markdown(report)
    correlation = report["correlation"]
    if correlation is not None:
        target = report["target_sparsity"]
        text += "\n".join(correlation_markdown(correlation, target, metric="m = PPL_T / PPL"))
        plot_correlation(correlation, f"decoder: {100 * (1 - target):g} % student", run.path / "correlation.png")
    write_text(run.path / "report.md", text)
    plot_perplexity_vs_cost(report, run.path / "compare.png")
    return report


def build_lm_compare_report(run: RunDir) -> dict[str, Any]:
    """The report's numbers, from the comparison's manifest and its arms' run folders."""
    cfg = run.manifest["config"]
    stages = run.manifest["stages"]
    arms = [name for name in cfg["schedules"] if name in stages]
    compress_arms = [a for a in arms if a not in ("pretrain", "maxidisc")] or [
        Path(p["run"]).relative_to(run.path).as_posix() for p in stages.get("maxidisc", {}).get("paths", [])]
    first = read_json(run.path / compress_arms[0] / "manifest.json")["stages"]  # every arm has the same teacher
    teacher = first["teacher"]
    base = cfg["base"]
    correlation = None
    rows = []
    for name in arms:
        if name == "pretrain":
            rows.append(pretrain_row(stages["pretrain"]))
        elif name == "maxidisc":
            row, correlation = maxidisc_row(stages["maxidisc"], run.path, base["lam"])
            rows.append(row)
        else:
            rows.append(arm_row(name, run.path / name))
    for row in rows:
        row["sparsity"] = 1 - row["params"]["non_embedding"] / teacher["params"]["non_embedding"]
    reference = add_multiples(rows)
    return {
        "task": "lm",
        "teacher": {"source": teacher.get("source"), **{k: teacher[k] for k in ("selection", "heldout", "layers", "params",
                                                                                 "flops_per_token")}},
        "corpora": list(teacher["heldout"]),
        "data": teacher.get("data"),
        "target_sparsity": base["target_sparsity"],
        "budgets": {"sandwich_tokens": base.get("sandwich_budget_tokens") or base["budget_tokens"],
                    "final_tokens": base.get("final_budget_tokens") or base["budget_tokens"]},
        "block_size": base["corpus"]["block_size"],
        "seed": base["sandwich"]["seed"],
        "objective": {"name": base["objective"], "options": base["objective_options"]},
        "importance": base["importance"],
        "layer_shapes": base.get("layer_shapes", "uniform"),
        "schedules": arms,
        "takd_assistant": _arm_config(run, "takd").get("assistant"),
        "depth_dropped_layers": _arm_config(run, "depth").get("drop_layers"),
        "sandwich_samples": base.get("sandwich_samples"),
        "teacher_cache": base.get("teacher_cache"),
        "cost_reference": reference,
        "note": base.get("note"),
        "rows": rows,
        "correlation": correlation,
    }


def arm_row(name: str, run_path: Path) -> dict[str, Any]:
    """One row from a finished ``compress --task lm`` arm."""
    manifest = read_json(run_path / "manifest.json")
    stages = manifest["stages"]
    student = stages["student"]
    cost = distillation_compute(stages)
    prep = (stages["sparsified"].get("compute") or {}).get("train_flops", 0.0)
    return _row(name, run_path, student, cost, [stages[n]["selected"] for n in iteration_names(stages)],
                len(iteration_names(stages)), prep)


def maxidisc_row(entry: dict[str, Any], root: Path, lam: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``maxidisc`` arm's row (the best student by selection-slice ``m``; the cost of
    every path) and the assistant-student correlation
    (:func:`~minidisc.report.compare.correlation_summary`): per assistant, the ``m`` of
    TAKD's first hop, its λ-tradeoff, and the student's ``m`` (higher is better: the
    ranking of its perplexity reversed) and perplexities."""
    paths = [(p["assistant"], arm_row("maxidisc", Path(p["run"]))) for p in entry["paths"]]
    best = max((r for _, r in paths), key=lambda r: r["dev_main"])
    row = {**best, "run": str(root / "maxidisc"), "paths": [{"assistant": a, "run": r["run"]} for a, r in paths]}
    for key in ("tokens", "cost_train_flops", "teacher_forward_flops", "cost_wall_time_s", "preparation_flops",
                "training_runs"):
        row[key] = sum(r[key] for _, r in paths)
    correlation_rows = []
    for assistant, r in paths:
        first = read_json(Path(r["run"]) / "manifest.json")["stages"]["iter1"]["selected_metric"]
        correlation_rows.append({
            "sparsity": assistant, "assistant_metric": first, "tradeoff": tradeoff(first, assistant, lam),
            "student_metric": r["dev_main"], "student_perplexity": r["dev"]["perplexity"],
            "student_heldout_perplexity": {c: h["perplexity"] for c, h in r["heldout"].items()},
        })
    minidisc = root / "minidisc"
    return row, correlation_summary(correlation_rows, lam, minidisc if minidisc.is_dir() else None)


def pretrain_row(entry: dict[str, Any]) -> dict[str, Any]:
    """The from-scratch arm's row from its stage entry in the comparison's manifest."""
    c = entry["compute"]
    cost = {"train_flops": c["train_flops"], "teacher_forward_flops": c.get("teacher_flops") or 0.0,
            "tokens": c["tokens"], "wall_time_s": c["wall_time_s"]}
    row = _row("pretrain", Path(entry["run"]), entry["evaluation"], cost, [], 1, 0.0)
    row["budget_flops"] = entry["budget_flops"]
    return row


def _row(name: str, run_path: Path, evaluation: dict[str, Any], cost: dict[str, float], route: list[float],
         runs: int, prep: float) -> dict[str, Any]:
    return {
        "schedule": name,
        "run": str(run_path),
        "route": route,
        "layers": evaluation["layers"],
        "params": evaluation["params"],
        "flops_per_token": evaluation["flops_per_token"],
        "dev": evaluation["selection"],
        "dev_main": evaluation["selection"]["main"],
        "heldout": {c: {k: h[k] for k in ("perplexity", "bits_per_byte", "tokens")} for c, h in evaluation["heldout"].items()},
        "continuation": evaluation.get("continuation"),
        "tokens": int(cost["tokens"]),
        "cost_train_flops": cost["train_flops"],
        "teacher_forward_flops": cost["teacher_forward_flops"],
        "cost_wall_time_s": cost["wall_time_s"],
        "preparation_flops": prep,
        "training_runs": runs,
        "own_estimate_multiple": None,  # every comparison with pretrain has a measured direct-KD row
    }


def _arm_config(run: RunDir, name: str) -> dict[str, Any]:
    path = run.path / name / "manifest.json"
    return read_json(path)["config"] if path.is_file() else {}


def render_lm_compare_markdown(r: dict[str, Any]) -> str:
    """The table, the setup and the plot as markdown."""
    corpora = r["corpora"]
    t = r["teacher"]
    d = r["data"] or {}
    lines = [
        (f"# Decoder compression baselines: {100 * (1 - r['target_sparsity']):g} % student "
        f"({100 * r['target_sparsity']:g} % of the non-embedding parameters removed)"),
        "",
        f"- teacher: {t['source']} ({t['params']['non_embedding'] / 1e6:.2f}M non-embedding parameters, {t['layers']} layers)",
        (f"- training text: {d.get('data_source')} (blocks of {r['block_size']} tokens; the selection slice, "
        f"{d.get('selection_blocks')} blocks, is held out of training), seed {r['seed']}"),
        (f"- token budget per distillation stage: sandwich {r['budgets']['sandwich_tokens']}, final "
        f"{r['budgets']['final_tokens']}; distillation loss {r['objective']['name']} {r['objective']['options']}; "
        f"importance {r['importance']}; layer shapes {r['layer_shapes']}"),
        f"- cost multiple reference: {r['cost_reference']}",
    ]
    if r.get("note"):
        lines.append(f"- note: {r['note']}")
    head = "| method | route (sparsities %) | layers | non-emb. params | sparsity % | sel. PPL |"
    for c in corpora:
        head += f" PPL {c} |"
    head += " tokens | train FLOPs (incl. teacher) | teacher FLOPs | wall time (s) | cost multiple |"
    lines += ["", head, "|" + "---|" * (11 + len(corpora))]
    teacher = (f"| teacher | – | {t['layers']} | {t['params']['non_embedding'] / 1e6:.2f}M | 0 "
               f"| {t['selection']['perplexity']:.2f} |")
    teacher += "".join(f" {t['heldout'][c]['perplexity']:.2f} |" for c in corpora) + " – | – | – | – | – |"
    lines.append(teacher)
    for row in r["rows"]:
        route = " → ".join(f"{100 * s:g}" for s in row["route"]) or "–"
        multiple = f"{row['cost_multiple']:.2f}×" if row.get("cost_multiple") is not None else "–"
        line = (f"| {SCHEDULE_TITLES[row['schedule']]} | {route} | {row['layers']} "
                f"| {row['params']['non_embedding'] / 1e6:.2f}M | {100 * row['sparsity']:.1f} "
                f"| {row['dev']['perplexity']:.2f} |")
        line += "".join(f" {row['heldout'][c]['perplexity']:.2f} |" for c in corpora)
        line += (f" {row['tokens']} | {row['cost_train_flops']:.3e} | {row['teacher_forward_flops']:.3e} "
                 f"| {row['cost_wall_time_s']:.1f} | {multiple} |")
        lines.append(line)
    lines += [
        "",
        ("Perplexity: the selection slice (held out of the training text; what MiniDisc selects on) and each "
         "--eval-corpus file by `minidisc evaluate-lm`'s protocol. Cost: training FLOPs of the distillation stages "
         "(student forward + backward = 3× forward, every trained sub-network, plus the teacher's forward passes; "
         "the from-scratch arm: its training), nominal (teacher-cache hits counted as computed). Importance "
         "calibration (report.json: preparation_flops) and evaluations are left out, as in the GLUE comparison."),
        "",
        "## Arms",
        "",
    ]
    for row in r["rows"]:
        extra = ""
        if row["schedule"] == "takd" and r.get("takd_assistant") is not None:
            extra = f" (assistant {100 * r['takd_assistant']:g} % sparse)"
        elif row["schedule"] == "depth" and r.get("depth_dropped_layers") is not None:
            extra = f" ({r['depth_dropped_layers']} layers dropped)"
        elif row["schedule"] == "pretrain":
            extra = f" (budget {row['budget_flops']:.3e} FLOPs)"
        elif row["schedule"] == "minidisc" and r.get("sandwich_samples") is not None:
            extra = f" (sandwich rule: the least and the most sparse candidate and {r['sandwich_samples']} more per step)"
        lines.append(f"- **{SCHEDULE_TITLES[row['schedule']]}**{extra}: {LM_ARM_DESCRIPTIONS[row['schedule']]}")
    lines += ["", "![perplexity against cost](compare.png)", ""]
    return "\n".join(lines)


def plot_perplexity_vs_cost(r: dict[str, Any], path: Path) -> None:
    """Student perplexity (the first --eval-corpus file, else the selection slice)
    against cost, one point per arm; the teacher's perplexity dotted."""
    corpus = r["corpora"][0] if r["corpora"] else None
    ppl = (lambda m: m["heldout"][corpus]["perplexity"]) if corpus else (lambda m: m["selection"]["perplexity"])
    points = [(SCHEDULE_TITLES[row["schedule"]], row.get("cost_multiple") or row["cost_train_flops"],
               ppl({**row, "selection": row["dev"]})) for row in r["rows"]]
    teacher = ppl(r["teacher"])
    values = [p[2] for p in points] + [teacher]
    title = f"decoder, {100 * (1 - r['target_sparsity']):g} % student"
    # a log axis once the arms differ by a factor of 3 or more (a model from scratch can be far off)
    plot_against_cost(points, teacher, f"perplexity ({corpus or SELECTION})", title, path,
                      log_y=max(values) / min(values) >= 3)
