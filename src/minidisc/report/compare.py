"""Reports of the schedules' costs: the baseline schedules' reports, the cost section
of a MiniDisc report, and the paper-style comparison table and plot.

Cost figures come from the manifests (``manifest["cost"]``, see
:mod:`minidisc.schedules.cost`): *cost* is nominal (what the schedule needs; teacher
cache hits and reused stages counted in full), *spent* is what the run computed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.compute.flops import non_embedding_params, paper_flops
from minidisc.elastic.levels import same_level
from minidisc.fileio import atomic_path, read_json, write_json, write_text
from minidisc.tasks.custom import describe_record
from minidisc.training.records import HopRecord, IterationRecord, StudentRecord, iterations
from minidisc.training.selection import tradeoff

if TYPE_CHECKING:
    from minidisc.runfolder.run import RunDir

SEQ_LEN = 128  # the paper's FLOPs column: non-embedding params × 128 tokens


def model_size(model_dir: Path) -> dict[str, Any]:
    """Non-embedding parameters and the paper's FLOPs (per 128 tokens) of a saved model."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    recorded = getattr(config, "minidisc_subnet", None) or {}
    return {
        "sparsity": recorded.get("sparsity"),
        "layers": config.num_hidden_layers,
        "non_embedding_params": non_embedding_params(config),
        "flops_per_128_tokens": paper_flops(config, seq_len=SEQ_LEN),
    }


# --- one schedule --------------------------------------------------------------------------


def test_entry(metrics: dict[str, float] | None) -> dict[str, Any]:
    """``{"test": metrics}`` with held-out test metrics (``--test-file``), else nothing
    (reports without test data read as before)."""
    return {"test": metrics} if metrics else {}


def build_schedule_report(run: RunDir) -> dict[str, Any]:
    """The numbers of a direct / TAKD / MaxiDisc run, from its manifest and files."""
    manifest = run.manifest
    cfg, stages = manifest["config"], manifest["stages"]
    hops = []
    for name, st in stages.items():
        if name.startswith("hop-"):
            hop = HopRecord.from_dict(st)
            hops.append({"stage": name, "teacher": hop.teacher, "level": hop.level.to_dict(), "dev_main": hop.dev_main,
                         "reused_from": st.get("reused_from")})
    paths = [
        {**p, "dev_main": HopRecord.from_dict(stages[p["final"]]).dev_main} for p in manifest.get("paths", [])
    ]
    student = StudentRecord.from_dict(stages["student"])
    return {
        "command": manifest["command"],
        "task": cfg["data"]["task"],
        "objective": {"name": cfg["objective"], "options": cfg["objective_options"]},
        "teacher": {**model_size(run.path / "teacher"), "source": stages["teacher"].get("source"),
                    "dev": stages["teacher"]["dev"], **test_entry(stages["teacher"].get("test"))},
        "student": {**model_size(run.path / "student"), "dev": student.dev, **test_entry(student.test), "from": student.source,
                    "loads_with_plain_transformers": student.plain_hf_loadable},
        "hops": hops,
        "paths": paths,
        "data": stages["teacher"].get("data"),
        # hops' metrics are on the set that chose their checkpoints (runs from before: dev)
        "select_on": cfg.get("select_on", "dev"),
        "train": cfg["train"],
        "cost": manifest.get("cost"),
        "note": cfg.get("note"),
    }


DEFAULT_LAMBDA = 0.2  # MiniDisc's default λ, for the correlation section of a MaxiDisc report


def write_schedule_report(run: RunDir) -> None:
    """report.json and report.md of a baseline schedule run; a MaxiDisc run also gets
    the assistant-student correlation (λ = 0.2) and correlation.png."""
    report = build_schedule_report(run)
    text = render_schedule_markdown(report)
    if report["command"] == "maxidisc":
        correlation = assistant_student_correlation(run.path, None, DEFAULT_LAMBDA)
        report["correlation"] = correlation
        if correlation is not None:
            target = run.manifest["config"]["target_sparsity"]
            plot_correlation(correlation, f"{report['task']}: {100 * (1 - target):g} % student", run.path / "correlation.png")
            text += "\n" + "\n".join(correlation_markdown(correlation, target))
    write_json(run.path / "report.json", report)
    write_text(run.path / "report.md", text)


