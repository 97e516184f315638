"""Which language-modelling objective a pretraining arm uses: masked LM or causal LM.

The LM type follows the architecture: its family (:mod:`minidisc.elastic.families`)
names it in :attr:`~minidisc.elastic.families.Family.lm_type`. BERT-family encoders
pretrain by masked LM (Devlin et al. 2019: 15 % of the tokens masked, loss on those),
LLaMA-family decoders by causal LM (next-token prediction at every real position, no
masking). The teacher's architecture decides; the student is built from the teacher's
config, so both always share it.

Everything here is read from a config alone (no weights, no torch), so a run can be
checked before anything is loaded or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minidisc.elastic.families import family_for
from minidisc.errors import ConfigError, ModelError


@dataclass(frozen=True)
class LMType:
    """Facts of one LM type that the pretraining modules dispatch on.

    Attributes:
        name: the objectives' task type (``"masked_lm"`` or ``"causal_lm"``).
        label: how reports name the loss (``"MLM"`` / ``"causal-LM"``).
        auto_class: the ``transformers`` auto class that loads a model with this head.
        head_architectures: class-name endings of checkpoints saved with the LM head.
        head_transform: the head has a ``d×d`` transform before the vocabulary projection
            (BERT/RoBERTa MLM heads do; a LLaMA ``lm_head`` is the projection alone).
        strategies: the ``--strategy`` values that train this LM type (``scratch``
            first).
    """

    name: str
    label: str
    auto_class: str
    head_architectures: tuple[str, ...]
    head_transform: bool
    strategies: tuple[str, ...]

    @property
    def causal(self) -> bool:
        """Whether this is next-token prediction (no masking, loss at every position)."""
        return self.name == "causal_lm"

    def model_class(self) -> Any:
        """The auto class (imported on use: ``transformers`` is slow to import)."""
        import transformers

        return getattr(transformers, self.auto_class)


MASKED_LM = LMType(
    name="masked_lm",
    label="MLM",
    auto_class="AutoModelForMaskedLM",
    head_architectures=("ForMaskedLM", "ForPreTraining"),
    head_transform=True,
    strategies=("scratch", "kd", "distilbert", "tinybert", "minilm", "minilmv2", "pkd"),
)

#: Decoders train from scratch or by vanilla KD on next-token distributions. The other
#: strategies are encoder recipes: TinyBERT/MiniLM/MiniLMv2 general distillation has no
#: logit term, so the LM head -- which a causal LM's held-out loss is measured through --
#: would stay untrained; DistilBERT and PKD were defined for [CLS]/MLM encoders.
CAUSAL_LM = LMType(
    name="causal_lm",
    label="causal-LM",
    auto_class="AutoModelForCausalLM",
    head_architectures=("ForCausalLM",),
    head_transform=False,
    strategies=("scratch", "kd"),
)

#: The LM types, by :attr:`LMType.name`.
LM_TYPES: dict[str, LMType] = {lm.name: lm for lm in (MASKED_LM, CAUSAL_LM)}


def lm_type_of(config: Any) -> LMType:
    """The LM type of a ``transformers`` config (or model): the one its architecture
    family names.

    Raises:
        ModelError: the architecture is not supported, or its family is not pretrained
            by minidisc.
    """
    family = family_for(config)
    if family.lm_type not in LM_TYPES:
        raise ModelError(
            f"the {family.name} family has no language-modelling objective in minidisc; pretrain "
            "supports BERT-like (masked LM) and LLaMA-like (causal LM) models"
        )
    return LM_TYPES[family.lm_type]


def check_strategy(strategy: str, lm: LMType, teacher: str) -> None:
    """Refuse a strategy that does not train ``lm`` models.

    Args:
        strategy: ``--strategy``.
        lm: the teacher's LM type.
        teacher: the teacher's name, for the message.

    Raises:
        ConfigError: e.g. TinyBERT on a decoder teacher.
    """
    if strategy in lm.strategies:
        return
    why = (
        "it has no logit term, so the decoder's LM head would stay untrained and its held-out "
        "causal-LM loss would mean nothing"
        if strategy in ("tinybert", "minilm", "minilmv2")
        else "it is defined for [CLS]/masked-LM encoders"
    )
    raise ConfigError(
        f"--strategy {strategy} is an encoder (masked-LM) strategy and {teacher} is a decoder "
        f"({lm.label} pretraining): {why}. Choose --strategy {' or '.join(lm.strategies)}, or a "
        "BERT-like teacher"
    )
