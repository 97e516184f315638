"""Validated configuration of every pipeline (pydantic): YAML in, resolved YAML out.

Invalid values stop the run before any work is done, with a message naming the field.
Sparsities are fractions in [0, 1) everywhere; percent appears only in reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from minidisc.elastic.levels import at_or_above, check_levels, level
from minidisc.elastic.spec import DEFAULT_GRID, shape_conflict
from minidisc.errors import ConfigError
from minidisc.fileio import write_text
from minidisc.runtime import PrecisionName


class _Strict(BaseModel):
    # allow_inf_nan=False: `--lam inf` or a NaN learning rate is refused before any work
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: ``model_dump(context=COMPLETE)``: every key, those of ``omitted_in_dump`` too.
COMPLETE: dict[str, Any] = {"complete": True}


class WithPrecision(BaseModel):
    """The ``precision`` key of every command's config (``--precision``), defined once:
    ``auto`` (bf16 on a GPU that supports it, else fp32), ``bf16``, ``fp16``, ``tf32`` or
    ``fp32`` (:mod:`minidisc.runtime`). A config class adds it by inheriting this.

    ``auto``, the default, is left out of the config's dump, so a run's manifest,
    ``config.yaml`` and stage fingerprints read as before the key existed (old runs resume).
    A subclass with more such keys extends :attr:`omitted_in_dump` (pydantic allows one
    serializer per model, so there is one for all of them). A dump with the context
    :data:`COMPLETE` keeps them (``config.yaml``: it must read back as the same config).
    """

    #: keys left out of the dump while they hold these values (added after runs existed)
    omitted_in_dump: ClassVar[dict[str, Any]] = {"precision": "auto"}

    precision: PrecisionName = Field(
        "auto", description="auto (bf16 on a GPU that supports it, else fp32), bf16, fp16, tf32 or fp32"
    )

    @model_serializer(mode="wrap")
    def _without_omitted(self, handler: Any, info: SerializationInfo) -> dict[str, Any]:
        data = handler(self)
        if info.context == COMPLETE:
            return data
        omitted = self.omitted_in_dump
        return {k: v for k, v in data.items() if not (k in omitted and v == omitted[k])}


class WithSelectionSlice(BaseModel):
    """Where checkpoints and candidates are chosen (``--select-on``, ``--selection-examples``),
    defined once for every command that trains on a task: by default on a seeded selection
    slice held out of the training data before anything trains
    (:func:`minidisc.training.data.carve_selection_slice`), so dev stays a clean report; or
    on dev (the paper's protocol). A comparison passes the same values to every schedule,
    so all arms train on the same examples."""

    select_on: Literal["slice", "dev"] = Field(
        "slice", description="slice: a seeded (stratified) selection slice held out of the training data, so dev "
        "stays a clean report; dev: the dev set (the paper's protocol)")
    selection_examples: int | None = Field(
        None, gt=0, description="training examples held out as the selection slice; None: 10 % of them, at most 1000")

    #: the keys' values before they existed: runs made then resume unchanged, and a run at
    #: today's default (``slice``) names it in its dump
    omitted_in_dump: ClassVar[dict[str, Any]] = {"select_on": "dev", "selection_examples": None}

    @model_validator(mode="after")
    def _slice_options(self) -> WithSelectionSlice:
        if self.select_on == "dev" and self.selection_examples is not None:
            raise ValueError("selection_examples sizes the selection slice: drop it, or select_on slice")
        return self


class DataConfig(_Strict):
    """Which task and how much of it."""

    task: str = "sst2"
    data_dir: str | None = Field(None, description="GLUE-layout folder; None: $MINIDISC_DATA_DIR, else the hub")
    max_train_samples: int | None = Field(None, gt=0)
    max_eval_samples: int | None = Field(None, gt=0)
    max_length: int = Field(128, gt=8, le=4096)
    importance_samples: int = Field(
        2048, gt=0, description="training examples whose label-loss gradients score heads/neurons"
    )
    # --- your own labelled files (task "custom"; see minidisc.tasks.custom) ---
    train_file: str | None = Field(None, description="CSV, TSV, JSON lines, JSON or Parquet file (or the key of a "
                                   "data set given in memory from Python, minidisc.tasks.memory): task 'custom'")
    validation_file: str | None = Field(None, description="None: a seeded stratified split of train_file")
    test_file: str | None = Field(None, description="held-out file evaluated once at the end (teacher and student)")
    dataset: str | None = Field(None, description="instead of train_file: a data set read with datasets.load_dataset "
                                "(hub id or local folder): task 'custom'")
    dataset_config: str | None = Field(None, description="the configuration (subset) of dataset")
    split_names: dict[str, str] | None = Field(None, description="dataset's split of each role: train, validation, "
                                               "test; None: train, validation/dev/valid/val if present, no test")
    text_columns: tuple[str, ...] | None = Field(None, description="one column (single texts) or two (pairs); "
                                                 "None: text (token classification: tokens)")
    label_column: str | None = Field(None, description="None: label (token classification: tags)")
    task_type: Literal["classification", "regression", "token_classification"] | None = Field(
        None, description="None: inferred from the labels")
    metric: str | None = Field(None, description="accuracy, macro_f1, mcc, pearson_spearman or entity_f1; "
                               "None: accuracy / pearson_spearman / entity_f1")
    validation_fraction: float | None = Field(None, gt=0, lt=1, description="share held out without validation_file; None: 0.1")

    @model_serializer(mode="wrap")
    def _without_unset_file_fields(self, handler: Any) -> dict[str, Any]:
        # unset file options are left out, so a GLUE run's config (its manifest, config.yaml
        # and stage fingerprints) reads as it did before they existed: old runs still resume
        data = handler(self)
        return {k: v for k, v in data.items() if not (k in _FILE_FIELDS and v is None)}

    @model_validator(mode="before")
    @classmethod
    def _files_mean_custom(cls, data: Any) -> Any:
        # a train_file or dataset without a task is the custom task (a YAML need not say it)
        if isinstance(data, dict) and (data.get("train_file") or data.get("dataset")) and data.get("task") is None:
            return {**data, "task": "custom"}
        return data

    @property
    def own_data(self) -> bool:
        """Whether the data are the user's (``train_file`` or ``dataset``: task ``custom``)."""
        return self.train_file is not None or self.dataset is not None

    @model_validator(mode="after")
    def _custom_options(self) -> DataConfig:
        if not self.own_data:
            if self.task == "custom":
                raise ValueError("task custom needs train_file (--train-file) or dataset (--dataset)")
            given = [n for n in _CUSTOM_ONLY if getattr(self, n) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} apply only to your own data: add train_file (--train-file) "
                                 "or dataset (--dataset)")
            return self
        if self.train_file is not None and self.dataset is not None:
            raise ValueError("train_file and dataset exclude each other (--train-file, --dataset): give the data once")
        if self.dataset is None:
            given = [n for n in ("dataset_config", "split_names") if getattr(self, n) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} apply only to dataset (--dataset)")
        elif self.split_names is not None:
            unknown = sorted(set(self.split_names) - {"train", "validation", "test"})
            if unknown:
                raise ValueError(f"split_names: unknown role {unknown[0]!r}; use train, validation, test")
        if self.task != "custom":
            raise ValueError(f"task {self.task} and your own data exclude each other: drop one "
                             "(files or a data set make the task custom)")
        if self.data_dir is not None:
            raise ValueError("data_dir and your own data (train_file, dataset) exclude each other: drop one")
        if self.text_columns is not None and len(self.text_columns) not in (1, 2):
            raise ValueError("text_columns: give one column (single texts) or two (pairs)")
        if self.validation_fraction is not None and (
                self.validation_file is not None or (self.split_names or {}).get("validation")):
            raise ValueError("validation_fraction applies only without validation data: drop one")
        if self.metric is not None:
            from minidisc.tasks.custom import metric_key

            try:
                metric_key(self.metric)
            except ConfigError as err:
                raise ValueError(str(err)) from None
        return self