def render_schedule_markdown(r: dict[str, Any]) -> str:
    pct = lambda x: f"{100 * x:.2f}"
    names = {"distill": "Direct KD", "takd": "TAKD", "maxidisc": "MaxiDisc"}
    lines = [f"# {names.get(r['command'], r['command'])} report: {r['task']}", ""]
    d = r.get("data") or {}
    lines += [
        f"- teacher: {r['teacher']['source']} (dev main {pct(r['teacher']['dev']['main'])} %)",
        f"- objective: {r['objective']['name']} {r['objective']['options'] or ''}".rstrip(),
        f"- data: {d.get('train_examples')} training / {d.get('dev_examples')} dev"
        + (f" / {d['test_examples']} test" if d.get("test_examples") is not None else "") + " examples"
        + (" (subsampled)" if d.get("subsampled") else ""),
        *([f"- your data: {describe_record(d['custom'])}"] if d.get("custom") else []),
        (f"- student: {_describe_size(r['student'])}, dev main **{pct(r['student']['dev']['main'])} %** "
         f"(from {r['student']['from']})"),
    ]
    for name in ("teacher", "student"):
        if r[name].get("test"):
            lines.append(f"- {name} test main (held-out test data, evaluated once at the end): "
                         f"{pct(r[name]['test']['main'])} %")
    if r.get("note"):
        lines.append(f"- note: {r['note']}")
    split = r.get("select_on", "dev")
    if split == "slice":
        lines.append(f"- checkpoints and the best path chosen on the selection slice ({d.get('selection_examples')} "
                     "training examples held out before anything trained); the student's dev figure is measured after")
    lines += ["", "## Paths", "", f"| path | final {split} main % |", "|---|---|"]
    for p in r["paths"]:
        chain = " → ".join(_level_label(lv) for lv in p["path"])
        lines.append(f"| teacher → {chain} | {pct(p['dev_main'])} |")
    lines += ["", "## Hops", "", f"| stage | teacher | {split} main % | reused |", "|---|---|---|---|"]
    for h in r["hops"]:
        lines.append(f"| {h['stage']} | {h['teacher']} | {pct(h['dev_main'])} | {'yes' if h['reused_from'] else ''} |")
    lines += ["", *cost_markdown(r["cost"])]
    return "\n".join(lines) + "\n"


def _level_label(level: dict[str, Any]) -> str:
    if level.get("sparsity") is not None:
        return f"{100 * level['sparsity']:g} % sparse"
    return f"layers {level['layers']}"


def _describe_size(m: dict[str, Any]) -> str:
    size = f"{m['non_embedding_params'] / 1e6:.2f}M non-emb. params, {m['flops_per_128_tokens'] / 1e9:.3f}G FLOPs/128 tok"
    if m.get("sparsity") is not None:
        return f"{100 * m['sparsity']:g} % sparse ({size})"
    return f"{m['layers']} layers ({size})"


# --- the cost section, shared by every schedule's report ---------------------------------


