"""Validated configuration of ``minidisc pretrain`` (pydantic): YAML in, resolved YAML out.

One run = one arm of the fixed-compute comparison (Bui et al. 2024, arXiv 2404.19319):
a student trained from scratch or by one distillation strategy, until a FLOPs or token
budget is spent -- by masked LM for BERT-like teachers, by causal LM for LLaMA-like
decoders (:mod:`minidisc.tasks.lm_types`). Arms that share every field except ``strategy``
share the student architecture, optimiser, learning-rate schedule shape, data order and
(MLM) masks.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from minidisc.config import WithPrecision
from minidisc.objectives.catalog import OBJECTIVE_DESCRIPTIONS

#: ``scratch`` = the LM loss on the data alone; the others are objectives of
#: :mod:`minidisc.objectives` used with ``task_type="masked_lm"`` (or ``"causal_lm"``:
#: decoders accept only the strategies of :data:`minidisc.tasks.lm_types.CAUSAL_LM`).
STRATEGIES: tuple[str, ...] = ("scratch", "kd", "distilbert", "tinybert", "minilm", "minilmv2", "pkd")

STRATEGY_DESCRIPTIONS: dict[str, str] = {
    "scratch": "masked-LM (encoders) or causal-LM (decoders) pretraining from the data alone (no teacher)",
    **{name: OBJECTIVE_DESCRIPTIONS[name] for name in STRATEGIES if name != "scratch"},
}


class _Strict(BaseModel):
    # allow_inf_nan=False: `--lam inf` or a NaN learning rate is refused before any work
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StudentConfig(_Strict):
    """The student's shape; ``None`` fields follow the teacher (layers: half, rounded up)."""

    layers: int | None = Field(None, ge=1, description="transformer layers; default ceil(teacher layers / 2)")
    hidden: int | None = Field(None, ge=8, description="width; default the teacher's")
    heads: int | None = Field(None, ge=1, description="attention heads; default the teacher's")
    kv_heads: int | None = Field(
        None,
        ge=1,
        description="key/value heads of a LLaMA-family student (grouped-query attention; must divide heads); "
        "default: heads / the teacher's query heads per KV head when that divides, else one per query head",
    )
    ffn: int | None = Field(None, ge=1, description="FFN units; default the teacher's ratio times the width")
    head_dim: int | None = Field(
        None, ge=1, description="width of one attention head of a LLaMA-family student; default width / heads (the "
        "teacher's own when width and heads are the teacher's). A pruned decoder keeps the teacher's head_dim "
        "with a narrower width: `compare --task lm` pretrains that exact shape from scratch")
    init_from_teacher: str | None = Field(
        None,
        description="copy embeddings, these teacher layers and the LM head: 'uniform' (every "
        "N/M-th layer from 0), 'all', or comma-separated 0-based indices like '0,2,4'",
    )
    freeze_encoder: bool = Field(
        False, description="train only the MLM head (needs init_from_teacher; encoders only); used to warm up "
        "a teacher's head"
    )
    head_bias_from_corpus: bool = Field(
        False, description="set the MLM output bias to the log unigram frequencies of the training blocks "
        "(encoders only: a LLaMA lm_head has no bias)"
    )

    @model_serializer(mode="wrap")
    def _without_unset_head_dim(self, handler: Any) -> dict[str, Any]:
        # head_dim came after runs existed: left out while unset, so their configs read as before
        data = handler(self)
        if data.get("head_dim", 0) is None:
            del data["head_dim"]
        return data

    @model_validator(mode="after")
    def _freeze_needs_init(self) -> StudentConfig:
        if self.freeze_encoder and not self.init_from_teacher:
            raise ValueError("freeze_encoder needs init_from_teacher (a frozen random encoder learns nothing)")
        return self


class CorpusConfig(_Strict):
    """Training text, held-out text, packing and masking."""

    train: tuple[str, ...] = Field(..., min_length=1, description="text files, or one hub dataset name")
    hub_config: str | None = Field(None, description="hub dataset configuration (hub corpora only)")
    split: str | None = Field(None, description="hub split for training (default 'train')")
    text_column: str = "text"
    eval: tuple[str, ...] | None = Field(
        None, description="held-out text files / hub name; None: hold out the last eval_blocks training blocks"
    )
    eval_split: str | None = Field(None, description="hub split of the held-out corpus (default 'validation')")
    eval_blocks: int = Field(32, ge=1, description="held-out blocks the LM loss is measured on")
    max_train_blocks: int | None = Field(
        None, ge=1, description="use only the first N training blocks (a data-limited setting)"
    )
    block_size: int = Field(128, ge=4, le=4096, description="tokens per sequence, special tokens included")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="masking rate (masked LM only)")
    eval_seed: int = Field(0, description="masking seed of the held-out blocks (same for every arm; masked LM only)")


class BudgetConfig(_Strict):
    """Exactly one of a FLOPs budget (student 3x forward + teacher 1x forward) or a token budget."""

    flops: float | None = Field(None, gt=0, description="training FLOPs: student forward+backward plus teacher forward")
    tokens: int | None = Field(None, gt=0, description="training tokens (non-padding, special tokens included)")

    @model_validator(mode="after")
    def _exactly_one(self) -> BudgetConfig:
        if (self.flops is None) == (self.tokens is None):
            raise ValueError("give exactly one budget: flops (--budget-flops) or tokens (--budget-tokens)")
        return self

    @property
    def kind(self) -> str:
        """``"flops"`` or ``"tokens"``."""
        return "flops" if self.flops is not None else "tokens"

    @property
    def value(self) -> float:
        return float(self.flops if self.flops is not None else self.tokens)  # type: ignore[arg-type]


class OptimConfig(_Strict):
    """AdamW with linear warmup and linear decay to zero at the end of the budget."""

    batch_size: int = Field(32, gt=0, description="sequences per optimiser step")
    learning_rate: float = Field(5e-4, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = Field(776, description="student initialisation, data order and training masks (MLM)")


class PretrainConfig(_Strict, WithPrecision):
    """One ``minidisc pretrain`` run."""

    teacher: str | None = Field(None, description="hub id or path; None: the packaged all-MiniLM-L6-v2")
    strategy: str = "scratch"
    objective_options: dict[str, Any] = Field(default_factory=dict, description="options of the objective")
    student: StudentConfig = StudentConfig()
    corpus: CorpusConfig
    budget: BudgetConfig
    optim: OptimConfig = OptimConfig()
    eval_every_tokens: int | None = Field(
        None, gt=0, description="held-out evaluation interval in training tokens; None: about 8 evaluations"
    )
    checkpoint_steps: int = Field(100, gt=0, description="save a resumable checkpoint every N steps")

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value not in STRATEGIES:
            raise ValueError(f"unknown strategy {value!r}; choose one of {', '.join(STRATEGIES)}")
        return value

    @model_validator(mode="after")
    def _scratch_has_no_options(self) -> PretrainConfig:
        if self.strategy == "scratch" and self.objective_options:
            raise ValueError("the scratch strategy takes no objective options")
        return self

    @property
    def distills(self) -> bool:
        """Whether the run uses a teacher's outputs."""
        return self.strategy != "scratch"
