"""The teacher-logit cache of causal LMs: time per training step and final perplexity,
cached top-k + tail against online full-vocabulary distillation, at equal tokens; JSON (issue 12).

    PYTHONPATH=src python benchmarks/lm_teacher_cache.py [--teacher smollm2]
        [--corpus ../shared/data/gutenberg] [--max-blocks 2048] [--block-size 128] [--batch-size 8]
        [--tokens 65536] [--heldout-blocks 32] [--top-k 16 64 256] [--tail-samples 0] [--dtype float16]
        [--objective forward_kl] [--sparsity 0.5] [--learning-rate 1e-4] [--threads 2] [--device auto]
    PYTHONPATH=src python benchmarks/lm_teacher_cache.py --tiny     # seconds: a tiny random LLaMA, random tokens

What it does:

1. packs ``--corpus`` into blocks of ``--block-size`` tokens (the first ``--max-blocks``),
   holds out ``--heldout-blocks`` of them (seeded) and trains on the rest;
2. prunes the teacher to ``--sparsity`` of its non-embedding parameters (activation
   importance on 8 training blocks, the uniform map ``compress --task lm`` uses): the
   student every arm starts from;
3. fills the cache (:mod:`minidisc.training.lm_teacher_cache`) for each ``--top-k`` and
   ``--tail-samples`` over the blocks the training reads: ``build_seconds``, disk bytes per token;
4. trains one copy of the student per arm -- ``online`` (the teacher runs every step,
   full-vocabulary ``--objective``) and ``cached k`` (``cached k m`` with ``m`` sampled tail
   words) for each ``--top-k`` and ``--tail-samples`` (the cache serves every step, the same
   objective on top-k + tail) -- on the **same batches in the same
   order, in lockstep** (step i of every arm before step i + 1 of any, so a busy machine
   slows them alike), AdamW, constant learning rate, gradient clipping 1.0;
5. scores every student and the teacher on the held-out blocks (mean next-token NLL,
   perplexity = exp).

Per arm: median and mean seconds per step (the first step excluded: allocation), the
speedup over online (median / median), the perplexity and its ratio to online's;
``passes_to_break_even``: how many reads of the blocks it takes before the cache's build
time is paid back (build / (saving per step · steps per pass)). The issue's bar: a cached
arm at least 1.5x faster per step with perplexity within 1 % of online's.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default="smollm2", help="LLaMA-family causal LM: smollm2, a folder, .gguf or hub id")
    p.add_argument("--corpus", nargs="+", default=[os.path.join(SHARED, "gutenberg")], help="training text")
    p.add_argument("--max-blocks", type=int, default=2048, help="use the first N packed blocks of the corpus")
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--tokens", type=int, default=65_536, help="training tokens of every arm")
    p.add_argument("--heldout-blocks", type=int, default=32)
    p.add_argument("--top-k", nargs="+", type=int, default=[16, 64, 256], help="one cached arm per k")
    p.add_argument("--tail-samples", nargs="+", type=int, default=[0],
                   help="one cached arm per k and m: tail words sampled per position (0: one tail bucket)")
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    p.add_argument("--objective", default="forward_kl")
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto", help="auto (a GPU when one is visible), cpu, cuda")
    p.add_argument("--cache-dir", default=None, help="cache root (default: a temporary folder, removed)")
    p.add_argument("--tiny", action="store_true", help="a tiny random LLaMA on random tokens (for tests)")
    args = p.parse_args(argv)
    if args.tiny:
        args.block_size, args.batch_size, args.tokens, args.heldout_blocks = 16, 4, 16 * 4 * 6, 4
        args.top_k = [8] if args.top_k == [16, 64, 256] else args.top_k
    return args


def tiny_teacher(vocab: int = 256):
    """A random LLaMA (hidden 64, 2 layers, 4 query heads over 2 key/value heads, tied
    embeddings) and a word-level tokenizer ``w0 … w{V-1}``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab)}, unk_token="w0"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="w0", eos_token="w1")
    config = LlamaConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64,
                         tie_word_embeddings=True, eos_token_id=1, pad_token_id=1, bos_token_id=None)
    torch.manual_seed(0)
    return LlamaForCausalLM(config), tokenizer


