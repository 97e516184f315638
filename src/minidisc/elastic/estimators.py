"""Importance estimators, one entry point: :func:`estimate_importance` ``(model, family,
batches, method=…) -> (Importance, ImportanceCost)``.

Methods (:data:`METHODS`); each scores every query head ``(L, H)`` and FFN unit
``(L, I)``, and for decoders (:func:`is_decoder`) every residual-stream channel ``(d,)``;
``layers (L,)`` (block importance, for dropping layers) where the method defines it:

=============  ==========================================  ==========  ======  ===========
method         what                                        data        hidden  layers
=============  ==========================================  ==========  ======  ===========
``activation`` Minitron (arXiv 2407.14679 §2.2): mean |act|  forwards    yes     1 − cos
               over tokens, L2 over samples                            (dec.)  (in → out;
                                                                               any family)
               (:mod:`~minidisc.elastic.activation`)
``gradient``   |∂L/∂mask| Taylor scores, L = the model's   forwards +  yes     |∂L/∂m_l|
               own loss; causal LMs: next-token CE on the  backwards   (dec.)  (dec.)
               batch itself (:mod:`~minidisc.elastic.importance`)
``magnitude``  weight norms (:func:`magnitude_importance`)  none        yes     --
``random``     seeded U[0, 1) (:func:`random_importance`)  none        yes     yes
=============  ==========================================  ==========  ======  ===========

Every score is float32 and ≥ 0; head and neuron rows (and the channel row) are divided by
their L2 norm when ``normalize`` (the default, as the gradient estimator always did);
block importance is never normalised. Under grouped-query attention every *query* head
gets its own score; the sparsity map sums a key/value group's
(:meth:`Importance.group_scores <minidisc.elastic.importance.Importance.group_scores>`).

For encoders the gradient method is exactly :func:`~minidisc.elastic.importance.compute_importance`
(no channel or layer masks), so encoder results are unchanged.

Calibration cost (:class:`ImportanceCost`): the batches, sequences, tokens (padding
left out) and token positions run (padding included: it is computed), the analytic forward FLOPs
(:func:`minidisc.compute.flops.forward_flops` of each batch's shape; the LM head counted
when it runs, i.e. for the gradient method of a causal LM), backward FLOPs = 2 × forward
(Kaplan et al. 2020) for the gradient method, and wall seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from minidisc.elastic.families import Family, family_for
from minidisc.elastic.importance import Importance, LossFn, compute_importance
from minidisc.elastic.spec import HEADS, NEURONS
from minidisc.errors import ConfigError, DataError, ModelError

ACTIVATION, GRADIENT, MAGNITUDE, RANDOM = "activation", "gradient", "magnitude", "random"
#: The estimators :func:`estimate_importance` knows.
METHODS: tuple[str, ...] = (ACTIVATION, GRADIENT, MAGNITUDE, RANDOM)
#: Methods that read calibration batches (the others read only weights, or nothing).
DATA_METHODS = frozenset({ACTIVATION, GRADIENT})


@dataclass(frozen=True)
class ImportanceCost:
    """What one importance estimate spent on calibration.

    Attributes:
        method: the estimator (one of :data:`METHODS`).
        batches / sequences: calibration batches and sequences run.
        tokens: real tokens run forward (``attention_mask`` ones; every position without one).
        positions: token positions run forward (batch × length, padding included), what
            the FLOPs count.
        forward_flops: analytic matmul FLOPs of the forward passes.
        backward_flops: of the backward passes (2 × forward; 0 without gradients).
        wall_time_s: wall-clock seconds of the whole estimate.
    """

    method: str
    batches: int = 0
    sequences: int = 0
    tokens: int = 0
    positions: int = 0
    forward_flops: float = 0.0
    backward_flops: float = 0.0
    wall_time_s: float = 0.0

    @property
    def flops(self) -> float:
        """Forward plus backward FLOPs."""
        return self.forward_flops + self.backward_flops

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flops": self.flops}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImportanceCost:
        return cls(**{k: data[k] for k in asdict(cls(method="")) if k in data})


def is_decoder(family: Family) -> bool:
    """Whether ``family`` is a (pre-norm, causal-LM) decoder, whose residual-stream
    channels are scored (``Importance.hidden``); encoders keep their width."""
    return family.lm_type == "causal_lm"


def estimate_importance(
    model: torch.nn.Module,
    family: Family | None = None,
    batches: Iterable[Mapping[str, Any]] | None = None,
    method: str = GRADIENT,
    *,
    max_batches: int | None = None,
    seed: int = 0,
    normalize: bool = True,
    progress: bool = True,
    loss_fn: LossFn | None = None,
) -> tuple[Importance, ImportanceCost]:
    """Score a full-size model's heads, FFN units (and decoders' channels and layers).

    Args:
        model: a Hugging Face model (any head) with all layers at full size.
        family: its architecture family (default: :func:`family_for` ``(model)``).
        batches: calibration batches (dicts of tensors with ``input_ids``, optionally
            ``attention_mask``; the gradient method also reads ``labels``: for a causal LM
            without them the labels are the inputs, padding ignored). Unused by
            ``magnitude`` and ``random``.
        method: one of :data:`METHODS` (module doc).
        max_batches: use at most this many batches (``None``: all).
        seed: the seed of ``random`` (the other methods draw nothing).
        normalize: divide each layer's head and neuron rows, and the channel row, by
            their L2 norm.
        progress: a progress bar over the batches on stderr.
        loss_fn: the gradient method's loss, ``loss_fn(outputs, batch)``; default the
            model's own (see :func:`~minidisc.elastic.importance.compute_importance`).

    Returns:
        The :class:`~minidisc.elastic.importance.Importance` and its :class:`ImportanceCost`.

    Raises:
        ConfigError: an unknown method, or a data method without ``batches``.
        DataError: a data method's batches are empty. ModelError: a pruned model.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown importance method {method!r}; use one of {', '.join(METHODS)}")
    family = family or family_for(model)
    decoder = is_decoder(family)
    started = time.perf_counter()
    if method in DATA_METHODS:
        if batches is None:
            raise ConfigError(f"the {method} importance needs calibration batches")
        lm_head = method == GRADIENT and _has_lm_head(model, family)
        sized = hasattr(batches, "__len__")
        counted = (_SizedCountedBatches if sized else _CountedBatches)(batches, max_batches, lm_labels=lm_head)
        if method == ACTIVATION:
            imp = _activation(model, family, counted, hidden=decoder, layers=True, normalize=normalize,
                              progress=progress)
        elif decoder:
            imp = compute_importance(model, family, counted, loss_fn=loss_fn, normalize=normalize,
                                     progress=progress, hidden=True, layers=True)
        else:  # exactly the encoders' estimator of every earlier release
            imp = compute_importance(model, family, counted, loss_fn=loss_fn, normalize=normalize, progress=progress)
        cost = counted.cost(model, method, lm_head=lm_head)
    elif method == MAGNITUDE:
        imp = magnitude_importance(model, family, hidden=decoder, normalize=normalize)
        cost = ImportanceCost(method)
    else:
        imp = random_importance(model, family, seed=seed, hidden=decoder, normalize=normalize)
        cost = ImportanceCost(method)
    return imp, ImportanceCost(**{**asdict(cost), "wall_time_s": time.perf_counter() - started})


