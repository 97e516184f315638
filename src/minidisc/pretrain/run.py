"""``minidisc pretrain``: one arm of the fixed-budget comparison in a resumable run directory.

Stages (:class:`~minidisc.runfolder.run.RunDir`):

``teacher``   (distillation arms) held-out LM loss of the teacher on the same held-out
              blocks (and MLM masks) the student is scored on.
``student``   train until the budget is spent (checkpoints in ``checkpoints/`` every
              ``checkpoint_steps`` steps; an interrupted run resumes from the last one),
              save ``student/`` (safetensors + config + tokenizer).
``report``    ``report.json``, ``report.md``, ``loss.png``.
``log-runs …`` (with ``log_runs``) one record appended to a runs file, once per file.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.compute.flops import non_embedding_params
from minidisc.config import TrainConfig
from minidisc.elastic.families import family_for
from minidisc.errors import ConfigError
from minidisc.models import load_config, load_tokenizer, resolve_model
from minidisc.objectives import build_objective
from minidisc.pretrain.budget import BudgetCallback, CostModel, plan_budget
from minidisc.pretrain.config import PretrainConfig
from minidisc.pretrain.data import (
    CausalStream,
    MaskedStream,
    causal_heldout_batch,
    heldout_batch,
    load_corpora,
)
from minidisc.pretrain.evaluate import (
    PROGRESS_FILE,
    LossCurve,
    heldout_lm_loss,
    masked_count,
    scored_count,
)
from minidisc.pretrain.report import (
    RECORD_KINDS,
    pretrain_tokens_of,
    run_record,
    unrecordable_message,
    write_report,
)
from minidisc.pretrain.student import (
    build_student,
    config_has_lm_head,
    load_teacher,
    set_unigram_bias,
)
from minidisc.pretrain.trainer import PretrainDistillationTrainer, ScratchTrainer
from minidisc.runfolder.run import REPORT_FILES, RunDir
from minidisc.runtime import configure
from minidisc.scaling.records import append_run_record
from minidisc.seeding import seed_everything
from minidisc.tasks.lm_types import MASKED_LM, LMType, check_strategy, lm_type_of
from minidisc.training.arguments import training_arguments
from minidisc.training.checkpoints import verify_checkpoint

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

    from minidisc.elastic.families import Geometry
    from minidisc.models import ModelSource
    from minidisc.objectives import Objective
    from minidisc.pretrain.budget import BudgetPlan
    from minidisc.pretrain.data import BlockStream, Corpora
    from minidisc.pretrain.student import LoadedTeacher

#: Strategies whose loss trains the LM head, so that a held-out LM loss means something.
TRAINS_LM_HEAD = ("scratch", "kd", "distilbert", "pkd")


def head_modes(objective: Objective | None, lm: LMType = MASKED_LM) -> tuple[str, str]:
    """``(student, teacher)`` LM-head modes of an arm (see :mod:`minidisc.pretrain.budget`).

    The head runs where the loss reads logits: MLM scratch (cross-entropy) on the masked
    positions; a logit-reading objective where its ``positions`` option selects -- the
    masked positions for ``"auto"`` (its KD and MLM terms average over them), every
    position for ``"all"``; general-distillation objectives without a prediction loss
    (TinyBERT, MiniLM, MiniLMv2) run no head at all. Hidden-state and attention terms
    read the encoder's outputs and do not need the head. A causal LM predicts the next
    token at every position: its heads always run on all of them.
    """
    if lm.causal:
        return "all", ("all" if objective is not None else "none")
    if objective is None:
        return "masked", "none"
    if not objective.needs_logits:
        return "none", "none"
    mode = "all" if objective.positions == "all" else "masked"
    return mode, mode


@dataclass
class Arm:
    """Everything an arm needs before training: models, data, objective, costs, plan."""

    cfg: PretrainConfig
    source: ModelSource
    lm: LMType
    tokenizer: PreTrainedTokenizerBase
    corpora: Corpora
    heldout: dict[str, Any]
    teacher: LoadedTeacher | None
    teacher_config: Any
    student: PreTrainedModel
    layers_from: list[int] | None
    objective: Objective | None
    cost: CostModel
    plan: BudgetPlan
    stream: BlockStream


def reads_teacher_logits(cfg: PretrainConfig, lm: LMType = MASKED_LM) -> bool:
    """Whether the arm's loss reads the teacher's LM logits (KD, DistilBERT, PKD).

    Raises:
        ConfigError: unknown objective options.
    """
    if not cfg.distills:
        return False
    return build_objective(cfg.strategy, task_type=lm.name, **cfg.objective_options).needs_logits


def untrained_head_error(cfg: PretrainConfig, label: str, lm: LMType = MASKED_LM) -> ConfigError:
    """The refusal to distil logits from a teacher whose LM head is not trained."""
    if lm.causal:
        return ConfigError(
            f"--strategy {cfg.strategy} distils the teacher's next-token logits, but {label} has no trained "
            "causal-LM head (a bare decoder with untied output embeddings: its lm_head would be randomly "
            "initialised, and the student would learn from noise). Pass the checkpoint saved with its head "
            "(…ForCausalLM), or --allow-untrained-teacher-head to distil from the random head anyway"
        )
    return ConfigError(
        f"--strategy {cfg.strategy} distils the teacher's MLM logits, but {label} has no trained MLM head "
        "(the checkpoint is a bare encoder; its head would be randomly initialised, and the student would "
        "learn from noise). Warm the head up first (docs/pretrain.md, 'Warming up a teacher's MLM head': "
        "minidisc pretrain --strategy scratch --init-from-teacher all --freeze-encoder --head-bias-from-corpus "
        "...) and pass its RUN/student as --teacher, or pass --allow-untrained-teacher-head to distil from "
        "the random head anyway"
    )


def check_teacher_head(cfg: PretrainConfig, allow_untrained: bool = False) -> None:
    """Refuse, from the teacher's config alone, to distil logits from a checkpoint saved
    without its LM head (the packaged all-MiniLM-L6-v2 is one). Checkpoints whose config
    does not say are checked again after loading (:func:`prepare_arm`).

    Raises:
        ConfigError: see :func:`untrained_head_error`.
        ModelError: the teacher's config cannot be read.
    """
    if allow_untrained or not cfg.distills:
        return
    source = resolve_model(cfg.teacher)
    config = load_config(source)
    lm = lm_type_of(config)
    if reads_teacher_logits(cfg, lm) and config_has_lm_head(config, lm) is False:
        raise untrained_head_error(cfg, source.label or str(source.path), lm)


def check_arm(cfg: PretrainConfig) -> LMType:
    """The arm's LM type, after refusing what it cannot train -- from the teacher's config
    alone, before anything is loaded or written.

    Decoders (causal LM) accept only ``scratch`` and ``kd``
    (:func:`minidisc.tasks.lm_types.check_strategy`) and no MLM-head options
    (``freeze_encoder``, ``head_bias_from_corpus``).

    Raises:
        ConfigError: a strategy or student option the LM type does not support.
        ModelError: the teacher's config cannot be read or its architecture is unsupported.
    """
    source = resolve_model(cfg.teacher)
    lm = lm_type_of(load_config(source))
    check_strategy(cfg.strategy, lm, source.label or str(source.path))
    if lm.causal:
        for flag, name in ((cfg.student.freeze_encoder, "--freeze-encoder"),
                           (cfg.student.head_bias_from_corpus, "--head-bias-from-corpus")):
            if flag:
                raise ConfigError(
                    f"{name} prepares an MLM head (encoders); a decoder's lm_head is trained with the rest "
                    "(and has no bias): drop it"
                )
    return lm


def prepare_arm(cfg: PretrainConfig, allow_untrained_teacher_head: bool = False) -> Arm:
    """Load teacher, tokenizer and corpora, build the student and objective, plan the budget.

    Args:
        cfg: the arm.
        allow_untrained_teacher_head: distil logits even from a teacher whose MLM head was
            not in its checkpoint (randomly initialised).

    Raises:
        ConfigError: bad options, or logit distillation from an untrained teacher head.
        DataError, ModelError: bad data or models.
    """
    seed_everything(cfg.optim.seed)  # before a missing teacher head or the student is drawn
    lm = check_arm(cfg)
    source = resolve_model(cfg.teacher)
    needs_weights = cfg.distills or bool(cfg.student.init_from_teacher)
    teacher = load_teacher(source, cfg.optim.seed, lm) if needs_weights else None
    if (teacher is not None and teacher.head_is_fresh and not allow_untrained_teacher_head
            and reads_teacher_logits(cfg, lm)):
        raise untrained_head_error(cfg, source.label or str(source.path), lm)
    tokenizer = load_tokenizer(source)
    corpora = load_corpora(cfg.corpus, tokenizer)
    heldout = _heldout(cfg, lm, corpora, tokenizer)
    teacher_config = teacher.model.config if teacher else load_config(source)
    student, layers_from = build_student(
        teacher_config, cfg.student, cfg.optim.seed, teacher.model if teacher else None
    )
    if cfg.student.head_bias_from_corpus:
        set_unigram_bias(student, corpora.train, list(tokenizer.all_special_ids))
    objective = None
    if cfg.distills:
        objective = build_objective(
            cfg.strategy,
            task_type=lm.name,
            student_config=student.config,
            teacher_config=teacher_config,
            **cfg.objective_options,
        )
    s_head, t_head = head_modes(objective, lm)
    cost = CostModel(
        student.config,
        teacher_config if cfg.distills else None,
        s_head,
        t_head,
        frozen_encoder=cfg.student.freeze_encoder,
    )
    planning = _stream(cfg, lm, corpora, tokenizer, rows=sys.maxsize)
    plan = plan_budget(
        cost, getattr(planning, "masked_count", None), kind=cfg.budget.kind, budget=cfg.budget.value,
        block_size=cfg.corpus.block_size, batch_size=cfg.optim.batch_size,
    )
    stream = _stream(cfg, lm, corpora, tokenizer, rows=plan.rows, last_tokens=plan.last_tokens)
    return Arm(cfg, source, lm, tokenizer, corpora, heldout, teacher, teacher_config, student, layers_from,
               objective, cost, plan, stream)


def _stream(
    cfg: PretrainConfig, lm: LMType, corpora: Corpora, tokenizer: PreTrainedTokenizerBase, rows: int,
    last_tokens: int = 0,
) -> BlockStream:
    """The training stream of the arm's LM type (masked or not), seeded by ``optim.seed``."""
    if lm.causal:
        return CausalStream(corpora.train, tokenizer, cfg.optim.seed, rows=rows, last_tokens=last_tokens)
    return MaskedStream(corpora.train, tokenizer, cfg.corpus.mlm_probability, cfg.optim.seed, rows=rows,
                        last_tokens=last_tokens)


