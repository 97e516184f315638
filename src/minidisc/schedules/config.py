"""Validated configurations of the baseline schedules and of a comparison.

``DistillConfig`` (direct KD), ``TakdConfig`` (a fixed teacher-assistant path),
``MaxiDiscConfig`` (TAKD through every candidate assistant) and ``CompareConfig`` (all
schedules on one teacher). Sparsities are fractions in [0, 1) w.r.t. the fine-tuned
teacher everywhere; a path lists the sparsity of every model after the teacher, the
last one being the student.
"""

from __future__ import annotations

from itertools import combinations, pairwise
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from minidisc.config import (
    DEFAULT_GRID,
    CompressConfig,
    DataConfig,
    MiniDiscRules,
    TrainConfig,
    WithPrecision,
    WithSelectionSlice,
    check_grid,
)
from minidisc.elastic.levels import level, same_level
from minidisc.errors import ConfigError
from minidisc.objectives.catalog import OBJECTIVE_NAMES

SCHEDULES: tuple[str, ...] = ("direct", "takd", "maxidisc", "minidisc")
"""The schedules ``minidisc compare`` knows, in table order."""


class _Strict(BaseModel):
    # allow_inf_nan=False: `--lam inf` or a NaN learning rate is refused before any work
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ScheduleConfig(_Strict, WithSelectionSlice, WithPrecision):
    """What every schedule shares: teacher, data, sparsity grid, training of each hop.

    ``teacher_run`` names a run directory whose ``teacher/`` and ``sparsified/`` stages
    are reused (linked, not copied) instead of fine-tuning and sparsifying again; every
    schedule of one comparison shares them this way.
    """

    teacher: str | None = Field(None, description="hub id or path; None: the packaged all-MiniLM-L6-v2")
    teacher_finetuned: bool = False
    teacher_run: str | None = Field(None, description="reuse teacher/ and sparsified/ of this run directory")
    data: DataConfig = DataConfig()
    grid: tuple[float, ...] = DEFAULT_GRID
    finetune: TrainConfig = TrainConfig(epochs=3.0, learning_rate=5e-5)
    train: TrainConfig = TrainConfig(epochs=3.0, learning_rate=5e-5)
    objective: str = Field("minidisc", description="distillation objective of every hop")
    objective_options: dict[str, float | int | str | bool] = Field(default_factory=dict)
    note: str | None = None

    omitted_in_dump: ClassVar[dict[str, Any]] = {**WithPrecision.omitted_in_dump, **WithSelectionSlice.omitted_in_dump}

    @field_validator("grid")
    @classmethod
    def _grid_fractions(cls, grid: tuple[float, ...]) -> tuple[float, ...]:
        return check_grid(grid)

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, name: str) -> str:
        if name not in OBJECTIVE_NAMES:
            raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVE_NAMES)}")
        return name

    def levels(self) -> list[float]:
        """Sparsity levels the schedule needs in the teacher's sparsity map."""
        return sorted(set(self.grid))


class DistillConfig(ScheduleConfig):
    """One direct distillation run teacher → student.

    Exactly one of ``target_sparsity`` (a student sliced from the reordered teacher) and
    ``layers`` (0-based indices of the teacher layers the student keeps, ascending).
    """

    target_sparsity: float | None = Field(None, gt=0, lt=1)
    layers: tuple[int, ...] | None = None

    @model_validator(mode="after")
    def _one_student(self) -> DistillConfig:
        if (self.target_sparsity is None) == (self.layers is None):
            raise ValueError("give exactly one of --sparsity (a sliced student) and --layers (a layer-dropped student)")
        layers = self.layers
        if layers is not None and (not layers or list(layers) != sorted(set(layers)) or layers[0] < 0):
            raise ValueError("layers must be distinct ascending 0-based indices, e.g. 0,1,2")
        return self

    def levels(self) -> list[float]:
        extra = {level(self.target_sparsity)} if self.target_sparsity is not None else set()
        return sorted(set(self.grid) | extra)