def load_blocks(args: argparse.Namespace, tokenizer) -> np.ndarray:
    """``(n, block_size)`` token blocks: the packed corpus (the tiny mode: Zipf-distributed
    random tokens, so that the teacher's distributions are not flat)."""
    if args.tiny:
        rng = np.random.default_rng(args.seed)
        ranks = np.arange(1, len(tokenizer) + 1, dtype=np.float64)
        return rng.choice(len(tokenizer), size=(48, args.block_size), p=(1 / ranks) / (1 / ranks).sum()).astype(np.int64)
    from minidisc.schedules.lm_data import pack_documents
    from minidisc.tasks.plaintext import corpus_files

    return pack_documents([str(p) for p in corpus_files(args.corpus)], tokenizer, args.block_size)[: args.max_blocks]


def batch(blocks: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    ids = torch.from_numpy(blocks).long().to(device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def prune(teacher, blocks: np.ndarray, sparsity: float, device: torch.device):
    """The teacher's uniform sub-network at ``sparsity`` (activation importance), extracted."""
    from minidisc.elastic import make_elastic
    from minidisc.elastic.estimators import estimate_importance

    elastic = make_elastic(copy.deepcopy(teacher))
    with elastic.active(None):
        scores, _ = estimate_importance(elastic.model, elastic.family, [batch(blocks, device)], method="activation",
                                        seed=0, progress=False)
    spec = elastic.sparsity_map(elastic.reorder(scores), (0.0, sparsity))[sparsity]
    return elastic.extract(spec)


def heldout_ppl(model, blocks: np.ndarray, device: torch.device, rows: int = 8) -> float:
    """exp(mean next-token NLL) over every position of the held-out blocks."""
    model.eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(blocks), rows):
            ids = torch.from_numpy(blocks[start:start + rows]).long().to(device)
            logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
            nll += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                           ids[:, 1:].reshape(-1), reduction="sum"))
            count += ids[:, 1:].numel()
    return math.exp(nll / count)


