"""Step times, `compress` stage times and student inference speed-ups on this device (JSON; issue 15).

    PYTHONPATH=src python benchmarks/gpu.py [--data-dir ../shared/data/glue] [--precisions fp32 tf32 bf16]
    Smoke test (seconds, any CPU; what CI runs):  python benchmarks/gpu.py --tiny

On the current device (``minidisc.runtime``: the GPU when there is one), for a
BERT-base-sized teacher with **random weights** (hidden 768, 12 layers, 12 heads, FFN
3072; only the timings mean something) and MRPC:

1. **ms per step** of each training stage, each precision: a fine-tune step, a direct-KD
   step (teacher forward + the 90 % sub-network's forward and backward), an
   iteration-1 sandwich step of the paper's rule (teacher forward + the default grid's 7
   candidates, ``--sandwich-samples all``) and one of the default rule (K = 0 over
   60–90 %: the 60 % and 90 % candidates), batch 32 × 128 tokens (padded), the first
   ``--warmup`` steps not counted. Each is the stage's own Trainer step
   (``benchmarks/steps.py``).
2. **Stage times** (s) of a 1-epoch ``compress`` on MRPC at ``--compress-precision``
   (default ``auto``: bf16 on a GPU that has it) from the random teacher, from its
   report (``wall_time_s``): fine-tune, sparsify, each iteration, export.
3. **Inference** of extracted students at 50 %, 90 % and 95 % sparsity (random
   importance: the shapes are what matter), batch 256 × 128, weights in bf16 on a GPU
   (float32 on a CPU): median ms of ``--repeats`` forwards, the speed-up over the
   teacher and the FLOPs ratio (``minidisc.compute.flops.forward_flops``). These are the
   default (global) map's students: heads and FFN units pruned, hidden width and depth
   kept.
4. **Students built for the GPU** (issue 15, part 4): for each ``--flops-fractions``
   (default 10 % and 5 % of the teacher's FLOPs) and each ``--drop-layers`` depth cut,
   the least sparse level of the uniform map (``--layer-shapes uniform``: the hidden
   width cut too, every layer the same sizes) with ``--align`` (64) whose FLOPs are at
   most that fraction; timed as above. ``bars`` gives, per fraction, the fastest of them
   against issue 15's bars (≥ 5× at 10 %, ≥ 8× at 5 %).

``--tiny`` shrinks everything (a 2-layer, hidden-128 model, batch 4 × 32, 2 steps, a
64-row MRPC slice) so the whole script runs in seconds on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification

from minidisc import runtime
from minidisc.compute.flops import forward_flops
from minidisc.compute.latency import forward_ms
from minidisc.config import CompressConfig, DataConfig, TrainConfig
from minidisc.elastic.model import ElasticModel
from minidisc.errors import ConfigError
from minidisc.models import ModelSource, load_for_task
from minidisc.schedules.minidisc import run_compress
from minidisc.schedules.stages import task_inputs
from minidisc.training.data import prepare_task_data
from minidisc.training.distill import Distiller
from minidisc.training.finetune import finetune_trainer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from steps import (
    benchmark_config,
    random_importance,
    random_specs,
    sandwich_seconds,
    step_seconds,
    summary,
)

SHARED_GLUE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "glue")
TINY = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 512}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=SHARED_GLUE, help="GLUE-layout folder holding MRPC/")
    p.add_argument("--precisions", nargs="+", default=None,
                   help="step-time precisions (default: fp32 tf32 bf16 on a CUDA GPU, fp32 bf16 on a CPU)")
    p.add_argument("--compress-precision", default="auto")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=12, help="steps per timing, warm-up included")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--inference-batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.9, 0.95])
    p.add_argument("--flops-fractions", type=float, nargs="+", default=[0.1, 0.05],
                   help="students built for the GPU: at most this fraction of the teacher's FLOPs")
    p.add_argument("--drop-layers", type=int, nargs="+", default=[0, 6, 9],
                   help="depth cuts of the students built for the GPU (layers removed)")
    p.add_argument("--align", type=int, default=64, help="their kept sizes, multiples of this")
    p.add_argument("--skip-compress", action="store_true", help="leave out the 1-epoch compress")
    p.add_argument("--tiny", action="store_true", help="seconds on a CPU (smoke test)")
    return p.parse_args(argv)


def _shrink(args: argparse.Namespace) -> None:
    args.batch, args.seq_len, args.steps, args.warmup = 4, 32, 2, 1
    args.inference_batch, args.repeats = 4, 2
    args.drop_layers, args.align = [0, 1], 8


def write_teacher(folder: Path, tiny: bool) -> ModelSource:
    """A BERT-base-sized (or tiny) MRPC classifier with random weights, saved with the
    packaged teacher's tokenizer (the same vocabulary size) so every stage loads it."""
    _, tokenizer = task_inputs(None, None)
    torch.manual_seed(0)
    config = BertConfig(num_labels=2, vocab_size=tokenizer.vocab_size, **(TINY if tiny else {}))
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return ModelSource(str(folder))


