"""The description of one sub-network: how many heads and FFN neurons each layer keeps,
and (decoders) how many residual-stream channels the whole model keeps.

After :meth:`minidisc.elastic.ElasticModel.reorder` has sorted every layer's heads and neurons by
importance (descending), a sub-network keeps a *prefix* of each layer's heads and
neurons, so two integers per layer describe it completely.

Each of the two is a per-layer pruning *axis* (:data:`AXES`); the residual-stream width
is a model-wide one (:data:`HIDDEN`, one number for the whole model). Depth
(:data:`LAYERS`) needs no field of its own: a layer that keeps no heads and no FFN units
is *empty* (:meth:`SubnetSpec.empty_layers`), and where the family says an empty layer is
the identity (a pre-norm residual block without output biases,
:attr:`minidisc.elastic.families.Geometry.empty_layer_is_identity`) it is a dropped layer:
it costs nothing in the sandwich, counts as removed in the sparsity, and is taken out of
an exported student, which then has fewer layers. So nesting, masking and slicing need
nothing new for depth there. Where an empty layer is *not* the identity (post-norm
encoders: BERT's LayerNorms still act on it), a spec names its removed layers
(:attr:`SubnetSpec.dropped`): the elastic model skips them whole (output = input) and
extraction removes them. An architecture
family says which of them it can cut (:attr:`minidisc.elastic.families.Family.pruned_axes`,
a subset of :data:`PRUNABLE_AXES`): every registered family cuts heads, neurons, the
hidden width and whole layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minidisc.errors import ConfigError

#: Reference sparsity levels {0, 10, …, 90} ∪ {85, 95} percent, as fractions, ascending.
DEFAULT_GRID: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)

#: Pruning axes: attention heads (query heads; whole key/value groups under grouped-query
#: attention) and FFN units. Each names the :class:`SubnetSpec` field of its per-layer sizes.
HEADS = "heads"
NEURONS = "neurons"
AXES: tuple[str, ...] = (HEADS, NEURONS)

#: The model-wide axis: channels of the residual stream (embeddings, norms, every
#: projection's input or output, a tied LM head). One width for the whole model, so it is
#: a single number of :class:`SubnetSpec`, not a per-layer one, and not in :data:`AXES`.
HIDDEN = "hidden"

#: Whole layers (depth; ``--drop-layers``): a layer keeping 0 heads and 0 FFN units,
#: removed from the exported student where the family allows it (see the module doc).
LAYERS = "layers"

#: Every axis a family may prune (:attr:`minidisc.elastic.families.Family.pruned_axes`):
#: the per-layer :data:`AXES`, the model-wide :data:`HIDDEN`, then :data:`LAYERS`. Code
#: that walks the per-layer sizes iterates :data:`AXES`; code that cuts the residual
#: stream asks whether ``HIDDEN in family.pruned_axes``, code that drops layers whether
#: ``LAYERS in family.pruned_axes``.
PRUNABLE_AXES: tuple[str, ...] = (*AXES, HIDDEN, LAYERS)

#: The layer shapes of a sparsity map (``--layer-shapes``, :mod:`minidisc.elastic.sparsity_map`):
#: one size for every layer (``uniform``), per-layer sizes (``global``), whole layers
#: removed at full width (``depth``).
LAYER_SHAPES: tuple[str, ...] = ("uniform", "global", "depth")


def shape_conflict(layer_shapes: str | None, drop_layers: int = 0, align: int = 1) -> str | None:
    """What is wrong with a sparsity map's shape options, as one sentence naming the option
    to change, or ``None``: the one rule behind the CLI, the YAML configs and the library.

    ``layer_shapes`` ``None`` is the family's default (the CLI's unset option). Dropped
    layers need ``uniform`` (one size for the layers that stay); ``depth`` keeps every
    layer's full sizes, so it takes no alignment. Callers raise their own error type
    (pydantic validators need ``ValueError``).
    """
    if layer_shapes is not None and layer_shapes not in LAYER_SHAPES:
        return f"unknown layer shapes {layer_shapes!r} (--layer-shapes); choose one of {', '.join(LAYER_SHAPES)}"
    if drop_layers and layer_shapes != "uniform":
        return "drop_layers needs layer_shapes uniform (--layer-shapes uniform: one size for the layers that stay)"
    if align > 1 and layer_shapes == "depth":
        return "layer_shapes depth keeps every layer's full sizes: leave align (--align) at 1"
    return None


@dataclass(frozen=True)
class SubnetSpec:
    """Per-layer sizes of a sub-network.

    Attributes:
        heads: kept *query* attention heads per layer (a prefix of the reordered
            heads). For grouped-query attention this is a multiple of the group size
            (query heads per key/value head) because whole KV groups are kept.
        neurons: kept FFN intermediate units per layer (a prefix).
        sparsity: the sparsity level (a fraction in [0, 1)) this spec was built for,
            or ``None`` for a hand-made spec.
        hidden: kept residual-stream channels (a prefix of the reordered channels), the
            same in every layer; ``None``: the model's full width.
        dropped: layers removed whole (0-based, ascending), each keeping 0 heads and 0
            units: the elastic model skips them (output = input) and extraction removes
            them. Empty (the default) where the family's empty layers are the identity
            (decoders): there :meth:`empty_layers` are the removed ones.
    """

    heads: tuple[int, ...]
    neurons: tuple[int, ...]
    sparsity: float | None = None
    hidden: int | None = None
    dropped: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(int(h) for h in self.heads))
        object.__setattr__(self, "neurons", tuple(int(n) for n in self.neurons))
        if len(self.heads) != len(self.neurons):
            raise ConfigError(
                f"a sub-network spec needs one head count and one neuron count per layer; "
                f"got {len(self.heads)} head counts and {len(self.neurons)} neuron counts"
            )
        if any(h < 0 for h in self.heads) or any(n < 0 for n in self.neurons):
            raise ConfigError("head and neuron counts of a sub-network spec must be >= 0")
        if self.hidden is not None:
            if int(self.hidden) < 1:
                raise ConfigError(f"a sub-network keeps at least one hidden channel, got hidden={self.hidden}")
            object.__setattr__(self, "hidden", int(self.hidden))
        object.__setattr__(self, "dropped", tuple(sorted({int(i) for i in self.dropped})))
        bad = [i for i in self.dropped if not 0 <= i < len(self.heads) or self.heads[i] or self.neurons[i]]
        if bad:
            raise ConfigError(
                f"dropped layers {bad} are not layers of the spec that keep 0 heads and 0 neurons; "
                f"heads {list(self.heads)}, neurons {list(self.neurons)}"
            )
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise ConfigError(f"sparsity must be a fraction in [0, 1), got {self.sparsity}")

    @property
    def num_layers(self) -> int:
        return len(self.heads)

    def sizes(self, axis: str) -> tuple[int, ...]:
        """Per-layer sizes along ``axis`` (one of :data:`AXES`).

        Raises:
            ConfigError: an unknown axis.
        """
        if axis not in AXES:
            raise ConfigError(f"unknown pruning axis {axis!r}; the axes are {', '.join(AXES)}")
        return getattr(self, axis)

    @property
    def is_uniform(self) -> bool:
        """True when every layer keeps the same number of heads and of neurons."""
        return len(set(self.heads)) <= 1 and len(set(self.neurons)) <= 1

    @classmethod
    def uniform(
        cls, num_layers: int, heads: int, neurons: int, sparsity: float | None = None, hidden: int | None = None
    ) -> SubnetSpec:
        """The spec keeping ``heads`` query heads and ``neurons`` FFN units in every layer
        (and ``hidden`` residual-stream channels; ``None``: the full width)."""
        return cls((heads,) * num_layers, (neurons,) * num_layers, sparsity, hidden)

    def with_sparsity(self, sparsity: float | None) -> SubnetSpec:
        """The same sizes, labelled with ``sparsity``."""
        return SubnetSpec(self.heads, self.neurons, sparsity, self.hidden, self.dropped)

    def fits_in(self, other: SubnetSpec) -> bool:
        """True when this sub-network is a (per-layer prefix) sub-network of ``other``
        (a ``hidden`` of ``None`` is the full width, which every width fits in) that drops
        at least ``other``'s dropped layers."""
        hidden_fits = other.hidden is None or (self.hidden is not None and self.hidden <= other.hidden)
        return (
            self.num_layers == other.num_layers
            and hidden_fits
            and set(other.dropped) <= set(self.dropped)
            and all(a <= b for a, b in zip(self.heads, other.heads))
            and all(a <= b for a, b in zip(self.neurons, other.neurons))
        )

    def total_heads(self) -> int:
        return sum(self.heads)

    def total_neurons(self) -> int:
        return sum(self.neurons)

    def empty_layers(self) -> tuple[int, ...]:
        """Indices (0-based) of the layers that keep no heads and no FFN units."""
        return tuple(i for i, (h, n) in enumerate(zip(self.heads, self.neurons)) if h == 0 and n == 0)

    def without_layers(self, drop: tuple[int, ...] | list[int]) -> SubnetSpec:
        """The spec of the model whose layers ``drop`` were removed (the others renumbered).

        Raises:
            ConfigError: an index out of range.
        """
        if any(not 0 <= i < self.num_layers for i in drop):
            raise ConfigError(f"layers {sorted(drop)} are not all among the spec's {self.num_layers} layers")
        keep = [i for i in range(self.num_layers) if i not in set(drop)]
        still = [keep.index(i) for i in self.dropped if i in keep]
        return SubnetSpec(tuple(self.heads[i] for i in keep), tuple(self.neurons[i] for i in keep),
                          self.sparsity, self.hidden, tuple(still))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"heads": list(self.heads), "neurons": list(self.neurons), "sparsity": self.sparsity}
        if self.hidden is not None:  # written only when cut, so encoder records are unchanged
            out["hidden"] = self.hidden
        if self.dropped:  # likewise written only when layers are removed
            out["dropped"] = list(self.dropped)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubnetSpec:
        try:
            return cls(tuple(data["heads"]), tuple(data["neurons"]), data.get("sparsity"), data.get("hidden"),
                       tuple(data.get("dropped", ())))
        except (KeyError, TypeError) as err:
            raise ConfigError(
                f"malformed sub-network spec {data!r}: needs 'heads' and 'neurons' lists"
            ) from err
