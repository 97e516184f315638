"""``minidisc compare --task lm``: the baselines of decoder compression, on one teacher,
corpus, block size, seed and token budget, in one table.

Run directory::

    <out>/direct/ depth/ random/ takd/ minidisc/   one ``compress --task lm`` run per arm
                                                    (its own manifest: resumable alone)
    <out>/maxidisc/s<sparsity>/                     one TAKD run per candidate assistant
    <out>/pretrain/                                 a ``minidisc pretrain`` run (scratch)
    <out>/teacher-cache/                            the teacher-logit cache every arm reads
                                                    (with ``base.teacher_cache``)
    <out>/report.json report.md compare.png

The arms share what they compute alike: the first arm's ``teacher`` stage (the saved
teacher and its evaluation) serves every arm, and an arm's ``sparsified`` stage
(importance, reorder, map) is the first earlier arm's with the same estimator, levels
and depth cut; the later arms hold links (:func:`shared_stages`).

Each arm is a manifest stage of the comparison holding its row; an interrupted
comparison resumes inside the arm it was running (each arm's run resumes its own
stages). The arms (:data:`~minidisc.schedules.lm_compare_config.LM_ARMS`):

``direct``    ``base`` with one iteration: the importance-pruned teacher distilled
              straight into the target (``final_budget_tokens``).
``depth``     one iteration with ``drop_layers = round(target · L)``, uniform layer
              shapes whatever ``base`` has, and the target set to the sparsity of that
              depth cut alone (:func:`depth_cut`): Minitron's depth pruning, then
              distillation. (With ``layer_shapes = "depth"`` the ``direct`` arm prunes
              to the same depth, and ``takd``/``minidisc`` go through shallower
              assistants: :mod:`minidisc.elastic.depth_map`.)
``random``    ``direct`` with ``importance = random``.
``takd``      two iterations through a fixed assistant (``assistant``: plain
              distillation into it at ``sandwich_budget_tokens``, no λ-selection).
``minidisc``  ``base`` itself.
``maxidisc``  (asked for by name) ``takd`` through every candidate of MiniDisc's first
              iteration, one run each in ``maxidisc/s<sparsity>/``; its row is the best
              student (selection slice), its cost all the runs; the report adds the
              Spearman correlation of each assistant's λ-tradeoff with the student
              distilled through it (the selection check).
``pretrain``  the direct-KD student's exact shape (layers, width, heads, KV heads, head
              width, FFN units), random weights, causal-LM loss on the training corpus,
              for the training FLOPs of the direct-KD run (Bui et al. 2024,
              arXiv 2404.19319, asked of a decoder); then evaluated as every other
              student (:func:`minidisc.schedules.lm.evaluate_model`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.fileio import read_json
from minidisc.runfolder.run import REPORT_FILES, RunDir
from minidisc.schedules.lm_compare_config import LMCompareConfig
from minidisc.training.records import distillation_compute

if TYPE_CHECKING:
    from minidisc.pretrain.config import PretrainConfig
    from minidisc.schedules.lm_config import LMCompressConfig
    from minidisc.training.data import TaskData

__all__ = ["pretrain_config", "run_compare_lm", "shared_stages"]


def run_compare_lm(cfg: LMCompareConfig, output: str | Path, *, overwrite: bool = False,
                   cache_dir: str | Path | None = None) -> RunDir:
    """Run (or resume) every arm of ``cfg`` into ``output`` and write the table.

    Args:
        cache_dir: the teacher-logit cache shared by the arms when ``cfg.base.teacher_cache``
            is set (default ``teacher-cache/`` in the comparison).

    Raises:
        RunExistsError: ``output`` holds another run and ``overwrite`` is False.
        ConfigError, DataError, ModelError: invalid options, text or teacher (checked,
            with every arm's configuration, before the run folder is touched).
    """
    from minidisc.models import load_config
    from minidisc.runtime import configure
    from minidisc.schedules.lm import check_lm_inputs

    configure(cfg.base.precision)  # an impossible precision stops here, before anything is written
    source, _ = check_lm_inputs(cfg.base)
    teacher_config = load_config(source)
    arms = {name: cfg.arm_config(name, teacher_config) for name in cfg.schedules if name not in ("maxidisc", "pretrain")}
    run = RunDir(output, cfg, "compare", overwrite=overwrite)
    cache = Path(cache_dir) if cache_dir else run.path / "teacher-cache"
    paths = {a: cfg.takd_config(a) for a in cfg.maxidisc_assistants()} if "maxidisc" in cfg.schedules else {}
    shared = shared_stages([(run.path / name, arm) for name, arm in arms.items()]
                           + [(_path_folder(run.path, a), c) for a, c in paths.items()])
    for name, arm in arms.items():
        run.stage(name, lambda _root, name=name, arm=arm: _compress_arm(arm, run.path / name, cache, shared),
                  folder=False, outputs=(name,))
    if paths:
        run.stage("maxidisc", lambda _root: _maxidisc_arm(paths, run.path, cache, shared), folder=False,
                  outputs=("maxidisc",))
    if "pretrain" in cfg.schedules:
        run.stage("pretrain", lambda _root: _pretrain_arm(cfg, run), folder=False, outputs=("pretrain",))

    def report(_root: Path) -> dict[str, Any]:
        from minidisc.report.compare_lm import write_lm_compare_report

        written = write_lm_compare_report(run)
        return {"rows": [{k: r[k] for k in ("schedule", "dev_main", "cost_train_flops", "cost_multiple")}
                         for r in written["rows"]]}

    run.stage("report", report, folder=False, outputs=REPORT_FILES)
    run.finish()
    return run


def shared_stages(runs: list[tuple[Path, LMCompressConfig]]) -> dict[Path, dict[str, Path]]:
    """Which stages each arm's run links from an earlier arm's run instead of computing.

    ``runs`` are ``(folder, configuration)`` in the order they run. A ``teacher`` or
    ``sparsified`` stage is linked from the first earlier run whose configuration agrees on
    every input of that stage (:func:`_stage_inputs`). In a comparison every arm has the
    same teacher, text, seed and evaluation settings, so one teacher stage serves all and
    the arms that prune with the same estimator, levels and depth cut share one sparsified
    stage. That saves each of them the teacher's evaluation, the calibration pass and two
    float32 copies of the teacher on disk. The linked records are the first run's, so each
    arm's report reads as if it had run alone.

    Returns:
        ``{folder: {stage: folder of the run that computes it}}`` (empty for the runs that
        compute both stages themselves).
    """
    owners: dict[tuple[str, str], Path] = {}
    shared: dict[Path, dict[str, Path]] = {}
    for folder, arm in runs:
        shared[folder] = {}
        for stage in ("teacher", "sparsified"):
            owner = owners.setdefault((stage, _stage_inputs(stage, arm)), folder)
            if owner != folder:
                shared[folder][stage] = owner
    return shared


def _stage_inputs(stage: str, cfg: LMCompressConfig) -> str:
    """Everything of ``cfg`` the ``teacher`` or ``sparsified`` stage of
    :func:`~minidisc.schedules.lm.run_compress_lm` reads, as one canonical string. A field
    those stages start to read must be added here, or arms that differ in it would share."""
    read = {"teacher", "corpus", "sandwich", "precision", "prompt", "new_tokens"}
    if stage == "sparsified":  # computed from the teacher stage's saved teacher
        read |= {"importance", "layer_shapes", "drop_layers"}
    inputs = cfg.model_dump(mode="json", include=read)
    if stage == "sparsified":
        inputs["levels"] = sorted(cfg.levels())
    return json.dumps(inputs, sort_keys=True)


def _compress_arm(arm_cfg: LMCompressConfig, out: Path, cache: Path, shared: dict[Path, dict[str, Path]]) -> dict[str, Any]:
    """One ``compress --task lm`` arm; returns its summary for the comparison's manifest."""
    from minidisc.schedules.lm import run_compress_lm

    sub = run_compress_lm(arm_cfg, out, cache_dir=cache if arm_cfg.teacher_cache else None, shared=shared[out])
    student = sub.record("student")
    return {"run": str(out), "selection": student["selection"],
            "heldout": {c: h["perplexity"] for c, h in student["heldout"].items()}}


def _path_folder(root: Path, assistant: float) -> Path:
    return root / "maxidisc" / f"s{assistant:g}"


def _maxidisc_arm(paths: dict[float, LMCompressConfig], root: Path, cache: Path,
                  shared: dict[Path, dict[str, Path]]) -> dict[str, Any]:
    """TAKD through each of MiniDisc's candidate assistants (``maxidisc/s<sparsity>/``, each
    a ``compress --task lm`` run with a fixed assistant); returns the paths' summaries."""
    return {"paths": [{"assistant": a, **_compress_arm(c, _path_folder(root, a), cache, shared)}
                      for a, c in paths.items()]}


# --- the from-scratch arm -----------------------------------------------------------------


def pretrain_config(cfg: LMCompareConfig, student_dir: Path, flops: float) -> PretrainConfig:
    """The ``minidisc pretrain --strategy scratch`` configuration of the from-scratch arm:
    the exact shape of the student saved in ``student_dir`` (the direct-KD student: an
    ordinary config: uniform or depth layer shapes), the comparison's corpus, block size and seed,
    batches of the final stage's size, and a budget of ``flops`` training FLOPs.

    The pretrain run holds out its own last ``selection_blocks`` blocks for its loss
    curve; the table scores this student as every other (selection slice, held-out
    corpora).
    """
    from minidisc.elastic.families import family_for
    from minidisc.models import ModelSource, load_config
    from minidisc.pretrain.config import PretrainConfig
    from minidisc.tasks.plaintext import corpus_files

    config = load_config(ModelSource(str(student_dir)))
    geo = family_for(config).geometry(config)
    b, c = cfg.base, cfg.base.corpus
    local = all(Path(p).exists() for p in c.train)
    train = [str(p) for p in corpus_files(c.train)] if local else list(c.train)
    return PretrainConfig(
        teacher=b.teacher, strategy="scratch",
        student={"layers": geo.num_layers, "hidden": geo.hidden_size, "heads": geo.num_heads,
                 "kv_heads": geo.num_kv_heads, "head_dim": geo.head_dim, "ffn": geo.intermediate_size},
        corpus={"train": train, "hub_config": c.hub_config, "split": c.split, "text_column": c.text_column,
                "block_size": c.block_size, "eval_blocks": c.selection_blocks},
        budget={"flops": float(flops)},
        optim={"batch_size": b.final.batch_size, "learning_rate": cfg.pretrain_learning_rate, "seed": b.sandwich.seed},
        precision=b.precision,
    )


def _pretrain_arm(cfg: LMCompareConfig, run: RunDir) -> dict[str, Any]:
    """Train the from-scratch arm (resumable ``pretrain`` run in ``<out>/pretrain``) and
    evaluate its student as :func:`minidisc.schedules.lm.evaluate_model` does."""
    from minidisc.models import ModelSource, load_for_task
    from minidisc.pretrain.run import run_pretrain
    from minidisc.schedules.lm import evaluate_model

    direct = run.path / "direct"
    flops = distillation_compute(read_json(direct / "manifest.json")["stages"])["train_flops"]
    out = run.path / "pretrain"
    sub = run_pretrain(pretrain_config(cfg, direct / "student", flops), out)
    data = _task_data(cfg, read_json(direct / "manifest.json")["stages"]["teacher"]["selection"]["nll"])
    model = load_for_task(ModelSource(str(out / "student")), data.task)
    evaluation = evaluate_model(model, data, cfg.base, out / ".eval")
    shutil.rmtree(out / ".eval", ignore_errors=True)
    return {"run": str(out), "budget_flops": flops, "compute": sub.record("student")["compute"],
            "evaluation": evaluation}


def _task_data(cfg: LMCompareConfig, reference_loss: float) -> TaskData:
    """The comparison's text slices (the same as every arm's: same corpus, block size and
    seed), with the teacher's selection loss as the metric's reference."""
    from minidisc.models import load_tokenizer, resolve_model
    from minidisc.schedules.lm import with_reference_loss
    from minidisc.schedules.lm_data import prepare_lm_data

    tokenizer = load_tokenizer(resolve_model(cfg.base.teacher))
    data, _ = prepare_lm_data(cfg.base, tokenizer, seed=cfg.base.sandwich.seed)
    return with_reference_loss(data, reference_loss)
