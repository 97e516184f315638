"""report.json / report.md / tradeoff.png of a ``compress --task lm`` run, from its manifest.

Every number is read from the manifest entries the stages wrote
(:mod:`minidisc.schedules.lm`): the teacher, the assistants and the student each with
their selection-slice metrics, held-out perplexity and bits per byte per
``--eval-corpus`` file, parameters (total and non-embedding), forward FLOPs per token
and a greedy continuation of one prompt; then the iterations' candidates and
λ-tradeoffs, and tokens, FLOPs (teacher forwards included) and wall time per stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from minidisc.elastic.levels import same_level
from minidisc.fileio import write_json, write_text
from minidisc.report.compress import memory_fields, peak_lines, rss_cell, sandwich_rule_lines
from minidisc.report.plots import plot_tradeoff
from minidisc.runtime import describe_runtimes, stage_runtimes
from minidisc.training.records import iteration_names

if TYPE_CHECKING:
    from minidisc.runfolder.run import RunDir

#: What a model's entry in the report holds (copied from its stage's evaluation).
MODEL_KEYS = ("selection", "heldout", "layers", "params", "flops_per_token", "continuation")


def build_lm_report(run: RunDir) -> dict[str, Any]:
    """The report's numbers; works on an unfinished run (``teacher`` finished at least)."""
    from minidisc.report.compress import finished_stages

    cfg = run.manifest["config"]
    stages = finished_stages(run.manifest)
    teacher = stages["teacher"]
    models: list[dict[str, Any]] = [{"name": "teacher", "sparsity": 0.0, "source": teacher.get("source"),
                                     **_model(teacher)}]
    for name in iteration_names(stages):
        it = stages[name]
        evaluated = stages.get(f"assistant{it['iteration']}")
        if evaluated is not None:
            models.append({"name": f"assistant (iter {it['iteration']})", "sparsity": it["selected"],
                           **_model(evaluated["evaluation"])})
    student = stages.get("student")
    if student is not None:
        models.append({"name": "student (exported)", "sparsity": cfg["target_sparsity"], **_model(student),
                       "loads_with_plain_transformers": student.get("loads_with_plain_transformers"),
                       "tied_embeddings": student.get("tied_embeddings")})
    return {
        "task": "lm",
        "teacher_source": teacher.get("source"),
        "corpus": cfg["corpus"],
        "data": teacher.get("data"),
        "objective": cfg["objective"],
        "objective_options": cfg["objective_options"],
        "importance": cfg["importance"],
        "layer_shapes": cfg["layer_shapes"],
        "dropped_layers": stages.get("sparsified", {}).get("dropped_layers", []),
        "metric": "m = exp(L_T - L_c) = PPL_teacher / PPL_candidate on the selection slice (not clipped)",
        "prompt": cfg["prompt"],
        "models": models,
        "iterations": [{k: v for k, v in stages[n].items() if k != "outputs"} for n in iteration_names(stages)],
        "lambda": cfg["lam"],
        "target_sparsity": cfg["target_sparsity"],
        "sandwich_samples": cfg.get("sandwich_samples"),
        "note": cfg.get("note"),
        "teacher_cache": run.manifest.get("teacher_cache"),
        "wall_time_s": {name: st["wall_time_s"] for name, st in stages.items()},
        **memory_fields(stages),
        "runtime": stage_runtimes(stages),
        "compute": {name: _compute(st) for name, st in stages.items() if _compute(st)},
    }


def write_lm_report(run: RunDir) -> None:
    """Write report.json, report.md and (once an iteration finished) tradeoff.png."""
    report = build_lm_report(run)
    write_json(run.path / "report.json", report)
    if report["iterations"]:
        plot_tradeoff(report["iterations"], report["lambda"], report["target_sparsity"], run.path / "tradeoff.png",
                      teacher_metric=1.0)
    write_text(run.path / "report.md", render_lm_markdown(report))