def cost_markdown(cost: dict[str, Any] | None) -> list[str]:
    """Markdown lines: per-stage FLOPs, tokens, wall time; totals; the cost multiple."""
    if not cost:
        return []
    lines = [
        "## Cost",
        "",
        ("Training FLOPs = student training (3 × forward, every trained sub-network) + teacher forward passes. "
         "*Nominal*: teacher-cache hits and reused stages counted as computed (what the schedule needs); "
         "*spent*: what this run computed."),
        "",
        "| stage | train FLOPs | student FLOPs | teacher FLOPs | tokens | wall time (s) | cache hits | reused |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, st in cost["per_stage"].items():
        cache = st.get("teacher_cache") or {}
        lines.append(
            f"| {name} | {st['train_flops']:.3e} | {st['student_train_flops']:.3e} | {st['teacher_forward_flops']:.3e} "
            f"| {st['tokens']} | {(st.get('stage_wall_time_s') or 0):.1f} | {cache.get('hits', '–')} | {'yes' if st['reused'] else ''} |"
        )
    total, spent, prep = cost["total"], cost["spent"], cost["preparation"]
    lines += [
        (f"| **total (nominal)** | **{total['train_flops']:.3e}** | {total['student_train_flops']:.3e} "
         f"| {total['teacher_forward_flops']:.3e} | {total['tokens']} | {total['wall_time_s']:.1f} | | |"),
        (f"| spent in this run | {spent['train_flops']:.3e} | {spent['student_train_flops']:.3e} "
         f"| {spent['teacher_forward_flops']:.3e} | {spent['tokens']} | {spent['wall_time_s']:.1f} | | |"),
        "",
        f"- training runs (distillation stages): {cost['training_runs']}",
        f"- shared preparation (teacher fine-tuning + importance), not included: {prep['train_flops']:.3e} FLOPs",
    ]
    ref = cost.get("direct_kd")
    if ref and cost.get("multiple") is not None:
        lines.append(
            f"- cost multiple: **{cost['multiple']:.2f}×** one direct-KD run to the same target "
            f"({ref['train_flops']:.3e} FLOPs; {ref['source']})"
        )
    return lines + [""]


# --- a comparison ------------------------------------------------------------------------------

SCHEDULE_TITLES = {"direct": "Direct KD", "takd": "TA (TAKD)", "maxidisc": "MaxiDisc", "minidisc": "MiniDisc",
                   # the decoder arms (compare --task lm)
                   "depth": "Depth pruning + KD", "random": "Random importance + KD", "pretrain": "From scratch"}


def schedule_row(name: str, run_path: Path) -> dict[str, Any]:
    """One row of the comparison from a finished schedule run."""
    manifest = read_json(run_path / "manifest.json")
    stages, cost = manifest["stages"], manifest["cost"]
    student = StudentRecord.from_dict(stages["student"])
    if name == "minidisc":
        route = [it.selected for it in iterations(stages)]
    else:
        best = student.source or ""
        route = [float(x[1:]) for x in best.removeprefix("hop-").split("-") if x.startswith("s")]
    return {
        "schedule": name,
        "run": str(run_path),
        "route": route,
        "student": model_size(run_path / "student"),
        "dev": student.dev,
        "dev_main": student.dev["main"],
        **({"test_main": student.test["main"]} if student.test else {}),
        "cost_train_flops": cost["total"]["train_flops"],
        "spent_train_flops": cost["spent"]["train_flops"],
        "cost_wall_time_s": cost["total"]["wall_time_s"],
        "training_runs": cost["training_runs"],
        "own_estimate_multiple": cost.get("multiple"),
        "teacher_dev_main": stages["teacher"]["dev"]["main"],
    }


def add_multiples(rows: list[dict[str, Any]]) -> str:
    """Set each row's ``cost_multiple``: against the measured direct-KD row when there is
    one, else each run's own estimate. Returns which reference was used."""
    direct = next((r for r in rows if r["schedule"] == "direct"), None)
    for row in rows:
        if direct is not None:
            row["cost_multiple"] = row["cost_train_flops"] / direct["cost_train_flops"]
        else:
            row["cost_multiple"] = row["own_estimate_multiple"]
    return "measured (this comparison's direct-KD run)" if direct else "estimated per run (no direct-KD run compared)"


def write_compare_report(
    out: Path, info: dict[str, Any], rows: list[dict[str, Any]], correlation: dict[str, Any] | None = None
) -> dict[str, Any]:
    """report.json, report.md and compare.png (and, with a MaxiDisc run, the
    assistant-student correlation and correlation.png) of a comparison."""
    reference = add_multiples(rows)
    report = {**info, "cost_reference": reference, "rows": rows, "correlation": correlation}
    write_json(out / "report.json", report)
    text = render_compare_markdown(report)
    if correlation is not None:
        plot_correlation(correlation, f"{info['task']}: {100 * (1 - info['target_sparsity']):g} % student", out / "correlation.png")
        text += "\n" + "\n".join(correlation_markdown(correlation, info["target_sparsity"]))
    write_text(out / "report.md", text)
    plot_metric_vs_cost(rows, info, out / "compare.png")
    return report


def render_compare_markdown(r: dict[str, Any]) -> str:
    pct = lambda x: f"{100 * x:.2f}"
    target = r["target_sparsity"]
    lines = [
        f"# Schedule comparison: {r['task']}, {100 * (1 - target):g} % student ({100 * target:g} % sparse)",
        "",
        f"- teacher dev {r['metric']}: {pct(r['teacher_dev_main'])} % ({r['teacher_flops_per_128_tokens'] / 1e9:.3f}G FLOPs/128 tok)",
        f"- data: {r['data'].get('train_examples')} training / {r['data'].get('dev_examples')} dev examples"
        + (" (subsampled)" if r["data"].get("subsampled") else ""),
        f"- seed {r['seed']}; every distillation stage: {r['train_summary']}",
        *([(f"- every method chose on the selection slice ({r['data'].get('selection_examples')} training examples "
            "held out before the teacher trained); the dev figures are a clean report")]
          if r.get("select_on") == "slice" else []),
        f"- cost multiple reference: {r['cost_reference']}",
        "",
        f"| method | route (sparsities) | FLOPs/128 tok | dev {r['metric']} % | cost (train FLOPs) | cost multiple | training runs | spent here |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        route = " → ".join(f"{100 * s:g}" for s in row["route"]) or "–"
        multiple = f"{row['cost_multiple']:.2f}×" if row.get("cost_multiple") is not None else "–"
        lines.append(
            f"| {SCHEDULE_TITLES[row['schedule']]} | {route} | {row['student']['flops_per_128_tokens'] / 1e9:.3f}G "
            f"| {pct(row['dev_main'])} | {row['cost_train_flops']:.3e} | {multiple} | {row['training_runs']} "
            f"| {row['spent_train_flops']:.3e} |"
        )
    tested = [row for row in r["rows"] if row.get("test_main") is not None]
    if tested:  # held-out test data: evaluated once per student, after selection on dev
        lines += ["", f"Held-out test {r['metric']} % (evaluated once at the end, never used for selection): "
                  + ", ".join(f"{SCHEDULE_TITLES[row['schedule']]} {pct(row['test_main'])}" for row in tested)]
    lines += [
        "",
        ("Cost = student training + teacher forward FLOPs of the schedule's distillation stages (nominal: "
         "teacher-cache hits and stages reused from other runs counted as computed); teacher fine-tuning and "
         "sparsification are shared and excluded, as in the paper's cost column. *Spent here* is what this "
         "comparison actually computed."),
        "",
        "![student metric against cost](compare.png)",
        "",
    ]
    return "\n".join(lines)


def plot_metric_vs_cost(rows: list[dict[str, Any]], info: dict[str, Any], path: Path) -> None:
    """Student dev metric (%) against cost multiple (log scale), one point per schedule."""
    points = [(SCHEDULE_TITLES[r["schedule"]], r.get("cost_multiple") or r["cost_train_flops"], 100 * r["dev_main"])
              for r in rows]
    plot_against_cost(points, 100 * info["teacher_dev_main"], f"student dev {info['metric']} (%)",
                      f"{info['task']}: {100 * (1 - info['target_sparsity']):g} % student", path)


def plot_against_cost(
    points: list[tuple[str, float, float]], teacher: float | None, ylabel: str, title: str, path: Path, *,
    log_y: bool = False,
) -> None:
    """One labelled point per method, ``(label, cost, value)``, cost on a log axis (a
    multiple of one direct-KD run), and the teacher's value as a dotted line; the
    comparison plot of GLUE (dev metric) and of decoders (perplexity, ``log_y``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, x, y in points:
        ax.scatter([x], [y], s=60, label=label, zorder=3)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    if teacher is not None:
        ax.axhline(teacher, color="grey", linestyle=":", label="teacher")
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("cost (multiples of one direct-KD run)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


# --- the assistant-student correlation (MiniDisc paper, figure on MRPC) -------------------


def assistant_student_correlation(maxidisc_dir: Path, minidisc_dir: Path | None, lam: float) -> dict[str, Any] | None:
    """Per candidate assistant sparsity: the assistant's dev metric (its MaxiDisc first hop
    teacher → assistant), the student's (assistant → target), the λ-tradeoff
    ``m + λ·s``, and the Spearman correlation between tradeoff and student metric.

    When the MiniDisc run is given, the same is computed with the assistants' metrics as
    MiniDisc sees them (best dev metric of each candidate in its sandwich iteration 1),
    i.e. the numbers its selection actually uses. Returns None without single-assistant
    paths.
    """
    manifest = read_json(maxidisc_dir / "manifest.json")
    stages = manifest["stages"]
    rows = []
    for p in manifest.get("paths", []):
        levels = [lv["sparsity"] for lv in p["path"]]
        if len(levels) != 2:
            continue
        first = HopRecord.from_dict(stages["hop-" + f"s{levels[0]:g}"])
        rows.append({"sparsity": levels[0], "assistant_metric": first.dev_main,
                     "student_metric": HopRecord.from_dict(stages[p["final"]]).dev_main,
                     "tradeoff": tradeoff(first.dev_main, levels[0], lam)})
    if not rows:
        return None
    return correlation_summary(rows, lam, minidisc_dir)


def correlation_summary(rows: list[dict[str, Any]], lam: float, minidisc_dir: Path | None = None) -> dict[str, Any]:
    """The Spearman correlations of per-assistant ``rows`` (``sparsity``,
    ``assistant_metric``, ``student_metric``, ``tradeoff``; higher metrics are better):
    tradeoff and assistant metric against the student's, where the best student and the
    tradeoff's peak are; with a MiniDisc run, the same with the assistants' metrics in
    its sandwich iteration 1 (what its selection used). Shared by the GLUE (MaxiDisc
    run) and the decoder (``compare --task lm``) comparisons."""
    from scipy.stats import spearmanr

    rows.sort(key=lambda r: r["sparsity"])

    def rho(xs: list[float], ys: list[float], p_value: bool = False) -> float | None:
        if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
            return None
        test = spearmanr(xs, ys)
        return float(test.pvalue if p_value else test.statistic)

    students = [r["student_metric"] for r in rows]
    tradeoffs = [r["tradeoff"] for r in rows]
    result: dict[str, Any] = {
        "lambda": lam, "rows": rows,
        "spearman_tradeoff_vs_student": rho(tradeoffs, students),
        "spearman_tradeoff_vs_student_p": rho(tradeoffs, students, p_value=True),
        "spearman_assistant_metric_vs_student": rho([r["assistant_metric"] for r in rows], students),
        "best_student_at": max(rows, key=lambda r: r["student_metric"])["sparsity"],
        "max_tradeoff_at": max(rows, key=lambda r: r["tradeoff"])["sparsity"],
    }
    if minidisc_dir is not None and (minidisc_dir / "manifest.json").is_file():
        entry = read_json(minidisc_dir / "manifest.json")["stages"].get("iter1")
        if entry:
            iter1 = IterationRecord.from_dict(entry)
            for r in rows:
                m = next((c.selection_metric for c in iter1.candidates if same_level(c.sparsity, r["sparsity"])), None)
                r["sandwich_metric"] = m
                r["sandwich_tradeoff"] = None if m is None else tradeoff(m, r["sparsity"], lam)
            paired = [r for r in rows if r.get("sandwich_tradeoff") is not None]
            result["spearman_sandwich_tradeoff_vs_student"] = rho(
                [r["sandwich_tradeoff"] for r in paired], [r["student_metric"] for r in paired])
            result["minidisc_selected"] = iter1.selected
    return result


def plot_correlation(result: dict[str, Any], title: str, path: Path) -> None:
    """Assistant metric, student metric and λ-tradeoff against assistant sparsity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    xs = [100 * r["sparsity"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [100 * r["assistant_metric"] for r in rows], "o-", label="assistant (TAKD first hop)")
    ax.plot(xs, [100 * r["tradeoff"] for r in rows], "s--", label=f"λ-tradeoff (λ={result['lambda']:g})")
    if any(r.get("sandwich_metric") is not None for r in rows):
        ax.plot(xs, [100 * r["sandwich_metric"] if r.get("sandwich_metric") is not None else float("nan") for r in rows],
                "^:", label="assistant in MiniDisc's sandwich")
    ax.set_xlabel("assistant sparsity (%)")
    ax.set_ylabel("assistant metric / tradeoff (%)")
    ax2 = ax.twinx()
    ax2.plot(xs, [100 * r["student_metric"] for r in rows], "D-", color="tab:red", label="student from it")
    ax2.set_ylabel("student metric (%)", color="tab:red")
    rho = result.get("spearman_tradeoff_vs_student")
    ax.set_title(title + (f"  (Spearman ρ tradeoff–student = {rho:.2f})" if rho is not None else ""), fontsize=9)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def correlation_markdown(result: dict[str, Any], target: float, metric: str = "dev") -> list[str]:
    """Markdown of :func:`correlation_summary`'s result; ``metric`` names the metric in
    the headers (×100, as a percentage)."""
    pct = lambda x: "–" if x is None else f"{100 * x:.2f}"
    fmt = lambda x: "–" if x is None else f"{x:.2f}"
    lines = [
        f"## Assistant-student correlation ({100 * target:g} % sparse student)",
        "",
        f"| assistant sparsity % | assistant {metric} % | λ-tradeoff % | in MiniDisc's sandwich % | student {metric} % |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {100 * r['sparsity']:g} | {pct(r['assistant_metric'])} | {pct(r['tradeoff'])} "
                     f"| {pct(r.get('sandwich_metric'))} | {pct(r['student_metric'])} |")
    lines += [
        "",
        f"- Spearman ρ(λ-tradeoff, student): **{fmt(result['spearman_tradeoff_vs_student'])}** "
        f"(p = {fmt(result.get('spearman_tradeoff_vs_student_p'))}, {len(result['rows'])} assistants); "
        f"ρ(assistant metric, student): {fmt(result['spearman_assistant_metric_vs_student'])}"
        + (f"; ρ(sandwich tradeoff, student): {fmt(result.get('spearman_sandwich_tradeoff_vs_student'))}"
           if "spearman_sandwich_tradeoff_vs_student" in result else ""),
        f"- best student from the {100 * result['best_student_at']:g} % assistant; tradeoff peaks at "
        f"{100 * result['max_tradeoff_at']:g} %"
        + (f"; MiniDisc selected {100 * result['minidisc_selected']:g} %" if "minidisc_selected" in result else ""),
        "",
        "![assistant-student correlation](correlation.png)",
        "",
    ]
    return lines