class Arm:
    """One student trained with one source of teacher signals."""

    def __init__(self, name: str, student, teacher_signals, objective, lr: float) -> None:
        self.name, self.teacher_signals, self.objective = name, teacher_signals, objective
        self.student = student.train().requires_grad_(True)
        self.optimizer = torch.optim.AdamW(student.parameters(), lr=lr)
        self.seconds: list[float] = []

    def step(self, inputs: dict[str, torch.Tensor]) -> float:
        from minidisc.objectives import forward_with_signals

        sync(inputs["input_ids"].device)
        t0 = time.perf_counter()
        teacher = self.teacher_signals(inputs)
        student = forward_with_signals(self.student, inputs, need_hidden_states=False)
        loss, _ = self.objective(student, teacher, inputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.student.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        sync(inputs["input_ids"].device)
        self.seconds.append(time.perf_counter() - t0)
        return float(loss.detach())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str]) -> dict:
    from minidisc.evaluation.perplexity import load_causal_lm
    from minidisc.objectives import build_objective, forward_with_signals
    from minidisc.seeding import seed_everything
    from minidisc.training.lm_teacher_cache import LMTeacherCacheStore

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    started, load_before = time.perf_counter(), os.getloadavg()
    if args.tiny:
        teacher, tokenizer = tiny_teacher()
    else:
        loaded = load_causal_lm(args.teacher, block_size=args.block_size)
        teacher, tokenizer = loaded.model, loaded.tokenizer
    teacher = teacher.float().to(device).eval().requires_grad_(False)
    blocks = load_blocks(args, tokenizer)
    order = np.random.default_rng(args.seed).permutation(len(blocks))
    heldout, train = blocks[np.sort(order[: args.heldout_blocks])], blocks[np.sort(order[args.heldout_blocks:])]
    steps = math.ceil(args.tokens / (args.batch_size * args.block_size))
    stream = np.random.default_rng([args.seed, 1]).permutation(np.resize(np.arange(len(train)), steps * args.batch_size))
    batches = [batch(train[stream[i * args.batch_size:(i + 1) * args.batch_size]], device) for i in range(steps)]
    seed_everything(args.seed)
    student0 = prune(teacher, train[:8], args.sparsity, device)
    objective = build_objective(args.objective, task_type="causal_lm", temperature=1.0)

    def online(inputs):
        with torch.no_grad():
            return forward_with_signals(teacher, inputs, need_hidden_states=False)

    root = args.cache_dir or tempfile.mkdtemp(prefix="lm-teacher-cache-")
    arms, caches = [Arm("online", copy.deepcopy(student0), online, objective, args.learning_rate)], {}
    for k, m in [(k, m) for k in args.top_k for m in args.tail_samples]:
        name = f"cached k={k}" + (f" m={m}" if m else "")
        store = LMTeacherCacheStore(root, teacher, tokenizer, block_size=args.block_size, top_k=k, dtype=args.dtype,
                                    tail_samples=m)
        view = store.view(teacher)
        t0 = time.perf_counter()
        for inputs in batches:  # the fill: the teacher once per block (stored blocks are read back)
            view.signals(inputs, online)
        view.flush()
        sync(device)
        caches[name] = {"build_seconds": time.perf_counter() - t0, "fill": view.stats.to_dict(), **store.summary()}
        read = store.view(teacher)
        arms.append(Arm(name, copy.deepcopy(student0), lambda x, v=read: v.signals(x, online), objective,
                        args.learning_rate))
        caches[name]["view"] = read
    for inputs in batches:
        for arm in arms:
            arm.step(inputs)
    teacher_ppl = heldout_ppl(teacher, heldout, device)
    result_arms = {}
    base = None
    for arm in arms:
        times = arm.seconds[1:] or arm.seconds
        entry = {"median_step_s": statistics.median(times), "mean_step_s": statistics.fmean(times),
                 "perplexity": heldout_ppl(arm.student, heldout, device)}
        if base is None:
            base = entry
        else:
            cache = caches[arm.name]
            served = cache.pop("view").stats
            saving = base["median_step_s"] - entry["median_step_s"]
            steps_per_pass = len(train) / args.batch_size
            entry.update({
                "speedup": base["median_step_s"] / entry["median_step_s"],
                "perplexity_ratio": entry["perplexity"] / base["perplexity"],
                "served": served.to_dict(), "cache": cache,
                "passes_to_break_even": cache["build_seconds"] / (saving * steps_per_pass) if saving > 0 else None,
            })
            entry["meets_bar"] = entry["speedup"] >= 1.5 and abs(entry["perplexity_ratio"] - 1) <= 0.01
        result_arms[arm.name] = entry
    if args.cache_dir is None:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return {
        "benchmark": "lm_teacher_cache", "teacher": "tiny random LLaMA" if args.tiny else args.teacher,
        "torch": torch.__version__, "device": str(device), "threads": args.threads,
        "corpus": "Zipf-random tokens" if args.tiny else args.corpus, "blocks": {"train": len(train), "heldout": len(heldout)},
        "block_size": args.block_size, "batch_size": args.batch_size, "steps": steps, "tokens": steps * args.batch_size * args.block_size,
        "objective": args.objective, "sparsity": args.sparsity, "learning_rate": args.learning_rate, "dtype": args.dtype,
        "vocab_size": int(teacher.config.vocab_size),
        "teacher_perplexity": teacher_ppl, "student_start_perplexity": heldout_ppl(student0, heldout, device),
        "arms": result_arms,
        "seconds": round(time.perf_counter() - started, 1), "load_average": {"before": load_before, "after": os.getloadavg()},
    }


if __name__ == "__main__":
    result = main(sys.argv[1:])
    json.dump(result, sys.stdout, indent=2, default=str)
    print()
