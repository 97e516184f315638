"""Validated configuration of ``minidisc compress --task lm`` (a decoder LLM compressed on
plain text; :mod:`minidisc.schedules.lm`).

Token budgets replace epochs: every distillation stage (each sandwich iteration, the
final distillation) trains on ``budget_tokens`` tokens of packed blocks, unless
``sandwich_budget_tokens`` / ``final_budget_tokens`` say otherwise. The λ-tradeoff,
sparsity grid, truncation and iterations mean what they mean for GLUE
(:class:`~minidisc.config.CompressConfig`).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from minidisc.config import TrainConfig, WithPrecision, WithSandwichRule, check_grid
from minidisc.elastic.levels import at_or_above, level
from minidisc.elastic.spec import shape_conflict

#: Causal-LM distillation objectives ``--objective`` accepts for ``--task lm``.
LM_OBJECTIVES: tuple[str, ...] = ("forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl")

#: The default sparsity grid of a decoder: eighths, so a 50 % target has denser
#: candidates (25 %, 37.5 %) to choose an assistant from, and few candidates per step.
DEFAULT_LM_GRID: tuple[float, ...] = (0.0, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)

#: The prompt every model of a run continues greedily in the report.
DEFAULT_PROMPT = "The old man looked at the sea and said"

#: The optimisation of a distillation stage on text (AdamW, linear decay, 10 % warmup).
LM_STAGE = TrainConfig(
    epochs=1.0, batch_size=8, eval_batch_size=8, learning_rate=1e-4, max_grad_norm=1.0, patience=None
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LMCorpusConfig(_Strict):
    """Training text, the slices carved from it, and the held-out reporting text.

    The training corpus is packed into blocks of ``block_size`` tokens; a seeded random
    ``selection_blocks`` of them are held out as the **selection slice** (the λ-tradeoff's
    metric; never trained on), and ``calibration_blocks`` of the rest score importance.
    ``eval`` files are for the report only (perplexity, bits per byte): nothing is
    selected on them.
    """

    train: tuple[str, ...] = Field(..., min_length=1, description="text files, folders of .txt files, or one hub dataset name")
    hub_config: str | None = Field(None, description="hub dataset configuration (hub corpora only)")
    split: str | None = Field(None, description="hub split (default 'train')")
    text_column: str = "text"
    eval: tuple[str, ...] = Field((), description="held-out text files/folders for the report (not for selection)")
    block_size: int = Field(128, ge=8, le=8192, description="tokens per training block, special tokens included")
    selection_blocks: int = Field(16, ge=1, description="training blocks held out as the selection slice")
    calibration_blocks: int = Field(32, ge=1, description="training blocks that score importance")
    eval_max_tokens: int | None = Field(None, ge=1, description="score only the first N tokens of the eval corpora")


class LMTeacherCacheConfig(_Strict):
    """The teacher-logit cache (:mod:`minidisc.training.lm_teacher_cache`): stages whose
    teacher is the run's teacher distil from its top-k log-probabilities plus one tail
    bucket, computed once per training block (:mod:`minidisc.objectives.topk`). Part of
    the config because it changes the loss (an approximation of the full-vocabulary one)."""

    top_k: int = Field(64, ge=1, description="words kept per position; the rest is one tail bucket")
    dtype: Literal["float16", "bfloat16", "float32"] = Field("float16", description="storage dtype of the log-probabilities")
    # 64 by measurement (benchmarks/lm_teacher_cache.py, docs/lm.md): one bucket ended 1.7-6.1 % above online
    # distillation's perplexity in both seeds, 64 samples +0.9 % and -3.3 %
    tail_samples: int = Field(64, ge=0, description="tail words sampled per position: an unbiased forward KL "
                              "(0: one tail bucket, the only form of the other divergences)")

    @model_serializer(mode="wrap")
    def _without_default_samples(self, handler: Any) -> dict[str, Any]:
        # 0 (one bucket) is left out: the config of a cached run from before the option reads as
        # it did, and such a run resumes with --cache-tail-samples 0 (with the default 64 its
        # config differs, as its loss would: it is refused, not silently changed)
        data = handler(self)
        return {k: v for k, v in data.items() if not (k == "tail_samples" and v == 0)}


class LMCompressConfig(_Strict, WithSandwichRule, WithPrecision):
    """``minidisc compress --task lm``: MiniDisc on a decoder LLM, recovered on plain text."""

    task: Literal["lm"] = "lm"
    teacher: str = Field("smollm2", description="a LLaMA-family causal LM: folder, .gguf, hub id or smollm2")
    corpus: LMCorpusConfig
    target_sparsity: float = Field(0.5, gt=0, lt=1)
    lam: float = Field(0.2, ge=0)
    iterations: int = Field(2, ge=1, le=10)
    truncation: float = Field(0.25, ge=0, lt=1, description="candidates below this sparsity are not trained")
    grid: tuple[float, ...] = DEFAULT_LM_GRID
    importance: str = Field("activation", description="importance estimator (minidisc.elastic.estimators.METHODS)")
    layer_shapes: str = Field("uniform", description="uniform: one size for every layer; global: per-layer sizes; "
                              "depth: whole layers removed, full width")
    drop_layers: int = Field(0, ge=0, description="layers of least block importance removed whole (uniform shapes)")
    objective: str = Field("forward_kl", description="causal-LM distillation loss (LM_OBJECTIVES)")
    objective_options: dict[str, float | int | str | bool] = Field(default_factory=lambda: {"temperature": 1.0})
    budget_tokens: int = Field(200_000, gt=0, description="training tokens of every distillation stage")
    sandwich_budget_tokens: int | None = Field(None, gt=0, description="default: budget_tokens")
    final_budget_tokens: int | None = Field(None, gt=0, description="default: budget_tokens")
    evaluations: int = Field(4, ge=1, description="selection evaluations per stage when eval_steps is unset")
    sandwich: TrainConfig = LM_STAGE
    final: TrainConfig = LM_STAGE
    prompt: str = Field(DEFAULT_PROMPT, min_length=1, description="prompt of the report's greedy continuations")
    new_tokens: int = Field(32, ge=1, le=512, description="tokens each model adds to the prompt")
    save_candidates: bool = False
    teacher_cache: LMTeacherCacheConfig | None = Field(None, description="distil from the cached top-k + tail (None: online, full vocabulary)")
    assistant: float | None = Field(
        None, gt=0, lt=1, description="a fixed teacher assistant (TAKD, no λ-selection): iteration 1 distils the "
        "teacher into this sparsity alone, iteration 2 the assistant into the target; needs iterations 2")
    note: str | None = None

    # the cache is left out when off, so a run's config (manifest, config.yaml, stage
    # fingerprints) reads as it did before the cache existed: older runs still resume
    omitted_in_dump: ClassVar[dict[str, Any]] = {
        **WithPrecision.omitted_in_dump, **WithSandwichRule.omitted_in_dump, "teacher_cache": None, "assistant": None}

    @field_validator("sandwich", "final", mode="before")
    @classmethod
    def _over_lm_stage(cls, value: Any) -> Any:
        # A partial stage (``sandwich: {learning_rate: …}`` in YAML, or only the options
        # given on the command line) overlays the text defaults, not TrainConfig's GLUE ones
        # (batch 32, 128-row evaluation batches: 3 GB of logits per batch on a 49k vocabulary).
        if isinstance(value, dict):
            return {**LM_STAGE.model_dump(), **value}
        return value

    @field_validator("grid")
    @classmethod
    def _grid_fractions(cls, grid: tuple[float, ...]) -> tuple[float, ...]:
        return check_grid(grid)

    @field_validator("importance")
    @classmethod
    def _known_importance(cls, value: str) -> str:
        from minidisc.elastic.estimators import METHODS  # lazy: pulls in torch; keeps `--help` fast

        if value not in METHODS:
            raise ValueError(f"unknown importance {value!r}; choose one of {', '.join(METHODS)}")
        return value

    @field_validator("layer_shapes")
    @classmethod
    def _known_shapes(cls, value: str) -> str:
        if problem := shape_conflict(value):
            raise ValueError(problem)
        return value

    @field_validator("objective")
    @classmethod
    def _causal_objective(cls, value: str) -> str:
        if value not in LM_OBJECTIVES:
            raise ValueError(
                f"objective {value!r} is not a causal-LM distillation loss; for --task lm choose one of "
                f"{', '.join(LM_OBJECTIVES)}"
            )
        return value

    @model_validator(mode="after")
    def _shape_options(self) -> LMCompressConfig:
        if problem := shape_conflict(self.layer_shapes, self.drop_layers):
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _sampled_tail_needs_forward_kl(self) -> LMCompressConfig:
        if self.teacher_cache is not None and self.teacher_cache.tail_samples and self.objective != "forward_kl":
            raise ValueError(
                f"a sampled tail (teacher_cache.tail_samples {self.teacher_cache.tail_samples}) estimates the forward "
                f"KL only, not {self.objective!r}; use --objective forward_kl or --cache-tail-samples 0"
            )
        return self

    @model_validator(mode="after")
    def _target_above_truncation(self) -> LMCompressConfig:
        if self.target_sparsity < self.truncation:
            raise ValueError(
                f"target_sparsity {self.target_sparsity} is below truncation {self.truncation}; lower --truncation"
            )
        return self

    @model_validator(mode="after")
    def _assistant_between_teacher_and_target(self) -> LMCompressConfig:
        if self.assistant is None:
            return self
        if not self.assistant < self.target_sparsity:
            raise ValueError(f"assistant {self.assistant} must be less sparse than target_sparsity {self.target_sparsity}")
        if self.iterations != 2:
            raise ValueError(f"a fixed assistant takes iterations 2 (teacher → assistant → target), not {self.iterations}")
        return self

    # --- what CompressConfig offers the shared iteration loop --------------------------
    def levels(self) -> set[float]:
        """Every sparsity level the run trains or reports: the grid, the target (and the
        fixed assistant)."""
        fixed = {level(self.assistant)} if self.assistant is not None else set()
        return set(self.grid) | {level(self.target_sparsity)} | fixed

    def candidate_levels(self, teacher_level: float = 0.0) -> list[float]:
        """As :meth:`minidisc.config.CompressConfig.candidate_levels`, but never sparser
        than the target: the λ-selection clips such a choice to the target anyway, and
        on a decoder each candidate costs a forward and backward of up to the full
        model per step (a 50 % target on the default grid trains 3 candidates, not 6).

        With a fixed ``assistant`` (TAKD), the teacher's only candidate is the assistant:
        iteration 1 is plain distillation into it, with no λ-selection."""
        if self.assistant is not None and teacher_level < level(self.assistant):
            return [level(self.assistant)]
        floor = max(teacher_level, self.truncation)
        return sorted(s for s in self.levels() if at_or_above(s, floor) and at_or_above(self.target_sparsity, s))

    def stage_tokens(self, final: bool) -> int:
        """Training tokens of a sandwich (``final`` False) or final distillation stage."""
        chosen = self.final_budget_tokens if final else self.sandwich_budget_tokens
        return chosen if chosen is not None else self.budget_tokens

    def stage_train_config(self, final: bool) -> TrainConfig:
        """The stage's :class:`TrainConfig`: one pass over a stream of exactly the stage's
        budget, evaluated ``evaluations`` times unless ``eval_steps`` is set."""
        base = self.final if final else self.sandwich
        rows = math.ceil(self.stage_tokens(final) / self.corpus.block_size)
        steps = math.ceil(rows / base.batch_size)
        eval_steps = base.eval_steps or max(1, math.ceil(steps / self.evaluations))
        return base.model_copy(update={"epochs": 1.0, "max_steps": None, "eval_steps": eval_steps})

    def stage_options(self) -> dict[str, Any]:
        """The objective's options."""
        return dict(self.objective_options)
