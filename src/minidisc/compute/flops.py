"""Analytic parameter and FLOP counts of a transformer or any of its sub-networks.

Units: parameters are counts; FLOPs are floating-point operations (a multiply-add
counts 2). Works from a Hugging Face config (BERT-like or LLaMA-like, see
:mod:`minidisc.elastic.families`) plus an optional :class:`SubnetSpec`; with no spec the
sizes recorded in ``config.minidisc_subnet`` (an extracted student) or else the
config's full sizes are used.

Notation per layer: hidden width ``h`` (the kept width ``spec.hidden`` of a decoder
sub-network, else the config's ``hidden_size``), head size ``d``, kept query heads ``q``,
kept KV heads ``k = q / G`` (G = query heads per KV head; ``k = q`` without GQA), kept FFN
units ``n``, FFN matrices ``m`` (2 for BERT, 3 for a gated LLaMA FFN), sequence length
``S``, batch ``B``, tokens ``T = B·S``, vocabulary ``V``.

Non-embedding parameters (what the MiniDisc paper's FLOPs column is proportional to)::

    attention  h·d·(q + 2k)  + [d·(q + 2k) Q/K/V biases]  +  q·d·h  + [h O bias]
    FFN        m·h·n         + [biases: n per input matrix + h]
    norms      BERT 2 LayerNorms = 4h;  LLaMA 2 RMSNorms = 2h  (+ final RMSNorm h);
               Qwen3 also its per-head query and key RMSNorms, 2d

Excluded: token/position/type embeddings and the embedding LayerNorm, the pooler, the
classifier / LM head. With these choices BERT-base has 85,054,464 non-embedding
parameters and ``paper_flops`` = params × 128 = 10.9G, the paper's table value
(including the pooler would give 11.0G). **The sparsity of a sub-network is
``1 − non_embedding_params(spec) / non_embedding_params(full)``**: the fraction of the
prunable non-embedding parameters removed (every module uses this definition).

Total parameters (:func:`total_params`) add the input embeddings (LLaMA: ``V·h``; BERT:
word, position and token-type embeddings and their LayerNorm) and a causal LM's head
when it is not tied to the embeddings (``V·h``); pooler and task heads stay excluded.
SmolLM2-135M ties its head: its 28.3M embedding parameters are 21 % of its 134.5M.

Forward FLOPs (matmuls only, 2 per multiply-add; softmax, norms, activations and biases
are ignored, < 1 % for these models)::

    projections   2·T·h·d·(q + 2k)  +  2·T·q·d·h
    attention     2·B·S²·q·d (scores QKᵀ)  +  2·B·S²·q·d (context A·V)  = 4·B·S²·q·d
    FFN           2·T·h·n·m
    LM head       2·T·h·V   (only with ``lm_head=True``)

A causal decoder is counted with the full S² score matrix (what dense SDPA computes).
Training: ``train_flops = 3 × forward`` (backward ≈ 2 × forward: gradients w.r.t.
activations and weights; Kaplan et al. 2020).
"""

from __future__ import annotations

from typing import Any

from minidisc.elastic.families import Geometry, family_for
from minidisc.elastic.spec import SubnetSpec

PAPER_SEQ_LEN = 128


def _geometry_and_spec(config: Any, spec: SubnetSpec | None) -> tuple[Geometry, SubnetSpec]:
    geo = family_for(config).geometry(config)
    if spec is None:
        recorded = getattr(config, "minidisc_subnet", None)
        spec = SubnetSpec.from_dict(recorded) if recorded else geo.full_spec()
    return geo, spec


def _width(geo: Geometry, spec: SubnetSpec) -> int:
    return geo.hidden_size if spec.hidden is None else spec.hidden


def non_embedding_params(config: Any, spec: SubnetSpec | None = None) -> int:
    """Parameters of the transformer layers (+ a final norm), i.e. excluding embeddings,
    pooler and task/LM head, of the sub-network ``spec`` (default: see module doc). A
    dropped layer (empty, where an empty layer is the identity:
    :attr:`~minidisc.elastic.families.Geometry.empty_layer_is_identity`, or named in
    ``spec.dropped``) counts nothing, its norms included: the exported student no longer
    has it."""
    geo, spec = _geometry_and_spec(config, spec)
    h, d, g = _width(geo, spec), geo.head_dim, geo.group_size
    m = 3 if geo.gated_ffn else 2
    norms_per_layer, total = geo.norm_params(h)
    for index, (q, n) in enumerate(zip(spec.heads, spec.neurons)):
        if (q == n == 0 and geo.empty_layer_is_identity) or index in spec.dropped:
            continue
        qkv = d * (q + 2 * (q // g))
        total += h * qkv + (qkv if geo.qkv_bias else 0)
        total += q * d * h + (h if geo.o_bias else 0)
        total += m * h * n + ((m - 1) * n + h if geo.ffn_bias else 0)
        total += norms_per_layer
    return total


def total_params(config: Any, spec: SubnetSpec | None = None) -> int:
    """All parameters counted in a model's size: :func:`non_embedding_params` plus the
    input embeddings and an untied causal-LM head at the kept width (see the module doc;
    pooler and task heads excluded)."""
    geo, spec = _geometry_and_spec(config, spec)
    family, h = family_for(config), _width(geo, spec)
    return (
        non_embedding_params(config, spec)
        + family.embedding_params(config, h)
        + family.untied_head_params(config, h)
    )


def paper_flops(config: Any, spec: SubnetSpec | None = None, seq_len: int = PAPER_SEQ_LEN) -> int:
    """The MiniDisc paper's "FLOPs" column: non-embedding parameters × ``seq_len`` tokens.

    BERT-base → 10.9G at 128 tokens; its 15 %/10 %/5 % students → 1.6G/1.1G/0.5G.
    (A per-sequence measure; one multiply-add per parameter per token.)
    """
    return non_embedding_params(config, spec) * seq_len


def forward_flops(
    config: Any,
    spec: SubnetSpec | None = None,
    seq_len: int = PAPER_SEQ_LEN,
    batch: int = 1,
    lm_head: bool = False,
) -> int:
    """Matmul FLOPs of one forward pass over ``batch`` sequences of ``seq_len`` tokens.

    Counts the transformer layers' projections, attention scores and context (see the
    module doc for the formula) and, if ``lm_head``, the vocabulary projection (at the
    kept width). Layers keeping 0 heads (or 0 units) cost nothing in attention (FFN).
    """
    geo, spec = _geometry_and_spec(config, spec)
    h, d, g = _width(geo, spec), geo.head_dim, geo.group_size
    m = 3 if geo.gated_ffn else 2
    tokens = batch * seq_len
    total = 2 * tokens * h * geo.vocab_size if lm_head else 0
    for q, n in zip(spec.heads, spec.neurons):
        total += 2 * tokens * h * d * (q + 2 * (q // g))  # Q, K, V
        total += 2 * tokens * q * d * h  # attention output
        total += 4 * batch * seq_len * seq_len * q * d  # QKᵀ and A·V
        total += 2 * tokens * h * n * m  # FFN
    return total


def train_flops(
    config: Any,
    spec: SubnetSpec | None = None,
    seq_len: int = PAPER_SEQ_LEN,
    batch: int = 1,
    lm_head: bool = False,
) -> int:
    """FLOPs of one training step (forward + backward) = 3 × :func:`forward_flops`."""
    return 3 * forward_flops(config, spec, seq_len, batch, lm_head)