def _heldout(cfg: PretrainConfig, lm: LMType, corpora: Corpora, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The held-out batch every arm (and the teacher) is scored on."""
    if lm.causal:
        return causal_heldout_batch(corpora.heldout, tokenizer)
    return heldout_batch(corpora.heldout, tokenizer, cfg.corpus.mlm_probability, cfg.corpus.eval_seed)


def run_pretrain(
    cfg: PretrainConfig,
    output: str | Path,
    *,
    overwrite: bool = False,
    log_runs: str | Path | None = None,
    allow_untrained_teacher_head: bool = False,
    callbacks: Sequence[TrainerCallback] = (),
) -> RunDir:
    """Run (or resume) one pretraining arm into ``output``; return the run.

    Args:
        cfg: the arm.
        output: run directory.
        overwrite: replace another run in ``output``.
        log_runs: append one record (:mod:`minidisc.scaling.records`) to this runs file.
        allow_untrained_teacher_head: let KD/DistilBERT/PKD distil from a teacher whose
            checkpoint has no MLM head (its head is then random); refused otherwise.
        callbacks: extra Trainer callbacks (tests use them to interrupt a run).

    Raises:
        RunExistsError: ``output`` holds another run and ``overwrite`` is False.
        ConfigError: ``log_runs`` for an arm without a runs-file record kind (only
            scratch and vanilla KD: see :data:`minidisc.pretrain.report.RECORD_KINDS`);
            logit distillation from an untrained teacher head; a strategy or option the
            teacher's LM type does not support (all before anything is written).
        DataError, ModelError: bad corpus or models.
    """
    if log_runs is not None and cfg.strategy not in RECORD_KINDS:
        raise ConfigError(unrecordable_message(cfg.strategy))
    configure(cfg.precision)  # an impossible precision stops here, before anything is written
    check_arm(cfg)
    check_teacher_head(cfg, allow_untrained_teacher_head)
    run = RunDir(output, cfg, "pretrain", overwrite=overwrite)
    prepared: list[Arm] = []

    def arm() -> Arm:  # models and data load only if a stage still has to run
        if not prepared:
            prepared.append(prepare_arm(cfg, allow_untrained_teacher_head))
        return prepared[0]

    if cfg.distills:
        run.stage("teacher", lambda root: _teacher_stage(arm()), folder=False)
    run.stage("student", lambda tmp: _student_stage(arm(), run.path / "checkpoints", tmp, callbacks))
    run.stage("report", lambda root: _report_stage(run), folder=False, outputs=REPORT_FILES)
    if log_runs is not None:
        key = str(Path(log_runs).resolve())
        run.stage(f"log-runs {key}", lambda root: _log_stage(run, key), folder=False)
    run.finish()
    return run


# --- stages ----------------------------------------------------------------------------


def _teacher_stage(arm: Arm) -> dict[str, Any]:
    assert arm.teacher is not None
    return {
        "source": arm.source.label,
        "heldout_loss": heldout_lm_loss(arm.teacher.model, arm.heldout, arm.cfg.optim.batch_size, arm.lm),
        "head_fresh": arm.teacher.head_is_fresh,
        "missing_keys": arm.teacher.missing_keys,
        "non_embedding_params": non_embedding_params(arm.teacher_config),
    }


def training_args(cfg: PretrainConfig, plan: BudgetPlan, folder: Path) -> Any:
    """TrainingArguments of every arm: the shared builder
    (:func:`minidisc.training.arguments.training_arguments`: AdamW, linear schedule with
    warmup ratio, clipping, seed) with ``max_steps`` from the plan, stream order
    (no shuffling: the stream is already ordered), no Trainer evaluation, and full
    (resumable) checkpoints."""
    o = cfg.optim
    train_cfg = TrainConfig(
        max_steps=plan.steps, batch_size=o.batch_size, eval_batch_size=o.batch_size,
        learning_rate=o.learning_rate, warmup_ratio=o.warmup_ratio, weight_decay=o.weight_decay,
        max_grad_norm=o.max_grad_norm, eval_steps=None, patience=None, seed=o.seed,
    )
    args = training_arguments(train_cfg, folder, keep_best_checkpoint=False)
    return dataclasses.replace(
        args,
        eval_strategy="no",
        save_strategy="steps",
        save_steps=cfg.checkpoint_steps,
        save_total_limit=1,
        save_only_model=False,
        train_sampling_strategy="sequential",
        dataloader_drop_last=False,
        logging_steps=max(1, plan.steps // 10),
    )


def eval_interval(cfg: PretrainConfig, plan: BudgetPlan) -> int:
    """Held-out evaluation interval in tokens: the configured one, else whole batches
    giving about 8 evaluations."""
    if cfg.eval_every_tokens:
        return cfg.eval_every_tokens
    per_step = plan.batch_size * plan.block_size
    return per_step * max(1, math.ceil(plan.steps / 8))


def last_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-N`` in ``folder`` that has its progress file, if any."""
    if not folder.is_dir():
        return None
    found = [p for p in folder.glob("checkpoint-*") if (p / PROGRESS_FILE).is_file()]
    found = [p for p in found if p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _student_stage(arm: Arm, checkpoints: Path, out: Path, callbacks: Sequence[Any]) -> dict[str, Any]:
    from transformers import default_data_collator

    cfg, plan = arm.cfg, arm.plan
    seed_everything(cfg.optim.seed)
    holder: dict[str, Any] = {}
    meter = lambda: holder["trainer"].meter
    curve = LossCurve(arm.student, arm.heldout, eval_interval(cfg, plan), meter, arm.cost, cfg.optim.batch_size,
                      arm.lm)
    budget = BudgetCallback(plan, meter)
    common: dict[str, Any] = {
        "model": arm.student,
        "args": training_args(cfg, plan, checkpoints),
        "train_dataset": arm.stream,
        "data_collator": default_data_collator,
        "processing_class": arm.tokenizer,
        "callbacks": [budget, curve, *callbacks],
        "cost": arm.cost,
        "lm": arm.lm,
        "stage": "student",
        "log_dir": out / "logs",
    }
    if arm.objective is None:
        trainer = ScratchTrainer(**common, frozen_encoder=cfg.student.freeze_encoder)
    else:
        assert arm.teacher is not None
        trainer = PretrainDistillationTrainer(**common, teacher=arm.teacher.model, objective=arm.objective)
    holder["trainer"] = trainer
    trainer.loss_sink = curve.record_train_loss
    resume = last_checkpoint(checkpoints)
    if resume is None and checkpoints.exists():
        shutil.rmtree(checkpoints)  # leftovers without progress cannot be resumed
    if resume is not None:
        verify_checkpoint(resume)  # a corrupted file: say which folder to delete, now
        curve.restore(resume, trainer.meter)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    arm.student.save_pretrained(out)
    arm.tokenizer.save_pretrained(out)
    totals = trainer.meter.totals
    shutil.rmtree(checkpoints, ignore_errors=True)
    wall = curve.wall_time_s
    compute = {
        "train_flops": totals.train_flops,
        "student_flops": totals.student_train_flops,
        "teacher_flops": totals.teacher_forward_flops,
        "eval_flops": totals.eval_flops,
        "tokens": totals.tokens,
        "sequences": totals.sequences,
        "steps": trainer.state.global_step,
        "corpus_tokens": arm.corpora.train_tokens,
        "epochs": totals.tokens / arm.corpora.train_tokens,
        "wall_time_s": wall,
        "teacher_time_s": totals.teacher_time_s,
        "eval_time_s": curve.eval_time_s,
        "student_time_s": wall - totals.teacher_time_s - curve.eval_time_s,
        "matches_plan": bool(budget.matches_plan),
        "resumed_from": resume.name if resume else None,
    }
    return {"arm": describe_arm(arm), "compute": compute, "plan": plan.to_dict(), "curve": curve.points,
            "final_loss": curve.points[-1]["loss"]}


def describe_arm(arm: Arm) -> dict[str, Any]:
    """JSON-ready facts of an arm for the report and the runs file."""
    s = arm.student.config
    s_geo = _geometry(s)
    student = {
        "layers": s_geo.num_layers, "hidden": s_geo.hidden_size, "heads": s_geo.num_heads,
        "kv_heads": s_geo.num_kv_heads, "ffn": s_geo.intermediate_size, "vocab": s_geo.vocab_size,
        "non_embedding_params": non_embedding_params(s),
        "total_params": sum(p.numel() for p in arm.student.parameters()),
        "init_from_teacher_layers": arm.layers_from,
        "frozen_encoder": arm.cfg.student.freeze_encoder,
    }
    t = arm.teacher_config
    t_geo = _geometry(t)
    tokens, tokens_note = pretrain_tokens_of(arm.source.path)
    teacher = {
        "source": arm.source.label, "layers": t_geo.num_layers, "hidden": t_geo.hidden_size,
        "heads": t_geo.num_heads, "kv_heads": t_geo.num_kv_heads, "non_embedding_params": non_embedding_params(t),
        "used": arm.cfg.distills, "pretrain_tokens": tokens, "pretrain_tokens_note": tokens_note,
    }
    data = {
        "train_blocks": len(arm.corpora.train), "heldout_blocks": len(arm.corpora.heldout),
        "heldout_scored_tokens": scored_count(arm.heldout, arm.lm), "block_size": arm.cfg.corpus.block_size,
        "corpus_tokens": arm.corpora.train_tokens,
    }
    if not arm.lm.causal:
        data["heldout_masked_tokens"] = masked_count(arm.heldout)
    return {
        "strategy": arm.cfg.strategy,
        "lm_type": arm.lm.name,
        "objective_name": arm.objective.name if arm.objective is not None else None,
        "objective": repr(arm.objective) if arm.objective is not None else None,
        "mlm_head_trained": arm.cfg.strategy in TRAINS_LM_HEAD,
        "head_modes": {"student": arm.cost.student_head, "teacher": arm.cost.teacher_head},
        "student": student,
        "teacher": teacher,
        "data": data,
    }


def _geometry(config: Any) -> Geometry:
    """Sizes of a model (key/value heads = query heads without grouped-query attention),
    as its architecture family reads them."""
    return family_for(config).geometry(config)


def _report_stage(run: RunDir) -> dict[str, Any]:
    write_report(run)
    return {}


def _log_stage(run: RunDir, path: str) -> dict[str, Any]:
    record = run_record(run)
    append_run_record(path, record)
    return {"record": record.to_dict()}