#: DataConfig fields that only your own data (train_file, dataset) use.
_CUSTOM_ONLY = ("validation_file", "test_file", "dataset_config", "split_names", "text_columns", "label_column",
                "task_type", "metric", "validation_fraction")
_FILE_FIELDS = ("train_file", "dataset", *_CUSTOM_ONLY)


class TrainConfig(_Strict):
    """Optimisation of one training stage (AdamW, linear schedule with warmup)."""

    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, gt=0, description="overrides epochs when set")
    batch_size: int = Field(32, gt=0)
    eval_batch_size: int = Field(128, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(5.0, gt=0)
    eval_steps: int | None = Field(None, gt=0, description="evaluate every N steps; None: once per epoch")
    patience: int | None = Field(5, gt=0, description="evaluations without improvement before stopping")
    seed: int = 776


def check_grid(grid: tuple[float, ...]) -> tuple[float, ...]:
    """A sparsity grid as sorted unique levels (:func:`~minidisc.elastic.levels.check_levels`),
    for a pydantic validator.

    Raises:
        ValueError: empty grid, or a level outside [0, 1).
    """
    try:
        return check_levels(grid)
    except ConfigError as err:
        raise ValueError(str(err)) from None


def _sandwich_samples(sandwich_samples: Any) -> Any:
    """``sandwich_samples`` as the config holds it: ``"all"`` (every candidate) is None."""
    return None if sandwich_samples == "all" else sandwich_samples


class WithSandwichRule(BaseModel):
    """The sandwich rule of MiniDisc's sandwich steps (``--sandwich-samples``; Yu & Huang
    2019, §3.1), defined once for the GLUE path (through :class:`MiniDiscRules`) and the
    text path (``compress --task lm``). None (``all``), the reference code's rule and the
    text path's default, trains every candidate every step; it is left out of the config's
    dump, so runs made before the key existed resume. The GLUE path's default is 0
    (:class:`MiniDiscRules`)."""

    omitted_in_dump: ClassVar[dict[str, Any]] = {"sandwich_samples": None}

    sandwich_samples: int | None = Field(
        None, ge=0, description="train the least and the most sparse candidate and this many others drawn at random "
        "per sandwich step (the sandwich rule, Yu & Huang 2019); all (None, the default): every candidate every "
        "step (the reference code)")

    @field_validator("sandwich_samples", mode="before")
    @classmethod
    def _all_candidates(cls, value: Any) -> Any:
        return _sandwich_samples(value)


#: How far below the target MiniDisc's candidates reach under the sandwich rule, by default
#: (``truncation`` = target − this): issue 13's re-run study (docs/results.md) found a K = 0
#: sandwich over target − 0.3 … target as good as every candidate at under half the cost,
#: where K = 0 over the paper's 50–95 % lost 2.4 points on SST-2.
SANDWICH_SPAN = 0.3
#: The paper's truncation, kept for every candidate every step (``sandwich_samples: all``).
PAPER_TRUNCATION = 0.5


def default_truncation(sandwich_samples: int | None, target_sparsity: float) -> float:
    """The least sparse candidate when ``truncation`` is not given: the paper's 0.5 when
    every candidate trains every step (``sandwich_samples`` None); under the sandwich rule,
    :data:`SANDWICH_SPAN` below the target (0.6 for a 90 % target), never below 0."""
    if sandwich_samples is None:
        return PAPER_TRUNCATION
    return level(max(0.0, target_sparsity - SANDWICH_SPAN))


class MiniDiscRules(WithSandwichRule):
    """How MiniDisc's sandwich trains and scores its candidates (issue 13; docs/minidisc.md),
    defined once for ``compress`` and ``compare``'s MiniDisc arm.

    The defaults are those the re-run study kept (docs/results.md): the sandwich rule with
    ``sandwich_samples: 0`` (the least and the most sparse candidate per step) over the
    candidates from :data:`SANDWICH_SPAN` below the target up to the target and none beyond
    it (:meth:`CompressConfig.candidate_levels`), at about 2.3× one direct-KD run against
    4.9× for every candidate, with the same student quality over six seeds.
    ``truncation`` left out is resolved when the config is validated
    (:func:`default_truncation`), so a run's saved config names the level it used.
    The paper's protocol is ``sandwich_samples: all``, ``truncation: 0.5``,
    ``candidate_score: best``, ``skip_collapsed: false`` (with ``select_on: dev``)."""

    target_sparsity: float = Field(0.9, gt=0, lt=1)
    sandwich_samples: int | None = Field(
        0, ge=0, description="train the least and the most sparse candidate and this many others drawn at random "
        "per sandwich step (the sandwich rule, Yu & Huang 2019), with candidates from truncation up to the target; "
        "all (None): every candidate every step, on the whole grid above truncation (the paper's code)")
    truncation: float = Field(
        PAPER_TRUNCATION, ge=0, lt=1, description="candidates below this sparsity are not trained; left out: "
        f"{SANDWICH_SPAN} below the target under the sandwich rule, {PAPER_TRUNCATION} with every candidate")
    candidate_score: Literal["last_mean", "best"] = Field(
        "last_mean", description="a candidate's selection metric: the mean of its last score_window evaluations "
        "(weights kept: the latest), or best: its running maximum (the paper's; weights kept: the best)")
    score_window: int = Field(3, ge=1, description="evaluations averaged by candidate_score last_mean")
    skip_collapsed: bool = Field(
        True, description="pass over candidates at the task's constant-prediction score in the λ-tradeoff (a "
        "collapsed sub-network's metric says nothing; its sparsity bonus would still win); false: the paper's argmax")

    #: the keys' values before they existed (runs made then resume unchanged)
    omitted_in_dump: ClassVar[dict[str, Any]] = {
        **WithSandwichRule.omitted_in_dump, "candidate_score": "best", "score_window": 3, "skip_collapsed": False}

    @model_validator(mode="before")
    @classmethod
    def _resolve_truncation(cls, data: Any) -> Any:
        # Resolved here, not when used: the saved config (manifest, config.yaml) then says
        # which level the run started from, and a run made before this default resumes.
        if not isinstance(data, dict) or data.get("truncation") is not None:
            return data
        fields = cls.model_fields
        samples = data.get("sandwich_samples", fields["sandwich_samples"].default)
        target = data.get("target_sparsity", fields["target_sparsity"].default)
        try:
            samples = _sandwich_samples(samples)
            resolved = default_truncation(None if samples is None else int(samples), float(target))
        except (TypeError, ValueError):  # the bad field's own error says what to change
            resolved = PAPER_TRUNCATION
        return {**data, "truncation": resolved}

    @model_validator(mode="after")
    def _target_above_truncation(self) -> MiniDiscRules:
        if self.target_sparsity < self.truncation:
            raise ValueError(f"target_sparsity {self.target_sparsity} is below truncation {self.truncation}; "
                             "lower --truncation")
        return self


class CompressConfig(_Strict, MiniDiscRules, WithSelectionSlice, WithPrecision):
    """The whole MiniDisc pipeline (``minidisc compress``)."""

    teacher: str | None = Field(None, description="hub id or path; None: the packaged all-MiniLM-L6-v2")
    teacher_finetuned: bool = False
    data: DataConfig = DataConfig()
    lam: float = Field(0.2, ge=0)
    iterations: int = Field(2, ge=1, le=10)
    grid: tuple[float, ...] = DEFAULT_GRID
    finetune: TrainConfig = TrainConfig(epochs=3.0, learning_rate=5e-5)
    sandwich: TrainConfig = TrainConfig(epochs=3.0, learning_rate=5e-5)
    final: TrainConfig = TrainConfig(epochs=3.0, learning_rate=5e-5)
    save_candidates: bool = Field(False, description="also save every candidate's best sub-network")
    note: str | None = Field(None, description="free text shown in the report (e.g. subsampling)")
    # --- students built for the hardware (issue 15); defaults left out of the dump ---
    layer_shapes: str | None = Field(None, description="uniform (one size for every layer, hidden width cut) or "
                                     "global (per-layer sizes) or depth (whole layers removed, full width); None: the "
                                     "family's default (global for encoders)")
    drop_layers: int = Field(0, ge=0, description="layers of least block importance removed whole (uniform shapes)")
    align: int = Field(1, ge=1, description="kept heads, FFN units and width rounded down to multiples of this "
                       "(8 or 64 for GPU tensor cores; 1: none)")
    cost: str = Field("flops", description="the λ-tradeoff's cost term: flops (sparsity) or latency (measured "
                      "time saved on this device)")

    omitted_in_dump: ClassVar[dict[str, Any]] = {
        **WithPrecision.omitted_in_dump, **WithSelectionSlice.omitted_in_dump, **MiniDiscRules.omitted_in_dump,
        "layer_shapes": None, "drop_layers": 0, "align": 1, "cost": "flops",
    }

    @field_validator("grid")
    @classmethod
    def _grid_fractions(cls, grid: tuple[float, ...]) -> tuple[float, ...]:
        return check_grid(grid)

    @field_validator("layer_shapes")
    @classmethod
    def _known_shapes(cls, value: str | None) -> str | None:
        if problem := shape_conflict(value):
            raise ValueError(problem)
        return value

    @field_validator("cost")
    @classmethod
    def _known_cost(cls, value: str) -> str:
        if value not in ("flops", "latency"):
            raise ValueError(f"unknown cost {value!r}; choose flops or latency")
        return value

    def levels(self) -> set[float]:
        """Every sparsity level the run trains or reports: the grid and the target."""
        return set(self.grid) | {level(self.target_sparsity)}

    def candidate_levels(self, teacher_level: float = 0.0) -> list[float]:
        """Levels trained in one sandwich run: grid ∪ {target}, at or above both the
        teacher's own level and ``truncation``; under the sandwich rule none sparser than
        the target (it could never be the assistant, and as the rule's sparsest extreme it
        would leave the target trained only through shared weights)."""
        floor = max(teacher_level, self.truncation)
        return sorted(s for s in self.levels() if at_or_above(s, floor)
                      and (self.sandwich_samples is None or at_or_above(self.target_sparsity, s)))

    @model_validator(mode="after")
    def _shape_options(self) -> CompressConfig:
        if problem := shape_conflict(self.layer_shapes, self.drop_layers, self.align):
            raise ValueError(problem)
        return self


def parse_config(model: type[BaseModel], data: dict[str, Any], source: str) -> Any:
    """Validate ``data`` as ``model``; raise ConfigError naming every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid configuration in {source}: {problems}") from None


def load_yaml(path: str | Path | dict[str, Any], model: type[BaseModel]) -> Any:
    """Read and validate a YAML config file (or, from the Python API, its content as a dict)."""
    return parse_config(model, yaml_mapping(path), _source(path))


def config_base(path: str | Path | dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """The options a YAML config file (or a dict) sets, validated as ``model`` but returned
    as written: the base that command-line options overlay. Not the validated config's
    dump, which would fill in what the file leaves out before the overlay (a
    ``--sandwich-samples all`` on the command line would then keep a ``truncation``
    resolved for the default rule) and leave out the keys of ``omitted_in_dump``.

    Raises:
        ConfigError: an unreadable file or an invalid field (every bad one is named).
    """
    data = yaml_mapping(path)
    parse_config(model, data, _source(path))
    return data


def yaml_mapping(path: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A YAML config file's content as written (a dict given from Python, as is), unvalidated.

    Raises:
        ConfigError: the file cannot be read or is not YAML.
    """
    if isinstance(path, dict):
        return path
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from None


def _source(path: str | Path | dict[str, Any]) -> str:
    return "the config dict" if isinstance(path, dict) else str(path)


def save_yaml(path: str | Path, config: BaseModel, header: str | None = None) -> None:
    """Write the resolved config atomically as YAML, after ``header`` (a ``#`` comment
    line, e.g. what wrote the file) when given. Every key is written, those of
    ``omitted_in_dump`` too, so the file reads back (``--config``) as this very config
    whatever the defaults are by then."""
    text = yaml.safe_dump(config.model_dump(mode="json", context=COMPLETE), sort_keys=False)
    write_text(path, f"{header}\n{text}" if header else text)
