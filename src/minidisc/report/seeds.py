"""One comparison over seeds: ``minidisc report RUN RUN [RUN ...] -o DIR``.

Reads the ``report.json`` of several finished ``minidisc compare`` runs that differ only
in ``--seed`` and writes ``seeds.json`` and ``seeds.md``: per arm and quality metric the
mean and sample standard deviation over seeds, and every arm's **paired difference** to
a reference arm (MiniDisc when it ran, else direct KD): ``d_s = arm_s − reference_s``
per seed ``s`` (same teacher, data order and calibration sample), its mean and standard
deviation, and in how many seeds the reference was better. A difference is called
**beyond the seed spread** when the reference is better (or worse) in every seed and the
mean difference is larger than the standard deviation of the paired differences — the
statement asked of every headline comparison; with three seeds it is a plain, not a
significance, test.

Quality metrics: the perplexity on the selection slice and on every ``--eval-corpus``
file (``--task lm``; lower is better), or the main dev metric (GLUE and your own data;
higher is better; and the test metric with ``--test-file``). The cost multiple of one
direct-KD run and the wall time are summarised beside them.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from minidisc.errors import ConfigError
from minidisc.fileio import read_json

#: Report fields that must agree for runs to be seeds of one comparison.
_SAME = ("task", "target_sparsity", "budgets", "block_size", "objective", "importance", "schedules", "corpora",
         "metric", "teacher_cache")


def read_comparisons(runs: list[Path]) -> list[dict[str, Any]]:
    """The ``report.json`` of each finished comparison in ``runs``.

    Raises:
        ConfigError: fewer than two runs, a run without a comparison report, runs that
            differ in more than the seed, or two runs with the same seed.
    """
    if len(runs) < 2:
        raise ConfigError("give two or more comparison runs (the same `minidisc compare` command with different --seed)")
    reports = []
    for run in runs:
        path = Path(run) / "report.json"
        if not path.is_file():
            raise ConfigError(f"{run} has no report.json: give the --output folder of a finished `minidisc compare` "
                              f"(or run `minidisc report {run}` first)")
        report = read_json(path)
        if "rows" not in report or "cost_reference" not in report:
            raise ConfigError(f"{run} is not a `minidisc compare` run: seeds are summarised over comparisons only")
        reports.append(report)
    first = reports[0]
    for run, report in zip(runs[1:], reports[1:], strict=True):
        differ = [k for k in _SAME if report.get(k) != first.get(k)]
        if differ:
            raise ConfigError(f"{run} differs from {runs[0]} in {', '.join(differ)}: summarise runs of one "
                              "comparison that differ only in --seed")
    seeds = [_seed(r) for r in reports]
    if len(set(seeds)) < len(seeds):
        raise ConfigError(f"two runs have the same seed ({seeds}): each seed once")
    return reports


def _seed(report: dict[str, Any]) -> Any:
    return report.get("seed")  # both comparison reports (GLUE and --task lm) carry it


def quality_metrics(report: dict[str, Any], row: dict[str, Any]) -> dict[str, float]:
    """One row's quality metrics, by display name (see :func:`lower_is_better`)."""
    if report.get("task") == "lm":
        out = {"PPL selection slice": row["dev"]["perplexity"]}
        out.update({f"PPL {Path(c).name}": h["perplexity"] for c, h in row["heldout"].items()})
        return out
    out = {f"dev {report.get('metric', 'main')}": row["dev_main"]}
    if "test_main" in row:
        out[f"test {report.get('metric', 'main')}"] = row["test_main"]
    return out


def lower_is_better(metric: str) -> bool:
    """Perplexities go down as students improve; GLUE-style scores go up."""
    return metric.startswith("PPL")


def _spread(values: list[float]) -> dict[str, Any]:
    return {"values": values, "mean": statistics.fmean(values), "std": statistics.stdev(values)}