def _activation(model: torch.nn.Module, family: Family, batches: Iterable[Mapping[str, Any]], **kwargs: Any) -> Importance:
    from minidisc.elastic.activation import activation_importance

    return activation_importance(model, family, batches, **kwargs)


def magnitude_importance(
    model: torch.nn.Module, family: Family | None = None, *, hidden: bool | None = None, normalize: bool = True
) -> Importance:
    """Scores from weight norms alone (no data): a baseline.

    Each score bounds the size of what the unit writes per unit of input it reads
    (Frobenius norms ``‖·‖``, biases ignored):

    * query head ``h`` of key/value group ``g``: ``‖W_O[:, h]‖ · ‖W_V[g]‖`` -- its output
      is ``W_O[:, h] · A · W_V[g] x`` with attention weights ``A`` a convex combination,
      so ``‖out‖ ≤ ‖W_O[:, h]‖ ‖W_V[g]‖ max‖x‖``. (Queries and keys only shape ``A``.)
      Within a group the value factor is shared, so the output columns order the heads.
    * FFN unit ``i``: ``‖W_down[:, i]‖ · Π_in ‖W_in[i, :]‖`` over the FFN input
      projections (LLaMA: gate and up rows; BERT: the intermediate row) -- the unit's
      output is ``W_down[:, i] · act(W_gate[i] x) · (W_up[i] x)`` and
      ``|SiLU(z)| ≤ |z|``, ``|GELU(z)| ≤ |z|``.
    * residual channel ``c`` (decoders): ``‖E[:, c]‖``, the input embedding's column
      (with tied embeddings also the LM head's column).

    Args:
        model: a full-size model of ``family`` (default :func:`family_for` ``(model)``).
        hidden: score channels (default: for decoders, :func:`is_decoder`).
        normalize: divide each layer's rows (and the channel row) by their L2 norm.

    Returns:
        :class:`Importance` with ``heads``, ``neurons`` (0 along an axis the family does
        not prune) and ``hidden``; no ``layers``.
    """
    family = family or family_for(model)
    geo = family.geometry(model.config)
    hidden = is_decoder(family) if hidden is None else hidden
    heads = torch.zeros(geo.num_layers, geo.num_heads)
    neurons = torch.zeros(geo.num_layers, geo.intermediate_size)
    with torch.no_grad():
        for idx, layer in enumerate(family.layers(model)):
            if family.layer_sizes(layer, geo) != (geo.num_heads, geo.intermediate_size):
                raise ModelError("importance is computed on a full-size model; this one has pruned layers")
            if HEADS in family.pruned_axes:
                o = layer.get_submodule(family.o_path).weight.detach().float()  # (d, H·hd)
                v = layer.get_submodule(family.v_path).weight.detach().float()  # (KV·hd, d)
                o_cols = o.unflatten(1, (geo.num_heads, geo.head_dim)).pow(2).sum((0, 2)).sqrt()
                v_rows = v.unflatten(0, (geo.num_kv_heads, geo.head_dim)).pow(2).sum((1, 2)).sqrt()
                heads[idx] = (o_cols * v_rows.repeat_interleave(geo.group_size)).cpu()
            if NEURONS in family.pruned_axes:
                score = layer.get_submodule(family.ffn_out_path).weight.detach().float().norm(dim=0)
                for path in family.ffn_in_paths:
                    score = score * layer.get_submodule(path).weight.detach().float().norm(dim=1)
                neurons[idx] = score.cpu()
        channels = model.get_input_embeddings().weight.detach().float().norm(dim=0).cpu() if hidden else None
    imp = Importance(heads, neurons, hidden=channels)
    return imp.normalize() if normalize else imp


