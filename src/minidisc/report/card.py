"""Model cards: the ``README.md`` every saved student holds, in the Hugging Face
model-card format (YAML front matter, then Markdown).

The front matter carries what the hub reads (``library_name``, ``base_model`` = the
teacher, ``datasets``, ``metrics``, ``model-index`` with the dev results, ``license``
where the teacher's is known); the body says what a user needs: teacher, task,
sparsity, parameters, FLOPs per 128 tokens, the dev metrics of teacher, assistants and
student, the command that produced it, the data and its terms, and how to load it.

:func:`model_card` renders a card from the weights alone, which every model a run saves
gets (``save_student(…, card=model_card)``); the ``student`` stage of a run rewrites it with the run's facts (:class:`CardFacts`) and
the exported copy's dev metrics, inside the stage's staging folder, so a student folder
never appears without its final card. A card holds no time stamps and no run-folder
paths: the same command gives the same card.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from minidisc.compute.flops import non_embedding_params, paper_flops
from minidisc.elastic.levels import same_level
from minidisc.fileio import write_text
from minidisc.models import PACKAGED_ALIASES, SMOLLM2_ALIASES
from minidisc.tasks import get_task
from minidisc.training.records import HopRecord, iterations

CARD = "README.md"
SEQ_LEN = 128  # FLOPs column of the MiniDisc paper: non-embedding parameters × 128 tokens

#: The teachers minidisc packages: hub id and licence of the original weights.
_KNOWN_TEACHERS = {
    "packaged": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0"),
    "smollm2": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
}

#: Terms of each task's data, as commonly stated (see the data's PROVENANCE.md).
_DATA_TERMS = {
    "cola": "CoLA (Warstadt et al., 2019): excerpts of published linguistics works, copyright with their "
    "authors; research use, no open licence.",
    "sst2": "Stanford Sentiment Treebank (Socher et al., 2013; Rotten Tomatoes snippets, Pang & Lee): no "
    "formal licence from its authors; distributed by GLUE for research use.",
    "mrpc": "Microsoft Research Paraphrase Corpus (Dolan & Brockett, 2005): the MSR licence agreement "
    "(research use).",
    "stsb": "STS Benchmark (Cer et al., 2017): mixed sources (news, captions, forums) under their own terms; "
    "research use.",
    "qqp": "Quora Question Pairs: Quora's terms of service (non-commercial research use).",
    "mnli": "MultiNLI (Williams et al., 2018): mostly the OANC's free licence, fiction under CC BY-SA 3.0.",
    "mnli-mm": "MultiNLI (Williams et al., 2018): mostly the OANC's free licence, fiction under CC BY-SA 3.0.",
    "qnli": "QNLI, built by GLUE from SQuAD v1.1 (Rajpurkar et al., 2016): CC BY-SA 4.0.",
    "rte": "RTE (PASCAL RTE challenges 1-3, 5): research use.",
    "wnli": "WNLI, built by GLUE from the Winograd Schema Challenge: commonly listed as CC BY 4.0.",
    "conll2003": "CoNLL-2003 (Tjong Kim Sang & De Meulder, 2003): Reuters Corpus text under the Reuters/NIST "
    "research agreement, which forbids redistribution of the text.",
}

#: minidisc metric keys → Hugging Face metric ids.
_HF_METRIC = {"mcc": "matthews_correlation", "pearson": "pearsonr", "spearman": "spearmanr"}

_SCHEDULES = {
    "compress": "MiniDisc (`minidisc compress`): teacher → teacher assistant(s) chosen by the λ-tradeoff "
    "in one sandwich run → student",
    "distill": "direct knowledge distillation (`minidisc distill`): teacher → student",
    "takd": "TAKD (`minidisc takd`): teacher → fixed chain of teacher assistants → student",
    "maxidisc": "MaxiDisc (`minidisc maxidisc`): every assistant path tried, the best student kept",
}

_invocation: list[str] | None = None


def record_invocation(argv: Sequence[str]) -> None:
    """Remember the command line (``sys.argv``) of this process for the cards it writes;
    the CLI calls this once at start."""
    global _invocation
    _invocation = list(argv)


def invocation() -> str | None:
    """The recorded command line as a shell string (``minidisc compress --task mrpc``),
    or None outside the CLI (the Python API)."""
    if _invocation is None:
        return None
    return shlex.join(["minidisc", *_invocation[1:]])


@dataclass(frozen=True)
class ModelRecord:
    """One model of a student's lineage: the teacher or an assistant.

    Attributes:
        role: ``"teacher"``, ``"assistant (iteration 1)"``, ``"assistant (hop-s0.5)"``.
        sparsity: fraction of heads/neurons removed w.r.t. the teacher (0 for it).
        dev: dev metrics (fractions; at least ``main``).
    """

    role: str
    sparsity: float | None
    dev: Mapping[str, float]


@dataclass(frozen=True)
class CardFacts:
    """What a student's weights do not say: the run that made it.

    Attributes:
        command: the schedule (``compress``, ``distill``, ``takd``, ``maxidisc``).
        task: the task name (``sst2``).
        teacher: the teacher as configured (``None``: the packaged all-MiniLM-L6-v2).
        teacher_label: the teacher as its stage recorded it.
        lineage: the teacher first, then the assistants the student was distilled through.
        data: the data sizes and source (``TaskData.sizes``).
        note: the run's note (e.g. the demo's subsampling).
    """

    command: str
    task: str
    teacher: str | None
    teacher_label: str
    lineage: tuple[ModelRecord, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], final_hop: str | None = None) -> CardFacts:
        """The facts of a run from its manifest (``teacher`` stage finished).

        Args:
            manifest: the run's ``manifest.json`` content.
            final_hop: baseline schedules: the hop stage the student comes from (its
                chain of hops gives the assistants); compress runs: None.
        """
        cfg, stages = manifest["config"], manifest["stages"]
        teacher = stages["teacher"]
        lineage = [ModelRecord("teacher", 0.0, teacher["dev"])]
        if final_hop is None:
            lineage += _compress_assistants(cfg, stages)
        else:
            lineage += _hop_assistants(stages, final_hop)
        return cls(
            command=manifest["command"], task=cfg["data"]["task"], teacher=cfg.get("teacher"),
            teacher_label=teacher.get("source") or str(cfg.get("teacher")), lineage=tuple(lineage),
            data=teacher.get("data") or {}, note=cfg.get("note"),
        )


def _compress_assistants(cfg: Mapping[str, Any], stages: Mapping[str, Any]) -> list[ModelRecord]:
    return [
        ModelRecord(f"assistant (iteration {it.iteration})", it.selected, {"main": it.selected_metric})
        for it in iterations(stages)
        if not it.final and not same_level(it.selected, cfg["target_sparsity"])
    ]


def _hop_assistants(stages: Mapping[str, Any], final_hop: str) -> list[ModelRecord]:
    """The hops before ``final_hop`` on its chain (each hop names its teacher stage)."""
    chain: list[ModelRecord] = []
    parent = HopRecord.from_dict(stages[final_hop]).teacher
    while parent in stages and parent.startswith("hop-"):
        hop = HopRecord.from_dict(stages[parent])
        chain.append(ModelRecord(f"assistant ({parent})", hop.level.sparsity, {"main": hop.dev_main}))
        parent = hop.teacher
    return chain[::-1]


# --- rendering -------------------------------------------------------------------------------


def model_card(model: Any, facts: CardFacts | None = None, student_dev: Mapping[str, float] | None = None) -> str:
    """The card of a saved student (front matter + Markdown).

    Args:
        model: the student (``PreTrainedModel`` whose config holds ``minidisc_subnet``).
        facts: the run that made it; None: a card from the weights alone.
        student_dev: its dev metrics (fractions), evaluated on the saved files.
    """
    size = _size(model)
    meta = _front_matter(model, size, facts, student_dev)
    body = _body(model, size, facts, student_dev)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{front}---\n\n{body}"


def write_model_card(
    folder: str | Path, model: Any, facts: CardFacts | None = None, student_dev: Mapping[str, float] | None = None
) -> Path:
    """Write (atomically) ``folder/README.md``; returns its path."""
    path = Path(folder) / CARD
    write_text(path, model_card(model, facts, student_dev))
    return path


def _size(model: Any) -> dict[str, Any]:
    config = model.config
    recorded = getattr(config, "minidisc_subnet", None) or {}
    return {
        "sparsity": recorded.get("sparsity"),
        "heads": recorded.get("heads"),
        "neurons": recorded.get("neurons"),
        "total_params": sum(p.numel() for p in model.parameters()),
        "non_embedding_params": non_embedding_params(config),
        "flops_per_128_tokens": paper_flops(config, seq_len=SEQ_LEN),
    }


def _teacher_id(facts: CardFacts) -> tuple[str, str | None]:
    """(base_model, licence): the hub id of a packaged teacher, else the teacher as
    configured (a hub id, or a local path); the licence where minidisc knows it."""
    key = (facts.teacher or "").strip().lower()
    if key in PACKAGED_ALIASES:
        return _KNOWN_TEACHERS["packaged"]
    if key in SMOLLM2_ALIASES:
        return _KNOWN_TEACHERS["smollm2"]
    return str(facts.teacher), None


def _teacher_line(facts: CardFacts) -> str:
    base_model, _ = _teacher_id(facts)
    if base_model != facts.teacher and facts.teacher_label:  # packaged: name the hub original too
        return f"{facts.teacher_label}, hub id `{base_model}`"
    if facts.teacher is not None and Path(facts.teacher).expanduser().exists():
        return f"`{facts.teacher}` (a local folder)"
    return facts.teacher_label or base_model


def _params(n: float) -> str:
    """``10.65 M`` (as the README's tables); small counts (tiny models) in full."""
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{int(n):,}"


def _flops(n: float) -> str:
    """``0.135 G`` (as the README's tables); small counts (tiny models) in full."""
    return f"{n / 1e9:.3f} G" if n >= 1e8 else f"{int(n):,}"


_AUTO_CLASS = {
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "text-generation": "AutoModelForCausalLM",
}


def _pipeline_tag(model: Any) -> str:
    return _pipeline_tag_of(model.config, type(model).__name__)


def _pipeline_tag_of(config: Any, fallback: str = "") -> str:
    """The hub's pipeline tag of a model by its architecture's name."""
    name = (getattr(config, "architectures", None) or [fallback])[0]
    if name.endswith("ForTokenClassification"):
        return "token-classification"
    if name.endswith("ForCausalLM"):
        return "text-generation"
    return "text-classification"


def _front_matter(
    model: Any, size: dict[str, Any], facts: CardFacts | None, dev: Mapping[str, float] | None
) -> dict[str, Any]:
    tags = ["minidisc", "knowledge-distillation", "pruning", str(model.config.model_type)]
    meta: dict[str, Any] = {"library_name": "transformers"}
    if facts is None:
        return {**meta, "tags": tags, "pipeline_tag": _pipeline_tag(model)}

    task = _task_of(facts)
    base_model, licence = _teacher_id(facts)
    if licence:
        meta["license"] = licence
    meta |= {"base_model": base_model, "tags": [*tags, task.name], "pipeline_tag": _pipeline_tag(model)}
    if task.hub_name:  # the user's own files have no hub data set
        meta["datasets"] = [task.hub_name]
    if dev:
        official = [k for k in task.metric_names if k in dev]
        meta["metrics"] = [_HF_METRIC.get(k, k) for k in official]
        meta["model-index"] = [{
            "name": f"minidisc-{task.name}-student-s{size['sparsity']:g}" if size["sparsity"] is not None
            else f"minidisc-{task.name}-student",
            "results": [{
                "task": {"type": meta["pipeline_tag"]},
                "dataset": {"name": f"{_task_title(task)} (dev)", "type": task.hub_name or "custom",
                            **({"config": task.hub_config} if task.hub_config else {}), "split": _hub_split(task)},
                "metrics": [{"type": _HF_METRIC.get(k, k), "value": round(float(dev[k]), 6), "name": f"dev {k}"}
                            for k in official],
            }],
        }]
    return meta


def _task_of(facts: CardFacts) -> Any:
    """The run's task spec: a named task's, or the one its files made (recorded in ``data``)."""
    if facts.data.get("custom"):
        from minidisc.tasks.custom import spec_from_record

        return spec_from_record(facts.data["custom"])
    return get_task(facts.task)


def _task_title(task: Any) -> str:
    if task.name == "custom":
        return "your labelled files"
    return "CoNLL-2003" if task.name == "conll2003" else f"GLUE {task.glue_folder}"


def _hub_split(task: Any) -> str:
    if task.glue_folder == "MNLI":
        return "validation_mismatched" if task.name == "mnli-mm" else "validation_matched"
    return "validation"


def _body(model: Any, size: dict[str, Any], facts: CardFacts | None, dev: Mapping[str, float] | None) -> str:
    config = model.config
    arch = (getattr(config, "architectures", None) or [type(model).__name__])[0]
    sparsity = size["sparsity"]
    if facts is None:
        title = "minidisc sub-network"
    else:
        title = f"minidisc student: {facts.task}" + (f", {100 * sparsity:g} % sparse" if sparsity is not None else "")
    lines = [f"# {title}", ""]
    if facts is not None:
        lines += [f"Distilled from its teacher by {_SCHEDULES.get(facts.command, facts.command)}.", ""]
    rows = [("architecture", f"{arch}, {config.num_hidden_layers} layers, hidden size {config.hidden_size}")]
    if facts is not None:
        rows = [("teacher", _teacher_line(facts)), ("task", _task_line(_task_of(facts))), *rows]
    if sparsity is not None:
        rows.append(("sparsity", f"{100 * sparsity:g} % of the teacher's attention heads and FFN neurons removed"))
    if size["heads"] is not None:
        rows.append(("kept per layer", f"heads {list(size['heads'])}, FFN neurons {list(size['neurons'])}"))
    rows += [
        ("parameters", f"{_params(size['total_params'])} total, {_params(size['non_embedding_params'])} non-embedding"),
        ("FLOPs per 128 tokens", (f"{_flops(size['flops_per_128_tokens'])} (non-embedding parameters × 128 tokens, "
                                 "the MiniDisc paper's convention)")),
    ]
    lines += ["## Model", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    if facts is not None:
        lines += _metrics_section(facts, sparsity, dev)
        lines += _provenance_section(facts)
    else:
        lines += ["## How it was made", "",
                  (f"Saved by `minidisc.save_student`{_command_phrase()} without a run record: the teacher, task and "
                   "metrics are not stated here (an exported student's card states them)."), ""]
    lines += _loading_section(config)
    return "\n".join(lines)


def _task_line(task: Any) -> str:
    labels = f", labels {', '.join(task.label_names)}" if task.label_names and len(task.label_names) <= 4 else ""
    return f"{task.name} ({_task_title(task)}{labels})"


def _metrics_section(facts: CardFacts, sparsity: float | None, dev: Mapping[str, float] | None) -> list[str]:
    keys = [*_task_of(facts).metric_names, "main"]
    rows = [(r.role, r.sparsity, r.dev) for r in facts.lineage] + [("**student (this model)**", sparsity, dev or {})]
    pct = lambda v: "–" if v is None else f"{100 * v:.2f}"
    lines = ["## Dev metrics (%)", "", "| model | sparsity % | " + " | ".join(keys) + " |",
             "|---" * (len(keys) + 2) + "|"]
    for role, s, metrics in rows:
        lines.append(f"| {role} | {pct(s)} | " + " | ".join(pct(metrics.get(k)) for k in keys) + " |")
    lines += ["", ("`main` is the mean of the task's official metrics (what the λ-tradeoff and model selection use); "
              "assistants are scored by it alone."), ""]
    return lines


def _command_phrase() -> str:
    command = invocation()
    return f" (during `{command}`)" if command else ""


def _provenance_section(facts: CardFacts) -> list[str]:
    command = invocation()
    data = facts.data
    lines = ["## How it was made", ""]
    lines.append(f"- command: `{command}`" if command else "- command: the Python API (no command line)")
    lines.append(f"- every option: `config.yaml` of the run folder that holds this student; "
                 f"`minidisc {facts.command} --config config.yaml --output <run folder>` reruns it (resuming "
                 "finished stages)")
    if facts.note:
        lines.append(f"- note: {facts.note}")
    lines += ["", "## Data and licence", ""]
    if data:
        lines.append(f"- data: {data.get('train_examples')} training / {data.get('dev_examples')} dev examples from "
                     f"{data.get('data_source')}" + (" (subsampled: not comparable to full-data results)"
                                                     if data.get("subsampled") else ""))
    if data.get("custom"):
        from minidisc.tasks.custom import describe_record

        lines.append(f"- your data: {describe_record(data['custom'])}")
    lines.append(f"- data terms: {_DATA_TERMS.get(facts.task, 'see the dataset’s own terms.')}")
    _, licence = _teacher_id(facts)
    lines.append(
        "- weights: derived from the teacher's, so the teacher's licence applies"
        + (f" ({licence})." if licence else " (see its model card).")
    )
    return lines + [""]


def _loading_section(config: Any) -> list[str]:
    # lazy: pulls in torch (~1.2 s CPU); keeps `minidisc --help` fast
    from minidisc.elastic.io import loads_with_plain_transformers

    lines = ["## How to load", "", "```python", "import minidisc", "",
             'model = minidisc.load_student("path/to/this/folder")  # any per-layer sizes', "```", ""]
    if loads_with_plain_transformers(config):
        auto = _AUTO_CLASS.get(_pipeline_tag_of(config), "AutoModel")
        lines += ["Every layer keeps the same sizes, so plain `transformers` loads it too:", "", "```python",
                  f"from transformers import {auto}, AutoTokenizer", "",
                  f'model = {auto}.from_pretrained("path/to/this/folder")',
                  'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")', "```", ""]
    else:
        lines += [("Its layers have their own sizes (recorded in `config.json` under `minidisc_subnet`): plain "
                  "`AutoModel….from_pretrained` refuses it with a size-mismatch error; use `minidisc.load_student`."),
                  ""]
    return lines
