"""Every architecture fact of minidisc: one :class:`Family` per architecture family.

No other module of minidisc names a module of a transformer or keeps a table of
architectures: it asks the model's family (:func:`family_for`), which answers

* where things are: the transformer layers (:attr:`Family.layers_path`) and, per layer,
  the Q/K/V/O projections, the FFN matrices, the attention module skipped when a layer
  keeps no heads, the modules whose outputs attention scores read
  (:meth:`Family.qkv_sources`), and the LM head (:meth:`Family.lm_head`); for a family
  that cuts the residual stream, every module that reads or writes it beyond the
  projections: the token embedding (:meth:`Family.embedding`), the norms
  (:meth:`Family.hidden_norms`) and the output heads (:meth:`Family.output_heads`);
* the shape: layers, width, heads, key/value heads, head size, FFN units, biases, norms
  (:meth:`Family.geometry`), and how a config states other sizes
  (:meth:`Family.set_sizes`, :meth:`Family.write_uniform_sizes`);
* what pruning may cut (:attr:`Family.pruned_axes`) and how: the slice of every
  projection for a layer's kept heads and units and the model's kept width
  (:meth:`Family.projection_sizes`), a layer without heads (:meth:`Family.skip_attention`),
  dropped layers (:meth:`Family.keep_layers`), and how a config states a cut width
  (:meth:`Family.write_hidden_size`);
* what the embeddings hold (:meth:`Family.embedding_params`, :meth:`Family.untied_head_params`),
  for total parameter counts;
* how it is pretrained (:attr:`Family.lm_type`: masked or causal LM).

Askers: :mod:`minidisc.elastic` (sub-networks, importance, reorder, extraction),
:mod:`minidisc.objectives.capture` (queries/keys/values), :mod:`minidisc.pretrain` (LM
type and head, student sizes), :mod:`minidisc.schedules.students` (layer-dropped
students) and :mod:`minidisc.compute.flops`. (Code that works for any ``transformers``
model -- the objectives' layer maps, the reports -- reads the standard config fields
such as ``num_hidden_layers`` directly.)

Families:

* :class:`BertFamily` -- BERT-like encoders (``bert``, ``roberta``, ``xlm-roberta``):
  ``encoder.layer[i].attention.self.{query,key,value}``, ``attention.output.dense``,
  ``intermediate.dense``, ``output.dense``. Head size is ``hidden / num_attention_heads``
  (or the ``head_dim`` a student with a cut width records). The hidden width is pruned
  too: the word, position and token-type embeddings, the embedding LayerNorm, the
  LayerNorms ``attention.output.LayerNorm`` and ``output.LayerNorm`` (weights and
  biases), every projection, the pooler (input and output) and the classifier's input.
  Whole layers are removed by skipping them (:attr:`SubnetSpec.dropped`): a post-norm
  layer without heads and units is not the identity. Cutting the width of a masked LM
  (its MLM head) is not supported. Masked LM; the MLM head is ``cls`` (BERT) or
  ``lm_head`` (RoBERTa).
* :class:`LlamaFamily` -- LLaMA decoders (``llama``): ``layers[i].self_attn.{q,k,v,o}_proj``,
  gated FFN ``mlp.{gate,up,down}_proj``, with grouped-query attention. Heads are pruned by
  whole KV groups: a group is one KV head plus the
  ``num_attention_heads // num_key_value_heads`` query heads that read it. The hidden
  width is pruned too: ``embed_tokens``, the RMSNorms ``layers[i].{input,post_attention}_layernorm``
  and ``norm``, every projection and the output head (``lm_head``, ``score``) are cut
  to the kept channels. Causal LM, head ``lm_head`` (often tied to ``embed_tokens``).
* :class:`MistralFamily` (``mistral``, no biases) and :class:`Qwen2Family` (``qwen2``,
  biases on Q/K/V only): LLaMA's layout.
* :class:`Qwen3Family` (``qwen3``): LLaMA's layout plus a per-head RMSNorm of queries and
  keys (``self_attn.q_norm`` / ``k_norm``, weights of size ``head_dim`` shared by all
  heads) before RoPE.

Every family is covered by the unit tests on tiny random models (``xlm-roberta`` shares
RoBERTa's modules exactly).

Adding an architecture: subclass :class:`Family` -- or the family closest to it, often
only paths or biases differ -- and :func:`register_family` an instance;
``tests/unit/test_elastic_families.py`` adds DistilBERT that way in a few lines.

Adding a per-layer pruning axis (e.g. whole layers): give :class:`SubnetSpec` the
per-layer field and :data:`minidisc.elastic.spec.AXES` its name; the families that can
cut it list it in :attr:`Family.pruned_axes` and size the matrices it cuts in
:meth:`Family.projection_sizes` (whole layers: :meth:`Family.keep_layers`); the
importance pass (:mod:`minidisc.elastic.importance`) scores it and the sparsity map
(:mod:`minidisc.elastic.sparsity_map`) ranks it. Every consumer reads the axes from here.
The model-wide hidden axis (:data:`~minidisc.elastic.spec.HIDDEN`, one width for the
whole model, not in ``AXES``) follows the same route with one number: a family that
lists it in :attr:`Family.pruned_axes` names its embedding, norms and output heads
(:attr:`Family.embedding_path`, :attr:`Family.norm_paths`,
:attr:`Family.final_norm_path`, :attr:`Family.output_head_names`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from minidisc.elastic.spec import AXES, HEADS, HIDDEN, LAYERS, NEURONS, PRUNABLE_AXES, SubnetSpec
from minidisc.errors import ConfigError, ModelError


@dataclass(frozen=True)
class Geometry:
    """Full-size shape of a transformer, read from its config.

    Attributes:
        num_layers: transformer layers.
        hidden_size: model width (the full width; a sub-network may keep fewer channels,
            :attr:`SubnetSpec.hidden`, where the family prunes it).
        num_heads: query heads per layer.
        num_kv_heads: key/value heads per layer (``num_heads`` without GQA).
        head_dim: width of one head.
        intermediate_size: FFN units per layer.
        gated_ffn: FFN has three matrices (gate, up, down) instead of two.
        qkv_bias / o_bias / ffn_bias: whether those projections carry biases.
        norm_params_per_layer: parameters of a layer's norms (BERT: 2 LayerNorms with
            weight and bias = 4·hidden; LLaMA: 2 RMSNorms = 2·hidden; Qwen3 adds its
            per-head query and key norms, 2·head_dim).
        final_norm_params: parameters of a norm after the last layer (LLaMA: hidden).
        vocab_size: output vocabulary (for an optional LM-head FLOP count).
        qk_norm_params: the part of ``norm_params_per_layer`` that does not scale with
            the width (Qwen3's per-head query and key norms, 2·head_dim); 0 otherwise.
        empty_layer_is_identity: a layer that keeps no heads and no FFN units passes its
            input through unchanged (pre-norm residual blocks, no bias on the attention
            output or FFN output), so it can be removed (:data:`~minidisc.elastic.spec.LAYERS`).
            False for post-norm encoders: their LayerNorms still act on an empty layer.
    """

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    gated_ffn: bool
    qkv_bias: bool
    o_bias: bool
    ffn_bias: bool
    norm_params_per_layer: int
    final_norm_params: int
    vocab_size: int
    qk_norm_params: int = 0
    empty_layer_is_identity: bool = False

    @property
    def group_size(self) -> int:
        """Query heads per KV head (1 without grouped-query attention)."""
        return self.num_heads // self.num_kv_heads

    def full_spec(self) -> SubnetSpec:
        return SubnetSpec.uniform(self.num_layers, self.num_heads, self.intermediate_size)

    def norm_params(self, hidden: int | None = None) -> tuple[int, int]:
        """``(per layer, final)`` norm parameters at width ``hidden`` (``None``: the full
        width). A norm of the residual stream has one weight (and bias) per channel, so
        its size scales with the width; the per-head norms (:attr:`qk_norm_params`) do not."""
        h = self.hidden_size if hidden is None else hidden
        per_layer = (self.norm_params_per_layer - self.qk_norm_params) // self.hidden_size * h
        return per_layer + self.qk_norm_params, self.final_norm_params // self.hidden_size * h


class Family:
    """Architecture adapter. Subclasses fill in the class attributes and the abstract
    methods; every module path is relative to one transformer layer unless said otherwise.

    Attributes:
        name: unique name of the family (``"bert"``, ``"llama"``, …).
        model_types: the ``config.model_type`` values it handles.
        lm_type: its pretraining objective, ``"masked_lm"`` or ``"causal_lm"``
            (:mod:`minidisc.tasks.lm_types`); ``None`` when minidisc does not pretrain it.
        lm_head_names: child modules of an LM model that hold its LM head, tried in order.
        layers_path: the ``ModuleList`` of transformer layers, relative to
            ``model.base_model``.
        attention_path: the module skipped when a layer keeps 0 heads.
        q_path / k_path / v_path: projections; output = heads·head_dim (K/V: KV heads).
        o_path: attention output; input = per-head context, shape (B, T, heads·head_dim).
        ffn_in_paths: output = FFN units (LLaMA: gate and up).
        ffn_out_path: input = FFN activations after the non-linearity.
        qk_norm_paths: per-head norms applied to the projected queries and keys before
            rotary embeddings (Qwen3), or ``None``.
        grouped_query: the config states key/value heads apart from query heads
            (``num_key_value_heads``); without it every query head has its own.
        pruned_axes: the axes of :data:`minidisc.elastic.spec.PRUNABLE_AXES` a
            sub-network may cut; the others stay at the model's size.
        embedding_path: the token embedding, relative to ``model.base_model`` (its columns
            are the residual-stream channels); needed when ``pruned_axes`` has ``hidden``.
        extra_embedding_paths: other embeddings added to the token embedding before the
            first layer (BERT: position and token-type), relative to ``model.base_model``.
        norm_paths: a layer's norms of the residual stream (not :attr:`qk_norm_paths`).
        first_norm_path: the norm before the first layer (BERT's embedding LayerNorm),
            relative to ``model.base_model``, or ``None``.
        final_norm_path: the norm after the last layer, relative to ``model.base_model``,
            or ``None``.
        output_head_names: modules of a model (any head; dotted paths allowed) that read
            the final hidden states (LM head, classifier), tried by :meth:`output_heads`.
        square_head_paths: linear modules after the last layer that read *and* write the
            hidden width (BERT's pooler, RoBERTa's classifier dense), relative to the
            model or to ``model.base_model``; their outputs are cut and reordered like
            the residual stream (the classifier reads them).
        hidden_read_at_norms: the residual stream is read only as the outputs of the
            norms (post-norm encoders), so hidden-channel importance masks those outputs;
            otherwise (pre-norm decoders) it masks the inputs of Q/K/V and the FFN
            (:func:`minidisc.elastic.importance.residual_mask_hooks`).
        default_layer_shapes: the sparsity map's layer shapes unless one is asked
            (:mod:`minidisc.elastic.sparsity_map`): ``"global"`` (per-layer sizes, the
            MiniDisc map) or ``"uniform"`` (every layer alike: an ordinary config).
    """

    name: ClassVar[str]
    model_types: ClassVar[frozenset[str]]
    lm_type: ClassVar[str | None] = None
    lm_head_names: ClassVar[tuple[str, ...]] = ()
    layers_path: ClassVar[str]
    attention_path: ClassVar[str]
    q_path: ClassVar[str]
    k_path: ClassVar[str]
    v_path: ClassVar[str]
    o_path: ClassVar[str]
    ffn_in_paths: ClassVar[tuple[str, ...]]
    ffn_out_path: ClassVar[str]
    qk_norm_paths: ClassVar[tuple[str, str] | None] = None
    grouped_query: ClassVar[bool] = False
    pruned_axes: ClassVar[tuple[str, ...]] = AXES
    embedding_path: ClassVar[str | None] = None
    extra_embedding_paths: ClassVar[tuple[str, ...]] = ()
    norm_paths: ClassVar[tuple[str, ...]] = ()
    first_norm_path: ClassVar[str | None] = None
    final_norm_path: ClassVar[str | None] = None
    output_head_names: ClassVar[tuple[str, ...]] = ()
    square_head_paths: ClassVar[tuple[str, ...]] = ()
    hidden_read_at_norms: ClassVar[bool] = False
    default_layer_shapes: ClassVar[str] = "global"

    # ---- config level --------------------------------------------------------------
    def geometry(self, config: Any) -> Geometry:
        """The full-size shape of a model with ``config``.

        Raises:
            ModelError: a configuration the family cannot handle.
        """
        raise NotImplementedError

    def write_uniform_sizes(self, config: Any, spec: SubnetSpec) -> bool:
        """Record a uniform spec in the config's own size fields where the architecture can.

        Returns True when the resulting config describes the student exactly, i.e. when
        plain ``AutoModel*.from_pretrained`` rebuilds it.
        """
        raise NotImplementedError

    def set_sizes(
        self, config: Any, *, layers: int, hidden: int, heads: int, kv_heads: int, head_dim: int, ffn: int
    ) -> None:
        """Write a (pretraining) student's sizes into ``config``, a copy of its teacher's.

        Raises:
            ConfigError: sizes the architecture cannot state (e.g. KV heads other than
                the query heads without :attr:`grouped_query`).
        """
        raise NotImplementedError

    def check_written_sizes(self, config: Any) -> None:
        """Raise ConfigError when the sizes written into ``config`` are ones its config
        class refuses to save (checked before extraction finishes, not at save time)."""

    def write_hidden_size(self, config: Any, hidden: int) -> None:
        """Record a cut residual-stream width in ``config`` (a student's copy of its
        teacher's), keeping every other size, head size included, as it was.

        Raises:
            ConfigError: the family does not prune the hidden width.
        """
        raise ConfigError(f"the {self.name} family does not prune the hidden width")

    def embedding_params(self, config: Any, hidden: int | None = None) -> int:
        """Parameters of the input embeddings at width ``hidden`` (``None``: full)."""
        raise NotImplementedError

    def untied_head_params(self, config: Any, hidden: int | None = None) -> int:
        """Parameters of an LM head that is not tied to the input embeddings (0 when
        tied or when the family has no LM head counted in its size)."""
        return 0

    # ---- model level ---------------------------------------------------------------
    def layers(self, model: Any) -> list[Any]:
        """The transformer layers of ``model`` (any head, or the bare base model), in order."""
        return list(model.base_model.get_submodule(self.layers_path))

    def keep_layers(self, model: Any, keep: Sequence[int]) -> None:
        """Keep only the transformer layers ``keep`` (0-based, checked by the caller), in place.

        The config says ``num_hidden_layers = len(keep)`` (and per-layer lists such as
        ``layer_types`` are cut alike); each kept layer gets its new index (KV caches
        index layers by ``layer_idx``).
        """
        from torch import nn

        parent_path, _, name = self.layers_path.rpartition(".")
        base = model.base_model
        parent = base.get_submodule(parent_path) if parent_path else base
        kept = [getattr(parent, name)[i] for i in keep]
        for new_index, layer in enumerate(kept):
            for module in layer.modules():
                if isinstance(getattr(module, "layer_idx", None), int):
                    module.layer_idx = new_index
        setattr(parent, name, nn.ModuleList(kept))
        config = model.config
        config.num_hidden_layers = len(keep)
        if isinstance(getattr(config, "layer_types", None), list):
            config.layer_types = [config.layer_types[i] for i in keep]

    def linears(self, layer: Any) -> list[str]:
        """Paths of every projection the elastic layer slices."""
        return [
            self.q_path,
            self.k_path,
            self.v_path,
            self.o_path,
            *self.ffn_in_paths,
            self.ffn_out_path,
        ]

    def projection_sizes(
        self, heads: int, neurons: int, geometry: Geometry, hidden: int | None = None
    ) -> dict[str, tuple[int | None, int | None]]:
        """``{path: (out, in)}``: the weight prefix ``W[:out, :in]`` each projection of a
        layer keeping ``heads`` query heads and ``neurons`` FFN units, in a model keeping
        ``hidden`` residual-stream channels, uses (``None``: the full size). K and V keep
        ``heads / group_size`` KV heads; Q/K/V and the FFN inputs read ``hidden``
        channels, the attention output and the FFN output write ``hidden``."""
        d, g, h = geometry.head_dim, geometry.group_size, hidden
        return {
            self.q_path: (heads * d, h),
            self.k_path: (heads // g * d, h),
            self.v_path: (heads // g * d, h),
            self.o_path: (h, heads * d),
            **{p: (neurons, h) for p in self.ffn_in_paths},
            self.ffn_out_path: (h, neurons),
        }

    def layer_sizes(self, layer: Any, geometry: Geometry) -> tuple[int, int]:
        """Physical (query heads, FFN units) of one layer, read from its weight shapes."""
        q = layer.get_submodule(self.q_path)
        ffn_out = layer.get_submodule(self.ffn_out_path)
        return q.weight.shape[0] // geometry.head_dim, ffn_out.weight.shape[1]

    def embedding(self, model: Any) -> Any:
        """The token embedding of ``model`` (any head, or the bare base model).

        Raises:
            ModelError: the family names none (it does not prune the hidden width).
        """
        if self.embedding_path is None:
            raise ModelError(f"the {self.name} family names no token embedding")
        return model.base_model.get_submodule(self.embedding_path)

    def hidden_embeddings(self, model: Any) -> list[Any]:
        """Every embedding whose columns are residual-stream channels: the token embedding
        (:meth:`embedding`) first, then :attr:`extra_embedding_paths`."""
        return [self.embedding(model), *(model.base_model.get_submodule(p) for p in self.extra_embedding_paths)]

    def hidden_norms(self, model: Any) -> list[Any]:
        """Every norm of the residual stream, in order: the first norm, each layer's
        :attr:`norm_paths`, then the final norm. Qwen3's per-head query/key norms are
        not among them."""
        norms = [] if self.first_norm_path is None else [model.base_model.get_submodule(self.first_norm_path)]
        norms += [layer.get_submodule(p) for layer in self.layers(model) for p in self.norm_paths]
        if self.final_norm_path is not None:
            norms.append(model.base_model.get_submodule(self.final_norm_path))
        return norms

    def output_heads(self, model: Any) -> list[Any]:
        """The linear modules of ``model`` that read its final hidden states
        (:attr:`output_head_names` that exist: the LM head, a classifier); none for a
        bare base model. A head tied to the embedding shares its weight tensor."""
        from torch import nn

        return [
            module
            for name in self.output_head_names
            if isinstance(module := _find(model, name), nn.Linear)
        ]

    def square_heads(self, model: Any) -> list[Any]:
        """The linear modules of :attr:`square_head_paths` that ``model`` has (a model
        built without a pooler has none)."""
        from torch import nn

        found = []
        for path in self.square_head_paths:
            module = _find(model, path)
            if module is None and model.base_model is not model:
                module = _find(model.base_model, path)
            if isinstance(module, nn.Linear):
                found.append(module)
        return found

    def skip_layer(self, args: tuple, kwargs: dict) -> Any:
        """Output of a layer removed whole (:attr:`SubnetSpec.dropped`): its input hidden
        states, in what the layer's forward returns (a tensor, as ``transformers`` 5
        layers return)."""
        return _hidden_states(args, kwargs)

    def build_hidden_size(self, config: Any) -> int:
        """The ``hidden_size`` a model class must be built with so that its attention
        has the config's heads and head size (:func:`minidisc.elastic.io.load_student`
        then cuts the width to ``config.hidden_size``); the config's own width unless the
        family ties the head size to the width."""
        return config.hidden_size

    def config_states_sizes(self, config: Any) -> bool:
        """Whether ``config``'s own fields build its width and head size (False where a
        cut width cannot be stated: :meth:`build_hidden_size` differs)."""
        return self.build_hidden_size(config) == config.hidden_size

    def qkv_sources(self, layer: Any) -> tuple[Any, Any, Any]:
        """The modules whose outputs are one layer's queries, keys and values as attention
        reads them, before rotary embeddings: the projections, or the per-head norms that
        follow the query and key projections (:attr:`qk_norm_paths`)."""
        q, k = self.qk_norm_paths or (self.q_path, self.k_path)
        return layer.get_submodule(q), layer.get_submodule(k), layer.get_submodule(self.v_path)

    def lm_head(self, model: Any) -> Any:
        """The LM head of a masked or causal LM: maps hidden states ``(…, d)`` to logits
        ``(…, V)``; the rest of the model is ``model.base_model``.

        Raises:
            ModelError: the model has none of :attr:`lm_head_names`.
        """
        for name in self.lm_head_names:
            head = getattr(model, name, None)
            if head is not None:
                return head
        known = " or ".join(self.lm_head_names) or "none known"
        raise ModelError(
            f"{type(model).__name__} has no LM head module ({known}); pretrain supports "
            "BERT/RoBERTa-style masked LMs and LLaMA-style causal LMs"
        )

    def skip_attention(self, module: Any, args: tuple, kwargs: dict) -> Any:
        """Output of the attention module of a layer that keeps no heads.

        When the output projection follows the attention module (BERT), an empty per-head
        context makes it produce only its bias; when the module projects its own context
        (LLaMA, DistilBERT), it projects an empty one (its bias, zeros without). The
        residual and norms remain. Families whose attention returns something else
        override this.
        """
        hidden = _hidden_states(args, kwargs)
        context = hidden.new_zeros(*hidden.shape[:-1], 0)
        weights = _empty_attention_weights(module, hidden)
        prefix = f"{self.attention_path}."
        if not self.o_path.startswith(prefix):
            return context, weights
        return module.get_submodule(self.o_path[len(prefix) :])(context), weights

    def after_resize(self, layer: Any, heads: int, geometry: Geometry) -> None:
        """Refresh size attributes an architecture caches on its attention module."""


def _find(model: Any, path: str) -> Any:
    """The submodule of ``model`` at the dotted ``path``, or ``None``."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _hidden_states(args: tuple, kwargs: dict) -> Any:
    return args[0] if args else kwargs["hidden_states"]


