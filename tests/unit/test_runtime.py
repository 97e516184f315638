"""One device and one precision for every stage (:mod:`minidisc.runtime`).

* Every module that computes during a tiny ``compress`` (GLUE) and a tiny ``compress
  --task lm`` was put on the run's device by the one placement function, and its weights
  are there: a global forward pre-hook checks each call (removing any stage's
  placement makes this fail: the module then carries no placement mark).
* bf16 autocast on the CPU runs a whole tiny pipeline; the manifest and the report say
  which precision and device each stage used; losses stay float32.
* ``--precision`` is on every training command, validated (unknown values, fp16 on a
  CPU) before anything is written, in a fresh process.
* Elastic sub-networks under autocast cast only the weight slice they use, never the
  whole weight, and the float32 master weights are never re-cast.
"""

from __future__ import annotations

import pytest
import torch

from minidisc.config import CompressConfig, TrainConfig
from tests.helpers import run_minidisc, tiny_sst2_data, write_tiny_bert

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STAGE = TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, eval_steps=3, patience=None, seed=1)


def _glue_config(root, **changes) -> CompressConfig:
    return CompressConfig(
        teacher=str(write_tiny_bert(root / "teacher")), data=tiny_sst2_data(root / "glue"),
        target_sparsity=0.75, truncation=0.25, grid=(0.0, 0.5, 0.75),
        finetune=STAGE, sandwich=STAGE, final=STAGE, **changes,
    )


