"""The loss study of decoder distillation (issue 12, part 4): forward KL, reverse KL,
JSD(β = 0.5) and skew KL (α = 0.1) at equal tokens on the same pruned student, held-out
perplexity over seeds; JSON.

    PYTHONPATH=src python benchmarks/lm_losses.py [--teacher smollm2]
        [--corpus ../shared/data/gutenberg] [--eval-corpus ../shared/data/wikitext-2-raw/wiki.test.raw]
        [--eval-tokens 8192] [--tokens 65536] [--sparsity 0.5] [--seeds 0 1 2]
        [--objectives forward_kl reverse_kl jsd skew_kl] [--threads 2]
    PYTHONPATH=src python benchmarks/lm_losses.py --tiny     # seconds: a tiny random LLaMA (the test runs it)

Per seed (the seed draws the 8 calibration blocks that score importance and the order of
the training batches):

1. prunes the teacher to ``--sparsity`` of its non-embedding parameters (activation
   importance, the uniform map of ``compress --task lm``): one student per seed, copied
   into every arm, so the arms differ only in their loss;
2. trains the arms **in lockstep on the same batches** (the teacher runs once per step and
   its logits serve every arm), AdamW, constant learning rate, gradient clipping 1.0 --
   the setup of ``benchmarks/lm_teacher_cache.py``, whose helpers it reuses;
3. scores every student on the held-out blocks of the training text (the same blocks for
   every seed) and on the first ``--eval-tokens`` tokens of each ``--eval-corpus``.

The summary gives per loss and corpus the mean and standard deviation of the perplexity
over seeds, the winner per corpus, and for every other loss its paired difference to the
winner (same seed, same data, same start): mean, standard deviation and whether the
winner was better in every seed (``wins_every_seed``), the statement of which differences
exceed the seed-to-seed spread.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lm_teacher_cache import SHARED, Arm, batch, heldout_ppl, load_blocks, prune, tiny_teacher

#: The losses of the issue, with the weights it names (JSD β = 0.5, skew KL α = 0.1).
OPTIONS = {"jsd": {"beta": 0.5}, "skew_kl": {"alpha": 0.1}, "skew_reverse_kl": {"alpha": 0.1}}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default="smollm2", help="LLaMA-family causal LM: smollm2, a folder, .gguf or hub id")
    p.add_argument("--corpus", nargs="+", default=[os.path.join(SHARED, "gutenberg")], help="training text")
    p.add_argument("--eval-corpus", nargs="*", default=[os.path.join(SHARED, "wikitext-2-raw", "wiki.test.raw")],
                   help="held-out text files scored besides the held-out training blocks")
    p.add_argument("--eval-tokens", type=int, default=8192, help="tokens scored of each --eval-corpus")
    p.add_argument("--max-blocks", type=int, default=2048, help="use the first N packed blocks of the corpus")
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--tokens", type=int, default=65_536, help="training tokens of every arm")
    p.add_argument("--heldout-blocks", type=int, default=32)
    p.add_argument("--objectives", nargs="+", default=["forward_kl", "reverse_kl", "jsd", "skew_kl"])
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto", help="auto (a GPU when one is visible), cpu, cuda")
    p.add_argument("--tiny", action="store_true", help="a tiny random LLaMA on random tokens (for tests)")
    args = p.parse_args(argv)
    if args.tiny:
        args.block_size, args.batch_size, args.tokens, args.heldout_blocks = 16, 4, 16 * 4 * 4, 4
        args.eval_corpus = []
    return args


def eval_blocks(path: str, tokenizer, block_size: int, tokens: int) -> np.ndarray:
    """The first ``tokens`` tokens of one text file, packed into blocks."""
    from minidisc.schedules.lm_data import pack_documents

    blocks = pack_documents([path], tokenizer, block_size)
    return blocks[: max(1, tokens // block_size)]


def run_seed(seed: int, args: argparse.Namespace, teacher, train: np.ndarray, scored: dict[str, np.ndarray],
             device: torch.device) -> dict[str, dict[str, float]]:
    """Perplexity per loss and scored corpus after one seed's lockstep training."""
    from minidisc.objectives import build_objective, forward_with_signals
    from minidisc.seeding import seed_everything

    rng = np.random.default_rng([seed, 2])
    steps = -(-args.tokens // (args.batch_size * args.block_size))
    calibration = train[np.sort(rng.choice(len(train), size=min(8, len(train)), replace=False))]
    stream = rng.permutation(np.resize(np.arange(len(train)), steps * args.batch_size))
    seed_everything(seed)
    student0 = prune(teacher, calibration, args.sparsity, device)
    shared: dict[str, object] = {}
    arms = [Arm(name, copy.deepcopy(student0), lambda _inputs: shared["teacher"],
                build_objective(name, task_type="causal_lm", temperature=1.0, **OPTIONS.get(name, {})),
                args.learning_rate) for name in args.objectives]
    for i in range(steps):
        inputs = batch(train[stream[i * args.batch_size:(i + 1) * args.batch_size]], device)
        with torch.no_grad():
            shared["teacher"] = forward_with_signals(teacher, inputs, need_hidden_states=False)
        for arm in arms:
            arm.step(inputs)
    return {arm.name: {corpus: heldout_ppl(arm.student, blocks, device) for corpus, blocks in scored.items()}
            | {"median_step_s": statistics.median(arm.seconds[1:] or arm.seconds)} for arm in arms}


def summarize(per_seed: dict[int, dict[str, dict[str, float]]], corpora: list[str]) -> dict[str, dict]:
    """Mean ± std per loss and corpus; the winner and the paired differences to it."""
    seeds = sorted(per_seed)
    losses = list(per_seed[seeds[0]])
    out = {}
    for corpus in corpora:
        ppl = {loss: [per_seed[s][loss][corpus] for s in seeds] for loss in losses}
        table = {loss: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else None}
                 for loss, v in ppl.items()}
        best = min(losses, key=lambda loss: table[loss]["mean"])
        paired = {}
        for loss in losses:
            if loss == best:
                continue
            diff = [a - b for a, b in zip(ppl[loss], ppl[best])]
            paired[loss] = {"mean": statistics.fmean(diff), "std": statistics.stdev(diff) if len(diff) > 1 else None,
                            "wins_every_seed": all(d > 0 for d in diff)}
        out[corpus] = {"perplexity": table, "winner": best, "paired_difference_to_winner": paired}
    return out


