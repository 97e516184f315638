"""report.json / report.md / tradeoff.png of a ``compress`` run, built from its manifest.

Besides the models, iterations and cost, the report says which set selected (the
selection slice held out of the training data, or dev: the paper's protocol) and by which
scoring rule, and flags every model at its constant-prediction score
(:mod:`minidisc.evaluation.constant`): a candidate or student that collapsed to one
output, and a teacher that learned nothing (compressing it is a wasted run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from minidisc.compute.flops import non_embedding_params, paper_flops
from minidisc.elastic.levels import find_level, same_level
from minidisc.elastic.sparsity_map import load_sparsity_map
from minidisc.evaluation.constant import at_constant_score
from minidisc.fileio import write_json, write_text
from minidisc.report.compare import cost_markdown, test_entry
from minidisc.report.plots import plot_tradeoff
from minidisc.runtime import describe_runtimes, stage_runtimes
from minidisc.tasks.custom import describe_record
from minidisc.training.records import StudentRecord, iteration_names, iterations
from minidisc.training.sandwich import trains_every_candidate
from minidisc.training.selection import DEFAULT_SCORE_WINDOW

if TYPE_CHECKING:
    from minidisc.runfolder.run import RunDir
    from minidisc.training.data import TaskData

SEQ_LEN = 128  # the paper's table counts FLOPs per 128-token sequence


def build_compress_report(run: RunDir) -> dict[str, Any]:
    """Collect the numbers a user needs from the run's manifest and saved files.

    Works on an unfinished run too (``teacher`` finished at least): the iterations
    finished so far, and ``student`` None until it is exported.
    """
    from transformers import AutoConfig

    cfg = run.manifest["config"]
    stages = finished_stages(run.manifest)
    config = AutoConfig.from_pretrained(run.path / "teacher")
    spec_map = load_sparsity_map(run.path / "sparsified") if "sparsified" in stages else {}

    def size(sparsity: float) -> dict[str, float]:
        # the teacher (sparsity 0) is the full model whether or not 0 is on the grid
        spec = spec_map.get(find_level(spec_map, sparsity)) if sparsity else None  # type: ignore[arg-type]
        return {
            "sparsity": sparsity,
            "non_embedding_params": non_embedding_params(config, spec),
            "flops_per_128_tokens": paper_flops(config, spec, seq_len=SEQ_LEN),
        }

    selection = selection_facts(cfg, run.manifest.get("selection_slice") or {})
    # "dev_main": the assistant's selection metric, measured on dev only when dev selected
    assistants = [
        {**size(it.selected), "iteration": it.iteration, "selection_main": it.selected_metric,
         "dev_main": it.selected_metric if selection["select_on"] == "dev" else None}
        for it in iterations(stages)
        if not it.final and not same_level(it.selected, cfg["target_sparsity"])
    ]
    student = StudentRecord.from_dict(stages["student"]) if "student" in stages else None
    constant = run.manifest.get("constant_prediction")
    return {
        "task": cfg["data"]["task"],
        "teacher": {**size(0.0), "source": stages["teacher"]["source"], "dev": stages["teacher"]["dev"],
                    **test_entry(stages["teacher"].get("test")),
                    "head_initialised": stages["teacher"].get("head_initialised")},
        "assistants": assistants,
        "student": {**size(cfg["target_sparsity"]), "dev": student.dev, **test_entry(student.test),
                    "loads_with_plain_transformers": student.plain_hf_loadable} if student else None,
        # measured teacher and student inference time on the run's device (the speed stage)
        "inference": _inference(stages.get("speed")),
        "cost_term": cfg.get("cost", "flops"),
        "latency": {k: stages["latency"][k] for k in ("setting", "teacher_ms", "levels")} if "latency" in stages else None,
        # each iteration's entry as recorded, less the manifest's record of the files it wrote
        "iterations": [{k: v for k, v in stages[name].items() if k != "outputs"} for name in iteration_names(stages)],
        "lambda": cfg["lam"],
        "target_sparsity": cfg["target_sparsity"],
        "selection": selection,
        # the sandwich rule's random candidates per step (None: every candidate every step)
        "sandwich_samples": cfg.get("sandwich_samples"),
        "constant_prediction": constant,
        "collapse": collapse_flags(stages, constant, student.dev["main"] if student else None),
        "data": stages["teacher"]["data"],
        "note": cfg.get("note"),
        "wall_time_s": {name: st["wall_time_s"] for name, st in stages.items()},
        **memory_fields(stages),
        "runtime": stage_runtimes(stages),
        "compute": {name: st.get("compute") for name, st in stages.items() if st.get("compute")},
    }


def _inference(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``speed`` stage's measurement, less its stage bookkeeping."""
    if not entry:
        return None
    keys = ("setting", "teacher_ms", "student_ms", "speedup", "flops_ratio")
    return {k: entry[k] for k in keys}


