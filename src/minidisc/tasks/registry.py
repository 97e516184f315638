"""The supported downstream tasks: names, labels, metrics, and split names.

Nine GLUE tasks (Wang et al., 2019, "GLUE: A Multi-Task Benchmark and Analysis Platform
for Natural Language Understanding") and CoNLL-2003 English NER (Tjong Kim Sang & De
Meulder, 2003). Class ids follow the Hugging Face hub datasets (``nyu-mll/glue``,
``eriktks/conll2003``) so that a model fine-tuned on local TSV files and one fine-tuned
on the hub copy agree on what class 0 means.

**The main metric.** MiniDisc's λ-tradeoff ``t = m + λ·(1 − scale)`` (Zhang et al., 2024,
Eq. 3) needs one number ``m`` per task. Here ``m`` is the mean of the task's official GLUE
metrics, as a fraction in [-1, 1] (correlations and MCC can be negative):

=====================  ==============================  =========================
task                   official metrics                ``main``
=====================  ==============================  =========================
CoLA                   Matthews correlation (mcc)      mcc
SST-2, QNLI, RTE,      accuracy                        accuracy
WNLI, MNLI(-mm)
MRPC, QQP              F1 (positive class) and acc.    (f1 + accuracy) / 2
STS-B                  Pearson and Spearman            (pearson + spearman) / 2
CoNLL-2003             entity-level F1 (seqeval)       f1
=====================  ==============================  =========================

:func:`minidisc.tasks.metrics.compute_metrics` returns every official metric plus ``main``;
``TaskSpec.main_metric`` is that key (``"main"``), usable as the Trainer's
``metric_for_best_model``.
"""

from __future__ import annotations

from dataclasses import dataclass

from minidisc.errors import ConfigError

#: Task types a :class:`TaskSpec` can have.
CLASSIFICATION = "classification"
REGRESSION = "regression"
TOKEN_CLASSIFICATION = "token_classification"

#: Canonical split names accepted by :func:`minidisc.tasks.load_split`.
SPLITS = ("train", "dev", "test", "test_labeled")


@dataclass(frozen=True)
class TaskSpec:
    """Everything the trainers need to know about a task, independent of where its data lives.

    Attributes:
        name: canonical task name (one of :data:`TASK_NAMES`).
        glue_folder: folder holding the task's files under the data dir (``"SST-2"``;
            ``"conll2003"`` for NER).
        text_columns: header names of the text columns in the task's GLUE train file
            (one for single-sentence tasks, two for pair tasks; ``("tokens",)`` for NER).
        label_names: class names indexed by class id; ``None`` for regression.
        num_labels: number of classes (1 for regression), i.e. the model head's width.
        is_regression: True for STS-B (a similarity score in [0, 5]).
        task_type: ``"classification"``, ``"regression"`` or ``"token_classification"``.
        metric_names: keys of the official metrics in the dict returned by
            :func:`~minidisc.tasks.metrics.compute_metrics`.
        main_metric: key of the single number (a fraction) that model selection and the
            MiniDisc λ-tradeoff use: the mean of ``metric_names`` (see module docstring).
        hub_name: Hugging Face hub dataset used when no data dir is given.
        hub_config: configuration of ``hub_name`` (``None`` if it has none).
    """

    name: str
    glue_folder: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None
    num_labels: int
    is_regression: bool
    task_type: str
    metric_names: tuple[str, ...]
    hub_name: str
    hub_config: str | None
    main_metric: str = "main"

    @property
    def is_pair(self) -> bool:
        """True when an example is a sentence pair (``text_b`` is used)."""
        return len(self.text_columns) == 2


def _glue(
    name: str,
    folder: str,
    text_columns: tuple[str, ...],
    label_names: tuple[str, ...] | None,
    metrics: tuple[str, ...],
    hub_config: str,
) -> TaskSpec:
    regression = label_names is None
    return TaskSpec(
        name=name,
        glue_folder=folder,
        text_columns=text_columns,
        label_names=label_names,
        num_labels=1 if regression else len(label_names),
        is_regression=regression,
        task_type=REGRESSION if regression else CLASSIFICATION,
        metric_names=metrics,
        hub_name="nyu-mll/glue",
        hub_config=hub_config,
    )


_NLI3 = ("entailment", "neutral", "contradiction")
_NLI2 = ("entailment", "not_entailment")

#: CoNLL-2003 NER tags in the hub dataset's id order (BIO / IOB2 scheme).
CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")