def main(argv: list[str]) -> dict:
    from minidisc.evaluation.perplexity import load_causal_lm

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    started = time.perf_counter()
    if args.tiny:
        teacher, tokenizer = tiny_teacher()
    else:
        loaded = load_causal_lm(args.teacher, block_size=args.block_size)
        teacher, tokenizer = loaded.model, loaded.tokenizer
    teacher = teacher.float().to(device).eval().requires_grad_(False)
    blocks = load_blocks(argparse.Namespace(**{**vars(args), "seed": 0}), tokenizer)
    order = np.random.default_rng(0).permutation(len(blocks))  # one held-out set for every seed
    heldout, train = blocks[np.sort(order[: args.heldout_blocks])], blocks[np.sort(order[args.heldout_blocks:])]
    scored = {"heldout": heldout} | {os.path.basename(p): eval_blocks(p, tokenizer, args.block_size, args.eval_tokens)
                                      for p in args.eval_corpus}
    per_seed = {}
    for seed in args.seeds:  # each seed's result on stderr as it finishes: a cut-off study keeps them
        per_seed[seed] = run_seed(seed, args, teacher, train, scored, device)
        print(json.dumps({"seed": seed, "arms": per_seed[seed]}), file=sys.stderr, flush=True)
    steps = -(-args.tokens // (args.batch_size * args.block_size))
    return {
        "benchmark": "lm_losses", "teacher": "tiny random LLaMA" if args.tiny else args.teacher,
        "torch": torch.__version__, "device": str(device), "threads": args.threads,
        "corpus": "Zipf-random tokens" if args.tiny else args.corpus,
        "scored": {name: int(b.size) for name, b in scored.items()},
        "blocks": {"train": len(train), "heldout": len(heldout)}, "block_size": args.block_size,
        "batch_size": args.batch_size, "steps": steps, "tokens": steps * args.batch_size * args.block_size,
        "sparsity": args.sparsity, "learning_rate": args.learning_rate, "options": OPTIONS, "seeds": args.seeds,
        "teacher_perplexity": {name: heldout_ppl(teacher, b, device) for name, b in scored.items()},
        "per_seed": per_seed, "summary": summarize(per_seed, list(scored)),
        "seconds": round(time.perf_counter() - started, 1),
    }


if __name__ == "__main__":
    result = main(sys.argv[1:])
    json.dump(result, sys.stdout, indent=2, default=str)
    print()
