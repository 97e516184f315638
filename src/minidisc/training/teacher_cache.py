"""Reuse a frozen teacher's outputs instead of recomputing them.

A distillation stage runs its teacher on the same training examples every epoch; a
schedule runs the same teacher on the same examples in many stages (MaxiDisc's first
hops, direct KD, MiniDisc's first sandwich iteration all distil the same sparsified
teacher). The teacher is frozen and in eval mode (dropout off), so its outputs for an
example are a function of (teacher weights, token ids) only: they are computed once and
served from this cache afterwards.

Keys
    The *namespace* is a fingerprint of the teacher (class, dtype, every weight); the
    *example key* is a hash of the example's real tokens (``input_ids`` and
    ``token_type_ids`` under ``attention_mask``). No example-id column is needed, and a
    re-subsampled or re-shuffled dataset still hits for the examples it shares.

What is stored
    Per example only its real positions: the logits (``(C,)`` for sequence tasks,
    ``(n, C)`` for token tasks) and, when the objective reads them, every hidden state
    ``(n, d)``. A cached batch is rebuilt with zeros at padded positions; the
    objectives ignore padded positions (they select real rows), so the loss from a cached
    batch is bit-identical to the loss from the online teacher on the same batch.
    Objectives that need attention Q/K/V are not cached (the trainer runs the teacher).

Where
    Memory first (least-recently-used entries beyond ``max_memory_bytes`` are evicted),
    then, when a directory is given, safetensors shards on disk (``<dir>/<teacher
    fingerprint>/shard-*.safetensors`` + ``index.json``), which later stages and
    later processes reuse. Shard names are unique and the index is merged on every
    write, so concurrent writers can at worst lose index entries (recomputed later),
    never serve wrong tensors.

Padding: batches must be right-padded (real tokens form a prefix, BERT-style); other
batches bypass the cache (left-padded decoders shift positions with the padding).
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from minidisc.compute.flops import forward_flops
from minidisc.errors import ModelError
from minidisc.fileio import atomic_path, read_json, write_json
from minidisc.objectives import Signals

if TYPE_CHECKING:
    from minidisc.objectives import Objective

LOGITS = "logits"
HIDDEN = "hidden."
INDEX = "index.json"
MiB = 2**20


@dataclass
class CacheStats:
    """What a cache served, in examples (sequences) and teacher forward FLOPs.

    Attributes:
        hits: examples whose teacher outputs came from the cache.
        misses: examples the teacher computed (and the cache stored).
        bypassed: examples of batches the cache could not serve (not right-padded).
        flops_saved: teacher forward FLOPs not spent thanks to hits (the FLOPs of the
            padded batch shape the online teacher would have computed).
    """

    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    flops_saved: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def teacher_fingerprint(model: nn.Module) -> str:
    """A hex digest identifying a model's outputs: its class, dtype and every weight, and
    the precision it computes in (:func:`minidisc.runtime.current`) unless fp32.

    Two models with the same fingerprint compute the same function (in eval mode), so
    outputs cached by a bf16 run are never served to an fp32 one (fp32 digests are those
    of caches written before precisions existed).
    """
    from minidisc.runtime import current

    digest = hashlib.blake2b(digest_size=16)
    digest.update(type(model).__name__.encode())
    if current().precision != "fp32":
        digest.update(f"precision:{current().precision}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def example_keys(inputs: Mapping[str, Tensor]) -> list[str] | None:
    """One key per example of a batch, or None when the batch is not right-padded.

    Args:
        inputs: ``input_ids`` ``(B, S)`` and optionally ``attention_mask`` and
            ``token_type_ids`` ``(B, S)``.

    Returns:
        Hex digests of each example's real ``input_ids`` (and ``token_type_ids``).
    """
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    lengths = _lengths(inputs)
    if mask is not None:
        positions = torch.arange(ids.shape[1], device=ids.device)
        if not torch.equal(mask.bool(), positions[None, :] < lengths[:, None]):
            return None  # left padding or holes: positions would depend on the batch
    types = inputs.get("token_type_ids")
    keys = []
    for row, n in enumerate(lengths.tolist()):
        digest = hashlib.blake2b(digest_size=16)
        digest.update(ids[row, :n].to(torch.int64).cpu().numpy().tobytes())
        if types is not None:
            digest.update(b"|")
            digest.update(types[row, :n].to(torch.int64).cpu().numpy().tobytes())
        keys.append(digest.hexdigest())
    return keys


def _lengths(inputs: Mapping[str, Tensor]) -> Tensor:
    mask = inputs.get("attention_mask")
    ids = inputs["input_ids"]
    if mask is None:
        return torch.full((ids.shape[0],), ids.shape[1], dtype=torch.long, device=ids.device)
    return mask.long().sum(dim=1)


def _nbytes(tensors: Mapping[str, Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


@dataclass
class _Entry:
    tensors: dict[str, Tensor]
    nbytes: int
    on_disk: bool


@dataclass
class _Namespace:
    """The disk side of one teacher's cache: key → shard file name."""

    folder: Path | None
    index: dict[str, str] = field(default_factory=dict)
    shards: int = 0


