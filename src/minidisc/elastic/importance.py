"""Head and neuron importance: accumulated |∂loss/∂mask| (MiniDisc, spec §Sparsification).

All-ones masks ``head_mask[L, H]`` (multiplying each head's context output) and
``neuron_mask[L, I]`` (multiplying the FFN activations after the non-linearity) are
attached with forward pre-hooks on the attention output projection and the FFN down
projection. With the model in eval mode, for each batch the mean label loss is
back-propagated (in chunks when that is exact: :func:`_batch_mask_grads`) and
``|∂loss/∂mask|`` accumulated (absolute value per batch, summed over batches); each
layer's row is then divided by its L2 norm. This is the first-order (Taylor)
head-importance estimate of Michel et al. (NeurIPS 2019), as used by the MiniDisc
reference implementation.

Only the axes the architecture family prunes (:attr:`Family.pruned_axes
<minidisc.elastic.families.Family.pruned_axes>`) are scored; an axis it keeps whole gets
no mask and scores of 0 (its order is left as it is).

Every family can also score, on request (``hidden=True`` / ``layers=True``, as
:func:`minidisc.elastic.estimators.estimate_importance` asks), the same way:

* residual-stream channels: one all-ones ``hidden_mask[d]`` multiplies channel ``c`` of
  every place the residual stream is *read* -- the inputs of every layer's Q/K/V and FFN
  input projections (the outputs of the layer's two norms) and the base model's output
  (the final norm's output, read by the LM head). A pre-norm decoder reads its residual
  stream only through those norms, so zeroing channel ``c`` at every read removes it from
  the model except for the norms' root-mean-square, which still counts it; ``|∂L/∂m_c|``
  is the first-order estimate of that removal. (Masking the embedding output instead
  would leave the channel written by every layer and read by all of them.) A post-norm
  encoder (BERT) carries its stream as the outputs of its LayerNorms (the embedding
  LayerNorm and two per layer), so there the mask multiplies every LayerNorm's output:
  channel ``c`` then reaches no projection, residual sum or head.
* whole layers: ``layer_mask[l]`` scales layer ``l``'s residual update, output
  ``= input + m_l·(output − input)`` (so ``m_l = 0`` skips the layer); ``|∂L/∂m_l|``
  is the first-order estimate of dropping it.

Both masks are applied so that the forward values are exactly those of the model (a
multiplication by 1.0, and an added ``0·(…)`` term), so the head and neuron scores are
the ones computed without them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from minidisc.elastic.families import Family
from minidisc.elastic.spec import HEADS, NEURONS
from minidisc.errors import ConfigError, DataError, ModelError
from minidisc.fileio import atomic_path
from minidisc.models import corrupted_weights_message


@dataclass(frozen=True)
class Importance:
    """Importance scores of every query head and FFN unit (and, where estimated, of every
    residual-stream channel and every layer).

    Attributes:
        heads: ``(num_layers, num_heads)`` float32, one score per *query* head.
        neurons: ``(num_layers, intermediate_size)`` float32.
        normalized: whether each layer's rows have been divided by their L2 norm.
        hidden: ``(hidden_size,)`` float32, one score per residual-stream channel, or
            ``None`` (not estimated: the width is kept).
        layers: ``(num_layers,)`` float32, one score per transformer layer (block
            importance, for dropping layers), or ``None``.
    """

    heads: torch.Tensor
    neurons: torch.Tensor
    normalized: bool = False
    hidden: torch.Tensor | None = None
    layers: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.heads.dim() != 2 or self.neurons.dim() != 2 or len(self.heads) != len(self.neurons):
            raise ConfigError(
                f"importance needs (layers, heads) and (layers, neurons) tensors; got shapes "
                f"{tuple(self.heads.shape)} and {tuple(self.neurons.shape)}"
            )

    def normalize(self) -> Importance:
        """Divide each layer's head row and neuron row by its L2 norm (all-zero rows stay 0)."""
        hidden = None if self.hidden is None else _row_normalize(self.hidden[None])[0]
        return Importance(
            _row_normalize(self.heads), _row_normalize(self.neurons), normalized=True, hidden=hidden, layers=self.layers
        )

    def group_scores(self, group_size: int) -> torch.Tensor:
        """``(num_layers, num_heads // group_size)``: sum of each KV group's query-head scores.

        Query heads ``g·group_size … (g+1)·group_size − 1`` share KV head ``g`` (the
        layout of Hugging Face grouped-query attention).
        """
        num_layers, num_heads = self.heads.shape
        if num_heads % group_size:
            raise ConfigError(f"{num_heads} heads do not split into groups of {group_size}")
        return self.heads.reshape(num_layers, num_heads // group_size, group_size).sum(-1)

    def weakest_layers(self, n: int) -> tuple[int, ...]:
        """The ``n`` layers of lowest block importance, ascending by index (ties: the
        later layer goes first, as deeper layers of a pretrained LLM are the more
        redundant; Gromov et al. 2024, arXiv 2403.17887).

        Raises:
            ConfigError: no layer scores (the estimator did not score depth), or ``n`` not
                in ``[0, num_layers)`` (at least one layer stays).
        """
        num_layers = len(self.heads)
        if not 0 <= n < num_layers:
            raise ConfigError(f"cannot drop {n} of {num_layers} layers: drop between 0 and {num_layers - 1}")
        if n and self.layers is None:
            raise ConfigError(
                "dropping layers needs block importance; this importance has no layer scores (the magnitude "
                "estimator does not score layers: use activation, gradient or random)"
            )
        if not n:
            return ()
        order = sorted(range(num_layers), key=lambda i: (float(self.layers[i]), -i))
        return tuple(sorted(order[:n]))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to a safetensors file (atomically)."""
        from safetensors.torch import save_file

        with atomic_path(path) as tmp:
            tensors = {"heads": self.heads, "neurons": self.neurons, "hidden": self.hidden, "layers": self.layers}
            save_file(
                {name: t.contiguous().cpu() for name, t in tensors.items() if t is not None},
                str(tmp),
                metadata={"normalized": str(self.normalized)},
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Importance:
        """Read what :meth:`save` wrote.

        Raises:
            ModelError: the file is missing, corrupted or truncated.
        """
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                stored = set(f.keys())
                optional = {name: f.get_tensor(name) for name in ("hidden", "layers") if name in stored}
                return cls(
                    f.get_tensor("heads"), f.get_tensor("neurons"), meta.get("normalized") == "True", **optional
                )
        except (SafetensorError, OSError) as err:
            raise ModelError(corrupted_weights_message(path, err)) from err


def _row_normalize(x: torch.Tensor) -> torch.Tensor:
    norm = x.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, x / norm.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(x))


@contextmanager
def mask_hooks(
    model: torch.nn.Module,
    family: Family,
    head_mask: torch.Tensor | None,
    neuron_mask: torch.Tensor | None,
    head_dim: int,
) -> Iterator[None]:
    """Multiply head contexts by ``head_mask[l, h]`` and FFN activations by ``neuron_mask[l, i]``.

    Args:
        head_mask: ``(num_layers, ≥ heads)``; head ``h`` of layer ``l`` is the slice
            ``[h·head_dim, (h+1)·head_dim)`` of the attention-output projection's input.
        neuron_mask: ``(num_layers, ≥ units)``; unit ``i`` is input column ``i`` of the FFN
            down projection. Masks are sliced to the layer's current (active) width.
    """
    handles = []

    def head_hook(layer_idx: int) -> Callable:
        def hook(_module: Any, args: tuple) -> tuple:
            x = args[0]
            heads = x.shape[-1] // head_dim
            m = head_mask[layer_idx, :heads].to(x.dtype)
            x = (x.unflatten(-1, (heads, head_dim)) * m[:, None]).flatten(-2)
            return (x, *args[1:])

        return hook

    def neuron_hook(layer_idx: int) -> Callable:
        def hook(_module: Any, args: tuple) -> tuple:
            x = args[0]
            return (x * neuron_mask[layer_idx, : x.shape[-1]].to(x.dtype), *args[1:])

        return hook

    try:
        for idx, layer in enumerate(family.layers(model)):
            if head_mask is not None:
                o = layer.get_submodule(family.o_path)
                handles.append(o.register_forward_pre_hook(head_hook(idx)))
            if neuron_mask is not None:
                down = layer.get_submodule(family.ffn_out_path)
                handles.append(down.register_forward_pre_hook(neuron_hook(idx)))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def residual_mask_hooks(
    model: torch.nn.Module,
    family: Family,
    hidden_mask: torch.Tensor | None,
    layer_mask: torch.Tensor | None,
) -> Iterator[None]:
    """Multiply every read of the residual stream by ``hidden_mask[c]`` and scale each
    layer's residual update by ``layer_mask[l]`` (module doc); either may be ``None``.

    Args:
        hidden_mask: ``(hidden_size,)``; applied to the inputs of every layer's Q, K, V and
            FFN input projections and to the base model's last hidden state, or, for a
            family whose stream is read at its norms (:attr:`Family.hidden_read_at_norms`,
            post-norm encoders), to the output of every norm of the residual stream.
        layer_mask: ``(num_layers,)``; layer ``l`` outputs
            ``output + (m_l − 1)·(output − input)``, the update detached in the added
            term, so that the forward values and every other gradient are unchanged.
    """
    handles = []

    def read_hook(_module: Any, args: tuple) -> tuple:
        return (args[0] * hidden_mask.to(args[0].dtype), *args[1:])

    def final_hook(_module: Any, _args: tuple, output: Any) -> Any:
        if isinstance(output, tuple):
            return (output[0] * hidden_mask.to(output[0].dtype), *output[1:])
        output["last_hidden_state"] = output["last_hidden_state"] * hidden_mask.to(output["last_hidden_state"].dtype)
        return output

    def layer_hook(layer_idx: int) -> Callable:
        def hook(_module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
            before = layer_input(args, kwargs)
            after = layer_output(output)
            update = (after - before).detach()
            scaled = after + (layer_mask[layer_idx].to(after.dtype) - 1) * update
            return (scaled, *output[1:]) if isinstance(output, tuple) else scaled

        return hook

    def norm_hook(_module: Any, _args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output * hidden_mask.to(output.dtype)

    at_norms = family.hidden_read_at_norms
    try:
        for idx, layer in enumerate(family.layers(model)):
            if hidden_mask is not None and not at_norms:
                for path in (family.q_path, family.k_path, family.v_path, *family.ffn_in_paths):
                    handles.append(layer.get_submodule(path).register_forward_pre_hook(read_hook))
            if layer_mask is not None:
                handles.append(layer.register_forward_hook(layer_hook(idx), with_kwargs=True))
        if hidden_mask is not None and at_norms:
            handles.extend(norm.register_forward_hook(norm_hook) for norm in family.hidden_norms(model))
        elif hidden_mask is not None:
            handles.append(model.base_model.register_forward_hook(final_hook))
        yield
    finally:
        for h in handles:
            h.remove()


def layer_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """The hidden states a transformer layer's forward received (first positional
    argument, or ``hidden_states=``)."""
    return args[0] if args else kwargs["hidden_states"]


def layer_output(output: Any) -> torch.Tensor:
    """The hidden states a transformer layer returned (a tensor, or the first element of
    the tuple older ``transformers`` layers return)."""
    return output[0] if isinstance(output, tuple) else output


LossFn = Callable[[Any, Mapping[str, Any]], torch.Tensor]


#: Examples back-propagated at once by the importance pass when the loss is an example
#: mean (:func:`_batch_mask_grads`). The pass back-propagates batches of the fine-tuning's
#: ``eval_batch_size`` (128): whole, the demo's pass peaked at 1.93 GB, in chunks of 32 at
#: about 1 GB (docs/minidisc.md, "Cost").
IMPORTANCE_CHUNK = 32


def compute_importance(
    model: torch.nn.Module,
    family: Family,
    dataloader: Iterable[Mapping[str, Any]],
    *,
    loss_fn: LossFn | None = None,
    max_batches: int | None = None,
    normalize: bool = True,
    progress: bool = True,
    hidden: bool = False,
    layers: bool = False,
    chunk: int | None = IMPORTANCE_CHUNK,
) -> Importance:
    """Accumulated |∂loss/∂mask| for every head and FFN unit of a full-size model.

    Args:
        model: a Hugging Face model of ``family`` with all layers at full size.
        dataloader: batches (dicts of tensors) passed as ``model(**batch)``; they must
            hold labels unless ``loss_fn`` is given.
        loss_fn: ``loss_fn(outputs, batch) -> scalar``; default ``outputs.loss``, i.e. the
            model's own mean label loss (CE for classification / token tagging / causal
            LM, MSE for regression with ``num_labels == 1``).
        max_batches: stop after this many batches (``None``: the whole loader).
        normalize: divide each layer's row by its L2 norm (spec default).
        progress: show a progress bar (batches, ETA) on stderr. Like the Trainer's bars
            it is also off after ``transformers.utils.logging.disable_progress_bar()``
            or with the environment variable ``TQDM_DISABLE=1``.
        hidden: also score the residual-stream channels (module doc): ``hidden (d,)``,
            normalised to unit L2 norm with the rest.
        layers: also score whole layers (module doc): ``layers (L,)``, never normalised.
        chunk: back-propagate a batch of one label per example (the model's own
            example-mean loss) this many examples at a time, summing the chunks' gradients
            weighted by their share before the absolute value: the same estimator in a
            fraction of the activation memory (:func:`_batch_mask_grads`); None: whole.

    Returns:
        :class:`Importance` with ``heads (L, H)`` and ``neurons (L, I)``, float32, ≥ 0;
        0 along an axis the family does not prune; ``hidden`` and ``layers`` when asked.

    Raises:
        DataError: the loader yielded no batch. ConfigError: no loss available, or the
            family prunes no axis.
        ModelError: a layer is not at full size.
    """
    geo = family.geometry(model.config)
    for layer in family.layers(model):
        if family.layer_sizes(layer, geo) != (geo.num_heads, geo.intermediate_size):
            raise ModelError(
                "importance is computed on a full-size model; this one has pruned layers"
            )
    device = next(model.parameters()).device
    head_mask = torch.ones(geo.num_layers, geo.num_heads, device=device, requires_grad=True)
    neuron_mask = torch.ones(
        geo.num_layers, geo.intermediate_size, device=device, requires_grad=True
    )
    masks = [
        mask
        for axis, mask in ((HEADS, head_mask), (NEURONS, neuron_mask))
        if axis in family.pruned_axes
    ]
    if not masks:
        raise ConfigError(f"the {family.name} family prunes no axis, so there is nothing to score")
    head_acc = torch.zeros(geo.num_layers, geo.num_heads, device=device)
    neuron_acc = torch.zeros(geo.num_layers, geo.intermediate_size, device=device)
    hidden_mask = torch.ones(geo.hidden_size, device=device, requires_grad=True) if hidden else None
    layer_mask = torch.ones(geo.num_layers, device=device, requires_grad=True) if layers else None
    extra = [m for m in (hidden_mask, layer_mask) if m is not None]
    extra_acc = [torch.zeros_like(m, requires_grad=False) for m in extra]

    was_training = model.training
    model.eval()
    batches = 0
    bar = _progress_bar(dataloader, max_batches, progress)
    # Only the masks' gradients are read: with the weights frozen, autograd keeps no
    # activation that only a weight gradient would need (the mask gradients are the same).
    # Frozen right before the try, so its finally always gives them back.
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        with mask_hooks(
            model,
            family,
            head_mask if HEADS in family.pruned_axes else None,
            neuron_mask if NEURONS in family.pruned_axes else None,
            geo.head_dim,
        ), residual_mask_hooks(model, family, hidden_mask, layer_mask):
            for batch in dataloader:
                if max_batches is not None and batches >= max_batches:
                    break
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                grads = _batch_mask_grads(model, batch, masks + extra, loss_fn, chunk)
                for mask, grad in zip(masks, grads):
                    if grad is not None:
                        (head_acc if mask is head_mask else neuron_acc).add_(grad.detach().abs())
                for acc, grad in zip(extra_acc, grads[len(masks):]):
                    if grad is not None:
                        acc.add_(grad.detach().abs())
                batches += 1
                bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
        for p in frozen:
            p.requires_grad_(True)
    if batches == 0:
        raise DataError("importance estimation got no batches; give a non-empty dataloader")
    scored = dict(zip([n for n, m in (("hidden", hidden_mask), ("layers", layer_mask)) if m is not None], extra_acc))
    imp = Importance(
        head_acc.float().cpu(),
        neuron_acc.float().cpu(),
        **{name: acc.float().cpu() for name, acc in scored.items()},
    )
    return imp.normalize() if normalize else imp


def _batch_mask_grads(
    model: torch.nn.Module, batch: Mapping[str, Any], inputs: list[torch.Tensor], loss_fn: LossFn | None,
    chunk: int | None,
) -> list[torch.Tensor | None]:
    """∂(the batch's loss)/∂``inputs`` (the masks), one entry per input (None: unused).

    With the model's own loss over one label per example (classification, regression),
    the batch's loss is the mean over its ``n`` examples, so it equals the sum over
    chunks of ``(n_c / n)·mean_c``: each chunk is back-propagated on its own (its
    activations freed before the next) and the gradients summed, which differs from the
    whole batch's only by float summation order. Any other loss (``loss_fn``, token-level
    labels) is back-propagated whole.

    Raises:
        ConfigError: no loss (no ``labels`` in the batch and no ``loss_fn``).
    """
    labels = batch.get("labels")
    n = labels.shape[0] if torch.is_tensor(labels) and labels.dim() == 1 else 0  # 0: not one label per example
    parts = [(batch, 1.0)]  # × 1.0 is exact: a whole batch's gradients are bit for bit its own
    if loss_fn is None and chunk is not None and n > chunk:
        parts = [({k: v[i:i + chunk] if torch.is_tensor(v) else v for k, v in batch.items()}, min(chunk, n - i) / n)
                 for i in range(0, n, chunk)]
    total: list[torch.Tensor | None] = [None] * len(inputs)
    for part, share in parts:
        outputs = model(**part)
        loss = loss_fn(outputs, part) if loss_fn is not None else getattr(outputs, "loss", None)
        if loss is None:
            raise ConfigError("importance needs a loss: give batches with 'labels' or pass loss_fn")
        # autograd.grad touches neither parameter .grad fields nor optimizer state.
        grads = torch.autograd.grad(loss * share, inputs, allow_unused=True)
        total = [g if t is None else (t if g is None else t + g) for t, g in zip(total, grads)]
    return total


def _progress_bar(dataloader: Iterable[Any], max_batches: int | None, enabled: bool) -> Any:
    """A tqdm bar over the importance batches; transformers' tqdm factory honours its
    global ``disable_progress_bar()`` switch, as the Trainer's bars do."""
    from transformers.utils.logging import tqdm

    total = len(dataloader) if hasattr(dataloader, "__len__") else None  # type: ignore[arg-type]
    if max_batches is not None:
        total = max_batches if total is None else min(total, max_batches)
    # ``disable`` passed only when off, so that TQDM_DISABLE=1 still applies otherwise
    options: dict[str, Any] = {} if enabled else {"disable": True}
    return tqdm(total=total, desc="Importance", unit="batch", **options)