def random_importance(
    model: torch.nn.Module,
    family: Family | None = None,
    *,
    seed: int = 0,
    hidden: bool | None = None,
    normalize: bool = True,
) -> Importance:
    """Seeded uniform ``U[0, 1)`` scores (a baseline): the same for the same seed and
    model shape, on any machine (a CPU ``torch.Generator``).

    Drawn in a fixed order: heads ``(L, H)``, neurons ``(L, I)``, channels ``(d,)`` (when
    ``hidden``; default for decoders), layers ``(L,)``. An axis the family does not prune
    scores 0. Layers are always scored (a random choice of layers to drop).
    """
    family = family or family_for(model)
    geo = family.geometry(model.config)
    hidden = is_decoder(family) if hidden is None else hidden
    gen = torch.Generator().manual_seed(seed)
    heads = torch.rand(geo.num_layers, geo.num_heads, generator=gen)
    neurons = torch.rand(geo.num_layers, geo.intermediate_size, generator=gen)
    channels = torch.rand(geo.hidden_size, generator=gen) if hidden else None
    layers = torch.rand(geo.num_layers, generator=gen)
    if HEADS not in family.pruned_axes:
        heads.zero_()
    if NEURONS not in family.pruned_axes:
        neurons.zero_()
    imp = Importance(heads, neurons, hidden=channels, layers=layers)
    return imp.normalize() if normalize else imp


def _has_lm_head(model: torch.nn.Module, family: Family) -> bool:
    """Whether ``model`` is a causal LM with its LM head (whose forward computes logits
    over the vocabulary and whose loss is next-token cross-entropy)."""
    if family.lm_type != "causal_lm":
        return False
    try:
        family.lm_head(model)
    except ModelError:
        return False
    return True


class _CountedBatches:
    """The calibration batches, at most ``max_batches`` of them, counted as they are
    handed out; with ``lm_labels``, each batch without ``labels`` gets its input ids as
    labels (padding positions ``-100``: the causal-LM loss, which shifts them itself)."""

    def __init__(self, batches: Iterable[Mapping[str, Any]], max_batches: int | None, *, lm_labels: bool) -> None:
        self.batches, self.max_batches, self.lm_labels = batches, max_batches, lm_labels
        self.shapes: list[tuple[int, int]] = []
        self.tokens = 0

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        self.shapes, self.tokens = [], 0
        for batch in self.batches:
            if self.max_batches is not None and len(self.shapes) >= self.max_batches:
                return
            if self.lm_labels and "labels" not in batch:
                ids = batch["input_ids"]
                mask = batch.get("attention_mask")
                batch = {**batch, "labels": ids if mask is None else ids.masked_fill(mask == 0, -100)}
            self.shapes.append(tuple(batch["input_ids"].shape))  # type: ignore[arg-type]
            mask = batch.get("attention_mask")
            self.tokens += int(batch["input_ids"].numel() if mask is None else mask.sum())
            yield batch

    def cost(self, model: torch.nn.Module, method: str, *, lm_head: bool) -> ImportanceCost:
        """The cost of the batches handed out (forward FLOPs of each batch's shape;
        backward = 2 × forward for the gradient method)."""
        from minidisc.compute.flops import forward_flops

        forward = float(sum(forward_flops(model.config, None, seq_len=t, batch=b, lm_head=lm_head) for b, t in self.shapes))
        if not self.shapes:
            raise DataError("importance estimation got no batches; give a non-empty dataloader")
        return ImportanceCost(
            method,
            batches=len(self.shapes),
            sequences=sum(b for b, _ in self.shapes),
            tokens=self.tokens,
            positions=sum(b * t for b, t in self.shapes),
            forward_flops=forward,
            backward_flops=2 * forward if method == GRADIENT else 0.0,
        )


class _SizedCountedBatches(_CountedBatches):
    """:class:`_CountedBatches` over batches of known number (for the progress bar)."""

    def __len__(self) -> int:
        total = len(self.batches)  # type: ignore[arg-type]
        return total if self.max_batches is None else min(total, self.max_batches)