class TakdConfig(ScheduleConfig):
    """Sequential distillation along a fixed path of sparsities (Mirzadeh et al., AAAI 2020).

    ``path = (0.5, 0.9)``: teacher → 50 % sparse assistant → 90 % sparse student.
    """

    path: tuple[float, ...] = (0.5, 0.9)

    @field_validator("path")
    @classmethod
    def _increasing(cls, path: tuple[float, ...]) -> tuple[float, ...]:
        path = tuple(level(s) for s in path)
        if not path or any(not 0.0 < s < 1.0 for s in path):
            raise ValueError("every path level must be a sparsity fraction in (0, 1)")
        if any(b <= a for a, b in pairwise(path)):
            raise ValueError(f"the path must be strictly increasing in sparsity, got {list(path)}")
        return path

    @property
    def target_sparsity(self) -> float:
        return self.path[-1]

    def levels(self) -> list[float]:
        return sorted(set(self.grid) | set(self.path))


class MaxiDiscConfig(ScheduleConfig):
    """TAKD through every candidate assistant; the best student by dev metric wins.

    Candidates default to the levels MiniDisc considers: the grid at or above
    ``truncation``, below the target. ``max_assistants`` > 1 also tries paths through
    several assistants (in increasing sparsity); paths sharing a prefix share its hops.
    """

    target_sparsity: float = Field(0.9, gt=0, lt=1)
    truncation: float = Field(0.5, ge=0, lt=1)
    candidates: tuple[float, ...] | None = None
    max_assistants: int = Field(1, ge=1, le=4)

    @model_validator(mode="after")
    def _has_candidates(self) -> MaxiDiscConfig:
        if not self.assistant_levels():
            raise ValueError(
                f"no candidate assistant below the target {self.target_sparsity}; lower --truncation or give --candidates"
            )
        return self

    def assistant_levels(self) -> list[float]:
        """Candidate assistant sparsities, ascending: ``candidates``, or by default the
        candidates of MiniDisc's first sandwich run (:meth:`CompressConfig.candidate_levels`)
        other than the target."""
        target = level(self.target_sparsity)
        if self.candidates is not None:
            pool = [level(s) for s in self.candidates]
        elif self.target_sparsity < self.truncation:
            pool = []  # MiniDisc refuses such a target; no candidate either
        else:
            minidisc = CompressConfig(grid=self.grid, target_sparsity=self.target_sparsity, truncation=self.truncation)
            pool = minidisc.candidate_levels()
        return sorted({s for s in pool if 0.0 < s < target})

    def paths(self) -> list[tuple[float, ...]]:
        """Every path teacher → assistants → target, shortest first."""
        target = level(self.target_sparsity)
        found = []
        for k in range(1, self.max_assistants + 1):
            found += [(*combo, target) for combo in combinations(self.assistant_levels(), k)]
        return found

    def levels(self) -> list[float]:
        return sorted(set(self.grid) | set(self.assistant_levels()) | {level(self.target_sparsity)})


