"""Seconds per iteration-1 sandwich step, beside the official MiniDisc code's 3.12 s (JSON; issue 13).

    PYTHONPATH=src python benchmarks/sandwich_step.py [--teacher PATH] [--task mrpc]
        [--data-dir ../shared/data/glue] [--batch 16] [--steps 6] [--warmup 1] [--threads 2]
    Smoke test (seconds):  python benchmarks/sandwich_step.py --tiny

The step is the one a ``compress`` run trains in its first MiniDisc iteration (see
``benchmarks/steps.py``): the teacher's forward once per batch, then forward and backward
of every candidate of the default grid (``--sandwich-samples all``: the 7 levels ≥ the
paper's 0.5 truncation, 0.5 … 0.95 for target 0.9), one clipped AdamW step. The teacher
is the packaged all-MiniLM-L6-v2 with a (random) MRPC head; the student is a copy of it; the candidates' shapes come
from random importance scores (a step's cost depends on the shapes only). It is timed
twice: with dynamic padding (minidisc's default, each batch padded to its longest
pair) and padded to 128 tokens (as the official code does, the setting of its 3.12 s:
0.64 s per candidate forward+backward at 50 % down to 0.20 s at 95 %, plus 0.34 s of
teacher forward and data, measured on this machine class: 2 CPU cores). The first
``--warmup`` steps are not counted; the JSON gives the median and the minimum of the
rest, and ``ratio_to_official`` = official 3.12 s / our median. A third timing,
``default_rule_dynamic_padding``, is the step ``compress`` trains by default: the sandwich
rule with K = 0 over its default candidates (0.6 … 0.9 for target 0.9), each step training
the least and the most sparse of them (``default_rule_candidates``).
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

import torch
import transformers

from minidisc.config import CompressConfig, DataConfig
from minidisc.models import load_for_task
from minidisc.schedules.stages import task_inputs
from minidisc.training.data import prepare_task_data
from minidisc.training.distill import Distiller

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from steps import benchmark_config, sandwich_seconds, summary

OFFICIAL_STEP_S = 3.12  # official MiniDisc code, same teacher/data/batch, padded to 128 (issue 13)
SHARED_GLUE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "glue")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default=None, help="hub id or folder; default: the packaged all-MiniLM-L6-v2")
    p.add_argument("--task", default="mrpc")
    p.add_argument("--data-dir", default=SHARED_GLUE, help="GLUE-layout folder")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=6, help="timed steps + warm-up steps")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--pad-to", type=int, default=128, help="the padded variant's length")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tiny", action="store_true", help="2 steps of batch 4 (smoke test, seconds)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.tiny:
        args.batch, args.steps, args.warmup = 4, 2, 1
    torch.set_num_threads(args.threads)
    levels = CompressConfig(sandwich_samples="all").candidate_levels(0.0)  # the paper's, as the official code
    default = CompressConfig()  # today's rule: K = 0 from 0.3 below the target up to it
    source, tokenizer = task_inputs(args.teacher, None)
    data_cfg = DataConfig(task=args.task, data_dir=args.data_dir, max_train_samples=args.batch * args.steps,
                          max_eval_samples=args.batch, importance_samples=1)
    data = prepare_task_data(data_cfg, tokenizer, seed=0)
    train = benchmark_config(args.batch, args.steps)
    every, rule = Distiller(data, train), Distiller(data, train, sandwich_samples=default.sandwich_samples)
    load_avg = os.getloadavg()
    start = time.time()
    variants = {}
    for name, distiller, candidates, pad_to in (
            ("dynamic_padding", every, levels, None), (f"padded_to_{args.pad_to}", every, levels, args.pad_to),
            ("default_rule_dynamic_padding", rule, default.candidate_levels(0.0), None)):
        teacher = load_for_task(source, data.task)
        student = load_for_task(source, data.task)
        # the Trainer prints its logs to stdout; keep stdout for the JSON
        with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(sys.stderr):
            seconds = sandwich_seconds(distiller, teacher, student, candidates, Path(scratch), pad_to=pad_to)
        variants[name] = summary(seconds, args.warmup)
    padded = variants[f"padded_to_{args.pad_to}"]
    print(json.dumps({
        "teacher": source.label if hasattr(source, "label") and source.label else source.path,
        "task": args.task,
        "batch": args.batch,
        "candidates": levels,
        "default_rule_candidates": default.candidate_levels(0.0),
        "default_rule_sandwich_samples": default.sandwich_samples,
        "seconds_per_step": variants,
        "official_seconds_per_step": OFFICIAL_STEP_S,
        # only comparable at the official setting (batch 16, padded to 128, 2 CPU cores)
        "ratio_to_official": None if args.tiny else round(OFFICIAL_STEP_S / padded["median_s"], 2),
        "threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "load_average_before_after": [round(load_avg[0], 2), round(os.getloadavg()[0], 2)],
        "wall_s": round(time.time() - start, 1),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