def _empty_attention_weights(module: Any, hidden: Any) -> Any:
    # Eager attention returns weights (captured by `output_attentions`); keep one entry per
    # layer, with 0 heads, so layer indices stay aligned. Other backends return None.
    if getattr(module.config, "_attn_implementation", None) == "eager":
        b, t = hidden.shape[:2]
        return hidden.new_zeros(b, 0, t, t)
    return None


class BertFamily(Family):
    name = "bert"
    model_types = frozenset({"bert", "roberta", "xlm-roberta"})
    lm_type = "masked_lm"
    lm_head_names = ("cls", "lm_head")  # BERT's MLM head is `cls`, RoBERTa's `lm_head`
    layers_path = "encoder.layer"
    attention_path = "attention.self"
    q_path = "attention.self.query"
    k_path = "attention.self.key"
    v_path = "attention.self.value"
    o_path = "attention.output.dense"
    ffn_in_paths = ("intermediate.dense",)
    ffn_out_path = "output.dense"
    pruned_axes = (HEADS, NEURONS, HIDDEN, LAYERS)
    embedding_path = "embeddings.word_embeddings"
    extra_embedding_paths = ("embeddings.position_embeddings", "embeddings.token_type_embeddings")
    first_norm_path = "embeddings.LayerNorm"
    norm_paths = ("attention.output.LayerNorm", "output.LayerNorm")
    output_head_names = ("classifier", "classifier.out_proj", "qa_outputs")
    square_head_paths = ("pooler.dense", "classifier.dense")
    hidden_read_at_norms = True

    def geometry(self, config: Any) -> Geometry:
        if getattr(config, "add_cross_attention", False):
            raise ModelError(
                "cross-attention (encoder-decoder BERT) is not supported by minidisc.elastic"
            )
        h = config.hidden_size
        return Geometry(
            num_layers=config.num_hidden_layers,
            hidden_size=h,
            num_heads=config.num_attention_heads,
            num_kv_heads=config.num_attention_heads,
            head_dim=_bert_head_dim(config),
            intermediate_size=config.intermediate_size,
            gated_ffn=False,
            qkv_bias=True,
            o_bias=True,
            ffn_bias=True,
            norm_params_per_layer=4 * h,
            final_norm_params=0,
            vocab_size=config.vocab_size,
        )

    def embedding_params(self, config: Any, hidden: int | None = None) -> int:
        # word, position and token-type embeddings and their LayerNorm (weight and bias)
        h = config.hidden_size if hidden is None else hidden
        rows = config.vocab_size + config.max_position_embeddings + config.type_vocab_size
        return rows * h + 2 * h

    def write_uniform_sizes(self, config: Any, spec: SubnetSpec) -> bool:
        # BertConfig ties head size to hidden/num_attention_heads, so a uniform head count
        # below the full one cannot be expressed, nor a cut width; the FFN width can.
        config.intermediate_size = spec.neurons[0]
        return spec.heads[0] == config.num_attention_heads and self.config_states_sizes(config)

    def write_hidden_size(self, config: Any, hidden: int) -> None:
        # BertConfig derives the head size from the width: state it apart first
        # (``head_dim``, read by geometry and build_hidden_size).
        config.head_dim = _bert_head_dim(config)
        config.hidden_size = hidden

    def build_hidden_size(self, config: Any) -> int:
        # BertSelfAttention takes its head size from hidden_size / num_attention_heads
        return config.num_attention_heads * _bert_head_dim(config)

    def set_sizes(
        self, config: Any, *, layers: int, hidden: int, heads: int, kv_heads: int, head_dim: int, ffn: int
    ) -> None:
        if kv_heads != heads or head_dim * heads != hidden:
            raise ConfigError(
                f"a {self.name}-family model has one key/value head per query head and heads of "
                f"size hidden / heads; got {heads} heads, {kv_heads} key/value heads of size {head_dim} "
                f"at width {hidden}"
            )
        config.num_hidden_layers = layers
        config.hidden_size = hidden
        config.num_attention_heads = heads
        config.intermediate_size = ffn

    def after_resize(self, layer: Any, heads: int, geometry: Geometry) -> None:
        attn = layer.get_submodule(self.attention_path)
        attn.num_attention_heads = heads
        attn.all_head_size = heads * geometry.head_dim