class PlacementCheck:
    """A global forward pre-hook: every called module that holds weights (or buffers)
    must carry the placement mark of :func:`minidisc.runtime.place` for the run's device,
    and hold them there."""

    def __init__(self) -> None:
        self.checked = 0
        self.problems: list[str] = []
        self.classes: set[str] = set()

    def __call__(self, module: torch.nn.Module, _args: tuple) -> None:
        from minidisc.runtime import PLACED, current

        tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        if not tensors:
            return
        device = current().device
        self.checked += 1
        self.classes.add(type(module).__name__)
        placed = getattr(module, PLACED, None)
        if placed != device:
            self.problems.append(f"{type(module).__name__} computed without being placed on {device} (mark: {placed})")
        elif any(t.device != device for t in tensors):
            self.problems.append(f"{type(module).__name__} holds weights off {device}")

    def __enter__(self) -> PlacementCheck:  # noqa: PYI034
        from torch.nn.modules.module import register_module_forward_pre_hook

        self._handle = register_module_forward_pre_hook(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()


def test_every_stage_of_compress_computes_where_it_was_placed(tmp_path):
    from minidisc.fileio import read_json
    from minidisc.schedules.minidisc import run_compress

    with PlacementCheck() as check:
        run = run_compress(_glue_config(tmp_path), tmp_path / "run")
    assert run.finished
    assert check.checked > 100 and {"Linear", "Embedding", "LayerNorm"} <= {c.removeprefix("Elastic") for c in check.classes}
    assert check.problems == [], sorted(set(check.problems))[:5]
    # every stage records where and in which precision it computed
    stages = read_json(tmp_path / "run" / "manifest.json")["stages"]
    for name in ("teacher", "sparsified", "iter1", "student"):
        assert stages[name]["runtime"] == {"device": "cpu", "device_name": "cpu", "precision": "fp32", "requested": "auto"}
    assert read_json(tmp_path / "run" / "report.json")["runtime"]["iter1"]["precision"] == "fp32"
    assert "Device and precision: fp32 on cpu." in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_every_stage_of_compress_lm_computes_where_it_was_placed(tmp_path, precision):
    """Teacher evaluation, calibration, sandwich, held-out perplexity and the greedy
    continuations, in float32 and under bf16 autocast."""
    from minidisc.config import parse_config
    from minidisc.fileio import read_json
    from minidisc.runtime import configure
    from minidisc.schedules.lm import run_compress_lm
    from minidisc.schedules.lm_config import LMCompressConfig
    from tests.pretrain_helpers import write_corpus, write_decoder_teacher

    write_decoder_teacher(tmp_path / "teacher", layers=2)
    write_corpus(tmp_path / "train.txt", lines=120)
    write_corpus(tmp_path / "eval.txt", lines=10, seed=1)
    stage = {"batch_size": 4, "eval_steps": 2, "learning_rate": 1e-3}
    cfg = parse_config(LMCompressConfig, {
        "teacher": str(tmp_path / "teacher"),
        "corpus": {"train": [str(tmp_path / "train.txt")], "eval": [str(tmp_path / "eval.txt")], "block_size": 16,
                   "selection_blocks": 4, "calibration_blocks": 4},
        "grid": [0, 0.25, 0.5], "truncation": 0.25, "target_sparsity": 0.5, "lam": 0, "budget_tokens": 64,
        "sandwich": stage, "final": stage, "prompt": "the cat", "new_tokens": 4, "precision": precision,
    }, "test")
    try:
        with PlacementCheck() as check:
            run = run_compress_lm(cfg, tmp_path / "run")
    finally:
        configure("auto")
    assert run.finished and check.checked > 50
    assert {"Linear", "Embedding"} <= {c.removeprefix("Elastic") for c in check.classes}
    assert check.problems == [], sorted(set(check.problems))[:5]
    report = read_json(tmp_path / "run" / "report.json")
    assert {r["precision"] for r in report["runtime"].values()} == {"fp32" if precision == "auto" else "bf16"}
    student = report["models"][-1]
    (heldout,) = student["heldout"].values()
    assert 1 < heldout["perplexity"] < 1e4 and isinstance(student["continuation"], str)


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_pretraining_computes_where_it_was_placed(tmp_path, precision):
    """TinyBERT distillation into a narrower student (learned 16 → 32 projections, which
    the objective owns): the teacher, the held-out evaluation, the student and the
    projections are placed, in float32 and under bf16 autocast alike."""
    from minidisc.fileio import read_json
    from minidisc.pretrain.run import run_pretrain
    from minidisc.runtime import configure
    from tests.pretrain_helpers import tiny_config, write_corpus, write_teacher

    cfg = tiny_config(write_teacher(tmp_path / "teacher"), write_corpus(tmp_path / "corpus.txt"), "tinybert",
                      student={"hidden": 16, "heads": 4, "ffn": 32}, precision=precision)
    try:
        with PlacementCheck() as check:
            run = run_pretrain(cfg, tmp_path / "run")
    finally:
        configure("auto")
    assert run.finished and check.checked > 20
    assert check.problems == [], sorted(set(check.problems))[:5]
    stages = read_json(tmp_path / "run" / "manifest.json")["stages"]
    assert {stages[n]["runtime"]["precision"] for n in ("teacher", "student")} == {"fp32" if precision == "auto" else "bf16"}
    report = read_json(tmp_path / "run" / "report.json")
    assert 0 < report["heldout"]["final_loss"] < 100 and report["runtime"]["student"] == stages["student"]["runtime"]


def test_bf16_autocast_runs_a_tiny_pipeline_on_the_cpu(tmp_path):
    """bf16 on the CPU: the Trainer stages, importance and the teacher compute in
    bfloat16 (seen at the outputs of linear layers), the weights stay float32, the
    losses are float32, and every record says bf16."""
    from minidisc.elastic.io import load_student
    from minidisc.fileio import read_json
    from minidisc.schedules.minidisc import run_compress

    seen: dict[torch.dtype, int] = {}

    def count(module, _args, output):
        if isinstance(module, torch.nn.Linear) and torch.is_tensor(output):
            seen[output.dtype] = seen.get(output.dtype, 0) + 1

    handle = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        run = run_compress(_glue_config(tmp_path, precision="bf16"), tmp_path / "run")
    finally:
        handle.remove()
        from minidisc.runtime import configure

        configure("auto")  # the next test's default again
    assert run.finished
    assert seen.get(torch.bfloat16, 0) > 100  # autocast did compute in bf16
    manifest = read_json(tmp_path / "run" / "manifest.json")
    assert manifest["config"]["precision"] == "bf16"
    for name in ("teacher", "sparsified", "iter1", "student"):
        assert manifest["stages"][name]["runtime"]["precision"] == "bf16"
    logs = (tmp_path / "run" / "iter1" / "logs" / "metrics.jsonl").read_text()
    assert '"loss"' in logs and "nan" not in logs.lower()
    student = load_student(tmp_path / "run" / "student")
    assert {p.dtype for p in student.parameters()} == {torch.float32}  # master weights: never re-cast
    assert "bf16 on cpu" in (tmp_path / "run" / "report.md").read_text()


def test_default_precision_leaves_configs_as_before():
    """``auto`` is not written into a config's dump, so runs made before the key
    existed resume (their saved config compares equal)."""
    from minidisc.schedules.config import CompareConfig

    assert "precision" not in CompressConfig().model_dump(mode="json")
    assert CompressConfig(precision="bf16").model_dump(mode="json")["precision"] == "bf16"
    sub = CompareConfig(precision="bf16").schedule_configs("x")  # every schedule of a comparison gets it
    assert {c.precision for c in sub.values()} == {"bf16"}


def test_precision_resolution_and_refusals():
    from minidisc.errors import ConfigError
    from minidisc.runtime import resolve

    cpu = torch.device("cpu")
    assert resolve("auto", cpu).precision == "fp32" and resolve("fp32", cpu).autocast_dtype is None
    assert resolve("bf16", cpu).trainer_flags() == {"bf16": True, "fp16": False, "use_cpu": True}
    assert resolve("fp32", cpu).trainer_flags() == {"bf16": False, "fp16": False}  # TrainingArguments as before
    for name, hint in (("fp16", "use bf16"), ("tf32", "use fp32"), ("int8", "auto, bf16, fp16, tf32, fp32")):
        with pytest.raises(ConfigError, match=hint):
            resolve(name, cpu)


def test_precision_option_of_every_training_command():
    from typer.testing import CliRunner

    from minidisc.cli import app

    for command in ("demo", "compress", "finetune", "sparsify", "distill", "takd", "maxidisc", "compare", "pretrain",
                    "evaluate-lm"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0 and "--precision" in result.output, command


def test_impossible_precision_stops_before_anything_is_written(tmp_path):
    write_tiny_bert(tmp_path / "teacher")
    for args in (["compress", "--teacher", "teacher", "--precision", "fp16", "-o", "a"],
                 ["distill", "--teacher", "teacher", "--sparsity", "0.5", "--precision", "fp16", "-o", "b"]):
        p = run_minidisc(*args, cwd=tmp_path)
        assert p.returncode == 2, p.stderr[-2000:]
        assert "fp16 needs a CUDA GPU" in p.stderr and "use bf16" in p.stderr and "Traceback" not in p.stderr
    p = run_minidisc("compress", "--teacher", "teacher", "--precision", "half", "-o", "c", cwd=tmp_path)
    assert p.returncode == 2 and "precision" in p.stderr and "'bf16'" in p.stderr
    (tmp_path / "cfg.yaml").write_text("precision: fp16\n")  # the same key in a YAML config
    p = run_minidisc("compress", "--teacher", "teacher", "--config", "cfg.yaml", "-o", "d", cwd=tmp_path)
    assert p.returncode == 2 and "fp16 needs a CUDA GPU" in p.stderr
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_elastic_slices_are_cast_not_whole_weights_under_autocast():
    """Under bf16 autocast an active sub-network casts the slice it multiplies with (as a
    plain Linear of that size does), never the full weight; the parameter itself stays
    float32 and is not copied."""
    from torch.profiler import ProfilerActivity, profile

    from minidisc.elastic.modules import make_elastic_linear

    layer = make_elastic_linear(torch.nn.Linear(64, 48))
    layer.set_active(out=16, inp=32)
    weight, ptr = layer.weight, layer.weight.data_ptr()
    x = torch.randn(4, 32)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof, torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    casts = [e.input_shapes[0] for e in prof.events() if e.name == "aten::_to_copy"]
    assert y.dtype == torch.bfloat16 and y.shape == (4, 16)
    assert [16, 32] in casts and [48, 64] not in casts  # the slice, not the whole weight
    assert layer.weight is weight and layer.weight.dtype == torch.float32 and layer.weight.data_ptr() == ptr
