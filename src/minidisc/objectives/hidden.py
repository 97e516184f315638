"""Hidden-state matching: MSE and cosine between mapped layers.

Both average over real (non-padding) tokens only, and over the mapped layer pairs. A
single learnable projection ``d_S → d_T`` (shared by all layers, as TinyBERT's ``W_h``)
is created when the configs say the widths differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from minidisc.errors import ConfigError
from minidisc.objectives import functional as fn
from minidisc.objectives.base import Objective, real_tokens
from minidisc.objectives.catalog import OBJECTIVE_DESCRIPTIONS
from minidisc.objectives.layers import (
    check_layer_pairs,
    make_projection,
    project,
    uniform_layer_map,
)
from minidisc.objectives.signals import Signals

LAYER_MAP_MODES = ("uniform", "last")


def resolve_layer_map(
    layer_map: str | Sequence[Sequence[int]],
    num_student_layers: int,
    num_teacher_layers: int,
    include_embeddings: bool,
) -> tuple[tuple[int, int], ...]:
    """Turn a ``layer_map`` option into ``(student, teacher)`` hidden-state index pairs.

    ``"uniform"``: :func:`~minidisc.objectives.layers.uniform_layer_map`; ``"last"``: the
    last hidden states only; a sequence: explicit pairs (0 = embedding output).

    Raises:
        ConfigError: unknown mode or out-of-range pairs.
    """
    if isinstance(layer_map, str):
        if layer_map == "uniform":
            return uniform_layer_map(num_student_layers, num_teacher_layers, include_embeddings)
        if layer_map == "last":
            return ((num_student_layers, num_teacher_layers),)
        raise ConfigError(
            f"layer_map must be one of {', '.join(LAYER_MAP_MODES)} or a list of (student, teacher) "
            f"pairs, got {layer_map!r}"
        )
    return check_layer_pairs(layer_map, num_student_layers, num_teacher_layers)


class _HiddenMatching(Objective):
    needs_hidden_states = True
    needs_logits = False

    def __init__(
        self,
        *,
        task_type: str = "classification",
        layer_map: str | Sequence[Sequence[int]] = "uniform",
        include_embeddings: bool = True,
        student_config: Any = None,
        teacher_config: Any = None,
    ) -> None:
        super().__init__(task_type=task_type)
        if isinstance(layer_map, str) and layer_map not in LAYER_MAP_MODES:
            raise ConfigError(
                f"layer_map must be one of {', '.join(LAYER_MAP_MODES)} or a list of pairs"
            )
        self.layer_map = layer_map if isinstance(layer_map, str) else [tuple(p) for p in layer_map]
        self.include_embeddings = bool(include_embeddings)
        self.projection = make_projection(student_config, teacher_config)

    def distance(self, student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(
        self, student: Signals, teacher: Signals, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, float]]:
        s_hidden = student.require_hidden_states(self.name)
        t_hidden = teacher.require_hidden_states(self.name)
        pairs = resolve_layer_map(
            self.layer_map, len(s_hidden) - 1, len(t_hidden) - 1, self.include_embeddings
        )
        mask = real_tokens(batch, s_hidden[0])
        per_layer = []
        for s_index, t_index in pairs:
            target = t_hidden[t_index].detach()
            per_layer.append(
                self.distance(
                    project(self.projection, s_hidden[s_index], target, self.name), target, mask
                )
            )
        loss = torch.stack(per_layer).mean()
        return loss, self.parts(**{self.name: loss})


class HiddenMSEObjective(_HiddenMatching):
    """Mean over mapped layers of the MSE between (projected) student and teacher states.

    Args:
        layer_map: ``"uniform"`` (``g(m) = m·N/M``), ``"last"``, or explicit pairs.
        include_embeddings: include the embedding outputs in the uniform map.
    """

    name = "hidden_mse"
    description = OBJECTIVE_DESCRIPTIONS["hidden_mse"]

    def distance(self, student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
        return fn.masked_mse(student, teacher, mask)


class CosineObjective(_HiddenMatching):
    """Mean over mapped layers of ``1 − cos(h_S, h_T)`` per real token (Sanh et al. 2019).

    Args:
        layer_map: ``"last"`` (default, DistilBERT), ``"uniform"``, or explicit pairs.
        include_embeddings: include the embedding outputs in the uniform map.
    """

    name = "cosine"
    description = OBJECTIVE_DESCRIPTIONS["cosine"]

    def __init__(
        self,
        *,
        task_type: str = "classification",
        layer_map: str | Sequence[Sequence[int]] = "last",
        include_embeddings: bool = True,
        student_config: Any = None,
        teacher_config: Any = None,
    ) -> None:
        super().__init__(
            task_type=task_type,
            layer_map=layer_map,
            include_embeddings=include_embeddings,
            student_config=student_config,
            teacher_config=teacher_config,
        )

    def distance(self, student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
        return fn.cosine_distance(student, teacher, mask)