def step_times(source: ModelSource, data: Any, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """ms per fine-tune, direct-KD and sandwich step in every precision asked for."""
    cfg = benchmark_config(args.batch, args.steps)
    paper, default = CompressConfig(sandwich_samples="all"), CompressConfig()
    out: dict[str, Any] = {}
    for precision in args.precisions:
        rt = runtime.configure(precision)
        row: dict[str, Any] = {}
        model = load_for_task(source, data.task)
        trainer = finetune_trainer(model, data.tokenizer, data.task, data.train, data.dev, cfg, scratch / "ft")
        row["finetune"] = summary(step_seconds(trainer, pad_to=args.seq_len), args.warmup)
        every, rule = Distiller(data, cfg), Distiller(data, cfg, sandwich_samples=default.sandwich_samples)
        for name, distiller, stage_levels in (("direct_kd", every, [0.9]), ("sandwich", every, paper.candidate_levels()),
                                              ("sandwich_default_rule", rule, default.candidate_levels())):
            teacher, student = load_for_task(source, data.task), load_for_task(source, data.task)
            row[name] = summary(sandwich_seconds(distiller, teacher, student, stage_levels, scratch / name,
                                                 pad_to=args.seq_len), args.warmup)
        out[rt.precision] = {k: {"median_ms": round(v["median_s"] * 1e3, 2), "min_ms": round(v["min_s"] * 1e3, 2),
                                 "steps": v["steps"]} for k, v in row.items()}
    return out


def compress_stage_times(source: ModelSource, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Wall seconds per stage of a 1-epoch ``compress`` on MRPC (its report's ``wall_time_s``)."""
    one_epoch = TrainConfig(epochs=1.0, batch_size=args.batch, eval_batch_size=args.batch * 4)
    samples = {"max_train_samples": 64, "max_eval_samples": 16, "importance_samples": 16} if args.tiny else {}
    cfg = CompressConfig(
        teacher=source.path, data=DataConfig(task="mrpc", data_dir=args.data_dir, max_length=args.seq_len, **samples),
        finetune=one_epoch, sandwich=one_epoch, final=one_epoch, precision=args.compress_precision,
    )
    start = time.perf_counter()
    run = run_compress(cfg, scratch / "compress")
    report = json.loads((run.path / "report.json").read_text())
    return {"precision": runtime.current().precision, "wall_s": round(time.perf_counter() - start, 1),
            "stages_s": {k: round(v, 1) for k, v in report["wall_time_s"].items()}}


def inference(source: ModelSource, args: argparse.Namespace) -> dict[str, Any]:
    """Median forward ms of the teacher, of the default map's students and of the students
    built for the GPU (:func:`built_for_gpu`), bf16 weights on a GPU; the bars of issue 15."""
    rt = runtime.configure("fp32")  # weights are cast below; no autocast on top
    dtype = torch.bfloat16 if rt.device.type == "cuda" else torch.float32
    teacher = load_for_task(source, _task())
    elastic = ElasticModel(teacher)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, teacher.config.vocab_size, (args.inference_batch, args.seq_len), generator=gen)
    batch = {"input_ids": ids.to(rt.device), "attention_mask": torch.ones_like(ids).to(rt.device)}
    full_flops = forward_flops(teacher.config, None, args.seq_len)

    def timed(spec: Any) -> dict[str, Any]:
        model = rt.place(elastic.extract(spec).eval().to(dtype))
        ms = round(forward_ms(model, batch, args.repeats), 3)  # the package's timing (compute/latency.py)
        del model
        return {"median_ms": ms, "flops_ratio": round(full_flops / forward_flops(teacher.config, spec, args.seq_len), 2)}

    default = [{"sparsity": s, **timed(spec)} for s, spec in random_specs(teacher, [0.0, *args.sparsities]).items()]
    built = [{**row, **timed(spec)} for row, spec in built_for_gpu(elastic, args)]
    for row in default + built:
        row["speedup"] = round(default[0]["median_ms"] / row["median_ms"], 2)
    bars = {}
    for fraction, bar in ((0.1, 5.0), (0.05, 8.0)):
        rows = [r for r in built if r["flops_fraction"] == fraction]
        if rows:
            best = max(rows, key=lambda r: r["speedup"])
            bars[f"{fraction:g}"] = {"bar": bar, "best_speedup": best["speedup"], "drop_layers": best["drop_layers"],
                                     "met": best["speedup"] >= bar}
    return {"students": default, "built_for_gpu": built, "bars": bars}


def built_for_gpu(elastic: ElasticModel, args: argparse.Namespace) -> list[tuple[dict[str, Any], Any]]:
    """``(row, spec)`` per ``--flops-fractions`` × ``--drop-layers``: the least sparse level
    (steps of 0.005) of the uniform map with ``--align`` whose forward FLOPs are at most
    that fraction of the teacher's. Random scores, hidden channels and layers included (the
    weights are random too: the shapes are what matter)."""
    geo, config = elastic.geometry, elastic.model.config
    importance = random_importance(geo, width_and_depth=True)
    full = forward_flops(config, None, args.seq_len)
    out = []
    for drop in (d for d in args.drop_layers if d < geo.num_layers):
        todo = sorted(args.flops_fractions, reverse=True)  # the least sparse level of each, in one sweep
        for sparsity in (round(0.5 + 0.005 * i, 3) for i in range(100)):
            try:
                spec = elastic.sparsity_map(importance, [0.0, sparsity], layer_shapes="uniform", drop_layers=drop,
                                            align=args.align)[sparsity]
            except ConfigError:  # sparser than the sparsest uniform, aligned shape
                break
            while todo and forward_flops(config, spec, args.seq_len) <= todo[0] * full:
                out.append(({"flops_fraction": todo.pop(0), "drop_layers": drop, "sparsity": sparsity,
                             "layers": geo.num_layers - len(spec.empty_layers()), "hidden": spec.hidden,
                             "heads": max(spec.heads), "ffn": max(spec.neurons)}, spec))
    return out


def _task() -> Any:
    from minidisc.tasks import get_task

    return get_task("mrpc")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.tiny:
        _shrink(args)
    cuda = runtime.resolve("auto").device.type == "cuda"
    args.precisions = args.precisions or (["fp32", "tf32", "bf16"] if cuda else ["fp32", "bf16"])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):  # stdout: the JSON only
        scratch = Path(tmp)
        source = write_teacher(scratch / "teacher", args.tiny)
        _, tokenizer = task_inputs(source.path, None)
        samples = args.batch * args.steps
        data = prepare_task_data(DataConfig(task="mrpc", data_dir=args.data_dir, max_length=args.seq_len,
                                            max_train_samples=samples, max_eval_samples=args.batch,
                                            importance_samples=1), tokenizer, seed=0)
        steps = step_times(source, data, args, scratch)
        stages = None if args.skip_compress else compress_stage_times(source, args, scratch)
        infer = inference(source, args)
        device = runtime.current().to_dict()
    result = {
        "model": "tiny BERT, random weights" if args.tiny else "BERT-base-sized, random weights",
        "device": device["device_name"],
        "batch": args.batch, "seq_len": args.seq_len,
        "step_ms": steps,
        "compress_1_epoch_mrpc": stages,
        "inference": {"batch": args.inference_batch, "seq_len": args.seq_len,
                      "weights": "bf16" if device["device"].startswith("cuda") else "fp32", **infer},
        "wall_s": round(time.perf_counter() - start, 1),
        "torch": torch.__version__, "transformers": transformers.__version__,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
