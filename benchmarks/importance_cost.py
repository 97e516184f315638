"""Calibration cost of each importance estimator on SmolLM2, printed as JSON (issue 11).

    PYTHONPATH=src python benchmarks/importance_cost.py [--blocks 8] [--block-size 256]
        [--batch-size 4] [--corpus ../shared/data/gutenberg] [--heldout ../shared/data/wikitext-2-raw/wiki.test.raw]
        [--heldout-blocks 4] [--threads 2]

For every method of :data:`minidisc.elastic.estimators.METHODS`: the
:class:`~minidisc.elastic.estimators.ImportanceCost` (batches, token positions, forward
and backward FLOPs, wall seconds) on ``--blocks`` calibration blocks of ``--block-size``
tokens packed from the start of the corpus (documents joined with EOS, Gutenberg headers
stripped). Wall seconds are only a timing on an idle machine; the JSON says how loaded
the machine was (the load average before and after).

A sanity check of the scores rides along (``--heldout-blocks 0`` skips it): the held-out
next-token loss and perplexity of SmolLM2 with 25 % of every layer's FFN units masked
out, the lowest-scoring by each method -- pruning alone, no training, heads and width
kept (those axes are sliced by the elastic model, not by this script).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch


def blocks_from(paths: list[str], tokenizer, count: int, size: int) -> torch.Tensor:
    """``(count, size)`` token ids packed from the documents, in order."""
    from minidisc.tasks.plaintext import read_documents

    ids: list[int] = []
    for doc in read_documents(paths):
        ids += tokenizer(doc.text[: 40 * size * count], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(ids) >= count * size:
            break
    if len(ids) < count * size:
        raise SystemExit(f"only {len(ids)} tokens in {paths}; need {count * size}")
    return torch.tensor(ids[: count * size]).view(count, size)


def heldout_loss(model, blocks: torch.Tensor, neuron_mask: torch.Tensor | None, family) -> float:
    """Mean next-token loss on ``blocks`` with FFN units multiplied by ``neuron_mask``."""
    from contextlib import nullcontext

    from minidisc.elastic.importance import mask_hooks

    geo = family.geometry(model.config)
    ctx = mask_hooks(model, family, None, neuron_mask, geo.head_dim) if neuron_mask is not None else nullcontext()
    losses = []
    with torch.no_grad(), ctx:
        for row in blocks:
            losses.append(float(model(input_ids=row[None], labels=row[None]).loss))
    return sum(losses) / len(losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--corpus", nargs="+", default=["../shared/data/gutenberg"])
    parser.add_argument("--heldout", nargs="+", default=["../shared/data/wikitext-2-raw/wiki.test.raw"])
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--heldout-blocks", type=int, default=4)
    parser.add_argument("--prune-fraction", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from minidisc.elastic.estimators import METHODS, estimate_importance
    from minidisc.elastic.families import family_for
    from minidisc.evaluation.perplexity import load_causal_lm

    load_before = os.getloadavg()
    lm = load_causal_lm(args.model)
    model, tokenizer = lm.model.float().eval(), lm.tokenizer
    family = family_for(model)
    calib = blocks_from(args.corpus, tokenizer, args.blocks, args.block_size)
    batches = [{"input_ids": chunk, "attention_mask": torch.ones_like(chunk)} for chunk in calib.split(args.batch_size)]
    heldout = blocks_from(args.heldout, tokenizer, args.heldout_blocks, args.block_size) if args.heldout_blocks else None
    out: dict = {
        "model": lm.label,
        "calibration": {"corpus": args.corpus, "blocks": args.blocks, "block_size": args.block_size,
                        "batch_size": args.batch_size},
        "threads": args.threads,
        "methods": {},
    }
    if heldout is not None:
        full = heldout_loss(model, heldout, None, family)
        out["heldout"] = {"corpus": args.heldout, "blocks": args.heldout_blocks, "block_size": args.block_size,
                          "prune_fraction_ffn": args.prune_fraction,
                          "full_model": {"loss": full, "perplexity": math.exp(full)}}
    for method in METHODS:
        started = time.perf_counter()
        imp, cost = estimate_importance(model, family, batches, method, seed=args.seed, progress=False)
        entry: dict = {"cost": cost.to_dict(),
                       "scores": {k: list(getattr(imp, k).shape) for k in ("heads", "neurons", "hidden", "layers")
                                  if getattr(imp, k) is not None}}
        if imp.layers is not None:
            entry["layer_order_least_important_first"] = imp.layers.argsort().tolist()
        if heldout is not None:
            keep = round(imp.neurons.shape[1] * (1 - args.prune_fraction))
            order = imp.neurons.argsort(dim=1, descending=True, stable=True)
            mask = torch.zeros_like(imp.neurons)
            mask.scatter_(1, order[:, :keep], 1.0)
            loss = heldout_loss(model, heldout, mask, family)
            entry["ffn_pruned_heldout"] = {"loss": loss, "perplexity": math.exp(loss)}
        entry["total_s"] = time.perf_counter() - started
        out["methods"][method] = entry
        print(method, json.dumps(entry["cost"]), file=sys.stderr, flush=True)
    out["load_average"] = {"before": load_before, "after": os.getloadavg(),
                           "note": "wall seconds were measured under this load, not on an idle machine"}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
