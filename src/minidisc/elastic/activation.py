"""Activation-based importance (Minitron): forward passes only, no gradient, no labels.

Muralidharan et al. 2024, "Compact Language Models via Pruning and Knowledge
Distillation" (arXiv 2407.14679), §2.2, score each width unit by the activations it
produces on a small calibration set ``D``:

* head ``i`` (Eq. 1): ``F_head(i) = Σ_{B,S} ‖Attn(X W_Q,i, X W_K,i, X W_V,i)‖₂`` -- the L2
  norm, over its ``head_dim`` channels, of the head's attention output (its slice of the
  context the output projection reads);
* neuron ``i`` (Eq. 2): ``F_neuron(i) = Σ_{B,S} X W_1,iᵀ`` -- the FFN unit's activation;
  for a gated FFN (LLaMA) the value the down projection reads, ``act(gate_i·x)·(up_i·x)``;
* embedding channel ``i`` (Eq. 3): ``F_emb(i) = Σ_{B,S} LN(X)_i`` -- the channel of the
  norms' outputs;
* layer ``i`` (block importance, from ShortGPT, Men et al. 2024):
  ``BI_i = 1 − E_{X,t}[X_{i,t}ᵀ X_{i+1,t} / (‖X_{i,t}‖₂ ‖X_{i+1,t}‖₂)]``, one minus the
  cosine similarity of the layer's input and output hidden states, averaged over tokens
  and samples (a layer that leaves its input unchanged scores 0).

``Σ_{B,S}`` is an aggregation over the batch (samples) and the sequence (tokens); the
paper's ablation of those aggregations (§4) found *mean over the sequence, then L2 norm
over the batch* best, which is what is computed here: for every calibration sample, the
mean over its (non-padding) tokens of the *magnitude* ``|·|`` of the activation (a head's
per-token L2 norm is already ≥ 0; neurons and channels are signed, and a signed mean
would cancel), then the L2 norm of those per-sample means over all calibration samples.
Embedding channels: the aggregate is taken per norm and summed over the norms -- each
layer's two norms (their outputs are the inputs of the Q/K/V and of the FFN input
projections, where they are read here, so no norm module needs naming) and the final
norm (the base model's last hidden state in a pre-norm decoder).

Everything runs under :func:`torch.no_grad` on ``model.base_model`` (the LM or task head
is not computed: nothing reads it), in eval mode, so no parameter's ``.grad`` is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from minidisc.elastic.families import Family
from minidisc.elastic.importance import Importance, _progress_bar, layer_input, layer_output
from minidisc.elastic.spec import HEADS, NEURONS
from minidisc.errors import DataError, ModelError

#: Keys of a batch that are targets, not inputs of the base model.
TARGET_KEYS = frozenset({"labels", "label", "start_positions", "end_positions"})


class _Accumulator:
    """Per-sample sequence means, accumulated as sums of squares over samples (L2 over the
    batch), for ``sites`` independent places of ``width`` units each."""

    def __init__(self, sites: int, width: int, device: torch.device) -> None:
        self.sum_sq = torch.zeros(sites, width, dtype=torch.float64, device=device)

    def add(self, site: int, values: torch.Tensor, weights: torch.Tensor) -> None:
        """``values (B, T, width) ≥ 0``; ``weights (B, T)``: 1 for real tokens, 0 for padding."""
        counts = weights.sum(1, keepdim=True).clamp_min(1)
        per_sample = (values.double() * weights[..., None]).sum(1) / counts  # (B, width): mean over S
        self.sum_sq[site] += per_sample.pow(2).sum(0)

    def l2(self) -> torch.Tensor:
        """``(sites, width)``: the L2 norm over every sample seen."""
        return self.sum_sq.sqrt()


def activation_importance(
    model: torch.nn.Module,
    family: Family,
    dataloader: Iterable[Mapping[str, Any]],
    *,
    max_batches: int | None = None,
    hidden: bool = True,
    layers: bool = True,
    normalize: bool = True,
    progress: bool = True,
) -> Importance:
    """Minitron's activation scores (module doc) of a full-size model, from forwards only.

    Args:
        model: a Hugging Face model of ``family`` (any head) with all layers at full size.
        dataloader: batches (dicts of tensors) with ``input_ids`` and optionally
            ``attention_mask`` (padding is left out of every mean); labels are ignored.
        max_batches: stop after this many batches (``None``: the whole loader).
        hidden: score the residual-stream channels (``hidden (d,)``).
        layers: score whole layers by block importance (``layers (L,)``, in [0, 2]).
        normalize: divide each layer's head and neuron rows (and the channel row) by their
            L2 norm, as the gradient estimator does; block importance is left as it is.
        progress: a progress bar on stderr (see
            :func:`~minidisc.elastic.importance.compute_importance`).

    Returns:
        :class:`Importance`: ``heads (L, H)`` per query head, ``neurons (L, I)``,
        ``hidden (d,)`` and ``layers (L,)`` when asked; float32, ≥ 0; 0 along an axis the
        family does not prune.

    Raises:
        DataError: the loader yielded no batch. ModelError: a layer is not at full size.
    """
    geo = family.geometry(model.config)
    for layer in family.layers(model):
        if family.layer_sizes(layer, geo) != (geo.num_heads, geo.intermediate_size):
            raise ModelError("importance is computed on a full-size model; this one has pruned layers")
    device = next(model.parameters()).device
    heads = _Accumulator(geo.num_layers, geo.num_heads, device)
    neurons = _Accumulator(geo.num_layers, geo.intermediate_size, device)
    # channel sites: two norms per layer, then the final norm
    channels = _Accumulator(2 * geo.num_layers + 1, geo.hidden_size, device)
    cos_sum = torch.zeros(geo.num_layers, dtype=torch.float64, device=device)
    token_count = torch.zeros((), dtype=torch.float64, device=device)
    weights: dict[str, torch.Tensor] = {}  # the current batch's token weights (B, T)

    def head_hook(idx: int) -> Callable:
        def hook(_module: Any, args: tuple) -> None:
            x = args[0]
            per_head = x.unflatten(-1, (x.shape[-1] // geo.head_dim, geo.head_dim)).norm(dim=-1)
            heads.add(idx, per_head, weights["w"])

        return hook

    def neuron_hook(idx: int) -> Callable:
        def hook(_module: Any, args: tuple) -> None:
            neurons.add(idx, args[0].abs(), weights["w"])

        return hook

    def channel_hook(site: int) -> Callable:
        def hook(_module: Any, args: tuple) -> None:
            channels.add(site, args[0].abs(), weights["w"])

        return hook

    def block_hook(idx: int) -> Callable:
        def hook(_module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            before, after = layer_input(args, kwargs).double(), layer_output(output).double()
            cos = torch.nn.functional.cosine_similarity(before, after, dim=-1)  # (B, T)
            cos_sum[idx] += (cos * weights["w"]).sum()

        return hook

    handles = []
    for idx, layer in enumerate(family.layers(model)):
        if HEADS in family.pruned_axes:
            handles.append(layer.get_submodule(family.o_path).register_forward_pre_hook(head_hook(idx)))
        if NEURONS in family.pruned_axes:
            handles.append(layer.get_submodule(family.ffn_out_path).register_forward_pre_hook(neuron_hook(idx)))
        if hidden:
            handles.append(layer.get_submodule(family.q_path).register_forward_pre_hook(channel_hook(2 * idx)))
            ffn_in = layer.get_submodule(family.ffn_in_paths[0])
            handles.append(ffn_in.register_forward_pre_hook(channel_hook(2 * idx + 1)))
        if layers:
            handles.append(layer.register_forward_hook(block_hook(idx), with_kwargs=True))

    was_training = model.training
    model.eval()
    batches = 0
    bar = _progress_bar(dataloader, max_batches, progress)
    try:
        with torch.no_grad():
            for batch in dataloader:
                if max_batches is not None and batches >= max_batches:
                    break
                inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items() if k not in TARGET_KEYS}
                ids = inputs["input_ids"]
                mask = inputs.get("attention_mask")
                weights["w"] = (torch.ones_like(ids) if mask is None else mask).double()
                out = model.base_model(**inputs)
                if hidden:
                    last = out[0] if isinstance(out, tuple) else out.last_hidden_state
                    channels.add(2 * geo.num_layers, last.abs(), weights["w"])
                token_count += weights["w"].sum()
                batches += 1
                bar.update(1)
    finally:
        bar.close()
        for h in handles:
            h.remove()
        model.train(was_training)
    if batches == 0:
        raise DataError("importance estimation got no batches; give a non-empty dataloader")
    extra: dict[str, torch.Tensor] = {}
    if hidden:
        extra["hidden"] = channels.l2().sum(0).float().cpu()
    if layers:
        extra["layers"] = (1.0 - cos_sum / token_count.clamp_min(1)).clamp_min(0).float().cpu()
    imp = Importance(heads.l2().float().cpu(), neurons.l2().float().cpu(), **extra)
    return imp.normalize() if normalize else imp
