"""Students built for the hardware (issue 15, part 4), through ``compress`` on a tiny
random BERT: a uniform map that drops a layer and cuts the width, aligned sizes, the
λ-tradeoff on measured latency, and the report's measured inference speed."""

from __future__ import annotations

import pytest

from minidisc.config import CompressConfig, TrainConfig
from minidisc.errors import ConfigError
from tests.helpers import tiny_sst2_data, write_tiny_bert

STAGE = TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, eval_steps=3, patience=None, seed=1)


def _cfg(tmp_path, **options):
    return CompressConfig(
        teacher=str(write_tiny_bert(tmp_path / "teacher")), data=tiny_sst2_data(tmp_path / "glue"),
        target_sparsity=0.75, truncation=0.5, grid=(0.0, 0.5, 0.75), iterations=1,
        finetune=STAGE, sandwich=STAGE, final=STAGE, **options,
    )


def test_latency_cost_uniform_dropped_aligned_student_and_measured_report(tmp_path):
    from transformers import AutoConfig

    from minidisc.compute.latency import latency_cost
    from minidisc.elastic.io import load_student
    from minidisc.fileio import read_json
    from minidisc.schedules.minidisc import run_compress

    cfg = _cfg(tmp_path, layer_shapes="uniform", drop_layers=1, align=8, cost="latency")
    run = run_compress(cfg, tmp_path / "run")
    manifest = read_json(run.path / "manifest.json")
    latency = manifest["stages"]["latency"]
    assert sorted(latency["levels"]) == ["0.5", "0.75"]  # every candidate measured once, before iter1
    assert list(manifest["stages"]).index("latency") < list(manifest["stages"]).index("iter1")
    iteration = manifest["stages"]["iter1"]
    for c in iteration["candidates"]:  # t = m + λ·(time saved), not λ·sparsity
        cost = latency["levels"][f"{c['sparsity']:g}"]["cost"]
        assert cost == pytest.approx(latency_cost(latency["levels"][f"{c['sparsity']:g}"]["speedup"]))
        assert c["tradeoff"] == pytest.approx(c["best_metric"] + cfg.lam * cost)

    teacher = AutoConfig.from_pretrained(run.path / "teacher")
    student = load_student(run.path / "student")
    assert student.config.num_hidden_layers == teacher.num_hidden_layers - 1
    sizes = student.config.minidisc_subnet
    assert all(n % 8 == 0 or n == teacher.intermediate_size for n in sizes["neurons"])
    assert sizes.get("hidden", teacher.hidden_size) % 8 == 0

    report = read_json(run.path / "report.json")
    inference = report["inference"]
    setting = inference["setting"]
    assert (setting["batch"], setting["tokens"], setting["precision"]) == (32, cfg.data.max_length, "fp32")
    assert inference["speedup"] == pytest.approx(inference["teacher_ms"] / inference["student_ms"])
    assert inference["flops_ratio"] > 1 and report["cost_term"] == "latency"
    text = (run.path / "report.md").read_text()
    assert "## Inference speed" in text and f"{inference['flops_ratio']:.2f}×" in text


def test_hardware_options_are_checked():
    with pytest.raises(ConfigError, match="layer_shapes uniform"):
        from minidisc.config import parse_config

        parse_config(CompressConfig, {"drop_layers": 1}, "test")
    with pytest.raises(ConfigError, match=r"leave align \(--align\) at 1"):
        parse_config(CompressConfig, {"layer_shapes": "depth", "align": 8}, "test")
    assert parse_config(CompressConfig, {"layer_shapes": "depth"}, "test").layer_shapes == "depth"
    for bad in ({"cost": "watts"}, {"align": 0}, {"layer_shapes": "ragged"}):
        with pytest.raises(ConfigError):
            parse_config(CompressConfig, bad, "test")
    # defaults are left out of the dump: a run made before these options resumes
    dumped = CompressConfig().model_dump(mode="json")
    assert not {"layer_shapes", "drop_layers", "align", "cost"} & set(dumped)


def test_sparsify_command_cuts_width_and_layers_aligned(tmp_path):
    from typer.testing import CliRunner

    from minidisc.cli import app
    from minidisc.elastic.spec import SubnetSpec
    from minidisc.fileio import read_json
    from tests.helpers import write_tiny_sst2

    teacher, glue = write_tiny_bert(tmp_path / "teacher", trained_head=True), write_tiny_sst2(tmp_path / "glue")
    args = ["sparsify", "--teacher", str(teacher), "--task", "sst2", "--data-dir", str(glue), "--max-length", "16",
            "--importance-samples", "16", "--batch-size", "8", "--grid", "0,0.5,0.8", "--output", str(tmp_path / "out")]
    runner = CliRunner()
    refused = runner.invoke(app, [*args, "--drop-layers", "1"])
    assert refused.exit_code != 0 and "--layer-shapes uniform" in refused.output + str(refused.exception)
    result = runner.invoke(app, [*args, "--layer-shapes", "uniform", "--drop-layers", "1", "--align", "8"])
    assert result.exit_code == 0, result.output
    specs = {float(k): SubnetSpec.from_dict(v) for k, v in read_json(tmp_path / "out" / "sparsity_map.json").items()}
    assert specs[0.0].dropped == () and len(specs[0.8].dropped) == 1 and specs[0.8].hidden % 8 == 0
    assert all(n % 8 == 0 for n in specs[0.8].neurons)
    assert read_json(tmp_path / "out" / "sparsify.json")["levels"] == [0.0, 0.5, 0.8]
    # depth shapes: whole layers only, ⌈s·L⌉ of them, the weakest (scored in the same pass)
    depth_args = [*args[:-1], str(tmp_path / "depth"), "--layer-shapes", "depth"]
    for extra, says in ((["--align", "8"], "leave align (--align) at 1"), ([], "no depth cut reaches sparsity 0.8")):
        refused = runner.invoke(app, [*depth_args, *extra])  # 2 layers: 0.8 would remove both
        assert refused.exit_code != 0 and says in refused.output + str(refused.exception)
    result = runner.invoke(app, [*depth_args, "--grid", "0,0.5"])
    assert result.exit_code == 0, result.output
    depth = {float(k): SubnetSpec.from_dict(v) for k, v in read_json(tmp_path / "depth" / "sparsity_map.json").items()}
    assert depth[0.0].dropped == () and len(depth[0.5].dropped) == 1 and depth[0.5].hidden is None
    assert set(depth[0.5].heads) == {0, depth[0.0].heads[0]}  # the layer that stays keeps every head


def test_inference_timing_caps_tokens_at_the_position_limit(tmp_path):
    # a run's --max-length (default 128) may exceed a small model's 64 positions: time at 64
    from transformers import AutoModelForSequenceClassification

    from minidisc.compute.latency import measure

    model = AutoModelForSequenceClassification.from_pretrained(write_tiny_bert(tmp_path / "teacher"))
    ms, setting = measure({"teacher": model}, batch=2, tokens=128, repeats=1)
    assert setting.tokens == model.config.max_position_embeddings == 64 and ms["teacher"] > 0
