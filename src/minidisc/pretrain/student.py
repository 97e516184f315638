"""The masked-LM teacher and the student: loading, building, layer-copy initialisation.

The student is the teacher's architecture (same vocabulary and tokenizer, so logit
distillation compares like with like) with its own depth, width, heads and FFN size,
randomly initialised -- or, with a layer selection, initialised from the teacher's
embeddings, the selected teacher layers and its MLM head (as DistilBERT initialises
from every other BERT layer, Sanh et al. 2019).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from minidisc.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel

    from minidisc.models import ModelSource
    from minidisc.pretrain.config import StudentConfig

#: Names of the MLM-head child module in supported masked-LM classes.
_HEAD_NAMES = ("cls", "lm_head")


@dataclass
class LoadedTeacher:
    """A masked-LM teacher and which of its weights the checkpoint did not provide.

    Attributes:
        model: ``AutoModelForMaskedLM`` in eval mode.
        missing_keys: parameters newly initialised at load (e.g. the whole MLM head of a
            bare ``BertModel`` checkpoint such as all-MiniLM-L6-v2).
    """

    model: PreTrainedModel
    missing_keys: list[str] = field(default_factory=list)

    @property
    def head_is_fresh(self) -> bool:
        """True when (part of) the MLM head was not in the checkpoint."""
        head = {f"{name}." for name in _HEAD_NAMES}
        return any(k.startswith(tuple(head)) for k in self.missing_keys)


def load_teacher(source: ModelSource, seed: int) -> LoadedTeacher:
    """Load ``source`` as a masked LM (``AutoModelForMaskedLM``, safetensors only).

    A missing MLM head is initialised from ``seed`` (reproducible) and reported in
    :attr:`LoadedTeacher.missing_keys`.

    Raises:
        ModelError: the model cannot be loaded or has no masked-LM class.
    """
    import torch
    from transformers import AutoModelForMaskedLM

    from minidisc.models import from_pretrained

    torch.manual_seed(seed)
    try:
        model, info = from_pretrained(AutoModelForMaskedLM, source, output_loading_info=True)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(
            f"cannot load {source.label or source.path} as a masked LM ({err}); "
            "pretrain needs a BERT-like encoder with a tokenizer that has a [MASK] token"
        ) from err
    mlm_head(model)  # fail early on unsupported layouts
    return LoadedTeacher(model.eval(), sorted(info.get("missing_keys", ())))


#: Class-name endings of ``transformers`` models saved with an MLM head.
_MLM_ARCHITECTURES = ("ForMaskedLM", "ForPreTraining")


def config_has_mlm_head(config: Any) -> bool | None:
    """Whether a checkpoint was saved with an MLM head, from ``config.architectures``:
    ``False`` for a bare encoder such as all-MiniLM-L6-v2 (``BertModel``), ``None`` when
    the config does not say (only loading the weights tells)."""
    architectures = getattr(config, "architectures", None) or []
    if not architectures:
        return None
    return any(str(name).endswith(_MLM_ARCHITECTURES) for name in architectures)


def load_config(source: ModelSource) -> Any:
    """The teacher's ``transformers`` config alone (no weights)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source.path, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read the config of {source.label or source.path}: {err}") from err


def mlm_head(model: nn.Module) -> nn.Module:
    """The MLM head of a masked LM: maps hidden states ``(…, d)`` to logits ``(…, V)``.

    BERT keeps it in ``cls``, RoBERTa in ``lm_head``; the rest of the model is
    ``model.base_model``.

    Raises:
        ModelError: the model has neither.
    """
    for name in _HEAD_NAMES:
        head = getattr(model, name, None)
        if head is not None:
            return head
    raise ModelError(
        f"{type(model).__name__} has no MLM head module ({' or '.join(_HEAD_NAMES)}); "
        "pretrain supports BERT/RoBERTa-style masked LMs"
    )


