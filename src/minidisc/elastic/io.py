"""Save and load extracted students (safetensors + config.json, no pickle).

A student directory holds ``model.safetensors`` (or shards with an index),
``config.json`` with ``minidisc_subnet = {"heads": [...], "neurons": [...],
"sparsity": s}`` (and ``"hidden": h`` when the width was cut), optionally a ``README.md`` model card (the runs pass
:func:`minidisc.report.card.model_card`) and tokenizer files.

When plain ``transformers`` loading works
-----------------------------------------
``AutoModelFor….from_pretrained(path)`` rebuilds a student exactly when its config's
own size fields describe it (the family writes them:
:meth:`~minidisc.elastic.families.Family.write_uniform_sizes`), i.e. when every layer has
the same sizes and:

* BERT / RoBERTa: every layer keeps **all** heads (``BertConfig`` ties the head size to
  ``hidden_size / num_attention_heads``, so fewer heads cannot be expressed, nor a cut
  width: such a student records ``head_dim``) and the same number of FFN units (written
  to ``intermediate_size``); removed layers are fine (``num_hidden_layers``);
* LLaMA-like families (LLaMA, Mistral, Qwen2, Qwen3): every layer keeps the same number
  (> 0) of KV groups and of FFN units (written to ``num_attention_heads``,
  ``num_key_value_heads``, explicit ``head_dim`` and ``intermediate_size``), at any kept
  hidden width (always written to ``hidden_size``; a tied LM head stays tied).

Any other student (per-layer-heterogeneous, BERT with pruned heads, or layers keeping
no heads) must be loaded with :func:`load_student`; plain loading of such a student
fails with a size-mismatch error rather than loading wrong weights.
:func:`load_student` works for every student, and also for ordinary models.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minidisc.elastic.extract import CONFIG_KEY, physical_spec, record_spec, slice_layers_
from minidisc.elastic.families import family_for
from minidisc.elastic.model import ElasticModel
from minidisc.elastic.spec import SubnetSpec
from minidisc.errors import ConfigError, ModelError
from minidisc.fileio import atomic_path, process_state, write_text
from minidisc.models import corrupted_weights_message, is_head_key

#: The model card's file name (Hugging Face's convention; :data:`minidisc.report.card.CARD`).
_CARD = "README.md"


def save_student(
    model: Any,
    path: str | os.PathLike[str],
    spec: SubnetSpec | None = None,
    tokenizer: Any = None,
    card: Callable[[Any], str] | None = None,
) -> Path:
    """Write a student to directory ``path`` atomically (replacing an existing one).

    Args:
        model: an extracted student (``PreTrainedModel``), or an
            :class:`~minidisc.elastic.model.ElasticModel`, from which ``spec`` (default:
            its active spec) is extracted first.
        spec: the student's per-layer sizes; default: read from its weights. For an
            already-extracted model it must equal the weights' sizes (less the layers
            ``spec.dropped``, which extraction removed).
        tokenizer: saved beside the weights when given.
        card: renders the model card (``README.md``, written beside the weights in the
            same atomic folder) from the extracted student, whose config then holds its
            spec; e.g. :func:`minidisc.report.card.model_card`. None: no card.

    Under a multi-process launch call it from every process (it synchronises them):
    the main process writes, the others wait until the files are in place, so any
    process may read them once it returns.

    Returns:
        The directory path.

    Raises:
        ConfigError: ``spec`` does not match the model's weights.
    """
    if isinstance(model, ElasticModel):
        model = model.extract(spec)
    family = family_for(model)
    sizes = physical_spec(model, family)
    if spec is not None and spec.dropped and sizes.num_layers == spec.num_layers - len(spec.dropped):
        spec = spec.without_layers(spec.dropped)  # extraction removed the dropped layers
    width = model.config.hidden_size
    if spec is None:
        recorded_hidden = _recorded(model.config, "hidden")
        hidden = recorded_hidden if recorded_hidden == width else None
        spec = SubnetSpec(sizes.heads, sizes.neurons, _recorded(model.config, "sparsity"), hidden)
    elif (spec.heads, spec.neurons) != (sizes.heads, sizes.neurons) or (spec.hidden or width) != width:
        raise ConfigError(
            f"save_student: the spec {spec.to_dict()} does not match the model's sizes "
            f"{sizes.to_dict()} at width {width}; extract the sub-network first (ElasticModel.extract(spec))"
        )
    record_spec(model.config, spec, family)
    path = Path(path)
    state = process_state()
    if state.is_main_process:
        with atomic_path(path) as tmp:
            model.save_pretrained(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            if card is not None:
                write_text(tmp / _CARD, card(model))
    state.wait_for_everyone()
    return path


def loads_with_plain_transformers(config: Any) -> bool:
    """Whether ``AutoModelFor….from_pretrained`` rebuilds a saved student from ``config``
    alone: every layer keeps the same sizes, and the config's own head count is theirs
    (a family whose config cannot state fewer heads, as ``BertConfig`` that ties the head
    size to ``hidden_size / num_attention_heads``, keeps its full count; see the module
    doc). True for a config without ``minidisc_subnet`` (an ordinary model)."""
    recorded = getattr(config, CONFIG_KEY, None)
    if not isinstance(recorded, dict):
        return True
    uniform = len(set(recorded["heads"])) <= 1 and len(set(recorded["neurons"])) <= 1
    full_heads = all(h == config.num_attention_heads for h in recorded["heads"])
    return uniform and full_heads and family_for(config).config_states_sizes(config)


def _recorded(config: Any, key: str) -> Any:
    """``key`` (``"sparsity"``, ``"hidden"``) of the spec recorded in ``config``, or None."""
    recorded = getattr(config, CONFIG_KEY, None)
    return recorded.get(key) if isinstance(recorded, dict) else None


def load_student(path: str | os.PathLike[str], task_head: bool = True) -> nn.Module:
    """Load a student saved by :func:`save_student` (any per-layer sizes).

    Builds the model from ``config.json``, shrinks each layer to the sizes recorded in
    ``config.minidisc_subnet`` and loads the safetensors weights strictly (every key
    must match in name and shape; only weights tied to a loaded one may be absent).

    Args:
        path: the student directory.
        task_head: build the class in ``config.architectures`` (e.g.
            ``BertForSequenceClassification``); ``False`` builds the bare encoder/decoder
            (``AutoModel``) and ignores the head weights.

    Returns:
        The model, in eval mode, in the saved weights' dtype.

    Raises:
        ModelError: missing or corrupted files, unknown architecture, or weights that do
            not match.
    """
    import transformers
    from transformers import AutoConfig, AutoModel

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelError(f"{path} is not a saved model: config.json is missing")
    state = _read_safetensors(path)
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)

    if task_head and getattr(config, "architectures", None):
        cls = getattr(transformers, config.architectures[0], None)
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise ModelError(
                f"unknown architecture {config.architectures[0]!r} in {path / 'config.json'}"
            )
        model = _build(config, cls)
    else:
        model = _build(config, AutoModel.from_config)
        prefix = model.base_model_prefix + "."
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    _shrink_to_saved(model, config, state)
    _load_strict(model, state, path)
    return model.eval()


def load_student_for_task(
    path: str | os.PathLike[str], auto_class: Any, **labels: Any
) -> tuple[nn.Module, list[str], list[str]]:
    """Load a student with the task head ``auto_class`` builds for ``labels``.

    As :func:`load_student`, except that the head (see
    :func:`minidisc.models.is_head_key`) may be initialised: when the student was
    saved for another task (another number of labels) or without a head, fine-tuning
    trains a fresh one. Every body weight must still match.

    Args:
        path: the student directory.
        auto_class: e.g. ``AutoModelForSequenceClassification``.
        labels: config overrides of the task (``num_labels``, ``id2label``, ...).

    Returns:
        The model (eval mode) and the head weights that were initialised instead of
        loaded: those the checkpoint lacks, and those it holds in another shape.

    Raises:
        ModelError: as :func:`load_student`.
    """
    from transformers import AutoConfig

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelError(f"{path} is not a saved model: config.json is missing")
    state = _read_safetensors(path)
    config = AutoConfig.from_pretrained(path, trust_remote_code=False, **labels)
    model = _build(config, auto_class.from_config)
    _shrink_to_saved(model, config, state)
    missing, resized = _load_strict(model, state, path, may_initialise=lambda key: is_head_key(model, key))
    return model.eval(), missing, resized


def _build(config: Any, make: Callable[[Any], nn.Module]) -> nn.Module:
    """``make(config)`` at the width the family builds its heads at
    (:meth:`~minidisc.elastic.families.Family.build_hidden_size`: a BERT student with a cut
    width keeps its teacher's head size), then the config says its own width again (the
    model holds that config object; :func:`_shrink_to_saved` cuts the width)."""
    width = config.hidden_size
    config.hidden_size = family_for(config).build_hidden_size(config)
    try:
        return make(config)
    finally:
        config.hidden_size = width


def _shrink_to_saved(model: nn.Module, config: Any, state: dict[str, torch.Tensor]) -> None:
    """Slice the layers to the recorded per-layer sizes; cast to the weights' dtype."""
    recorded = getattr(config, CONFIG_KEY, None)
    if recorded is not None:
        slice_layers_(model, SubnetSpec.from_dict(recorded))
    dtypes = {v.dtype for v in state.values() if v.is_floating_point()}
    if len(dtypes) == 1:
        model.to(dtypes.pop())


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    single = path / "model.safetensors"
    index = path / "model.safetensors.index.json"
    try:
        if single.is_file():
            return load_file(str(single))
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(load_file(str(path / shard)))
            return state
    except (SafetensorError, OSError, ValueError, KeyError) as err:  # JSON errors are ValueErrors
        raise ModelError(corrupted_weights_message(path, err)) from err
    raise ModelError(
        f"{path} holds no model.safetensors (minidisc loads safetensors only, never pickle)"
    )