class TeacherCacheStore:
    """Memory-bounded store of teacher outputs, spilling to safetensors shards.

    Args:
        directory: where shards go (None: memory only; evicted entries are dropped).
        max_memory_bytes: bytes of cached tensors kept in memory (LRU beyond).
        max_disk_bytes: stop writing shards beyond this many bytes on disk (None: no limit).

    Use :meth:`view` to bind the store to one teacher, and :meth:`flush` at the end of
    a stage so that later stages (and processes) find everything on disk.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        max_memory_bytes: int = 512 * MiB,
        max_disk_bytes: int | None = None,
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.max_memory_bytes = int(max_memory_bytes)
        self.max_disk_bytes = max_disk_bytes
        self._memory: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._memory_bytes = 0
        self._namespaces: dict[str, _Namespace] = {}
        self.disk_bytes = 0

    # ---- public ------------------------------------------------------------------
    def view(self, teacher: nn.Module) -> TeacherCache:
        """A cache bound to ``teacher`` (its fingerprint is its namespace)."""
        return TeacherCache(self, teacher)

    @staticmethod
    def supports(objective: Objective) -> bool:
        """Whether the cache can serve ``objective`` (not when it reads Q/K/V)."""
        return not getattr(objective, "needs_qkv", False)

    @property
    def memory_bytes(self) -> int:
        return self._memory_bytes

    def get(self, namespace: str, keys: list[str], fields: tuple[str, ...]) -> list[dict[str, Tensor] | None]:
        """Cached tensors of ``keys`` holding every name in ``fields`` (else None)."""
        found: list[dict[str, Tensor] | None] = [None] * len(keys)
        on_disk: dict[str, list[int]] = {}
        space = self._namespace(namespace)
        for i, key in enumerate(keys):
            entry = self._memory.get((namespace, key))
            if entry is not None:
                self._memory.move_to_end((namespace, key))
                if all(f in entry.tensors for f in fields):
                    found[i] = entry.tensors
            elif key in space.index:
                on_disk.setdefault(space.index[key], []).append(i)
        for shard, rows in on_disk.items():
            loaded = self._read(space, shard, [keys[i] for i in rows])
            for i in rows:
                tensors = loaded[keys[i]]
                self._insert(namespace, keys[i], tensors, on_disk=True)
                if all(f in tensors for f in fields):
                    found[i] = tensors
        return found

    def put(self, namespace: str, key: str, tensors: dict[str, Tensor]) -> None:
        """Store one example's tensors (CPU, contiguous copies are the caller's job).

        Fields already cached for the example are kept (outputs of one teacher on one
        example are equal); the entry is written to disk again only if it gains a field
        its shard lacks, never as a duplicate.
        """
        old = self._memory.pop((namespace, key), None)
        if old is not None:
            self._memory_bytes -= old.nbytes
            tensors = {**old.tensors, **tensors}
        on_disk = set(tensors) <= self._fields_on_disk(namespace, key, old)
        self._insert(namespace, key, tensors, on_disk=on_disk)

    def flush(self) -> None:
        """Write every memory entry that is not yet on disk (no-op without a directory)."""
        pending = [(k, e) for k, e in self._memory.items() if not e.on_disk]
        self._spill(pending)

    # ---- memory ------------------------------------------------------------------
    def _insert(self, namespace: str, key: str, tensors: dict[str, Tensor], on_disk: bool) -> None:
        entry = _Entry(tensors, _nbytes(tensors), on_disk)
        self._memory[(namespace, key)] = entry
        self._memory_bytes += entry.nbytes
        if self._memory_bytes > self.max_memory_bytes:
            self._evict()

    def _evict(self) -> None:
        # Evict down to 3/4 of the budget at once, so spilled entries form large shards.
        goal = self.max_memory_bytes * 3 // 4
        evicted = []
        while self._memory and self._memory_bytes > goal:
            item = self._memory.popitem(last=False)
            self._memory_bytes -= item[1].nbytes
            evicted.append(item)
        self._spill([(k, e) for k, e in evicted if not e.on_disk])

    # ---- disk --------------------------------------------------------------------
    def _namespace(self, namespace: str) -> _Namespace:
        space = self._namespaces.get(namespace)
        if space is None:
            folder = self.directory / namespace if self.directory is not None else None
            space = _Namespace(folder)
            if folder is not None and (folder / INDEX).is_file():
                saved = read_json(folder / INDEX)
                space.index, space.shards = saved["index"], saved["shards"]
                self.disk_bytes += sum(p.stat().st_size for p in folder.glob("shard-*.safetensors"))
            self._namespaces[namespace] = space
        return space

    def _fields_on_disk(self, namespace: str, key: str, in_memory: _Entry | None) -> set[str]:
        """Field names of ``key`` in its shard (empty when not on disk)."""
        if in_memory is not None and in_memory.on_disk:
            return set(in_memory.tensors)
        space = self._namespace(namespace)
        shard = space.index.get(key)
        if shard is None or space.folder is None or not (space.folder / shard).is_file():
            return set()
        with _open_shard(space.folder / shard) as f:  # reads the header only
            return {name.partition("/")[2] for name in f.keys() if name.startswith(f"{key}/")}  # noqa: SIM118

    def _spill(self, items: list[tuple[tuple[str, str], _Entry]]) -> None:
        if self.directory is None or not items:
            return
        by_namespace: dict[str, list[tuple[str, _Entry]]] = {}
        for (namespace, key), entry in items:
            by_namespace.setdefault(namespace, []).append((key, entry))
        for namespace, entries in by_namespace.items():
            size = sum(e.nbytes for _, e in entries)
            if self.max_disk_bytes is not None and self.disk_bytes + size > self.max_disk_bytes:
                continue  # over the disk budget: these entries are simply recomputed later
            self._write(self._namespace(namespace), entries)
            self.disk_bytes += size
            for _, entry in entries:
                entry.on_disk = True

    def _write(self, space: _Namespace, entries: list[tuple[str, _Entry]]) -> None:
        from safetensors.torch import save_file

        assert space.folder is not None
        space.folder.mkdir(parents=True, exist_ok=True)
        # A unique name: another process writing the same folder can never overwrite it.
        name = f"shard-{space.shards:05d}-{uuid.uuid4().hex[:10]}.safetensors"
        flat = {f"{key}/{f}": t.contiguous() for key, entry in entries for f, t in entry.tensors.items()}
        with atomic_path(space.folder / name) as tmp:
            save_file(flat, str(tmp))
        space.shards += 1
        if (space.folder / INDEX).is_file():  # merge what other writers added meanwhile
            on_disk = read_json(space.folder / INDEX)
            space.index = {**on_disk["index"], **space.index}
            space.shards = max(space.shards, on_disk["shards"])
        space.index.update({key: name for key, _ in entries})
        write_json(space.folder / INDEX, {"shards": space.shards, "index": space.index})

    @staticmethod
    def _read(space: _Namespace, shard: str, keys: list[str]) -> dict[str, dict[str, Tensor]]:
        assert space.folder is not None
        wanted = set(keys)
        out: dict[str, dict[str, Tensor]] = {k: {} for k in keys}
        with _open_shard(space.folder / shard) as f:
            for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                key, _, fname = name.partition("/")
                if key in wanted:
                    out[key][fname] = f.get_tensor(name)
        return out


@contextmanager
def _open_shard(path: Path) -> Iterator[Any]:
    """``safe_open`` of a cache shard; a corrupted one is a ModelError saying what to delete.

    The error is raised only if the open itself fails; errors in the caller's block pass.
    """
    from safetensors import SafetensorError, safe_open

    try:
        handle = safe_open(str(path), framework="pt")
    except (SafetensorError, OSError) as err:
        raise ModelError(
            f"the teacher-output cache file {path} is corrupted or truncated ({err}); delete the cache "
            f"folder {path.parent} (it only saves time and is refilled) and rerun"
        ) from err
    with handle as f:
        yield f


class TeacherCache:
    """A :class:`TeacherCacheStore` bound to one teacher, with its own statistics.

    Args:
        store: the shared store.
        teacher: the frozen teacher (eval mode); its fingerprint is taken now, so the
            teacher must not change afterwards.
    """

    def __init__(self, store: TeacherCacheStore, teacher: nn.Module) -> None:
        self.store = store
        self.config = getattr(teacher, "config", None)
        self.namespace = teacher_fingerprint(teacher)
        self.stats = CacheStats()
        self._is_causal = False

    def signals(
        self,
        inputs: Mapping[str, Tensor],
        compute: Callable[[Mapping[str, Tensor]], Signals],
        *,
        need_hidden_states: bool,
    ) -> Signals:
        """The teacher's :class:`Signals` for a batch, from the cache where possible.

        Args:
            inputs: the batch (``input_ids``, ``attention_mask`` ``(B, S)`` …).
            compute: the online teacher: ``compute(batch) -> Signals`` (no grad).
            need_hidden_states: whether the objective reads hidden states.

        Returns:
            Signals with ``logits`` and (if asked) ``hidden_states``; when every example
            had to be computed, exactly what ``compute(inputs)`` returned.
        """
        keys = example_keys(inputs)
        if keys is None:
            self.stats.bypassed += len(inputs["input_ids"])
            return compute(inputs)
        fields = (LOGITS, f"{HIDDEN}0") if need_hidden_states else (LOGITS,)
        found = self.store.get(self.namespace, keys, fields)
        missing = [i for i, tensors in enumerate(found) if tensors is None]
        batch, seq = inputs["input_ids"].shape
        lengths = _lengths(inputs).tolist()
        if len(missing) == batch:  # the common first-epoch case: the whole batch, as online
            signals = compute(inputs)
            self._is_causal = signals.is_causal
            self._store(keys, lengths, signals, range(batch))
            self.stats.misses += batch
            return signals
        if missing:
            sub_len = max(lengths[i] for i in missing)
            rows = torch.tensor(missing, device=inputs["input_ids"].device)
            sub = {k: v[rows, :sub_len] for k, v in inputs.items() if isinstance(v, Tensor) and v.dim() == 2 and v.shape[:2] == (batch, seq)}
            signals = compute(sub)
            self._is_causal = signals.is_causal
            self._store([keys[i] for i in missing], [lengths[i] for i in missing], signals, range(len(missing)))
            for j, i in enumerate(missing):
                found[i] = _per_example(signals, j, lengths[i])
            self.stats.flops_saved += self._flops(seq, batch) - self._flops(sub_len, len(missing))
        else:
            self.stats.flops_saved += self._flops(seq, batch)
        self.stats.hits += batch - len(missing)
        self.stats.misses += len(missing)
        return self._assemble(found, lengths, seq, need_hidden_states, inputs["input_ids"].device)  # type: ignore[arg-type]

    def flush(self) -> None:
        """Write the store's memory entries to disk (see :meth:`TeacherCacheStore.flush`)."""
        self.store.flush()

    # ---- helpers -----------------------------------------------------------------
    def _store(self, keys: list[str], lengths: list[int], signals: Signals, rows: range) -> None:
        for key, n, row in zip(keys, lengths, rows):
            self.store.put(self.namespace, key, _per_example(signals, row, n))

    def _flops(self, seq: int, batch: int) -> float:
        if self.config is None:
            return 0.0
        try:
            return float(forward_flops(self.config, None, seq_len=seq, batch=batch))
        except ModelError:  # an architecture the FLOP model does not know
            return 0.0

    def _assemble(
        self, found: list[dict[str, Tensor]], lengths: list[int], seq: int, need_hidden: bool, device: torch.device
    ) -> Signals:
        logits = _pad_stack([f[LOGITS] for f in found], lengths, seq, device)
        hidden = None
        if need_hidden:
            layers = sum(1 for name in found[0] if name.startswith(HIDDEN))
            hidden = tuple(
                _pad_stack([f[f"{HIDDEN}{j}"] for f in found], lengths, seq, device) for j in range(layers)
            )
        return Signals(logits=logits, hidden_states=hidden, is_causal=self._is_causal)