def _bert_head_dim(config: Any) -> int:
    """A BERT-family config's head size: its ``head_dim`` where a cut width wrote one
    (:meth:`BertFamily.write_hidden_size`), else ``hidden_size / num_attention_heads``."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


class LlamaFamily(Family):
    name = "llama"
    model_types = frozenset({"llama"})
    lm_type = "causal_lm"
    lm_head_names = ("lm_head",)
    layers_path = "layers"
    attention_path = "self_attn"
    q_path = "self_attn.q_proj"
    k_path = "self_attn.k_proj"
    v_path = "self_attn.v_proj"
    o_path = "self_attn.o_proj"
    ffn_in_paths = ("mlp.gate_proj", "mlp.up_proj")
    ffn_out_path = "mlp.down_proj"
    grouped_query = True
    pruned_axes = (HEADS, NEURONS, HIDDEN, LAYERS)
    embedding_path = "embed_tokens"
    norm_paths = ("input_layernorm", "post_attention_layernorm")
    final_norm_path = "norm"
    output_head_names = ("lm_head", "score")
    default_layer_shapes = "uniform"  # a student that loads as an ordinary LlamaConfig

    def biases(self, config: Any) -> tuple[bool, bool, bool]:
        """Whether (Q/K/V, O, FFN) projections carry biases (LLaMA: ``attention_bias``,
        ``mlp_bias``)."""
        attention = bool(getattr(config, "attention_bias", False))
        return attention, attention, bool(getattr(config, "mlp_bias", False))

    def geometry(self, config: Any) -> Geometry:
        heads = config.num_attention_heads
        kv = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        if heads % kv:
            raise ModelError(
                f"num_attention_heads={heads} is not a multiple of num_key_value_heads={kv}"
            )
        qkv_bias, o_bias, ffn_bias = self.biases(config)
        h = config.hidden_size
        return Geometry(
            num_layers=config.num_hidden_layers,
            hidden_size=h,
            num_heads=heads,
            num_kv_heads=kv,
            head_dim=head_dim,
            intermediate_size=config.intermediate_size,
            gated_ffn=True,
            qkv_bias=qkv_bias,
            o_bias=o_bias,
            ffn_bias=ffn_bias,
            norm_params_per_layer=2 * h,
            final_norm_params=h,
            vocab_size=config.vocab_size,
            empty_layer_is_identity=not (o_bias or ffn_bias),
        )

    def write_uniform_sizes(self, config: Any, spec: SubnetSpec) -> bool:
        geo = self.geometry(config)
        config.intermediate_size = spec.neurons[0]
        heads = spec.heads[0]
        if heads == 0:  # a config cannot say "no attention"; load_student handles it
            return False
        # The config carries head_dim and num_key_value_heads explicitly, so any whole
        # number of KV groups is expressible.
        config.head_dim = geo.head_dim
        config.num_attention_heads = heads
        config.num_key_value_heads = heads // geo.group_size
        return True

    def check_written_sizes(self, config: Any) -> None:
        # transformers' LlamaConfig refuses to save a width that is not a multiple of the
        # query heads, even with an explicit head_dim (MistralConfig, Qwen2Config and
        # Qwen3Config accept any width).
        if self.name == "llama" and config.hidden_size % config.num_attention_heads:
            raise ConfigError(
                f"a LLaMA config needs hidden_size divisible by num_attention_heads: width "
                f"{config.hidden_size} with {config.num_attention_heads} heads; keep a width that is a multiple "
                "of the heads (the uniform sparsity map does)"
            )

    def write_hidden_size(self, config: Any, hidden: int) -> None:
        # The head size must not follow the width: state it before changing the width
        # (a config without head_dim derives it as hidden_size // num_attention_heads).
        config.head_dim = self.geometry(config).head_dim
        config.hidden_size = hidden

    def embedding_params(self, config: Any, hidden: int | None = None) -> int:
        return config.vocab_size * (config.hidden_size if hidden is None else hidden)

    def untied_head_params(self, config: Any, hidden: int | None = None) -> int:
        # a causal LM's head, a bias-free vocab × width matrix, unless tied to embed_tokens
        if getattr(config, "tie_word_embeddings", False):
            return 0
        return config.vocab_size * (config.hidden_size if hidden is None else hidden)

    def set_sizes(
        self, config: Any, *, layers: int, hidden: int, heads: int, kv_heads: int, head_dim: int, ffn: int
    ) -> None:
        if heads % kv_heads:
            raise ConfigError(f"{kv_heads} key/value heads do not divide the {heads} query heads")
        config.num_hidden_layers = layers
        config.hidden_size = hidden
        config.num_attention_heads = heads
        config.intermediate_size = ffn
        config.num_key_value_heads = kv_heads
        config.head_dim = head_dim

    def skip_attention(self, module: Any, args: tuple, kwargs: dict) -> Any:
        # A KV cache still advances for this layer: transformers reads the cached length
        # from a layer's keys and reports 0 for an empty tensor, so one never-read zero
        # head is stored instead of none. Then o_proj projects an empty context.
        cache = kwargs.get("past_key_values")
        if cache is not None:
            hidden = _hidden_states(args, kwargs)
            b, t = hidden.shape[:2]
            placeholder = hidden.new_zeros(b, 1, t, module.head_dim)
            cache.update(placeholder, placeholder, module.layer_idx)
        return super().skip_attention(module, args, kwargs)


class MistralFamily(LlamaFamily):
    """Mistral: LLaMA's modules, no biases."""

    name = "mistral"
    model_types = frozenset({"mistral"})

    def biases(self, config: Any) -> tuple[bool, bool, bool]:
        return False, False, False


