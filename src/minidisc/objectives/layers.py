"""Which student layer learns from which teacher layer, and width projections.

Layer indices here index ``Signals.hidden_states``: 0 is the embedding output, ``m`` is
the output of layer ``m`` (1-based), ``L`` the last layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from minidisc.errors import ConfigError


def _round_half_up(numerator: int, denominator: int) -> int:
    """``round(numerator / denominator)`` with halves rounded up, in exact integers."""
    return (2 * numerator + denominator) // (2 * denominator)


def minidisc_layer_indices(num_layers: int) -> tuple[int, ...]:
    """Hidden-state indices the MiniDisc loss compares: ``0, L/6, 2L/6, …, L``.

    Defined for every depth as the sorted unique ``round(k·L/6)``, ``k = 0..6`` (halves
    round up), so it equals the reference's stride ``L/6`` when 6 divides ``L`` (L = 12:
    0, 2, …, 12) without the reference's ≥ 6-layer assumption (L = 2: 0, 1, 2).

    Args:
        num_layers: ``L ≥ 1``.

    Raises:
        ConfigError: ``num_layers < 1``.
    """
    if num_layers < 1:
        raise ConfigError(f"a model needs at least one layer, got {num_layers}")
    return tuple(sorted({_round_half_up(k * num_layers, 6) for k in range(7)}))


def minidisc_layer_pairs(
    num_student_layers: int, num_teacher_layers: int
) -> tuple[tuple[int, int], ...]:
    """(student, teacher) hidden-state pairs of the MiniDisc loss.

    The student indices are :func:`minidisc_layer_indices`; student index ``i`` is paired
    with teacher index ``round(i·N/M)``. With equal depths (every MiniDisc sub-network)
    the pairs are ``(i, i)``; a layer-dropped student (fewer layers) is spread uniformly
    over the teacher.
    """
    if num_teacher_layers < 1:
        raise ConfigError(f"a model needs at least one layer, got {num_teacher_layers}")
    return tuple(
        (i, _round_half_up(i * num_teacher_layers, num_student_layers))
        for i in minidisc_layer_indices(num_student_layers)
    )


def uniform_layer_map(
    num_student_layers: int, num_teacher_layers: int, include_embeddings: bool = True
) -> tuple[tuple[int, int], ...]:
    """TinyBERT's uniform map ``g(m) = m·N/M`` (Jiao et al. 2020, §3.1) as index pairs.

    Args:
        num_student_layers: ``M ≥ 1``.
        num_teacher_layers: ``N ≥ 1`` (need not be a multiple of ``M``; ``g`` rounds).
        include_embeddings: include the pair ``(0, 0)``.

    Returns:
        ``((m, g(m)), …)`` for ``m = 0|1 … M``.
    """
    if num_student_layers < 1 or num_teacher_layers < 1:
        raise ConfigError(
            f"layer counts must be >= 1, got {num_student_layers} and {num_teacher_layers}"
        )
    start = 0 if include_embeddings else 1
    return tuple(
        (m, _round_half_up(m * num_teacher_layers, num_student_layers))
        for m in range(start, num_student_layers + 1)
    )


def pkd_layer_map(
    num_student_layers: int, num_teacher_layers: int, strategy: str = "skip"
) -> tuple[tuple[int, int], ...]:
    """Patient-KD intermediate-layer pairs (Sun et al. 2019, §3.1).

    The student's last layer is left to the prediction loss, so layers ``1 … M−1`` are
    matched: ``"skip"`` takes every ``N/M``-th teacher layer (12→6: teacher 2, 4, 6, 8,
    10), ``"last"`` the teacher's last ``M−1`` layers before its final one (12→6:
    7 … 11).

    Raises:
        ConfigError: unknown strategy or a student deeper than the teacher.
    """
    if strategy not in ("skip", "last"):
        raise ConfigError(f"PKD strategy must be 'skip' or 'last', got {strategy!r}")
    if num_student_layers > num_teacher_layers:
        raise ConfigError(
            f"PKD needs a student no deeper than its teacher ({num_student_layers} > {num_teacher_layers} layers)"
        )
    if strategy == "skip":
        return tuple(
            (j, _round_half_up(j * num_teacher_layers, num_student_layers))
            for j in range(1, num_student_layers)
        )
    offset = num_teacher_layers - num_student_layers
    return tuple((j, offset + j) for j in range(1, num_student_layers))


def check_layer_pairs(
    pairs: Sequence[Sequence[int]], num_student_layers: int, num_teacher_layers: int
) -> tuple[tuple[int, int], ...]:
    """Validate explicit ``[(student_index, teacher_index), …]`` hidden-state pairs.

    Raises:
        ConfigError: a malformed pair or an index outside ``0 … L``.
    """
    checked = []
    for pair in pairs:
        if len(pair) != 2:
            raise ConfigError(f"a layer map entry must be a (student, teacher) pair, got {pair!r}")
        s, t = int(pair[0]), int(pair[1])
        if not (0 <= s <= num_student_layers and 0 <= t <= num_teacher_layers):
            raise ConfigError(
                f"layer pair ({s}, {t}) is out of range: the student has hidden states 0..{num_student_layers}, "
                f"the teacher 0..{num_teacher_layers} (0 = embedding output)"
            )
        checked.append((s, t))
    return tuple(checked)


# ---------------------------------------------------------------------------
# config helpers


def _text_config(config: Any) -> Any:
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def config_width(config: Any) -> int | None:
    """``hidden_size`` of a HF config (text part), or ``None`` without a config."""
    return None if config is None else int(_text_config(config).hidden_size)


def config_layers(config: Any) -> int | None:
    """``num_hidden_layers`` of a HF config, or ``None``."""
    return None if config is None else int(_text_config(config).num_hidden_layers)


def config_heads(config: Any) -> int | None:
    """``num_attention_heads`` of a HF config, or ``None``."""
    return None if config is None else int(_text_config(config).num_attention_heads)


# ---------------------------------------------------------------------------
# projections


def make_projection(student_config: Any, teacher_config: Any) -> nn.Linear | None:
    """A learnable ``d_S → d_T`` map when the widths differ, else ``None``.

    ``H_S · W`` with ``W ∈ R^{d_S×d_T}`` as in TinyBERT (eq. 5; no bias). The
    projection exists only for distillation and is discarded afterwards.
    """
    d_s, d_t = config_width(student_config), config_width(teacher_config)
    if d_s is None or d_t is None or d_s == d_t:
        return None
    return nn.Linear(d_s, d_t, bias=False)


def project(projection: nn.Module | None, student: Tensor, teacher: Tensor, who: str) -> Tensor:
    """Map ``student`` ``(…, d_S)`` to the teacher's width ``d_T``.

    Raises:
        ConfigError: widths differ and no projection was built (configs not passed to
            :func:`minidisc.objectives.build_objective`).
    """
    if projection is not None:  # half-precision hidden states (autocast) meet the float32 weights in float32
        return projection(student.to(projection.weight.dtype))
    if student.shape[-1] != teacher.shape[-1]:
        raise ConfigError(
            f"{who}: student width {student.shape[-1]} differs from teacher width {teacher.shape[-1]}; "
            "pass student_config and teacher_config to build_objective so a projection is created"
        )
    return student
