"""Where attention heads and FFN neurons live in each supported architecture.

Every architecture difference of the elastic layer is confined to this module: the
rest of :mod:`minidisc.elastic` only talks to a :class:`Family`, which names a layer's
projection matrices, says how a layer's attention is skipped when it keeps no heads,
and writes uniform sub-network sizes into a config.

Two families are supported:

* :class:`BertFamily` -- BERT-like encoders (``bert``, ``roberta``, ``xlm-roberta``):
  ``encoder.layer[i].attention.self.{query,key,value}``, ``attention.output.dense``,
  ``intermediate.dense``, ``output.dense``. Head size is ``hidden / num_attention_heads``.
* :class:`LlamaFamily` -- LLaMA-like decoders (``llama``, ``mistral``, ``qwen2``):
  ``layers[i].self_attn.{q,k,v,o}_proj``, gated FFN ``mlp.{gate,up,down}_proj``, with
  grouped-query attention. Heads are pruned by whole KV groups: a group is one KV head
  plus the ``num_attention_heads // num_key_value_heads`` query heads that read it.

BERT and RoBERTa (encoders) and LLaMA (decoder) are covered by the unit tests;
``xlm-roberta``, ``mistral`` and ``qwen2`` share their module layout exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from minidisc.elastic.spec import SubnetSpec
from minidisc.errors import ModelError


@dataclass(frozen=True)
class Geometry:
    """Full-size shape of a transformer, read from its config.

    Attributes:
        num_layers: transformer layers.
        hidden_size: model width (never pruned).
        num_heads: query heads per layer.
        num_kv_heads: key/value heads per layer (``num_heads`` without GQA).
        head_dim: width of one head.
        intermediate_size: FFN units per layer.
        gated_ffn: FFN has three matrices (gate, up, down) instead of two.
        qkv_bias / o_bias / ffn_bias: whether those projections carry biases.
        norm_params_per_layer: parameters of a layer's norms (BERT: 2 LayerNorms with
            weight and bias = 4·hidden; LLaMA: 2 RMSNorms = 2·hidden).
        final_norm_params: parameters of a norm after the last layer (LLaMA: hidden).
        vocab_size: output vocabulary (for an optional LM-head FLOP count).
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

    @property
    def group_size(self) -> int:
        """Query heads per KV head (1 without grouped-query attention)."""
        return self.num_heads // self.num_kv_heads

    def full_spec(self) -> SubnetSpec:
        return SubnetSpec.uniform(self.num_layers, self.num_heads, self.intermediate_size)