_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _glue("cola", "CoLA", ("sentence",), ("unacceptable", "acceptable"), ("mcc",), "cola"),
        _glue("sst2", "SST-2", ("sentence",), ("negative", "positive"), ("accuracy",), "sst2"),
        _glue(
            "mrpc",
            "MRPC",
            ("#1 String", "#2 String"),
            ("not_equivalent", "equivalent"),
            ("f1", "accuracy"),
            "mrpc",
        ),
        _glue("stsb", "STS-B", ("sentence1", "sentence2"), None, ("pearson", "spearman"), "stsb"),
        _glue(
            "qqp",
            "QQP",
            ("question1", "question2"),
            ("not_duplicate", "duplicate"),
            ("f1", "accuracy"),
            "qqp",
        ),
        _glue("mnli", "MNLI", ("sentence1", "sentence2"), _NLI3, ("accuracy",), "mnli"),
        _glue("mnli-mm", "MNLI", ("sentence1", "sentence2"), _NLI3, ("accuracy",), "mnli"),
        _glue("qnli", "QNLI", ("question", "sentence"), _NLI2, ("accuracy",), "qnli"),
        _glue("rte", "RTE", ("sentence1", "sentence2"), _NLI2, ("accuracy",), "rte"),
        _glue(
            "wnli",
            "WNLI",
            ("sentence1", "sentence2"),
            ("not_entailment", "entailment"),
            ("accuracy",),
            "wnli",
        ),
        TaskSpec(
            name="conll2003",
            glue_folder="conll2003",
            text_columns=("tokens",),
            label_names=CONLL_TAGS,
            num_labels=len(CONLL_TAGS),
            is_regression=False,
            task_type=TOKEN_CLASSIFICATION,
            metric_names=("f1",),
            hub_name="eriktks/conll2003",
            hub_config=None,
        ),
    )
}

#: Canonical task names, in GLUE order then NER.
TASK_NAMES: tuple[str, ...] = tuple(_TASKS)

_ALIASES: dict[str, str] = {
    "sst-2": "sst2",
    "sst": "sst2",
    "sts-b": "stsb",
    "sts": "stsb",
    "mnli-m": "mnli",
    "mnli_m": "mnli",
    "mnli-matched": "mnli",
    "mnli_matched": "mnli",
    "mnli_mm": "mnli-mm",
    "mnli-mismatched": "mnli-mm",
    "mnli_mismatched": "mnli-mm",
    "conll": "conll2003",
    "conll-2003": "conll2003",
    "conll03": "conll2003",
    "ner": "conll2003",
}


def get_task(name: str | TaskSpec) -> TaskSpec:
    """Return the :class:`TaskSpec` for a task name (case-insensitive, aliases allowed).

    Args:
        name: e.g. ``"SST-2"``, ``"sst2"``, ``"STS-B"``, ``"mnli-mm"``, ``"ner"``; a
            :class:`TaskSpec` is returned unchanged.

    Raises:
        ConfigError: the name is not a known task or alias.
    """
    if isinstance(name, TaskSpec):
        return name
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key == "custom":
        raise ConfigError("task custom is your own data: give --train-file or --dataset (see docs/your-data.md)")
    if key not in _TASKS:
        known = ", ".join(TASK_NAMES)
        raise ConfigError(
            f"unknown task {name!r}; choose one of: {known} "
            f"(aliases: sst-2, sts-b, mnli-m, ner, conll)"
        )
    return _TASKS[key]


_SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "dev": "dev",
    "validation": "dev",
    "valid": "dev",
    "val": "dev",
    "test": "test",
    "test_labeled": "test_labeled",
    "test-labeled": "test_labeled",
    "test_labelled": "test_labeled",
}


def normalize_split(spec: TaskSpec, split: str) -> str:
    """Map a user's split name to one of :data:`SPLITS`.

    ``dev``/``validation`` selects MNLI's ``dev_matched`` for task ``mnli`` and
    ``dev_mismatched`` for ``mnli-mm``; the explicit names ``dev_matched`` /
    ``dev_mismatched`` (and ``test_*``) are accepted when they agree with the task.

    Raises:
        ConfigError: unknown split name, or a matched/mismatched split asked of the
            other MNLI task, or ``test_labeled`` for a task without public test labels.
    """
    key = str(split).strip().lower().replace("-", "_")
    if key.startswith(("dev_", "validation_", "test_")) and key.endswith(
        ("_matched", "_mismatched")
    ):
        wanted = "mnli-mm" if key.endswith("_mismatched") else "mnli"
        if spec.name != wanted:
            raise ConfigError(
                f"split {split!r} belongs to task {wanted!r}, not {spec.name!r}: "
                f"use --task {wanted} with split 'dev' (or 'test')"
            )
        key = "test" if key.startswith("test_") else "dev"
    canonical = _SPLIT_ALIASES.get(key)
    if canonical is None:
        raise ConfigError(
            f"unknown split {split!r}; choose one of: train, dev (alias validation), "
            f"test (unlabelled), test_labeled"
        )
    if canonical == "test_labeled" and spec.glue_folder == "MNLI":
        raise ConfigError("MNLI has no public labelled test set; evaluate on split 'dev'")
    return canonical
