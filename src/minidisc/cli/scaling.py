"""``minidisc scaling``: predict, fit and plan with the distillation scaling laws.

Busbridge et al., "Distillation Scaling Laws" (ICML 2025). Subcommands:

* ``predict``   — student loss from (N_S, D_S, L_T), or supervised loss without a teacher;
* ``fit``       — fit both laws to a runs file (JSONL/CSV, see minidisc.scaling.records);
* ``plan``      — compute-optimal D_S / teacher / teacher tokens per scenario, or the
  best of given candidate teachers;
* ``crossover`` — the compute above which supervised training beats distillation;
* ``plot``      — figures (student vs teacher loss, isoFLOPs, distil-vs-supervised map);
* ``simulate``  — write synthetic run records drawn from the laws plus noise.

NumPy/SciPy/matplotlib are imported inside the command bodies so ``--help`` stays fast.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from minidisc.errors import ConfigError
from minidisc.scaling.compute import FlopsModel, forward_flops_per_token
from minidisc.scaling.laws import capacity_gap_factor, distillation_loss, supervised_loss
from minidisc.scaling.params import ScalingLawParams, load_flops_model, load_params, save_params
from minidisc.scaling.records import read_run_records, write_run_records
from minidisc.scaling.synthetic import synthetic_records

SCENARIO_NAMES = ("best-case", "teacher-inference", "teacher-pretraining",
                  "teacher-pretraining-inference")
_SCENARIO_HELP = (
    "Cost scenario (Table 2): best-case (teacher and its logits free), teacher-inference "
    "(teacher exists, its logits paid), teacher-pretraining (teacher trained, logits "
    "amortised), teacher-pretraining-inference (both paid), or 'all'. Repeatable."
)
_PARAMS_HELP = ("JSON file of law coefficients, e.g. written by `minidisc scaling fit --out`; "
                "default: the paper's Table 6 values.")
_JSON_HELP = "Print one JSON object instead of text."

scaling_app = typer.Typer(
    help=(
        "Distillation scaling laws (Busbridge et al. 2025): predict student loss, fit the "
        "laws to your runs, plan compute-optimal distillation, find where supervised "
        "training wins. Parameters are non-embedding counts, tokens and FLOPs; losses are "
        "cross-entropies in nats."
    ),
    no_args_is_help=True,
)

ParamsOpt = Annotated[Path | None, typer.Option("--params", help=_PARAMS_HELP)]
JsonOpt = Annotated[bool, typer.Option("--json", help=_JSON_HELP)]
PlotOpt = Annotated[
    Path | None, typer.Option("--plot", help="Also write a figure to this .png file.")
]
# F(N) constants of Eq. 69; None = from --params' flops_model section, else the paper's.
RhoOpt = Annotated[float | None, typer.Option(
    "--rho", help="F(N), Eq. 69: d_model/n_layers of your models (paper: 128).")]
OmegaOpt = Annotated[float | None, typer.Option(
    "--omega", help="F(N), Eq. 69: N/(n_layers*d_model^2) (paper: 12; BERT with a 4x FFN: "
    "12 plus biases).")]
NCtxOpt = Annotated[float | None, typer.Option(
    "--n-ctx", help="F(N), Eq. 69: context length (paper: 4096; a bidirectional encoder "
    "on S-token blocks: 2*S).")]
NVocabOpt = Annotated[float | None, typer.Option(
    "--n-vocab", help="F(N), Eq. 69: vocabulary (paper: 32168; an MLM head on a fraction "
    "p of the tokens: p*(vocab + d_model)).")]
BoundsOpt = Annotated[tuple[float, float], typer.Option(
    "--bounds", help="Planner bounds on N_T, D_S and D_T, LOW HIGH (paper: 1e6 1e17); lower "
    "them for a law fitted on small models.")]
_FLOPS_NOTE = ("F(N) constants: --rho/--omega/--n-ctx/--n-vocab, else the flops_model "
               "stored in --params, else the paper's.")


def register(app: typer.Typer) -> None:
    """Add the ``scaling`` command group to the ``minidisc`` app."""
    app.add_typer(
        scaling_app, name="scaling",
        help="Distillation scaling laws: predict, fit, plan, crossover, plot.",
    )


# ----------------------------------------------------------------------------- helpers
def _load(params: Path | None):
    return load_params(params) if params is not None else ScalingLawParams()


def _flops_model(params: Path | None, rho: float | None, omega: float | None,
                 n_ctx: float | None, n_vocab: float | None):
    """The F(N) constants: options override the --params file's, which override the
    paper's (Eq. 69)."""
    stored = load_flops_model(params) if params is not None else None
    values = (stored or FlopsModel()).to_dict()
    given = {"rho": rho, "omega": omega, "n_ctx": n_ctx, "n_vocab": n_vocab}
    values.update({k: v for k, v in given.items() if v is not None})
    return FlopsModel.from_dict(values)