def inference_lines(inference: dict[str, Any] | None) -> list[str]:
    """The report's lines on the measured inference time (none before the speed stage)."""
    if not inference:
        return []
    st = inference["setting"]
    return [
        "## Inference speed", "",
        (f"Measured on {st['device']} in {st['precision']}, batch {st['batch']} × {st['tokens']} tokens "
        f"(median of {st['repeats']} forwards after a warm-up):"), "",
        "| model | ms per batch | speed-up | FLOPs ratio |", "|---|---|---|---|",
        f"| teacher | {inference['teacher_ms']:.2f} | 1.00× | 1.00× |",
        f"| student | {inference['student_ms']:.2f} | {inference['speedup']:.2f}× | {inference['flops_ratio']:.2f}× |",
        "",
    ]


def test_lines(teacher: dict[str, Any], student: dict[str, Any] | None) -> list[str]:
    """Markdown lines of the held-out test metrics (``--test-file``), if there are some."""
    lines = []
    for name, model in (("Teacher", teacher), ("Student", student)):
        if model is not None and model.get("test"):
            lines += [f"{name} test metrics (held-out test data, evaluated once at the end): {_metrics(model['test'])}", ""]
    return lines


def selection_facts(cfg: dict[str, Any], slice_record: dict[str, Any]) -> dict[str, Any]:
    """Which set selected and by which rule, from the run's config (runs from before the
    options existed selected on dev by the running best) and its ``selection_slice``
    manifest record (``examples``: the slice's size)."""
    rule = cfg.get("candidate_score", "best")
    return {
        "select_on": cfg.get("select_on", "dev"),
        "selection_examples": slice_record.get("examples"),
        "candidate_score": rule,
        # a dump leaves the window out at its default (3)
        "score_window": cfg.get("score_window", DEFAULT_SCORE_WINDOW) if rule == "last_mean" else None,
    }


def collapse_flags(stages: dict[str, Any], constant: dict[str, Any] | None, student_dev: float | None) -> dict[str, Any] | None:
    """The models at their constant-prediction score (:func:`~minidisc.evaluation.constant.at_constant_score`):
    ``teacher`` (its dev score), ``student`` (its dev score, once exported) and
    ``candidates`` (``{"iteration", "sparsity", "score"}`` per candidate whose selection
    metric sits at the selection set's constant score). None when the run recorded no
    constant scores (older runs, or a task without one)."""
    if not constant:
        return None
    teacher = stages["teacher"]["dev"]["main"]
    on_dev, on_selection = constant["dev"]["main"], constant["selection"]["main"]
    candidates = [
        {"iteration": it.iteration, "sparsity": c.sparsity, "score": c.selection_metric}
        for it in iterations(stages) for c in it.candidates
        if at_constant_score(c.selection_metric, on_selection, teacher)
    ]
    return {
        "teacher": at_constant_score(teacher, on_dev, teacher),
        "student": student_dev is not None and at_constant_score(student_dev, on_dev, teacher),
        "candidates": candidates,
    }


def teacher_collapse_warning(teacher_dev: float, constant: dict[str, Any]) -> str:
    """The warning of a teacher at its constant-prediction score (``constant``: on dev)."""
    return (
        f"the fine-tuned teacher scores {100 * teacher_dev:.2f} on dev, the score of a constant prediction "
        f"({constant['predictor']}: {100 * constant['main']:.2f}): it learned nothing of the task, so its "
        "students cannot either. Check the data and labels, fine-tune longer or with another learning rate "
        "(--epochs, --learning-rate), or pass a teacher fine-tuned on this task"
    )