class Qwen2Family(LlamaFamily):
    """Qwen2: LLaMA's modules, biases on the Q/K/V projections only."""

    name = "qwen2"
    model_types = frozenset({"qwen2"})

    def biases(self, config: Any) -> tuple[bool, bool, bool]:
        return True, False, False


class Qwen3Family(LlamaFamily):
    """Qwen3: LLaMA's modules plus per-head RMSNorms of queries and keys before RoPE
    (their weights, of size ``head_dim``, are shared by all heads, so pruning heads leaves
    them whole); ``attention_bias`` on all four attention projections, none in the FFN."""

    name = "qwen3"
    model_types = frozenset({"qwen3"})
    qk_norm_paths = ("self_attn.q_norm", "self_attn.k_norm")

    def biases(self, config: Any) -> tuple[bool, bool, bool]:
        attention = bool(getattr(config, "attention_bias", False))
        return attention, attention, False

    def geometry(self, config: Any) -> Geometry:
        geo = super().geometry(config)
        # two RMSNorms of the width plus q_norm and k_norm of one head's width
        qk = 2 * geo.head_dim
        return replace(geo, norm_params_per_layer=geo.norm_params_per_layer + qk, qk_norm_params=qk)


#: The registered families, consulted in order (:func:`register_family` adds one).
FAMILIES: list[Family] = [BertFamily(), LlamaFamily(), MistralFamily(), Qwen2Family(), Qwen3Family()]