def _bounds(values: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in values)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise ConfigError(f"--bounds must be 0 < LOW < HIGH, got {lo} {hi}")
    return lo, hi


def _flops_line(model) -> list[str]:
    """A text line naming the F(N) constants, when they are not the paper's."""
    if model == FlopsModel():
        return []
    text = ", ".join(f"{k}={v:.6g}" for k, v in model.to_dict().items())
    return [f"F(N) constants (Eq. 69): {text}"]


def _scenarios(values: list[str] | None) -> list[str]:
    names = values or ["all"]
    out: list[str] = []
    for name in names:
        if name == "all":
            out.extend(s for s in SCENARIO_NAMES if s not in out)
        elif name in SCENARIO_NAMES:
            if name not in out:
                out.append(name)
        else:
            raise ConfigError(
                f"unknown scenario {name!r}; choose from {', '.join(SCENARIO_NAMES)} or 'all'"
            )
    return out


def _emit(obj: dict[str, Any], as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj, indent=2, default=_jsonable) if as_json else text)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _g(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _positive(value: float | None, option: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{option} must be a positive number, got {value}")


# ----------------------------------------------------------------------------- predict
@scaling_app.command(help=(
    "Predict a student's loss: the distillation law (Eq. 8) given a teacher, else the "
    'supervised law (Eq. 1). Reports both losses and the training FLOPs.'
))
def predict(
    student_params: Annotated[float, typer.Option(
        "--student-params", help="N_S: student non-embedding parameters, e.g. 1e9.")],
    student_tokens: Annotated[float, typer.Option(
        "--student-tokens", help="D_S: training (distillation) tokens, e.g. 2e10.")],
    teacher_loss: Annotated[float | None, typer.Option(
        "--teacher-loss", help="L_T: teacher cross-entropy in nats. Omit (and omit "
        "--teacher-params) to predict supervised training.")] = None,
    teacher_params: Annotated[float | None, typer.Option(
        "--teacher-params", help="N_T: teacher non-embedding parameters. With "
        "--teacher-tokens and no --teacher-loss, L_T is predicted by the supervised law.")] = None,
    teacher_tokens: Annotated[float | None, typer.Option(
        "--teacher-tokens", help="D_T: tokens the teacher was trained on.")] = None,
    params: ParamsOpt = None,
    rho: RhoOpt = None,
    omega: OmegaOpt = None,
    n_ctx: NCtxOpt = None,
    n_vocab: NVocabOpt = None,
    as_json: JsonOpt = False,
    plot: PlotOpt = None,
) -> None:
    """Predict a student's loss: the distillation law (Eq. 8) with a teacher, else the
    supervised law (Eq. 1). Reports both, plus training FLOPs (F(N) of Eq. 69 with the
    constants of --rho/--omega/--n-ctx/--n-vocab, else of --params, else the paper's)."""
    for value, option in ((student_params, "--student-params"),
                          (student_tokens, "--student-tokens"),
                          (teacher_loss, "--teacher-loss"), (teacher_params, "--teacher-params"),
                          (teacher_tokens, "--teacher-tokens")):
        _positive(value, option)
    p = _load(params)
    fm = _flops_model(params, rho, omega, n_ctx, n_vocab)
    sup = float(supervised_loss(student_params, student_tokens, p.supervised))
    source = None
    if teacher_loss is not None:
        source = "given"
    elif teacher_params is not None or teacher_tokens is not None:
        if teacher_params is None or teacher_tokens is None:
            raise ConfigError("give both --teacher-params and --teacher-tokens (or --teacher-loss)")
        teacher_loss = float(supervised_loss(teacher_params, teacher_tokens, p.supervised))
        source = "supervised law"
    f_s = float(forward_flops_per_token(student_params, fm))
    out: dict[str, Any] = {
        "mode": "supervised" if teacher_loss is None else "distillation",
        "student_params": student_params,
        "student_tokens": student_tokens,
        "supervised_loss": sup,
        "student_loss": sup,
        "teacher_loss": teacher_loss,
        "teacher_loss_source": source,
        "teacher_params": teacher_params,
        "teacher_tokens": teacher_tokens,
        "student_training_flops": 3.0 * f_s * student_tokens,
        "flops_model": fm.to_dict(),
    }
    if teacher_loss is not None:
        out["student_loss"] = float(
            distillation_loss(student_params, student_tokens, teacher_loss, p)
        )
        out["teacher_to_student_loss_ratio"] = teacher_loss / sup
        out["capacity_gap_factor"] = float(capacity_gap_factor(teacher_loss, sup, p.distillation))
        out["distillation_better"] = out["student_loss"] < sup
        if teacher_params is not None:
            f_t = float(forward_flops_per_token(teacher_params, fm))
            out["teacher_inference_flops"] = f_t * student_tokens
    if plot is not None:
        # lazy: pulls in scipy (~0.4 s CPU); keeps `minidisc --help` fast
        from minidisc.scaling.plots import plot_student_vs_teacher

        sizes = sorted({student_params, *(student_params * k for k in (0.25, 4.0))})
        highlight = None if teacher_loss is None else (student_params, student_tokens, teacher_loss)
        plot_student_vs_teacher(plot, p, sizes, student_tokens / student_params,
                                highlight=highlight)
        out["plot"] = str(plot)
    lines = [f"supervised loss L(N_S, D_S): {sup:.4f} nats"]
    if teacher_loss is not None:
        lines = [
            f"student loss (distilled):     {out['student_loss']:.4f} nats",
            *lines,
            f"teacher loss L_T ({source}): {teacher_loss:.4f} nats",
            (f"L_T / L(N_S, D_S) = {out['teacher_to_student_loss_ratio']:.3f} "
             f"(capacity-gap transition at d1 = {p.distillation.d1:.3f})"),
        ]
    lines.append(f"student training FLOPs 3F(N_S)D_S: {out['student_training_flops']:.3e}")
    lines.extend(_flops_line(fm))
    _emit(out, as_json, "\n".join(lines))


# ----------------------------------------------------------------------------- fit
@scaling_app.command(help=(
    'Fit the supervised law (Eq. 1) to the supervised runs and the distillation law (Eq. '
    '8) to the distillation runs of a runs file: log-space Huber, L-BFGS-B from a '
    'screened grid, bootstrap confidence intervals (App. F).'
))
def fit(
    runs: Annotated[Path, typer.Option(
        "--runs", help="Runs file: JSONL (one record per line) or .csv, format in "
        "minidisc.scaling.records (kind, student_params, student_tokens, student_loss, "
        "teacher_loss, ...).")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the fitted coefficients (+ fit report) to this JSON file; "
        "usable as --params by the other commands.")] = None,
    params: Annotated[Path | None, typer.Option(
        "--params", help="Coefficients JSON whose supervised law gives L̃_S for the "
        "distillation fit when the runs file has no supervised runs (default: Table 6).")] = None,
    grid: Annotated[str, typer.Option(
        "--grid", help="Starting grid: 'paper' (App. F) or 'small' (coarse, faster).")] = "paper",
    starts: Annotated[int, typer.Option(
        "--starts", help="L-BFGS-B runs from the best N screened grid points; 0 = from "
        "every grid point as in the paper (slow).")] = 16,
    bootstrap: Annotated[int, typer.Option(
        "--bootstrap", help="Bootstrap resamples for confidence intervals (paper: 4096; "
        "0 = none).")] = 200,
    ci: Annotated[float, typer.Option("--ci", help="Interval coverage, a fraction.")] = 0.90,
    jobs: Annotated[int, typer.Option(
        "--jobs", help="Parallel bootstrap workers (joblib); -1 = all cores.")] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap random seed.")] = 0,
    rho: RhoOpt = None,
    omega: OmegaOpt = None,
    n_ctx: NCtxOpt = None,
    n_vocab: NVocabOpt = None,
    as_json: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Write predicted-vs-observed losses to this .png file.")] = None,
) -> None:
    """Fit the supervised law to the supervised runs and the distillation law to the
    distillation runs of a runs file (log-space Huber, L-BFGS-B, bootstrap CIs; App. F).

    The F(N) options do not change the fit; they are stored with it in --out (as
    ``flops_model``), so that predict/plan/crossover --params count FLOPs the way the
    runs did."""
    # lazy: pulls in scipy (~0.4 s CPU); keeps `minidisc --help` fast
    from minidisc.scaling.fit import FitOptions, fit_records

    options = FitOptions(grid=grid, n_starts=None if starts == 0 else starts, n_bootstrap=bootstrap,
                         ci=ci, n_jobs=jobs, seed=seed)
    records = read_run_records(runs)
    fallback = _load(params).supervised if params is not None else None
    fm = None
    if any(v is not None for v in (rho, omega, n_ctx, n_vocab)) or (
            params is not None and load_flops_model(params) is not None):
        fm = _flops_model(params, rho, omega, n_ctx, n_vocab)
    result = fit_records(records, options, fallback)
    report = result.to_dict()
    report["runs"] = str(runs)
    report["flops_model"] = fm.to_dict() if fm is not None else None
    if out is not None:
        save_params(out, result.params, extra={"fit": report["fit"], "runs": str(runs)},
                    flops_model=fm)
        report["out"] = str(out)
    if plot is not None:
        # lazy: pulls in scipy (~0.4 s CPU); keeps `minidisc --help` fast
        from minidisc.scaling.plots import plot_fit

        plot_fit(plot, records, result.params)
        report["plot"] = str(plot)
    lines = []
    for fr in (result.supervised, result.distillation):
        if fr is None:
            continue
        lines.append(f"{fr.law} law: {fr.n_runs} runs, mean |rel. error| "
                     f"{100 * fr.mean_abs_rel_error:.2f} %, max {100 * fr.max_abs_rel_error:.2f} %")
        for key, value in fr.params.to_dict().items():
            lo_hi = fr.intervals.get(key)
            ci_text = (f"  [{_g(lo_hi[0])}, {_g(lo_hi[1])}] ({int(100 * fr.ci)} % CI)"
                       if lo_hi else "")
            lines.append(f"  {key:6s} = {_g(value, 5)}{ci_text}")
    if result.distillation is not None:
        lines.append(f"L̃_S for the distillation fit from: {result.supervised_source} "
                     "supervised law")
    if fm is not None:
        lines.extend(_flops_line(fm) or ["F(N) constants (Eq. 69): the paper's"])
    if out is not None:
        lines.append(f"wrote {out}")
    _emit(report, as_json, "\n".join(lines))


# ----------------------------------------------------------------------------- plan
@scaling_app.command(help=(
    'Plan compute-optimal distillation of one student: D_S, teacher size and teacher '
    'tokens per scenario (Eq. 10), or the best of given existing teachers (Eq. 27), each '
    'against the same student trained supervised on the whole budget.'
))
def plan(
    student_params: Annotated[float, typer.Option(
        "--student-params", help="N_S: student non-embedding parameters.")],
    compute: Annotated[float, typer.Option(
        "--compute", help="C: total budget in FLOPs, counted per scenario (Eq. 9).")],
    scenario: Annotated[list[str] | None, typer.Option("--scenario", help=_SCENARIO_HELP)] = None,
    teacher: Annotated[list[str] | None, typer.Option(
        "--teacher", help="An existing candidate teacher as PARAMS:LOSS or NAME=PARAMS:LOSS "
        "(repeatable). With teachers, picks the best one for the budget (Eq. 27) instead of "
        "optimising a teacher.")] = None,
    teacher_inference: Annotated[bool, typer.Option(
        "--teacher-inference/--no-teacher-inference",
        help="With --teacher: pay the teacher's forward passes on D_S (δ_lgt = 1) or treat "
        "its logits as free.")] = True,
    params: ParamsOpt = None,
    rho: RhoOpt = None,
    omega: OmegaOpt = None,
    n_ctx: NCtxOpt = None,
    n_vocab: NVocabOpt = None,
    bounds: BoundsOpt = (1e6, 1e17),
    as_json: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Write isoFLOP curves (student loss vs teacher size at C/10, C, 10C, "
        "first scenario) to this .png file.")] = None,
) -> None:
    """Compute-optimal distillation of one student: the best D_S, teacher size and teacher
    tokens per scenario (Eq. 10, SLSQP in log space), or the best existing teacher (Eq. 27);
    each compared with the same student trained supervised on the whole budget. FLOPs
    use F(N) of Eq. 69: --rho/--omega/--n-ctx/--n-vocab, else --params', else the paper's."""
    # lazy: pulls in scipy (~0.4 s CPU); keeps `minidisc --help` fast
    from minidisc.scaling.plan import (
        CandidateTeacher,
        plan_distillation,
        plan_with_teachers,
        supervised_baseline,
    )

    _positive(student_params, "--student-params")
    _positive(compute, "--compute")
    p = _load(params)
    fm = _flops_model(params, rho, omega, n_ctx, n_vocab)
    sup_tokens, sup_loss = supervised_baseline(student_params, compute, p, fm)
    result: dict[str, Any] = {
        "student_params": student_params,
        "compute": compute,
        "supervised": {"tokens": sup_tokens, "loss": sup_loss},
        "flops_model": fm.to_dict(),
    }
    lines = [(f"supervised baseline: N_S={student_params:.3g} on {sup_tokens:.3g} tokens "
              f"-> loss {sup_loss:.4f}")]
    if teacher:
        choice = plan_with_teachers(student_params, compute,
                                    [CandidateTeacher.parse(t) for t in teacher],
                                    teacher_inference, p, fm)
        result["teachers"] = choice.to_dict()
        lines.append(f"candidate teachers (Eq. 27, teacher inference "
                     f"{'paid' if teacher_inference else 'free'}):")
        for i, o in enumerate(choice.options):
            mark = "*" if i == choice.best else " "
            lines.append(f" {mark} {o.name:>12s}: N_T={o.teacher_params:.3g} "
                         f"L_T={o.teacher_loss:.4f}"
                         f" -> D_S={o.student_tokens:.3g}, L_S={o.student_loss:.4f}")
    else:
        plans = [plan_distillation(student_params, compute, s, p, fm, _bounds(bounds))
                 for s in _scenarios(scenario)]
        result["plans"] = [pl.to_dict() for pl in plans]
        lines.append(f"{'scenario':30s} {'D_S':>9s} {'N_T':>9s} {'D_T':>9s} {'L_T':>7s} "
                     f"{'L_S':>7s}  better than supervised?")
        for pl in plans:
            lines.append(f"{pl.scenario:30s} {pl.student_tokens:9.3g} {pl.teacher_params:9.3g} "
                         f"{pl.teacher_tokens:9.3g} {pl.teacher_loss:7.4f} {pl.student_loss:7.4f}  "
                         f"{'yes' if pl.distillation_better else 'no'}")
        for pl in plans:
            if pl.note:
                lines.append(f"note ({pl.scenario}): {pl.note}")
    if plot is not None:
        # lazy: pulls in scipy (~0.4 s CPU); keeps `minidisc --help` fast
        from minidisc.scaling.plots import plot_isoflops

        first = _scenarios(scenario)[0]
        plot_isoflops(plot, student_params, [compute / 10, compute, compute * 10], first, p, fm)
        result["plot"] = str(plot)
    lines.extend(_flops_line(fm))
    _emit(result, as_json, "\n".join(lines))


