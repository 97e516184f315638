"""The teacher-logit cache of causal LMs: a decoder teacher's next-token distributions,
computed once per training block and read by every stage and run that distils from the
same teacher on the same blocks.

What is stored
    Per block of ``L`` tokens and per position: the teacher's ``k`` largest
    log-probabilities (``logp``, float16 by default) and their vocabulary ids (``index``,
    uint16 when the vocabulary fits, else int32), the log of the remaining probability
    mass (``tail``, float32: one tail bucket) and the block's tokens (``tokens``, int32,
    checked against every batch it serves); with ``tail_samples = m > 0`` also ``m`` words
    drawn from the teacher's tail per position (``sample_index``, same id dtype) and their
    log-probabilities (``sample_logp``, the value dtype), which make the forward KL unbiased
    (:mod:`minidisc.objectives.topk`); each block's draws are seeded by its key, so they do
    not depend on the batch or run that computed them. All at the temperature the cache was built at
    (see :mod:`minidisc.objectives.topk` for the loss on top-k + tail and why the
    temperature is part of the key). Disk per token: ``k·(2 + 2) + 8`` bytes with float16
    values and uint16 ids (264 B at ``k = 64``), plus ``m·(2 + 2)`` with a sampled tail,
    against ``4·V`` for float32 logits.

Keys
    A cache folder ``<dir>/lm-topk-<key>`` is named by a hash of the teacher's weights
    (:func:`~minidisc.training.teacher_cache.teacher_fingerprint`), the tokenizer (class,
    vocabulary, special tokens), the block size, ``k``, the value dtype, the temperature
    and the vocabulary size (and ``tail_samples`` when it is not 0), all written in clear in its ``meta.json``. Inside, every
    block is keyed by a hash of its exact tokens: a stream that reads the same blocks in
    another order, with another seed or another budget finds them; a block not seen
    before is computed and added. Partial rows (the cut last row of a token budget) are
    computed by the teacher and not stored.

Which teachers it serves
    The teacher the cache was built from, and any model computing the same function: a
    **probe** (a fixed random token sequence, the teacher's top-k on it stored in
    ``probe.safetensors``) is run through each stage's teacher; the reordered
    (``sparsified``) copy of the teacher passes, an assistant does not and runs online with
    the full-vocabulary loss (its statistics say ``served: false``).

Refusals (never silently used)
    A ``meta.json`` that does not match its folder's key, a probe the teacher no longer
    reproduces (e.g. other numerics after an upgrade), a shard missing or corrupted, or
    stored tokens that differ from the batch's: each is one :class:`ModelError` naming the
    folder and what to do (delete it, rerun with ``--overwrite``, or
    ``--no-teacher-cache``). Shards are written atomically and the index after them, so an
    interrupted run leaves only complete shards.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from minidisc.errors import ConfigError, ModelError
from minidisc.fileio import atomic_path, read_json, write_json
from minidisc.objectives import Signals
from minidisc.objectives.topk import TopKTeacher, teacher_topk
from minidisc.training.teacher_cache import CacheStats, teacher_fingerprint

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from minidisc.objectives import Objective

#: Version of the files' layout; part of the key.
FORMAT = 1
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
INDEX, META, PROBE = "index.json", "meta.json", "probe.safetensors"
PROBE_TOKENS = 32
#: Max |Δ log p| on the probe between the cache's teacher and a stage's teacher that still
#: counts as the same function (a reordering changes the logits by ~1e-5; an assistant by
#: tenths of a nat; GPU TF32 matmuls by ~1e-3).
PROBE_TOLERANCE = 2e-2
SHARD_BYTES = 64 * 2**20
FIX = "delete {folder} (it only saves time and is rebuilt), rerun with --overwrite, or pass --no-teacher-cache"


@dataclass
class LMCacheStats(CacheStats):
    """What a cache view served (:class:`~minidisc.training.teacher_cache.CacheStats`'s
    counts, in sequences), and ``served``: whether the stage's teacher is the cache's
    (else every row ran online and counts as ``bypassed``, with partial rows)."""

    served: bool = True


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hex digest of a tokenizer's class, vocabulary and special tokens."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(type(tokenizer).__name__.encode())
    digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def block_key(tokens: Tensor) -> str:
    """A hex digest of one block's token ids ``(L,)``."""
    return hashlib.blake2b(tokens.to(torch.int64).cpu().numpy().tobytes(), digest_size=16).hexdigest()