class CompareConfig(_Strict, MiniDiscRules, WithSelectionSlice, WithPrecision):
    """All schedules to one target on one fine-tuned + sparsified teacher.

    Every schedule uses ``train`` for each of its distillation stages (MiniDisc for its
    sandwich and final iterations) so that their costs are comparable; the baselines use
    ``objective`` (MiniDisc always uses its own loss).
    """

    teacher: str | None = None
    teacher_finetuned: bool = False
    teacher_run: str | None = None
    data: DataConfig = DataConfig()
    grid: tuple[float, ...] = DEFAULT_GRID
    schedules: tuple[str, ...] = SCHEDULES
    takd_path: tuple[float, ...] | None = Field(None, description="default: the candidate nearest target/2, then the target")
    max_assistants: int = Field(1, ge=1, le=4)
    lam: float = Field(0.2, ge=0)
    iterations: int = Field(2, ge=1, le=10)
    finetune: TrainConfig = TrainConfig(epochs=3.0, learning_rate=5e-5)
    train: TrainConfig = TrainConfig(epochs=3.0, learning_rate=5e-5)
    objective: str = "minidisc"
    objective_options: dict[str, float | int | str | bool] = Field(default_factory=dict)
    note: str | None = None

    omitted_in_dump: ClassVar[dict[str, Any]] = {
        **WithPrecision.omitted_in_dump, **WithSelectionSlice.omitted_in_dump, **MiniDiscRules.omitted_in_dump}

    @field_validator("schedules")
    @classmethod
    def _known_schedules(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in SCHEDULES]
        if unknown or not names:
            raise ValueError(f"unknown schedule(s) {unknown}; choose from {', '.join(SCHEDULES)}")
        return tuple(n for n in SCHEDULES if n in names)  # table order, no duplicates

    @field_validator("grid")
    @classmethod
    def _grid_fractions(cls, grid: tuple[float, ...]) -> tuple[float, ...]:
        return check_grid(grid)

    @model_validator(mode="after")
    def _check(self) -> CompareConfig:
        if self.takd_path is not None and not same_level(self.takd_path[-1], self.target_sparsity):
            raise ValueError(f"the TAKD path must end at the target {self.target_sparsity}, got {list(self.takd_path)}")
        return self

    # ---- the configs of the schedules, sharing teacher, data and training ------------
    def _common(self, teacher_run: str) -> dict[str, Any]:
        return {
            "teacher": self.teacher, "teacher_finetuned": self.teacher_finetuned, "teacher_run": teacher_run,
            "data": self.data, "grid": self.grid, "finetune": self.finetune, "train": self.train,
            "objective": self.objective, "objective_options": self.objective_options, "precision": self.precision,
            **self._selection(),
        }

    def _selection(self) -> dict[str, Any]:
        """Where every arm chooses: the same slice (or dev), so all train on the same examples."""
        return {name: getattr(self, name) for name in WithSelectionSlice.model_fields}

    def direct(self, teacher_run: str) -> DistillConfig:
        return DistillConfig(**self._common(teacher_run), target_sparsity=self.target_sparsity)

    def maxidisc(self, teacher_run: str) -> MaxiDiscConfig:
        return MaxiDiscConfig(
            **self._common(teacher_run), target_sparsity=self.target_sparsity, truncation=self.truncation,
            max_assistants=self.max_assistants,
        )

    def takd(self, teacher_run: str) -> TakdConfig:
        return TakdConfig(**self._common(teacher_run), path=self.takd_path or self.default_takd_path())

    def default_takd_path(self) -> tuple[float, ...]:
        """A hand-picked assistant: MaxiDisc's candidate nearest to half the target
        sparsity (halfway in size between teacher and student), then the target."""
        candidates = self.maxidisc("").assistant_levels()
        half = self.target_sparsity / 2
        assistant = min(candidates, key=lambda s: (abs(s - half), s))
        return (assistant, level(self.target_sparsity))

    def minidisc(self) -> CompressConfig:
        return CompressConfig(
            teacher=self.teacher, teacher_finetuned=self.teacher_finetuned, data=self.data,
            lam=self.lam, iterations=self.iterations, grid=self.grid, finetune=self.finetune, sandwich=self.train,
            final=self.train, note=self.note, precision=self.precision, **self._selection(),
            **{name: getattr(self, name) for name in MiniDiscRules.model_fields},
        )

    def levels(self) -> list[float]:
        """Every level any schedule of the comparison needs."""
        path = self.takd_path or ()
        return sorted(set(self.grid) | {level(self.target_sparsity)} | {level(s) for s in path})

    def schedule_configs(self, teacher_run: str) -> dict[str, BaseModel]:
        """The validated configuration of every schedule in ``schedules``, by name.

        Raises:
            ConfigError: a schedule cannot run with these settings (e.g. MaxiDisc or the
                default TAKD path find no candidate assistant below the target).
        """
        from pydantic import ValidationError

        builders = {"direct": self.direct, "takd": self.takd, "maxidisc": self.maxidisc}
        configs: dict[str, BaseModel] = {}
        for name in self.schedules:
            try:
                configs[name] = self.minidisc() if name == "minidisc" else builders[name](teacher_run)
            except ValidationError as err:
                problems = "; ".join(e["msg"] for e in err.errors())
                raise ConfigError(f"compare: the {name} schedule cannot run with these settings: {problems}") from None
        return configs
