"""MiniDisc on a decoder LLM, recovered on plain text: ``minidisc compress --task lm``.

Stages, in one run directory with the GLUE path's manifest, resume and ``--overwrite``
rules (:class:`~minidisc.runfolder.run.RunDir`):

``teacher``      load the teacher's causal LM (no fine-tuning: a pretrained decoder is
                 already trained on its task, next-token prediction), save it in full
                 precision as the run's teacher, and evaluate it: next-token loss,
                 perplexity and accuracy on the selection slice (its loss is the
                 ``L_T`` of the selection metric), perplexity and bits per byte on every
                 ``--eval-corpus`` file, parameters, FLOPs per token, and a greedy
                 continuation of the report's prompt.
``sparsified``   importance on the calibration blocks (``--importance``, default
                 activation), reorder, sparsity map over grid ∪ target (with
                 ``--drop-layers N``, every level above 0 also keeps nothing of the N
                 layers of least block importance): :func:`sparsify_decoder`, the one
                 place ``--importance``, ``--layer-shapes`` and ``--drop-layers`` are
                 dispatched.
``iter1..K``     the sandwich (:func:`minidisc.schedules.minidisc.run_iterations`: the same
                 loop, engine and λ-selection as GLUE) with a causal-LM distillation
                 loss (default forward KL at temperature 1) on a stream of the stage's
                 token budget, selecting on ``m = exp(L_T − L_c) = PPL_T / PPL_c``
                 (:mod:`minidisc.tasks.lm`).
``assistantK``   the held-out evaluation of the assistant iteration K selected (only
                 when it selected one short of the target).
``student``      export (safetensors + config + tokenizer; tied embeddings stay tied;
                 dropped layers removed, so the student has fewer layers) and
                 evaluate the exported files as the teacher was.
``report``       report.json, report.md, tradeoff.png (:mod:`minidisc.report.compress_lm`).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.errors import ModelError
from minidisc.fileio import is_main_process, process_state
from minidisc.report.card import model_card
from minidisc.runfolder.run import REPORT_FILES, RunDir

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from minidisc.elastic.importance import Importance
    from minidisc.elastic.model import ElasticModel
    from minidisc.elastic.spec import SubnetSpec
    from minidisc.models import ModelSource
    from minidisc.schedules.lm_config import LMCompressConfig
    from minidisc.training.data import TaskData
    from minidisc.training.lm_teacher_cache import LMTeacherCacheStore

__all__ = ["check_lm_inputs", "open_teacher_cache", "run_compress_lm", "sparsify_decoder"]

def run_compress_lm(
    cfg: LMCompressConfig, output: str | Path, *, overwrite: bool = False, cache_dir: str | Path | None = None,
    shared: Mapping[str, Path] | None = None,
) -> RunDir:
    """Run (or resume) ``compress --task lm`` into ``output``; return the run.

    Args:
        cache_dir: root of the teacher-logit cache when ``cfg.teacher_cache`` is set
            (default: ``teacher-cache/`` in the run); runs on the same teacher may share it.
        shared: ``{stage: finished run}`` for ``teacher`` and ``sparsified``: the stage
            becomes a link to that run's (:func:`~minidisc.schedules.stages.link_stage`)
            instead of being computed. The caller vouches that the other run computed
            it from the same inputs (``compare --task lm``'s arms: :mod:`.lm_compare`).

    Raises:
        RunExistsError: ``output`` holds another run and ``overwrite`` is False.
        ConfigError, DataError, ModelError: invalid options, text or teacher (checked
            before the run folder is touched: :func:`check_lm_inputs`).
    """
    from minidisc.runtime import configure
    from minidisc.schedules.lm_data import prepare_lm_data
    from minidisc.schedules.minidisc import IterationContext, run_iterations
    from minidisc.schedules.stages import level_specs, link_stage

    configure(cfg.precision)  # an impossible precision stops here, before anything is written
    source, tokenizer = check_lm_inputs(cfg)
    run = RunDir(output, cfg, "compress", overwrite=overwrite)
    seed = cfg.sandwich.seed
    with process_state().main_process_first():
        data, blocks = prepare_lm_data(cfg, tokenizer, seed=seed)
    shared = shared or {}
    if "teacher" in shared:
        link_stage(run, "teacher", shared["teacher"])
    else:
        run.stage("teacher", lambda tmp: teacher_stage(source, data, cfg, tmp))
    data = with_reference_loss(data, run.record("teacher")["selection"]["nll"])
    if "sparsified" in shared:
        link_stage(run, "sparsified", shared["sparsified"])
    else:
        run.stage("sparsified", lambda tmp: sparsify_stage(run.path / "teacher", data, cfg, tmp), main_only=True)
    spec_map = level_specs(run.path / "sparsified", cfg.levels())

    def stage_data(final: bool) -> TaskData:
        return dataclasses.replace(data, train=_stream(data, blocks, cfg.stage_tokens(final), seed))

    store = open_teacher_cache(run, cfg, data, cache_dir, overwrite) if cfg.teacher_cache else None
    ctx = IterationContext(
        cfg, spec_map, data, teacher_cache=store, objective=cfg.objective, objective_options=cfg.stage_options(),  # type: ignore[arg-type]
        stage_data=stage_data, stage_train=cfg.stage_train_config, sandwich_samples=cfg.sandwich_samples,
    )
    student_dir = run_iterations(run, ctx)
    if store is not None and is_main_process():
        run.set("teacher_cache", store.summary())
    for name, record in list(run.manifest["stages"].items()):
        if _is_assistant(name, record, cfg.target_sparsity):
            run.stage(f"assistant{record['iteration']}",
                      lambda tmp, n=name: {"evaluation": evaluate_model_dir(run.path / n / "model", data, cfg)},
                      folder=False, main_only=True)
    from minidisc.elastic.levels import level_key

    target = spec_map[level_key(spec_map, cfg.target_sparsity)]
    run.stage("student", lambda tmp: export_stage(student_dir, target, data, cfg, tmp))
    run.stage("report", lambda root: _report(run), folder=False, main_only=True, outputs=REPORT_FILES)
    run.finish()
    return run


# --- validation -----------------------------------------------------------------------


def check_lm_inputs(cfg: LMCompressConfig) -> tuple[ModelSource, PreTrainedTokenizerBase]:
    """Check everything that can be checked before any work: the estimator and layer
    shapes, the teacher (a LLaMA-family causal LM), the block size against its
    positions, and the corpus files. Returns the teacher's source and tokenizer.

    Raises:
        ConfigError: an option not available, a block larger than the teacher's positions.
        ModelError: the teacher is not a LLaMA-family decoder (an encoder such as BERT).
        DataError: a corpus file or folder is missing.
    """
    from minidisc.evaluation.perplexity import check_block_size
    from minidisc.models import load_config, load_tokenizer, resolve_model
    from minidisc.schedules.stages import MapShape
    from minidisc.tasks.plaintext import corpus_files

    source = resolve_model(cfg.teacher)
    label = source.label or source.path
    config = load_config(source)
    check_decoder_teacher(config, label)
    check_block_size(cfg.corpus.block_size, config, label)
    MapShape(cfg.layer_shapes, cfg.drop_layers).check(config, cfg.levels())
    local = [p for p in cfg.corpus.train if Path(p).exists() or _looks_local(p)]
    if local:
        corpus_files(local)
    if cfg.corpus.eval:
        corpus_files(cfg.corpus.eval)
    return source, load_tokenizer(source)


def check_decoder_teacher(config: Any, label: str) -> None:
    """Refuse a teacher that is not a LLaMA-family causal LM (llama, mistral, qwen2, qwen3).

    Raises:
        ModelError: one message for every other architecture.
    """
    from minidisc.elastic.families import LlamaFamily, family_for

    model_type = getattr(config, "model_type", None)
    try:
        family = family_for(config)
    except ModelError:
        family = None
    if not isinstance(family, LlamaFamily):
        raise ModelError(
            f"--task lm compresses decoder LLMs of the LLaMA family (llama, mistral, qwen2, qwen3); {label} is a "
            f"{model_type!r} model. Pass a decoder teacher (e.g. --teacher smollm2), or a GLUE task "
            "(--task sst2 …) to compress an encoder"
        )


def _looks_local(path: str) -> bool:
    from minidisc.models import looks_local

    return looks_local(path) or Path(path).suffix in {".txt", ".raw", ".tokens", ".text"}


# --- stages -----------------------------------------------------------------------------


def teacher_stage(source: ModelSource, data: TaskData, cfg: LMCompressConfig, out: Path) -> dict[str, Any]:
    """Save the teacher's causal LM (float32) with its tokenizer to ``out`` and evaluate
    it (:func:`evaluate_model`); return the manifest entry.

    Raises:
        ModelError: the checkpoint cannot be loaded as a causal LM, or has no LM head.
    """
    import torch

    from minidisc.models import load_task_model
    from minidisc.seeding import seed_everything

    seed_everything(cfg.sandwich.seed)
    loaded = load_task_model(source, data.task)
    if loaded.head_initialised:
        raise ModelError(
            f"{source.label or source.path} has no LM head ({loaded.head_initialised}): its next-token "
            "predictions would be random. Pass a causal LM saved with its head (…ForCausalLM)"
        )
    model = loaded.model.to(torch.float32)
    if is_main_process():
        model.save_pretrained(out)
        data.tokenizer.save_pretrained(out)
    evaluation = evaluate_model(model, data, cfg, out.parent / ".teacher-eval")
    evaluation["selection"]["main"] = 1.0  # m = exp(L_T − L_T): the teacher is the reference
    return {"source": source.label, "data": data.sizes, **evaluation}


def sparsify_stage(teacher_dir: Path, data: TaskData, cfg: LMCompressConfig, out: Path) -> dict[str, Any]:
    """Importance on the calibration blocks, reorder, sparsity map (:func:`sparsify_decoder`);
    writes ``model/``, ``importance.safetensors`` and ``sparsity_map.json`` into ``out``."""
    from minidisc.elastic.model import ElasticModel
    from minidisc.elastic.sparsity_map import save_sparsity_map
    from minidisc.models import ModelSource, load_for_task
    from minidisc.seeding import seed_everything

    seed_everything(cfg.sandwich.seed)
    elastic = ElasticModel(load_for_task(ModelSource(str(teacher_dir)), data.task))
    importance, spec_map, cost = sparsify_decoder(
        elastic, data, sorted(cfg.levels()), importance=cfg.importance, layer_shapes=cfg.layer_shapes,
        batch_size=cfg.sandwich.eval_batch_size, seed=cfg.sandwich.seed, drop_layers=cfg.drop_layers,
    )
    elastic.model.save_pretrained(out / "model")
    data.tokenizer.save_pretrained(out / "model")
    importance.save(out / "importance.safetensors")
    save_sparsity_map(out, spec_map)
    dropped = spec_map[max(spec_map)].empty_layers()
    block = None if importance.layers is None else [round(float(x), 6) for x in importance.layers]
    return {"levels": sorted(spec_map), "importance": cfg.importance, "layer_shapes": cfg.layer_shapes,
            "dropped_layers": list(dropped), "block_importance": block, **cost}


def sparsify_decoder(
    elastic: ElasticModel, data: TaskData, levels: list[float], *, importance: str, layer_shapes: str, batch_size: int,
    seed: int = 0, drop_layers: int = 0,
) -> tuple[Importance, dict[float, SubnetSpec], dict[str, Any]]:
    """Score, reorder and map a decoder: the one place the importance estimator and the
    layer shapes are chosen.

    Args:
        elastic: the teacher (full size), reordered in place.
        data: ``data.importance`` holds the calibration blocks (labels = the tokens: the
            model's own causal-LM loss is what the gradient estimator differentiates).
        levels: sparsities of the map.
        importance: ``--importance``, an estimator of :mod:`minidisc.elastic.estimators`.
        layer_shapes: ``--layer-shapes``: ``uniform`` (one size for every layer, an ordinary
            config) or ``global`` (MiniDisc's per-layer map).
        batch_size: calibration blocks per batch.
        seed: the seed of ``--importance random``.
        drop_layers: ``--drop-layers``: layers of least block importance removed whole at
            every level above 0 (uniform layer shapes).

    Returns:
        The reordered importance, the sparsity map, and the estimator's calibration cost
        (``compute``: FLOPs (forward, plus 2× forward for a backward), tokens, sequences;
        ``calibration_seconds``; ``calibration``: the estimator's own record).
    """
    from torch.utils.data import DataLoader

    from minidisc.compute.meter import ComputeTotals
    from minidisc.elastic.estimators import estimate_importance
    from minidisc.runtime import autocast, place
    from minidisc.training.data import collator_for

    loader = DataLoader(data.importance, batch_size=batch_size, collate_fn=collator_for(data.task, data.tokenizer))
    place(elastic.model)  # the calibration pass computes where training does
    with elastic.active(None), autocast():  # scores of the full model
        scores, cost = estimate_importance(elastic.model, elastic.family, loader, method=importance, seed=seed)
    reordered = elastic.reorder(scores)
    spec_map = elastic.sparsity_map(reordered, levels, layer_shapes=layer_shapes, drop_layers=drop_layers)  # type: ignore[arg-type]
    totals = ComputeTotals()
    totals.student_train_flops, totals.tokens, totals.sequences = cost.flops, cost.tokens, cost.sequences
    return reordered, spec_map, {"compute": totals.to_dict(), "calibration_seconds": cost.wall_time_s,
                                 "calibration": cost.to_dict()}


def export_stage(model_dir: Path, spec: SubnetSpec, data: TaskData, cfg: LMCompressConfig, out: Path) -> dict[str, Any]:
    """Save the student (safetensors + config + tokenizer) without its dropped layers
    (``--drop-layers``: they keep nothing) and evaluate the saved files."""
    from minidisc.elastic.extract import drop_empty_layers_
    from minidisc.elastic.io import load_student, loads_with_plain_transformers, save_student

    student = load_student(model_dir)
    dropped = drop_empty_layers_(student)
    save_student(student, out, spec.without_layers(dropped), tokenizer=data.tokenizer, card=model_card)
    exported = load_student(out)
    return {
        "loads_with_plain_transformers": loads_with_plain_transformers(exported.config),
        "tied_embeddings": _tied(exported),
        "dropped_layers": list(dropped),
        **evaluate_model(exported, data, cfg, out.parent / ".student-eval"),
    }


def open_teacher_cache(
    run: RunDir, cfg: LMCompressConfig, data: TaskData, cache_dir: str | Path | None, overwrite: bool
) -> LMTeacherCacheStore:
    """The teacher-logit cache of the run's teacher (``teacher/``), in ``cache_dir`` or the
    run's ``teacher-cache/``; the sandwich and the final stage read it when their teacher
    computes the same function (the reordered teacher does; an assistant does not).

    Raises:
        ModelError: a refused cache folder (see :mod:`minidisc.training.lm_teacher_cache`).
    """
    from minidisc.models import ModelSource, load_for_task
    from minidisc.training.lm_teacher_cache import LMTeacherCacheStore

    assert cfg.teacher_cache is not None
    teacher = load_for_task(ModelSource(str(run.path / "teacher")), data.task).eval()
    with process_state().main_process_first():  # the main process creates the folder
        return LMTeacherCacheStore(
            cache_dir or run.path / "teacher-cache", teacher, data.tokenizer, block_size=cfg.corpus.block_size,
            top_k=cfg.teacher_cache.top_k, dtype=cfg.teacher_cache.dtype, tail_samples=cfg.teacher_cache.tail_samples,
            temperature=float(cfg.objective_options.get("temperature", 1.0)), overwrite=overwrite,
        )


# --- evaluation ---------------------------------------------------------------------------


def evaluate_model_dir(model_dir: Path, data: TaskData, cfg: LMCompressConfig) -> dict[str, Any]:
    """:func:`evaluate_model` of the student saved in ``model_dir``."""
    from minidisc.elastic.io import load_student

    return evaluate_model(load_student(model_dir), data, cfg, model_dir.parent / ".eval")


def evaluate_model(model: PreTrainedModel, data: TaskData, cfg: LMCompressConfig, scratch: Path) -> dict[str, Any]:
    """Everything the report says about one model.

    Returns:
        ``selection`` (``nll`` nats/token, ``perplexity``, next-token ``accuracy`` and
        ``main`` = ``m`` on the selection slice), ``heldout`` (per ``--eval-corpus`` file:
        :func:`minidisc.evaluation.perplexity.evaluate_perplexity`'s tokens, perplexity,
        bits per byte, protocol), ``params`` (``total``: every distinct parameter, tied
        embeddings once; ``non_embedding``), ``flops_per_token`` (forward, LM head
        included, at the training block size), ``continuation`` (greedy, of
        ``cfg.prompt``), ``layers`` (the layers that compute: an assistant's dropped
        layers are still in its files, empty) and ``compute`` (the selection
        evaluation's FLOPs and tokens).
    """
    from minidisc.compute.flops import forward_flops, non_embedding_params
    from minidisc.elastic.extract import physical_spec
    from minidisc.training.finetune import evaluate_model as evaluate_on_dev

    selection, compute = evaluate_on_dev(model, data, cfg.sandwich, scratch)
    if is_main_process():
        shutil.rmtree(scratch, ignore_errors=True)
    spec = physical_spec(model)
    block = cfg.corpus.block_size
    return {
        "selection": {k: selection[k] for k in ("main", "nll", "perplexity", "accuracy")},
        "heldout": heldout_perplexity(model, data.tokenizer, cfg),
        "layers": spec.num_layers - len(spec.empty_layers()),
        "params": {"total": int(model.num_parameters()), "non_embedding": int(non_embedding_params(model.config, spec))},
        "flops_per_token": forward_flops(model.config, spec, seq_len=block, lm_head=True) / block,
        "continuation": continuation(model, data.tokenizer, cfg.prompt, cfg.new_tokens),
        "compute": compute,
    }


def heldout_perplexity(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cfg: LMCompressConfig) -> dict[str, Any]:
    """Perplexity and bits per byte of ``model`` on each ``--eval-corpus`` file, by
    ``minidisc evaluate-lm``'s protocol (:mod:`minidisc.evaluation.perplexity`; default
    block and stride, so ``evaluate-lm`` on the exported student gives the same numbers)."""
    from minidisc.evaluation.perplexity import LoadedLM, evaluate_perplexity

    keep = ("tokens", "bytes", "mean_nll", "perplexity", "bits_per_byte", "block_size", "stride", "truncated", "documents")
    out = {}
    for path in cfg.corpus.eval:
        result = evaluate_perplexity(LoadedLM(model, tokenizer, "model"), [path], max_tokens=cfg.corpus.eval_max_tokens)
        out[path] = {k: getattr(result, k) for k in keep}
    return out


def continuation(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str, new_tokens: int) -> str:
    """The greedy continuation of ``prompt`` by ``model``: ``new_tokens`` tokens decoded
    (special tokens skipped)."""
    import torch

    from minidisc.runtime import autocast, current, place

    place(model)
    enc = tokenizer(prompt, return_tensors="pt").to(current().device)
    model.eval()
    with torch.no_grad(), autocast():
        out = model.generate(
            **enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
            pad_token_id=tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None,
        )
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


# --- helpers ------------------------------------------------------------------------------


def with_reference_loss(data: TaskData, loss: float) -> TaskData:
    """``data`` whose task knows the teacher's selection loss ``L_T`` (so ``main`` is ``m``)."""
    return dataclasses.replace(data, task=dataclasses.replace(data.task, reference_loss=float(loss)))


def _stream(data: TaskData, blocks: np.ndarray, tokens: int, seed: int) -> Any:
    from minidisc.schedules.lm_data import training_stream

    return training_stream(data, blocks, tokens, seed)


def _is_assistant(name: str, record: dict[str, Any], target: float) -> bool:
    """Whether stage ``name`` is a non-final iteration that selected an assistant."""
    from minidisc.elastic.levels import same_level

    return (name.startswith("iter") and record.get("status") == "done" and not record.get("final")
            and not same_level(record["selected"], target))


def _tied(model: PreTrainedModel) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def _report(run: RunDir) -> dict[str, Any]:
    from minidisc.report.compress_lm import write_lm_report

    write_lm_report(run)
    return {}
