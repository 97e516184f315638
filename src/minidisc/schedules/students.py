"""Students of the baseline schedules that are not sub-networks: layer-dropped copies.

A layer-dropped student ("NL" in the MiniDisc baselines) keeps some of the teacher's
transformer layers whole (by default the bottom N) and everything else (embeddings,
pooler, classifier). The model's architecture family locates and drops the layers
(:meth:`~minidisc.elastic.families.Family.keep_layers`), so any architecture
:mod:`minidisc.elastic.families` supports works.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

from minidisc.elastic.families import family_for
from minidisc.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from minidisc.models import ModelSource


def bottom_layers(n: int) -> tuple[int, ...]:
    """Indices of the bottom ``n`` layers: ``(0, …, n − 1)``."""
    if n < 1:
        raise ConfigError(
            f"a layer-dropped student keeps at least one layer, got the bottom {n}; "
            "to keep one chosen layer give its index as keep:I (e.g. --layers keep:0)"
        )
    return tuple(range(n))


def check_layers(keep: Sequence[int], depth: int) -> tuple[int, ...]:
    """``keep`` as a tuple, checked against a teacher with ``depth`` layers.

    Raises:
        ConfigError: empty, an index out of ``0..depth − 1``, repeated, or not ascending.
    """
    keep = tuple(int(i) for i in keep)
    if not keep or list(keep) != sorted(set(keep)) or keep[0] < 0 or keep[-1] >= depth:
        raise ConfigError(
            f"layers to keep must be distinct ascending indices in 0..{depth - 1} (the teacher has {depth} "
            f"layers), got {list(keep)}; e.g. --layers {min(3, depth)} (the bottom layers) or --layers keep:0,2"
        )
    return keep


def teacher_depth(source: ModelSource) -> int:
    """Transformer layers of the model at ``source``, from its config alone (no weights).

    Raises:
        ModelError: the config cannot be read, or the architecture is unsupported.
    """
    from transformers import AutoConfig

    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    try:
        config = AutoConfig.from_pretrained(source.path, trust_remote_code=False, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read the config of {source.label or source.path}: {err}") from err
    return family_for(config).geometry(config).num_layers


def drop_layers(model: nn.Module, keep: Sequence[int]) -> nn.Module:
    """A deep copy of ``model`` keeping only the transformer layers ``keep`` (0-based).

    The copy's config says ``num_hidden_layers = len(keep)`` (and per-layer lists such
    as ``layer_types`` are cut alike); each kept layer gets its new index
    (:meth:`~minidisc.elastic.families.Family.keep_layers`).

    Raises:
        ConfigError: an index is out of range, repeated, or not ascending.
        ModelError: unsupported architecture.
    """
    family = family_for(model)
    keep = check_layers(keep, len(family.layers(model)))
    student = copy.deepcopy(model)
    family.keep_layers(student, keep)
    return student
