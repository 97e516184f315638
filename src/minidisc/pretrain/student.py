"""The teacher and the student: loading, building, layer-copy initialisation.

The teacher is loaded with the LM head of its type (:mod:`minidisc.tasks.lm_types`): an MLM
head for BERT-like encoders, the causal-LM ``lm_head`` for LLaMA-like decoders. The
student is the teacher's architecture (same vocabulary and tokenizer, so logit
distillation compares like with like) with its own depth, width, heads (and key/value
heads for grouped-query attention) and FFN size, randomly initialised -- or, with a
layer selection, initialised from everything of the teacher outside its transformer
layers (embeddings, final norm, LM head) plus the selected layers (as DistilBERT
initialises from every other BERT layer, Sanh et al. 2019).

Where the LM head and the layers are, and how a config states the student's sizes, the
teacher's architecture family says (:mod:`minidisc.elastic.families`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from minidisc.elastic.families import family_for
from minidisc.errors import ConfigError, ModelError
from minidisc.models import from_pretrained, load_config
from minidisc.tasks.lm_types import LMType, lm_type_of

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel

    from minidisc.models import ModelSource
    from minidisc.pretrain.config import StudentConfig

@dataclass
class LoadedTeacher:
    """A teacher with its LM head and which of its weights the checkpoint did not provide.

    Attributes:
        model: ``AutoModelForMaskedLM`` / ``AutoModelForCausalLM`` in eval mode.
        missing_keys: parameters newly initialised at load (e.g. the whole MLM head of a
            bare ``BertModel`` checkpoint such as all-MiniLM-L6-v2).
    """

    model: PreTrainedModel
    missing_keys: list[str] = field(default_factory=list)

    @property
    def head_is_fresh(self) -> bool:
        """True when (part of) the LM head was not in the checkpoint."""
        head = tuple(f"{name}." for name in family_for(self.model).lm_head_names)
        return any(k.startswith(head) for k in self.missing_keys)


def load_teacher(source: ModelSource, seed: int, lm: LMType | None = None) -> LoadedTeacher:
    """Load ``source`` with the LM head of its type (safetensors or GGUF, see
    :func:`minidisc.models.from_pretrained`).

    A missing head is initialised from ``seed`` (reproducible) and reported in
    :attr:`LoadedTeacher.missing_keys`.

    Args:
        source: the teacher.
        seed: torch seed of weights the checkpoint lacks.
        lm: its LM type (default: from its config, :func:`minidisc.tasks.lm_types.lm_type_of`).

    Raises:
        ModelError: the model cannot be loaded, or its architecture is not supported.
    """
    import torch

    lm = lm or lm_type_of(load_config(source))
    torch.manual_seed(seed)
    try:
        model, info = from_pretrained(lm.model_class(), source, output_loading_info=True)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(
            f"cannot load {source.label or source.path} as a {lm.label} model ({err}); pretrain needs a "
            "BERT-like encoder (with a [MASK] token) or a LLaMA-like decoder"
        ) from err
    lm_head(model)  # fail early on unsupported layouts
    return LoadedTeacher(model.eval(), sorted(info.get("missing_keys", ())))


def config_has_lm_head(config: Any, lm: LMType | None = None) -> bool | None:
    """Whether a checkpoint was saved with its LM head, from its config alone.

    ``False`` for a bare encoder such as all-MiniLM-L6-v2 (``architectures`` =
    ``BertModel``); ``True`` for a class named like a head (``…ForMaskedLM``,
    ``…ForCausalLM``) and for a decoder whose output embeddings are tied to its input
    embeddings (its head *is* the embedding matrix); ``None`` when the config does not
    say (only loading the weights tells).
    """
    lm = lm or lm_type_of(config)
    if lm.causal and getattr(config, "tie_word_embeddings", False):
        return True
    architectures = getattr(config, "architectures", None) or []
    if not architectures:
        return None
    return any(str(name).endswith(lm.head_architectures) for name in architectures)


def lm_head(model: nn.Module) -> nn.Module:
    """The LM head of a masked or causal LM: maps hidden states ``(…, d)`` to logits
    ``(…, V)``; the rest of the model is ``model.base_model``. Its family names it
    (:meth:`~minidisc.elastic.families.Family.lm_head`: BERT ``cls``; RoBERTa and
    LLaMA-family decoders ``lm_head``).

    Raises:
        ModelError: unsupported architecture, or the model has no LM head.
    """
    return family_for(model).lm_head(model)


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


def _attention_sizes(teacher_config: Any, spec: StudentConfig) -> tuple[int, int, int]:
    """``(hidden, heads, kv_heads)`` of the student (kv = heads without grouped-query
    attention).

    Raises:
        ConfigError: KV heads on an encoder; heads not dividing the width; KV heads not
            dividing the heads.
    """
    family = family_for(teacher_config)
    geo = family.geometry(teacher_config)
    hidden = spec.hidden or geo.hidden_size
    heads = spec.heads or geo.num_heads
    if hidden % heads:
        raise ConfigError(f"{heads} heads do not divide the width {hidden}; change --student-heads or --student-hidden")
    if not family.grouped_query:
        if spec.kv_heads is not None:
            raise ConfigError("--student-kv-heads is for LLaMA-family (grouped-query attention) students; "
                              f"a {family.name}-family student has one key/value head per query head: drop it")
        return hidden, heads, heads
    group = geo.group_size
    kv = spec.kv_heads or (heads // group if heads % group == 0 else heads)
    if heads % kv:
        raise ConfigError(f"{kv} key/value heads do not divide the {heads} query heads; change --student-kv-heads")
    return hidden, heads, kv


def student_config(teacher_config: Any, spec: StudentConfig) -> tuple[Any, list[int] | None]:
    """The student's config (a copy of the teacher's with the student's sizes) and the
    teacher layers it is initialised from (``None``: random initialisation).

    A student with grouped-query attention (LLaMA family) gets ``num_key_value_heads``,
    ``head_dim`` as given, else ``hidden / heads`` (the teacher's own ``head_dim`` when
    width and heads are the teacher's) and the teacher's ``tie_word_embeddings``
    (:meth:`~minidisc.elastic.families.Family.set_sizes` writes the sizes).

    Raises:
        ConfigError: sizes that do not fit (see :func:`_attention_sizes`; a size different
            from the teacher's together with ``init_from_teacher``).
    """
    lm = lm_type_of(teacher_config)
    family = family_for(teacher_config)
    geo = family.geometry(teacher_config)
    t_layers, t_hidden, t_heads = geo.num_layers, geo.hidden_size, geo.num_heads
    t_ffn, t_kv = geo.intermediate_size, geo.num_kv_heads
    hidden, heads, kv = _attention_sizes(teacher_config, spec)
    layers_from = None
    if spec.init_from_teacher:
        layers_from = parse_layer_selection(spec.init_from_teacher, t_layers, spec.layers)
        for name, value, own in (("hidden", hidden, t_hidden), ("heads", heads, t_heads),
                                 ("kv-heads", kv if family.grouped_query else t_kv, t_kv),
                                 ("ffn", spec.ffn or t_ffn, t_ffn)):
            if value != own:
                raise ConfigError(
                    f"--student-{name} {value} differs from the teacher's {own}; copied layers keep the "
                    "teacher's shape, so drop --init-from-teacher or the size option"
                )
    layers = len(layers_from) if layers_from else (spec.layers or math.ceil(t_layers / 2))
    ffn = spec.ffn or max(1, round(t_ffn * hidden / t_hidden))
    config = teacher_config.__class__.from_dict(teacher_config.to_dict())
    if spec.head_dim is not None and not family.grouped_query:
        raise ConfigError(f"head_dim is for LLaMA-family students; a {family.name}-family student has width / heads: drop it")
    head_dim = spec.head_dim or (geo.head_dim if (hidden, heads) == (t_hidden, t_heads) else hidden // heads)
    family.set_sizes(config, layers=layers, hidden=hidden, heads=heads, kv_heads=kv, head_dim=head_dim, ffn=ffn)
    config.architectures = None
    # encoders tie their MLM decoder to the word embeddings; a decoder keeps the teacher's
    # choice, so copied embeddings and lm_head never overwrite each other
    config.tie_word_embeddings = bool(getattr(teacher_config, "tie_word_embeddings", True)) if lm.causal else True
    for stale in ("_name_or_path", "_model_name_or_path", "minidisc_subnet", "quantization_config"):
        if hasattr(config, stale):
            try:
                delattr(config, stale)
            except AttributeError:
                pass
    return config, layers_from


def build_student(
    teacher_config: Any, spec: StudentConfig, seed: int, teacher: PreTrainedModel | None = None
) -> tuple[PreTrainedModel, list[int] | None]:
    """A student LM of the teacher's type: random (seeded) or initialised from
    ``teacher``'s layers.

    Args:
        teacher_config: the teacher's config (architecture family, vocabulary).
        spec: sizes and the optional layer selection.
        seed: torch seed of the random initialisation.
        teacher: the loaded teacher; required when ``spec.init_from_teacher`` is set.

    Returns:
        ``(model, teacher layers copied or None)``; the model is an
        ``AutoModelForMaskedLM`` or ``AutoModelForCausalLM`` in train mode.

    Raises:
        ConfigError: see :func:`student_config`; a layer selection without a teacher.
    """
    import torch

    config, layers_from = student_config(teacher_config, spec)
    torch.manual_seed(seed)
    model = lm_type_of(config).model_class().from_config(config)
    if lm_type_of(config).causal:
        train_padding_row(model, config.initializer_range)  # before a teacher's row is copied over it
    if layers_from is not None:
        if teacher is None:
            raise ConfigError("init_from_teacher needs the teacher's weights")
        copy_teacher_layers(model, teacher, layers_from)
    if spec.freeze_encoder:
        model.base_model.requires_grad_(False)
    return model.train(), layers_from


def train_padding_row(model: PreTrainedModel, std: float) -> None:
    """Make a decoder's padding embedding an ordinary, trained word vector.

    Packed causal-LM text writes the EOS token between documents, and many decoders use
    EOS as their padding token (SmolLM2: both are id 2). ``nn.Embedding(padding_idx=…)``
    initialises that row to zeros and never updates it; a block that *starts* with it then
    carries an exactly zero residual stream through every layer, and RMSNorm's gradient at
    zero (``1/sqrt(eps)`` ≈ 316 per norm) overflows float32 within a few dozen norms: a NaN
    gradient at the second step of a 30-layer SmolLM2-shaped student trained from scratch.
    A random row (drawn like the others, ``N(0, std)``) that trains removes both; called
    before teacher weights are copied, so a copied row is kept (and trains too).

    Args:
        model: a causal LM; its input embedding is changed in place.
        std: the standard deviation of a fresh row (the config's ``initializer_range``).
    """
    import torch

    embedding = model.get_input_embeddings()
    row = getattr(embedding, "padding_idx", None)
    if row is None:
        return
    embedding.padding_idx = None
    with torch.no_grad():
        embedding.weight[row].normal_(0.0, std)


def _layer_prefixes(model: PreTrainedModel) -> tuple[str, ...]:
    """State-dict prefixes of the model's transformer layers (``"bert.encoder.layer.0."``…)."""
    ids = {id(layer) for layer in family_for(model).layers(model)}
    return tuple(f"{name}." for name, module in model.named_modules() if id(module) in ids)


def copy_teacher_layers(student: PreTrainedModel, teacher: PreTrainedModel, layers: list[int]) -> None:
    """Copy ``teacher``'s layers ``layers`` (student layer i ← teacher layer ``layers[i]``)
    and every weight outside the transformer layers (BERT: embeddings and MLM head;
    LLaMA: token embeddings, final norm, ``lm_head``) into ``student`` (same width; a tied
    output projection follows the copied embeddings).

    Raises:
        ModelError: unsupported architecture, a weight the teacher lacks, or shapes that
            do not match.
    """
    family = family_for(teacher)
    s_layers, t_layers = family.layers(student), family.layers(teacher)
    if len(s_layers) != len(layers):
        raise ModelError(f"student has {len(s_layers)} layers but {len(layers)} teacher layers were selected")
    s_skip, t_skip = _layer_prefixes(student), _layer_prefixes(teacher)
    outside = {k: v for k, v in teacher.state_dict().items() if not k.startswith(t_skip)}
    try:
        result = student.load_state_dict(outside, strict=False)
        for target, index in zip(s_layers, layers):
            target.load_state_dict(t_layers[index].state_dict())
    except RuntimeError as err:  # shape mismatch
        raise ModelError(f"cannot copy teacher weights into the student: {err}") from err
    lacking = [k for k in result.missing_keys if not k.startswith(s_skip)]
    if lacking:
        raise ModelError(f"the teacher has no weights for the student's {', '.join(lacking[:4])}")


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