def _per_example(signals: Signals, row: int, length: int) -> dict[str, Tensor]:
    """One example's real positions, as CPU copies (not views of the batch)."""
    out: dict[str, Tensor] = {}
    if signals.logits is not None:
        logits = signals.logits[row]
        out[LOGITS] = (logits if logits.dim() == 1 else logits[:length]).detach().to("cpu", copy=True)
    for j, h in enumerate(signals.hidden_states or ()):
        out[f"{HIDDEN}{j}"] = h[row, :length].detach().to("cpu", copy=True)
    return out


def _pad_stack(rows: list[Tensor], lengths: list[int], seq: int, device: torch.device) -> Tensor:
    """Stack per-example tensors; token-level ones ``(n, …)`` are zero-padded to ``seq``."""
    if rows[0].dim() == 1:  # sequence-level logits (C,)
        return torch.stack(rows).to(device)
    out = rows[0].new_zeros((len(rows), seq, *rows[0].shape[1:]))
    for i, (r, n) in enumerate(zip(rows, lengths)):
        out[i, :n] = r
    return out.to(device)


def cache_summary(store: TeacherCacheStore | None) -> dict[str, Any] | None:
    """JSON-ready state of a store (memory and disk bytes), for manifests."""
    if store is None:
        return None
    return {
        "directory": str(store.directory) if store.directory else None,
        "memory_bytes": store.memory_bytes,
        "disk_bytes": store.disk_bytes,
        "max_memory_bytes": store.max_memory_bytes,
    }