def summarize_seeds(reports: list[dict[str, Any]], reference: str | None = None) -> dict[str, Any]:
    """Mean ± standard deviation per arm and metric, and paired differences to ``reference``.

    Args:
        reports: comparison reports (``report.json``) of two or more seeds, as
            :func:`read_comparisons` returns them; only arms present in every report count.
        reference: the arm the others are compared with (default ``minidisc`` when it
            ran, else ``direct``).

    Returns:
        ``{"seeds", "reference", "arms": {arm: {metric: {values, mean, std}, "cost multiple": …,
        "wall time s": …}}, "differences": {arm: {metric: {values, mean, std,
        "reference_better_in", "seeds", "beyond_spread"}}}}``.

    Raises:
        ConfigError: ``reference`` is not an arm of every report.
    """
    rows = [{r["schedule"]: r for r in report["rows"]} for report in reports]
    arms = [a for a in rows[0] if all(a in r for r in rows)]
    if reference is None:
        reference = "minidisc" if "minidisc" in arms else "direct"
    if reference not in arms:
        raise ConfigError(f"--reference {reference} is not an arm of every run (arms: {', '.join(arms)})")
    metric_names = list(quality_metrics(reports[0], rows[0][arms[0]]))
    summary: dict[str, dict[str, Any]] = {}
    for arm in arms:
        per_seed = [quality_metrics(rep, r[arm]) for rep, r in zip(reports, rows, strict=True)]
        summary[arm] = {m: _spread([p[m] for p in per_seed]) for m in metric_names}
        summary[arm]["cost multiple"] = _spread([r[arm]["cost_multiple"] for r in rows])
        summary[arm]["wall time s"] = _spread([r[arm]["cost_wall_time_s"] for r in rows])
    differences = {arm: {m: _difference(summary[arm][m]["values"], summary[reference][m]["values"], m)
                         for m in metric_names} for arm in arms if arm != reference}
    return {"seeds": [_seed(r) for r in reports], "reference": reference, "metrics": metric_names,
            "arms": summary, "differences": differences}


def _difference(arm: list[float], ref: list[float], metric: str) -> dict[str, Any]:
    d = [a - b for a, b in zip(arm, ref, strict=True)]
    better = sum((x > 0) == lower_is_better(metric) for x in d if x != 0)  # seeds where the reference was better
    out = _spread(d)
    same_sign = better in (0, len(d)) and all(x != 0 for x in d)
    return {**out, "reference_better_in": better, "seeds": len(d),
            "beyond_spread": same_sign and abs(out["mean"]) > out["std"]}


def render_seeds_markdown(summary: dict[str, Any], titles: dict[str, str] | None = None) -> str:
    """``seeds.md``: the mean ± std table and the paired-difference statements."""
    titles = titles or {}
    metrics = summary["metrics"]
    seeds = ", ".join(str(s) for s in summary["seeds"])
    lines = [f"# Comparison over seeds ({seeds})", "",
             "Mean ± sample standard deviation over seeds; each seed's value in brackets.", "",
             "| arm | " + " | ".join(metrics) + " | cost multiple | wall time (s) |",
             "|---|" + "---|" * (len(metrics) + 2)]
    for arm, m in summary["arms"].items():
        cells = [_cell(m[k]) for k in metrics]
        lines.append(f"| {titles.get(arm, arm)} | " + " | ".join(cells)
                     + f" | {m['cost multiple']['mean']:.2f} | {m['wall time s']['mean']:.0f} |")
    ref = summary["reference"]
    lines += ["", f"## Paired differences to {titles.get(ref, ref)} (arm − reference, same seed)", "",
              "| arm | metric | difference | reference better in | beyond the seed spread |", "|---|---|---|---|---|"]
    for arm, per_metric in summary["differences"].items():
        for metric, d in per_metric.items():
            lines.append(f"| {titles.get(arm, arm)} | {metric} | {'+' if d['mean'] >= 0 else '−'}{_num(abs(d['mean']))} ± {_num(d['std'], 3)} | "
                         f"{d['reference_better_in']}/{d['seeds']} seeds | {'yes' if d['beyond_spread'] else 'no'} |")
    lines += ["", ("Beyond the seed spread: the same sign in every seed and |mean| > the standard deviation of the "
                   "paired differences."), ""]
    return "\n".join(lines)


def _num(x: float, digits: int = 4) -> str:
    """Plain digits (no exponent) for the perplexities of badly pruned students."""
    return f"{x:,.0f}" if abs(x) >= 10 ** digits else f"{x:.{digits}g}"


def _cell(s: dict[str, Any]) -> str:
    each = " / ".join(_num(v) for v in s["values"])
    return f"{_num(s['mean'])} ± {_num(s['std'], 2)} ({each})"


def write_seeds_summary(runs: list[Path], output: Path, reference: str | None = None,
                        overwrite: bool = False) -> list[Path]:
    """Read the comparisons in ``runs``, write ``seeds.json`` and ``seeds.md`` into ``output``.

    Raises:
        ConfigError: see :func:`read_comparisons` and :func:`summarize_seeds`; or
            ``output`` already holds a summary and ``overwrite`` is false.
    """
    from minidisc.fileio import write_json, write_text
    from minidisc.report.compare import SCHEDULE_TITLES

    output = Path(output)
    targets = [output / "seeds.json", output / "seeds.md"]
    if not overwrite and any(t.exists() for t in targets):
        raise ConfigError(f"{output} already holds a seeds summary: pass --overwrite to replace it, or another -o")
    summary = summarize_seeds(read_comparisons([Path(r) for r in runs]), reference)
    summary["runs"] = [str(r) for r in runs]
    output.mkdir(parents=True, exist_ok=True)
    write_json(targets[0], summary)
    write_text(targets[1], render_seeds_markdown(summary, SCHEDULE_TITLES))
    return targets