class Family:
    """Architecture adapter. Subclasses fill in the module paths (relative to a layer)."""

    name: ClassVar[str]
    model_types: ClassVar[frozenset[str]]
    attention_path: ClassVar[str]  # the module skipped when a layer keeps 0 heads
    q_path: ClassVar[str]
    k_path: ClassVar[str]
    v_path: ClassVar[str]
    o_path: ClassVar[str]  # input = per-head context, shape (B, T, heads·head_dim)
    ffn_in_paths: ClassVar[tuple[str, ...]]  # output = FFN units
    ffn_out_path: ClassVar[str]  # input = FFN activations after the non-linearity

    # ---- config level --------------------------------------------------------------
    def geometry(self, config: Any) -> Geometry:
        raise NotImplementedError

    def write_uniform_sizes(self, config: Any, spec: SubnetSpec) -> bool:
        """Record a uniform spec in the config's own size fields where the architecture can.

        Returns True when the resulting config describes the student exactly, i.e. when
        plain ``AutoModel*.from_pretrained`` rebuilds it.
        """
        raise NotImplementedError

    # ---- model level ---------------------------------------------------------------
    def layers(self, model: Any) -> list[Any]:
        raise NotImplementedError

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

    def layer_sizes(self, layer: Any, geometry: Geometry) -> tuple[int, int]:
        """Physical (query heads, FFN units) of one layer, read from its weight shapes."""
        q = layer.get_submodule(self.q_path)
        ffn_out = layer.get_submodule(self.ffn_out_path)
        return q.weight.shape[0] // geometry.head_dim, ffn_out.weight.shape[1]

    def skip_attention(self, module: Any, args: tuple, kwargs: dict) -> Any:
        """Output of the attention module of a layer that keeps no heads."""
        raise NotImplementedError

    def after_resize(self, layer: Any, heads: int, geometry: Geometry) -> None:
        """Refresh size attributes an architecture caches on its attention module."""


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
    attention_path = "attention.self"
    q_path = "attention.self.query"
    k_path = "attention.self.key"
    v_path = "attention.self.value"
    o_path = "attention.output.dense"
    ffn_in_paths = ("intermediate.dense",)
    ffn_out_path = "output.dense"

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
            head_dim=h // config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            gated_ffn=False,
            qkv_bias=True,
            o_bias=True,
            ffn_bias=True,
            norm_params_per_layer=4 * h,
            final_norm_params=0,
            vocab_size=config.vocab_size,
        )

    def write_uniform_sizes(self, config: Any, spec: SubnetSpec) -> bool:
        # BertConfig ties head size to hidden/num_attention_heads, so a uniform head count
        # below the full one cannot be expressed; the FFN width can.
        config.intermediate_size = spec.neurons[0]
        return spec.heads[0] == config.num_attention_heads

    def layers(self, model: Any) -> list[Any]:
        return list(model.base_model.encoder.layer)

    def skip_attention(self, module: Any, args: tuple, kwargs: dict) -> Any:
        # BertSelfAttention returns the per-head context; an empty context makes the
        # following output dense produce only its bias (residual + LayerNorm remain).
        hidden = _hidden_states(args, kwargs)
        return hidden.new_zeros(*hidden.shape[:-1], 0), _empty_attention_weights(module, hidden)

    def after_resize(self, layer: Any, heads: int, geometry: Geometry) -> None:
        attn = layer.get_submodule(self.attention_path)
        attn.num_attention_heads = heads
        attn.all_head_size = heads * geometry.head_dim


class LlamaFamily(Family):
    name = "llama"
    model_types = frozenset({"llama", "mistral", "qwen2"})
    attention_path = "self_attn"
    q_path = "self_attn.q_proj"
    k_path = "self_attn.k_proj"
    v_path = "self_attn.v_proj"
    o_path = "self_attn.o_proj"
    ffn_in_paths = ("mlp.gate_proj", "mlp.up_proj")
    ffn_out_path = "mlp.down_proj"

    def geometry(self, config: Any) -> Geometry:
        heads = config.num_attention_heads
        kv = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        if heads % kv:
            raise ModelError(
                f"num_attention_heads={heads} is not a multiple of num_key_value_heads={kv}"
            )
        if config.model_type == "qwen2":
            qkv_bias, o_bias, ffn_bias = True, False, False
        elif config.model_type == "mistral":
            qkv_bias = o_bias = ffn_bias = False
        else:
            qkv_bias = o_bias = bool(getattr(config, "attention_bias", False))
            ffn_bias = bool(getattr(config, "mlp_bias", False))
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

    def layers(self, model: Any) -> list[Any]:
        return list(model.base_model.layers)

    def skip_attention(self, module: Any, args: tuple, kwargs: dict) -> Any:
        # o_proj sits inside LlamaAttention: project an empty context (gives o_proj's bias,
        # zeros without bias). A KV cache still advances for this layer: transformers
        # reads the cached length from a layer's keys and reports 0 for an empty
        # tensor, so one never-read zero head is stored instead of none.
        hidden = _hidden_states(args, kwargs)
        b, t = hidden.shape[:2]
        cache = kwargs.get("past_key_values")
        if cache is not None:
            placeholder = hidden.new_zeros(b, 1, t, module.head_dim)
            cache.update(placeholder, placeholder, module.layer_idx)
        out = module.o_proj(hidden.new_zeros(b, t, 0))
        return out, _empty_attention_weights(module, hidden)


FAMILIES: tuple[Family, ...] = (BertFamily(), LlamaFamily())


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
    supported = sorted(t for f in FAMILIES for t in f.model_types)
    raise ModelError(
        f"model type {model_type!r} is not supported by minidisc's elastic sub-networks; "
        f"use one of {', '.join(supported)}"
    )
