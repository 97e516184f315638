"""Physically reorder heads and FFN units by importance, so sub-networks are prefixes.

A permutation of heads permutes the Q/K/V output rows in ``head_dim`` blocks and the
attention-output input columns the same way; a permutation of FFN units permutes the
FFN-in rows (LLaMA: gate and up) and the FFN-out input columns. Each head (unit) keeps
all its weights, and the attention / FFN sums are order-independent, so the model's
function is unchanged (MiniDisc spec §Sparsification, "Reorder").

Grouped-query attention: KV groups are sorted by group score (sum of their query heads'
scores), descending; within a group, query heads are sorted descending. Query heads
``a·G … a·G+G−1`` then still read KV head ``a``.

Hidden channels (families that prune the width, with ``Importance.hidden``): one
permutation ``P`` of the residual stream, applied everywhere it is read or written: the
embeddings' columns (BERT: word, position and token-type), every norm's weight (and
LayerNorm bias), the input columns of Q/K/V, of the FFN inputs and of the output head,
and the output rows (and biases) of the attention output and the FFN output; a square
head (BERT's pooler) has its rows and columns permuted, and the classifier that reads it
its columns. The residual stream of the reordered model is the old one permuted by ``P``;
RMSNorm and LayerNorm are permutation-equivariant (mean, variance and mean square do not
depend on the order), so the logits are unchanged. A head tied to the embedding shares
its tensor and is permuted once.
"""

from __future__ import annotations

import torch
from torch import nn

from minidisc.elastic.families import Family, Geometry
from minidisc.elastic.importance import Importance
from minidisc.elastic.spec import HIDDEN
from minidisc.errors import ModelError


def head_order(scores: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Order of one layer's heads, most important first.

    Args:
        scores: ``(num_heads,)`` query-head scores.
        group_size: query heads per KV head.

    Returns:
        ``(query_order (num_heads,), kv_order (num_heads // group_size,))``: new position
        ``p`` holds old head ``query_order[p]`` (and KV head ``kv_order[p]``).
    """
    groups = scores.reshape(-1, group_size)
    kv_order = torch.sort(groups.sum(1), descending=True, stable=True).indices
    within = torch.sort(groups, dim=1, descending=True, stable=True).indices  # (KV, G)
    query_order = (kv_order[:, None] * group_size + within[kv_order]).reshape(-1)
    return query_order, kv_order


def _block_index(order: torch.Tensor, block: int) -> torch.Tensor:
    return (order[:, None] * block + torch.arange(block)).reshape(-1)


@torch.no_grad()
def _permute_rows(linear: nn.Linear, index: torch.Tensor) -> None:
    index = index.to(linear.weight.device)
    linear.weight.copy_(linear.weight[index])
    if linear.bias is not None:
        linear.bias.copy_(linear.bias[index])


@torch.no_grad()
def _permute_cols(linear: nn.Linear, index: torch.Tensor) -> None:
    index = index.to(linear.weight.device)
    linear.weight.copy_(linear.weight[:, index])


def reorder_model(model: nn.Module, family: Family, importance: Importance) -> Importance:
    """Permute every layer's heads and FFN units (and the hidden channels, see the module
    doc) into descending importance, in place.

    Args:
        model: full-size model of ``family``.
        importance: scores, ``heads (L, H)`` and ``neurons (L, I)``; ``hidden (d,)``
            reorders the residual stream where the family prunes it.

    Returns:
        The importance permuted alongside the weights (row ``l`` now describes the
        reordered layer ``l``; ``hidden[c]`` the reordered channel ``c``); ``layers`` is
        returned as it is.

    Raises:
        ModelError: importance shapes do not match the model.
    """
    geo: Geometry = family.geometry(model.config)
    layers = family.layers(model)
    expected = ((geo.num_layers, geo.num_heads), (geo.num_layers, geo.intermediate_size))
    if (tuple(importance.heads.shape), tuple(importance.neurons.shape)) != expected:
        raise ModelError(
            f"importance shapes {tuple(importance.heads.shape)}, {tuple(importance.neurons.shape)} "
            f"do not match the model's {expected}"
        )
    if importance.hidden is not None and tuple(importance.hidden.shape) != (geo.hidden_size,):
        raise ModelError(
            f"hidden importance of shape {tuple(importance.hidden.shape)} does not match the model's "
            f"width ({geo.hidden_size},)"
        )
    for layer in layers:
        if family.layer_sizes(layer, geo) != (geo.num_heads, geo.intermediate_size):
            raise ModelError("reorder needs a full-size model; this one has pruned layers")

    new_heads, new_neurons = [], []
    for idx, layer in enumerate(layers):
        q_order, kv_order = head_order(importance.heads[idx], geo.group_size)
        q_rows = _block_index(q_order, geo.head_dim)
        kv_rows = _block_index(kv_order, geo.head_dim)
        _permute_rows(layer.get_submodule(family.q_path), q_rows)
        _permute_rows(layer.get_submodule(family.k_path), kv_rows)
        _permute_rows(layer.get_submodule(family.v_path), kv_rows)
        _permute_cols(layer.get_submodule(family.o_path), q_rows)

        n_order = torch.sort(importance.neurons[idx], descending=True, stable=True).indices
        for path in family.ffn_in_paths:
            _permute_rows(layer.get_submodule(path), n_order)
        _permute_cols(layer.get_submodule(family.ffn_out_path), n_order)

        new_heads.append(importance.heads[idx][q_order])
        new_neurons.append(importance.neurons[idx][n_order])
    hidden = importance.hidden
    if hidden is not None and HIDDEN in family.pruned_axes:
        h_order = torch.sort(hidden, descending=True, stable=True).indices
        _permute_hidden(model, family, h_order)
        hidden = hidden[h_order]
    return Importance(
        torch.stack(new_heads), torch.stack(new_neurons), importance.normalized, hidden=hidden, layers=importance.layers
    )


@torch.no_grad()
def _permute_hidden(model: nn.Module, family: Family, order: torch.Tensor) -> None:
    """Reorder the residual-stream channels: new channel ``c`` is old channel ``order[c]``."""
    embeddings = family.hidden_embeddings(model)
    done = {id(embeddings[0].weight)}  # a tied head shares this tensor: permute it once
    for embedding in embeddings:
        _permute_cols(embedding, order)
    for norm in family.hidden_norms(model):
        for value in (norm.weight, getattr(norm, "bias", None)):
            if value is not None:
                value.copy_(value[order.to(value.device)])
    for layer in family.layers(model):
        for path in (family.q_path, family.k_path, family.v_path, *family.ffn_in_paths):
            _permute_cols(layer.get_submodule(path), order)
        for path in (family.o_path, family.ffn_out_path):
            _permute_rows(layer.get_submodule(path), order)
    for head in family.square_heads(model):  # reads the stream, writes what the classifier reads
        _permute_cols(head, order)
        _permute_rows(head, order)
    for head in family.output_heads(model):
        if id(head.weight) not in done:
            done.add(id(head.weight))
            _permute_cols(head, order)
