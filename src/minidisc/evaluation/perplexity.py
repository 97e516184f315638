"""Perplexity and bits per byte of a causal LM on plain text (``minidisc evaluate-lm``).

Protocol
--------
1. **Text.** Every corpus file is one document, read clean
   (:func:`minidisc.tasks.plaintext.read_document`: UTF-8, ``\\n`` line ends, a Project
   Gutenberg header/footer removed). A folder stands for its ``*.txt`` files in name
   order.
2. **Tokens.** Each document is tokenized on its own, without special tokens, into
   ``x_1 … x_N``. A *context token* ``x_0`` is put before it -- the tokenizer's BOS
   token, or its EOS token when it has no BOS -- so that the first token is scored too
   (conditioned on ``x_0`` alone), and every token of the text is scored exactly once.
   Documents never share a window: each starts from ``x_0`` again. ``--max-tokens M``
   scores the first ``M`` tokens of the corpus (documents in order, the last one cut).
3. **Windows** (the sliding-window protocol of the ``transformers`` perplexity guide,
   with the window's last target included). A window of at most ``block_size`` input
   tokens ``x_b … x_{e−1}`` gives the model's predictions of ``x_{b+1} … x_e``.
   Windows start at ``b = 0, stride, 2·stride, …``; window ``k`` ends at
   ``e_k = min(b_k + block_size, N)``, and scores only the targets not scored before,
   ``x_{e_{k−1}+1} … x_{e_k}`` (the first window: all of ``x_1 … x_{e_0}``). So with
   ``stride = block_size`` the windows are disjoint and the first target of a window
   sees one token of context (``x_b``), the last one ``block_size``; with
   ``stride < block_size`` each window after the first scores its last ``stride`` (or
   fewer, at the end) targets, every one with at least ``block_size − stride + 1``
   tokens of context. Smaller strides give lower (better-informed) perplexities at
   ``block_size / stride`` times the compute.
4. **Scores.** ``NLL = −Σ log p(x_t | context)`` in nats over the scored tokens
   (log-softmax in float32, sums in float64); windows are batched only with windows of
   the same length, so no padding enters any forward pass.

   * ``mean NLL = NLL / tokens`` (nats per token), ``perplexity = exp(mean NLL)``;
   * ``bits per byte = NLL / ln 2 / bytes``, with ``bytes`` the UTF-8 length of the
     scored text: the documents after cleaning (for a document cut by ``--max-tokens``,
     its scored tokens decoded). Perplexities of models with different tokenizers are
     not comparable (a token is a different unit); bits per byte are.

The model runs in float32 (half-precision checkpoints are upcast) in eval mode, on the
GPU when one is visible.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from minidisc.elastic.io import load_student
from minidisc.errors import ConfigError, DataError, ModelError
from minidisc.models import (
    from_pretrained,
    is_head_key,
    load_config,
    load_tokenizer,
    resolve_model,
)
from minidisc.runtime import Runtime, current
from minidisc.tasks.lm_types import lm_type_of
from minidisc.tasks.plaintext import read_documents

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from minidisc.tasks.plaintext import Document

#: ``--block-size`` when none is given (capped at the model's positions).
DEFAULT_BLOCK_SIZE = 512
DEFAULT_BATCH_SIZE = 4


# ---------------------------------------------------------------------------
# windows


@dataclass(frozen=True)
class Window:
    """One forward pass of the protocol over a document's stream ``x_0 … x_N``.

    Attributes:
        begin, end: the inputs are ``x_begin … x_{end−1}``, predicting ``x_{begin+1} … x_end``.
        score_from: the index, within the window, of the first prediction that is scored
            (0 for a document's first window); the ones before it are context only.
    """

    begin: int
    end: int
    score_from: int

    @property
    def length(self) -> int:
        """Input tokens of the window."""
        return self.end - self.begin

    @property
    def scored(self) -> int:
        """Targets the window scores."""
        return self.length - self.score_from


def plan_windows(n_targets: int, block_size: int, stride: int) -> list[Window]:
    """The windows that score ``x_1 … x_N`` once each (module doc, step 3).

    Args:
        n_targets: ``N``, the document's tokens (0 gives no window).
        block_size: most input tokens per window, ≥ 1.
        stride: start-to-start distance of windows, ``1 ≤ stride ≤ block_size``.

    Raises:
        ConfigError: sizes out of range.
    """
    check_window_sizes(block_size, stride)
    windows: list[Window] = []
    begin, scored_to = 0, 0  # targets x_1 … x_{scored_to} are scored
    while scored_to < n_targets:
        end = min(begin + block_size, n_targets)
        windows.append(Window(begin, end, scored_to - begin))
        scored_to = end
        begin += stride
    return windows


def check_window_sizes(block_size: int, stride: int) -> None:
    """Raise ``ConfigError`` unless ``block_size ≥ 1`` and ``1 ≤ stride ≤ block_size``."""
    if block_size < 1:
        raise ConfigError(f"--block-size must be at least 1, got {block_size}")
    if not 1 <= stride <= block_size:
        raise ConfigError(
            f"--stride must be between 1 and the block size {block_size}, got {stride} (a larger "
            "stride would skip tokens)"
        )


# ---------------------------------------------------------------------------
# loading


def model_positions(config: Any) -> int | None:
    """The most positions the model was built for (``max_position_embeddings`` or GPT-2's
    ``n_positions``), or ``None`` when the config does not say."""
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_block_size(block_size: int, config: Any, label: str) -> None:
    """Raise ``ConfigError`` when ``block_size`` exceeds the model's positions
    (:func:`model_positions`; no check when the config does not say)."""
    positions = model_positions(config)
    if positions is not None and block_size > positions:
        raise ConfigError(
            f"--block-size {block_size} is larger than the {positions} positions {label} was built "
            f"for; use --block-size {positions} or less"
        )


def check_causal_config(config: Any, label: str) -> None:
    """Refuse a config that is not a causal (decoder) LM.

    Raises:
        ModelError: an encoder (BERT-like, masked LM), an encoder-decoder, or a model type
            ``transformers`` has no causal-LM class for.
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = getattr(config, "model_type", None)
    hint = "evaluate-lm scores next-token predictions: pass a decoder such as SmolLM2 or a compressed decoder student"
    try:
        causal = lm_type_of(config).causal
    except ModelError:  # a family minidisc does not compress: judge by transformers' tables
        causal = model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not getattr(config, "is_encoder_decoder", False)
    if not causal:
        raise ModelError(f"{label} is not a causal language model (model type {model_type!r}); {hint}")


@dataclass
class LoadedLM:
    """A causal LM ready to score text.

    Attributes:
        model: ``…ForCausalLM`` in eval mode.
        tokenizer: its tokenizer.
        label: how reports name it.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    label: str


def load_causal_lm(name: str, block_size: int | None = None) -> LoadedLM:
    """Load ``name`` -- a model folder (a minidisc student too), a ``.gguf`` file, a hub id
    or ``smollm2`` (the packaged SmolLM2-135M-Instruct GGUF) -- with its LM head.

    Args:
        name: the model.
        block_size: when given, checked against the model's positions from its config,
            before the weights load (:func:`check_block_size`).

    Raises:
        ModelError: the model cannot be found or loaded, is not a causal LM, or its
            checkpoint has no LM head (only tied embeddings may stand in for one).
        ConfigError: ``block_size`` exceeds the model's positions.
    """
    from transformers import AutoModelForCausalLM

    source = resolve_model(name)
    label = source.label or source.path
    config = load_config(source)
    check_causal_config(config, label)
    if block_size is not None:
        check_block_size(block_size, config, label)
    if isinstance(getattr(config, "minidisc_subnet", None), dict):  # per-layer sizes

        model = load_student(source.path)
        if not type(model).__name__.endswith("ForCausalLM"):
            raise ModelError(
                f"{label} was saved as {type(model).__name__}, without its LM head; evaluate-lm needs "
                "a causal-LM student (…ForCausalLM)"
            )
    else:
        try:
            model, info = from_pretrained(AutoModelForCausalLM, source, output_loading_info=True)
        except (OSError, ValueError, KeyError) as err:
            raise ModelError(f"cannot load {label} as a causal LM: {err}") from err
        fresh = sorted(k for k in info.get("missing_keys", ()) if is_head_key(model, k))
        if fresh:
            raise ModelError(
                f"{label} has no LM head in its checkpoint ({', '.join(fresh[:3])}): it would be "
                "scored with random weights. Pass a model saved with its head (…ForCausalLM)"
            )
    tokenizer = load_tokenizer(source)
    return LoadedLM(model.eval(), tokenizer, label)


def context_token(tokenizer: PreTrainedTokenizerBase) -> tuple[int, str]:
    """``(id, text)`` of the token put before each document: BOS, else EOS.

    Raises:
        ModelError: the tokenizer has neither.
    """
    for token, token_id in ((tokenizer.bos_token, tokenizer.bos_token_id), (tokenizer.eos_token, tokenizer.eos_token_id)):
        if token_id is not None:
            return int(token_id), str(token)
    raise ModelError(
        f"{type(tokenizer).__name__} has neither a BOS nor an EOS token, so a document's first "
        "token has nothing to be predicted from; use the model's own tokenizer"
    )


# ---------------------------------------------------------------------------
# scoring


@dataclass
class PerplexityResult:
    """What :func:`evaluate_perplexity` measured (the module doc defines each number).

    Attributes:
        tokens: targets scored; ``bytes``: UTF-8 bytes of the scored text.
        nll: total negative log-likelihood in nats; ``mean_nll`` = ``nll / tokens``.
        perplexity: ``exp(mean_nll)``; ``bits_per_byte``: ``nll / ln 2 / bytes``.
        documents: documents scored (some of them cut when ``truncated``).
        corpus_tokens: tokens of the documents read (all of them, ``--max-tokens`` or not).
        windows: forward passes.
        seconds: wall-clock time of :func:`evaluate_perplexity` (reading, tokenizing,
            scoring; not the model's loading).
    """

    model: str
    corpus: list[str]
    block_size: int
    stride: int
    context_token: str
    tokens: int
    bytes: int
    nll: float
    mean_nll: float
    perplexity: float
    bits_per_byte: float
    documents: int
    corpus_tokens: int
    windows: int
    truncated: bool
    seconds: float
    device: str
    precision: str = "fp32"
    protocol: str = field(
        default=(
            "each document is prefixed with the context token and scored token by token; windows "
            "of block_size input tokens start every stride tokens and score only targets not "
            "scored before (the last stride of a window, with at least block_size - stride + 1 "
            "tokens of context after the first window); bits_per_byte = nll / ln 2 / UTF-8 bytes "
            "of the scored text"
        )
    )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def evaluate_perplexity(
    lm: LoadedLM,
    corpus: Sequence[str | os.PathLike[str]],
    *,
    block_size: int | None = None,
    stride: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_tokens: int | None = None,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PerplexityResult:
    """Score ``corpus`` with ``lm`` by the protocol of the module doc.

    Args:
        lm: from :func:`load_causal_lm`.
        corpus: text files and folders of ``.txt`` files.
        block_size: input tokens per window (default :data:`DEFAULT_BLOCK_SIZE`, or the
            model's positions when fewer); at most the model's positions.
        stride: start-to-start distance of windows (default ``block_size``).
        batch_size: windows per forward pass.
        max_tokens: score only the corpus's first ``max_tokens`` tokens.
        device: ``"cpu"``, ``"cuda"`` … (default: the run's device, :mod:`minidisc.runtime`).
            The forward passes run under the run's autocast (bf16/fp16 when asked);
            log-probabilities are always taken in float32.
        progress: called with ``(windows done, windows in all)`` after each batch.

    Raises:
        ConfigError: sizes out of range, or a block larger than the model's positions.
        DataError: missing files, invalid UTF-8, or no text to score.
    """
    import torch

    started = time.perf_counter()
    positions = model_positions(lm.model.config)
    if block_size is None:
        block_size = min(DEFAULT_BLOCK_SIZE, positions or DEFAULT_BLOCK_SIZE)
    stride = block_size if stride is None else stride
    check_window_sizes(block_size, stride)
    check_block_size(block_size, lm.model.config, lm.label)
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ConfigError(f"--max-tokens must be at least 1, got {max_tokens}")
    documents = read_documents(corpus)
    prefix_id, prefix_text = context_token(lm.tokenizer)
    streams, n_bytes, corpus_tokens, truncated = _token_streams(documents, lm.tokenizer, prefix_id, max_tokens)
    if not streams:
        raise DataError(f"corpus {[os.fspath(p) for p in corpus]} holds no text the tokenizer turns into tokens")
    runtime = current()
    if device is not None and torch.device(device) != runtime.device:  # elsewhere on request: float32 there
        runtime = Runtime(torch.device(device), "fp32")
    model = runtime.place(lm.model.to(torch.float32)).eval()
    jobs = [(doc, window) for doc, ids in enumerate(streams) for window in plan_windows(len(ids) - 1, block_size, stride)]
    with runtime.autocast():
        nll, tokens = _score(model, streams, jobs, batch_size, runtime.device, progress)
    mean = nll / tokens
    return PerplexityResult(
        model=lm.label,
        corpus=[os.fspath(p) for p in corpus],
        block_size=block_size,
        stride=stride,
        context_token=prefix_text,
        tokens=tokens,
        bytes=n_bytes,
        nll=nll,
        mean_nll=mean,
        perplexity=math.exp(mean),
        bits_per_byte=nll / math.log(2) / n_bytes,
        documents=len(streams),
        corpus_tokens=corpus_tokens,
        windows=len(jobs),
        truncated=truncated,
        seconds=time.perf_counter() - started,
        device=str(runtime.device),
        precision=runtime.precision,
    )


def _token_streams(
    documents: Sequence[Document],
    tokenizer: PreTrainedTokenizerBase,
    prefix_id: int,
    max_tokens: int | None,
) -> tuple[list[list[int]], int, int, bool]:
    """``x_0 … x_N`` of each document scored (module doc, step 2), the UTF-8 bytes of the
    scored text, the corpus's tokens in all, and whether ``max_tokens`` cut it."""
    streams: list[list[int]] = []
    n_bytes = corpus_tokens = scored = 0
    truncated = False
    for doc in documents:
        ids = list(tokenizer(doc.text, add_special_tokens=False, verbose=False)["input_ids"])
        corpus_tokens += len(ids)
        if not ids or truncated:
            truncated = truncated or bool(ids)
            continue
        if max_tokens is not None and scored + len(ids) > max_tokens:
            ids = ids[: max_tokens - scored]
            truncated = True
            text = tokenizer.decode(ids, clean_up_tokenization_spaces=False)
        else:
            text = doc.text
        n_bytes += len(text.encode("utf-8"))
        scored += len(ids)
        streams.append([prefix_id, *ids])
    return streams, n_bytes, corpus_tokens, truncated


def _batches(
    jobs: list[tuple[int, Window]], batch_size: int
) -> Iterator[list[tuple[int, Window]]]:
    """Windows grouped by length (no padding), then by where scoring starts, in batches."""
    ordered = sorted(jobs, key=lambda job: (job[1].length, job[1].score_from, job[0], job[1].begin))
    batch: list[tuple[int, Window]] = []
    for job in ordered:
        if batch and (len(batch) == batch_size or job[1].length != batch[0][1].length):
            yield batch
            batch = []
        batch.append(job)
    if batch:
        yield batch


def _score(
    model: PreTrainedModel,
    streams: list[list[int]],
    jobs: list[tuple[int, Window]],
    batch_size: int,
    device: torch.device,
    progress: Callable[[int, int], None] | None,
) -> tuple[float, int]:
    """Total NLL (nats, float64) and the number of scored targets over ``jobs``."""
    import inspect

    import torch

    keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
    total, count, done = 0.0, 0, 0
    with torch.inference_mode():
        for batch in _batches(jobs, batch_size):
            rows = [streams[doc][w.begin : w.end + 1] for doc, w in batch]  # inputs + last target
            ids = torch.tensor(rows, dtype=torch.long, device=device)
            inputs, targets = ids[:, :-1], ids[:, 1:]
            first = min(w.score_from for _, w in batch)  # no logits needed before it
            kwargs = {"logits_to_keep": inputs.shape[1] - first} if keeps_logits else {}
            logits = model(input_ids=inputs, **kwargs).logits
            logits = logits[:, -(inputs.shape[1] - first) :] if keeps_logits else logits[:, first:]
            for row, (_, window) in enumerate(batch):
                skip = window.score_from - first
                log_probs = torch.log_softmax(logits[row, skip:].float(), dim=-1)
                picked = log_probs.gather(-1, targets[row, window.score_from :, None]).squeeze(-1)
                total -= float(picked.double().sum())
                count += window.scored
            done += len(batch)
            if progress is not None:
                progress(done, len(jobs))
    return total, count


# ---------------------------------------------------------------------------
# presentation


def format_table(result: PerplexityResult) -> str:
    """A readable two-column table of ``result``."""
    corpus = ", ".join(result.corpus)
    scored = f"{result.tokens:,}"
    if result.truncated:
        scored += f" of {result.corpus_tokens:,} (--max-tokens)"
    rows = [
        ("model", result.model),
        ("corpus", f"{corpus} ({result.documents} document{'s' if result.documents != 1 else ''} scored)"),
        ("protocol", (
            f"block {result.block_size}, stride {result.stride}, {result.windows:,} windows; "
            f"each document after {result.context_token!r}"
        )),
        ("tokens scored", scored),
        ("bytes scored", f"{result.bytes:,} (UTF-8)"),
        ("mean NLL", f"{result.mean_nll:.4f} nats/token"),
        ("perplexity", f"{result.perplexity:.3f}"),
        ("bits per byte", f"{result.bits_per_byte:.4f}"),
        ("wall time", f"{result.seconds:.1f} s on {result.device} ({result.precision})"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