def render_lm_markdown(r: dict[str, Any]) -> str:
    """A human-readable report."""
    pct = lambda x: f"{100 * x:.2f}"
    corpora = list(r["models"][0]["heldout"]) if r["models"] else []
    d = r["data"] or {}
    lines = [
        "# MiniDisc report: decoder LM (compress --task lm)", "",
        f"- teacher: {r['teacher_source']}",
        (f"- training text: {d.get('data_source')} ({d.get('train_blocks')} blocks of {d.get('block_size')} tokens; "
         f"{d.get('selection_blocks')} blocks held out as the selection slice, {d.get('calibration_blocks')} "
         "calibration blocks for importance)"),
        (f"- distillation: {r['objective']} {r['objective_options']}; importance: {r['importance']}; "
         f"layer shapes: {r['layer_shapes']}"
         + (f"; layers dropped (least block importance, 0-based): {r['dropped_layers']}" if r.get("dropped_layers") else "")),
        f"- target sparsity {pct(r['target_sparsity'])} %, λ = {r['lambda']:g}; selection metric {r['metric']}",
    ]
    if r.get("note"):
        lines.append(f"- note: {r['note']}")
    if r.get("teacher_cache"):
        lines.append(_cache_line(r["teacher_cache"], r["iterations"]))
    head = "| model | sparsity % | layers | params (total) | non-emb. params | FLOPs / token | sel. PPL | m | next-token acc. % |"
    for c in corpora:
        head += f" PPL {c} | bits/byte {c} |"
    lines += ["", "## Models", "", head, "|" + "---|" * (9 + 2 * len(corpora))]
    for m in r["models"]:
        s = m["selection"]
        row = (f"| {m['name']} | {pct(m['sparsity'])} | {m.get('layers', '–')} | {m['params']['total'] / 1e6:.2f}M | "
               f"{m['params']['non_embedding'] / 1e6:.2f}M | {m['flops_per_token'] / 1e6:.2f}M | "
               f"{s['perplexity']:.2f} | {s['main']:.4f} | {pct(s['accuracy'])} |")
        for c in corpora:
            h = m["heldout"].get(c)
            row += f" {h['perplexity']:.2f} | {h['bits_per_byte']:.4f} |" if h else " – | – |"
        lines.append(row)
    if not any(m["name"].startswith("student") for m in r["models"]):
        lines += ["", "**Unfinished run**: the student is not exported yet; rerun the run's command to continue it."]
    if corpora:
        first = r["models"][0]["heldout"][corpora[0]]
        lines += ["", f"Held-out perplexity: `minidisc evaluate-lm`'s protocol (block {first['block_size']}, stride "
                  f"{first['stride']}" + (", first --eval-max-tokens tokens only" if first["truncated"] else "") + ")."]
    lines += ["", "## Greedy continuations", "", f"Prompt: {r['prompt']!r}", ""]
    for m in r["models"]:
        lines.append(f"- **{m['name']}**: {m['continuation']!r}")
    lines.append("")
    for it in r["iterations"]:
        lines += [f"## Iteration {it['iteration']}" + (" (final: target only)" if it["final"] else ""), ""]
        lines += sandwich_rule_lines(it, r.get("sandwich_samples"))
        lines += ["| candidate sparsity % | best m | λ-tradeoff | chosen |", "|---|---|---|---|"]
        for c in sorted(it["candidates"], key=lambda c: c["sparsity"]):
            mark = "**←**" if same_level(c["sparsity"], it["selected"]) else ""
            lines.append(f"| {pct(c['sparsity'])} | {c['best_metric']:.4f} | {c['tradeoff']:.4f} | {mark} |")
        lines.append("")
    lines += ["## Time and compute", "", f"Device and precision: {describe_runtimes(r['runtime'])}.", "",
              "| stage | wall time (s) | peak RSS (MiB) | train FLOPs (incl. teacher) | teacher FLOPs | eval FLOPs | tokens |",
              "|---|---|---|---|---|---|---|"]
    for name, secs in r["wall_time_s"].items():
        c = r["compute"].get(name) or {}
        fmt = lambda k, c=c: f"{c[k]:.3e}" if k in c else "–"
        lines.append(f"| {name} | {secs:.1f} | {rss_cell(r, name)} | {fmt('train_flops')} | {fmt('teacher_forward_flops')} | "
                     f"{fmt('eval_flops')} | {c.get('tokens', '–')} |")
    lines += peak_lines(r)
    if r["iterations"]:
        lines += ["", "![m and λ-tradeoff against sparsity](tradeoff.png)"]
    return "\n".join(lines + [""])


def _cache_line(c: dict[str, Any], iterations: list[dict[str, Any]]) -> str:
    """The report's line on the teacher-logit cache: k, disk per token, stages served."""
    served = [f"iter{it['iteration']}" for it in iterations
              if ((it.get("compute") or {}).get("teacher_cache") or {}).get("served")]
    per_token = f"{c['bytes_per_token']:.0f} bytes per token" if c.get("bytes_per_token") else "empty"
    samples = c.get("tail_samples") or 0
    tail = f"{samples} words sampled from the tail" if samples else "1 tail bucket"
    return (f"- teacher-logit cache: top-{c['top_k']} {c['dtype']} log-probabilities + {tail} at temperature "
            f"{c['temperature']:g}; {c['blocks']} blocks ({c['tokens']} tokens), {c['disk_bytes'] / 2**20:.1f} MiB on "
            f"disk = {per_token} (full float32 logits: {c['full_logits_bytes_per_token']} bytes per token); "
            f"read by: {', '.join(served) or 'no stage'} (stages distilling from an assistant run it online)")


def _model(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in MODEL_KEYS if k in entry}


def _compute(stage: dict[str, Any]) -> dict[str, Any] | None:
    if stage.get("compute"):
        return stage["compute"]
    evaluation = stage.get("evaluation")
    return evaluation.get("compute") if isinstance(evaluation, dict) else None
