"""Elastic sub-networks over Hugging Face models (MiniDisc sparsification and slicing).

Modules: :mod:`.spec` (SubnetSpec, pruning axes), :mod:`.families` (every architecture
fact: one Family per architecture, ``register_family`` adds one),
:mod:`.modules` (ElasticLinear, skippable attention), :mod:`.importance` (the Importance
record, gradient scores), :mod:`.activation` (Minitron activation scores),
:mod:`.estimators` (every method behind ``estimate_importance``, and its cost),
:mod:`.reorder`, :mod:`.sparsity_map` (global and uniform layer shapes; the uniform one in
:mod:`.uniform_map`), :mod:`.model` (ElasticModel), :mod:`.extract`,
:mod:`.io` (save_student / load_student).

Functions named like their module (``sparsity_map``, ``extract``) are imported from
the module itself. Names are exported lazily so that importing :mod:`minidisc.elastic.spec` does not
import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "SubnetSpec": "minidisc.elastic.spec",
    "ElasticModel": "minidisc.elastic.model",
    "make_elastic": "minidisc.elastic.model",
    "ElasticLinear": "minidisc.elastic.modules",
    "Importance": "minidisc.elastic.importance",
    "compute_importance": "minidisc.elastic.importance",
    "estimate_importance": "minidisc.elastic.estimators",
    "ImportanceCost": "minidisc.elastic.estimators",
    "reorder_model": "minidisc.elastic.reorder",
    "DEFAULT_GRID": "minidisc.elastic.spec",
    "physical_spec": "minidisc.elastic.extract",
    "Family": "minidisc.elastic.families",
    "family_for": "minidisc.elastic.families",
    "register_family": "minidisc.elastic.families",
    "save_student": "minidisc.elastic.io",
    "load_student": "minidisc.elastic.io",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'minidisc.elastic' has no attribute {name!r}")