class LMTeacherCacheStore:
    """The teacher-logit cache of one teacher (module doc).

    Args:
        directory: the cache root; the cache is ``directory/lm-topk-<key>``.
        teacher: the teacher causal LM (eval mode; its device is used for the probe).
        tokenizer: its tokenizer (part of the key).
        block_size: tokens per block.
        top_k: ``k``, the words kept per position.
        dtype: storage dtype of the log-probabilities (``float16``, ``bfloat16``, ``float32``).
        temperature: ``τ`` of the stored distributions (the loss must use the same).
        tail_samples: ``m``, tail words drawn per position (0: one tail bucket).
        overwrite: replace a cache folder that is refused instead of stopping.

    Raises:
        ConfigError: ``top_k`` outside ``[1, V]``, ``tail_samples < 0`` or an unknown dtype.
        ModelError: a refused cache folder (module doc), unless ``overwrite``.
    """

    def __init__(
        self, directory: str | Path, teacher: nn.Module, tokenizer: PreTrainedTokenizerBase, *, block_size: int,
        top_k: int = 64, dtype: str = "float16", temperature: float = 1.0, tail_samples: int = 0,
        overwrite: bool = False,
    ) -> None:
        vocab = int(teacher.get_output_embeddings().weight.shape[0])
        if not 1 <= top_k <= vocab:
            raise ConfigError(f"--cache-top-k must be between 1 and the vocabulary size {vocab}, got {top_k}")
        if dtype not in DTYPES:
            raise ConfigError(f"unknown cache dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        if tail_samples < 0:
            raise ConfigError(f"--cache-tail-samples must be 0 (one tail bucket) or more, got {tail_samples}")
        self.tail_samples = int(tail_samples) if top_k < vocab else 0
        self.top_k, self.dtype, self.temperature, self.vocab_size = int(top_k), dtype, float(temperature), vocab
        self.block_size = int(block_size)
        self.index_dtype = torch.uint16 if vocab <= 2**16 else torch.int32
        self.config = getattr(teacher, "config", None)
        self.meta = {
            "format": FORMAT, "teacher": teacher_fingerprint(teacher), "tokenizer": tokenizer_fingerprint(tokenizer),
            "block_size": self.block_size, "top_k": self.top_k, "dtype": dtype, "temperature": self.temperature,
            "vocab_size": vocab,
            # only when set: the keys of caches built before tail samples existed stay valid
            **({"tail_samples": self.tail_samples} if self.tail_samples else {}),
        }
        key = hashlib.blake2b(json.dumps(self.meta, sort_keys=True).encode(), digest_size=8).hexdigest()
        self.folder = Path(directory) / f"lm-topk-{key}"
        self._probe_ids = torch.randint(0, vocab, (1, min(PROBE_TOKENS, self.block_size)),
                                        generator=torch.Generator().manual_seed(0))
        self._open(teacher, overwrite)
        self._handles: dict[str, Any] = {}
        self._pending: list[tuple[str, dict[str, Tensor]]] = []
        self._pending_keys: set[str] = set()
        self.shard_rows = max(1, SHARD_BYTES // self.bytes_per_token // self.block_size)

    # ---- opening -------------------------------------------------------------------
    def _open(self, teacher: nn.Module, overwrite: bool) -> None:
        try:
            self._check_folder(teacher)
        except ModelError:
            if not overwrite:
                raise
            shutil.rmtree(self.folder)
            self._check_folder(teacher)

    def _check_folder(self, teacher: nn.Module) -> None:
        """Create the folder (meta, probe, empty index) or check the existing one."""
        if not (self.folder / META).is_file():
            probe = self._probe(teacher)
            self.folder.mkdir(parents=True, exist_ok=True)
            from safetensors.torch import save_file

            with atomic_path(self.folder / PROBE) as tmp:
                save_file({"logp": probe.logp.contiguous(), "index": probe.index.contiguous(),
                           "tail": probe.tail.contiguous()}, str(tmp))
            write_json(self.folder / INDEX, {"index": {}})
            write_json(self.folder / META, self.meta)  # last: a folder with meta.json is complete
            self.index: dict[str, list[Any]] = {}
            return
        found = read_json(self.folder / META)
        if found != self.meta:
            differ = sorted(k for k in set(found) | set(self.meta) if found.get(k) != self.meta.get(k))
            raise ModelError(
                f"the teacher-logit cache {self.folder} was built for another {', '.join(differ)} than this run's; "
                + FIX.format(folder=self.folder)
            )
        if not self.same_function(teacher):
            raise ModelError(
                f"the teacher-logit cache {self.folder} is stale: the teacher no longer computes the stored "
                "distributions (other numerics or code); " + FIX.format(folder=self.folder)
            )
        self.index = read_json(self.folder / INDEX)["index"]
        missing = sorted({shard for shard, _ in self.index.values() if not (self.folder / shard).is_file()})
        if missing:
            raise ModelError(f"the teacher-logit cache {self.folder} lacks its shard {missing[0]}; "
                             + FIX.format(folder=self.folder))

    def _probe(self, teacher: nn.Module) -> TopKTeacher:
        device = next(teacher.parameters()).device
        with torch.no_grad():
            logits = teacher(input_ids=self._probe_ids.to(device), use_cache=False).logits
        return teacher_topk(logits[0].float().cpu(), self.top_k, self.temperature)

    def same_function(self, teacher: nn.Module) -> bool:
        """Whether ``teacher`` reproduces the stored probe within :data:`PROBE_TOLERANCE`
        (the cache's teacher, or a reordered copy of it)."""
        from safetensors.torch import load_file

        stored = load_file(str(self.folder / PROBE))
        device = next(teacher.parameters()).device
        with torch.no_grad():
            logits = teacher(input_ids=self._probe_ids.to(device), use_cache=False).logits[0].float().cpu()
        if logits.shape[-1] != self.vocab_size:
            return False
        logp = torch.log_softmax(logits / self.temperature, dim=-1)
        close = (logp.gather(-1, stored["index"]) - stored["logp"]).abs().max() <= PROBE_TOLERANCE
        if self.top_k < self.vocab_size:
            tail = torch.logsumexp(logp.scatter(-1, stored["index"], float("-inf")), dim=-1)
            close = close and (tail - stored["tail"]).abs().max() <= PROBE_TOLERANCE
        return bool(close)

    # ---- the trainer's interface (as TeacherCacheStore's) ---------------------------
    def supports(self, objective: Objective) -> bool:
        """Whether ``objective`` can read top-k + tail: a next-token divergence at this
        cache's temperature (the forward KL only, with a sampled tail)."""
        from minidisc.objectives.causal import DivergenceObjective

        return (isinstance(objective, DivergenceObjective) and objective.task_type == "causal_lm"
                and abs(objective.temperature - self.temperature) <= 1e-12
                and (not self.tail_samples or objective.kind == "forward_kl"))

    def view(self, teacher: nn.Module) -> LMTeacherCache:
        """The cache as seen by a stage distilling from ``teacher`` (served only when it
        computes the cached function: :meth:`same_function`)."""
        return LMTeacherCache(self, teacher, served=self.same_function(teacher))

    # ---- sizes ---------------------------------------------------------------------
    @property
    def bytes_per_token(self) -> int:
        """Bytes stored per token: ``k`` values and ids, the tail, ``m`` sampled ids and
        values, and the token."""
        value = torch.empty((), dtype=DTYPES[self.dtype]).element_size()
        ids = torch.empty((), dtype=self.index_dtype).element_size()
        return (self.top_k + self.tail_samples) * (value + ids) + 4 + 4

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts for manifests and reports (sizes measured on disk)."""
        disk = sum(p.stat().st_size for p in self.folder.glob("shard-*.safetensors"))
        tokens = len(self.index) * self.block_size
        return {
            "directory": str(self.folder), "top_k": self.top_k, "tail_samples": self.tail_samples, "dtype": self.dtype,
            "index_dtype": str(self.index_dtype).removeprefix("torch."), "temperature": self.temperature,
            "vocab_size": self.vocab_size, "blocks": len(self.index), "tokens": tokens, "disk_bytes": disk,
            "bytes_per_token": disk / tokens if tokens else None,
            "full_logits_bytes_per_token": 4 * self.vocab_size,
        }

    # ---- reading and writing ---------------------------------------------------------
    def lookup(self, key: str | None) -> tuple[str, int] | None:
        entry = self.index.get(key) if key is not None else None
        return (entry[0], int(entry[1])) if entry is not None else None

    def read(self, places: list[tuple[str, int]], tokens: Tensor) -> TopKTeacher:
        """The stored rows at ``places`` (shard, row), stacked; ``tokens`` ``(B, L)`` are
        the batch's, checked against the stored ones.

        Raises:
            ModelError: a shard that cannot be read, or tokens that differ (stale index).
        """
        parts: dict[str, list[Tensor]] = {name: [] for name in self._fields}
        for shard, row in places:
            handle = self._handle(shard)
            for name, rows in parts.items():
                rows.append(handle.get_slice(name)[row:row + 1])
        out = {name: torch.cat(rows) for name, rows in parts.items()}
        if not torch.equal(out["tokens"].long(), tokens.long().cpu()):
            raise ModelError(
                f"the teacher-logit cache {self.folder} is stale: a block stored under a batch's key holds other "
                "tokens; " + FIX.format(folder=self.folder)
            )
        samples = self.tail_samples > 0
        return TopKTeacher(out["logp"], out["index"].long(), out["tail"], self.vocab_size, self.temperature,
                           out["sample_index"].long() if samples else None, out["sample_logp"] if samples else None)

    @property
    def _fields(self) -> tuple[str, ...]:
        """The tensors stored per block."""
        return ("tokens", "logp", "index", "tail") + (("sample_index", "sample_logp") if self.tail_samples else ())

    def stored_form(self, topk: TopKTeacher) -> TopKTeacher:
        """``topk`` as it reads back from disk (values rounded to the storage dtype), so a
        row's loss is the same whether the teacher just computed it or the cache served it."""
        samples = topk.sample_logp is not None
        return TopKTeacher(topk.logp.to(DTYPES[self.dtype]), topk.index, topk.tail.float(), self.vocab_size,
                           self.temperature, topk.sample_index,
                           topk.sample_logp.to(DTYPES[self.dtype]) if samples else None)  # type: ignore[union-attr]

    def put(self, key: str, tokens: Tensor, topk: TopKTeacher, row: int) -> None:
        """Queue row ``row`` of ``topk`` (in :meth:`stored_form`) under ``key``; written
        with the next full shard or :meth:`flush`."""
        if key in self.index or key in self._pending_keys:
            return
        self._pending_keys.add(key)
        entry = {"tokens": tokens.to(torch.int32).cpu(), "logp": topk.logp[row].cpu(),
                 "index": topk.index[row].to(self.index_dtype).cpu(), "tail": topk.tail[row].cpu()}
        if self.tail_samples:
            entry["sample_index"] = topk.sample_index[row].to(self.index_dtype).cpu()  # type: ignore[index]
            entry["sample_logp"] = topk.sample_logp[row].cpu()  # type: ignore[index]
        self._pending.append((key, entry))
        if len(self._pending) >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        """Write the queued rows as one shard (atomically), then the index."""
        if not self._pending:
            return
        from safetensors.torch import save_file

        name = f"shard-{uuid.uuid4().hex[:12]}.safetensors"  # unique: concurrent writers never collide
        stacked = {field: torch.stack([row[field] for _, row in self._pending]).contiguous()
                   for field in self._fields}
        with atomic_path(self.folder / name) as tmp:
            save_file(stacked, str(tmp))
        on_disk = read_json(self.folder / INDEX)["index"]  # merge what other writers added meanwhile
        self.index = {**on_disk, **self.index, **{key: [name, i] for i, (key, _) in enumerate(self._pending)}}
        write_json(self.folder / INDEX, {"index": self.index})
        self._pending, self._pending_keys = [], set()

    def _handle(self, shard: str) -> Any:
        """A memory-mapped ``safe_open`` of ``shard`` (kept open)."""
        from safetensors import SafetensorError, safe_open

        handle = self._handles.get(shard)
        if handle is None:
            try:
                handle = safe_open(str(self.folder / shard), framework="pt")
            except (SafetensorError, OSError) as err:
                raise ModelError(f"the teacher-logit cache file {self.folder / shard} is corrupted or missing "
                                 f"({err}); " + FIX.format(folder=self.folder)) from err
            self._handles[shard] = handle
        return handle


class LMTeacherCache:
    """An :class:`LMTeacherCacheStore` bound to one stage's teacher, with statistics.

    Args:
        store: the cache.
        teacher: the stage's teacher.
        served: whether the teacher computes the cached function (else it always runs).
    """

    def __init__(self, store: LMTeacherCacheStore, teacher: nn.Module, served: bool) -> None:
        self.store = store
        self.stats = LMCacheStats(served=served)
        self._config = getattr(teacher, "config", None)

    def signals(
        self, inputs: Mapping[str, Tensor], compute: Callable[[Mapping[str, Tensor]], Signals], *,
        need_hidden_states: bool = False,
    ) -> Signals:
        """The teacher's signals for a batch: ``topk`` from the cache when every row is
        stored; else the teacher's forward, reduced to top-k + tail (full rows are stored).
        A teacher that is not the cache's: its own full logits, as without a cache.

        Args:
            inputs: ``input_ids`` and ``attention_mask`` ``(B, L)``.
            compute: the online teacher, ``compute(batch) -> Signals`` (no grad).
            need_hidden_states: must be False (the cache holds no hidden states).
        """
        ids = inputs["input_ids"]
        batch = ids.shape[0]
        if not self.stats.served or need_hidden_states:
            self.stats.bypassed += batch
            return compute(inputs)
        mask = inputs.get("attention_mask")
        full = torch.ones(batch, dtype=torch.bool) if mask is None else mask.bool().all(dim=1).cpu()
        keys = [block_key(ids[r]) if full[r] and ids.shape[1] == self.store.block_size else None for r in range(batch)]
        places = [self.store.lookup(k) for k in keys]
        if all(p is not None for p in places):
            self.stats.hits += batch
            self.stats.flops_saved += self._flops(batch, ids.shape[1])
            topk = self.store.read(places, ids)  # type: ignore[arg-type]
            return Signals(topk=topk.to(ids.device), is_causal=True)
        signals = compute(inputs)
        seeds = [int(block_key(ids[r])[:15], 16) for r in range(batch)]  # a block's draws depend on it alone
        topk = self.store.stored_form(teacher_topk(signals.logits, self.store.top_k, self.store.temperature,
                                                   tail_samples=self.store.tail_samples, seeds=seeds))
        for r, key in enumerate(keys):
            if key is not None:
                self.store.put(key, ids[r], topk, r)
        stored = sum(k is not None for k in keys)
        self.stats.misses += stored
        self.stats.bypassed += batch - stored
        return Signals(topk=topk, is_causal=True)

    def flush(self) -> None:
        self.store.flush()

    def _flops(self, batch: int, seq: int) -> float:
        from minidisc.compute.flops import forward_flops

        if self._config is None:
            return 0.0
        try:
            return float(forward_flops(self._config, None, seq_len=seq, batch=batch, lm_head=True))
        except ModelError:
            return 0.0