def finished_stages(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest entries of the finished stages a report shows (the ``report`` stage
    itself excluded, so a rebuilt report equals the one the run wrote)."""
    return {
        name: entry for name, entry in manifest["stages"].items()
        if entry.get("status") == "done" and name != "report"
    }


def write_compress_report(run: RunDir, data: TaskData | None = None) -> None:
    """Write report.json, report.md (with the cost section once the manifest holds the
    run's cost) and, once an iteration has finished, tradeoff.png into the run folder."""
    report = build_compress_report(run)
    text = render_markdown(report)
    cost = run.manifest.get("cost")
    if cost:
        report["cost"] = cost
        text = text.rstrip("\n") + "\n\n" + "\n".join(cost_markdown(cost))
    write_json(run.path / "report.json", report)
    if report["iterations"]:
        plot_tradeoff(report["iterations"], report["lambda"], report["target_sparsity"], run.path / "tradeoff.png",
                      teacher_metric=report["teacher"]["dev"]["main"])
    write_text(run.path / "report.md", text)


def render_markdown(r: dict[str, Any]) -> str:
    """A human-readable report (metrics and sparsities in percent)."""
    pct = lambda x: f"{100 * x:.2f}"
    lines = [f"# MiniDisc report: {r['task']}", ""]
    d = r["data"]
    lines += [
        f"- teacher: {r['teacher']['source']}",
        *([f"- classifier head initialised: {r['teacher']['head_initialised']}"] if r["teacher"].get("head_initialised") else []),
        f"- data: {d['train_examples']} training / {d['dev_examples']} dev"
        + (f" / {d['test_examples']} test" if d.get("test_examples") is not None else "")
        + f" examples from {d['data_source']}"
        + (" (**subsampled**: numbers are not comparable to full-data results)" if d["subsampled"] else ""),
        *([f"- your data: {describe_record(d['custom'])}"] if d.get("custom") else []),
        f"- target sparsity {pct(r['target_sparsity'])} %, λ = {r['lambda']:g}",
    ]
    if r.get("note"):
        lines.append(f"- note: {r['note']}")
    sel = r.get("selection") or selection_facts({}, {})
    lines.append(f"- selected on: {_describe_selection(sel)}")
    lines += _collapse_warnings(r)
    lines += ["", "## Models", "", "| model | sparsity % | dev main % | non-emb. params | FLOPs / 128 tok |", "|---|---|---|---|---|"]
    on_slice = sel["select_on"] == "slice"
    rows = [("teacher", r["teacher"], pct(r["teacher"]["dev"]["main"]))]
    rows += [(f"assistant (iter {a['iteration']})", a, pct(a["selection_main"] if "selection_main" in a else a["dev_main"])
              + (" †" if on_slice else "")) for a in r["assistants"]]
    if r["student"] is not None:
        rows += [("student (exported)", r["student"], pct(r["student"]["dev"]["main"]))]
    for name, m, dev in rows:
        lines.append(
            f"| {name} | {pct(m['sparsity'])} | {dev} | {m['non_embedding_params'] / 1e6:.2f}M | {m['flops_per_128_tokens'] / 1e9:.3f}G |"
        )
    if on_slice and r["assistants"]:
        lines += ["", "† the assistant's selection metric on the selection slice, not a dev score."]
    if r["student"] is None:
        done = ", ".join(r["wall_time_s"])  # the finished stages
        lines += ["", (f"**Unfinished run**: the student is not exported yet (finished so far: {done}); rerun "
                  "the run's command to continue it.")]
    elif not r["assistants"]:
        lines += ["", ("The λ-tradeoff selected the target itself in iteration 1, so no teacher assistant "
                       "was needed: the student is the target sub-network of the sandwich run.")]
    lines += ["", "Teacher dev metrics: " + _metrics(r["teacher"]["dev"]), ""]
    if r["student"] is not None:
        lines += ["Student dev metrics: " + _metrics(r["student"]["dev"]), ""]
    lines += test_lines(r["teacher"], r["student"])
    split = "slice" if on_slice else "dev"
    score = "best" if sel["candidate_score"] == "best" else f"mean of last {sel['score_window']}"
    collapsed = {(f["iteration"], f["sparsity"]) for f in ((r.get("collapse") or {}).get("candidates") or [])}
    for it in r["iterations"]:
        lines += [f"## Iteration {it['iteration']}" + (" (final: target only)" if it["final"] else ""), ""]
        lines += sandwich_rule_lines(it, r.get("sandwich_samples"))
        lines += [f"| candidate sparsity % | best {split} main % | {score} % | λ-tradeoff % | chosen |",
                  "|---|---|---|---|---|"]
        for c in sorted(it["candidates"], key=lambda c: c["sparsity"]):
            mark = "**←**" if same_level(c["sparsity"], it["selected"]) else ""
            flag = " ⚠ constant" if (it["iteration"], c["sparsity"]) in collapsed else ""
            metric = c.get("score", c["best_metric"])
            lines.append(f"| {pct(c['sparsity'])} | {pct(c['best_metric'])} | {pct(metric)}{flag} | "
                         f"{pct(c['tradeoff'])} | {mark} |")
        lines.append("")
        if it.get("passed_over"):
            skipped = ", ".join(f"{100 * s:g} %" for s in sorted(it["passed_over"]))
            lines += [(f"Passed over at the constant-prediction score despite a higher λ-tradeoff: {skipped} "
                       "(--keep-collapsed keeps them in the argmax, as the paper does)."), ""]
    lines += inference_lines(r.get("inference"))
    if r.get("latency"):
        lines += [(f"The λ-tradeoff weighed measured time saved (--cost latency, {r['latency']['setting']['device']}, "
                  f"{r['latency']['setting']['precision']}), not sparsity."), ""]
    lines += ["## Time and compute", "", f"Device and precision: {describe_runtimes(r['runtime'])}.", "", "| stage | wall time (s) | peak RSS (MiB) | train FLOPs | tokens |", "|---|---|---|---|---|"]
    for name, secs in r["wall_time_s"].items():
        comp = r["compute"].get(name) or {}
        flops = f"{comp['train_flops']:.3e}" if comp else "–"
        lines.append(f"| {name} | {secs:.1f} | {rss_cell(r, name)} | {flops} | {comp.get('tokens', '–')} |")
    lines += peak_lines(r)
    if r["iterations"]:
        lines += ["", "![metric and λ-tradeoff against sparsity](tradeoff.png)"]
    lines += [""]
    return "\n".join(lines)


def sandwich_rule_lines(iteration: dict[str, Any], samples: int | None) -> list[str]:
    """The report's line on how many candidates an iteration's sandwich steps trained, and
    a blank line (GLUE and text paths); none for a final or one-candidate iteration."""
    n = len(iteration["candidates"])
    if iteration["final"] or n < 2:
        return []
    if trains_every_candidate(n, samples):
        return ["Every sandwich step trained every candidate.", ""]
    return [(f"Sandwich rule: every step trained the least and the most sparse candidate and {samples} of the "
             f"other {n - 2} drawn at random (--sandwich-samples {samples})."), ""]


def memory_fields(stages: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The report's memory fields: each stage's peak RSS (MiB) and the allocator it was
    measured under (None for runs recorded before either was)."""
    return {"peak_rss_mb": {name: st.get("peak_rss_mb") for name, st in stages.items()},
            "peak_rss_allocator": {name: st.get("peak_rss_allocator") for name, st in stages.items()}}


def rss_cell(r: dict[str, Any], stage: str) -> str:
    """A stage's peak RSS in MiB for a report table ("–" for runs recorded before it was measured)."""
    mb = (r.get("peak_rss_mb") or {}).get(stage)
    return "–" if mb is None else f"{mb:,.0f}"


def peak_lines(r: dict[str, Any]) -> list[str]:
    """The report's line on the run's peak memory: the largest stage peak (none for runs
    recorded before peaks were measured). Each stage's peak is its own (the kernel's mark
    is reset when a stage starts), so the largest of them is the run's."""
    peaks = {k: v for k, v in (r.get("peak_rss_mb") or {}).items() if v is not None}
    if not peaks:
        return []
    stage = max(peaks, key=peaks.__getitem__)
    allocator = (r.get("peak_rss_allocator") or {}).get(stage)
    under = f" (allocator: {allocator})" if allocator else ""
    return ["", f"Peak memory of the run: {peaks[stage]:,.0f} MiB resident, in stage {stage}{under}."]


def _describe_selection(sel: dict[str, Any]) -> str:
    """Which set chose the checkpoints and the assistant, and by which rule."""
    if sel["select_on"] == "slice":
        where = (f"the selection slice ({sel['selection_examples']} training examples held out and never trained on; "
                 "dev is for this report only)")
    else:
        where = "the dev set (the paper's protocol: the dev numbers also chose, so they are optimistic)"
    rule = ("the running best of each candidate's evaluations (the paper's rule)" if sel["candidate_score"] == "best"
            else f"the mean of each candidate's last {sel['score_window']} evaluations")
    return f"{where}; candidates scored by {rule}"


def _collapse_warnings(r: dict[str, Any]) -> list[str]:
    """Report lines for the models at their constant-prediction score (none if none)."""
    flags, constant = r.get("collapse"), r.get("constant_prediction")
    if not flags or not constant:
        return []
    lines = []
    if flags["teacher"]:
        lines.append("- **warning**: " + teacher_collapse_warning(r["teacher"]["dev"]["main"], constant["dev"]) + ".")
    for f in flags["candidates"]:
        lines.append(
            f"- **warning**: the {100 * f['sparsity']:g} % candidate of iteration {f['iteration']} ended at the "
            f"constant-prediction score ({100 * f['score']:.2f} against {100 * constant['selection']['main']:.2f} "
            f"for {constant['selection']['predictor']}): it collapsed to one output for every input.")
    if flags["student"]:
        lines.append(f"- **warning**: the student scores {100 * r['student']['dev']['main']:.2f} on dev, the "
                     f"constant-prediction score ({100 * constant['dev']['main']:.2f}): it collapsed.")
    return lines


def _metrics(m: dict[str, float]) -> str:
    return ", ".join(f"{k} {100 * v:.2f}" for k, v in m.items())
