"""Sparsity levels: one rounding, one notion of "the same level", one grid check.

A *level* is a sparsity — the fraction of heads and FFN neurons removed w.r.t. the
(reordered) teacher, in [0, 1) — rounded to :data:`LEVEL_DECIMALS` decimals. Sparsity
maps, config grids, candidate sets, stage names and reports all key their levels by
:func:`level`, and two sparsities are *the same level* when they round to the same
number: float noise (``0.1 + 0.75 = 0.8500000000000001``) is tolerated, up to half a unit
in the sixth decimal, while two distinct grid levels (which differ by at least one unit
there) never compare equal.

Every module that compares, looks up or validates levels does it here; none compares
sparsities with a tolerance of its own.
"""

from __future__ import annotations

from collections.abc import Iterable

from minidisc.errors import ConfigError

LEVEL_DECIMALS = 6
"""Decimals a level keeps (``0.123456``); the tolerance of :func:`same_level` is half a unit
in the last of them."""


def level(sparsity: float) -> float:
    """``sparsity`` as a level: rounded to :data:`LEVEL_DECIMALS` decimals (a fraction)."""
    return round(float(sparsity), LEVEL_DECIMALS)


def same_level(a: float, b: float) -> bool:
    """Whether two sparsities (fractions) name the same level."""
    return level(a) == level(b)


def at_or_above(sparsity: float, floor: float) -> bool:
    """Whether ``sparsity`` is the level ``floor`` or a sparser one."""
    return level(sparsity) >= level(floor)


def find_level(levels: Iterable[float], sparsity: float) -> float | None:
    """The member of ``levels`` that is the same level as ``sparsity``, else None."""
    return next((s for s in levels if same_level(s, sparsity)), None)


def level_key(levels: Iterable[float], sparsity: float) -> float:
    """The member of ``levels`` that is the same level as ``sparsity``.

    Raises:
        ConfigError: no such level (the specs were built without it).
    """
    levels = list(levels)
    key = find_level(levels, sparsity)
    if key is None:
        raise ConfigError(
            f"sparsity {sparsity:g} is not among the levels {sorted(levels)}; build the specs with "
            "stages.level_specs including it"
        )
    return key


def check_levels(levels: Iterable[float]) -> tuple[float, ...]:
    """``levels`` as a grid: levels (:func:`level`), unique, ascending.

    Raises:
        ConfigError: no level, or a level outside [0, 1).
    """
    values = [float(s) for s in levels]
    if not values:
        raise ConfigError("the sparsity grid is empty; give at least one level in [0, 1)")
    bad = sorted({s for s in values if not (0.0 <= s < 1.0 and level(s) < 1.0)})
    if bad:
        raise ConfigError(f"sparsity levels must be fractions in [0, 1) (e.g. 0.9 for 90 %); got {bad}")
    return tuple(sorted({level(s) for s in values}))