# ----------------------------------------------------------------------------- crossover
@scaling_app.command(help=(
    'Find the compute C* above which supervised training of the student beats '
    'distillation (baseline: L(N_S, C/(3F(N_S))), the same student given the whole '
    'budget).'
))
def crossover(
    student_params: Annotated[float, typer.Option(
        "--student-params", help="N_S: student non-embedding parameters.")],
    scenario: Annotated[list[str] | None, typer.Option("--scenario", help=_SCENARIO_HELP)] = None,
    teacher: Annotated[str | None, typer.Option(
        "--teacher", help="Use this fixed existing teacher (PARAMS:LOSS) instead of the "
        "compute-optimal one (Eq. 27).")] = None,
    teacher_inference: Annotated[bool, typer.Option(
        "--teacher-inference/--no-teacher-inference",
        help="With --teacher: pay its forward passes on D_S.")] = True,
    min_compute: Annotated[float | None, typer.Option(
        "--min-compute", help="Scan from this budget (FLOPs); default: 1 token/param.")] = None,
    max_compute: Annotated[float | None, typer.Option(
        "--max-compute", help="Scan up to this budget (FLOPs); default: 1e4 tokens/param.")] = None,
    points: Annotated[int, typer.Option("--points", help="Log-spaced scan points.")] = 31,
    params: ParamsOpt = None,
    rho: RhoOpt = None,
    omega: OmegaOpt = None,
    n_ctx: NCtxOpt = None,
    n_vocab: NVocabOpt = None,
    bounds: BoundsOpt = (1e6, 1e17),
    as_json: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Write loss-vs-compute curves with the crossovers to this .png.")] = None,
) -> None:
    """Find the compute C* where distillation stops beating supervised training.

    Baseline: the same student (N_S) trained on the data alone with the whole budget,
    L(N_S, C/(3F(N_S))). Distillation: the compute-optimal plan of each scenario at the
    same C (or the given teacher). Every sign change of L_S* − L_sup is reported; C* is
    where it turns from negative to >= 0 when that is the only change. FLOPs use F(N) of
    Eq. 69: --rho/--omega/--n-ctx/--n-vocab, else --params', else the paper's.
    """
    # lazy: pulls in scipy (~0.4 s CPU); keeps `minidisc --help` fast
    from minidisc.scaling.plan import CandidateTeacher, find_crossover

    _positive(student_params, "--student-params")
    p = _load(params)
    fm = _flops_model(params, rho, omega, n_ctx, n_vocab)
    fixed = CandidateTeacher.parse(teacher) if teacher else None
    names = ["fixed-teacher"] if fixed else _scenarios(scenario)
    results = [
        find_crossover(student_params, "best-case" if fixed else name, p, fm,
                       min_compute=min_compute, max_compute=max_compute, n_points=points,
                       teacher=fixed, include_inference=teacher_inference,
                       bounds=_bounds(bounds))
        for name in names
    ]
    out: dict[str, Any] = {
        "student_params": student_params,
        "definition": ("crossings: where L_S*(C) - L(N_S, C/(3F(N_S))) changes sign; "
                       "C* (status 'crossover') where it turns from < 0 to >= 0 and stays; "
                       "L_S* is the compute-optimal distilled student at budget C"),
        "crossovers": [r.to_dict() for r in results],
        "flops_model": fm.to_dict(),
    }
    if plot is not None:
        # lazy: pulls in scipy (~0.4 s CPU); keeps `minidisc --help` fast
        from minidisc.scaling.plots import plot_crossover

        plot_crossover(plot, results)
        out["plot"] = str(plot)
    lines = []
    for r in results:
        if r.status == "crossover":
            tok = r.compute / (3.0 * _flops(student_params, fm))  # type: ignore[operator]
            lines.append(f"{r.scenario:30s} C* = {r.compute:.3e} FLOPs ({tok:.3g} student tokens,"
                         f" {tok / student_params:.3g} tokens/param): distil below, "
                         "supervised above")
        elif not r.crossings:
            lines.append(f"{r.scenario:30s} {r.status} in [{r.compute_grid[0]:.2e}, "
                         f"{r.compute_grid[-1]:.2e}] FLOPs")
        else:
            parts = [f"{who} better in [{a:.3e}, {b:.3e}]" for a, b, who in r.segments()]
            lines.append(f"{r.scenario:30s} {r.status}: {'; '.join(parts)} FLOPs")
    lines.extend(_flops_line(fm))
    _emit(out, as_json, "\n".join(lines))


