"""Does bf16 change what MiniDisc finds? bf16 runs against the seed spread of fp32; JSON (issue 15).

    PYTHONPATH=src python benchmarks/precision_numerics.py [--data-dir ../shared/data/glue] [--task sst2]
        [--max-train-samples 2000] [--seeds 1 2 3] [--bf16-seeds 1] [--epochs 1] [--output runs/precision-numerics]
    PYTHONPATH=src python benchmarks/precision_numerics.py --tiny     # seconds on a CPU: a tiny random BERT, toy data

Runs ``minidisc compress`` of the packaged teacher (all-MiniLM-L6-v2) on a subsample of
the task once per ``--seeds`` seed in fp32 and once per ``--bf16-seeds`` seed in bf16
(autocast: on the CPU too), each into its own resumable run folder under ``--output``,
and prints for each run the teacher's, the assistant's and the student's dev ``main``
metric and the selected assistant, then per metric the fp32 mean, standard deviation,
minimum and maximum, and whether every bf16 run lies within the fp32 runs' range
(``within_fp32_range``; the issue's bar), and ``informative``: whether the fp32 seeds
spread at all. A range of one point (every seed gave the same score, typically the
constant prediction of a model that learned nothing) makes "within the range" say
nothing: the MRPC subsample of 1,000 pairs for one epoch is such a case (all four runs
ended at 74.80, the constant "paraphrase" answer), hence SST-2 by default. The JSON also
names the device, the versions and the seconds taken.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHARED_GLUE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"
METRICS = ("teacher", "assistant", "student")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=SHARED_GLUE, help="GLUE-layout folder (MRPC/ inside)")
    p.add_argument("--task", default="sst2")
    p.add_argument("--teacher", default=None, help="default: the packaged all-MiniLM-L6-v2")
    p.add_argument("--max-train-samples", type=int, default=2000)
    p.add_argument("--max-eval-samples", type=int, default=None, help="default: the full dev set")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="fp32 seeds (the spread)")
    p.add_argument("--bf16-seeds", nargs="+", type=int, default=[1])
    p.add_argument("--epochs", type=float, default=1.0, help="epochs of every stage")
    p.add_argument("--target-sparsity", type=float, default=0.9)
    p.add_argument("--output", type=Path, default=Path("runs/precision-numerics"))
    p.add_argument("--tiny", action="store_true", help="a tiny random BERT on toy data (CI; seconds)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p.parse_args(argv)


def run_config(args: argparse.Namespace, seed: int, precision: str) -> Any:
    """The ``compress`` configuration of one run."""
    from minidisc.config import CompressConfig, DataConfig, TrainConfig

    stage = TrainConfig(epochs=args.epochs, seed=seed, patience=None,
                        **({"batch_size": 8, "eval_batch_size": 16, "eval_steps": 3} if args.tiny else {}))
    data = DataConfig(task=args.task, data_dir=str(args.data_dir), max_train_samples=args.max_train_samples,
                      max_eval_samples=args.max_eval_samples,
                      **({"max_length": 16, "importance_samples": 16} if args.tiny else {}))
    grid = {"grid": (0.0, 0.5, 0.75), "truncation": 0.25} if args.tiny else {}
    return CompressConfig(teacher=args.teacher, data=data, target_sparsity=args.target_sparsity, finetune=stage,
                          sandwich=stage, final=stage, precision=precision, **grid)


def one_run(args: argparse.Namespace, seed: int, precision: str) -> dict[str, Any]:
    """Run (or resume) one compress; its dev metrics and selection."""
    from minidisc.fileio import read_json
    from minidisc.schedules.minidisc import run_compress

    out = args.output / f"{precision}-seed{seed}"
    run_compress(run_config(args, seed, precision), out)
    report = read_json(out / "report.json")
    assistant = report["assistants"][0] if report["assistants"] else None
    return {
        "precision": precision, "seed": seed, "run": str(out),
        "ran_as": sorted({f"{r['precision']} on {r['device']}" for r in report.get("runtime", {}).values()}),
        "teacher": report["teacher"]["dev"]["main"],
        "assistant": assistant["dev_main"] if assistant else None,
        "assistant_sparsity": assistant["sparsity"] if assistant else None,
        "student": report["student"]["dev"]["main"],
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per metric: the fp32 spread, whether every bf16 run lies within its range, and
    whether that range is more than one point (``informative``)."""
    out: dict[str, Any] = {}
    for metric in METRICS:
        fp32 = [r[metric] for r in runs if r["precision"] == "fp32" and r[metric] is not None]
        bf16 = [r[metric] for r in runs if r["precision"] == "bf16" and r[metric] is not None]
        if not fp32:
            continue
        low, high = min(fp32), max(fp32)
        out[metric] = {
            "fp32_mean": statistics.fmean(fp32), "fp32_std": statistics.stdev(fp32) if len(fp32) > 1 else 0.0,
            "fp32_min": low, "fp32_max": high, "bf16": bf16,
            "within_fp32_range": all(low <= v <= high for v in bf16) if bf16 else None,
            "informative": high > low,  # a one-point range (e.g. constant predictions) tests nothing
        }
    return out


def tiny_inputs(root: Path) -> tuple[Path, Path]:
    """A tiny random BERT and a toy SST-2 folder (the tests' helpers) under ``root``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.helpers import write_tiny_bert, write_tiny_sst2

    return write_tiny_bert(root / "teacher"), write_tiny_sst2(root / "glue", 48, 16)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    scratch = None
    if args.tiny:
        scratch = tempfile.TemporaryDirectory()
        teacher, glue = tiny_inputs(Path(scratch.name))
        args.teacher, args.data_dir, args.task, args.max_train_samples = str(teacher), glue, "sst2", None
        args.target_sparsity = 0.75
        if args.output == Path("runs/precision-numerics"):
            args.output = Path(scratch.name) / "runs"
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer's logs: stdout holds the JSON only
        runs = [one_run(args, s, "fp32") for s in args.seeds] + [one_run(args, s, "bf16") for s in args.bf16_seeds]
    from minidisc.runtime import current

    result = {
        "task": args.task, "tiny": args.tiny, "teacher": args.teacher or "all-MiniLM-L6-v2 (packaged)",
        "max_train_samples": args.max_train_samples, "epochs": args.epochs, "target_sparsity": args.target_sparsity,
        "runs": runs, "summary": summarize(runs),
        "device": current().to_dict()["device_name"], "torch": torch.__version__,
        "transformers": transformers.__version__, "seconds": time.perf_counter() - started,
        "command": " ".join(["benchmarks/precision_numerics.py", *(sys.argv[1:] if argv is None else argv)]),
    }
    if scratch is not None:
        scratch.cleanup()
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    main()
