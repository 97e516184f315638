"""Validated configuration of ``minidisc compare --task lm``: the baselines of decoder
compression on one teacher, corpus, block size, seed and token budget
(:mod:`minidisc.schedules.lm_compare`).

The shared settings are one :class:`~minidisc.schedules.lm_config.LMCompressConfig`
(``base``: the options ``compress --task lm`` takes, same names); each arm is ``base``
with the few fields that make it that arm (:meth:`LMCompareConfig.arm_config`).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from minidisc.elastic.levels import level
from minidisc.schedules.lm_config import LMCompressConfig

#: The arms, in the order they run (``pretrain`` takes its FLOPs budget from ``direct``).
LM_ARMS: tuple[str, ...] = ("direct", "depth", "random", "takd", "minidisc", "maxidisc", "pretrain")
#: The arms run when none are named: all but ``maxidisc`` (one TAKD run per candidate: the
#: selection check, asked for on its own).
DEFAULT_LM_ARMS: tuple[str, ...] = tuple(a for a in LM_ARMS if a != "maxidisc")

#: One line per arm, for ``--help``, the docs and the report.


class LMCompareConfig(BaseModel):
    """``minidisc compare --task lm``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    base: LMCompressConfig
    schedules: tuple[str, ...] = Field(DEFAULT_LM_ARMS, min_length=1, description="arms to run (LM_ARMS)")
    takd_assistant: float | None = Field(
        None, gt=0, lt=1, description="TAKD's assistant sparsity; default the grid level nearest half the target"
    )
    pretrain_learning_rate: float = Field(5e-4, gt=0, description="peak learning rate of the from-scratch arm")

    @field_validator("schedules")
    @classmethod
    def _known_arms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [s for s in value if s not in LM_ARMS]
        if unknown:
            raise ValueError(f"unknown arm(s) {', '.join(unknown)} for --task lm; choose from {', '.join(LM_ARMS)}")
        if len(set(value)) != len(value):
            raise ValueError(f"an arm is named twice in {', '.join(value)}")
        return tuple(s for s in LM_ARMS if s in value)  # run order: pretrain after direct

    @model_validator(mode="after")
    def _arms_fit(self) -> LMCompareConfig:
        if "pretrain" in self.schedules and "direct" not in self.schedules:
            raise ValueError("the pretrain arm trains with the FLOPs of the direct-KD run: add direct to the schedules")
        if "pretrain" in self.schedules and self.base.layer_shapes == "global":
            raise ValueError("the pretrain arm builds the direct-KD student's shape as an ordinary config: it needs "
                             "layer_shapes uniform or depth (or drop pretrain from the schedules)")
        if self.base.assistant is not None:
            raise ValueError("base.assistant is set per arm; give TAKD's assistant as takd_assistant (--takd-path)")
        if self.base.drop_layers:
            raise ValueError("drop_layers is set by the depth arm; leave --drop-layers out of a comparison")
        if "takd" in self.schedules:
            self.assistant_level()  # raises when there is none
        if "maxidisc" in self.schedules and not self.maxidisc_assistants():
            raise ValueError(f"maxidisc needs candidates less sparse than the target {self.base.target_sparsity} "
                             f"at or above --truncation {self.base.truncation} on the grid {list(self.base.grid)}")
        return self

    def maxidisc_assistants(self) -> list[float]:
        """The assistants of the ``maxidisc`` arm: MiniDisc's candidates of iteration 1
        (:meth:`LMCompressConfig.candidate_levels`) other than the target."""
        target = level(self.base.target_sparsity)
        return [s for s in self.base.candidate_levels(0.0) if level(s) != target]

    def takd_config(self, assistant: float) -> LMCompressConfig:
        """``base`` through the fixed ``assistant`` (two iterations, no λ-selection)."""
        return LMCompressConfig.model_validate({**self._single_candidate_base(), "iterations": 2, "assistant": level(assistant)})

    def assistant_level(self) -> float:
        """TAKD's assistant: ``takd_assistant``, else the grid level (above 0, below the
        target) nearest half the target (halfway in size between teacher and student,
        as the GLUE comparison's default), ties to the denser.

        Raises:
            ValueError: no such level, or an assistant not less sparse than the target.
        """
        target = self.base.target_sparsity
        if self.takd_assistant is not None:
            if not self.takd_assistant < target:
                raise ValueError(f"TAKD's assistant {self.takd_assistant} must be less sparse than the target {target}")
            return level(self.takd_assistant)
        candidates = [s for s in self.base.grid if 0 < s < target and level(s) != level(target)]
        if not candidates:
            raise ValueError(f"the grid {list(self.base.grid)} has no level between 0 and the target {target} for "
                             "TAKD's assistant; pass --takd-path A")
        return level(min(candidates, key=lambda s: (abs(s - target / 2), s)))

    def _single_candidate_base(self) -> dict[str, Any]:
        """``base`` as a dict for the arms that train one candidate per stage: without the
        sandwich rule, which is MiniDisc's alone (their configs read as without it)."""
        return {**self.base.model_dump(mode="json"), "sandwich_samples": None}

    def arm_config(self, name: str, teacher_config: Any = None) -> LMCompressConfig:
        """The ``compress --task lm`` configuration of arm ``name`` (not ``pretrain``,
        which is a ``minidisc pretrain`` run). ``depth`` needs the teacher's config (its
        layers and their parameters)."""
        if name == "minidisc":
            return self.base
        base = self._single_candidate_base()
        if name in ("direct", "random"):
            changes: dict[str, Any] = {"iterations": 1}
            if name == "random":
                changes["importance"] = "random"
        elif name == "takd":
            return self.takd_config(self.assistant_level())
        elif name == "depth":
            if teacher_config is None:
                raise ValueError("the depth arm needs the teacher's config")
            dropped, sparsity = depth_cut(teacher_config, self.base.target_sparsity)
            # Minitron's depth pruning whatever the base's shapes: the cut, then uniform full width
            changes = {"iterations": 1, "drop_layers": dropped, "target_sparsity": sparsity, "grid": [0.0],
                       "truncation": min(self.base.truncation, sparsity), "layer_shapes": "uniform"}
        else:
            raise ValueError(f"no compress configuration for arm {name!r}")
        return LMCompressConfig.model_validate({**base, **changes})


def depth_cut(teacher_config: Any, target: float) -> tuple[int, float]:
    """Depth pruning to about the target: ``N = round(target · L)`` layers (at least 1,
    at most ``L − 1``) and the non-embedding sparsity of dropping them, rounded *down*
    to a level, so that the uniform map's target level is the depth cut alone (no width
    pruning: :mod:`minidisc.elastic.uniform_map`). Every layer of a decoder has the same
    size, so which ``N`` the block importance removes does not change the count.

    Returns:
        ``(N, sparsity)`` (sparsity a fraction of the non-embedding parameters).
    """
    from minidisc.compute.flops import non_embedding_params
    from minidisc.elastic.depth_map import without_layers
    from minidisc.elastic.families import family_for

    layers = family_for(teacher_config).geometry(teacher_config).num_layers
    if layers < 2:
        raise ValueError("depth pruning needs a teacher with at least 2 layers")
    n = min(layers - 1, max(1, round(target * layers)))
    spec = without_layers(teacher_config, tuple(range(n)))  # which n layers: see above
    sparsity = 1 - non_embedding_params(teacher_config, spec) / non_embedding_params(teacher_config)
    return n, math.floor(sparsity * 10**6) / 10**6
