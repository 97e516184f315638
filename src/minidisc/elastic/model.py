"""ElasticModel: one set of weights, many nested sub-networks (MiniDisc spec §3).

Wrapping an ordinary Hugging Face model turns its Q/K/V/O and FFN projections into
:class:`~minidisc.elastic.modules.ElasticLinear` and its attention modules into
skippable ones, in place; for a family that prunes the hidden width (the LLaMA-like
decoders) also its token embedding, its RMSNorms and its output head (LM head or
classifier). ``activate(spec)`` then makes every following forward (and backward) use
prefix slices ``W[:out, :in]`` of the shared weights -- and, with ``spec.hidden = h``,
only the first ``h`` channels of the residual stream everywhere -- so a sub-network's
cost scales with its size, in eval and in train mode.

Typical use::

    em = make_elastic(teacher)
    imp = em.importance(train_loader)      # normalised |dL/dmask|
    imp = em.reorder(imp)                  # heads/neurons sorted, outputs unchanged
    specs = em.sparsity_map(imp)           # {0.0: …, 0.1: …, …, 0.95: …}
    with em.active(specs[0.9]):
        logits = em(**batch).logits        # the 10 % sub-network
    student = em.extract(specs[0.95])      # a standalone smaller PreTrainedModel
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from torch import nn

from minidisc.elastic.extract import check_spec, extract, physical_spec
from minidisc.elastic.families import Family, Geometry, family_for
from minidisc.elastic.importance import Importance, LossFn, compute_importance
from minidisc.elastic.modules import (
    ElasticLinear,
    make_droppable,
    make_elastic_embedding,
    make_elastic_linear,
    make_elastic_norm,
    make_skippable,
)
from minidisc.elastic.reorder import reorder_model
from minidisc.elastic.sparsity_map import (
    DEFAULT_GRID,
    LayerShapes,
    default_layer_shapes,
    sparsity_map,
)
from minidisc.elastic.spec import HEADS, HIDDEN, LAYERS, SubnetSpec
from minidisc.errors import ConfigError


class ElasticModel:
    """Shared-weight sub-networks of a Hugging Face model of a registered family
    (:mod:`minidisc.elastic.families`: BERT-like encoders, LLaMA-like decoders).

    Args:
        model: a ``PreTrainedModel`` (any head) of a supported family; converted in place
            (parameter names and objects are unchanged, so ``model.save_pretrained`` and
            optimizers keep working). The model may itself be an extracted,
            per-layer-heterogeneous student: its current sizes are its full spec.

    Attributes:
        model: the wrapped model (call it directly, or call the ElasticModel).
        family: the :class:`~minidisc.elastic.families.Family` adapter.

    Raises:
        ModelError: unsupported architecture.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.family: Family = family_for(model)
        self.geometry: Geometry = self.family.geometry(model.config)
        # a layer removed whole is skipped where keeping nothing is not the identity
        self._droppable = LAYERS in self.family.pruned_axes and not self.geometry.empty_layer_is_identity
        for layer in self.family.layers(model):
            for path in self.family.linears(layer):
                make_elastic_linear(layer.get_submodule(path))
            if HEADS in self.family.pruned_axes:  # a layer may keep no heads
                make_skippable(layer.get_submodule(self.family.attention_path), self.family)
            if self._droppable:
                make_droppable(layer, self.family)
        if HIDDEN in self.family.pruned_axes:  # the residual stream may be cut
            for embedding in self.family.hidden_embeddings(model):
                make_elastic_embedding(embedding)
            for norm in self.family.hidden_norms(model):
                make_elastic_norm(norm)
            for head in (*self.family.output_heads(model), *self.family.square_heads(model)):
                make_elastic_linear(head)
        self._full = physical_spec(model, self.family)
        self._spec = self._full
        self.activate(None)

    # ---- sub-network selection -------------------------------------------------------
    def full_spec(self) -> SubnetSpec:
        """The model's own per-layer sizes (for a fresh teacher: every head and unit)."""
        return self._full

    @property
    def spec(self) -> SubnetSpec:
        """The currently active sub-network."""
        return self._spec

    def activate(self, spec: SubnetSpec | None) -> None:
        """Make following forwards use sub-network ``spec`` (``None``: the full model).

        Raises:
            ConfigError: ``spec`` exceeds the model in some layer or in width, has the
                wrong number of layers, cuts an axis the family does not prune, or (GQA)
                keeps a number of query heads that is not whole KV groups.
        """
        spec = self._full if spec is None else spec
        check_spec(spec, self._full, self.family, self.geometry)
        fam = self.family
        if spec.hidden is not None and self._unsliced_lm_head():
            raise ConfigError(
                f"cutting the hidden width of a {fam.name} language model is not supported (its LM head "
                "is not sliced); keep hidden unset or use the model with a task head"
            )
        for index, (layer, heads, units) in enumerate(zip(fam.layers(self.model), spec.heads, spec.neurons)):
            for path, (out, inp) in fam.projection_sizes(heads, units, self.geometry, spec.hidden).items():
                self._linear(layer, path).set_active(out=out, inp=inp)
            if HEADS in fam.pruned_axes:
                layer.get_submodule(fam.attention_path).minidisc_skip = heads == 0
            if self._droppable:
                layer.minidisc_drop = index in spec.dropped
        if HIDDEN in fam.pruned_axes:
            for embedding in fam.hidden_embeddings(self.model):
                embedding.set_active(spec.hidden)
            for norm in fam.hidden_norms(self.model):
                norm.set_active(spec.hidden)
            for head in fam.output_heads(self.model):
                head.set_active(inp=spec.hidden)
            for head in fam.square_heads(self.model):
                head.set_active(out=spec.hidden, inp=spec.hidden)
        self._spec = spec

    def _unsliced_lm_head(self) -> bool:
        """Whether the model has an LM head that is not among the sliced output heads."""
        sliced = {id(m) for m in self.family.output_heads(self.model)}
        heads = [getattr(self.model, n, None) for n in self.family.lm_head_names]
        return any(h is not None and id(h) not in sliced for h in heads)

    @contextmanager
    def active(self, spec: SubnetSpec | None) -> Iterator[ElasticModel]:
        """Context manager: ``spec`` is active inside, the previous spec is restored after."""
        previous = self._spec
        self.activate(spec)
        try:
            yield self
        finally:
            self.activate(previous)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Forward of the wrapped model with the active sub-network."""
        return self.model(*args, **kwargs)

    # ---- sparsification --------------------------------------------------------------
    def importance(
        self,
        dataloader: Iterable[Mapping[str, Any]],
        *,
        loss_fn: LossFn | None = None,
        max_batches: int | None = None,
        normalize: bool = True,
        progress: bool = True,
        hidden: bool = False,
        layers: bool = False,
    ) -> Importance:
        """Head/neuron importance of the full model; see
        :func:`minidisc.elastic.importance.compute_importance`. The active spec is
        restored afterwards; the model must be full-size (not an extracted student).
        ``hidden`` / ``layers``: also score residual-stream channels / whole layers."""
        with self.active(None):
            return compute_importance(
                self.model,
                self.family,
                dataloader,
                loss_fn=loss_fn,
                max_batches=max_batches,
                normalize=normalize,
                progress=progress,
                hidden=hidden,
                layers=layers,
            )

    def reorder(self, importance: Importance) -> Importance:
        """Sort every layer's heads and units (and, with ``importance.hidden`` on a
        family that prunes it, the residual-stream channels) by ``importance``,
        descending, in place.

        The model's outputs are unchanged. Returns the importance permuted alongside
        (feed it to :meth:`sparsity_map`). Leaves the full model active.
        """
        self.activate(None)
        return reorder_model(self.model, self.family, importance)

    def sparsity_map(
        self,
        importance: Importance,
        grid: Iterable[float] = DEFAULT_GRID,
        layer_shapes: LayerShapes | None = None,
        drop_layers: int = 0,
        align: int = 1,
    ) -> dict[float, SubnetSpec]:
        """``{sparsity: SubnetSpec}`` for ``grid``; see :func:`minidisc.elastic.sparsity_map.sparsity_map`.

        ``layer_shapes``: ``"uniform"`` (the same sizes in every layer, an ordinary
        config) or ``"global"`` (per-layer sizes from the global ranking); ``None``: the
        family's default (:attr:`Family.default_layer_shapes`: uniform for decoders,
        global for encoders), global for an importance without hidden-channel scores
        (:func:`minidisc.elastic.sparsity_map.default_layer_shapes`). ``drop_layers``: whole
        layers of least block importance removed at every level above 0 (uniform shapes).
        ``align``: kept sizes rounded down to multiples of this, for GPU matrix shapes
        (:mod:`minidisc.elastic.align`; 1: none)."""
        return sparsity_map(
            importance,
            grid,
            group_size=self.geometry.group_size,
            axes=self.family.pruned_axes,
            layer_shapes=layer_shapes or default_layer_shapes(self.family, importance),
            config=self.model.config,
            drop_layers=drop_layers,
            align=align,
        )

    # ---- export ----------------------------------------------------------------------
    def extract(self, spec: SubnetSpec | None = None) -> nn.Module:
        """A standalone deep copy cut to ``spec`` (default: the active spec).

        The copy has plain, physically smaller ``nn.Linear`` layers and
        ``config.minidisc_subnet``; this model is not changed.
        """
        return extract(self.model, self._spec if spec is None else spec, self.family)

    def _linear(self, layer: nn.Module, path: str) -> ElasticLinear:
        return layer.get_submodule(path)  # type: ignore[return-value]


def make_elastic(model: nn.Module) -> ElasticModel:
    """Wrap ``model`` as an :class:`ElasticModel` (idempotent on the modules)."""
    return ElasticModel(model)
