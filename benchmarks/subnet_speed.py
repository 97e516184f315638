"""CPU forward latency of elastic sub-networks vs. their FLOPs (prints JSON).

A BERT-base-sized sequence classifier with random weights (hidden 768, 12 layers,
12 heads, FFN 3072) runs batch 32 × 128 tokens at sparsities 0, .5, .9, .95, both as
*activated* prefix slices of the shared weights (``ElasticModel.active``) and as
*extracted* standalone models (``ElasticModel.extract``). The sparsity map comes from a
random importance (the weights are random too, so any order is as good as another).

For each level the output gives the analytic forward FLOPs
(:func:`minidisc.compute.flops.forward_flops`), ``flops_ratio`` = full / sub-network
FLOPs, and measured ``speedup`` = full-model time / sub-network time (the full model
being the extracted sparsity-0 model, i.e. a plain transformers model). Each model gets
one warm-up forward; then ``--repeats`` rounds time one forward of every model in turn
(interleaved, so load from other processes hits all of them alike). Reported times
are the minimum over rounds (the least-disturbed run), in seconds; speedups use them.

Run (slow: minutes on 2 cores):  nice python benchmarks/subnet_speed.py
Quick smoke run:                  python benchmarks/subnet_speed.py --tiny --repeats 1
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification

from minidisc.compute.flops import forward_flops
from minidisc.compute.latency import forward_seconds
from minidisc.elastic import Importance, make_elastic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.0, 0.5, 0.9, 0.95])
    parser.add_argument(
        "--tiny", action="store_true", help="a 2-layer, hidden-128 model (smoke test)"
    )
    args = parser.parse_args()

    if args.tiny:
        config = BertConfig(
            hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512
        )
    else:
        config = BertConfig()  # BERT-base sizes
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    em = make_elastic(model)
    geo = em.geometry
    gen = torch.Generator().manual_seed(0)
    imp = Importance(
        torch.rand(geo.num_layers, geo.num_heads, generator=gen),
        torch.rand(geo.num_layers, geo.intermediate_size, generator=gen),
    ).normalize()
    specs = em.sparsity_map(imp, args.sparsities)

    ids = torch.randint(
        1000 if not args.tiny else 5, config.vocab_size, (args.batch, args.seq_len), generator=gen
    )
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    full_flops = forward_flops(config, None, args.seq_len, args.batch)

    # (sparsity, kind) -> (model, spec to activate on em or None for an extracted model)
    runs: dict[tuple[float, str], tuple] = {}
    for s, spec in specs.items():
        runs[(s, "activated")] = (em, spec)
        runs[(s, "extracted")] = (em.extract(spec).eval(), None)
    times: dict[tuple[float, str], list[float]] = {key: [] for key in runs}
    for round_idx in range(args.repeats + 1):  # round 0 is the warm-up
        for key, (model_, spec) in runs.items():
            with em.active(spec if model_ is em else None):
                seconds = forward_seconds(model_, batch)
            if round_idx > 0:
                times[key].append(seconds)

    rows = []
    base = min(times[(0.0, "extracted")]) if (0.0, "extracted") in times else None
    for s, spec in specs.items():
        flops = forward_flops(config, spec, args.seq_len, args.batch)
        row = {
            "sparsity": s,
            "kept_heads": spec.total_heads(),
            "kept_neurons": spec.total_neurons(),
            "forward_gflops": round(flops / 1e9, 2),
            "flops_ratio": round(full_flops / flops, 2),
        }
        for kind in ("activated", "extracted"):
            row[f"{kind}_s"] = round(min(times[(s, kind)]), 4)
            row[f"{kind}_median_s"] = round(statistics.median(times[(s, kind)]), 4)
            if base is not None:
                row[f"{kind}_speedup"] = round(base / min(times[(s, kind)]), 2)
        rows.append(row)
    print(
        json.dumps(
            {
                "model": "BERT-base-sized, random weights" if not args.tiny else "tiny BERT",
                "batch": args.batch,
                "seq_len": args.seq_len,
                "repeats": args.repeats,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "results": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