def _flops(n: float, model) -> float:
    return float(forward_flops_per_token(n, model))


# ----------------------------------------------------------------------------- plot
@scaling_app.command("plot", help=(
    "Draw a scaling-law figure to a PNG file: 'teacher', 'isoflop' or 'map'."
))
def plot_cmd(
    kind: Annotated[str, typer.Argument(
        help="'teacher' (student vs teacher loss for several student sizes), 'isoflop' "
        "(student loss vs teacher size at fixed compute), or 'map' (distil-vs-supervised "
        "over student size x compute).")],
    out: Annotated[Path, typer.Option("--out", help="Output .png file.")],
    student_params: Annotated[list[float] | None, typer.Option(
        "--student-params", help="Student size(s): curves for 'teacher' (default 143M-7.75B), "
        "the student for 'isoflop' (default 1e9).")] = None,
    tokens_per_param: Annotated[float, typer.Option(
        "--tokens-per-param", help="'teacher': D_S = this x N_S.")] = 20.0,
    compute: Annotated[list[float] | None, typer.Option(
        "--compute", help="'isoflop': budgets in FLOPs (repeatable; default 1e19, 1e20, "
        "1e21, 1e22).")] = None,
    scenario: Annotated[str, typer.Option(
        "--scenario", help="Scenario for 'isoflop' and 'map' (see `plan --help`).")] = "best-case",
    resolution: Annotated[int, typer.Option(
        "--resolution", help="'map': grid points per axis (cost grows with its square).")] = 16,
    params: ParamsOpt = None,
    rho: RhoOpt = None,
    omega: OmegaOpt = None,
    n_ctx: NCtxOpt = None,
    n_vocab: NVocabOpt = None,
) -> None:
    """Draw a scaling-law figure to a PNG file ('isoflop' and 'map' count FLOPs with F(N)
    of Eq. 69: --rho/--omega/--n-ctx/--n-vocab, else --params', else the paper's)."""
    # lazy: pulls in scipy (~0.4 s CPU); keeps `minidisc --help` fast
    from minidisc.scaling import plots

    p = _load(params)
    fm = _flops_model(params, rho, omega, n_ctx, n_vocab)
    if scenario not in SCENARIO_NAMES:
        raise ConfigError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIO_NAMES)}")
    if kind == "teacher":
        sizes = student_params or [1.43e8, 5.46e8, 1.82e9, 7.75e9]
        plots.plot_student_vs_teacher(out, p, sizes, tokens_per_param)
    elif kind == "isoflop":
        n_s = (student_params or [1e9])[0]
        plots.plot_isoflops(out, n_s, compute or [1e19, 1e20, 1e21, 1e22], scenario, p, fm)
    elif kind == "map":
        if resolution < 2:
            raise ConfigError(f"--resolution must be >= 2, got {resolution}")
        plots.plot_distillation_map(out, scenario, p, fm, resolution=resolution)
    else:
        raise ConfigError(f"unknown plot kind {kind!r}; choose 'teacher', 'isoflop' or 'map'")
    typer.echo(f"wrote {out}")


# ----------------------------------------------------------------------------- simulate
@scaling_app.command(help=(
    'Write synthetic run records (20 supervised, 300 distillation) drawn from the laws '
    'plus noise, to try `minidisc scaling fit` on.'
))
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Runs file to write (.jsonl or .csv).")],
    noise: Annotated[float, typer.Option(
        "--noise", help="Relative noise on each loss (std. dev. of log L).")] = 0.005,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    params: ParamsOpt = None,
) -> None:
    """Write synthetic run records drawn from the laws plus noise (20 supervised and 300
    distillation runs), to try `minidisc scaling fit` on."""
    records = synthetic_records(_load(params), noise=noise, seed=seed)
    write_run_records(out, records)
    n_sup = sum(r.kind == "supervised" for r in records)
    typer.echo(f"wrote {len(records)} records ({n_sup} supervised, "
               f"{len(records) - n_sup} distillation) to {out}")