def _load_strict(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    path: Path,
    may_initialise: Callable[[str], bool] | None = None,
) -> tuple[list[str], list[str]]:
    """Load ``state`` into ``model``; every key must match in name and shape, except
    those ``may_initialise`` accepts: missing or resized ones keep their fresh values,
    left-over ones (a head of another kind) are dropped. Returns the keys left fresh
    because absent, and because resized."""
    own = model.state_dict()
    free = may_initialise or (lambda _key: False)
    unexpected = sorted(k for k in set(state) - set(own) if not free(k))
    resized = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    wrong = [k for k in resized if not free(k)]
    # A weight tied to another (e.g. lm_head ↔ embeddings) is saved once.
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded_ids = {id(params[k]) for k in state if k in params and k not in resized}
    absent = sorted(
        k for k in set(own) - set(state) if not (k in params and id(params[k]) in loaded_ids)
    )
    missing = [k for k in absent if not free(k)]
    if unexpected or wrong or missing:
        detail = "; ".join(
            f"{name}: {', '.join(keys[:5])}{' …' if len(keys) > 5 else ''}"
            for name, keys in (
                ("unexpected", unexpected),
                ("wrong shape", wrong),
                ("missing", missing),
            )
            if keys
        )
        raise ModelError(
            f"the weights in {path} do not match the model built from its config ({detail})"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in resized}, strict=False)
    return absent, resized