def parse_layer_selection(text: str, teacher_layers: int, student_layers: int | None) -> list[int]:
    """Teacher layers (0-based) that initialise the student's layers, in order.

    Args:
        text: ``"uniform"`` -- layers ``floor(i·N/M)``, ``i = 0..M-1`` (N/M = 2 gives
            0, 2, 4, … as DistilBERT); ``"all"`` -- every teacher layer; or indices like
            ``"0,2,4"``.
        teacher_layers: ``N``.
        student_layers: ``M`` for ``"uniform"`` (default ``ceil(N/2)``); must equal the
            number of indices when given with explicit indices.

    Raises:
        ConfigError: unknown keyword, bad or out-of-range index, or a depth mismatch.
    """
    key = text.strip().lower()
    if key == "all":
        chosen = list(range(teacher_layers))
    elif key == "uniform":
        m = student_layers or math.ceil(teacher_layers / 2)
        if m > teacher_layers:
            raise ConfigError(f"cannot pick {m} distinct layers from a {teacher_layers}-layer teacher")
        chosen = [i * teacher_layers // m for i in range(m)]
    else:
        try:
            chosen = [int(x) for x in key.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(
                f"--init-from-teacher expects 'uniform', 'all' or indices like 0,2,4; got {text!r}"
            ) from None
        if not chosen:
            raise ConfigError("--init-from-teacher got no layer indices")
        bad = [i for i in chosen if not 0 <= i < teacher_layers]
        if bad:
            raise ConfigError(f"teacher layer(s) {bad} out of range 0..{teacher_layers - 1}")
    if student_layers is not None and student_layers != len(chosen):
        raise ConfigError(
            f"--student-layers {student_layers} differs from the {len(chosen)} layers selected by "
            f"--init-from-teacher {text!r}; drop one of them"
        )
    return chosen


def student_config(teacher_config: Any, spec: StudentConfig) -> tuple[Any, list[int] | None]:
    """The student's config (a copy of the teacher's with the student's sizes) and the
    teacher layers it is initialised from (``None``: random initialisation).

    Raises:
        ConfigError: sizes that do not fit (heads not dividing the width; a width or head
            count different from the teacher's together with ``init_from_teacher``).
    """
    t_layers = int(teacher_config.num_hidden_layers)
    t_hidden = int(teacher_config.hidden_size)
    t_heads = int(teacher_config.num_attention_heads)
    t_ffn = int(teacher_config.intermediate_size)
    layers_from = None
    if spec.init_from_teacher:
        layers_from = parse_layer_selection(spec.init_from_teacher, t_layers, spec.layers)
        for name, value, own in (("hidden", spec.hidden, t_hidden), ("heads", spec.heads, t_heads),
                                 ("ffn", spec.ffn, t_ffn)):
            if value is not None and value != own:
                raise ConfigError(
                    f"--student-{name} {value} differs from the teacher's {own}; copied layers keep the "
                    "teacher's shape, so drop --init-from-teacher or the size option"
                )
    layers = len(layers_from) if layers_from else (spec.layers or math.ceil(t_layers / 2))
    hidden = spec.hidden or t_hidden
    heads = spec.heads or t_heads
    ffn = spec.ffn or max(1, round(t_ffn * hidden / t_hidden))
    if hidden % heads:
        raise ConfigError(f"{heads} heads do not divide the width {hidden}; change --student-heads or --student-hidden")
    config = teacher_config.__class__.from_dict(teacher_config.to_dict())
    config.num_hidden_layers = layers
    config.hidden_size = hidden
    config.num_attention_heads = heads
    config.intermediate_size = ffn
    config.architectures = None
    config.tie_word_embeddings = True
    for stale in ("_name_or_path", "minidisc_subnet"):
        if hasattr(config, stale):
            try:
                delattr(config, stale)
            except AttributeError:
                pass
    return config, layers_from


def build_student(
    teacher_config: Any, spec: StudentConfig, seed: int, teacher: PreTrainedModel | None = None
) -> tuple[PreTrainedModel, list[int] | None]:
    """A masked-LM student: random (seeded) or initialised from ``teacher``'s layers.

    Args:
        teacher_config: the teacher's config (architecture family, vocabulary).
        spec: sizes and the optional layer selection.
        seed: torch seed of the random initialisation.
        teacher: the loaded teacher; required when ``spec.init_from_teacher`` is set.

    Returns:
        ``(model, teacher layers copied or None)``; the model is in train mode.

    Raises:
        ConfigError: see :func:`student_config`; a layer selection without a teacher.
    """
    import torch
    from transformers import AutoModelForMaskedLM

    config, layers_from = student_config(teacher_config, spec)
    torch.manual_seed(seed)
    model = AutoModelForMaskedLM.from_config(config)
    if layers_from is not None:
        if teacher is None:
            raise ConfigError("init_from_teacher needs the teacher's weights")
        copy_teacher_layers(model, teacher, layers_from)
    if spec.freeze_encoder:
        model.base_model.requires_grad_(False)
    return model.train(), layers_from


def copy_teacher_layers(student: PreTrainedModel, teacher: PreTrainedModel, layers: list[int]) -> None:
    """Copy ``teacher``'s embeddings, layers ``layers`` (student layer i ← teacher layer
    ``layers[i]``) and MLM head into ``student`` (same width; tied decoder follows the
    copied word embeddings).

    Raises:
        ModelError: unsupported architecture or shapes that do not match.
    """
    from minidisc.elastic.families import family_for

    family = family_for(teacher)
    s_layers, t_layers = family.layers(student), family.layers(teacher)
    if len(s_layers) != len(layers):
        raise ModelError(f"student has {len(s_layers)} layers but {len(layers)} teacher layers were selected")
    try:
        student.base_model.embeddings.load_state_dict(teacher.base_model.embeddings.state_dict())
        for target, index in zip(s_layers, layers):
            target.load_state_dict(t_layers[index].state_dict())
        mlm_head(student).load_state_dict(mlm_head(teacher).state_dict())
    except RuntimeError as err:  # shape mismatch
        raise ModelError(f"cannot copy teacher weights into the student: {err}") from err


def set_unigram_bias(model: PreTrainedModel, blocks: Any, special_ids: list[int]) -> None:
    """Set the MLM output bias to ``log p(v)``, the add-½ smoothed unigram distribution of
    the non-special tokens in ``blocks``.

    With an uninformative transform this is the maximum-likelihood bias (the head then
    predicts the unigram distribution, the loss a masked LM reaches first); it lets a
    short head warm-up spend its steps on the context-dependent part. Special tokens
    (never MLM targets) get the smallest log-probability.

    Args:
        model: a masked LM whose output embedding (decoder) has a bias.
        blocks: ``(n, L)`` token ids.
        special_ids: token ids excluded from the counts.

    Raises:
        ModelError: the decoder has no bias.
    """
    import numpy as np
    import torch

    decoder = model.get_output_embeddings()
    if decoder is None or getattr(decoder, "bias", None) is None:
        raise ModelError("the MLM head has no output bias to initialise")
    vocab = decoder.bias.shape[0]
    counts = np.bincount(np.asarray(blocks).ravel(), minlength=vocab)[:vocab].astype(np.float64)
    counts[[i for i in special_ids if i < vocab]] = 0.0
    log_p = np.log(counts + 0.5) - np.log(counts.sum() + 0.5 * vocab)
    with torch.no_grad():
        decoder.bias.copy_(torch.as_tensor(log_p, dtype=decoder.bias.dtype))