def register_family(family: Family) -> Family:
    """Make :func:`family_for` answer ``family`` for its model types; returns it.

    Raises:
        ConfigError: its name or one of its model types belongs to a registered family,
            it names an unknown pruning axis, or it prunes the hidden width without
            naming its embedding.
    """
    unknown = [a for a in family.pruned_axes if a not in PRUNABLE_AXES]
    if unknown:
        raise ConfigError(
            f"family {family.name!r} prunes unknown axes {unknown}; the axes are {', '.join(PRUNABLE_AXES)}"
        )
    if HIDDEN in family.pruned_axes and family.embedding_path is None:
        raise ConfigError(f"family {family.name!r} prunes the hidden width but names no embedding_path")
    for other in FAMILIES:
        taken = sorted(family.model_types & other.model_types)
        if other.name == family.name or taken:
            what = f"the model types {taken} belong" if taken else f"the name {family.name!r} belongs"
            raise ConfigError(f"{what} to the registered family {other.name!r}; register a family once")
    FAMILIES.append(family)
    return family


def supported_model_types() -> list[str]:
    """Every ``config.model_type`` a registered family handles, sorted."""
    return sorted(t for f in FAMILIES for t in f.model_types)


def family_for(model_or_config: Any) -> Family:
    """The :class:`Family` of a Hugging Face model or config.

    Raises:
        ModelError: the architecture (``config.model_type``) is not supported.
    """
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise ModelError(
        f"model type {model_type!r} is not supported by minidisc's elastic sub-networks; "
        f"use one of {', '.join(supported_model_types())}"
    )
